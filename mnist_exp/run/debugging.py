"""The debug presets' keys (``debug=one_batch|overfit|profile``, conf/debug/): fewer batches, the same few batches
learnt by heart, and torch's profiler over the training.

``trainer.limit_batches`` keeps that many batches of each split, so a run goes through the whole pipeline
(checkpoints, pictures, TensorBoard) in seconds; ``trainer.overfit_batches`` trains on that many batches and
validates on the same images, which a model that can learn at all gets right; ``trainer.profile`` records the
training with torch.profiler into ``profile.json`` and logs the operators that took the most time.
"""

import contextlib
import logging
import math
from dataclasses import replace
from pathlib import Path

import torch

from mnist_exp.data.datasets import DataBundle, Split
from mnist_exp.errors import UserError
from mnist_exp.run import distributed

log = logging.getLogger("mnist_exp")
TOP_OPERATORS = 12


def check_batch_limits(limit_batches: int | None, overfit_batches: int | None) -> None:
    for key, value in (("trainer.limit_batches", limit_batches), ("trainer.overfit_batches", overfit_batches)):
        if value is not None and value < 1:
            raise UserError(f"{key}={value} is out of range: give a number of batches of at least 1, or null for "
                            "every batch.")
    if limit_batches is not None and overfit_batches is not None:
        raise UserError(f"trainer.overfit_batches={overfit_batches} and trainer.limit_batches={limit_batches} both cut "
                        "the training batches: give one of them (the other null).")


def check_overfit_validation(overfit_batches: int | None, given: set[str], val_size) -> None:
    """Overfitting validates on its own training batches: a validation split's size given beside it would only hold
    out images that no epoch sees."""
    if overfit_batches is not None and "dataset.val_size" in given:
        raise UserError(f"dataset.val_size={val_size} takes no effect: trainer.overfit_batches={overfit_batches} "
                        "validates on its own training batches, not on a held-out split. Leave dataset.val_size out, "
                        "or give trainer.overfit_batches=null to validate on that split.")


def first(split: Split, count: int) -> Split:
    return Split(split.images[:count], split.labels[:count])


def limited(data: DataBundle, limit_batches: int | None, overfit_batches: int | None, batch_size: int,
            eval_batch_size: int) -> DataBundle:
    """The dataset cut to ``limit_batches`` batches a split; with ``overfit_batches``, that many training batches,
    which are also the validation split. A count above what the splits hold is refused: any larger one would run
    the same."""
    batches = {name: math.ceil(len(split) / size) for name, split, size in (
        ("training", data.train, batch_size), ("validation", data.val, eval_batch_size), ("test", data.test, eval_batch_size))}
    for key, count, name in (("limit_batches", limit_batches, max(batches, key=batches.get)),
                             ("overfit_batches", overfit_batches, "training")):
        if count and count > batches[name]:
            every = ", or null for every batch" if key == "limit_batches" else ""
            raise UserError(f"trainer.{key}={count} is more batches than the {name} split's {batches[name]}: give at "
                            f"most {batches[name]}{every}.")
    if limit_batches:
        data = replace(data, train=first(data.train, limit_batches * batch_size),
                       val=first(data.val, limit_batches * eval_batch_size),
                       test=first(data.test, limit_batches * eval_batch_size))
    if overfit_batches:
        few = first(data.train, overfit_batches * batch_size)
        data = replace(data, train=few, val=few)
    return data


@contextlib.contextmanager
def profiled(enabled: bool, run_dir: Path):
    """With ``enabled``, torch.profiler over the block: its trace to <run_dir>/profile.json, its top operators logged.
    Under torchrun, process 0's alone: every process has its run directory, and two exports of one file race (one
    process's rename can leave no profile.json at all)."""
    if not enabled or distributed.rank() > 0:
        yield
        return
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])]
    with profile(activities=activities) as profiler:
        yield
    trace = Path(run_dir) / "profile.json"
    profiler.export_chrome_trace(str(trace))
    table = profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=TOP_OPERATORS)
    log.info("Profile: %s (open it in https://ui.perfetto.dev); the operators that took the most time:\n%s",
             trace, table)
