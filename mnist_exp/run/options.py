"""The options of each config group, one list for ``--help``, ``glob()`` sweeps and the did-you-mean of a wrong one.

The list is Hydra's own, so it holds exactly what ``group=option`` composes: the YAML files in
conf/ and in ``--config-dir``, and every builder registered in code (``register_schemas`` stores
those without a YAML file in Hydra's ConfigStore), a user's own among them. The keys of Hydra's own
settings (``hydra.run``, a sweeper's, a launcher's) come from there too, for the did-you-mean of a wrong key.
A refusal of a value that a chosen preset set, not the command line, names that option (``naming_the_preset``).
"""

import re
import sys
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from pathlib import Path

from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.object_type import ObjectType
from omegaconf import OmegaConf

from mnist_exp.errors import UserError
from mnist_exp.paths import CONF_DIR
from mnist_exp.runs import split_override

# Groups a user does not choose from: Hydra's own settings and the builders' schemas.
HIDDEN_GROUPS = ("hydra", "schema")


def config_loader(config_dirs: tuple[str, ...] = ()):
    """Hydra's config loader: the running Hydra's (its --config-dir included), else one over conf/ and ``config_dirs``
    (``CommandLine.config_dirs``)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path

    if GlobalHydra.instance().is_initialized() and not config_dirs:
        return GlobalHydra.instance().config_loader()
    search_path = create_config_search_path(str(CONF_DIR))
    for config_dir in config_dirs:  # after conf/, as Hydra adds --config-dir and hydra.searchpath
        search_path.append("command-line", f"file://{Path(config_dir).absolute()}")
    return ConfigLoaderImpl(config_search_path=search_path)


def group_options(group: str, config_dirs: tuple[str, ...] = (), loader=None) -> list[str]:
    """The options of ``group`` ('model', 'hydra/launcher'), sorted; ``loader``: one ``config_loader`` made already."""
    loader = loader or config_loader(config_dirs)
    return sorted(loader.get_group_options(group, results_filter=ObjectType.CONFIG))


def naming_the_preset(message: str, overrides: list[str], choices: dict) -> str:
    """A refusal of ``key=value`` that the command line did not set says which preset set it, the last one first
    as Hydra applies them (conf/config.yaml's defaults): '... (debug=profile sets trainer.limit_batches.)'."""
    found = re.match(r"([\w.]+)=", message)
    if not found or any(split_override(given)[0] == found[1] for given in overrides):
        return message
    for group in ("debug", "hparams_search", "experiment"):
        option = choices.get(group)
        preset = CONF_DIR / group / f"{option}.yaml"
        if option and preset.is_file() and OmegaConf.select(OmegaConf.load(preset), found[1]) is not None:
            return f"{message} ({group}={option} sets {found[1]}.)"
    return message


# Presets that choose options of other groups, in conf/config.yaml's order (a later one's choice wins). A debug
# preset, last of all, overrides on purpose (debug=overfit: augment=none).
PRESET_GROUPS = ("experiment", "hparams_search")


def check_presets_agree(choices: dict[str, str | None], overrides, config_dirs: tuple[str, ...] = ()) -> None:
    """Refuse two presets that choose one group's option differently (experiment=fast's optimizer=adam and
    hparams_search=cnn_optuna's optimizer=adamw): the later one's would win without a word. A group the command line
    (Hydra's ``overrides``) chooses itself is its own."""
    given_groups = {override.key_or_group for override in overrides}
    chosen: dict[str, tuple[str, str]] = {}
    for group in PRESET_GROUPS:
        option = choices.get(group)
        files = [Path(base) / group / f"{option}.yaml" for base in (CONF_DIR, *config_dirs) if option]
        for target, value in next((chosen_options(file) for file in files if file.is_file()), []):
            earlier = chosen.setdefault(target, (f"{group}={option}", value))
            if target not in given_groups and earlier[1] != value:
                raise UserError(f"{earlier[0]} chooses {target}={earlier[1]} and {group}={option} chooses "
                                f"{target}={value}: choose one of them on the command line ({target}={earlier[1]} "
                                f"or {target}={value}).")


def chosen_options(preset: Path) -> list[tuple[str, str]]:
    """The (group, option) pairs a preset's defaults list chooses; none from a file Hydra will refuse in its words."""
    try:
        defaults = OmegaConf.load(preset).get("defaults") or []
    except Exception:  # not YAML, or not a mapping: Hydra's composition says what is wrong with it
        return []
    return [(key.removeprefix("override").strip().lstrip("/"), value)
            for entry in defaults if isinstance(entry, Mapping) for key, value in entry.items()]


def config_groups_help() -> str:
    """'  model:          cnn, conv_fc, ...' for each group a user chooses from, for ``--help``."""
    from mnist_exp.run.command_line import parse_command_line

    # Hydra's loader knows --config-dir, not hydra.searchpath, which it applies to each composition alone.
    config_dirs = parse_command_line(sys.argv[1:]).config_dirs
    loader = config_loader(config_dirs)
    groups = sorted(group for group in loader.list_groups("") if group not in HIDDEN_GROUPS)
    return "\n".join(f"  {group + ':':<16}{', '.join(group_options(group, loader=loader))}" for group in groups)


def hydra_settings_keys(type_name: str) -> list[str]:
    """The keys of a type of Hydra's own settings ('RunDir', 'OptunaSweeperConf'): one of hydra.conf's, or a
    config a sweeper, launcher, sampler or pruner stored in Hydra's ConfigStore."""
    import hydra.conf

    schema = getattr(hydra.conf, type_name, None)
    if isinstance(schema, type) and is_dataclass(schema):
        return [f.name for f in fields(schema)]
    store, groups = ConfigStore.instance(), ["hydra"]
    while groups:
        group = groups.pop()
        for name in store.list(group):
            if not name.endswith(".yaml"):
                groups.append(f"{group}/{name}")
            elif OmegaConf.get_type(node := store.load(f"{group}/{name}").node).__name__ == type_name:
                return [key for key in node if not key.startswith("_") and key != "defaults"]
    return []
