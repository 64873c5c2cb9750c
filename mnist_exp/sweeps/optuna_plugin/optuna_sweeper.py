"""``hydra/sweeper=optuna``: the sweeper's config, its sampler and pruner options, and the plugin class.

The search itself is ``mnist_exp.sweeps.search``; this module imports neither it nor Optuna, so Hydra's
plugin scan stays quiet where the sweep extra is not installed.
"""

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from omegaconf import MISSING

# Each option of hydra/sweeper/sampler and hydra/sweeper/pruner: the Optuna class and the arguments a
# search commonly sets. Add any other argument of the class with +hydra.sweeper.sampler.<name>=<value>.
# No seed by default: a fixed seed would propose the same trials again when a search is continued.
SAMPLERS = {
    "tpe": {"_target_": "optuna.samplers.TPESampler", "seed": None, "n_startup_trials": 10},
    "random": {"_target_": "optuna.samplers.RandomSampler", "seed": None},
    "cmaes": {"_target_": "optuna.samplers.CmaEsSampler", "seed": None, "n_startup_trials": 1},
    "gp": {"_target_": "optuna.samplers.GPSampler", "seed": None, "n_startup_trials": 10},
    "nsgaii": {"_target_": "optuna.samplers.NSGAIISampler", "seed": None, "population_size": 50},
    # Its seed changes the sequence only where it is scrambled.
    "qmc": {"_target_": "optuna.samplers.QMCSampler", "seed": None, "qmc_type": "sobol", "scramble": False},
    # Every combination of the listed values in turn (choice, a,b,c, range): the sweeper gives it the grid.
    "grid": {"_target_": "optuna.samplers.GridSampler", "seed": None},
}
PRUNERS = {
    "none": {"_target_": "optuna.pruners.NopPruner"},
    # A trial stops at an epoch where its best so far is worse than the median of the other trials' at that epoch.
    "median": {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 5, "n_warmup_steps": 0,
               "interval_steps": 1},
    "hyperband": {"_target_": "optuna.pruners.HyperbandPruner", "min_resource": 1, "max_resource": "auto",
                  "reduction_factor": 3},
}


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.mnist_exp_optuna.optuna_sweeper.OptunaSweeper"
    _recursive_: bool = False  # the sweeper builds the sampler and pruner itself, after checking Optuna is there
    defaults: list = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "none"}])
    sampler: Any = MISSING
    pruner: Any = MISSING
    # Of optimized_metric (another Hydra app: of its function's return value); a list, one per metric: multi-objective.
    direction: Any = "maximize"
    # A database URL (sqlite:///..., postgresql://..., mysql://...), the path of an Optuna journal file, or null:
    # in memory, for this command alone (no pruning, nothing to continue).
    storage: Optional[str] = "sqlite:///${hydra.sweep.dir}/optuna.db"
    study_name: str = "search"
    n_trials: int = 20  # trials this command runs; the study keeps those of earlier commands and other workers
    n_jobs: int = 1  # trials asked at once and launched together (hydra/launcher=joblib runs them in parallel)
    # Seconds between a running trial's heartbeats (a database storage); a trial silent for two is failed and
    # retried, up to max_retry times. null: no heartbeat, and the trial of a killed worker stays running.
    heartbeat_interval: Optional[int] = 60
    max_retry: Optional[int] = 3
    max_failure_rate: float = 0.0  # the share of a batch's trials that may fail before the search stops
    params: Optional[dict] = None  # key: Hydra sweep syntax, e.g. optimizer.lr: tag(log, interval(1e-4, 1e-1))
    # A function's dotted path, called as f(config, trial) for each trial after params are drawn: it may draw more
    # (trial.suggest_float(...), conditional on what was drawn) and return fixed overrides {key: value}, or None.
    custom_search_space: Optional[str] = None
    trial: Optional[int] = None  # set by the sweeper in each job's config: the number of the trial it runs


def store_configs() -> None:
    store = ConfigStore.instance()
    store.store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="mnist_exp")
    for group, options in (("hydra/sweeper/sampler", SAMPLERS), ("hydra/sweeper/pruner", PRUNERS)):
        for name, node in options.items():
            store.store(group=group, name=name, node=node, provider="mnist_exp")


store_configs()


class OptunaSweeper(Sweeper):
    """Asks Optuna for trials, launches them as jobs with the configured launcher, tells it their results."""

    def __init__(self, **config: Any) -> None:
        from mnist_exp.sweeps.search import OptunaSearch

        self.trial = config.pop("trial", None)  # a job's own key: the search itself runs no one trial
        self.search = OptunaSearch(**config)

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.search.setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.launcher_jobs = config.hydra.launcher.get("n_jobs")

    def sweep(self, arguments: list[str]) -> None:
        from mnist_exp.errors import UserError

        if self.trial is not None:
            raise UserError(f"hydra.sweeper.trial={self.trial} is the search's to set, in each job to the number of "
                            "the trial it runs: leave it out.")
        check_heartbeat_settings(self.search.storage, self.search.heartbeat_interval, self.search.max_retry)
        check_parallel_trials(self.launcher_jobs, self.search.n_jobs)
        self.search.sweep(arguments)


def check_parallel_trials(launcher_jobs: int | None, n_jobs: int) -> None:
    """The launcher runs at once the trials the search hands it together: ``n_jobs`` of them. joblib counts a negative
    ``n_jobs`` back from its cores (-1, its default: one job per core)."""
    from mnist_exp.run.hydra_settings import jobs_at_once

    at_once = None if launcher_jobs is None else jobs_at_once(launcher_jobs)
    if at_once is not None and at_once > max(n_jobs, 1):
        from mnist_exp.errors import UserError

        runs = ("that many jobs at once" if at_once == launcher_jobs else f"{at_once} jobs at once here (joblib counts "
                "back from the cores: -1, its default, is one per core)")
        raise UserError(f"hydra.launcher.n_jobs={launcher_jobs} runs {runs}, and the search hands it "
                        f"hydra.sweeper.n_jobs={n_jobs} trial(s) at a time: give hydra.sweeper.n_jobs={at_once} "
                        "too, for trials asked and run together.")


def check_heartbeat_settings(storage: str | None, heartbeat_interval: int | None, max_retry: int | None) -> None:
    """Heartbeats and retries are a database's (with a journal file or no storage, a value other than the default
    changes nothing), and retries follow heartbeats."""
    from mnist_exp.errors import UserError

    defaults = (OptunaSweeperConf.heartbeat_interval, OptunaSweeperConf.max_retry)
    shown = ["null" if value is None else value for value in (heartbeat_interval, max_retry)]
    if (not storage or "://" not in storage) and (heartbeat_interval, max_retry) != defaults:
        where = f"{storage} is a journal file, which has" if storage else "hydra.sweeper.storage=null keeps the study " \
            "in this process, with"
        raise UserError(f"hydra.sweeper.heartbeat_interval={shown[0]} and max_retry={shown[1]} take effect "
                        f"with a database storage, and {where} no heartbeats: leave them out, or give a database "
                        "(sqlite:///<file>, postgresql://...).")
    if heartbeat_interval is None and max_retry != defaults[1]:
        raise UserError(f"hydra.sweeper.max_retry={shown[1]} retries the trials of workers whose heartbeats stopped, and "
                        "hydra.sweeper.heartbeat_interval=null sends none: leave max_retry out, or give both.")
    for key, value, least, null in (("heartbeat_interval", heartbeat_interval, 1, "no heartbeats"),
                                    ("max_retry", max_retry, 0, "retries without end")):
        if value is not None and value < least:  # Optuna takes a 0 interval for no heartbeats, and fails on a negative
            raise UserError(f"hydra.sweeper.{key}={value} is out of range: give at least {least}, or null for {null}.")
