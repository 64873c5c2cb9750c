"""The Optuna search behind ``hydra/sweeper=optuna``: ask trials, launch them as jobs, tell Optuna how they ended.

- The search space is ``hydra.sweeper.params`` and the command line's sweeps, in Hydra's syntax
  (``mnist_exp.sweeps.space``), and what ``custom_search_space`` draws.
- The study is created, or loaded if it exists, from ``storage`` and ``study_name``: processes given
  the same two share one study (no trial number twice), and the same command run again continues it.
  ``n_trials`` counts the trials of this command.
- Trials go to the launcher ``n_jobs`` at a time as jobs numbered by their trial number, so two
  workers sharing a sweep directory never share a job directory. A job reaches its trial through the
  storage (``mnist_exp.sweeps.trial``) to report each epoch and be pruned; it tells nothing itself.
- Any outcome of a job is a trial state: a finite number completes it, anything else fails it (the
  reason in sweep.csv); more failures than ``max_failure_rate`` stop the search with an error.
- At the end the study's best trial, of every worker and every command, is printed and written to
  ``best_trial.yaml`` (``mnist_exp.sweeps.summary``).
"""

import logging
import math
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mnist_exp.errors import UserError, first_line
from mnist_exp.sweeps.space import (describe, draw_more, grid_points_left, grid_space, load_function, override_value,
                                    search_space, trials_to_run)
from mnist_exp.run.commands import program, searchpath
from mnist_exp.runs import CHECKPOINT_DIR, METRICS_FILE, as_override, atomic_file, objectives
from mnist_exp.sweeps.summary import record_failed_trial, report_best_trials
from mnist_exp.sweeps.study_checks import (check_continued_study, check_epochs_to_prune, check_same_search,
                                           check_seed_is_read, check_settings, check_space_fits,
                                           check_validation_split, trials_precision, warn_of_startup_trials)
from mnist_exp.sweeps.trial import (TrialPruned, end_stopped_trial, open_search_storage, storage_file, tell_recorded,
                                    told, without_password)

log = logging.getLogger("mnist_exp")


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
                 n_trials: int, n_jobs: int, max_failure_rate: float, params: DictConfig | None,
                 custom_search_space: str | None = None, heartbeat_interval: int | None = None,
                 max_retry: int | None = None):
        self.sampler, self.pruner = sampler, pruner
        # Several: multi-objective. One that is no direction (null, a number) is refused by check_settings.
        self.directions = list(direction) if isinstance(direction, Sequence) and not isinstance(direction, str) \
            else [direction]
        self.storage, self.study_name = storage, study_name
        self.n_trials, self.n_jobs, self.max_failure_rate = n_trials, n_jobs, max_failure_rate
        self.params = params or {}
        self.custom_search_space = custom_search_space
        self.heartbeat_interval, self.max_retry = heartbeat_interval, max_retry

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.config = config
        # How the best trial runs again: this package's entry point, or the script of another Hydra app.
        self.own = task_function.__module__.startswith("mnist_exp")
        self.program = [*program(config.hydra), *searchpath(config.hydra)]  # a best trial's command runs it alone
        self.launcher = Plugins.instance().instantiate_launcher(config=config, hydra_context=hydra_context,
                                                                task_function=task_function)

    def sweep(self, arguments: list[str]) -> None:
        optuna = import_optuna()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the search says what it does below, in order
        check_settings(self)
        space, fixed = search_space([f"{key}={value}" for key, value in self.params.items()] + list(arguments))
        check_epochs_to_prune(self, space)
        check_space_fits(self.config, space)
        check_validation_split(self, space)
        extend = load_function(self.custom_search_space) if self.custom_search_space else None
        grid = grid_space(self.sampler, space)
        sampler = build_from_node(self.sampler, "sampler", **grid)
        pruner = build_from_node(self.pruner, "pruner")
        check_seed_is_read(self.sampler, space)  # once Optuna takes its settings
        new_file = self.storage and (file := storage_file(self.storage)) and not Path(file).exists()
        if self.n_trials == 0 and (not self.storage or new_file):  # refused before a file is made
            raise self.nothing_to_report()
        storage = open_search_storage(self.storage, self.heartbeat_interval, self.max_retry) if self.storage else None
        # A mnist_exp run returns the metrics optimized_metric names; any other Hydra app, what its function returns.
        metric = ", ".join(objectives(self.config.get("optimized_metric") or "the task function's return value"))
        continued = self.continued_trials(optuna, storage, metric, fixed, space)
        if not continued and self.n_trials == 0:  # 0 reports the best trial of a study that has trials
            raise self.nothing_to_report()
        check_free_job_numbers(Path(self.config.hydra.sweep.dir), continued)
        check_same_search(Path(self.config.hydra.sweep.dir), self.study_name)  # one whose jobs have no record yet
        study = optuna.create_study(study_name=self.study_name, storage=storage, sampler=sampler, pruner=pruner,
                                    directions=self.directions, load_if_exists=True)
        study.set_user_attr("metric", metric)
        # The command's config where Hydra's own sweeper writes it; whole, as workers sharing the directory write it.
        with atomic_file(Path(self.config.hydra.sweep.dir) / "multirun.yaml", "w") as f:
            f.write(OmegaConf.to_yaml(self.config))
        if not continued:
            study.set_user_attr("fixed", fixed)
            study.set_user_attr("precision", trials_precision(self, space))
        where = without_password(self.storage) if self.storage else "memory (it ends with this command)"
        log.info("Study %s in %s: %d trials so far; %s, %d at a time, sampler %s, pruner %s; direction %s, "
                 "metric %s", self.study_name, where, len(study.trials), trials_to_run(self.n_trials, study, grid),
                 self.n_jobs, type(study.sampler).__name__, type(study.pruner).__name__, ", ".join(self.directions),
                 metric)
        if not self.storage:
            log.warning("hydra.sweeper.storage=null: the study lives in this process alone; it cannot be continued "
                        "by a later command or shared with other workers")
        log.info("Search space: %s%s", ", ".join(f"{key} {describe(d)}" for key, d in space.items()) or "none",
                 f", then {self.custom_search_space}" if self.custom_search_space else "")
        warn_of_startup_trials(self, study)
        # A killed search's trials whose jobs had finished (joblib's workers go on after their parent): told, not
        # failed when their heartbeats stop and trained again.
        recorded_metrics = objectives(self.config.get("optimized_metric") or [])  # the keys of a job's metrics.json
        for running in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            tell_recorded(study, running.number, recorded_metrics)
        remaining, told, failures, last = self.n_trials, 0, 0, ""
        while remaining > 0 and not grid_exhausted(study):
            with warnings.catch_warnings():  # experimental in Optuna, which says so on every call
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)  # killed workers' trials: failed, queued to be retried
            if not (batch := min(self.n_jobs, remaining, grid_points_left(study, grid))):
                break  # each point of the grid taken by a trial, those of other workers still running
            trials = [study.ask(space) for _ in range(batch)]
            try:
                for trial in trials:  # the function may draw more into trial.params
                    extra = draw_more(extend, self.custom_search_space, self.config, trial) if extend else {}
                    values = {**trial.params, **extra}
                    trial.set_user_attr("overrides", [*fixed, *(f"{k}={override_value(v)}" for k, v in values.items())])
                returns = self.launch(trials)
            except BaseException:  # a stopped search: its unfinished trials fail, their params queued to run again
                for trial in trials:
                    end_stopped_trial(study, trial, recorded_metrics)
                raise
            reasons = [tell(study, trial, ret, metric, len(self.directions)) for trial, ret in zip(trials, returns)]
            told, failures = told + len(reasons), failures + sum(reason is not None for reason in reasons)
            remaining -= len(trials)
            last = next((reason for reason in reversed(reasons) if reason is not None), last)
            if failures > self.max_failure_rate * told:
                report_best_trials(Path(self.config.hydra.sweep.dir), metric, study, self.program)
                raise UserError(f"{failures} of {told} trials failed, more than hydra.sweeper.max_failure_rate="
                                f"{self.max_failure_rate} allows: the search stops ({last}).")
        report_best_trials(Path(self.config.hydra.sweep.dir), metric, study, self.program)
        if told and failures == told:  # max_failure_rate=1 lets every trial fail; the command still failed
            raise UserError(f"All {told} trials of this command failed ({last.rstrip('.')}): sweep.csv has each reason.")

    def nothing_to_report(self) -> UserError:
        return UserError(f"hydra.sweeper.n_trials=0 runs no trial, and study {self.study_name} has none to report: "
                         "give hydra.sweeper.n_trials=1 or more.")

    def continued_trials(self, optuna, storage, metric: str, fixed: list[str], space: dict) -> int:
        """The trial count of the study this command continues (0: a new one), checked before the study is made,
        so a refused command leaves no new study behind."""
        if storage is None or self.study_name not in optuna.get_all_study_names(storage):
            return 0
        study = optuna.load_study(study_name=self.study_name, storage=storage)
        check_continued_study(study, self, metric, fixed, space)
        return len(study.trials)

    def launch(self, trials: list) -> list[JobReturn]:
        """Each trial as a job whose number is the trial's; in parts where another worker's trials came between."""
        returns = []
        for run in consecutive_runs(trials):
            overrides = [[*trial.user_attrs["overrides"], f"hydra.sweeper.trial={trial.number}"] for trial in run]
            returns += self.launcher.launch(overrides, initial_job_idx=run[0].number)
        for trial, ret in zip(trials, returns):
            trial.set_user_attr("run_dir", ret.hydra_cfg.hydra.runtime.output_dir)
        return returns


def check_free_job_numbers(sweep_dir: Path, trials: int) -> None:
    """Trials run as jobs numbered from the study's trial count on: refuse a sweep directory whose jobs of those
    numbers hold runs (another study's, or a grid sweep's), which the search would overwrite."""
    taken = [job for job in sweep_dir.glob("*/") if (number := job.name.split("_")[0]).isdigit() and int(number) >= trials
             and ((job / METRICS_FILE).exists() or (job / CHECKPOINT_DIR).exists())]
    if taken:
        raise UserError(f"{sweep_dir} holds {len(taken)} run(s) this search would overwrite, not trials of its study: "
                        "give a new hydra.sweep.dir (or leave it out), or continue the study that made them.")


def import_optuna():
    try:
        import optuna
    except ImportError:
        raise UserError("hydra/sweeper=optuna needs Optuna: pip install -e '.[sweep]' (make installs it).") from None
    return optuna


def build_from_node(node: DictConfig, part: str, **extra: Any) -> Any:
    """The sampler or pruner ``hydra.sweeper.<part>`` describes; a value Optuna refuses is one line naming them all."""
    seed = node.get("seed") if node else None  # NumPy's words for another: "Cannot cast scalar from dtype('<U3')..."
    if seed is not None and not (type(seed) is int and 0 <= seed < 2**32):
        raise UserError(f"hydra.sweeper.{part}.seed={seed} is not a seed: give a whole number from 0 to 2**32-1, e.g. "
                        f"hydra.sweeper.{part}.seed=0, or leave it out for a random start.")
    try:
        with warnings.catch_warnings():  # QMC, GP...: "experimental", on the line of any refusal of their settings
            warnings.simplefilter("ignore", import_optuna().exceptions.ExperimentalWarning)
            return instantiate(node, **extra)
    except InstantiationException as error:
        name, reason = node._target_.rsplit('.', 1)[-1], first_line(error.__cause__ or error)
        if key := re.search(r"unexpected keyword argument '(\w+)'", reason):  # a setting of another sampler
            raise UserError(f"The {part} {name} has no setting {key[1]}: leave out hydra.sweeper.{part}.{key[1]}, or "
                            f"remove it from a config that sets it with '~hydra.sweeper.{part}.{key[1]}'.") from error
        settings = ", ".join(as_override(f"hydra.sweeper.{part}.{key}", value) for key, value in node.items()
                             if key != "_target_")
        raise UserError(f"Cannot build the {part} {name} from {settings or 'its defaults'}: {reason}") from error


def tell(study, trial, ret: JobReturn, metric: str, count: int = 1) -> str | None:
    """Tell the study how the trial's job ended, and print it; the reason it failed, or None.

    A number (a Python or NumPy number, a one-element tensor), or a sequence of ``count`` of them for several
    objectives, completes the trial; anything else (None, NaN, text, a tuple of the wrong length) fails it, and
    so does an error. Pruned is pruned.
    """
    from optuna.trial import TrialState

    value = ret._return_value  # ``return_value`` would raise a failed job's error
    reason = None
    if ret.status == JobStatus.COMPLETED:
        numbers = objective_numbers(value, count)
        if numbers is None:
            wanted = "a finite number" if count == 1 else f"{count} finite numbers"
            reason = f"it returned {value!r}, not {wanted}"
            told(study, trial, state=TrialState.FAIL)
        else:
            told(study, trial, numbers[0] if count == 1 else numbers)
        outcome = f"failed, {reason}" if reason else f"{metric} {', '.join(f'{n:.4f}' for n in numbers)}"
    elif isinstance(value, TrialPruned):
        told(study, trial, state=TrialState.PRUNED)
        outcome = str(value)
    else:
        # A one-line UserError says it all; any other error is named by its type too, as a traceback would.
        reason = str(value) if isinstance(value, UserError) else f"{type(value).__name__}: {value}".rstrip(": ")
        told(study, trial, state=TrialState.FAIL)
        outcome = f"failed, {reason}"
    if reason and ret.status == JobStatus.COMPLETED and ret.hydra_cfg is not None:
        record_failed_trial(ret.hydra_cfg.hydra, reason)  # sweep.csv says why, not "completed"
    # Printed, not logged: in this process the logging goes to the last job's train.log.
    print(f"Trial {trial.number}: {outcome}", flush=True)
    return reason


def grid_exhausted(study) -> bool:
    return hasattr(study.sampler, "is_exhausted") and study.sampler.is_exhausted(study)


def objective_numbers(value: Any, count: int) -> list[float] | None:
    """A job's return value as the ``count`` finite numbers Optuna is told, or None where it is not that."""
    # A sequence: a value per objective (optimized_metric=[best_val/acc] is one objective, given as a list).
    values = list(value) if isinstance(value, (list, tuple)) else [value] if count == 1 else []
    numbers = [objective_number(item) for item in values]
    return numbers if len(numbers) == count and None not in numbers else None


def objective_number(value: Any) -> float | None:
    """A job's return value as the finite number Optuna is told, or None where it is not one."""
    if hasattr(value, "numel") and hasattr(value, "item"):  # a tensor: one element only
        value = value.item() if value.numel() == 1 else None
    elif hasattr(value, "item") and getattr(value, "size", None) == 1:  # a NumPy number or one-element array
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def consecutive_runs(trials: list) -> list[list]:
    runs = []
    for trial in trials:
        if runs and trial.number == runs[-1][-1].number + 1:
            runs[-1].append(trial)
        else:
            runs.append([trial])
    return runs
