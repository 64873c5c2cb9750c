"""The mlflow logger (``logger=mlflow``): each run an MLflow run, a sweep's jobs the runs of one experiment.

A run records its flattened config as params, every scalar at its step (sent at each epoch's end), its pictures,
``metrics.json`` and its ``.hydra/`` config as artifacts, and its status (completed and pruned: FINISHED, failed:
FAILED, stopped by a signal: KILLED). The MLflow run's id is kept in the run directory (``mlflow_run.json``), so
a resumed run continues its own MLflow run.

The default store is an SQLite file in the outputs directory: no server, and ``mlflow ui --backend-store-uri
sqlite:///outputs/mlflow.db`` shows it. A URI MLflow would not open (``check_store``) is refused before the run;
a store that cannot be reached, at the start or later, costs the run nothing but this tracker: it says so once and
the run goes on, with its other loggers and its own records.
"""

import contextlib
import fcntl
import json
import logging
import os
import re
import shlex
import time
from pathlib import Path

from mnist_exp.errors import UserError, did_you_mean, first_line
from mnist_exp.run.hydra_settings import IN_MEMORY_SQLITE
from mnist_exp.run.tracking import TrackedRun, Tracker
from mnist_exp.runs import METRICS_FILE, Status, atomic_file, hyperparameters

log = logging.getLogger("mnist_exp")

RUN_ID_FILE = "mlflow_run.json"
MLFLOW_STATUS = {Status.COMPLETED.value: "FINISHED", Status.PRUNED.value: "FINISHED", Status.FAILED.value: "FAILED",
                 Status.STOPPED.value: "KILLED"}
# An unreachable server answers at once instead of after MLflow's default 7 retries with backoff (minutes);
# a user's own settings of these win.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


class MlflowTracker(Tracker):
    def __init__(self, run: TrackedRun, tracking_uri: str, experiment_name: str):
        for key, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)  # a retry's warning: the failure says it
        # A relative SQLite path names a file in the directory the run started from: a resume from elsewhere, of
        # the same config, goes on in that file (the record keeps both).
        self.run_dir, self.given_uri, self.tracking_uri = run.run_dir, tracking_uri, absolute_store(tracking_uri)
        self.client = None
        self.run_id: str | None = None
        self.pending: list = []  # scalars not yet sent: they go as one batch at each flush
        self.logged_keys: set[str] = set()
        self.continued = False  # a resumed run's own MLflow run, which already holds its params
        try:
            self.open_run(run, experiment_name)
        except UserError:  # the run's own record of its MLflow run is damaged: refused before it trains
            raise
        except Exception as error:  # as in ``attempt``
            self.give_up("open its run", error)

    def attempt(self, doing: str, call) -> bool:
        """Call MLflow; on an error, say so once and record nothing more to it. True where it went through."""
        if self.client is None:
            return False
        try:
            call()
            return True
        except Exception as error:  # any failure of the store (unreachable, refused, full): the run goes on
            self.give_up(doing, error)
            return False

    def give_up(self, doing: str, error: Exception) -> None:
        log.warning("MLflow at %s: could not %s (%s). This run goes on without MLflow; metrics.json and train.log "
                    "in %s keep its results.", self.tracking_uri, doing, reason(error), self.run_dir)
        self.client = None

    def open_run(self, run: TrackedRun, experiment_name: str) -> None:
        from mlflow import MlflowClient

        recorded = read_run_record(run.run_dir / RUN_ID_FILE) if run.resumed_step is not None else None
        store = recorded and recorded.get("store", recorded["tracking_uri"])
        continued = None
        if recorded is not None and (self.given_uri == recorded["tracking_uri"] or self.tracking_uri == store):
            continued = recorded["run_id"]
            # The file the run began in; where it has gone (its outputs moved), the one the same URI names from here.
            if (database := sqlite_path(store)) is None or database.is_file():
                self.tracking_uri = store
        elif recorded is not None:
            log.warning("MLflow: this run's MLflow run %s is at %s, and logger.mlflow.tracking_uri is now %s: the "
                        "rest of the run goes to a new MLflow run there", recorded["run_id"], recorded["tracking_uri"],
                        self.given_uri)
        with store_lock(self.tracking_uri):  # the first client of an SQLite store creates its tables
            self.client = MlflowClient(tracking_uri=self.tracking_uri)
            experiment_id = self.experiment_id(experiment_name)
            if continued is not None and self.client.get_run(continued).info.experiment_id != experiment_id:
                log.warning("MLflow: this run's MLflow run %s is in another experiment than '%s', which "
                            "logger.mlflow.experiment_name now names: the rest of the run goes to a new MLflow run "
                            "there", continued, experiment_name)
                continued = None
            if continued is not None:
                self.run_id, self.continued = continued, True
                self.client.update_run(self.run_id, status="RUNNING")
                log.info("MLflow: continuing run %s at %s", self.run_id, self.tracking_uri)
                return
            self.run_id = self.client.create_run(experiment_id, run_name=run.run_dir.name,
                                                 tags={"run_dir": str(run.run_dir.resolve())}).info.run_id
        with atomic_file(run.run_dir / RUN_ID_FILE, "w") as f:
            json.dump({"tracking_uri": self.given_uri, "store": self.tracking_uri, "run_id": self.run_id}, f)
        log.info("MLflow: run %s in experiment '%s' at %s", self.run_id, experiment_name, self.tracking_uri)

    def experiment_id(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None and experiment.lifecycle_stage == "deleted":  # MLflow records no run in it
            raise UserError(f"MLflow experiment '{name}' at {self.tracking_uri} is deleted: restore it "
                            f"(MLFLOW_TRACKING_URI={self.tracking_uri} mlflow experiments restore --experiment-id "
                            f"{experiment.experiment_id}), or name another: logger.mlflow.experiment_name=<name>.")
        if experiment is not None:
            return experiment.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=local_artifact_location(self.tracking_uri))
        except MlflowException:  # another job of the sweep created it first
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id

    def run_record(self, config: dict, command: str) -> None:
        from mlflow.entities import Param, RunTag

        if self.continued:
            return

        params = [Param(key, str(value)) for key, value in hyperparameters(config).items()]
        self.attempt("record the params", lambda: self.client.log_batch(
            self.run_id, params=params, tags=[RunTag("command", command)]))

    def scalars(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending += [Metric(tag, float(value), now, step) for tag, value in values.items()]
        self.logged_keys.update(values)

    def hparams(self, params, metrics: dict[str, float], step: int, columns=None) -> None:
        """The final metrics not already among the scalars (best_val/acc): the runs table sorts by them."""
        self.scalars({key: value for key, value in metrics.items() if key not in self.logged_keys}, step)

    def image(self, tag: str, png: Path, step: int = 0) -> None:
        """The file as the artifact <tag>.png (the figures' files are named after their tags' last part)."""
        folder = str(Path(tag).parent)
        self.attempt(f"store the picture {tag}", lambda: self.client.log_artifact(
            self.run_id, str(png), artifact_path=None if folder == "." else folder))

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        if pending:
            self.attempt("send the scalars", lambda: self.client.log_batch(self.run_id, metrics=pending))

    def close(self, status: str = "completed") -> None:
        self.flush()
        record = [self.run_dir / METRICS_FILE, self.run_dir / ".hydra" / "config.yaml",
                  self.run_dir / ".hydra" / "overrides.yaml"]
        for path in record:
            if path.exists():
                self.attempt(f"store {path.name}", lambda: self.client.log_artifact(
                    self.run_id, str(path), artifact_path=None if path.name == METRICS_FILE else "config"))
        self.attempt("set the run's status", lambda: self.client.set_terminated(self.run_id, MLFLOW_STATUS[status]))

    def view(self) -> tuple[str, str] | None:
        if self.client is None:
            return None
        return "MLflow", shlex.join(["mlflow", "ui", "--backend-store-uri", self.tracking_uri])


def check_store(tracking_uri: str) -> None:
    """Refuse, before the run, a store MLflow has no client for (a misspelt scheme) or keeps only on request (a
    folder): the run would go on without it. A store it cannot reach is a fault: the run goes on, as above."""
    from mlflow import environment_variables
    from mlflow.exceptions import MlflowException
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry as stores  # MLflow's schemes
    from mlflow.tracking.registry import UnsupportedModelRegistryStoreURIException
    from mlflow.utils.uri import get_uri_scheme

    setting, scheme = f"logger.mlflow.tracking_uri={tracking_uri}", get_uri_scheme(tracking_uri)
    try:
        stores.get_store_builder(tracking_uri)
    except UnsupportedModelRegistryStoreURIException as error:
        schemes = [known for known in error.supported_uri_schemes if known not in ("", "uc", "databricks-uc")]
        raise UserError(f"{setting}: MLflow has no store for {scheme}:// URIs; it takes "
                        f"{', '.join(known + '://' for known in schemes)}.{did_you_mean(scheme, schemes)}") from None
    except MlflowException as error:
        raise UserError(f"{setting}: {first_line(error)}") from None
    if scheme.split("+")[0] in ("sqlite", "postgresql", "mysql", "mssql"):  # MLflow's SQLAlchemy stores
        check_database_uri(setting, tracking_uri, scheme)
    if IN_MEMORY_SQLITE.fullmatch(tracking_uri):  # a store that ends with the run (or, with no path, this directory)
        raise UserError(f"{setting}: an SQLite database in memory (no file) ends with the run, and the run's "
                        "record with it: give the database's file, e.g. "
                        "logger.mlflow.tracking_uri=sqlite:///outputs/mlflow.db.")
    allow_folder = getattr(environment_variables, "MLFLOW_ALLOW_FILE_STORE", None)
    if scheme in ("", "file") and allow_folder is not None and not allow_folder.get():
        raise UserError(f"{setting}: MLflow keeps runs in a folder only where MLFLOW_ALLOW_FILE_STORE=true is set; "
                        "give a database instead, e.g. logger.mlflow.tracking_uri=sqlite:///outputs/mlflow.db.")


def check_database_uri(setting: str, tracking_uri: str, scheme: str) -> None:
    """SQLAlchemy reads the URI and loads its driver without connecting: a malformed URI or a missing driver is a
    mistake to fix before the run, not a store out of reach."""
    import sqlalchemy

    try:
        sqlalchemy.create_engine(tracking_uri).dispose()
    except ImportError as error:
        extra = " (PostgreSQL: pip install 'mnist_exp[postgres]')" if scheme.startswith("postgresql") else ""
        raise UserError(f"{setting}: the Python driver for {scheme} is not installed ({first_line(error)}): install "
                        f"it{extra}, or give another store.") from None
    except Exception as error:  # SQLAlchemy's ArgumentError and its kin: the URI's form
        example = "e.g. sqlite:///outputs/mlflow.db (three slashes before a relative path, four before an absolute one)"
        said = example if scheme == "sqlite" else "as <scheme>://<user>:<password>@<host>:<port>/<database>"
        raise UserError(f"{setting}: {first_line(error)}: give it {said}.") from None


def reason(error: Exception) -> str:
    """An OS error inside MLflow's long account of a failed request ("[Errno 111] Connection refused"), or its
    first line."""
    found = re.search(r"\[Errno -?\d+\] [^\"')]+", str(error))
    return found[0].strip() if found else first_line(error)


def read_run_record(path: Path) -> dict | None:
    """The record of the MLflow run a run started: its id, the tracking URI as the config gave it and the store it
    named then (``store``: absent in records written before it was kept). A record that cannot be read is refused,
    not written over: it may be all that ties the run to its MLflow history."""
    if not path.exists():
        return None
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        recorded = first_line(error)
    keys = ("run_id", "tracking_uri")
    if not (isinstance(recorded, dict) and all(isinstance(recorded.get(key), str) for key in keys)
            and isinstance(recorded.get("store", ""), str)):
        raise UserError(f"{path} is not the record of this run's MLflow run that mnist_exp writes ({recorded!r:.80}): "
                        "put it back, or delete it to give the rest of this run a new MLflow run.")
    return recorded


def absolute_store(tracking_uri: str) -> str:
    """The URI with an SQLite file's relative path made absolute (from this directory); any other as it is."""
    database = sqlite_path(tracking_uri)
    return f"sqlite:///{database.resolve()}" if database is not None and not database.is_absolute() else tracking_uri


def sqlite_path(tracking_uri: str) -> Path | None:
    return Path(tracking_uri.removeprefix("sqlite:///")) if tracking_uri.startswith("sqlite:///") else None


def local_artifact_location(tracking_uri: str) -> str | None:
    """Beside an SQLite store: ``<its folder>/mlflow-artifacts``; a server keeps its own (None)."""
    database = sqlite_path(tracking_uri)
    return (database.parent.resolve() / "mlflow-artifacts").as_uri() if database is not None else None


@contextlib.contextmanager
def store_lock(tracking_uri: str):
    """One process at a time creates an SQLite store's tables and experiments: a sweep's jobs start together."""
    database = sqlite_path(tracking_uri)
    if database is None:
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
