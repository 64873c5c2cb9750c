"""Shared helpers: run the real entry point in a subprocess, find its run directories, read its outputs."""

import ctypes
import json
import os
import select
import struct
import subprocess
import sys
import time
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


def kill_at_creation(process: subprocess.Popen, directory: Path, prefix: str, nth: int, timeout: float = 300) -> None:
    """SIGKILL ``process`` the moment the ``nth`` file whose name starts with ``prefix`` is created in ``directory``.

    Linux's inotify tells of each creation as it happens, so the kill lands at that point of the
    program (a checkpoint's temporary file: the write has begun), not at a moment chosen by a sleep.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_CLOEXEC)
    if fd < 0 or libc.inotify_add_watch(fd, str(directory).encode(), 0x100) < 0:  # IN_CREATE
        pytest.skip(f"inotify is not available here (errno {ctypes.get_errno()})")
    seen, deadline = 0, time.monotonic() + timeout
    try:
        while seen < nth:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the run ended (or timed out) after {seen} of {nth} files {prefix}* were created")
            if not select.select([fd], [], [], 0.5)[0]:
                continue
            events = os.read(fd, 65536)
            offset = 0
            while offset < len(events):
                _, _, _, length = struct.unpack_from("iIII", events, offset)
                name = events[offset + 16: offset + 16 + length].rstrip(b"\0").decode()
                offset += 16 + length
                seen += name.startswith(prefix)
                if seen == nth:
                    process.kill()
                    break
    finally:
        os.close(fd)
    process.wait(timeout=60)


def run_main(*args: str, monkeypatch, capsys=None, cwd: Path) -> tuple[int, str, str]:
    """``python -m mnist_exp <args>`` in this process (no start-up cost): exit code, stdout, stderr.

    Without ``capsys`` (a module-scoped fixture has none) stdout and stderr come back empty.
    """
    from mnist_exp import app

    monkeypatch.chdir(cwd)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setenv("MNIST_EXP_OUTPUTS", str(cwd / "outputs"))
    monkeypatch.setattr(sys, "argv", ["mnist_exp", *args])
    code = 0
    try:
        app.main()
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr() if capsys else ("", "")
    if isinstance(code, str):  # sys.exit("message"): Python prints it on the way out
        code, err = 1, err + code + "\n"
    return code or 0, out, err
