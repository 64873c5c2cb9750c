"""The search space: Hydra's sweep syntax as Optuna's distributions, and the conditional spaces that come with it.

- ``interval(a,b)`` is continuous, ``int(interval(a,b))`` and ``tag(int, ...)`` whole numbers, ``tag(log, ...)`` on a
  log scale; ``range(a,b,step)`` stops before ``b``, as everywhere in Hydra; ``choice(...)`` and ``a,b,c`` are
  categorical. A plain ``key=value`` fixes that key.
- ``hydra.sweeper.custom_search_space`` names a function ``f(config, trial)`` called after a trial's params are
  drawn: it may draw more, conditional on them (``momentum_for_sgd`` below), and return fixed overrides.
"""

import contextlib
import inspect
import logging
import math
import re
from typing import Any

from hydra.core.override_parser.types import Override, Transformer
from omegaconf import DictConfig, OmegaConf

from mnist_exp.errors import UserError, did_you_mean
from mnist_exp.run.command_line import override_parser
from mnist_exp.run.prechecks import swept_values
from mnist_exp.runs import split_override


def search_space(lines: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The swept keys' distributions and the fixed overrides, from ``key=value`` lines; a later line for a key wins."""
    space, fixed = {}, {}
    for override in override_parser().parse_overrides(lines):
        key = override.get_key_element().lstrip("+")  # ++key=value fixes key as key=value does
        if override.is_sweep_override():
            space[key] = distribution(override)
            fixed.pop(key, None)
        else:
            fixed[key] = override.input_line
            space.pop(key, None)
    return space, list(fixed.values())


def distribution(override: Override):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    sweep = override.value()
    tags = sorted(getattr(sweep, "tags", None) or ())
    if tags and not override.is_interval_sweep():
        raise UserError(f"{override.input_line}: a search reads tags on an interval alone, e.g. "
                        f"tag(log,interval(0.0001,0.1)), and tries a listed value as listed: leave the tag out.")
    if unread := [tag for tag in tags if tag not in ("log", "int")]:
        raise UserError(f"{override.input_line}: a search reads the tags log and int, and no tag {unread[0]}."
                        f"{did_you_mean(unread[0], ['log', 'int'])}")
    if override.is_interval_sweep():
        low, high, log_scale = sweep.start, sweep.end, "log" in sweep.tags
        if not low <= high:  # Optuna's own error names neither the key nor the fix
            raise UserError(f"{override.input_line}: an interval goes from low to high, e.g. interval({high:g},{low:g}).")
        if log_scale and not low > 0:
            raise UserError(f"{override.input_line}: a log scale needs both ends above 0.")
        # int(interval(1, 5)) casts the bounds (plain interval(1, 5) gives floats); tag(int, ...) says it too.
        if "int" in sweep.tags or (isinstance(low, int) and isinstance(high, int)):
            return IntDistribution(int(low), int(high), log=log_scale)
        return FloatDistribution(low, high, log=log_scale)
    values = swept_values(override, transformer=Transformer.encode)
    if not all(isinstance(value, (str, int, float, bool)) for value in values):
        raise UserError(f"{override.input_line}: a search chooses among numbers, words and true/false, not lists, "
                        "dicts or null.")
    if override.is_range_sweep() and not sweep.shuffle:
        low, high, step = min(values), max(values), abs(sweep.step)
        if all(isinstance(value, int) for value in values):
            return IntDistribution(low, high, step=step)
        # Hydra adds the step up (0.1 + 0.1 + 0.1 = 0.30000000000000004): 12 digits are the values meant.
        low, high, step = (float(f"{x:.12g}") for x in (low, high, step))
        return FloatDistribution(low, high, step=step)
    return CategoricalDistribution(values)


def grid_space(sampler: DictConfig, space: dict[str, Any]) -> dict[str, Any]:
    """The grid sampler's argument: every value of each swept key, which it tries in turn; {} for other samplers."""
    if not sampler._target_.endswith("GridSampler"):
        return {}
    grid = {}
    for key, dist in space.items():
        if hasattr(dist, "choices"):
            grid[key] = list(dist.choices)
        elif dist.step is not None and not dist.log:
            count = round((dist.high - dist.low) / dist.step) + 1
            grid[key] = [type(dist.low)(dist.low + i * dist.step) for i in range(count)]
        else:
            raise UserError(f"hydra/sweeper/sampler=grid tries listed values, and {key} is {describe(dist)}: give it "
                            "choice(...), a,b,c or range(start,stop,step).")
    return {"search_space": grid}


def grid_points_left(study, grid: dict[str, Any]) -> float:
    """Of a grid search (``grid``: ``grid_space``'s), the points no trial has taken yet: a batch asks no more, or
    Optuna's grid sampler gives a running trial's point again. Other samplers: no limit."""
    if not grid:
        return math.inf
    taken = {trial.system_attrs["grid_id"] for trial in study.get_trials(deepcopy=False)
             if "grid_id" in trial.system_attrs}
    return math.prod(len(values) for values in grid["search_space"].values()) - len(taken)


def trials_to_run(n_trials: int, study, grid: dict[str, Any]) -> str:
    """How many trials this command runs: ``n_trials``, or the grid's points left where they are fewer (the grid
    stops there)."""
    if (left := grid_points_left(study, grid)) >= n_trials:
        return f"{n_trials} more"
    return f"{left} more (the grid's points left, of hydra.sweeper.n_trials={n_trials})"


def describe(distribution) -> str:
    if hasattr(distribution, "choices"):
        return f"in {list(distribution.choices)}"
    scale = ", log" if distribution.log else f", step {distribution.step}" if distribution.step else ""
    return f"in [{distribution.low}, {distribution.high}{scale}]"


def override_value(value: Any) -> str:
    """A suggested value as the override grammar reads it back: quoted where it has special characters."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str) and not re.fullmatch(r"[\w./:+-]+", value):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(value)


def draw_more(extend, path: str, config, trial) -> dict:
    """What ``custom_search_space`` (``extend``, named by ``path``) draws into ``trial`` beside its params. Optuna's
    grid sampler refuses a key its grid does not list only as a trial draws it: said in one line."""
    try:
        return extend(config, trial) or {}
    except ValueError as error:
        unlisted = re.search(r"parameter name, (.+), is not found in the given grid", str(error))
        if not unlisted:
            raise
        raise UserError(f"hydra.sweeper.custom_search_space={path} draws {unlisted[1]}, and hydra/sweeper/sampler=grid "
                        "tries only the values the search space lists: give another sampler "
                        "(hydra/sweeper/sampler=tpe), or search without the function "
                        "(hydra.sweeper.custom_search_space=null).") from None


def load_function(path: str):
    """The function a dotted path names ('my_module.my_space'); a path that names none is one line."""
    from hydra.utils import get_method

    hydra_log = logging.getLogger("hydra.utils")  # get_method logs the error it raises in three lines: ours says it
    was_disabled, hydra_log.disabled = hydra_log.disabled, True
    try:
        function = get_method(path)
    except Exception as error:  # Hydra's ImportError or ValueError, naming what it could not find
        raise UserError(f"hydra.sweeper.custom_search_space={path} names no function ({' '.join(str(error).split())}). "
                        "Give the dotted path of one, e.g. mnist_exp.sweeps.space.momentum_for_sgd.") from None
    finally:
        hydra_log.disabled = was_disabled
    with contextlib.suppress(ValueError):  # a builtin may have no signature to check
        try:
            inspect.signature(function).bind(None, None)
        except TypeError:
            raise UserError(f"hydra.sweeper.custom_search_space={path} is called with (config, trial) and takes other "
                            "arguments: give a function of those two, as mnist_exp.sweeps.space.momentum_for_sgd.") from None
    return function


def momentum_for_sgd(config, trial) -> None:
    """SGD's momentum (and Nesterov's) where the trial drew SGD, or the command line chose it (optimizer=sgd, which the
    search then does not draw); Adam and AdamW have no momentum key to search. A key the command line fixes
    (optimizer.momentum=0.9) keeps its value: drawn, it would be set after it. Nesterov looks ahead along the momentum:
    with none (optimizer.momentum=0 fixed) it is not drawn, as SGD refuses it."""
    if trial.params.get("optimizer", OmegaConf.select(config, "optimizer.name")) != "sgd":
        return
    fixed = {split_override(str(line))[0] for line in OmegaConf.select(config, "hydra.overrides.task", default=[])}
    if "optimizer.momentum" not in fixed:
        trial.suggest_float("optimizer.momentum", 0.5, 0.99)
    no_momentum = "optimizer.momentum" in fixed and OmegaConf.select(config, "optimizer.momentum") == 0
    if "optimizer.nesterov" not in fixed and not no_momentum:
        trial.suggest_categorical("optimizer.nesterov", [False, True])
