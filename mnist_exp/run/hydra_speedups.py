"""Three speed-ups of Hydra 1.3 and OmegaConf 2.3. None changes what Hydra composes or runs; a composition of our
config takes about 80 ms, and ``--help`` makes about 160, so each counts.

- Hydra deep-copies its config repository for each composition and each listing of a group's options, and with it
  the ConfigStore singleton that holds the ~40 schemas of our builders: a tenth of a composition, half of `--help`.
  Hydra's main branch reads the one live ConfigStore instead (facebookresearch/hydra#2928); so does this.
- OmegaConf parses every YAML file with PyYAML's pure-Python parser. Its main branch takes libyaml's parser where
  PyYAML has it (omry/omegaconf#1150); so does this, with OmegaConf's own resolvers and duplicate-key check.
- Hydra composes a run's or a sweep's whole config once more before its own composition, only to read ``hydra.mode``
  (``Hydra.get_mode``). Where it would read no config but Hydra's, its plugins' and ``conf/``'s (no
  ``--config-dir``, ``--config-name`` or searchpath, nothing a user stored in the ConfigStore) and no override names
  ``hydra.mode``, the mode is unset, and this says so without composing: tests/test_config.py checks that no option in
  ``conf/`` sets it.
"""

import functools
import re
from pathlib import Path

import omegaconf._utils
import yaml
from hydra._internal.hydra import Hydra
from hydra.core.config_store import ConfigStore

from mnist_exp.paths import CONF_DIR
from mnist_exp.registry import REGISTRIES

ConfigStore.__deepcopy__ = lambda self, memo: self

COMPOSING_GET_MODE = Hydra.get_mode


def mode_read_from_our_configs_alone(hydra: Hydra, config_name: str | None, overrides: list[str]) -> bool:
    """Whether the composition ``get_mode`` makes reads only configs that leave ``hydra.mode`` unset."""
    sources_ours = all(source.provider in ("hydra", "schema")
                       or source.provider == "main" and Path(source.path) == CONF_DIR
                       for source in hydra.config_loader.get_sources())
    stored_ours = set(ConfigStore.instance().repo) <= {"_dummy_empty_config_.yaml", "config_schema.yaml", "hydra",
                                                       "schema", *(registry.kind for registry in REGISTRIES)}
    keys = [re.match(r"[+~]*([^=]*)", override).group(1).strip() for override in overrides]
    return (config_name == "config" and sources_ours and stored_ours
            and not any(key == "hydra" or key.startswith(("hydra.mode", "hydra.searchpath")) for key in keys))


def get_mode(self: Hydra, config_name: str | None, overrides: list[str]):
    if mode_read_from_our_configs_alone(self, config_name, overrides):
        return None
    return COMPOSING_GET_MODE(self, config_name, overrides)


Hydra.get_mode = get_mode

PURE_PYTHON_YAML_LOADER = omegaconf._utils.get_yaml_loader


@functools.cache
def libyaml_loader() -> type:
    """OmegaConf's loader class (its float and timestamp rules, its duplicate-key check) on libyaml's parser."""
    from yaml.cyaml import CParser

    class LibyamlLoader(CParser, PURE_PYTHON_YAML_LOADER()):
        def __init__(self, stream):
            CParser.__init__(self, stream)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)

    return LibyamlLoader


if yaml.__with_libyaml__:
    omegaconf._utils.get_yaml_loader = libyaml_loader
