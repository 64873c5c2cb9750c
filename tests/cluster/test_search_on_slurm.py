"""On a real one-node SLURM cluster (``make test-cluster`` starts one, and a PostgreSQL server): sweeps and searches
as a cluster runs them.

- A sweep's jobs go to SLURM as one sbatch array, one task a job.
- An Optuna search runs as two array tasks of one ``sbatch --array --wrap`` command, the README's form, each a
  worker asking for trials of one shared study: in PostgreSQL, and in a journal file.
- A worker SIGKILLed mid-trial leaves its trial RUNNING; its heartbeats stop, and the next worker fails it and
  retries its params.
"""

import os
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import read_metrics, run_dirs
from slurm_jobs import cluster, job_field, start_sweep, wait_for  # noqa: F401 (cluster: a fixture)

optuna = pytest.importorskip("optuna")

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

POSTGRES = "postgresql://mnist_exp:mnist_exp@127.0.0.1:5432/mnist_exp"  # tests/cluster/postgres.sh makes it
TINY = ("model=mlp", "model.hidden=[32]", "dataset=fake", "dataset.num_train=2048", "dataset.val_size=256",
        "dataset.num_test=256", "trainer.epochs=1", "device=cpu", "device.threads=1")


def postgres_up() -> bool:
    from mnist_exp.errors import UserError
    from mnist_exp.sweeps.trial import open_storage

    try:
        open_storage(POSTGRES)
    except UserError:
        return False
    return True


def test_a_sweep_runs_as_one_sbatch_array(tmp_path):
    sweep_dir = tmp_path / "sweep"
    sweep = start_sweep(sweep_dir, *TINY, "seed=0,1,2")
    assert sweep.wait(timeout=300) == 0, sweep.stdout.read()
    tasks = sorted(path.name for path in sweep_dir.glob(".submitit/*_*") if path.is_dir())
    array = tasks[0].split("_")[0]
    assert tasks == [f"{array}_{task}" for task in range(3)]
    assert job_field(f"{array}_0", "ArrayJobId") == array and job_field(f"{array}_2", "ArrayTaskId") == "2"
    assert sorted(read_metrics(run)["status"] for run in run_dirs(sweep_dir)) == ["completed"] * 3


@pytest.fixture
def postgres():
    if not postgres_up():
        pytest.skip("no PostgreSQL server at 127.0.0.1: `make test-cluster` starts one (tests/cluster/postgres.sh)")
    from mnist_exp.sweeps.trial import open_storage

    study_name = f"cluster-{uuid.uuid4().hex[:8]}"  # the database outlives the test
    yield study_name
    if study_name in optuna.get_all_study_names(storage := open_storage(POSTGRES)):
        optuna.delete_study(study_name=study_name, storage=storage)


def search_command(storage: str, study_name: str, sweep_dir: Path, *args: str) -> str:
    """A worker of a search, as the shell line sbatch --wrap runs."""
    return shlex.join([sys.executable, "-m", "mnist_exp", "-m", *TINY, "hydra/sweeper=optuna",
                       "hydra/sweeper/sampler=random", "optimizer.lr=tag(log, interval(1e-3, 1e-1))",
                       f"hydra.sweeper.storage={storage}", f"hydra.sweeper.study_name={study_name}",
                       f"hydra.sweep.dir={sweep_dir}", *args])


def submit(directory: Path, log: str, command: str, *options: str) -> str:
    """sbatch a command, its output in <directory>/<log> (sbatch's patterns: %a, the array task); its job id."""
    submitted = subprocess.run(
        ["sbatch", "--parsable", "--partition=debug", "--cpus-per-task=1", f"--chdir={directory}",
         f"--output={directory}/{log}", *options, "--wrap", command],
        capture_output=True, text=True, check=True, env={**os.environ, "MNIST_EXP_OUTPUTS": str(directory)})
    return submitted.stdout.strip().split(";")[0]


def wait_until_ended(jobs: list[str]) -> list[str]:
    wait_for(lambda: all(job_field(job, "JobState") in ("COMPLETED", "FAILED", "CANCELLED") for job in jobs),
             f"jobs {jobs} to end", timeout=300)
    return [job_field(job, "JobState") for job in jobs]


@pytest.mark.parametrize("store", ["postgresql", "journal file"])
def test_two_array_tasks_share_one_study(store, tmp_path, request):
    study_name = request.getfixturevalue("postgres") if store == "postgresql" else "journal"
    storage = POSTGRES if store == "postgresql" else str(tmp_path / "study.journal")
    sweep_dir = tmp_path / "search"
    array = submit(tmp_path, "worker_%a.out", search_command(storage, study_name, sweep_dir, "hydra.sweeper.n_trials=2"), "--array=0-1")
    states = wait_until_ended([f"{array}_0", f"{array}_1"])
    logs = [(tmp_path / f"worker_{task}.out").read_text() for task in range(2)]
    assert states == ["COMPLETED"] * 2, [log[-3000:] for log in logs]

    from mnist_exp.sweeps.trial import open_storage

    study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    assert sorted(trial.number for trial in study.trials) == [0, 1, 2, 3]  # two each, no number twice
    assert all(trial.state.name == "COMPLETE" for trial in study.trials)
    assert all(log.count("Trial ") >= 2 and f"Study {study_name}" in log for log in logs)
    jobs = sorted(run_dirs(sweep_dir), key=lambda run: int(run.name.split("_")[0]))
    assert [int(run.name.split("_")[0]) for run in jobs] == [0, 1, 2, 3]
    for trial, run in zip(sorted(study.trials, key=lambda t: t.number), jobs):
        assert trial.value == read_metrics(run)["best_val/acc"]


def test_the_trial_of_a_killed_worker_on_slurm_is_retried_by_the_next(postgres, tmp_path):
    from mnist_exp.sweeps.trial import open_storage

    # Both workers search the same experiment (a continued study is the search it began). Its trial trains long past
    # its first epoch, so the kill always lands mid-trial; the retry trains it all (seconds).
    one_trial = ("hydra.sweeper.n_trials=1", "hydra.sweeper.heartbeat_interval=1", "dataset.num_train=16384",
                 "trainer.epochs=20")
    first = submit(tmp_path, "first.out", search_command(POSTGRES, postgres, tmp_path / "a", *one_trial))
    wait_for(lambda: next((tmp_path / "a").glob("*/checkpoints/last.pt"), None), "the first worker's first epoch")
    # SIGKILL, as the kernel's OOM killer or a lost node ends a job (scancel sends SIGTERM first, and the worker
    # then fails its trial itself): no tell, no record.
    subprocess.run(["pkill", "--signal", "KILL", "--full", f"study_name={postgres}"], check=True)
    assert wait_until_ended([first]) != ["COMPLETED"]
    study = optuna.load_study(study_name=postgres, storage=open_storage(POSTGRES))
    assert [trial.state.name for trial in study.trials] == ["RUNNING"]
    time.sleep(2.5)  # past the grace period, two heartbeat intervals
    second = submit(tmp_path, "second.out", search_command(POSTGRES, postgres, tmp_path / "b", *one_trial))
    assert wait_until_ended([second]) == ["COMPLETED"], (tmp_path / "second.out").read_text()[-3000:]
    killed, retried = optuna.load_study(study_name=postgres, storage=open_storage(POSTGRES)).trials
    assert killed.state.name == "FAIL" and retried.state.name == "COMPLETE"
    assert retried.params == killed.params
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(retried) == killed.number


def test_a_database_that_refuses_the_password_is_one_line_without_it(postgres, tmp_path):
    wrong = POSTGRES.replace(":mnist_exp@", ":not-the-password@")
    done = subprocess.run([sys.executable, "-m", "mnist_exp", "-m", *TINY, "hydra/sweeper=optuna",
                           f"hydra.sweeper.storage={wrong}", f"hydra.sweep.dir={tmp_path / 'search'}"],
                          cwd=tmp_path, capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"})
    assert done.returncode != 0 and "not-the-password" not in done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "cannot be reached" in line and "password authentication failed" in line, line
