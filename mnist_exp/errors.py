"""User mistakes: the one error type for them, and the words shared by the lines that report them.

Raise ``UserError`` anywhere for a mistake a user can fix; its message says what is wrong and how
to fix it. Every command turns it into one line and exit code 1, with the traceback only under
``HYDRA_FULL_ERROR=1``: the tools through ``mnist_exp.tools.cli``, training through
``mnist_exp.hydra_errors``, which also rewrites Hydra's own multi-line errors as one line.
"""

import errno
import os
import shlex
import shutil
import sys
import tempfile
import time
from difflib import get_close_matches
from pathlib import Path

from hydra.errors import CompactHydraException


MAIN = Path(__file__).resolve().parent / "__main__.py"  # python -m mnist_exp
OTHER_RANKS_WAIT_S = 5  # torchrun stops the other processes within a second of process 0's exit


class UserError(CompactHydraException):
    """A mistake in the user's input: a config value, a file, a name. The message says how to fix it."""


def entry_point() -> list[str]:
    """What follows ``python`` in the command that started this program: ``-m mnist_exp`` (the ``mnist-exp`` script
    too), or the user's own script, which registers their builders, so the commands a message advises start it."""
    script = sys.argv[0] if sys.argv else ""
    ours = script in ("", "-c") or Path(script).resolve() == MAIN or Path(script).name in ("mnist_exp", "mnist-exp")
    return ["-m", "mnist_exp"] if ours else [script]


def advised(arguments: str = "") -> str:
    """A command a message advises, started as this program was: ``python -m mnist_exp <arguments>``."""
    return " ".join([shlex.join(["python", *entry_point()]), *([arguments] if arguments else [])])


def did_you_mean(name: str, choices) -> str:
    """' Did you mean 'cnn'?' for the closest choice (CNN too), or '' when nothing is close."""
    by_lower = {str(choice).lower(): str(choice) for choice in choices}
    match = get_close_matches(str(name).lower(), by_lower, n=1, cutoff=0.6)
    return f" Did you mean '{by_lower[match[0]]}'?" if match else ""


def check_range(key: str, value, ok: bool, allowed: str) -> None:
    """Refuse a value its type allows but its use does not: ``key=value is out of range: it takes <allowed>.``"""
    if not ok:
        raise UserError(f"{key}={value} is out of range: it takes {allowed}.")


def first_line(error: BaseException) -> str:
    """The first line of an error's message, or its type's name where it has none: a library's reason, inline."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def full_traceback_asked() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def other_rank() -> bool:
    """A torchrun process other than rank 0, which writes nothing: torchrun's RANK, read without importing torch."""
    rank = os.environ.get("RANK", "0")
    return rank.isdigit() and int(rank) > 0  # not a number: refused by the one process there is


def print_refusal(message, stream=None) -> None:
    """A refusal's line, on stderr. Under torchrun every process composes the same command and refuses it alike,
    and the first process to end has torchrun stop the others: process 0 (torchrun's RANK) says it at once, the
    others only where they are still running seconds later (a refusal of their own)."""
    if other_rank():
        time.sleep(OTHER_RANKS_WAIT_S)
    print(message, file=stream or sys.stderr)


def disk_full(error: BaseException | None) -> bool:
    """Whether an error, or one it was raised from or during, is a full disk or quota."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        error = error.__cause__ or error.__context__
    return False


def full_disk_error(directory: Path, what: str,
                    elsewhere: str = "write the run elsewhere (hydra.run.dir=<dir>), then resume=true") -> UserError:
    free = shutil.disk_usage(directory).free
    left = f"{free / 2**20:.0f} MiB" if free >= 2**20 else f"{free // 2**10} KiB"  # not "0 MiB" where some is left
    return UserError(f"The disk holding {directory} is full ({left} free): {what}. Free some space, "
                     f"or {elsewhere}.")


def write_problem(directory: Path) -> str | None:
    """Why nothing can be written in ``directory``, found by writing there (permissions alone miss /proc, full disks)."""
    if not directory.is_dir():
        return "is not a directory"
    try:
        with tempfile.TemporaryFile(dir=directory) as probe:  # unnamed on Linux: it leaves nothing behind
            probe.write(bytes(4096))
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as error:
        return "is on a full disk" if disk_full(error) else f"cannot be written ({error.strerror or error})"
    return None
