"""Stopping and continuing a run: kills at exact moments, signals, submitit requeues, refused resumes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import read_events, read_metrics, run_dirs, run_module
from mnist_exp.checkpoint import load_checkpoint


# Dropout, shift augmentation and a weight average: every random draw and every state a resume must restore.
DETERMINISTIC = ("dataset=fake", "dataset.num_train=8192", "trainer.epochs=3", "trainer.deterministic=true",
                 "model.width=8", "model.dropout=0.2", "augment=shift", "augment.max_shift=1", "trainer.ema_decay=0.9", "seed=3",
                 "device=cpu", "device.threads=1")


def same_result(a: dict, b: dict) -> bool:
    keys = ("test/acc", "test/loss", "val/acc", "val/loss", "best_val/acc", "epoch")
    return {k: a[k] for k in keys} == {k: b[k] for k in keys}


def start_and_signal(run_dir, signum) -> subprocess.Popen:
    """Start a deterministic run; send it ``signum`` once its first epoch is checkpointed (training is underway)."""
    command = [sys.executable, "-m", "mnist_exp", *DETERMINISTIC, f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen(command, cwd=run_dir.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run_dir / "checkpoints" / "last.pt"
    while not last.exists() and process.poll() is None:
        time.sleep(0.005)
    process.send_signal(signum)
    process.wait(timeout=120)
    return process


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("deterministic") / "run"
    run_module("mnist_exp", *DETERMINISTIC, f"hydra.run.dir={run_dir}", cwd=run_dir.parent)
    return run_dir


def test_deterministic_runs_are_bit_identical(uninterrupted, tmp_path):
    run_module("mnist_exp", *DETERMINISTIC, f"hydra.run.dir={tmp_path / 'again'}", cwd=tmp_path)
    assert same_result(read_metrics(tmp_path / "again"), read_metrics(uninterrupted))


def test_a_killed_run_resumes_from_its_last_epoch_to_the_same_result(uninterrupted, tmp_path):
    run_dir = tmp_path / "killed"
    process = start_and_signal(run_dir, signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    epoch_at_kill = load_checkpoint(run_dir / "checkpoints" / "last.pt")["trainer"]["state"]["epoch"]
    assert epoch_at_kill < 3
    result = run_module("mnist_exp", *DETERMINISTIC, f"hydra.run.dir={run_dir}", "resume=true", cwd=tmp_path)
    assert f"at epoch {epoch_at_kill}" in result.stdout
    assert same_result(read_metrics(run_dir), read_metrics(uninterrupted))
    # TensorBoard shows each epoch once, not the killed run's points twice.
    steps = [e.step for e in read_events(run_dir).Scalars("val/acc")]
    assert steps == [e.step for e in read_events(uninterrupted).Scalars("val/acc")]


def test_sigterm_stops_mid_epoch_writes_last_pt_and_the_printed_command_resumes_it(uninterrupted, tmp_path):
    run_dir = tmp_path / "terminated"
    process = start_and_signal(run_dir, signal.SIGTERM)
    assert process.returncode == 128 + signal.SIGTERM
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")["trainer"]["state"]
    assert state["batch_in_epoch"] > 0  # inside an epoch, not at its end
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "stopped" and "Resume with" in (run_dir / "train.log").read_text()
    command = metrics["resume"].split()
    assert command[:3] == ["python", "-m", "mnist_exp"] and "resume=true" in command
    run_module("mnist_exp", *command[3:], cwd=tmp_path)
    assert same_result(read_metrics(run_dir), read_metrics(uninterrupted))


def submitit_task(folder: Path) -> int | None:
    """The pid of the submitit task (the process running the job) whose files are under ``folder``."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "submitit.core._submit" in args and any(str(folder) in arg for arg in args):
            return int(cmdline.parent.name)
    return None


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds the job's process through /proc")
def test_a_preempted_submitit_job_is_requeued_and_continues_to_the_same_result(uninterrupted, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep_dir = tmp_path / "sweep"
    command = [sys.executable, "-m", "mnist_exp", "-m", "hydra/launcher=submitit_local", *DETERMINISTIC,
               f"hydra.sweep.dir={sweep_dir}"]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while not list(sweep_dir.glob("0_*/checkpoints/last.pt")) and process.poll() is None:
        time.sleep(0.005)
    # What SLURM does on preemption: submitit's signal (USR2) to the job's process.
    os.kill(submitit_task(sweep_dir), signal.SIGUSR2)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    [job] = run_dirs(sweep_dir)
    log = (job / "train.log").read_text()
    assert "Preempted (SIGUSR2)" in log and "A requeued job: continuing" in log and "Resumed from" in log
    assert same_result(read_metrics(job), read_metrics(uninterrupted))


