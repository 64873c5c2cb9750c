"""The files of a run directory, by name, and the reading and writing of metrics.json and the test predictions.

    .hydra/  train.log  events.out.tfevents.*  checkpoints/{last,best}.pt  metrics.json
    test_predictions.npz  *.png

Every module that reads or writes these goes through here, so each name is spelled once.
"""

import contextlib
import json
import math
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mnist_exp.errors import UserError, disk_full

try:
    import fcntl
except ImportError:  # Windows: no advisory locks
    fcntl = None

METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
PREDICTIONS_FILE = "test_predictions.npz"  # each test image's predicted and true label, for paired comparisons


# Config keys that say where or how a run goes, not what it trains: a resumed run may change them.
RESUME_MAY_CHANGE = ("resume", "ckpt_path", "dataset.data_dir", "device.", "trainer.progress",
                     "trainer.log_interval", "trainer.compile", "trainer.eval_batch_size", "optimized_metric")


def flatten_config(cfg: Mapping, prefix: str = "") -> dict[str, Any]:
    """{"model": {"name": "cnn"}, "optimizer": {"lr": 1e-3}} -> {"model.name": "cnn", "optimizer.lr": 0.001}."""
    flat: dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def without_resume(overrides: list[str]) -> list[str]:
    """A job's overrides as its first start recorded them: resume=true says how, not what."""
    return [o for o in overrides if not o.lstrip("+~").startswith("resume=")]


def last_checkpoint(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / LAST_CHECKPOINT


def best_checkpoint(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / BEST_CHECKPOINT


class UnreadableMetrics(ValueError):
    """metrics.json exists but is not a JSON object (truncated, corrupt, foreign)."""


def read_metrics(run_dir: Path, strict: bool = False) -> dict[str, Any]:
    """A run's metrics.json; {} while it has none (a run still starting).

    An unreadable file reads as {} too, unless ``strict``: then it raises ``UnreadableMetrics``
    naming the file, so a command that shows runs can say which one it could not read.
    """
    path = Path(run_dir) / METRICS_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as error:
        if strict:
            raise UnreadableMetrics(f"{path} is unreadable ({error.strerror or error})") from error
        return {}
    try:
        metrics = json.loads(text)
    except ValueError as error:
        if strict:
            raise UnreadableMetrics(f"{path} is not valid JSON ({error})") from error
        return {}
    if not isinstance(metrics, dict):
        if strict:
            raise UnreadableMetrics(f"{path} is not a JSON object")
        return {}
    return metrics


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    """metrics.json, replaced atomically; NaN becomes null so any JSON reader takes it."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
    with atomic_file(Path(run_dir) / METRICS_FILE, "w") as f:
        json.dump(clean, f, indent=2)


def write_predictions(run_dir: Path, predicted, true) -> None:
    """test_predictions.npz, replaced atomically: the predicted and the true label of each test image."""
    predicted, true = np.asarray(predicted), np.asarray(true)
    dtype = np.uint8 if max(predicted.max(initial=0), true.max(initial=0)) < 256 else np.int32  # 10k bytes for MNIST
    predicted, true = predicted.astype(dtype), true.astype(dtype)
    with atomic_file(Path(run_dir) / PREDICTIONS_FILE, "wb") as f:
        np.savez_compressed(f, predicted=predicted, true=true)


def read_predictions(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """A run's (predicted, true) test labels; a missing, corrupt or foreign file is a UserError naming it."""
    path = Path(run_dir) / PREDICTIONS_FILE
    if not path.exists():
        raise UserError(f"{run_dir} has no {PREDICTIONS_FILE}: a run writes it when it completes its test. "
                        "Compare completed runs.")
    try:
        with np.load(path, allow_pickle=False) as saved:
            predicted, true = saved["predicted"], saved["true"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise UserError(f"{path} is not a predictions file that python -m mnist_exp wrote "
                        f"({' '.join(str(error).split()) or type(error).__name__}).") from None
    if (predicted.ndim != 1 or predicted.shape != true.shape or predicted.dtype.kind not in "iu"
            or true.dtype.kind not in "iu"):
        raise UserError(f"{path} is not a predictions file that python -m mnist_exp wrote (predicted labels "
                        f"{predicted.dtype}{list(predicted.shape)}, true labels {true.dtype}{list(true.shape)}).")
    return predicted, true


@contextlib.contextmanager
def atomic_file(path: Path, mode: str, newline: str | None = None, fsync: bool = False,
                permissions: int | None = None):
    """Write a file whole or not at all: into a temporary file beside it (``.<name>.*.tmp``), then renamed over it.

    ``fsync``: on the disk before the rename, so not even a crash of the system can leave it half written.
    ``permissions``: the file's mode; by default what the umask leaves of 0666, as for the run's other files.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, newline=newline) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask() if permissions is None else permissions)  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output_location(args: list[str]) -> None:
    """Refuse, in one line, an output location that cannot be written (Hydra would fail with a traceback)."""
    locations = [value for key, _, value in (arg.partition("=") for arg in args)
                 if key in ("hydra.run.dir", "hydra.sweep.dir") and "${" not in value]
    locations.append(os.environ.get("MNIST_EXP_OUTPUTS") or "outputs")
    for location in locations:
        path = Path(location).absolute()
        existing = next(p for p in (path, *path.parents) if p.exists())
        if problem := write_problem(existing):
            raise UserError(f"Cannot write run directories to {path}: {existing} {problem}. "
                            "Choose another place with hydra.run.dir=<dir> or MNIST_EXP_OUTPUTS=<dir>.")


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


def named_run_dir(args: list[str]) -> Path | None:
    """The ``hydra.run.dir`` a single run was given, which it holds while it writes there (rank 0 only)."""
    if os.environ.get("RANK", "0") != "0" or any(arg in ("-m", "--multirun") for arg in args):
        return None
    values = [value for key, _, value in (arg.partition("=") for arg in args) if key == "hydra.run.dir"]
    return Path(values[-1]) if values and "${" not in values[-1] else None


@contextlib.contextmanager
def run_dir_lock(run_dir: Path | None) -> Iterator[None]:
    """Hold ``run_dir`` (a directory given by name) for one run; a second run given it meanwhile is refused.

    A lock on the directory itself (``flock``): the system drops it when the process ends, killed or
    not, so a stale lock never blocks a resume. ``None`` (a name the run claims itself) holds nothing.
    """
    if run_dir is None or fcntl is None:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirInUse(f"Another run is writing to {run_dir} right now: give this one its own "
                              "hydra.run.dir (in a job array, e.g. with ${oc.env:SLURM_ARRAY_TASK_ID} in it), "
                              "or wait for that one to end.") from None
        yield
    finally:
        os.close(fd)


class RunDirInUse(UserError):
    """The run directory is held by a run that is still going."""
