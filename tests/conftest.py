"""Shared helpers: run the real entry point (in this process, or in a subprocess where that is the point), find
its run directories, read its outputs.

The ``slow`` marker has one rule (pyproject.toml's marker description says the same): a test is ``slow`` when it
trains on real MNIST or starts a separate process (a subprocess or Popen of python, torchrun, pip, a launcher's
worker processes, a server). A file whose every test qualifies says so once, with a module-level ``pytestmark``;
otherwise the test (or the fixture's users) carry ``@pytest.mark.slow``. Every other test runs in this process
(``run_main`` for the app) and on fake data, and ``make test-fast`` (``-m 'not slow'``) runs them all.
"""

import collections
import contextlib
import ctypes
import io
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny tensors on a 2-core machine that also runs the subprocesses: one thread is faster and steadier.

    Set here, where tests run, and torch imported only then: make test's controlling process, which runs no test,
    starts its workers without first importing torch (2 s)."""
    import torch

    torch.set_num_threads(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files with the most slow tests first, then those of most tests (make test: --dist loadfile
    --no-loadscope-reorder keeps this order).

    make test gives each of its workers whole files, in the order collected. xdist on its own starts with the
    files of most tests, which are mostly quick ones, and leaves files of a few long tests (real MNIST, killed
    processes) for the end, where one worker runs them while the other waits. Each file's tests keep their order.
    """
    slow = collections.Counter(item.path for item in items if item.get_closest_marker("slow"))
    tests = collections.Counter(item.path for item in items)
    items.sort(key=lambda item: (-slow[item.path], -tests[item.path]))  # a stable sort: ties stay in name order


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    """Until ``url`` answers (a server ``process`` started); fails where the process ends first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{url} did not answer (the server {'exited' if process.poll() is not None else 'hung'})")
            time.sleep(0.3)


@contextlib.contextmanager
def tmpfs(disk: Path, size: str):
    """A filesystem of ``size`` (e.g. 4m) mounted at ``disk`` while the block runs, to fill; skipped without root."""
    disk.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)], capture_output=True,
                           text=True)
    if mount.returncode:
        pytest.skip(f"a small filesystem to fill needs mount (root): {mount.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB filesystem: room for the tools' probe of a directory, not for the file a tool then writes."""
    with tmpfs(tmp_path / "disk", "64k") as disk:
        yield disk


def run_dirs(root: Path) -> list[Path]:
    """Every run directory (one with a .hydra folder) under ``root``, sorted."""
    return sorted(path.parent for path in root.rglob(".hydra"))


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def read_png(path: Path | bytes) -> np.ndarray:
    """A PNG (a file, or its bytes) decoded by PIL: int [H, W, 3] RGB pixels."""
    with Image.open(io.BytesIO(path) if isinstance(path, bytes) else path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB")).astype(int)


def count_colour(pixels: np.ndarray, colour, tolerance: int = 2) -> int:
    """How many pixels are ``colour``, each channel within ``tolerance``: integers 0-255, or a matplotlib colour (a
    name such as "C0" or "tab:green", or fractions 0-1 as a colour map gives)."""
    if isinstance(colour, str) or not all(isinstance(channel, (int, np.integer)) for channel in colour):
        from matplotlib.colors import to_rgb

        colour = [round(255 * channel) for channel in to_rgb(colour)]
    return int((np.abs(pixels - np.asarray(colour)).max(axis=-1) <= tolerance).sum())


def read_events(run_dir: Path):
    """The run's TensorBoard events (an EventAccumulator), every value kept (the default keeps a sample)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def kill_at_creation(process: subprocess.Popen, directory: Path, prefix: str, nth: int, timeout: float = 300,
                     sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` (SIGKILL) to ``process`` the moment the ``nth`` file whose name starts with ``prefix`` is created
    in ``directory``, then wait for it to end.

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
                    process.send_signal(sig)
                    break
    finally:
        os.close(fd)
    process.wait(timeout=60)


@contextlib.contextmanager
def torch_settings_kept():
    """A run in this process sets torch's threads and (trainer.deterministic) its deterministic mode: put them back,
    so the tests after it in this worker run as conftest set them."""
    import torch

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def run_main(*args: str, monkeypatch, capsys=None, cwd: Path) -> tuple[int, str, str]:
    """``python -m mnist_exp <args>`` in this process (no start-up cost): exit code, stdout, stderr.

    Without ``capsys`` (a module-scoped fixture has none) stdout and stderr come back empty; ``run_captured``
    is the module fixtures' way to read them.
    """
    from mnist_exp import app

    monkeypatch.chdir(cwd)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setenv("MNIST_EXP_OUTPUTS", str(cwd / "outputs"))
    monkeypatch.setattr(sys, "argv", ["mnist_exp", *args])
    code = 0
    with torch_settings_kept():
        try:
            app.main()
        except SystemExit as exit:
            code = exit.code
    out, err = capsys.readouterr() if capsys else ("", "")
    if isinstance(code, str):  # sys.exit("message"): Python prints it on the way out
        code, err = 1, err + code + "\n"
    return code or 0, out, err


def run_captured(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``run_main`` for a module-scoped fixture: the run's stdout and stderr read from its own streams."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as monkeypatch:
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code, _, message = run_main(*args, monkeypatch=monkeypatch, cwd=cwd)
    return code, out.getvalue(), err.getvalue() + message  # message: a sys.exit("...") line
