"""The files of a run directory, by name, and metrics.json's reading and writing.

    .hydra/  train.log  events.out.tfevents.*  checkpoints/{last,best}.pt  metrics.json  *.png

Every module that reads or writes these goes through here, so each name is spelled once.
"""

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"


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
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=".metrics.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(clean, f, indent=2)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes it 0600: the run's other files follow the umask
        os.replace(tmp, run_dir / METRICS_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
