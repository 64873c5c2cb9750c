"""Shared helpers: run the real entry point in a subprocess, find its run directories, read its outputs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

REPO = Path(__file__).resolve().parents[1]

# Tiny tensors on a 2-core machine that also runs the subprocesses: one thread is faster and steadier.
torch.set_num_threads(1)


def run_module(module: str, *args: str, cwd: Path, outputs: Path | None = None, expect_ok: bool = True,
               timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m <module> <args>`` as a user runs it, in ``cwd``, with run directories under ``outputs``."""
    environment = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    environment["MNIST_EXP_OUTPUTS"] = str(outputs or cwd / "outputs")
    environment.update(env or {})
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=environment, capture_output=True,
                            text=True, timeout=timeout)
    if expect_ok and result.returncode != 0:
        pytest.fail(f"python -m {module} {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}")
    return result


def run_app(*args: str, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    """``python -m mnist_exp <args>``; one CPU thread keeps tiny fake-data runs quick beside other tests."""
    return run_module("mnist_exp", *args, "device=cpu", "device.threads=1", cwd=cwd, **kwargs)


def run_dirs(root: Path) -> list[Path]:
    """Every run directory (one with a .hydra folder) under ``root``, sorted."""
    return sorted(path.parent for path in root.rglob(".hydra"))


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def read_events(run_dir: Path) -> EventAccumulator:
    """The run's TensorBoard events, every value kept (the default keeps a sample)."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events
