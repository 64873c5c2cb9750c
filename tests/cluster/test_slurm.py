"""On a real one-node SLURM cluster (``make test-cluster`` starts one): what survives a requeue and a time limit.

- A job requeued after its run completed returns the recorded run: nothing trained, nothing written.
- ``scontrol requeue`` in the middle of an epoch (SIGTERM, then SIGKILL after KillWait): the run writes
  last.pt at the next batch and exits; the requeued job continues from that batch to the result an
  uninterrupted run gets.
- A job reaching its time limit twice (USR2 ``signal_delay_s`` before it): submitit requeues it each
  time and the run ends with the uninterrupted result.

SLURM holds a requeued job for about two minutes before it starts it again; the tests start it at
once (``scontrol update StartTime=now``). Without a cluster these tests skip, saying how to start one.
"""

import subprocess
import time
from pathlib import Path

import pytest
import torch

from conftest import read_metrics, run_module
from slurm_jobs import cluster, job_field, job_state, start_sweep, wait_for  # noqa: F401 (cluster: a fixture)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

# Deterministic on one thread, so an interrupted run can be compared with an uninterrupted one bit for bit.
TRAIN = ("dataset=fake", "dataset.num_train=16384", "dataset.val_size=256", "dataset.num_test=256", "model=vgg_cnn",
         "model.width=8", "trainer.batch_size=32", "trainer.deterministic=true", "scheduler=none", "device=cpu",
         "device.threads=1", "seed=3")


def job_id(sweep_dir: Path) -> str:
    """The SLURM job of the sweep's one job ('12'; an array task, '12_0', where a sweep has several), once it runs."""
    logs = sorted(sweep_dir.glob(".submitit/*/*_0_log.out"))
    return logs[0].parent.name if logs else ""


def job_log(sweep_dir: Path, job: str) -> Path:
    return sweep_dir / ".submitit" / job / f"{job}_0_log.out"


def starts(log: Path) -> int:
    """How many times the job has started, by its log."""
    return log.read_text().count("Starting with JobEnvironment") if log.exists() else 0


def time_limits(text: str) -> int:
    """How many time-limit signals submitit caught, by its log (its own line, not the app's copy of it)."""
    return sum(line.startswith("submitit WARNING") and "Caught signal SIGUSR2" in line for line in text.splitlines())


def restart_now(job: str, log: Path, before: int) -> None:
    """Wait for the requeued job to start again: it may wait for its BeginTime (about two minutes), so while it is
    pending it is told to start now (the controller may refuse while it is still requeueing it: told again). A
    launch that fails while the node still cleans up the job's last start holds the job: it is released. A job
    started again within a second of its end is killed before it starts ("Job credential revoked": slurmd's
    revocations have one-second resolution): it is requeued again."""

    def started() -> bool:
        if starts(log) > before:
            return True
        state = job_state(job)
        if state == "FAILED":
            subprocess.run(["scontrol", "requeue", job], capture_output=True)
        elif state == "PENDING":
            if "held" in job_field(job, "Reason").lower():
                subprocess.run(["scontrol", "release", job], capture_output=True)
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], capture_output=True)
        return False

    try:
        wait_for(started, f"job {job} to start again")
    except AssertionError as error:
        shown = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
        tail = "\n".join(log.read_text().splitlines()[-15:]) if log.exists() else "(no log)"
        raise AssertionError(f"{error}\n{shown}\nits log ends:\n{tail}") from None


def run_dir_of(sweep_dir: Path) -> Path:
    [run_dir] = [path for path in sweep_dir.iterdir() if path.is_dir() and path.name[0].isdigit()]
    return run_dir


def files_of(run_dir: Path) -> dict[str, bytes]:
    return {str(path.relative_to(run_dir)): path.read_bytes() for path in sorted(run_dir.rglob("*")) if path.is_file()
            and path.parent.name != ".hydra" and path.name != "train.log"}


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["weights"]


def uninterrupted_run(tmp_path_factory, *args: str) -> Path:
    """The same run without SLURM and without a stop: the result an interrupted one must end with."""
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    run_module("mnist_exp", *args, f"hydra.run.dir={run_dir}", cwd=run_dir.parent)
    return run_dir


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return uninterrupted_run(tmp_path_factory, *TRAIN, "trainer.epochs=3")


LONG = (*TRAIN, "dataset.num_train=65536", "trainer.epochs=7")  # about 60 s of training: two time limits or more


@pytest.fixture(scope="module")
def uninterrupted_long(tmp_path_factory):
    return uninterrupted_run(tmp_path_factory, *LONG)


def test_a_requeued_job_whose_run_completed_returns_it_untouched(tmp_path):
    sweep_dir = tmp_path / "sweep"
    sweep = start_sweep(sweep_dir, *TRAIN, "trainer.epochs=1")
    assert sweep.wait(timeout=300) == 0, sweep.stdout.read()
    run_dir, job = run_dir_of(sweep_dir), job_id(sweep_dir)
    assert read_metrics(run_dir)["status"] == "completed"
    before = files_of(run_dir)
    log = job_log(sweep_dir, job)
    wait_for(lambda: job_state(job) == "COMPLETED", "SLURM to finish the job")  # not COMPLETING: its node is clean
    subprocess.run(["scontrol", "requeue", job], check=True)  # as SLURM does to a job it loses track of
    restart_now(job, log, starts(log))
    wait_for(lambda: job_state(job) == "COMPLETED" and "is complete (test accuracy" in log.read_text(),
             "the requeued job to return the completed run")
    assert files_of(run_dir) == before  # checkpoints, event files, metrics.json, predictions: byte for byte
    assert "First batch" not in log.read_text().split("is complete")[-1]


def test_scontrol_requeue_mid_epoch_continues_from_that_batch_to_the_uninterrupted_result(tmp_path, uninterrupted):
    sweep_dir = tmp_path / "sweep"
    sweep = start_sweep(sweep_dir, *TRAIN, "trainer.epochs=3")
    job = wait_for(lambda: job_id(sweep_dir), "the job to be submitted", process=sweep)
    last = wait_for(lambda: next(sweep_dir.glob("*/checkpoints/last.pt"), None), "the first epoch", process=sweep)
    time.sleep(0.5)  # into the second epoch
    subprocess.run(["scontrol", "requeue", job], check=True)  # SIGTERM, then SIGKILL after KillWait
    restart_now(job, job_log(sweep_dir, job), 1)
    assert sweep.wait(timeout=300) == 0, sweep.stdout.read()
    run_dir = last.parent.parent
    log = job_log(sweep_dir, job).read_text()
    assert "Stopped by SIGTERM in epoch 2, batch " in log and "Resumed from " in log
    metrics, expected = read_metrics(run_dir), read_metrics(uninterrupted)
    assert metrics["status"] == "completed" and metrics["test/acc"] == expected["test/acc"]
    for name, value in final_weights(uninterrupted).items():
        assert torch.equal(final_weights(run_dir)[name], value), name


def test_two_time_limit_requeues_end_with_the_uninterrupted_result(tmp_path, uninterrupted_long):
    sweep_dir = tmp_path / "sweep"
    uninterrupted = uninterrupted_long
    # USR2 comes signal_delay_s before the one-minute limit; SLURM may send it up to a minute early. A start then
    # trains 10-25 s, so the run takes 4-6 starts: submitit may requeue it up to 8 times.
    sweep = start_sweep(sweep_dir, *LONG, "hydra.launcher.timeout_min=1",
                        "hydra.launcher.signal_delay_s=50", "hydra.launcher.max_num_timeout=8",
                        "+hydra.launcher.additional_parameters.requeue=true")
    job = wait_for(lambda: job_id(sweep_dir), "the job to be submitted", process=sweep)
    log = job_log(sweep_dir, job)
    # Each time limit: USR2, submitit requeues the job, it starts again. SLURM may signal before training starts
    # (then submitit requeues the job without a checkpoint of ours) or, late in a start, not at all. Signalled
    # before submitit's handler is in place, the job dies of USR2 itself (FAILED, nothing of ours in its log since
    # that start): it is requeued, as submitit would have; a few times at most.
    killed_at_start = 0
    while sweep.poll() is None:
        since_start = log.read_text().split("Starting with JobEnvironment")[-1]
        if job_state(job) == "FAILED" and "[mnist_exp]" not in since_start:
            killed_at_start += 1
            assert killed_at_start <= 3, "the job was killed before it began three times"
            restart_now(job, log, starts(log))  # requeues a FAILED job
        elif time_limits(since_start):  # the job's last start ended at a time limit: submitit requeued it
            restart_now(job, log, starts(log))
        time.sleep(0.5)
    assert sweep.returncode == 0, sweep.stdout.read()
    text = log.read_text()
    assert time_limits(text) >= 2, "fewer than two time limits: give the run more epochs"
    assert "ahead of the time limit; checkpoints/last.pt written" in text and "Resumed from " in text
    run_dir = run_dir_of(sweep_dir)
    metrics, expected = read_metrics(run_dir), read_metrics(uninterrupted)
    assert metrics["status"] == "completed" and metrics["test/acc"] == expected["test/acc"]
    for name, value in final_weights(uninterrupted).items():
        assert torch.equal(final_weights(run_dir)[name], value), name
