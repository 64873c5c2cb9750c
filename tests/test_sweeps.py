"""Sweeps through the real entry point: the basic launcher, joblib, Optuna, submitit; sweep.csv and failures.

Each job trains one epoch on fake data. The basic launcher and the Optuna sweeper run their jobs in this
process; joblib, submitit and the TensorBoard server start processes of their own (slow). The plugin tests
are skipped where the sweep extra (pip install -e '.[sweep]') is not installed.
"""

import csv
import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from conftest import free_port, read_events, read_metrics, run_captured, run_dirs, run_main, run_module
from mnist_exp.run.commands import sweep_resume_command
from mnist_exp.run.runtime import set_cpu_threads

FAST = ("dataset=fake", "trainer.epochs=1")
ONE_THREAD = ("device=cpu", "device.threads=1")


def sweep_dir_of(outputs: Path) -> Path:
    """The one sweep directory under outputs/multirun/<date>/."""
    [sweep_dir] = (outputs / "multirun").glob("*/*")
    return sweep_dir


def read_summary(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "sweep.csv", newline="") as f:
        return list(csv.DictReader(f))


def check_summary_matches_jobs(sweep_dir: Path, jobs: list[Path]) -> list[dict]:
    """sweep.csv has one row per job, and each row says what the job's metrics.json says."""
    rows = read_summary(sweep_dir)
    assert sorted(row["run_dir"] for row in rows) == sorted(job.name for job in jobs)
    for row in rows:
        metrics = read_metrics(sweep_dir / row["run_dir"])
        assert row["job"] == row["run_dir"].split("_")[0]
        assert row["status"] == metrics["status"]
        if metrics["status"] == "completed":
            assert float(row["best_val/acc"]) == metrics["best_val/acc"]
            assert float(row["objective"]) == metrics["best_val/acc"]  # optimized_metric's default
            assert float(row["test/acc"]) == metrics["test/acc"]
            assert int(row["params"]) == metrics["params"]
    return rows


@pytest.mark.parametrize("text", [b"\xff\xfe garbled", b"name,value\nx,1\n", b""])
def test_an_unreadable_sweep_summary_is_kept_aside_and_begun_anew(text, tmp_path, caplog):
    """Garbled, foreign or empty: not half-read; the next job's row starts a new one, the old file kept beside it."""
    from mnist_exp.sweeps.summary import write_row

    (tmp_path / "sweep.csv").write_bytes(text)
    write_row(tmp_path / "sweep.csv", {"job": "3", "status": "completed", "run_dir": "3_seed-3"})
    assert [(row["job"], row["status"]) for row in read_summary(tmp_path)] == [("3", "completed")]
    assert (tmp_path / "sweep.csv.unreadable").read_bytes() == text
    assert "is no sweep summary this tool wrote" in caplog.text


def check_grid(sweep_dir: Path, models: tuple[str, str], optimizers: tuple[str, str]) -> None:
    jobs = run_dirs(sweep_dir)
    assert len(jobs) == 4
    for number, (model, optimizer) in enumerate((m, o) for m in models for o in optimizers):
        [job] = [job for job in jobs if job.name.startswith(f"{number}_")]
        assert f"model-{model}" in job.name and f"optimizer-{optimizer}" in job.name
        assert read_metrics(job)["status"] == "completed"
    rows = check_summary_matches_jobs(sweep_dir, jobs)
    assert {row["status"] for row in rows} == {"completed"}


@pytest.fixture(scope="module")
def basic_sweep(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("basic_sweep")
    code, _, err = run_captured("-m", "model=logreg,mlp", "optimizer=sgd,adam", *FAST, *ONE_THREAD, cwd=cwd)
    assert code == 0, err[-3000:]
    return sweep_dir_of(cwd / "outputs")


def test_basic_launcher_grid_two_by_two_with_a_summary_row_per_job(basic_sweep):
    check_grid(basic_sweep, ("logreg", "mlp"), ("sgd", "adam"))
    assert (basic_sweep / "multirun.yaml").is_file()
    assert basic_sweep.parents[1].name == "multirun"  # outputs/multirun/<date>/<time>, not outputs/runs
    for job in run_dirs(basic_sweep):  # each job is a whole run of its own
        assert (job / "checkpoints" / "best.pt").is_file() and (job / "checkpoints" / "last.pt").is_file()
        assert "val/acc" in read_events(job).Tags()["scalars"]


@pytest.mark.slow
def test_tensorboard_hparams_table_has_every_job_under_its_name(basic_sweep):
    """TensorBoard itself, over HTTP: the HPARAMS tab's rows and the scalar runs of the sweep."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(basic_sweep), "--port",
                               str(port), "--host", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    base = f"http://127.0.0.1:{port}/data"

    def post(route: str, body: dict) -> dict:
        request = urllib.request.Request(base + route, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json", "X-XSRF-Protected": "1"})
        return json.load(urllib.request.urlopen(request, timeout=10))

    jobs = {job.name: read_metrics(job) for job in run_dirs(basic_sweep)}
    try:
        deadline, groups = time.monotonic() + 90, []
        while len(groups) < len(jobs):  # TensorBoard loads runs in the background
            if server.poll() is not None:
                pytest.fail(f"TensorBoard exited {server.returncode} before it served the sweep: "
                            f"{server.stderr.read()[-1000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"TensorBoard showed {len(groups)} of {len(jobs)} jobs in 90 s")
            time.sleep(0.5)
            try:
                groups = post("/plugin/hparams/session_groups", {
                    "experimentName": "", "startIndex": 0, "sliceSize": 100, "colParams": [],
                    "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
                })["sessionGroups"]
            except OSError:
                pass  # not listening yet
        scalar_runs = json.load(urllib.request.urlopen(base + "/plugin/scalars/tags", timeout=10))
        columns = post("/plugin/hparams/experiment", {"experimentName": ""})["hparamInfos"]
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert sorted(group["name"] for group in groups) == sorted(jobs)  # one row per job, named as its directory
    assert sorted(scalar_runs) == sorted(jobs)  # the scalar tab's runs: the job directories' names
    assert all({"val/acc", "test/acc"} <= set(tags) for tags in scalar_runs.values())
    # The sweep's columns: those that differ, marked so (the HPARAMS tab shows them first), then those only some
    # jobs have (mlp's model.hidden, sgd's momentum); keys equal in every job are no columns (sgd's and adam's lr
    # are both 0.01).
    names = {column["name"] for column in columns}
    assert {"model.hidden", "optimizer.momentum"} <= names
    assert not {"model.in_features", "dataset.flatten", "dataset.image_size", "optimizer.lr"} & names
    assert {column["name"] for column in columns if column.get("differs")} == {"model.name", "optimizer.name"}
    for group in groups:
        metrics = jobs[group["name"]]
        assert group["hparams"]["model.name"] == re.search(r"model-(\w+?)_", group["name"]).group(1)
        values = {value["name"]["tag"]: value["value"] for value in group["metricValues"]}
        assert values["hparams/best_val/acc"] == pytest.approx(metrics["best_val/acc"])
        assert values["hparams/test/acc"] == pytest.approx(metrics["test/acc"])


def test_a_failing_job_is_recorded_and_the_others_still_run(tmp_path, monkeypatch, capsys):
    # A value out of range fails at once; a huge learning rate diverges to NaN.
    code, _, _ = run_main("-m", "model=mlp", "optimizer=sgd", "scheduler=none", "optimizer.lr=-1,1e12,0.05",
                          "trainer.log_interval=1", *FAST, *ONE_THREAD, monkeypatch=monkeypatch, capsys=capsys,
                          cwd=tmp_path)
    assert code == 1  # Hydra's basic sweeper reports the failure after running every job
    sweep_dir = sweep_dir_of(tmp_path / "outputs")
    jobs = run_dirs(sweep_dir)
    rows = {row["job"]: row for row in check_summary_matches_jobs(sweep_dir, jobs)}
    assert [rows[n]["status"] for n in ("0", "1", "2")] == ["failed", "failed", "completed"]
    assert "optimizer.lr=-1.0 is out of range" in rows["0"]["error"]
    assert "Training diverged" in rows["1"]["error"]
    assert rows["2"]["error"] == "" and float(rows["2"]["test/acc"]) > 0.35  # measured ~0.43; chance 0.1
    # Each job's own record says the same: the failures' errors in metrics.json, no best.pt of a diverged model.
    failed = [read_metrics(job) for job in jobs[:2]]
    assert failed[0]["error"] == rows["0"]["error"] and failed[1]["error"] == rows["1"]["error"]
    assert not (jobs[1] / "checkpoints" / "best.pt").exists()


def test_thread_count_zero_takes_a_launchers_share(monkeypatch):
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert set_cpu_threads(0) == 1 and torch.get_num_threads() == 1
        assert set_cpu_threads(2) == 2  # an explicit count wins
        monkeypatch.delenv("OMP_NUM_THREADS")
        # No launcher's share: every core this process may run on (not every core of the machine).
        cores = len(os.sched_getaffinity(0))
        assert set_cpu_threads(0) == cores and torch.get_num_threads() == cores
    finally:
        torch.set_num_threads(1)  # as conftest set it


@pytest.mark.slow
def test_joblib_grid_two_by_two_divides_the_cores(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    from joblib import cpu_count

    # No device.threads here (run_module, not run_app): each job takes its share of the cores. A process of its own,
    # as joblib's workers are (loky keeps them for the next sweep of the process that started them).
    run_module("mnist_exp", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "model=logreg,mlp",
               "optimizer=sgd,adam", *FAST, "device=cpu", cwd=tmp_path)
    sweep_dir = sweep_dir_of(tmp_path / "outputs")
    check_grid(sweep_dir, ("logreg", "mlp"), ("sgd", "adam"))
    # What joblib's workers get in OMP_NUM_THREADS: the parent's value if it has one, else cores // n_jobs.
    share = int(os.environ.get("OMP_NUM_THREADS") or max(cpu_count() // 2, 1))
    for job in run_dirs(sweep_dir):
        assert f"Device: cpu ({share} CPU thread{'' if share == 1 else 's'})" in (job / "train.log").read_text()


def test_optuna_search_finds_the_best_trial_and_continues_its_study(tmp_path, monkeypatch, capsys):
    optuna = pytest.importorskip("optuna")

    # model.width=4 overrides the choice; the sweeper runs its trials in this process.
    search = ("-m", "hparams_search=cnn_optuna", "model.width=4", *FAST, *ONE_THREAD)
    code, _, err = run_main(*search, "hydra.sweeper.n_trials=2", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err[-3000:]
    sweep_dir = sweep_dir_of(tmp_path / "outputs")
    assert (sweep_dir / "optuna.db").is_file()
    # The command's composed config with its hydra node, as Hydra's own sweeper records a sweep. A search continues
    # when its own command runs again (below), not with a grid's resume=true, which is neither offered nor taken.
    multirun = OmegaConf.load(sweep_dir / "multirun.yaml")
    assert OmegaConf.to_container(multirun.hydra.sweep)["dir"].endswith("/multirun/${now:%Y-%m-%d}/${now:%H-%M-%S}")
    assert multirun.hydra.sweeper.n_trials == 2
    assert multirun.hydra.sweeper._target_.endswith("OptunaSweeper") and multirun.trainer.epochs == 1
    assert multirun.hydra.overrides.task == list(search[1:])
    assert "hydra.sweeper.n_trials=2" in multirun.hydra.overrides.hydra
    command = sweep_resume_command(sweep_dir)  # the search's own, in its directory: no resume=true
    assert shlex.split(command)[3:] == ["-m", "hydra.sweeper.n_trials=2", *search[1:], f"hydra.sweep.dir={sweep_dir}"]
    code, _, err = run_main("-m", *FAST, "resume=true", f"hydra.sweep.dir={sweep_dir}", monkeypatch=monkeypatch,
                            capsys=capsys, cwd=tmp_path)
    assert (code, err.splitlines()) == (1, [f"resume=true, but {sweep_dir} holds a search, which continues its study "
                                            f"when its own command runs again, without resume=true: {command}"])
    # Continue the same study in the same directory: one trial more.
    code, out, err = run_main(*search, "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={sweep_dir}",
                              monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err[-3000:]
    assert "Study cnn_optuna in sqlite:///" in out and ": 2 trials so far; 1 more" in out
    assert ("TPESampler draws at random the study's first 10 trials (hydra.sweeper.sampler.n_startup_trials), and it "
            "will have 3: give more trials, or a smaller n_startup_trials") in out

    study = optuna.load_study(study_name="cnn_optuna", storage=f"sqlite:///{sweep_dir}/optuna.db")
    assert [trial.state for trial in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    jobs = run_dirs(sweep_dir)
    assert [int(job.name.split("_")[0]) for job in jobs] == [0, 1, 2]  # the continued trial's job is number 2
    values = {job: read_metrics(job)["best_val/acc"] for job in jobs}
    assert sorted(trial.value for trial in study.trials) == sorted(values.values())
    assert study.best_value == max(values.values())
    assert len(check_summary_matches_jobs(sweep_dir, jobs)) == 3

    best = yaml.safe_load((sweep_dir / "best_trial.yaml").read_text())
    assert best["metric"] == "best_val/acc" and best["value"] == study.best_value
    best_job = Path(best["run_dir"])
    assert best["trial"] == study.best_trial.number and best_job.name.startswith(f"{best['trial']}_")
    assert values[best_job] == study.best_value
    assert best["overrides"] == yaml.safe_load((best_job / ".hydra" / "overrides.yaml").read_text())
    assert best["command"].startswith("python -m mnist_exp ") and "hparams_search=cnn_optuna" in best["command"]
    for name, value in study.best_params.items():
        assert f"{name}={value}" in best["overrides"]
    assert f"Run it again: {best['command']}" in out
    # The command reruns the trial as one run, the same config (a warning says that it searches nothing).
    rerun = tmp_path / "rerun"
    code, _, err = run_main(*best["overrides"], f"hydra.run.dir={rerun}", monkeypatch=monkeypatch, capsys=capsys,
                            cwd=tmp_path)
    assert code == 0, err[-3000:]
    assert read_metrics(rerun)["status"] == "completed"
    assert (rerun / ".hydra" / "config.yaml").read_text() == (best_job / ".hydra" / "config.yaml").read_text()
    assert "hparams_search=cnn_optuna without -m trains one run" in (rerun / "train.log").read_text()


@pytest.mark.slow
def test_submitit_local_runs_the_cluster_code_path(tmp_path, monkeypatch, capsys):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    # The sweep in this process; submitit runs each job in a process of its own, as on a cluster.
    code, _, err = run_main("-m", "hydra/launcher=submitit_local", "model=logreg", "optimizer=sgd,adam", *FAST,
                            *ONE_THREAD, monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err[-3000:]
    sweep_dir = sweep_dir_of(tmp_path / "outputs")
    jobs = run_dirs(sweep_dir)
    assert [re.sub(r"_.*", "", job.name) for job in jobs] == ["0", "1"]
    assert all(read_metrics(job)["status"] == "completed" for job in jobs)
    assert len(check_summary_matches_jobs(sweep_dir, jobs)) == 2
    assert list((sweep_dir / ".submitit").iterdir())  # submitit's own logs and pickles, beside the jobs


def test_the_slurm_launcher_off_a_cluster_is_one_line_before_the_sweep_writes(tmp_path, monkeypatch, capsys):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch or srun, whatever this machine has
    code, _, err = run_main("-m", "hydra/launcher=slurm", "model=logreg", "seed=0,1", *FAST, monkeypatch=monkeypatch,
                            capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines() == [
        "hydra/launcher=slurm hands each job to SLURM, and this machine has no sbatch or srun on its PATH: run the "
        "sweep on a login node of the cluster, or on this machine with hydra/launcher=submitit_local (the same code "
        "path, without SLURM)."]
    assert not (tmp_path / "outputs").exists()  # no sweep without jobs for compare to find


PREEMPT_SIGNAL_REFUSED = ("SUBMITIT_PREEMPT_SIGNAL=SIGUSR2 in the environment is not a signal a job can catch. Did you "
                          "mean 'USR2'? Give a signal's name as submitit reads it, in capitals without SIG (USR2, its "
                          "default, or USR1, TERM, ...), or unset SUBMITIT_PREEMPT_SIGNAL.")


def test_a_preemption_signal_that_names_none_is_one_line_and_the_advice_runs(tmp_path, monkeypatch, capsys):
    """submitit reads SUBMITIT_PREEMPT_SIGNAL in each job (a traceback there); refused before the sweep writes, and in
    a run inside a submitit job (SUBMITIT_EXECUTOR) before it trains."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    monkeypatch.setenv("SUBMITIT_PREEMPT_SIGNAL", "SIGUSR2")
    code, _, err = run_main("-m", "hydra/launcher=submitit_local", "seed=0,1", *FAST, monkeypatch=monkeypatch,
                            capsys=capsys, cwd=tmp_path)
    assert (code, err.splitlines()) == (1, [PREEMPT_SIGNAL_REFUSED])
    assert not (tmp_path / "outputs").exists()
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")  # what submitit sets in its jobs
    run = ("model.width=4", *FAST, *ONE_THREAD, "hydra.run.dir=run")
    code, _, err = run_main(*run, monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert (code, err.splitlines()) == (1, [PREEMPT_SIGNAL_REFUSED])
    assert not (tmp_path / "run").exists()
    monkeypatch.setenv("SUBMITIT_PREEMPT_SIGNAL", "USR2")  # the advice
    code, _, err = run_main(*run, monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0 and read_metrics(tmp_path / "run")["status"] == "completed", err[-2000:]


def test_the_slurm_launcher_file_composes_with_its_cluster_values(tmp_path, monkeypatch, capsys):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    code, out, _ = run_main("hydra/launcher=slurm", "--cfg", "hydra", "-p", "hydra.launcher", monkeypatch=monkeypatch,
                            capsys=capsys, cwd=tmp_path)
    assert code == 0
    launcher = yaml.safe_load(out)
    assert launcher["_target_"].endswith("SlurmLauncher")
    for key in ("partition", "timeout_min", "gpus_per_task", "cpus_per_task", "mem_gb"):
        assert launcher[key] is not None, key
