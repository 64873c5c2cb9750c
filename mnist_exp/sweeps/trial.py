"""A trial of an Optuna search, seen from the job that runs it: its objective reported after every
epoch, the stop when the study prunes it, and its heartbeat.

The sweeper (``mnist_exp.sweeps.search``) puts the trial's number in the job's config as
``hydra.sweeper.trial``; the job opens the study through ``hydra.sweeper.storage`` and
``study_name``, not through memory it shares with the sweeper, so this works in whichever process
the launcher runs the job: the sweeper's own, a joblib worker, a SLURM node.
"""

import json
import logging
import math
import re
import threading
import time
import warnings
from pathlib import Path

from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mnist_exp.run import distributed
from mnist_exp.run.callbacks import Callback
from mnist_exp.errors import UserError, first_line
from mnist_exp.runs import Status, number, objectives, read_metrics

log = logging.getLogger("mnist_exp")

# Objectives a trial can report after every epoch; a pruner needs one of them.
EPOCH_OBJECTIVES = ("best_val/acc", "val/acc", "val/loss")


class TrialPruned(Exception):
    """Raised at an epoch's end when the study prunes the trial: the run is tested and recorded as pruned."""


def without_password(url: str) -> str:
    """A database URL as logs and errors show it: its password, if any, as ***."""
    return re.sub(r"(://[^:/@]*):[^/]*@", r"\1:***@", url)


def with_driver(url: str) -> str:
    """``postgresql://`` names SQLAlchemy's psycopg2 driver; where only psycopg 3 (the ``postgres`` extra) is
    installed, the same URL goes through it."""
    import importlib.util

    if url.startswith("postgresql://") and not importlib.util.find_spec("psycopg2") and importlib.util.find_spec(
            "psycopg"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def storage_file(storage: str) -> str | None:
    """The file of an SQLite or journal storage; None for a database server."""
    return storage.removeprefix("sqlite:///") if "://" not in storage or storage.startswith("sqlite:///") else None


def open_storage(storage: str, heartbeat_interval: int | None = None, max_retry: int | None = None):
    """A database URL as Optuna's RDB storage; a path without '://' as its journal file (one shared filesystem).

    ``heartbeat_interval`` (seconds; a database only): the job of a trial records a heartbeat that often, and a
    trial whose heartbeats stopped for two intervals (its worker was killed) is failed by the next worker to
    ask for trials, which retries it (``max_retry`` times at most) as a new trial with the same params.
    """
    import optuna
    import sqlalchemy

    path = storage_file(storage)
    if path and Path(path).is_dir():
        example = Path(path) / ("journal.log" if "://" not in storage else "optuna.db")
        raise UserError(f"hydra.sweeper.storage={storage} is a directory: give the study's file in it, e.g. "
                        f"hydra.sweeper.storage={'' if '://' not in storage else 'sqlite:///'}{example}.")
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)  # the sweep directory, before any job makes it
    if "://" not in storage:
        return open_journal(storage)
    # Parallel jobs and the sweeper write to one SQLite file: wait for its lock rather than fail after 5 s.
    options = {"engine_kwargs": {"connect_args": {"timeout": 60}}} if storage.startswith("sqlite:") else {}
    if heartbeat_interval:
        # Experimental in Optuna, which says so on every use; meant there for Study.optimize, used here with ask/tell.
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used with Study.optimize")
        options.update(heartbeat_interval=heartbeat_interval, grace_period=2 * heartbeat_interval,
                       heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry))
    for attempt in range(1, 6):
        try:
            return optuna.storages.RDBStorage(with_driver(storage), **options)
        except (sqlalchemy.exc.ArgumentError, ImportError) as error:  # an unknown scheme, a missing driver
            raise UserError(f"hydra.sweeper.storage={without_password(storage)} cannot be opened ({error}). Give "
                            "sqlite:///<file>, postgresql://user:password@host/db (with its driver: pip install -e "
                            "'.[postgres]'), mysql://..., or a journal file's path.") from error
        except sqlalchemy.exc.DatabaseError as error:
            retried = (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError)
            if storage.startswith("sqlite") and not isinstance(error, retried):  # a file that is no database
                reason = str(getattr(error, "orig", error)).strip()
                raise UserError(f"hydra.sweeper.storage={without_password(storage)} is not a database Optuna can read "
                                f"({reason}): restore the study's file from a copy, or give another storage (a new "
                                "hydra.sweep.dir).") from error
            # Workers that start together on a new database both create its tables: one wins, the others retry.
            if attempt == 5:
                reason = str(getattr(error, "orig", error)).strip().splitlines()[0]
                raise UserError(f"hydra.sweeper.storage={without_password(storage)} cannot be reached: "
                                f"{without_password(reason)}. Check the server, user and password.") from error
            time.sleep(0.5 * attempt)


# The storage the search in this process opened, by its URL: the search's jobs that run here (the basic launcher's)
# take it rather than open it again, which replays a journal file whole (0.2 s a job at 2,000 trials).
SEARCH_STORAGE: dict[str, object] = {}


def open_search_storage(storage: str, heartbeat_interval: int | None, max_retry: int | None):
    """``open_storage`` for a search, kept for its jobs in this process."""
    SEARCH_STORAGE.clear()
    SEARCH_STORAGE[storage] = opened = open_storage(storage, heartbeat_interval, max_retry)
    return opened


def open_journal(path: str):
    """Optuna's journal in the file at ``path``, refused where a line is not one of Optuna's records: Optuna would
    skip a last line it cannot read (another program's file of one line) and append after it, leaving a file that
    no one can read."""
    import optuna

    if reason := journal_problem(Path(path)):
        raise UserError(f"hydra.sweeper.storage={path} is not an Optuna journal file ({reason}): restore the study's "
                        "file from a copy, or give another storage (a new file).")
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))


def journal_problem(path: Path) -> str | None:
    """Why the file is no journal of Optuna's records, one JSON object a line; None where it is one, or is absent."""
    try:
        with path.open("rb") as f:
            for number, line in enumerate(f, start=1):
                if not line.endswith(b"\n"):  # another worker's record as it is written: Optuna reads it later
                    break
                try:
                    record = json.loads(line)
                except ValueError as error:  # not JSON, not text
                    return f"line {number}: {first_line(error)}"
                if not (isinstance(record, dict) and "op_code" in record):
                    return f"line {number} is no record of Optuna's"
    except FileNotFoundError:
        return None
    return None


def trial_callbacks(hydra_cfg: DictConfig, objective) -> list[Callback]:
    """For a job that runs a trial: its heartbeat, and the callback that reports to the study; [] for any other run."""
    sweeper = hydra_cfg.sweeper
    number = OmegaConf.select(sweeper, "trial")
    if number is None or hydra_cfg.mode != RunMode.MULTIRUN or not sweeper.storage:
        return []
    import optuna

    storage = SEARCH_STORAGE.get(sweeper.storage) or open_storage(sweeper.storage,
                                                                  OmegaConf.select(sweeper, "heartbeat_interval"))
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(sweeper.study_name),
                                                               number)
    if not storage.get_trial(trial_id).state.is_finished():  # a requeued job's trial may have been failed since
        # Where the job writes its record, which a stopped search reads whatever hydra.sweep.subdir names the job.
        storage.set_trial_user_attr(trial_id, "run_dir", hydra_cfg.runtime.output_dir)
    if getattr(storage, "get_heartbeat_interval", lambda: None)():  # a database with heartbeats (not a journal)
        start_heartbeat(storage, trial_id)
    names = objectives(objective) if objective is not None else []  # [best_val/acc]: one objective, as a list
    objective = names[0] if len(names) == 1 else None
    if objective not in EPOCH_OBJECTIVES or distributed.is_distributed():
        return []  # several objectives, or DDP processes that would have to agree on a prune: trained to the end
    study = optuna.load_study(study_name=sweeper.study_name, storage=storage, pruner=instantiate(sweeper.pruner))
    log.info("Trial %d of study %s: %s reported after every epoch", number, sweeper.study_name, objective)
    return [ReportToStudy(optuna.trial.Trial(study, trial_id), objective)]


def start_heartbeat(storage, trial_id: int) -> None:
    """Record the trial's heartbeat every interval while it runs (a thread that ends with it, or with the process)."""
    from optuna.trial import TrialState

    def beat() -> None:
        while storage.get_trial(trial_id).state == TrialState.RUNNING:
            storage.record_heartbeat(trial_id)
            time.sleep(storage.get_heartbeat_interval())

    threading.Thread(target=beat, name=f"optuna-heartbeat-{trial_id}", daemon=True).start()


class ReportToStudy(Callback):
    """After each epoch: the objective so far to the trial, then a stop if the study's pruner says so."""

    def __init__(self, trial, objective: str):
        self.trial = trial
        self.objective = objective

    def on_epoch_end(self, trainer, metrics: dict[str, float], is_best: bool) -> None:
        value = trainer.state.best_val_acc if self.objective == "best_val/acc" else metrics[self.objective]
        if math.isnan(value):  # no validation split: nothing to compare trials by
            return
        epoch = metrics["epoch"]
        self.trial.report(value, epoch)
        if epoch < trainer.settings.epochs and self.trial.should_prune():
            log.info("Pruned by the search after epoch %d (%s %.4f)", epoch, self.objective, value)
            raise TrialPruned(f"pruned by the search after epoch {epoch}")


def told(study, trial, *args, **kwargs) -> None:
    """``study.tell``; the grid sampler's stop once every point is told (meant for ``study.optimize``) is no error:
    the trial is recorded before it, and the search asks no more (``grid_exhausted``). A trial told already (its
    finished job's result, by a search continued after a kill) keeps that result."""
    try:
        study.tell(trial, *args, skip_if_finished=True, **kwargs)
    except RuntimeError as error:
        if "Study.stop" not in str(error):
            raise


def end_stopped_trial(study, trial, metrics: list[str]) -> None:
    """A trial of a search that a signal stopped: its result where its job had ended (the jobs of a batch report
    together; the job named its directory in the trial), else failed, with its params queued to train again when
    the search continues (not a grid's point: Optuna's grid sampler counts a failed point as visited, and takes no
    queued one without every key)."""
    from optuna.trial import TrialState

    if study.get_trials(deepcopy=False)[trial.number].state.is_finished() or tell_recorded(study, trial.number,
                                                                                            metrics):
        return
    told(study, trial, state=TrialState.FAIL)
    if type(study.sampler).__name__ != "GridSampler":
        study.enqueue_trial(trial.params)


def tell_recorded(study, trial_number: int, metrics: list[str]) -> bool:
    """Tell the study the result its trial's job recorded (metrics.json, in the directory the job named in the
    trial), completed or pruned; False where the job recorded none."""
    from optuna.trial import TrialState

    run_dir = study.get_trials(deepcopy=False)[trial_number].user_attrs.get("run_dir")
    recorded = read_metrics(Path(run_dir)) if run_dir else {}
    values = [number(recorded.get(metric)) for metric in metrics]
    if recorded.get("status") == Status.COMPLETED and values and None not in values:
        told(study, trial_number, values[0] if len(values) == 1 else values)
    elif recorded.get("status") == Status.PRUNED:
        told(study, trial_number, state=TrialState.PRUNED)
    else:
        return False
    return True
