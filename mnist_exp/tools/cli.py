"""The one command-line style of the tools around runs: evaluate, predict, export and compare.

argparse, not Hydra: these act on files a run already wrote, so they take paths as positional
arguments the shell completes, answer a standard ``--help`` and start without Hydra's set-up.
Training (``python -m mnist_exp``) is Hydra's, as it composes configs.

A mistake is one line and a non-zero exit: ``<command>: <what is wrong>. See --help.`` and exit 2
for a wrong argument (argparse's convention), ``<command>: <message>`` and exit 1 for a file or
value the command cannot use. ``HYDRA_FULL_ERROR=1`` shows the traceback, as it does in training.
"""

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Callable

from mnist_exp.errors import UserError, disk_full, full_disk_error, full_traceback_asked, write_problem
from mnist_exp.hydra_errors import misspelt_option
from mnist_exp.runs import METRICS_FILE


COMMANDS = ("compare", "evaluate", "predict", "export")


def refuse_as_a_command(module: str) -> None:
    """What ``python -m`` of a module of the tools that is not a command says, instead of nothing."""
    sys.exit(f"python -m {module}: this module is a part of the tools, not a command. The commands: "
             + ", ".join(f"python -m mnist_exp.tools.{command}" for command in COMMANDS) + " (each with --help).")


class OneLineParser(argparse.ArgumentParser):
    """A wrong argument is one line, not argparse's usage block and then the error."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: {message}.{misspelt_option(message, self._option_string_actions)} See --help.\n")


def parser(module: str, description: str) -> OneLineParser:
    """The parser of ``python -m mnist_exp.<module>`` (named as the user called it: module or console script)."""
    called = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    prog = called if called.startswith("mnist-exp-") else f"python -m mnist_exp.tools.{module}"
    parser = OneLineParser(prog=prog, description=description)
    parser.set_defaults(prog=prog)  # a command that reports several problems names itself on each line
    return parser


def add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto",
                        help="auto: CUDA, then Apple's MPS, then the CPU (default: auto)")


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    if not text.isdecimal() or int(text) < 1:  # isdigit takes '²', which int() refuses
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def file_name(text: str) -> Path:
    """An argparse type: the name of a file to write, which an empty argument (a variable left unset) is not."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty name: give the file to write")
    return Path(text)


def file_to_write(out: str | Path, option: str, example_name: str) -> Path:
    """The file a tool writes, given as ``option``: not a directory, in one that exists, and no file that exists
    (a run's record, the tool's own input, a user's file): a one-line refusal instead."""
    out = Path(out)
    if out.is_dir():
        raise UserError(f"{option} {out} is a directory: give the file to write, e.g. {out / example_name}.")
    if not out.parent.is_dir():
        raise UserError(f"Cannot write {out}: there is no directory {out.parent}. Create it, or give another {option}.")
    if problem := write_problem(out.parent):
        raise UserError(f"Cannot write {out}: {out.parent} {problem}. Give another {option}.")
    if out.exists() and not out.is_file():  # a device (/dev/null), a pipe: writing the file would replace it
        raise UserError(f"{option} {out} is not a regular file: give the name of a file to write, e.g. {example_name}.")
    if out.exists():
        if run := run_holding(out):
            raise UserError(f"{out} is a file of the run {run}, and a tool writes no file over a run's: give {option} "
                            "a new name.")
        raise UserError(f"{option} {out} exists, and a tool writes over no file: give a new name, or delete that "
                        "file first to replace it.")
    return out


@contextlib.contextmanager
def full_disk_said(out: Path, option: str):
    """A disk that fills as the tool writes ``out`` (given as ``option``): which disk, that ``out`` was not written and
    what to do, not the system's bare 'No space left on device'."""
    try:
        yield
    except OSError as error:
        if not disk_full(error):
            raise
        raise full_disk_error(out.parent, f"{out} was not written", f"give {option} a file on another disk") from None


def run_holding(path: Path) -> Path | None:
    """The run or sweep directory ``path`` lies in (its own or up to two levels up), or None."""
    for folder in list(path.resolve().parents)[:3]:
        if any((folder / name).exists() for name in (".hydra", METRICS_FILE, "multirun.yaml", "sweep.csv")):
            return folder
    return None


def run(command: Callable[[argparse.Namespace], None], arguments: argparse.ArgumentParser,
        argv: list[str] | None = None) -> int:
    """Parse ``argv`` and call ``command(args)``; the exit code (0, 1 for a user's mistake, 2 for a wrong argument)."""
    try:
        args = arguments.parse_intermixed_args(argv)  # paths after an option too: compare A --runs B
    except SystemExit as exit:  # --help (0) or a wrong argument (2, its line already printed)
        return exit.code if isinstance(exit.code, int) else 1
    try:
        command(args)
    except BrokenPipeError:  # the reader of its output stopped (| head): end quietly, as other commands do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush writes nowhere
        return 1
    except (UserError, OSError) as error:
        if full_traceback_asked():
            raise
        print(f"{arguments.prog}: {one_line(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def one_line(error: BaseException) -> str:
    """The message of a UserError; for a file the system refused (disk full, no permission), which and why."""
    if isinstance(error, OSError) and error.strerror:
        where = f": {error.filename}" if error.filename else ""
        return f"{error.strerror}{where}."
    return " ".join(str(error).split()) or type(error).__name__


if __name__ == "__main__":
    refuse_as_a_command(__spec__.name)
