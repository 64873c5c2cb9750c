"""A run holds its directory while it writes there, so a second run given the same directory meanwhile (a resume,
say) is refused rather than interleaving its files with the first's. A directory given by name
(``hydra.run.dir=<dir>``) is held before Hydra writes there; one the run names itself, as its job starts. A grid
sweep holds its ``hydra.sweep.dir`` from its start (``HoldSweepDir``): two resumes of one sweep would split its jobs."""

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mnist_exp.errors import UserError, other_rank, print_refusal
from mnist_exp.hydra_errors import release_stderr
from mnist_exp.run.command_line import CommandLine
from mnist_exp.run.commands import records_a_grid
from mnist_exp.run.config import MADE_RUN_DIRS

try:
    import fcntl
except ImportError:  # Windows: no advisory locks
    fcntl = None


HELD: set[Path] = set()  # the directories this process holds
OWN_DIR = ("give this one its own hydra.run.dir (in a job array, e.g. with ${oc.env:SLURM_ARRAY_TASK_ID} in it), or "
           "wait for that one to end.")
OWN_SWEEP_DIR = "give this sweep its own hydra.sweep.dir (or leave it out)."
WAIT = "wait for that one to end, then run this again."  # a resume, or a sweep's job: the directory is theirs


class RunDirInUse(UserError):
    """The run directory is held by a run that is still going."""


def held_run_dir(command: CommandLine) -> Path | None:
    """The ``hydra.run.dir`` a single run was given, which it holds while it writes there (rank 0 only)."""
    if other_rank() or command.multirun or command.prints_only:
        return None
    return command.run_dir


# The sweep this command started, as Hydra resolved its directory, and the lock a grid's holds (released by app.main).
SWEEP_DIRS: list[Path] = []
SWEEP_LOCK = contextlib.ExitStack()


class HoldSweepDir(Callback):
    """A grid sweep holds its directory from its start: a second sweep or resume there meanwhile would split its
    jobs, then each fail on the other's. (A search's workers share theirs, and its study.)"""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        SWEEP_DIRS.append(Path(config.hydra.sweep.dir))
        if other_rank() or not records_a_grid(config.hydra):
            return
        try:
            SWEEP_LOCK.enter_context(run_dir_lock(SWEEP_DIRS[-1], WAIT if config.resume else OWN_SWEEP_DIR, "sweep"))
        except RunDirInUse as error:  # before Hydra writes its multirun.yaml there
            release_stderr()
            print_refusal(error)
            raise SystemExit(1) from None

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        SWEEP_LOCK.close()


def written_now(run_dir: Path) -> bool:
    """Another run holds ``run_dir`` (``run_dir_lock``) at this moment."""
    if fcntl is None or not run_dir.is_dir():
        return False
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # released with the descriptor
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


@contextlib.contextmanager
def run_dir_lock(run_dir: Path | None, advice: str = OWN_DIR, holder: str = "run") -> Iterator[None]:
    """Hold ``run_dir`` for one run (or sweep: ``holder``); a second one given it meanwhile is refused, told ``advice``.

    A lock on the directory itself (``flock``): the system drops it when the process ends, killed or
    not, so a stale lock never blocks a resume. ``None`` (a name the run claims itself, held by
    ``job_dir_lock`` once its job starts) holds nothing here.
    """
    if run_dir is None or fcntl is None:
        yield
        return
    made = [path for path in [run_dir, *run_dir.parents] if not path.exists()]  # the leaf first
    created = bool(made)
    run_dir.mkdir(parents=True, exist_ok=True)
    if created and holder == "run":
        MADE_RUN_DIRS.add(run_dir.resolve())  # a run refused while it is built takes it away again
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirInUse(f"Another {holder} is writing to {run_dir} right now: {advice}") from None
        HELD.add(run_dir.resolve())
        yield
    finally:
        HELD.discard(run_dir.resolve())
        os.close(fd)
        # One refused before it wrote there leaves no empty directory behind (rmdir takes only an empty one).
        with contextlib.suppress(OSError):
            for path in made:
                path.rmdir()


def job_dir_lock(run_dir: Path) -> contextlib.AbstractContextManager:
    """``run_dir_lock`` for a job's directory that no lock holds yet (a flock from a second descriptor of this
    process would be refused); none under torchrun but on rank 0, the one that writes."""
    if other_rank() or run_dir.resolve() in HELD:
        return contextlib.nullcontext()
    return run_dir_lock(run_dir, WAIT)
