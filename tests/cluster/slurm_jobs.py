"""What the cluster tests share: the one-node cluster's fixture, the launcher's settings, SLURM's view of a job."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

LAUNCHER = ("hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.gpus_per_task=null",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=null")


def cluster_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return states.returncode == 0 and any(s in states.stdout for s in ("idle", "mixed", "allocated"))


@pytest.fixture(scope="module", autouse=True)
def cluster():
    if not cluster_up():
        pytest.skip("no SLURM cluster on this machine: `make test-cluster` starts a one-node one (as root, from "
                    "Debian's slurm-wlm and munge) and runs these tests")


def start_sweep(sweep_dir: Path, *args: str) -> subprocess.Popen:
    """A one-job sweep on SLURM, its command left waiting for the job as a user's would."""
    command = [sys.executable, "-m", "mnist_exp", "-m", *LAUNCHER, *args, f"hydra.sweep.dir={sweep_dir}"]
    return subprocess.Popen(command, cwd=sweep_dir.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "MNIST_EXP_OUTPUTS": str(sweep_dir.parent)})


def wait_for(condition, what: str, timeout: float = 240, process: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the sweep ended before {what}:\n{process.stdout.read()}")
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def job_field(job: str, field: str) -> str:
    shown = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
    return next((word.split("=", 1)[1] for word in shown.split() if word.startswith(f"{field}=")), "")


def job_state(job: str) -> str:
    return job_field(job, "JobState")
