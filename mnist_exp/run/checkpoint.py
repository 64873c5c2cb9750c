"""Checkpoints: atomic save, validated load, and the random states a resumed run needs.

A checkpoint is a dict of tensors and primitives, so ``torch.load(..., weights_only=True)`` reads
it without unpickling arbitrary objects. Both kinds hold the composed ``config``, the
``class_names``, the evaluated ``weights`` and their ``epoch``; ``last.pt`` also holds the
``trainer``'s whole state (``Trainer.state_dict()``), from which a run continues.
"""

import math
import pickle
import random
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mnist_exp.errors import UserError, disk_full, first_line, full_disk_error
from mnist_exp.runs import atomic_file, best_checkpoint, of_another_run, recorded_run_id

CHECKPOINT_FORMAT = 2
REQUIRED_KEYS = ("format", "kind", "config", "class_names", "weights", "epoch")
TRAINER_KEYS = ("model", "optimizer", "scheduler", "state", "rng")
EXPORTS = {".pt2": "a torch.export program", ".onnx": "an ONNX model"}  # what mnist_exp.tools.export writes
IMAGE_SIGNATURES = {b"\x89PNG": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF", b"BM": "BMP"}
# What the tools read of a checkpoint's config by name: a run writes them all.
CONFIG_KEYS = {"model.name": str, "dataset.name": str, "dataset.flatten": bool, "device.precision": str,
               "device.channels_last": bool, "trainer.epochs": int, "trainer.batch_size": int,
               "trainer.eval_batch_size": int}


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over ``path``.

    The rename is atomic, so a run killed mid-write leaves the previous checkpoint intact; so does a
    full disk, which is one clear error instead of torch's chained ones.
    """
    path = Path(path)
    try:
        with atomic_file(path, "wb", fsync=True) as f:
            torch.save(payload, f)
    except BaseException as error:
        if disk_full(error):
            kept = " and the previous one is kept" if path.exists() else ""
            raise full_disk_error(path.parent, f"{path.name} was not written{kept}") from None
        raise


def remove_stale_temporaries(directory: Path) -> None:
    """Remove the ``.<name>.*.tmp`` files a write killed before its rename left in ``directory``."""
    for stale in Path(directory).glob(".*.pt.*.tmp"):
        stale.unlink(missing_ok=True)


def starts_as_pickle(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(1) == b"\x80"  # pickle's PROTO opcode, first in every pickle of protocol 2 or later


class UnreadableCheckpoint(UserError):
    """A checkpoint file torch cannot read: truncated, corrupt, or not a checkpoint at all."""


def unreadable_checkpoint(path: Path) -> UserError:
    """What torch could not read: an image or a TorchScript export where its first bytes or its archive say so."""
    with open(path, "rb") as f:
        head = f.read(4)
    image = next((kind for signature, kind in IMAGE_SIGNATURES.items() if head.startswith(signature)), None)
    if image:
        return UserError(f"{path} is a {image} image, not a checkpoint: give the checkpoint or run directory first "
                         "(e.g. python -m mnist_exp.tools.predict <run dir> <images>).")
    if any(name.endswith("/constants.pkl") for name in archive_names(path)):
        return UserError(f"{path} is a TorchScript export of a model, not a checkpoint: give the run directory or its "
                         "checkpoints/best.pt.")
    other = "last.pt" if Path(path).name == "best.pt" else "best.pt"
    return UnreadableCheckpoint(f"Checkpoint {path} is unreadable: it is truncated or corrupt (not a complete torch "
                                f"archive). Use another checkpoint, e.g. the run's checkpoints/{other}.")


def archive_names(path: Path) -> list[str]:
    """The names in a zip archive (torch's files are zips); none where the file is not one, or a damaged one."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return []


def failed_checksum(path: Path) -> bool:
    """Whether a member of the zip archive holds other bytes than its CRC-32 says: torch.load reads a tensor's bytes
    unchecked, so a flipped byte would load as a changed weight. False where the file is no zip (torch's to judge)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is not None
    except zipfile.BadZipFile as error:
        return "CRC" in str(error) or "Bad magic number" in str(error)
    except (OSError, EOFError, ValueError):
        return False


def wrong_config_keys(config: dict) -> list[str]:
    """The keys of CONFIG_KEYS a config lacks or holds as another type (its counts: below 1, which a run refuses),
    each named at its first missing node."""
    wrong: list[str] = []
    for dotted, kind in CONFIG_KEYS.items():
        node, keys = config, dotted.split(".")
        for depth, key in enumerate(keys, 1):
            node = node.get(key) if isinstance(node, dict) else None
            if not isinstance(node, kind if depth == len(keys) else dict) or (
                    depth == len(keys) and kind is int and (isinstance(node, bool) or node < 1)):
                wrong += [] if ".".join(keys[:depth]) in wrong else [".".join(keys[:depth])]
                break
    return wrong


def wrong_image_record(payload: dict) -> list[str]:
    """``normalisation`` ([mean, std]) and ``image_shape`` ([C, H, W], as its model takes them), where recorded: the
    tools bring new images to that form."""
    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    wrong = []
    norm, shape = payload.get("normalisation"), payload.get("image_shape")
    if norm is not None and not (isinstance(norm, (list, tuple)) and len(norm) == 2 and all(map(number, norm))
                                 and norm[1] > 0):
        wrong.append("normalisation")
    if shape is not None:
        whole = isinstance(shape, (list, tuple)) and len(shape) == 3 and all(
            isinstance(side, int) and not isinstance(side, bool) and side > 0 for side in shape)
        model = payload["config"]["model"]
        fits = whole and {"image_size": shape[-1], "in_channels": shape[0], "in_features": math.prod(shape)}
        if not whole or any(model.get(key, size) != size for key, size in fits.items()):
            wrong.append("image_shape")
    return wrong


def misfit(error: Exception) -> str:
    """The first problem torch names where weights do not fit a model (its message's first line is only a header)."""
    problems = [line.strip().rstrip(". ") for line in str(error).splitlines()[1:] if line.strip()]
    return problems[0] if problems else first_line(error)


def checkpoint_file(path: str | Path) -> Path:
    """A checkpoint file, or a run directory's checkpoints/best.pt."""
    path = Path(path)
    if not path.is_dir():
        return path
    best = best_checkpoint(path)
    if not best.is_file():
        raise UserError(no_best_checkpoint(path, best.relative_to(path)))
    return best


def no_best_checkpoint(path: Path, best: Path) -> str:
    """Why a directory has no run's best checkpoint: the checkpoints folder itself or a sweep's (which shell
    completion stops at) says which path to give instead."""
    if (path / best.name).is_file():
        return (f"{path} is a folder of checkpoints, not a run directory: give the run directory ({path.parent}) or "
                f"a checkpoint file ({path / best.name}).")
    if runs := sorted(run for run in path.iterdir() if (run / best).is_file()):
        return f"{path} is a directory of runs, not a run: give one of them, e.g. {runs[0]}."
    if run := next((folder for folder in path.resolve().parents if (folder / best).is_file()), None):
        return f"{path} is a folder of the run {run}: give the run directory ({run}) or a checkpoint file."
    return (f"{path} is a directory without {best}: give a run directory that has finished an epoch with "
            "trainer.checkpoint=true, or a checkpoint file.")


def load_run_checkpoint(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """A checkpoint file, or a run directory's best.pt, and what it holds; the run directory's must be the run's own:
    another run's best.pt put there is refused."""
    file = checkpoint_file(path)
    checkpoint = load_checkpoint(file)
    if Path(path).is_dir() and of_another_run(checkpoint, ours := recorded_run_id(path)):
        raise UserError(f"{file} is another run's {file.name} (run {checkpoint['run_id']}; the run in {path} is "
                        f"{ours}): put the run's own back, or give that file itself ({file}) to use it.")
    return file, checkpoint


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by this tool; refuse anything else with one clear line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"No checkpoint at {path}. Give the path of a checkpoints/last.pt or best.pt written by a run.")
    if export := EXPORTS.get(path.suffix.lower()):
        raise UserError(f"{path} is {export}, an export of a model, not a checkpoint: give the run directory or its "
                        "checkpoints/best.pt.")
    if failed_checksum(path):
        raise unreadable_checkpoint(path)
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols: noise beside the one-line refusal
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        # A pickle of objects other than tensors and primitives. torch's message advises loading it with
        # weights_only=False, which would run whatever code the file holds: not passed on.
        found = re.search(r"GLOBAL (\S+) (?:was not an allowed global|whose module \S+ is blocked)", str(error))
        if not found and not starts_as_pickle(path):  # garbage the unpickler tripped on
            raise unreadable_checkpoint(path) from error
        what = f"a pickled {found.group(1)}" if found else "pickled Python code"
        raise UserError(f"{path} is not a checkpoint mnist_exp wrote (it holds {what}, which mnist_exp "
                        "checkpoints never do; it was not loaded). Use a checkpoints/best.pt or last.pt written by "
                        "a run.") from error
    except Exception as error:  # truncated, corrupt, or not a torch file at all: torch's words vary by version
        raise unreadable_checkpoint(path) from error
    if isinstance(payload, dict) and payload.get("format") not in (None, CHECKPOINT_FORMAT):
        raise UserError(f"{path} is a checkpoint of format {payload.get('format')}; this version of mnist_exp reads "
                        f"format {CHECKPOINT_FORMAT}. Train the run again, or use the version that wrote it.")
    missing = [key for key in REQUIRED_KEYS if not isinstance(payload, dict) or key not in payload]
    if not missing and payload["kind"] == "last":
        trainer = payload.get("trainer")
        missing = [f"trainer.{key}" for key in TRAINER_KEYS if not isinstance(trainer, dict) or key not in trainer]
    if missing:
        raise UserError(f"{path} is not a checkpoint mnist_exp wrote (missing: {', '.join(missing)}). "
                        "Use a checkpoints/best.pt or last.pt written by a run.")
    config = payload["config"]
    kinds = {"config": dict, "class_names": (list, tuple), "weights": dict, "epoch": int}
    wrong = [key for key, kind in kinds.items()
             if not isinstance(payload[key], kind) or isinstance(payload[key], bool)] or [
        f"config.{key}" for key in wrong_config_keys(config)] or wrong_image_record(payload)
    if wrong:
        raise UserError(f"{path} is not a checkpoint mnist_exp wrote ({', '.join(wrong)}: not what a run writes "
                        "there). Use a checkpoints/best.pt or last.pt written by a run.")
    return payload


def rng_states() -> dict[str, Any]:
    """Every random state a run draws from: Python, NumPy, torch (CPU and CUDA)."""
    numpy_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {
            "state": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_states(states: dict[str, Any]) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = states["numpy"]
    np.random.set_state({
        "bit_generator": "MT19937",
        "state": {"key": numpy_state["state"].numpy().astype(np.uint32), "pos": numpy_state["pos"]},
        "has_gauss": numpy_state["has_gauss"],
        "gauss": numpy_state["gauss"],
    })
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
