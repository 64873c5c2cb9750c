"""The config schema, registered in Hydra's ConfigStore.

``conf/`` holds the values; this module holds the types, so a misspelt key or a wrong type fails
at composition with Hydra's own message. Two kinds of schema:

- ``Config``, ``TrainerConfig`` and ``DeviceConfig``: written out below.
- one per registered builder (``schema/model/cnn``, ``schema/optimizer/adamw``, ...), derived from
  the builder's signature: its parameters with defaults are the option's keys, typed by their
  annotations. A YAML option picks its schema in its defaults list::

      defaults:
        - /schema/model/cnn@_here_
        - _self_

  A builder with no YAML file (one a user registers in their own module) becomes an option of its
  group directly, its defaults as values: ``model=tiny``.
"""

import hashlib
import math
import re
from dataclasses import dataclass, field, fields, make_dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from mnist_exp.data.datasets import check_normalisation
from mnist_exp.errors import UserError, check_range, did_you_mean
from mnist_exp.run import hydra_speedups  # noqa: F401  (before any composition)
from mnist_exp.run.debugging import check_batch_limits
from mnist_exp.run.loggers import check_loggers
from mnist_exp.run.optim import check_by_building
from mnist_exp.run.tta import check_tta
from mnist_exp.paths import CONF_DIR
from mnist_exp.run.options import config_groups_help, hydra_settings_keys
from mnist_exp.runs import check_objectives
from mnist_exp.registry import LOGGERS, REGISTRIES, Registry, config_parameters, schema_type


@dataclass
class TrainerConfig:
    epochs: int = MISSING
    batch_size: int = MISSING
    eval_batch_size: int = MISSING
    log_interval: int = MISSING  # optimizer steps between train/loss points in TensorBoard
    label_smoothing: float = MISSING
    ema_decay: float = MISSING  # evaluate an exponential moving average of the weights (e.g. 0.999); 0: off
    tta: bool = MISSING  # test on the image and its 1-pixel shifts, averaged (validation stays plain)
    tta_scales: list[float] = MISSING  # with tta: the sizes each image is also viewed at, e.g. [0.92, 1.0, 1.08]
    deterministic: bool = MISSING  # bit-identical results for the same seed and device.threads (CPU), a bit slower
    compile: bool = MISSING  # torch.compile the model
    progress: bool | None = MISSING  # progress bar; null: only on a terminal and not in a sweep
    checkpoint: bool = MISSING  # write checkpoints/last.pt and best.pt
    patience: int | None = MISSING  # stop after this many epochs without a better val/acc; null: train every epoch
    limit_batches: int | None = MISSING  # debug: this many batches of each split; null: all
    overfit_batches: int | None = MISSING  # debug: train on this many batches, validate on the same images
    profile: bool = MISSING  # debug: torch.profiler over the training, into profile.json


class DeviceName(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class Precision(str, Enum):
    auto = "auto"  # bf16 autocast on CUDA and on CPUs with bf16 instructions, fp32 elsewhere
    fp32 = "fp32"
    bf16 = "bf16"


@dataclass
class DeviceConfig:
    name: DeviceName = MISSING
    threads: int = MISSING  # CPU threads for torch; 0: every core this process may use
    precision: Precision = MISSING
    channels_last: bool = MISSING  # NHWC memory format for conv nets (faster on CPU and on tensor cores)


@dataclass
class Config:
    dataset: Any = MISSING
    model: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = MISSING
    augment: Any = MISSING
    device: DeviceConfig = field(default_factory=DeviceConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    seed: int = MISSING
    resume: bool = MISSING  # continue the run in hydra.run.dir from its checkpoints/last.pt
    ckpt_path: str | None = MISSING  # continue from this checkpoint instead
    init_from: str | None = MISSING  # start from these trained weights (a checkpoint or run directory): fine-tuning
    optimized_metric: Any = MISSING  # the metrics.json key the app returns to sweepers; a list: several objectives
    logger: dict[str, Any] = field(default_factory=dict)  # {tracker name: its keys}, merged from conf/logger/


def named(registry: Registry) -> bool:
    """Whether a builder's node names it (``model.name: cnn``); a logger's node sits under its name instead
    (``logger.mlflow``), so several merge side by side."""
    return registry is not LOGGERS


# Config groups that conf/config.yaml's defaults leave empty: chosen on the command line, not keys of Config.
GROUPS_WITHOUT_DEFAULT = ("experiment", "hparams_search", "debug")


def builder_schema(registry: Registry, name: str) -> type:
    """A dataclass with ``name`` (where the registry's nodes are ``named``) and one typed field per config parameter
    of the builder."""
    fields: list[tuple[str, Any, Any]] = [("name", str, field(default=name))] if named(registry) else []
    for param in config_parameters(registry.get(name)).values():
        try:
            annotation = schema_type(param, probe=not registry.shipped(name))
        except UserError as error:
            raise UserError(f"Cannot make {registry.kind} '{name}' an option: {error}") from None
        default = param.default
        if isinstance(default, (list, tuple)):
            fields.append((param.name, annotation, field(default_factory=lambda d=default: list(d))))
        else:
            fields.append((param.name, annotation, field(default=default)))
    return make_dataclass(f"{registry.kind}_{name}_schema", fields)


def with_builder_defaults(config: dict) -> dict:
    """A saved config with the keys its builders have gained since at their defaults: what that run ran with."""
    filled = dict(config)
    for registry in REGISTRIES:
        node = config.get(registry.kind)
        if named(registry) and isinstance(node, dict) and node.get("name") in registry:
            parameters = config_parameters(registry.get(node["name"])).items()
            filled[registry.kind] = {**node, **{key: list(p.default) if isinstance(p.default, tuple) else p.default
                                                for key, p in parameters if key not in node}}
    return filled


# The builders whose schemas are in the ConfigStore: a process that calls main() again (a user's script, the tests)
# stores them again only when a builder was registered or replaced since.
STORED_BUILDERS: list[tuple[Registry, str, Any]] = []

def register_schemas() -> None:
    """Store ``Config`` and every registered builder's schema in Hydra's ConfigStore."""
    builders = [(registry, name, registry.get(name)) for registry in REGISTRIES for name in registry.names()]
    if builders == STORED_BUILDERS:
        return
    store = ConfigStore.instance()
    store.store(name="config_schema", node=Config)
    for registry, name, _ in builders:
        schema = builder_schema(registry, name)
        store.store(group=f"schema/{registry.kind}", name=name, node=schema)
        if not (CONF_DIR / registry.kind / f"{name}.yaml").exists():
            # A builder registered in a user's own module is an option of its group with its defaults.
            store.store(group=registry.kind, name=name, node=schema if named(registry) else {name: schema})
    STORED_BUILDERS[:] = builders


def run_dir_suffix(override_dirname: str) -> str:
    """'_model-cnn_optimizer-adam' for a run's directory name; '' without overrides.

    One path part, of characters a Hydra override and a shell take unquoted (``ckpt=<run>/...``).
    """
    if not override_dirname:
        return ""
    name = re.sub(r"[^A-Za-z0-9._+@-]+", "-", override_dirname)
    if len(name) > 80:
        # Cut, ending in a hash of the whole: two long names stay apart, and the name does not end
        # in '.', which TensorBoard's HPARAMS tab mistakes for a path and then shows no metrics.
        name = name[:70] + "...-" + hashlib.sha1(name.encode()).hexdigest()[:6]
    return "_" + name


# The run directories this command claimed: {the name it was given: the name it took}; and every directory it made
# for a run (claimed, or given by name and new: run_dir_lock.run_dir_lock), resolved. app.main empties both.
CLAIMED_RUN_DIRS: dict[str, str] = {}
MADE_RUN_DIRS: set[Path] = set()


def claim_run_dir(path: str) -> str:
    """Make the run directory now, so a second run started in the same second takes ``<name>-2`` (then -3, ...).

    ``mkdir`` either creates the directory or fails because it exists, at once for every process
    on the filesystem, so no two runs share a directory. Hydra resolves the name more than once:
    the first answer is kept.
    """
    if path not in CLAIMED_RUN_DIRS:
        base = Path(path)
        base.parent.mkdir(parents=True, exist_ok=True)
        candidate, number = base, 1
        while True:
            try:
                candidate.mkdir()
                break
            except FileExistsError:
                number += 1
                candidate = base.with_name(f"{base.name}-{number}")
        CLAIMED_RUN_DIRS[path] = str(candidate)
        MADE_RUN_DIRS.add(candidate.resolve())
    return CLAIMED_RUN_DIRS[path]


OmegaConf.register_new_resolver("claim_run_dir", claim_run_dir, replace=True)
OmegaConf.register_new_resolver("run_dir_suffix", run_dir_suffix, replace=True)
OmegaConf.register_new_resolver("config_groups", config_groups_help, replace=True)


def check_ranges(cfg) -> None:
    """Values the types allow but training does not; one line each, before anything is built."""
    check_known_keys(cfg)
    trainer = cfg.trainer
    for key, value, low in (("trainer.epochs", trainer.epochs, 1), ("trainer.batch_size", trainer.batch_size, 1),
                            ("trainer.eval_batch_size", trainer.eval_batch_size, 1),
                            ("trainer.log_interval", trainer.log_interval, 1), ("device.threads", cfg.device.threads, 0)):
        if value < low:
            raise UserError(f"{key}={value} is out of range: it must be at least {low}.")
    for key, value, allowed, ok in (
            ("seed", cfg.seed, "a whole number in [0, 2**32), e.g. 0", 0 <= cfg.seed < 2**32),
            ("trainer.label_smoothing", trainer.label_smoothing, "a fraction in [0, 1), e.g. 0.1",
             0 <= trainer.label_smoothing < 1),
            ("trainer.ema_decay", trainer.ema_decay, "a decay in [0, 1), e.g. 0.999; 0 turns it off",
             0 <= trainer.ema_decay < 1)):
        check_range(key, value, ok, allowed)
    check_tta(trainer.tta, trainer.tta_scales, cfg.dataset.get("flatten", False))
    check_patience(trainer.patience, cfg.dataset.get("val_size") if trainer.overfit_batches is None else None,
                   trainer.epochs)
    check_batch_limits(trainer.limit_batches, trainer.overfit_batches)
    check_loggers(cfg.logger)
    lr = cfg.optimizer.get("lr")
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise UserError(f"optimizer.lr={lr} is out of range: it must be a positive number, e.g. optimizer.lr=1e-3.")
    check_objectives(cfg.optimized_metric)
    config = OmegaConf.to_container(cfg, resolve=False)
    for registry in REGISTRIES:  # a user's own builder's keys are theirs to check: inf may mean "off" there
        if named(registry) and isinstance(node := config.get(registry.kind), dict) and node.get("name") in registry \
                and not registry.shipped(node["name"]):
            del config[registry.kind]
    check_finite(config, "", math.isinf)
    # The values the builders check, before nan is refused as no number: nan gets its key's range.
    check_normalisation(cfg.dataset.get("mean"), cfg.dataset.get("std"))
    check_by_building(cfg.optimizer, cfg.scheduler, cfg.augment, trainer.epochs)
    check_finite(config, "", math.isnan)


def check_finite(node, key: str, bad) -> None:
    """inf and nan (``bad`` says which): floats OmegaConf takes and no key of mnist_exp's does (each fails later, or
    trains on nonsense)."""
    if isinstance(node, dict):
        for name, value in node.items():
            check_finite(value, f"{key}.{name}" if key else name, bad)
        return
    values = node if isinstance(node, list) else [node]
    if any(isinstance(value, float) and bad(value) for value in values):
        shown = f"[{','.join(str(value).lower() for value in node)}]" if isinstance(node, list) else str(node).lower()
        raise UserError(f"{key}={shown} is not a number training can use: give a finite one.")


def check_patience(patience: int | None, val_size: int | None, epochs: int) -> None:
    """Early stopping watches the validation accuracy: a positive patience that can stop the run before its last
    epoch (the earliest stop follows epoch 1 + patience), and a validation split to watch."""
    if patience is None:
        return
    if not 1 <= patience <= epochs - 2:
        most = f"give 1 to {epochs - 2}" if epochs > 2 else "train more than 2 epochs"
        raise UserError(f"trainer.patience={patience} is out of range: it stops a run after that many epochs without a "
                        f"better val/acc, at the earliest after epoch 1 + patience, before the last of trainer.epochs="
                        f"{epochs}: {most}, or trainer.patience=null to train every epoch.")
    if val_size == 0:
        raise UserError(f"trainer.patience={patience} watches the validation accuracy, and dataset.val_size=0 leaves "
                        "no validation split: give dataset.val_size a size above 0, or trainer.patience=null.")


def schema_keys(type_name: str) -> list[str]:
    """The keys of the config node type Hydra names in an error ('TrainerConfig', 'model_cnn_schema')."""
    if type_name == Config.__name__:  # what a top-level name can be: a key or a group (experiment=best)
        return [*(f.name for f in fields(Config)), *GROUPS_WITHOUT_DEFAULT]
    if type_name == LOGGERS.kind:  # not a type: the group's nodes sit under each logger's name
        return [*LOGGERS.names(), *(f"{name}.{key}" for name in LOGGERS.names()
                                    for key in config_parameters(LOGGERS.get(name)))]
    for schema in (TrainerConfig, DeviceConfig):
        if schema.__name__ == type_name:
            return [f.name for f in fields(schema)]
    for registry in REGISTRIES:
        for name in registry.names():
            if f"{registry.kind}_{name}_schema" == type_name:
                return [*(["name"] if named(registry) else []), *config_parameters(registry.get(name))]
    return hydra_settings_keys(type_name)


def check_known_keys(cfg) -> None:
    """Refuse keys added with ``+key=value`` that nothing reads (the groups' keys are checked by their builders)."""
    for prefix, node, schema in (("", cfg, Config), ("trainer.", cfg.trainer, TrainerConfig),
                                 ("device.", cfg.device, DeviceConfig)):
        known = [f.name for f in fields(schema)]
        for key in node:
            if key not in known:
                raise UserError(f"Unknown key '{prefix}{key}': mnist_exp does not read it.{did_you_mean(key, known)} "
                                f"The {prefix.rstrip('.') or 'top-level'} keys: {', '.join(known)}.")
