"""The training loop: epochs of training and validation, then the best weights by validation accuracy.

Plain objects in, metrics out. Nothing here knows Hydra, so the loop can be used and tested on its
own. Logging and checkpointing hang on the loop as callbacks.
"""

import contextlib
import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from mnist_exp import distributed
from mnist_exp.checkpoint import rng_states, save_checkpoint
from mnist_exp.errors import UserError
from mnist_exp.models import ShiftAveraged

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    """Where a run is; saved in every checkpoint so a resumed run continues exactly."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    best_val_acc: float = -1.0
    best_epoch: int = 0
    train_time_s: float = 0.0  # wall time in the loop: training and validation
    train_phase_s: float = 0.0  # wall time in the training phases alone
    samples_seen: int = 0
    history: list[dict[str, float]] = field(default_factory=list)  # one row of metrics per epoch
    # Set when a run stops inside an epoch (a signal): where in the epoch, and the epoch's sums so far.
    batch_in_epoch: int = 0
    epoch_loss_sum: float = 0.0
    epoch_correct: int = 0
    epoch_elapsed_s: float = 0.0


class TrainingStopped(Exception):
    """Raised by ``fit`` when ``request_stop`` was called; the state says where to continue."""


class Callback:
    """Hooks the loop calls; override the ones you need."""

    def on_fit_start(self, trainer: "Trainer") -> None: ...

    def on_train_log(self, trainer: "Trainer", values: dict[str, float]) -> None: ...

    def on_epoch_end(self, trainer: "Trainer", metrics: dict[str, float], is_best: bool) -> None: ...

    def on_stop(self, trainer: "Trainer") -> None: ...


def autocast_context(device: torch.device, bf16: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def to_memory_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


@torch.inference_mode()
def evaluate(model: nn.Module, loader: Iterable, *, device: torch.device, bf16: bool = False,
             channels_last: bool = False, keep_predictions: bool = False) -> dict[str, Any]:
    """Mean cross-entropy and accuracy over a loader; with ``keep_predictions``, the predicted labels too."""
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    count = 0
    predictions = []
    for x, y in loader:
        with autocast_context(device, bf16):
            logits = model(to_memory_format(x, channels_last)).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        predicted = logits.argmax(dim=1)
        correct += (predicted == y).sum()
        count += len(y)
        if keep_predictions:
            predictions.append(predicted.cpu())
    if count == 0:
        return {"loss": math.nan, "acc": math.nan, "predictions": torch.empty(0, dtype=torch.long)}
    result: dict[str, Any] = {"loss": loss_sum.item() / count, "acc": correct.item() / count}
    if keep_predictions:
        result["predictions"] = torch.cat(predictions)
    return result


class Trainer:
    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, train_loader, val_loader, *,
                 epochs: int, device: torch.device, label_smoothing: float = 0.0, bf16: bool = False,
                 channels_last: bool = False, compile: bool = False, log_interval: int = 50, progress: bool = False,
                 callbacks: Iterable[Callback] = (), state: TrainState | None = None, ema_decay: float = 0.0,
                 tta: bool = False):
        self.model = model
        # Under torchrun DDP wraps the model (gradients averaged over the processes), torch.compile wraps
        # that; checkpoints keep the plain module's weights.
        self.forward_model = distributed.wrap(model, device)
        if compile:
            self.forward_model = torch.compile(self.forward_model)
        # What is evaluated (validation, test, best.pt): the model, or the moving average of its weights.
        # The final test may average over shifted copies of each image too; validation after each epoch
        # stays plain, 9x cheaper, to pick the best epoch.
        self.ema = WeightAverage(model, ema_decay) if ema_decay > 0 else None
        self.eval_model = self.ema.model if self.ema else self.forward_model
        self.test_model = (ShiftAveraged(self.eval_model, background=-val_loader.mean / val_loader.std) if tta
                           else self.eval_model)
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.epochs = epochs
        self.device = device
        self.label_smoothing = label_smoothing
        self.bf16 = bf16
        self.channels_last = channels_last
        self.log_interval = max(1, log_interval)
        self.progress = progress
        self.callbacks = list(callbacks)
        self.state = state or TrainState()
        # The weights behind state.best_val_acc, on the CPU; the final test uses them.
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.stop_requested = False

    def request_stop(self) -> None:
        """Stop after the current batch (safe to call from a signal handler)."""
        self.stop_requested = True

    def fit(self) -> TrainState:
        for callback in self.callbacks:
            callback.on_fit_start(self)
        for epoch in range(self.state.epoch, self.epochs):
            started = time.perf_counter() - self.state.epoch_elapsed_s
            try:
                train_metrics = self.train_epoch(epoch)
            except TrainingStopped:
                self.state.epoch_elapsed_s = time.perf_counter() - started
                for callback in self.callbacks:
                    callback.on_stop(self)
                raise
            train_seconds = time.perf_counter() - started
            val = self.evaluate(self.val_loader)
            epoch_seconds = time.perf_counter() - started

            state = self.state
            state.epoch = epoch + 1
            state.train_time_s += epoch_seconds
            state.train_phase_s += train_seconds
            state.samples_seen += self.train_loader.num_samples
            metrics = {
                "epoch": epoch + 1,
                **train_metrics,
                "val/loss": val["loss"],
                "val/acc": val["acc"],
                "lr": self.optimizer.param_groups[0]["lr"],
                "time/epoch_s": epoch_seconds,
                "time/samples_per_s": self.train_loader.num_samples / train_seconds,
            }
            # No validation set: the last epoch counts as the best.
            is_best = math.isnan(val["acc"]) or val["acc"] > state.best_val_acc
            if is_best:
                state.best_val_acc = val["acc"]
                state.best_epoch = epoch + 1
                self.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in self.evaluated().state_dict().items()}
            state.history.append(metrics)
            validation = (f"  val loss {val['loss']:.4f} acc {100 * val['acc']:.2f}%{'  (best)' if is_best else ''}"
                          if not math.isnan(val["acc"]) else "")
            log.info("epoch %d/%d  train loss %.4f acc %.2f%%%s  %.1f s (%.0f samples/s)", epoch + 1, self.epochs,
                     metrics["train/loss"], 100 * metrics["train/acc"], validation, epoch_seconds,
                     metrics["time/samples_per_s"])
            for callback in self.callbacks:
                callback.on_epoch_end(self, metrics, is_best)
        return self.state

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.forward_model.train()
        device = self.device
        state = self.state
        # Sums stay on the device: reading them back every step would stall a GPU. A run stopped
        # inside this epoch left its sums and position in the state; continue from there.
        epoch_loss = torch.tensor(state.epoch_loss_sum, device=device)
        epoch_correct = torch.tensor(state.epoch_correct, device=device, dtype=torch.long)
        window_loss = torch.zeros((), device=device)
        window_correct = torch.zeros((), device=device, dtype=torch.long)
        window_count = 0
        if distributed.rank() > 0:  # the epoch's sums so far are rank 0's, summed over the processes at the stop
            epoch_loss.zero_()
            epoch_correct.zero_()
        bar = tqdm(total=len(self.train_loader), initial=state.batch_in_epoch, desc=f"epoch {epoch + 1}/{self.epochs}",
                   leave=False, disable=not self.progress, dynamic_ncols=True)
        for batch, (x, y) in enumerate(self.train_loader.epoch_batches(epoch, state.batch_in_epoch),
                                       start=state.batch_in_epoch):
            with autocast_context(device, self.bf16):
                logits = self.forward_model(to_memory_format(x, self.channels_last))
            loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            self.state.step += 1
            if self.ema:
                self.ema.update(self.model, self.state.step)

            correct = (logits.detach().argmax(dim=1) == y).sum()
            batch_loss = loss.detach() * len(y)
            epoch_loss += batch_loss
            epoch_correct += correct
            window_loss += batch_loss
            window_correct += correct
            window_count += len(y)
            if self.state.step % self.log_interval == 0:
                values = {
                    "train/loss": window_loss.item() / window_count,
                    "train/acc": window_correct.item() / window_count,
                    "lr": self.optimizer.param_groups[0]["lr"],
                }
                self.check_finite(values["train/loss"])
                for callback in self.callbacks:
                    callback.on_train_log(self, values)
                bar.set_postfix(loss=f"{values['train/loss']:.4f}", acc=f"{100 * values['train/acc']:.2f}%")
                window_loss.zero_()
                window_correct.zero_()
                window_count = 0
            bar.update()
            if distributed.any_rank(self.stop_requested, device) and batch + 1 < len(self.train_loader):
                bar.close()
                distributed.sum_over_ranks(epoch_loss, epoch_correct)
                state.batch_in_epoch = batch + 1
                state.epoch_loss_sum, state.epoch_correct = epoch_loss.item(), int(epoch_correct.item())
                raise TrainingStopped()
        bar.close()
        distributed.sum_over_ranks(epoch_loss, epoch_correct)
        state.batch_in_epoch, state.epoch_loss_sum, state.epoch_correct, state.epoch_elapsed_s = 0, 0.0, 0, 0.0
        samples = self.train_loader.num_samples
        train_loss = epoch_loss.item() / samples
        self.check_finite(train_loss)
        return {"train/loss": train_loss, "train/acc": epoch_correct.item() / samples}

    def check_finite(self, loss: float) -> None:
        if not math.isfinite(loss):
            lr = self.optimizer.param_groups[0]["lr"]
            raise UserError(
                f"Training diverged: the loss is {loss} at step {self.state.step} (learning rate {lr:.3g}). "
                "Lower optimizer.lr or use a warm-up schedule (scheduler=onecycle); checkpoints keep the last good epoch."
            )

    def evaluate(self, loader, keep_predictions: bool = False) -> dict[str, Any]:
        return evaluate(self.eval_model, loader, device=self.device, bf16=self.bf16,
                        channels_last=self.channels_last, keep_predictions=keep_predictions)

    def test(self, loader) -> dict[str, Any]:
        """The final evaluation, with test-time shift averaging where asked for; predictions kept."""
        return evaluate(self.test_model, loader, device=self.device, bf16=self.bf16,
                        channels_last=self.channels_last, keep_predictions=True)

    def evaluated(self) -> nn.Module:
        """The plain module whose weights are evaluated: the model, or its weight average."""
        return self.ema.model if self.ema else self.model

    def load_best_weights(self) -> None:
        """Put the best weights by validation accuracy into the evaluated model (a no-op if the last epoch was best)."""
        if self.best_weights is not None:
            self.evaluated().load_state_dict(self.best_weights)

    def checkpoint(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """Everything a resumed run needs, as tensors and primitives (``torch.load(weights_only=True)`` reads it).

        ``metadata`` (the composed config, the class names) is stored beside it.
        """
        return {**metadata,
            "format": 1,
            "model": self.model.state_dict(),
            # The weights evaluated, where they are not the model's: evaluate, predict and export load these.
            **({"ema": self.ema.model.state_dict()} if self.ema else {}),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "state": copy.deepcopy(asdict(self.state)),
            "rng": rng_states(),
        }


class WeightAverage:
    """An exponential moving average of a model's weights and batch-norm statistics, in a copy of the model.

    The decay ramps up as (1 + step) / (10 + step) until it reaches ``decay``, so the early, poor
    weights are soon forgotten. It depends on the step alone: a resumed run averages the same way.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        weight = 1 - min(self.decay, (1 + step) / (10 + step))
        averaged, current = self.model.state_dict(), model.state_dict()
        floats = [name for name, value in averaged.items() if value.is_floating_point()]
        torch._foreach_lerp_([averaged[n] for n in floats], [current[n] for n in floats], weight)
        for name, value in averaged.items():
            if not value.is_floating_point():  # batch counts: taken as they are
                value.copy_(current[name])


class CheckpointCallback(Callback):
    """``last.pt`` after every epoch and when stopped, ``best.pt`` on a new best validation accuracy; atomically."""

    def __init__(self, directory: str | Path, metadata: dict[str, Any]):
        self.directory = Path(directory)
        self.metadata = metadata  # {"config": the composed config, ...}

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float], is_best: bool) -> None:
        payload = trainer.checkpoint(self.metadata)
        save_checkpoint(self.directory / "last.pt", payload)
        if is_best:
            save_checkpoint(self.directory / "best.pt", payload)

    def on_stop(self, trainer: Trainer) -> None:
        save_checkpoint(self.directory / "last.pt", trainer.checkpoint(self.metadata))


class TensorBoardCallback(Callback):
    """Training curves every ``log_interval`` steps, validation and timing once per epoch, at the global step."""

    EPOCH_TAGS = ("val/loss", "val/acc", "time/epoch_s", "time/samples_per_s")

    def __init__(self, tracker):
        self.tracker = tracker

    def on_train_log(self, trainer: Trainer, values: dict[str, float]) -> None:
        self.tracker.scalars(values, trainer.state.step)

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float], is_best: bool) -> None:
        values = {tag: metrics[tag] for tag in self.EPOCH_TAGS if not math.isnan(metrics[tag])}
        self.tracker.scalars(values, trainer.state.step)
        self.tracker.flush()
