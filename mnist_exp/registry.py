"""Name -> builder registries for models, optimizers, schedulers, datasets, augmentations and loggers.

A builder is a plain function. Its parameters without a default are supplied by code (the
number of classes, the parameters to optimise); its parameters with a default are its config
keys, and their annotations and defaults are also its config schema (see ``config.py``).
Register it with a decorator and build it from a config node whose ``name`` picks it::

    from mnist_exp.registry import MODELS

    @MODELS.register("tiny")
    def tiny(num_classes: int, width: int = 8):
        ...

    MODELS.build({"name": "tiny", "width": 16}, 10)

Unknown names and unknown arguments fail with one line naming the close match.
"""

import importlib
import inspect
from dataclasses import field, make_dataclass
from typing import Any, Callable, Mapping, Optional

from omegaconf import DictConfig, OmegaConf

from mnist_exp.errors import UserError, did_you_mean, first_line


class Registry:
    def __init__(self, kind: str, builtins_module: str):
        self.kind = kind  # "model", "optimizer", ...: the config group it serves
        self.builtins_module = builtins_module  # imported on first lookup, so the built-ins are always there
        self._builders: dict[str, Callable[..., Any]] = {}

    @property
    def builders(self) -> dict[str, Callable[..., Any]]:
        importlib.import_module(self.builtins_module)
        return self._builders

    def register(self, name: str | None = None):
        """Decorator: ``@MODELS.register("cnn")`` (or bare ``@MODELS.register()`` to use the function name)."""

        def add(builder: Callable[..., Any]) -> Callable[..., Any]:
            key = name or builder.__name__
            if key in self._builders and self._builders[key] is not builder:
                raise ValueError(f"{self.kind} '{key}' is registered twice")
            self._builders[key] = builder
            return builder

        return add

    def names(self) -> list[str]:
        return sorted(self.builders)

    def __contains__(self, name: str) -> bool:
        return name in self.builders

    def shipped(self, name: str) -> bool:
        """Whether the builder of ``name`` is one mnist_exp ships, not a user's own."""
        return self.get(name).__module__.split(".")[0] == "mnist_exp"

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self.builders:
            raise UserError(
                f"Unknown {self.kind} '{name}'.{did_you_mean(name, self.builders)} "
                f"Valid {self.kind} names: {', '.join(self.names())}."
            )
        return self.builders[name]

    def build(self, cfg: Mapping | DictConfig, *args: Any, **extra: Any) -> Any:
        """Call the builder named by ``cfg['name']`` with the other keys of ``cfg`` as keyword arguments.

        ``args`` and ``extra`` come from code, not config (the model's parameters for an optimizer, say).
        """
        if isinstance(cfg, DictConfig):
            cfg = OmegaConf.to_container(cfg, resolve=True)
        cfg = dict(cfg)
        if "name" not in cfg:
            raise UserError(f"The {self.kind} config needs a 'name' (one of: {', '.join(self.names())}).")
        name = cfg.pop("name")
        builder = self.get(name)
        check_arguments(builder, cfg, f"{self.kind}.")
        try:
            return builder(*args, **cfg, **extra)
        except (ValueError, TypeError, RuntimeError) as error:  # torch's checks of the values, e.g. a negative size
            settings = ", ".join(f"{self.kind}.{key}={value}" for key, value in cfg.items())
            reason = first_line(error)
            raise UserError(f"Cannot build {self.kind} '{name}' from {settings or 'its defaults'}: {reason}") from error


def config_parameters(builder: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    """The builder's config keys: its parameters that have a default."""
    params = inspect.signature(builder).parameters.values()
    return {p.name: p for p in params if p.default is not p.empty}


def schema_type(param: inspect.Parameter, probe: bool) -> Any:
    """The type of a config parameter's schema field: its annotation, where OmegaConf takes it with its default
    (``probe``: a user's builder, not one of mnist_exp's own). ``width: int = None`` is then optional, and an
    annotation OmegaConf has no type for (``Literal[...]``, ``Sequence[int]``, ``Callable``) is Any: the builder judges
    the value, rather than the schema failing every command of the app with a traceback. A default no config can
    hold (a class, a function) is a UserError."""
    annotation = Any if param.annotation is param.empty else param.annotation
    if not probe:
        return annotation
    default = list(param.default) if isinstance(param.default, tuple) else param.default
    for candidate in (annotation, Optional[annotation], Any):
        try:
            OmegaConf.structured(make_dataclass("probe", [("key", candidate, field(default_factory=lambda: default))]))
            return candidate
        except Exception:  # OmegaConf's ValidationError, or a NameError from a string annotation it cannot evaluate
            continue
    raise UserError(f"the default of {param.name}, {param.default!r}, is not a value a config can hold: give "
                    f"{param.name} a default that is a number, a string, a bool, None or a list of them, and let the "
                    "builder make its object from that value (e.g. a name it looks up).")


def check_arguments(builder: Callable[..., Any], kwargs: Mapping[str, Any], prefix: str) -> None:
    """Refuse config keys the builder does not take, naming the close match."""
    accepted = config_parameters(builder)
    for key in kwargs:
        if key not in accepted:
            if not accepted:
                raise UserError(f"Unknown key '{prefix}{key}': {prefix.rstrip('.')}={builder.__name__} takes no keys.")
            raise UserError(f"Unknown key '{prefix}{key}' for {builder.__name__}.{did_you_mean(key, accepted)} "
                            f"It takes: {', '.join(accepted)}.")


MODELS = Registry("model", "mnist_exp.run.models")
OPTIMIZERS = Registry("optimizer", "mnist_exp.run.optim")
SCHEDULERS = Registry("scheduler", "mnist_exp.run.optim")
DATASETS = Registry("dataset", "mnist_exp.data.datasets")
AUGMENTATIONS = Registry("augment", "mnist_exp.data.augment")
LOGGERS = Registry("logger", "mnist_exp.run.loggers")  # picked by their node's key (logger.mlflow), not by a name
REGISTRIES = (DATASETS, MODELS, OPTIMIZERS, SCHEDULERS, AUGMENTATIONS, LOGGERS)
