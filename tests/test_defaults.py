"""One source of defaults per value, and a test wherever a value is shown in a second place.

- A builder's keys: its signature is the source. conf/<group>/<name>.yaml shows the same values for
  reading, key for key: a user meets the YAML (``model=cnn``), code the signature
  (``MODELS.build({"name": "cnn"}, 10)``), and both must be the same net, optimizer, schedule and dataset.
  Every Registry in mnist_exp.registry is covered, so a new one is checked once its group has a file.
- The trainer's keys: conf/config.yaml. ``LoopSettings`` and the schema hold none of their defaults.
- The Optuna sweeper's keys: its config dataclass. A search file (conf/hparams_search/) sets only what it changes.
"""

from dataclasses import MISSING, fields

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import mnist_exp.registry
from mnist_exp.run.config import CONF_DIR, register_schemas
from mnist_exp.registry import LOGGERS, MODELS, OPTIMIZERS, Registry, config_parameters
from mnist_exp.run.config import TrainerConfig
from mnist_exp.run.trainer import LoopSettings
from mnist_exp.sweeps.optuna_plugin.optuna_sweeper import SAMPLERS, OptunaSweeperConf

register_schemas()

REGISTRIES = sorted((value for value in vars(mnist_exp.registry).values() if isinstance(value, Registry)),
                    key=lambda registry: registry.kind)
# (registry, builder name) for every builder with a YAML option of the same name in its group.
OPTIONS = [(registry, name) for registry in REGISTRIES for name in registry.names()
           if (CONF_DIR / registry.kind / f"{name}.yaml").exists()]


def compose_option(group: str, name: str) -> dict:
    """The option's node of the config composed with ``group=name``, resolved to plain Python values, with its
    name: a logger's node is ``logger.<name>`` (several sit side by side), the others' the group's."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"{group}={name}"])
    node = OmegaConf.to_container(cfg[group], resolve=True)
    return {"name": name, **node[name]} if group == LOGGERS.kind else node


def written_keys(group: str, name: str) -> list[str]:
    """The keys the option's file shows a reader, before the schema fills in what it leaves out."""
    written = yaml.safe_load((CONF_DIR / group / f"{name}.yaml").read_text())
    node = written[name] if group == LOGGERS.kind else written
    return sorted(key for key in node if key not in ("defaults", "name"))


def plain(value):
    """Tuples (a signature's list defaults) as lists, so they compare with the YAML's lists."""
    return [plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def test_every_registry_with_a_config_group_has_its_options_checked():
    checked = {registry.kind for registry, _ in OPTIONS}
    groups = {registry.kind for registry in REGISTRIES if (CONF_DIR / registry.kind).is_dir()}
    assert {"model", "optimizer", "scheduler", "dataset"} <= checked == groups
    assert ("model", "cnn") in {(registry.kind, name) for registry, name in OPTIONS}


@pytest.mark.parametrize("registry, name", OPTIONS, ids=[f"{r.kind}/{n}" for r, n in OPTIONS])
def test_yaml_option_equals_its_builders_signature_defaults(registry, name):
    builder = registry.get(name)
    defaults = {key: plain(param.default) for key, param in config_parameters(builder).items()}
    composed = compose_option(registry.kind, name)
    assert composed.pop("name") == name
    where = f"conf/{registry.kind}/{name}.yaml"
    signature = f"{builder.__module__}.{builder.__qualname__}"
    disagreements = [f"{where}: {key} is {composed[key]!r} there but {defaults[key]!r} in {signature}'s signature"
                     for key in defaults if key in composed and composed[key] != defaults[key]]
    assert not disagreements, "\n".join(disagreements)


@pytest.mark.parametrize("registry, name", OPTIONS, ids=[f"{r.kind}/{n}" for r, n in OPTIONS])
def test_yaml_option_file_shows_every_key_of_its_builder(registry, name):
    assert written_keys(registry.kind, name) == sorted(config_parameters(registry.get(name))), \
        f"conf/{registry.kind}/{name}.yaml"


MODEL_OPTIONS = [name for registry, name in OPTIONS if registry is MODELS]


def layers(model: torch.nn.Module) -> list:
    return [(name, type(module)) for name, module in model.named_modules()]


def shapes(model: torch.nn.Module) -> list:
    return [(name, tuple(p.shape)) for name, p in model.named_parameters()]


@pytest.mark.parametrize("name", MODEL_OPTIONS)
def test_building_a_model_by_name_alone_gives_the_yaml_options_net(name):
    from_code = MODELS.build({"name": name}, 10)
    from_yaml = MODELS.build(compose_option("model", name), 10)
    assert layers(from_code) == layers(from_yaml)
    assert shapes(from_code) == shapes(from_yaml)


def test_cnn_by_name_is_the_composed_model_cnn_with_its_strided_first_conv():
    from_code = MODELS.build({"name": "cnn"}, 10)
    from_yaml = MODELS.build(compose_option("model", "cnn"), 10)
    assert layers(from_code) == layers(from_yaml) and shapes(from_code) == shapes(from_yaml)
    first = from_code[0][0]
    assert (first.kernel_size, first.stride, first.padding, first.out_channels) == ((5, 5), (2, 2), (0, 0), 16)


@pytest.mark.parametrize("name", [name for registry, name in OPTIONS if registry is OPTIMIZERS])
def test_building_an_optimizer_by_name_alone_gives_the_yaml_options_settings(name):
    params = [torch.nn.Parameter(torch.zeros(3))]
    from_code = OPTIMIZERS.build({"name": name}, params)
    from_yaml = OPTIMIZERS.build(compose_option("optimizer", name), params)
    assert type(from_code) is type(from_yaml)
    assert from_code.defaults == from_yaml.defaults


def test_the_loop_takes_the_trainers_values_from_the_config_alone():
    config_keys = {f.name for f in fields(TrainerConfig)}
    with_defaults = [f.name for f in fields(LoopSettings)
                     if f.name in config_keys and (f.default is not MISSING or f.default_factory is not MISSING)]
    assert not with_defaults, f"LoopSettings repeats conf/config.yaml's defaults of {with_defaults}"
    assert all(f.default is MISSING or str(f.default) == "???" for f in fields(TrainerConfig))


def test_a_search_file_sets_only_what_it_changes_in_the_sweeper():
    defaults = {f.name: f.default for f in fields(OptunaSweeperConf) if f.default is not MISSING}
    for path in sorted((CONF_DIR / "hparams_search").glob("*.yaml")):
        written = yaml.safe_load(path.read_text())
        sweeper = written["hydra"]["sweeper"]
        repeated = [key for key, value in sweeper.items() if key in defaults and value == defaults[key]]
        sampler = dict(next((d for d in written["defaults"] if "override /hydra/sweeper/sampler" in d), {}))
        sampler_defaults = SAMPLERS[sampler.popitem()[1]] if sampler else {}
        repeated += [f"sampler.{key}" for key, value in sweeper.get("sampler", {}).items()
                     if key in sampler_defaults and value == sampler_defaults[key]]
        assert not repeated, f"{path.name} repeats the sweeper's defaults of {repeated}"
