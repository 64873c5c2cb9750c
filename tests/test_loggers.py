"""The logger group: tensorboard, csv and mlflow, alone or together, in single runs, sweeps and resumed runs.

What MLflow holds is read back through MLflow's own client (``MlflowClient``), from the SQLite store a run
writes by default and from a real ``mlflow server``; runs are in this process on fake data, except those
stopped by a signal or talking to a server (slow). A browser's view of the store: tests/browser/.
"""

import contextlib
import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import free_port, read_events, read_metrics, run_captured, run_dirs, run_main, wait_for_http
from mnist_exp.runs import flatten_config, hyperparameters

# MLflow is imported where a test reads what a run logged: importing it takes 2 s, which make test's other worker,
# collecting this file but running none of it, need not pay.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None,
                                reason="the mlflow extra is not installed: pip install -e '.[mlflow]'")

SMALL = ("dataset=fake", "trainer.epochs=2", "trainer.log_interval=1", "device=cpu", "device.threads=1")
FIGURES = ("curves.png", "test/confusion_matrix.png", "test/misclassified.png", "test/predictions.png")


def store_of(outputs: Path) -> str:
    """The default store, as conf/logger/mlflow.yaml puts it in the outputs directory."""
    return f"sqlite:///{outputs}/mlflow.db"


def mlflow_client(tracking_uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri)


def mlflow_runs(tracking_uri: str, experiment: str) -> list:
    client = mlflow_client(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, [e.name for e in client.search_experiments()]
    return client.search_runs([found.experiment_id], order_by=["attributes.run_name"])


def history(tracking_uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in mlflow_client(tracking_uri).get_metric_history(run_id, key)]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """One run with all three loggers."""
    root = tmp_path_factory.mktemp("all_three")
    code, _, err = run_captured(*SMALL, "logger=[tensorboard,csv,mlflow]", f"hydra.run.dir={root / 'run'}", cwd=root)
    assert code == 0, err[-3000:]
    return root / "run"


def test_the_default_is_tensorboard_alone(tmp_path, monkeypatch, capsys):
    code, out, err = run_main(*SMALL, f"hydra.run.dir={tmp_path / 'run'}", monkeypatch=monkeypatch, capsys=capsys,
                              cwd=tmp_path)
    assert code == 0, err
    run_dir = tmp_path / "run"
    assert yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())["logger"] == {"tensorboard": {}}
    assert list(run_dir.glob("events.out.tfevents.*"))
    assert not (run_dir / "metrics.csv").exists() and not (tmp_path / "outputs" / "mlflow.db").exists()


def test_csv_alone_has_every_scalar_at_its_step_and_no_event_file(tmp_path, monkeypatch, capsys):
    code, _, err = run_main(*SMALL, "logger=csv", f"hydra.run.dir={tmp_path / 'run'}", monkeypatch=monkeypatch,
                            capsys=capsys, cwd=tmp_path)
    assert code == 0, err
    run_dir = tmp_path / "run"
    assert not list(run_dir.glob("events.out.tfevents.*"))
    rows = read_csv(run_dir / "metrics.csv")
    assert [int(row["step"]) for row in rows] == list(range(1, len(rows) + 1))  # log_interval 1: every step
    epochs = [row for row in rows if row["val/acc"]]
    metrics = read_metrics(run_dir)
    assert len(epochs) == 2 and float(epochs[-1]["val/acc"]) == metrics["val/acc"]
    assert float(rows[-1]["test/acc"]) == metrics["test/acc"]
    assert all(row["train/loss"] for row in rows)


def test_csv_is_what_tensorboard_has(tracked):
    rows = read_csv(tracked / "metrics.csv")
    events = read_events(tracked)
    for tag in ("train/loss", "val/acc", "test/acc"):
        from_csv = [(int(row["step"]), float(row[tag])) for row in rows if row[tag]]
        assert from_csv == [(e.step, pytest.approx(e.value)) for e in events.Scalars(tag)], tag


def test_pandas_reads_the_csv(tracked):
    pandas = pytest.importorskip("pandas")
    frame = pandas.read_csv(tracked / "metrics.csv")
    assert frame["step"].is_monotonic_increasing
    assert frame.dropna(subset=["val/acc"])["val/acc"].iloc[-1] == read_metrics(tracked)["val/acc"]


def test_mlflow_holds_the_params_scalars_pictures_record_and_status(tracked):
    store = store_of(tracked.parent / "outputs")
    [run] = mlflow_runs(store, "mnist_exp")
    assert run.info.run_name == tracked.name and run.info.status == "FINISHED"
    assert run.data.tags["run_dir"] == str(tracked.resolve())
    assert json.loads((tracked / "mlflow_run.json").read_text())["run_id"] == run.info.run_id
    config = yaml.safe_load((tracked / ".hydra" / "config.yaml").read_text())
    assert run.data.params == {key: str(value) for key, value in hyperparameters(config).items()}
    assert "logger.mlflow.tracking_uri" in flatten_config(config)  # kept out of params: it says where, not what
    events = read_events(tracked)
    for tag in ("train/loss", "val/loss", "val/acc", "test/acc", "time/epoch_s"):
        assert history(store, run.info.run_id, tag) == [(e.step, pytest.approx(e.value)) for e in events.Scalars(tag)]
    metrics = read_metrics(tracked)
    assert run.data.metrics["best_val/acc"] == metrics["best_val/acc"]
    client = mlflow_client(store)
    artifacts = {item.path for folder in ("", "test", "config")
                 for item in client.list_artifacts(run.info.run_id, folder)}
    assert {"metrics.json", "config/config.yaml", "config/overrides.yaml", *FIGURES} <= artifacts
    saved = client.download_artifacts(run.info.run_id, "metrics.json", str(tracked.parent))
    assert json.loads(Path(saved).read_text()) == metrics
    stored = Path(client.download_artifacts(run.info.run_id, "test/confusion_matrix.png", str(tracked.parent / "got")))
    assert stored.read_bytes() == (tracked / "confusion_matrix.png").read_bytes()  # the run's file as it is


def test_a_sweeps_jobs_are_the_runs_of_one_experiment_named_after_it(tmp_path, monkeypatch, capsys):
    code, _, err = run_main("-m", *SMALL, "logger=[tensorboard,mlflow]", "seed=0,1,2,3", monkeypatch=monkeypatch,
                            capsys=capsys, cwd=tmp_path)
    assert code == 0, err
    outputs = tmp_path / "outputs"
    [sweep_dir] = (outputs / "multirun").glob("*/*")
    runs = mlflow_runs(store_of(outputs), str(sweep_dir))
    jobs = run_dirs(sweep_dir)
    assert [run.info.run_name for run in runs] == [job.name for job in jobs]
    for run, job in zip(runs, jobs):
        assert run.info.status == "FINISHED"
        assert run.data.params["seed"] == job.name.split("seed-")[1].split("_")[0]
        assert run.data.metrics["test/acc"] == read_metrics(job)["test/acc"]


def test_a_store_that_cannot_be_reached_is_said_once_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code, _, err = run_main(*SMALL, "logger=[csv,mlflow]", f"logger.mlflow.tracking_uri={uri}",
                            f"hydra.run.dir={tmp_path / 'run'}", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err
    log = (tmp_path / "run" / "train.log").read_text()
    said = [line for line in log.splitlines() if "MLflow" in line]
    assert len(said) == 1 and "could not open its run (" in said[0] and "goes on without MLflow" in said[0], said
    assert "Connection refused" in said[0]
    assert read_metrics(tmp_path / "run")["status"] == "completed"
    assert read_csv(tmp_path / "run" / "metrics.csv")[-1]["test/acc"]


def test_mlflow_not_installed_is_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as where it is not installed: the import finds nothing
    code, _, err = run_main(*SMALL, "logger=mlflow", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1
    assert err.strip().splitlines() == ["logger=mlflow needs MLflow, which is not installed: pip install -e "
                                        "'.[mlflow]' (or pip install mlflow), or choose another logger."]


@pytest.mark.parametrize("args, message", [
    (["logger=[tensorboard,mlfow]"], "logger=mlfow: there is no such option. Did you mean 'mlflow'? "
                                     "Options of logger: csv, mlflow, tensorboard."),
    (["logger.mlflow.tracking_uri=http://server:5000"],
     "logger.mlflow.tracking_uri is a key of the mlflow logger, which this run does not use: choose it too, e.g. "
     "logger=[tensorboard,mlflow] logger.mlflow.tracking_uri=..."),
    (["logger=mlflow", "logger.mlflow.trackinguri=x"],
     "Unknown key 'logger.mlflow.trackinguri'. Did you mean 'logger.mlflow.tracking_uri'? The keys of "
     "logger.mlflow: tracking_uri, experiment_name."),
    (["+logger.wandb={}"], "Unknown logger 'wandb'. Valid logger names: csv, mlflow, tensorboard."),
    (["+logger.mlflow.tracking_uri=sqlite:///m.db"], "logger.mlflow has tracking_uri without experiment_name: "
     "choose the mlflow logger, which brings all its keys, then set them, e.g. logger=[tensorboard,mlflow] "
     "logger.mlflow.tracking_uri=..."),
    (["logger=[tensorboard,mlflow]", "+logger.mlflow.trackinguri=x"], "Unknown key 'logger.mlflow.trackinguri'. Did "
     "you mean 'logger.mlflow.tracking_uri'? The keys of logger.mlflow: tracking_uri, experiment_name."),
    (["+logger.tensorboard.flush_secs=5"], "Unknown key 'logger.tensorboard.flush_secs'. The tensorboard logger has "
                                           "no keys."),
])
def test_a_wrong_logger_is_one_line(args, message, tmp_path, monkeypatch, capsys):
    code, _, err = run_main(*SMALL, *args, monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.strip().splitlines() == [message]


SCHEMES = "file://, databricks://, http://, https://, postgresql://, mysql://, sqlite://, mssql://"


@pytest.mark.parametrize("uri, message", [
    ("htp://localhost:5000", f"MLflow has no store for htp:// URIs; it takes {SCHEMES}. Did you mean 'http'?"),
    ("postgres://me@db/runs", f"MLflow has no store for postgres:// URIs; it takes {SCHEMES}. Did you mean "
                              "'postgresql'?"),
    ("mlruns", "MLflow keeps runs in a folder only where MLFLOW_ALLOW_FILE_STORE=true is set; give a database "
               "instead, e.g. logger.mlflow.tracking_uri=sqlite:///outputs/mlflow.db."),
    ("sqlite://mlflow.db", "Invalid SQLite URL: sqlite://mlflow.db: give it e.g. sqlite:///outputs/mlflow.db (three "
                           "slashes before a relative path, four before an absolute one)."),
    # In memory, or no path at all (sqlite:///$STORE with the variable unset): a record that ends with the run.
    *((uri, "an SQLite database in memory (no file) ends with the run, and the run's record with it: give the "
            "database's file, e.g. logger.mlflow.tracking_uri=sqlite:///outputs/mlflow.db.")
      for uri in ("sqlite://", "sqlite:///", "sqlite:///:memory:")),
    pytest.param("mysql://me@db/runs", "the Python driver for mysql is not installed (No module named 'MySQLdb'): "
                                       "install it, or give another store.",
                 marks=pytest.mark.skipif(importlib.util.find_spec("MySQLdb") is not None, reason="MySQLdb installed")),
])
def test_a_store_mlflow_would_not_open_is_refused_before_the_run(uri, message, tmp_path, monkeypatch, capsys):
    """Not a run that goes on without the tracker it was given: a URI that cannot work is refused in one line."""
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    code, _, err = run_main(*SMALL, "logger=[csv,mlflow]", f"logger.mlflow.tracking_uri={uri}",
                            monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.strip().splitlines() == [f"logger.mlflow.tracking_uri={uri}: {message}"]
    assert list(tmp_path.iterdir()) == []  # no run directory, no store


def test_an_empty_mlflow_experiment_name_is_refused_before_the_run(tmp_path, monkeypatch, capsys):
    """MLflow would put the run in its own default experiment: not the name given, nor the one null gives."""
    code, _, err = run_main(*SMALL, "logger=[mlflow]", f"logger.mlflow.tracking_uri=sqlite:///{tmp_path}/m.db",
                            "logger.mlflow.experiment_name=' '", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.strip().splitlines() == [
        "logger.mlflow.experiment_name is empty: give the experiment a name, or null for the sweep's directory (a "
        "sweep's jobs) or mnist_exp (single runs)."]
    assert list(tmp_path.iterdir()) == []


def test_a_folder_store_runs_where_mlflow_is_told_to_keep_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # the refusal's other way out
    code, _, err = run_main(*SMALL, "logger=[mlflow]", "logger.mlflow.tracking_uri=mlruns",
                            f"hydra.run.dir={tmp_path / 'run'}", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err
    [run] = mlflow_runs(str(tmp_path / "mlruns"), "mnist_exp")
    assert run.info.status == "FINISHED" and run.data.metrics["test/acc"] == read_metrics(tmp_path / "run")["test/acc"]


def test_the_advice_for_a_key_of_an_unchosen_logger_works(tmp_path, monkeypatch, capsys):
    code, _, err = run_main(*SMALL, "logger=[tensorboard,mlflow]", "logger.mlflow.experiment_name=mine",
                            monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err
    assert len(mlflow_runs(store_of(tmp_path / "outputs"), "mine")) == 1


@pytest.mark.slow
def test_a_resumed_run_continues_its_own_mlflow_run_and_csv(tmp_path, monkeypatch, capsys):
    """From another directory too: the relative path of the store names the file it named at the start."""
    run_dir = tmp_path / "run"
    args = ("dataset=fake", "dataset.num_train=4096", "trainer.epochs=3", "logger=[csv,mlflow]", "device=cpu",
            "device.threads=1", "logger.mlflow.tracking_uri=sqlite:///outputs/mlflow.db")
    process = subprocess.Popen([sys.executable, "-m", "mnist_exp", *args, f"hydra.run.dir={run_dir}"], cwd=tmp_path,
                               env={**os.environ, "MNIST_EXP_OUTPUTS": str(tmp_path / "outputs")},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (run_dir / "checkpoints" / "last.pt").exists() and process.poll() is None:
        time.sleep(0.005)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 128 + signal.SIGTERM, "the run ended before it could be stopped"
    store = store_of(tmp_path / "outputs")
    [stopped] = mlflow_runs(store, "mnist_exp")
    assert stopped.info.status == "KILLED"

    (tmp_path / "elsewhere").mkdir()
    code, _, err = run_main(*args, "resume=true", f"hydra.run.dir={run_dir}", monkeypatch=monkeypatch, capsys=capsys,
                            cwd=tmp_path / "elsewhere")
    assert code == 0, err
    assert not (tmp_path / "elsewhere" / "outputs" / "mlflow.db").exists()
    [run] = mlflow_runs(store, "mnist_exp")
    assert run.info.run_id == stopped.info.run_id and run.info.status == "FINISHED"
    for points in (history(store, run.info.run_id, "val/acc"), history(store, run.info.run_id, "train/loss")):
        steps = [step for step, _ in points]
        assert steps == sorted(set(steps))  # each step once: nothing of the stopped run twice
    assert len(history(store, run.info.run_id, "val/acc")) == 3
    steps = [int(row["step"]) for row in read_csv(run_dir / "metrics.csv")]
    assert steps == sorted(set(steps)) and len([r for r in read_csv(run_dir / "metrics.csv") if r["val/acc"]]) == 3


@pytest.mark.slow
def test_a_sweep_resumed_by_its_absolute_path_goes_on_in_its_own_experiment_and_runs(tmp_path, monkeypatch, capsys):
    """The experiment is the sweep's directory however the commands spell it: started as a relative path, resumed
    from elsewhere by its absolute one, the stopped job continues its MLflow run and the next job joins it."""
    store = f"sqlite:///{tmp_path}/mlflow.db"
    args = ("-m", "dataset=fake", "dataset.num_train=4096", "trainer.epochs=2", "seed=0,1", "logger=mlflow",
            "device=cpu", "device.threads=1", f"logger.mlflow.tracking_uri={store}")
    process = subprocess.Popen([sys.executable, "-m", "mnist_exp", *args, "hydra.sweep.dir=sweep"], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not list(tmp_path.glob("sweep/0_*/checkpoints/last.pt")) and process.poll() is None:
        time.sleep(0.005)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 128 + signal.SIGTERM, "the sweep ended before it could be stopped"
    sweep_dir = tmp_path / "sweep"
    [stopped] = mlflow_runs(store, str(sweep_dir))
    assert stopped.info.status == "KILLED"

    (tmp_path / "elsewhere").mkdir()
    code, _, err = run_main(*args, "resume=true", f"hydra.sweep.dir={sweep_dir}", monkeypatch=monkeypatch,
                            capsys=capsys, cwd=tmp_path / "elsewhere")
    assert code == 0, err
    runs = mlflow_runs(store, str(sweep_dir))
    assert [run.info.run_name for run in runs] == [job.name for job in run_dirs(sweep_dir)]
    assert runs[0].info.run_id == stopped.info.run_id and {run.info.status for run in runs} == {"FINISHED"}
    assert [e.name for e in mlflow_client(store).search_experiments() if e.name != "Default"] == [str(sweep_dir)]


@pytest.mark.parametrize("text, said", [("epoch,loss\n1,0.5\n", "it has no step column"),
                                        ("step,val/acc\n1,abc\n", "could not convert string to float: 'abc'")])
def test_a_resume_refuses_a_metrics_csv_it_did_not_write_and_keeps_it(tmp_path, text, said):
    from mnist_exp.errors import UserError
    from mnist_exp.run.csv_metrics import CsvTracker

    path = tmp_path / "metrics.csv"
    path.write_text(text)
    with pytest.raises(UserError) as refused:
        CsvTracker(path, resumed_step=3)
    assert str(refused.value) == (f"{path} is not the metrics.csv this run writes ({said}): move it away, and the "
                                  "resumed run starts a new one.")
    assert path.read_text() == text


def test_a_run_moved_with_its_store_continues_its_mlflow_run_there(tmp_path, monkeypatch):
    """Outputs copied from a cluster, say: the file the run began in has gone, and the same URI names the moved one."""
    from mnist_exp.run.mlflow_tracking import MlflowTracker
    from mnist_exp.run.tracking import TrackedRun

    uri = "sqlite:///outputs/mlflow.db"
    (tmp_path / "a" / "run").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a")
    started = MlflowTracker(TrackedRun(tmp_path / "a" / "run", resumed_step=None, sweep_dir=None), uri, "mnist_exp")
    started.close("stopped")
    (tmp_path / "a").rename(tmp_path / "b")
    monkeypatch.chdir(tmp_path / "b")
    resumed = MlflowTracker(TrackedRun(tmp_path / "b" / "run", resumed_step=5, sweep_dir=None), uri, "mnist_exp")
    resumed.close("completed")
    [run] = mlflow_runs(store_of(tmp_path / "b" / "outputs"), "mnist_exp")
    assert run.info.run_id == started.run_id == resumed.run_id and run.info.status == "FINISHED"
    assert not (tmp_path / "a").exists()  # no store made where it began


def test_a_resume_records_its_params_wherever_its_mlflow_run_is_new(tmp_path, monkeypatch, caplog):
    """Continued: the MLflow run has them. Begun without MLflow, or given another experiment: a new MLflow run, with
    the run's params and command as a fresh run's."""
    from mnist_exp.run.mlflow_tracking import MlflowTracker
    from mnist_exp.run.tracking import TrackedRun

    monkeypatch.chdir(tmp_path)
    uri, config = "sqlite:///mlflow.db", {"model": {"name": "cnn", "width": 8}, "seed": 3}

    def tracker(run: str, resumed_step: int | None, experiment: str) -> MlflowTracker:
        (tmp_path / run).mkdir(exist_ok=True)
        opened = MlflowTracker(TrackedRun(tmp_path / run, resumed_step, sweep_dir=None), uri, experiment)
        opened.run_record(config, "python -m mnist_exp seed=3")
        opened.close("stopped")
        return opened

    started = tracker("run", None, "first")
    assert tracker("run", 5, "first").run_id == started.run_id  # continued: its params as they were
    moved = tracker("run", 9, "second")
    assert "in another experiment than 'second', which logger.mlflow.experiment_name now names" in caplog.text
    began_without = tracker("csv_only", 5, "first")  # a run begun with logger=csv, resumed with logger=mlflow
    for run_id in (started.run_id, moved.run_id, began_without.run_id):
        run = mlflow_client(uri).get_run(run_id)
        assert run.data.params == {"model.name": "cnn", "model.width": "8", "seed": "3"}
        assert run.data.tags["command"] == "python -m mnist_exp seed=3"
    assert moved.run_id != started.run_id and [r.info.run_id for r in mlflow_runs(uri, "second")] == [moved.run_id]


@pytest.mark.slow  # follows the advice: mlflow's own command, a process of its own
def test_a_deleted_mlflow_experiment_is_refused_with_the_command_that_restores_it(tmp_path, monkeypatch):
    from mnist_exp.errors import UserError
    from mnist_exp.run.mlflow_tracking import MlflowTracker
    from mnist_exp.run.tracking import TrackedRun

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    experiment_id = mlflow_client(uri).create_experiment("gone")
    mlflow_client(uri).delete_experiment(experiment_id)
    with pytest.raises(UserError) as refused:
        MlflowTracker(TrackedRun(tmp_path, None, None), uri, "gone")
    restore = f"MLFLOW_TRACKING_URI={uri} mlflow experiments restore --experiment-id {experiment_id}"
    assert str(refused.value) == (f"MLflow experiment 'gone' at {uri} is deleted: restore it ({restore}), or name "
                                  "another: logger.mlflow.experiment_name=<name>.")
    [_, mlflow, *args] = restore.split()  # mlflow: the one beside this Python
    restored = subprocess.run([str(Path(sys.executable).parent / mlflow), *args], capture_output=True, text=True,
                              env={**os.environ, "MLFLOW_TRACKING_URI": uri}, cwd=tmp_path)
    assert restored.returncode == 0, restored.stderr
    MlflowTracker(TrackedRun(tmp_path, None, None), uri, "gone").close("completed")  # the advice, followed, works
    assert len(mlflow_runs(uri, "gone")) == 1


def test_a_damaged_record_of_the_mlflow_run_is_refused_not_written_over(tmp_path):
    from mnist_exp.errors import UserError
    from mnist_exp.run.mlflow_tracking import RUN_ID_FILE, read_run_record

    record, store = tmp_path / RUN_ID_FILE, "sqlite:///mlflow.db"
    assert read_run_record(record) is None  # none yet: the run starts its MLflow run
    record.write_text(json.dumps({"tracking_uri": store, "run_id": "ab12"}))  # as written before the store was kept
    assert read_run_record(record) == {"tracking_uri": store, "run_id": "ab12"}
    for damaged in ('{"run_id": 5', '{"run_id": 5, "tracking_uri": "sqlite:///mlflow.db"}',
                    '{"run_id": "ab12", "tracking_uri": "sqlite:///mlflow.db", "store": 5}'):
        record.write_text(damaged)
        with pytest.raises(UserError, match=f"^{record} is not the record of this run's MLflow run that mnist_exp "
                                            r"writes \(.*\): put it back, or delete it to give the rest of this run a "
                                            r"new MLflow run\.$"):
            read_run_record(record)
        assert record.read_text() == damaged


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real tracking server on a local port, its store in a temporary directory."""
    root = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                                "--workers", "1", "--backend-store-uri", f"sqlite:///{root}/server.db",
                                "--default-artifact-root", (root / "artifacts").as_uri()],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                               # Without the server's job runners (MLflow's GenAI jobs, which runs never use): they
                               # are seven more Python processes, ~11 s of CPU to start.
                               env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", process)
        yield process, f"http://127.0.0.1:{port}"
    finally:
        stop(process)


def stop(server: subprocess.Popen) -> None:
    """The server and the workers it started (its process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    server.wait(timeout=30)


@pytest.mark.slow
def test_a_run_tracked_on_a_server_then_the_server_lost_mid_run(mlflow_server, tmp_path, monkeypatch, capsys):
    process, uri = mlflow_server
    args = ("dataset=fake", "trainer.log_interval=1", "logger=[csv,mlflow]", f"logger.mlflow.tracking_uri={uri}",
            "device=cpu", "device.threads=1")
    first = tmp_path / "first"
    code, _, err = run_main(*args, "trainer.epochs=2", f"hydra.run.dir={first}", monkeypatch=monkeypatch,
                            capsys=capsys, cwd=tmp_path)
    assert code == 0, err
    [run] = mlflow_runs(uri, "mnist_exp")
    assert run.info.status == "FINISHED" and run.data.metrics["test/acc"] == read_metrics(first)["test/acc"]

    second = tmp_path / "second"  # the server goes after its first epoch; five more to train
    running = subprocess.Popen([sys.executable, "-m", "mnist_exp", *args, "trainer.epochs=6",
                                f"hydra.run.dir={second}"], cwd=tmp_path,
                               env={**os.environ, "MNIST_EXP_OUTPUTS": str(tmp_path / "outputs")},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (second / "checkpoints" / "last.pt").exists() and running.poll() is None:
        time.sleep(0.005)
    stop(process)
    assert running.wait(timeout=300) == 0
    said = [line for line in (second / "train.log").read_text().splitlines() if "MLflow at" in line]
    assert len(said) == 1 and "goes on without MLflow" in said[0], said
    metrics = read_metrics(second)
    assert metrics["status"] == "completed" and metrics["epoch"] == 6
    assert len([row for row in read_csv(second / "metrics.csv") if row["val/acc"]]) == 6
