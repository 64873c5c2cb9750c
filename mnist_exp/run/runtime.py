"""The process's set-up for a run: which device, how many CPU threads, seeds, determinism, signals."""

import contextlib
import multiprocessing
import os
import random
import signal
import threading
import time
from typing import Callable

import numpy as np
import torch

from mnist_exp.errors import UserError, did_you_mean


def select_device(name: str, option: str = "device=") -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; asking for one that is absent is a user error,
    told in the syntax of the command (``device=`` for training, ``--device `` for the tools)."""
    cuda = torch.cuda.is_available()
    mps = torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    use = f"Use {option}auto or {option}cpu."
    if name == "cuda" and not cuda:
        raise UserError(f"{option}cuda, but no CUDA GPU is visible to torch (torch.cuda.is_available() is False). {use}")
    if name == "mps" and not mps:
        raise UserError(f"{option}mps, but Apple's MPS backend is not available here. {use}")
    return torch.device(name)


def set_cpu_threads(threads: int) -> int:
    """Use ``threads`` intra-op threads, or (0) this process's share of the machine.

    The share is ``OMP_NUM_THREADS`` where a parallel launcher set it (joblib's workers get
    cores // n_jobs, so two jobs on two cores do not fight over both), else every core this
    process may run on, not every core of the machine.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if threads > cores:  # threads that wait for a core: many times slower, never faster
        raise UserError(f"device.threads={threads} is more than the {cores} cores this process may use: give at most "
                        f"{cores}, or 0 for its share of them.")
    count = threads if threads > 0 else launcher_threads() or cores
    torch.set_num_threads(count)
    return count


def launcher_threads() -> int | None:
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def use_bf16(precision: str, device: torch.device) -> bool:
    """``auto`` turns on bf16 autocast where the hardware computes in bf16: CUDA, and CPUs with AVX512-BF16 or AMX."""
    if precision != "auto":
        return precision == "bf16"
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())


def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX) and torch may use them, with which oneDNN's bf16
    kernels ran a training step of the cnn 1.6-2.0x faster than fp32 (AMD EPYC, 2 cores); without them ``auto``
    keeps fp32. Kernels held below AVX-512 (``ATEN_CPU_CAPABILITY=avx2``) emulate bf16 at about 4x fp32's time."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private in torch.cpu, hence the guard
    has_instructions = any(getattr(torch.cpu, check, lambda: False)() for check in checks)
    return has_instructions and torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def seconds_since_process_start() -> float | None:
    """Wall seconds since this process started (Linux's /proc, 10 ms steps); None where unknown."""
    try:
        fields = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime: clock ticks after boot
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA too
    if deterministic:
        # cuBLAS needs this workspace setting to be deterministic; harmless elsewhere.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(deterministic)  # both ways: a sweep's jobs share one process


def place_model(model: torch.nn.Module, device: torch.device, channels_last: bool) -> tuple[torch.nn.Module, bool]:
    """The model on ``device``, NHWC if asked for and it has convolutions; and whether it is NHWC."""
    channels_last = channels_last and any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    model = model.to(device)
    return (model.to(memory_format=torch.channels_last) if channels_last else model), channels_last


def stop_signals() -> tuple[signal.Signals, ...]:
    """The signals that stop a run at the next batch with a checkpoint.

    SIGTERM (how schedulers preempt, requeue and cancel a job: SLURM then waits KillWait before
    SIGKILL) and SIGINT (Ctrl-C); inside a submitit job also submitit's own signal (USR2 unless
    SUBMITIT_PREEMPT_SIGNAL says otherwise), sent ahead of the time limit, on which submitit requeues it.
    """
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return signal.SIGTERM, signal.SIGINT
    return submitit_signal(), signal.SIGTERM, signal.SIGINT


# The launchers whose jobs submitit runs, which read SUBMITIT_PREEMPT_SIGNAL.
SUBMITIT_LAUNCHERS = ("submitit_local", "submitit_slurm", "slurm")


def submitit_signal() -> signal.Signals:
    """submitit's preemption signal, named as submitit reads it: SUBMITIT_PREEMPT_SIGNAL without the SIG (USR2)."""
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    catchable = [full.removeprefix("SIG") for full, number in signal.Signals.__members__.items()  # aliases: IOT
                 if number not in (signal.SIGKILL, signal.SIGSTOP)]
    if name not in catchable:
        close = "" if f"SIG{name}" in signal.Signals.__members__ else did_you_mean(name, catchable)  # KILL: none
        raise UserError(f"SUBMITIT_PREEMPT_SIGNAL={name} in the environment is not a signal a job can catch.{close} "
                        "Give a signal's name as submitit reads it, in capitals without SIG (USR2, its default, or "
                        "USR1, TERM, ...), or unset SUBMITIT_PREEMPT_SIGNAL.")
    return signal.Signals["SIG" + name]


def check_preempt_signal(launcher: str | None) -> None:
    """A submitit job reads SUBMITIT_PREEMPT_SIGNAL as it starts (submitit's own error is a traceback in each job):
    checked before a sweep a submitit launcher runs, or a run inside a submitit job, starts."""
    if os.environ.get("SUBMITIT_EXECUTOR") or launcher in SUBMITIT_LAUNCHERS:
        submitit_signal()


def is_submitit_preemption(signum: int) -> bool:
    """submitit's signal in a submitit job: its own handler checkpoints and requeues the job."""
    return bool(os.environ.get("SUBMITIT_EXECUTOR")) and signum == submitit_signal()


def restarted_by_scheduler() -> bool:
    """A job a scheduler may start more than once: a submitit job, or a SLURM batch job started again (requeued)."""
    return bool(os.environ.get("SUBMITIT_EXECUTOR")) or os.environ.get("SLURM_RESTART_COUNT", "0") not in ("", "0")


@contextlib.contextmanager
def stop_on_signals(request_stop: Callable[[], None]):
    """While inside, ``stop_signals()`` call ``request_stop`` (a second one stops at once), and so does a launcher
    worker's parent dying (``watch_parent``, as SIGHUP); yields the signals seen.

    A preempted job should leave a checkpoint to resume from rather than die mid-batch. On the way
    out the previous handlers come back (submitit's among them, which then requeues the job).
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield received
        return

    def handle(signum, _frame):
        if received:
            raise KeyboardInterrupt
        received.append(signum)
        request_stop()

    previous = {signum: signal.signal(signum, handle) for signum in stop_signals()}
    done = threading.Event()
    watch_parent(lambda: received or handle(signal.SIGHUP, None), done)  # a signal seen first is the stop
    try:
        yield received
    finally:
        done.set()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def watch_parent(hang_up: Callable[[], None], done: threading.Event) -> None:
    """In a process a launcher started (a joblib worker): ``hang_up`` where that parent dies before ``done``, as a
    terminal's end sends SIGHUP. A sweep's process killed outright leaves its workers training on unseen, holding
    their jobs' directories; so they stop at the next batch with a checkpoint and record how to resume the sweep."""
    if (launcher := multiprocessing.parent_process()) is None:
        return
    # The pid the worker was started by, not os.getppid() now: a parent ended while the job was being built (a SIGTERM
    # or kill during the sweep's start-up) has had its workers adopted already. loky's workers have no sentinel of
    # their parent: an adopted worker's getppid() is another process's.
    parent = launcher.pid

    def watch() -> None:
        while os.getppid() == parent:
            if done.wait(1.0):
                return
        hang_up()

    threading.Thread(target=watch, name="mnist-exp-parent-watch", daemon=True).start()
