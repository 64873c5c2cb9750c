"""The Optuna search behind ``hydra/sweeper=optuna``: ask trials, launch them as jobs, tell Optuna how they ended.

- The search space is ``hydra.sweeper.params`` and the command line's sweeps, in Hydra's syntax:
  ``interval(a,b)`` (``tag(log, ...)`` on a log scale, ``tag(int, ...)`` whole numbers), ``range(a,b,step)``,
  ``choice(...)`` or ``a,b,c``. A plain ``key=value`` on the command line fixes that key.
- The study is created, or loaded if it exists, from ``storage`` and ``study_name``: processes given
  the same two share one study (no trial number twice), and the same command run again continues it.
  ``n_trials`` counts the trials of this command.
- Trials go to the launcher ``n_jobs`` at a time as jobs numbered by their trial number, so two
  workers sharing a sweep directory never share a job directory. A job reaches its trial through the
  storage (``mnist_exp.sweeps.trial``) to report each epoch and be pruned; it tells nothing itself.
- At the end the study's best trial, of every worker and every command, is printed and written to
  ``best_trial.yaml`` (``mnist_exp.sweeps.summary``).
"""

import logging
import re
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.utils import instantiate
from omegaconf import DictConfig

from mnist_exp.errors import UserError, did_you_mean
from mnist_exp.run.prechecks import empty_sweep
from mnist_exp.sweeps.summary import report_best_trial
from mnist_exp.sweeps.trial import EPOCH_OBJECTIVES, TrialPruned, open_storage, without_password

log = logging.getLogger("mnist_exp")

DIRECTIONS = ("maximize", "minimize")


def register_optuna_sweeper() -> None:
    """Make ``hydra/sweeper=optuna`` this package's sweeper, in an editable install as from the wheel.

    Hydra finds plugins by listing the ``hydra_plugins`` directories on disk; an editable install maps
    ``hydra_plugins.mnist_exp_optuna`` in through an import hook that such a listing does not see, so
    the class is registered here. Its configs are stored after Hydra's scan, so they win over those of
    a hydra-optuna-sweeper still installed in the environment.
    """
    from hydra.core.plugins import Plugins

    plugins = Plugins.instance()  # the scan of the installed plugins, once per process
    try:
        from hydra_plugins.mnist_exp_optuna import optuna_sweeper
    except ImportError:  # a checkout on PYTHONPATH with an install that predates the plugin: pip install -e . again
        return
    optuna_sweeper.store_configs()
    plugins.register(optuna_sweeper.OptunaSweeper)


class OptunaSearch:
    """The sweeper's work; ``hydra_plugins.mnist_exp_optuna.optuna_sweeper.OptunaSweeper`` passes its config here."""

    def __init__(self, sampler: DictConfig, pruner: DictConfig, direction: str, storage: str | None, study_name: str,
                 n_trials: int, n_jobs: int, max_failure_rate: float, params: DictConfig | None):
        self.sampler, self.pruner = sampler, pruner
        self.direction, self.storage, self.study_name = direction, storage, study_name
        self.n_trials, self.n_jobs, self.max_failure_rate = n_trials, n_jobs, max_failure_rate
        self.params = params or {}

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(config=config, hydra_context=hydra_context,
                                                                task_function=task_function)

    def sweep(self, arguments: list[str]) -> None:
        optuna = import_optuna()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the search says what it does below, in order
        self.check_settings()
        space, fixed = search_space([f"{key}={value}" for key, value in self.params.items()] + list(arguments))
        study = optuna.create_study(study_name=self.study_name, storage=open_storage(self.storage),
                                    sampler=instantiate(self.sampler), pruner=instantiate(self.pruner),
                                    direction=self.direction, load_if_exists=True)
        where = without_password(self.storage)
        log.info("Study %s in %s: %d trials so far; %d more, %d at a time, sampler %s, pruner %s", self.study_name,
                 where, len(study.trials), self.n_trials, self.n_jobs, type(study.sampler).__name__,
                 type(study.pruner).__name__)
        log.info("Search space: %s", ", ".join(f"{key} {describe(d)}" for key, d in space.items()) or "none")
        remaining, metric = self.n_trials, self.config.optimized_metric
        while remaining > 0:
            trials = [study.ask(space) for _ in range(min(self.n_jobs, remaining))]
            for trial in trials:
                trial.set_user_attr("overrides", [*fixed, *(f"{key}={override_value(value)}"
                                                            for key, value in trial.params.items())])
            try:
                returns = self.launch(trials)
            except BaseException:  # a stopped search: its trials did not finish
                for trial in trials:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
                raise
            failed = [ret for trial, ret in zip(trials, returns) if not tell(study, trial, ret, metric)]
            if len(failed) > self.max_failure_rate * len(returns):
                log.error("%d of %d trials failed (hydra.sweeper.max_failure_rate=%s): the search stops",
                          len(failed), len(returns), self.max_failure_rate)
                failed[0].return_value  # raises the job's error, as Hydra's sweepers do
            remaining -= len(trials)
        report_best_trial(Path(self.config.hydra.sweep.dir), metric, study)

    def check_settings(self) -> None:
        if self.direction not in DIRECTIONS:
            raise UserError(f"hydra.sweeper.direction={self.direction} is not one of: {', '.join(DIRECTIONS)}."
                            f"{did_you_mean(self.direction, DIRECTIONS)}")
        if self.n_trials < 0 or self.n_jobs < 1 or not 0 <= self.max_failure_rate <= 1:
            raise UserError(f"hydra.sweeper needs n_trials >= 0, n_jobs >= 1 and max_failure_rate in [0, 1] (got "
                            f"{self.n_trials}, {self.n_jobs}, {self.max_failure_rate}).")
        if not self.storage:
            raise UserError("hydra.sweeper.storage is empty: the jobs reach their trials through it. Leave the "
                            "default (SQLite in the sweep directory) or give a database URL or a journal file path.")
        pruning = not self.pruner._target_.endswith("NopPruner")
        objective = self.config.optimized_metric
        if pruning and objective not in EPOCH_OBJECTIVES:
            raise UserError(f"optimized_metric={objective} is not measured after every epoch, so a pruner cannot "
                            f"compare trials by it: optimise one of {', '.join(EPOCH_OBJECTIVES)}, or "
                            "hydra/sweeper/pruner=none.")

    def launch(self, trials: list) -> list[JobReturn]:
        """Each trial as a job whose number is the trial's; in parts where another worker's trials came between."""
        returns = []
        for run in consecutive_runs(trials):
            overrides = [[*trial.user_attrs["overrides"], f"hydra.sweeper.trial={trial.number}"] for trial in run]
            returns += self.launcher.launch(overrides, initial_job_idx=run[0].number)
        for trial, ret in zip(trials, returns):
            trial.set_user_attr("run_dir", ret.hydra_cfg.hydra.runtime.output_dir)
        return returns


def import_optuna():
    try:
        import optuna
    except ImportError:
        raise UserError("hydra/sweeper=optuna needs Optuna: pip install -e '.[sweep]' (make installs it).") from None
    return optuna


def tell(study, trial, ret: JobReturn, metric: str) -> bool:
    """Tell the study how the trial's job ended, and print it; False for a failure (an error, or no number)."""
    from optuna.trial import TrialState

    value = ret._return_value  # ``return_value`` would raise a failed job's error
    if ret.status == JobStatus.COMPLETED:
        try:
            told = study.tell(trial, float(value))  # NaN: Optuna records a failure
            outcome = f"{metric} {value:.4f}" if told.state == TrialState.COMPLETE else f"failed, {metric} is {value}"
        except (TypeError, ValueError):
            told = study.tell(trial, state=TrialState.FAIL)
            outcome = f"failed, it returned {value!r}, not a number"
    elif isinstance(value, TrialPruned):
        told, outcome = study.tell(trial, state=TrialState.PRUNED), value
    else:
        told, outcome = study.tell(trial, state=TrialState.FAIL), f"failed, {value}"
    # Printed, not logged: in this process the logging goes to the last job's train.log.
    print(f"Trial {trial.number}: {outcome}", flush=True)
    return told.state != TrialState.FAIL


def consecutive_runs(trials: list) -> list[list]:
    runs = []
    for trial in trials:
        if runs and trial.number == runs[-1][-1].number + 1:
            runs[-1].append(trial)
        else:
            runs.append([trial])
    return runs


def search_space(lines: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The swept keys' distributions and the fixed overrides, from ``key=value`` lines; a later line for a key wins."""
    space, fixed = {}, {}
    for override in OverridesParser.create().parse_overrides(lines):
        key = override.get_key_element()
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
    if override.is_interval_sweep():
        low, high, log_scale = sweep.start, sweep.end, "log" in sweep.tags
        if "int" in sweep.tags:
            return IntDistribution(int(low), int(high), log=log_scale)
        return FloatDistribution(low, high, log=log_scale)
    values = list(override.sweep_iterator(transformer=Transformer.encode))
    if not values:
        raise empty_sweep(override.input_line)
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
