"""Two speed-ups of Hydra 1.3 and OmegaConf 2.3 that their main branches have. Neither changes what a composition
returns; each run composes its config twice and ``--help`` about 160 times, so both count.

- Hydra deep-copies its config repository for each composition and each listing of a group's options, and with it
  the ConfigStore singleton that holds the ~40 schemas of our builders: a tenth of a composition, half of `--help`.
  Hydra's main branch reads the one live ConfigStore instead (facebookresearch/hydra#2928); so does this.
- OmegaConf parses every YAML file with PyYAML's pure-Python parser. Its main branch takes libyaml's parser where
  PyYAML has it (omry/omegaconf#1150); so does this, with OmegaConf's own resolvers and duplicate-key check.
"""

import functools

import omegaconf._utils
import yaml
from hydra.core.config_store import ConfigStore

ConfigStore.__deepcopy__ = lambda self, memo: self

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
