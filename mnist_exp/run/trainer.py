"""The training loop: epochs of training and validation, the best weights by validation accuracy, and its state.

Plain objects in, metrics out. Nothing here knows Hydra, so the loop can be used and tested on its
own. ``Trainer.state_dict()`` / ``load_state_dict()`` hold everything a resumed run needs, in one
round trip; logging and checkpointing hang on the loop as callbacks (``mnist_exp.run.callbacks``).
"""

import contextlib
import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from mnist_exp.run import distributed
from mnist_exp.run.checkpoint import restore_rng_states, rng_states
from mnist_exp.run.ema import WeightAverage
from mnist_exp.errors import UserError

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
    stopped_early: bool = False  # val/acc did not improve for ``patience`` epochs: no more epochs
    # Set when a run stops inside an epoch (a signal): where in the epoch, and the epoch's sums so far.
    batch_in_epoch: int = 0
    epoch_loss_sum: float = 0.0
    epoch_correct: int = 0
    epoch_elapsed_s: float = 0.0


@dataclass
class LoopSettings:
    """How the loop runs: its ``trainer.*`` keys (defaults: conf/config.yaml's), where and in what precision."""

    epochs: int
    label_smoothing: float
    log_interval: int  # optimizer steps between train/loss points and checks that the loss is finite
    ema_decay: float  # evaluate a moving average of the weights; 0: the weights themselves
    compile: bool  # torch.compile the training forward pass
    progress: bool  # a tqdm bar per epoch
    patience: int | None  # epochs without a better val/acc before the run stops; None: every epoch
    device: torch.device = torch.device("cpu")
    bf16: bool = False  # bf16 autocast for the forward passes
    channels_last: bool = False  # NHWC inputs (the model was made NHWC to match)


class TrainingStopped(Exception):
    """Raised by ``fit`` when ``request_stop`` was called; the state says where to continue."""


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
    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, settings: LoopSettings,
                 callbacks: Iterable = ()):
        self.model = model  # the plain module: its weights are what checkpoints hold
        self.optimizer = optimizer
        self.step_lr = optimizer.param_groups[0]["lr"]  # the learning rate of the last step taken
        self.scheduler = scheduler
        self.settings = settings
        self.callbacks = list(callbacks)
        # What the training step calls: under torchrun DDP wraps the model (gradients averaged over the
        # processes), torch.compile wraps that.
        self.train_model = distributed.wrap(model, settings.device)
        if settings.compile:
            torch._dynamo.reset()  # an earlier job's graphs in this process would count against the recompile limit
            self.train_model = torch.compile(self.train_model)
        self.ema = WeightAverage(model, settings.ema_decay) if settings.ema_decay > 0 else None
        self.state = TrainState()
        # The evaluated weights behind state.best_val_acc, on the CPU; the final test uses them.
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.stop_requested = False

    @property
    def evaluated_model(self) -> nn.Module:
        """What validation, the test and best.pt use: the model, or the moving average of its weights."""
        return self.ema.model if self.ema else self.model

    def request_stop(self) -> None:
        """Stop after the current batch (safe to call from a signal handler)."""
        self.stop_requested = True

    def fit(self, train_loader, val_loader) -> TrainState:
        for epoch in range(self.state.epoch, self.settings.epochs):
            if self.state.stopped_early:  # a resumed run that had already stopped
                break
            started = time.perf_counter() - self.state.epoch_elapsed_s
            try:
                # A stop asked for in an epoch's last batch or after it (validation, checkpoints) lands here: an epoch
                # of one batch (a full batch, limit_batches=1) has no batch after which train_epoch could stop.
                if distributed.any_rank(self.stop_requested, self.settings.device):
                    raise TrainingStopped()
                train_metrics = self.train_epoch(train_loader, epoch)
            except TrainingStopped:
                self.state.epoch_elapsed_s = time.perf_counter() - started
                for callback in self.callbacks:
                    callback.on_stop(self)
                raise
            train_seconds = time.perf_counter() - started
            # Process 0's: each process's batch norms hold its own shard's statistics, and a best epoch or early stop
            # of its own would part the processes (one trains on, the others have gone).
            val = distributed.broadcast(self.evaluate(val_loader))
            epoch_seconds = time.perf_counter() - started

            state = self.state
            state.epoch = epoch + 1
            state.train_time_s += epoch_seconds
            state.train_phase_s += train_seconds
            state.samples_seen += train_loader.num_samples
            metrics = {
                "epoch": epoch + 1,
                **train_metrics,
                "val/loss": val["loss"],
                "val/acc": val["acc"],
                "lr": self.step_lr,  # the epoch's last step's
                "time/epoch_s": epoch_seconds,
                "time/samples_per_s": train_loader.num_samples / train_seconds,
            }
            # No validation set: the last epoch counts as the best.
            is_best = math.isnan(val["acc"]) or val["acc"] > state.best_val_acc
            if is_best:
                state.best_val_acc = val["acc"]
                state.best_epoch = epoch + 1
                self.best_weights = {k: v.detach().to("cpu", copy=True)
                                     for k, v in self.evaluated_model.state_dict().items()}
            state.history.append(metrics)
            validation = (f"  val loss {val['loss']:.4f} acc {100 * val['acc']:.2f}%{'  (best)' if is_best else ''}"
                          if not math.isnan(val["acc"]) else "")
            log.info("epoch %d/%d  train loss %.4f acc %.2f%%%s  %.1f s (%.0f samples/s)", epoch + 1,
                     self.settings.epochs, metrics["train/loss"], 100 * metrics["train/acc"], validation,
                     epoch_seconds, metrics["time/samples_per_s"])
            patience = self.settings.patience
            # Decided before the callbacks, so last.pt holds it: a resumed run stops where this one did.
            state.stopped_early = (patience is not None and state.epoch < self.settings.epochs
                                   and state.epoch - state.best_epoch >= patience)
            if state.stopped_early:
                log.info("Early stop after epoch %d of %d: val/acc has not improved for %d epochs (best %.2f%%, "
                         "epoch %d)", state.epoch, self.settings.epochs, patience, 100 * state.best_val_acc,
                         state.best_epoch)
            for callback in self.callbacks:
                callback.on_epoch_end(self, metrics, is_best)
        return self.state

    def train_epoch(self, loader, epoch: int) -> dict[str, float]:
        self.train_model.train()
        device = self.settings.device
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
        bar = tqdm(total=len(loader), initial=state.batch_in_epoch, desc=f"epoch {epoch + 1}/{self.settings.epochs}",
                   leave=False, disable=not self.settings.progress, dynamic_ncols=True)
        for batch, (x, y) in enumerate(loader.epoch_batches(epoch, state.batch_in_epoch),
                                       start=state.batch_in_epoch):
            with autocast_context(device, self.settings.bf16):
                logits = self.train_model(to_memory_format(x, self.settings.channels_last))
            loss = F.cross_entropy(logits.float(), y, label_smoothing=self.settings.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.step_lr = self.optimizer.param_groups[0]["lr"]  # this step's, logged: the schedule moves on next
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
            if self.state.step % self.settings.log_interval == 0:
                values = {
                    "train/loss": window_loss.item() / window_count,
                    "train/acc": window_correct.item() / window_count,
                    "lr": self.step_lr,
                }
                self.check_finite(distributed.sum_of(values["train/loss"], device))  # all processes stop, or none
                for callback in self.callbacks:
                    callback.on_train_log(self, values)
                bar.set_postfix(loss=f"{values['train/loss']:.4f}", acc=f"{100 * values['train/acc']:.2f}%")
                window_loss.zero_()
                window_correct.zero_()
                window_count = 0
            bar.update()
            if distributed.any_rank(self.stop_requested, device) and batch + 1 < len(loader):
                bar.close()
                distributed.sum_over_ranks(epoch_loss, epoch_correct)
                state.batch_in_epoch = batch + 1
                state.epoch_loss_sum, state.epoch_correct = epoch_loss.item(), int(epoch_correct.item())
                raise TrainingStopped()
        bar.close()
        distributed.sum_over_ranks(epoch_loss, epoch_correct)
        state.batch_in_epoch, state.epoch_loss_sum, state.epoch_correct, state.epoch_elapsed_s = 0, 0.0, 0, 0.0
        samples = loader.num_samples
        train_loss = epoch_loss.item() / samples
        self.check_finite(train_loss)
        return {"train/loss": train_loss, "train/acc": epoch_correct.item() / samples}

    def check_finite(self, loss: float) -> None:
        if math.isfinite(loss):
            return
        lr = self.optimizer.param_groups[0]["lr"]
        warm_up = isinstance(self.scheduler, torch.optim.lr_scheduler.OneCycleLR)  # it already starts low
        raise UserError(
            f"Training diverged: the loss is {loss} at step {self.state.step} (learning rate {lr:.3g}). "
            f"Lower optimizer.lr{'.' if warm_up else ' or use a warm-up schedule (scheduler=onecycle).'}"
        )

    def evaluate(self, loader, model: nn.Module | None = None, keep_predictions: bool = False) -> dict[str, Any]:
        """Loss and accuracy of ``model`` (default: the evaluated model) over a loader, in the loop's precision."""
        return evaluate(model or self.evaluated_model, loader, device=self.settings.device, bf16=self.settings.bf16,
                        channels_last=self.settings.channels_last, keep_predictions=keep_predictions)

    def load_best_weights(self) -> None:
        """Put the best weights by validation accuracy into the evaluated model (a no-op if the last epoch was best)."""
        if self.best_weights is not None:
            self.evaluated_model.load_state_dict(self.best_weights)

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs, as tensors and primitives (``torch.load(weights_only=True)`` reads it)."""
        return {
            "model": self.model.state_dict(),
            **({"ema": self.ema.model.state_dict()} if self.ema else {}),
            **({"best_weights": self.best_weights} if self.best_weights is not None else {}),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "state": copy.deepcopy(asdict(self.state)),
            "rng": rng_states(),
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Continue from ``state_dict()``'s output: weights, optimizer, schedule, averages, best weights, RNG, state."""
        self.model.load_state_dict(saved["model"])
        if self.ema:
            self.ema.model.load_state_dict(saved["ema"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.best_weights = saved.get("best_weights")
        self.state = TrainState(**saved["state"])
        restore_rng_states(saved["rng"])
