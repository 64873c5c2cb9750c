"""Hooks on the training loop: checkpoints and the trackers' curves.

The trainer calls ``on_train_log`` every ``log_interval`` steps, ``on_epoch_end`` after each
epoch's validation, and ``on_stop`` when a signal stops it inside an epoch or before the next.
"""

import logging
import math
from pathlib import Path
from typing import Any

from mnist_exp.run.checkpoint import CHECKPOINT_FORMAT, remove_stale_temporaries, save_checkpoint
from mnist_exp.runs import BEST_CHECKPOINT, LAST_CHECKPOINT

log = logging.getLogger("mnist_exp")


class Callback:
    """Override the hooks you need."""

    def on_train_log(self, trainer, values: dict[str, float]) -> None: ...

    def on_epoch_end(self, trainer, metrics: dict[str, float], is_best: bool) -> None: ...

    def on_stop(self, trainer) -> None: ...


class CheckpointCallback(Callback):
    """``best.pt`` on a new best validation accuracy, then ``last.pt`` after every epoch and when stopped.

    Both are written atomically, best.pt first, and last.pt carries the best weights too: a kill
    between the two leaves a last.pt whose best epoch resume can trust (``resume.restore`` makes
    best.pt agree with it).
    """

    def __init__(self, directory: str | Path, metadata: dict[str, Any]):
        self.directory = Path(directory)
        self.metadata = metadata  # {"config": the composed config, "class_names": [...], "normalisation": [mean, std]}
        remove_stale_temporaries(self.directory)  # what a write interrupted by a kill left behind

    def on_epoch_end(self, trainer, metrics: dict[str, float], is_best: bool) -> None:
        if is_best:
            self.save_best(trainer.best_weights, trainer.state.best_epoch)
        self.save_last(trainer)

    def on_stop(self, trainer) -> None:
        self.save_last(trainer)

    def save_last(self, trainer) -> None:
        save_checkpoint(self.directory / LAST_CHECKPOINT, {
            **self.payload("last", trainer.evaluated_model.state_dict(), trainer.state.epoch),
            "trainer": trainer.state_dict()})

    def save_best(self, weights: dict, epoch: int) -> None:
        save_checkpoint(self.directory / BEST_CHECKPOINT, self.payload("best", weights, epoch))

    def payload(self, kind: str, weights: dict, epoch: int) -> dict[str, Any]:
        # "weights": the model as the run evaluates it (its moving average, where it keeps one).
        return {"format": CHECKPOINT_FORMAT, "kind": kind, **self.metadata, "weights": weights, "epoch": epoch}


class TrackingCallback(Callback):
    """Training curves every ``log_interval`` steps, validation and timing once per epoch, at the global step."""

    EPOCH_TAGS = ("val/loss", "val/acc", "time/epoch_s", "time/samples_per_s")

    def __init__(self, tracker):
        self.tracker = tracker

    def on_train_log(self, trainer, values: dict[str, float]) -> None:
        self.tracker.scalars(values, trainer.state.step)

    def on_epoch_end(self, trainer, metrics: dict[str, float], is_best: bool) -> None:
        values = {tag: metrics[tag] for tag in self.EPOCH_TAGS if not math.isnan(metrics[tag])}
        self.tracker.scalars(values, trainer.state.step)
        self.tracker.flush()
