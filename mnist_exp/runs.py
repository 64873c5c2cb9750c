"""What a run directory holds: its files by name, metrics.json and its status, the test predictions (the
leaderboard reads runs through ``mnist_exp.tools.run_records``).

    .hydra/  train.log  events.out.tfevents.*  checkpoints/{last,best}.pt  metrics.json
    test_predictions.npz  *.png

The app, resume, the sweep's summary and the tools all go through here, so each name is spelled once.
"""

import contextlib
import json
import math
import os
import re
import tempfile
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from mnist_exp.errors import UserError, did_you_mean


class Status(str, Enum):
    """A run's ``status`` in metrics.json (a str: it is written and compared as its value)."""

    COMPLETED = "completed"  # tested and recorded
    PRUNED = "pruned"  # stopped early by an Optuna search, then tested and recorded
    STOPPED = "stopped"  # stopped by a signal; metrics.json says how to resume
    FAILED = "failed"  # an error; metrics.json has it
    UNFINISHED = "unfinished"  # no metrics.json yet: still running, or killed
    UNREADABLE = "unreadable"  # a metrics.json that is not one


METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
PREDICTIONS_FILE = "test_predictions.npz"  # each test image's predicted and true label, for paired comparisons
RUN_ID_FILE = ".hydra/run_id"  # the run's id, which each checkpoint it writes holds as "run_id"


# Config keys that say where or how a run goes, not what it trains: a resumed run may change them.
RESUME_MAY_CHANGE = ("resume", "ckpt_path", "dataset.data_dir", "device.", "trainer.progress",
                     "trainer.log_interval", "trainer.compile", "trainer.eval_batch_size", "optimized_metric", "logger")
# Of those, the one that changes what a run computes: compared and recorded as what it ran (a run's metrics.json
# says what device.precision=auto became).
PRECISION = "device.precision"


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


def hyperparameters(config: dict) -> dict[str, Any]:
    """The flattened config as the trackers record it, less the keys that only say where or how."""
    return {key: value for key, value in flatten_config(config).items() if not says_where_or_how(key)}


# The characters of a value Hydra's override grammar reads without quotes.
PLAIN_VALUE = re.compile(r"[\w/.\-+:@%]*")


def as_override(key: str, value: Any) -> str:
    """``key=value`` as the command line takes it back: null, true, [128,64] (no space to split it), and a text
    with other characters quoted for Hydra: hydra.run.dir="runs/a (b)"."""
    if not isinstance(value, str):
        return f"{key}={json.dumps(value, separators=(',', ':'))}"
    quote = "'" if '"' in value else '"'
    return f"{key}={value if PLAIN_VALUE.fullmatch(value) else quote + value + quote}"


def split_override(text: str) -> tuple[str, str]:
    """('model', 'cnn') for a recorded override 'model=cnn'; ('resume', 'true') for '+resume=true'."""
    key, _, value = text.partition("=")
    return key.lstrip("+~"), value


def without_keys(overrides: list[str], keys: tuple[str, ...]) -> list[str]:
    """The overrides less those that set one of ``keys``."""
    return [text for text in overrides if split_override(text)[0] not in keys]


def without_resume(overrides: list[str]) -> list[str]:
    """A job's overrides as its first start recorded them: resume=true says how, not what."""
    return without_keys(overrides, ("resume",))


def last_checkpoint(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / LAST_CHECKPOINT


def best_checkpoint(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / BEST_CHECKPOINT


def recorded_run_id(run_dir: Path) -> str | None:
    """The id in a run's .hydra/run_id; None where it has none, or holds no id (a damaged file, or a run from before
    run ids: its checkpoints are taken as its own)."""
    try:
        text = (Path(run_dir) / RUN_ID_FILE).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if re.fullmatch(r"[0-9a-f]{32}", text) else None


def of_another_run(checkpoint: Mapping[str, Any], run_id: str | None) -> bool:
    """Whether a checkpoint is another run's than the one of ``run_id``; an id missing on either side (a run from
    before run ids, a damaged record) takes it as the run's own."""
    theirs = checkpoint.get("run_id")
    return bool(run_id and theirs and theirs != run_id)


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
    except (OSError, UnicodeDecodeError) as error:  # the second: bytes that are no text
        if strict:
            raise UnreadableMetrics(f"{path} is unreadable ({getattr(error, 'strerror', None) or error})") from error
        return {}
    try:
        metrics = json.loads(text)
    except ValueError as error:
        if strict:
            raise UnreadableMetrics(f"{path} is not valid JSON ({error})") from error
        return {}
    problem = "is not a JSON object" if not isinstance(metrics, dict) else metrics_problem(metrics)
    if problem:
        if strict:
            raise UnreadableMetrics(f"{path} {problem}")
        return {}
    return metrics


# The metrics a leaderboard ranks by and averages, and the values a run writes for them (or null).
METRIC_RANGES = {"test/acc": (0, 1), "val/acc": (0, 1), "best_val/acc": (0, 1), "test/loss": (0, math.inf),
                 "val/loss": (0, math.inf), "train_time_s": (0, math.inf)}


def metrics_problem(metrics: dict[str, Any]) -> str | None:
    """What in a metrics.json no run writes: a status it does not know, a metric that is no number in its range."""
    if metrics.get("status", Status.COMPLETED.value) not in {status.value for status in Status}:
        return f"has status {metrics['status']!r}, which no run writes"
    for key, (low, high) in METRIC_RANGES.items():
        value = metrics.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not low <= value <= high):
            return f"has {key}={json.dumps(value)}, not a value a run writes (a number in [{low}, {high}], or null)"
    return None


def run_status(run_dir: Path) -> str:
    """The run's status as its metrics.json records it; ``unfinished`` while it has none."""
    return read_metrics(run_dir).get("status", Status.UNFINISHED)


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    """metrics.json, replaced atomically; NaN becomes null so any JSON reader takes it."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
    with atomic_file(Path(run_dir) / METRICS_FILE, "w") as f:
        json.dump(clean, f, indent=2)


def write_predictions(run_dir: Path, predicted, true, images: str | None = None) -> None:
    """test_predictions.npz, replaced atomically: the predicted and the true label of each test image, and the test
    images' fingerprint (``images``, the data's split_fingerprint)."""
    predicted, true = np.asarray(predicted), np.asarray(true)
    dtype = np.uint8 if max(predicted.max(initial=0), true.max(initial=0)) < 256 else np.int32  # 10k bytes for MNIST
    predicted, true = predicted.astype(dtype), true.astype(dtype)
    with atomic_file(Path(run_dir) / PREDICTIONS_FILE, "wb") as f:
        np.savez_compressed(f, predicted=predicted, true=true, **({} if images is None else {"images": images}))


def read_predictions(run_dir: Path) -> tuple[np.ndarray, np.ndarray, str | None]:
    """A run's (predicted, true) test labels and its test images' fingerprint (None where the file has none); a
    missing, corrupt or foreign file is a UserError naming it."""
    path = Path(run_dir) / PREDICTIONS_FILE
    if not path.exists():
        raise UserError(f"{run_dir} has no {PREDICTIONS_FILE}: a run writes it when it completes its test. "
                        "Compare completed runs.")
    try:
        with np.load(path, allow_pickle=False) as saved:
            predicted, true = saved["predicted"], saved["true"]
            images = str(saved["images"]) if "images" in saved else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise UserError(f"{path} is not a predictions file that python -m mnist_exp wrote "
                        f"({' '.join(str(error).split()) or type(error).__name__}).") from None
    if (predicted.ndim != 1 or predicted.shape != true.shape or predicted.dtype.kind not in "iu"
            or true.dtype.kind not in "iu"):
        raise UserError(f"{path} is not a predictions file that python -m mnist_exp wrote (predicted labels "
                        f"{predicted.dtype}{list(predicted.shape)}, true labels {true.dtype}{list(true.shape)}).")
    return predicted, true, images


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = ".tmp", permissions: int | None = None):
    """A temporary file beside ``path`` (``.<name>.*<suffix>``) to write by its name, renamed over ``path`` when the
    block ends and removed where it raises: ``path`` is written whole or not at all.

    ``permissions``: the file's mode; by default what the umask leaves of 0666, as for the run's other files.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~current_umask() if permissions is None else permissions)  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_file(path: Path, mode: str, newline: str | None = None, fsync: bool = False,
                permissions: int | None = None):
    """``atomic_path``'s file, open in ``mode``. ``fsync``: on the disk before the rename, so not even a crash of the
    system can leave it half written."""
    with atomic_path(path, permissions=permissions) as tmp, open(tmp, mode, newline=newline) as f:
        yield f
        if fsync:
            f.flush()
            os.fsync(f.fileno())


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def changes_speed(key: str) -> bool:
    """A key that changes how fast a run trains, and its numbers in their last bits (the order of a sum): the device
    and its keys, compiling, the test's batches. A run that differs from another in one of them only is no repeat."""
    return key == "device" or key.startswith(("device.", "trainer.compile", "trainer.eval_batch_size"))


def says_where_or_how(key: str) -> bool:
    """A config key or override that says where or how a run goes (or Hydra's own), not what it trains."""
    return key != PRECISION and (key.startswith(("hydra", *RESUME_MAY_CHANGE)) or f"{key}.".startswith(RESUME_MAY_CHANGE))


def number(value: Any) -> float | None:
    """A finite number from metrics.json, else None (absent, null for NaN, text)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


# The metrics.json keys a run can return to a sweeper; a list of them makes a multi-objective search.
OBJECTIVES = ("test/acc", "test/loss", "val/acc", "val/loss", "best_val/acc", "train_time_s", "params")


def objectives(optimized_metric) -> list[str]:
    """``optimized_metric`` as a list: one key, or several (a multi-objective search)."""
    return [optimized_metric] if isinstance(optimized_metric, str) else list(optimized_metric)


def check_objectives(optimized_metric) -> None:
    """``optimized_metric`` is one of ``OBJECTIVES``, or a list of them."""
    metrics = optimized_metric
    if isinstance(metrics, str) or not isinstance(metrics, Sequence) or not metrics:  # one, or null, 5, []: refused
        metrics = [optimized_metric]
    for metric in metrics:
        if metric not in OBJECTIVES:
            shown = "null" if metric is None else metric
            raise UserError(f"optimized_metric={shown} is not a metric.{did_you_mean(shown, OBJECTIVES)} Choose "
                            f"one of: {', '.join(OBJECTIVES)}, or a list of them for several objectives.")
