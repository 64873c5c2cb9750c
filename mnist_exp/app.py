"""The training entry point: ``python -m mnist_exp [group=option ...] [key=value ...]``.

``main`` is the thin Hydra layer: it composes the config, calls ``train`` and returns the metric
that ``optimized_metric`` names, for sweepers. ``train`` builds every component from its registry,
runs the loop and writes everything of the run into the run directory:

    .hydra/  train.log  events.out.tfevents.*  checkpoints/{last,best}.pt  metrics.json  *.png
"""

import logging
import math
import os
import signal
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mnist_exp import distributed
from mnist_exp.checkpoint import load_checkpoint, restore_rng_states, save_checkpoint
from mnist_exp.config import CONF_DIR, register_schemas
from mnist_exp.data import TensorLoader, build_dataset
from mnist_exp.errors import UserError, did_you_mean
from mnist_exp.models import count_parameters, model_summary
from mnist_exp.registry import MODELS, OPTIMIZERS, SCHEDULERS
from mnist_exp.run_dir import read_metrics, write_metrics
from mnist_exp.runtime import (is_submitit_preemption, place_model, seconds_since_process_start, seed_everything,
                               select_device, set_cpu_threads, stop_on_signals, use_bf16)
from mnist_exp.tracking import TensorBoardTracker, flatten_config, write_final_figures
from mnist_exp.trainer import CheckpointCallback, TensorBoardCallback, Trainer, TrainingStopped, TrainState

log = logging.getLogger("mnist_exp")

# Config keys that say where or how a run goes, not what it trains: a resumed run may change them.
RESUME_MAY_CHANGE = ("resume", "ckpt_path", "dataset.data_dir", "device.", "trainer.progress",
                     "trainer.log_interval", "trainer.compile", "trainer.eval_batch_size", "optimized_metric")


def main() -> None:
    """``python -m mnist_exp``, or a script of your own that registers components first, then calls this."""
    register_schemas()  # here, not at import: builders registered after ``import mnist_exp.app`` count too
    check_output_location(sys.argv[1:])
    sys.argv += distributed.non_writer_overrides()  # under torchrun, ranks other than 0 write nothing
    hydra_main()


def check_output_location(args: list[str]) -> None:
    """Refuse, in one line, an output location that cannot be written (Hydra would fail with a traceback)."""
    locations = [value for key, _, value in (arg.partition("=") for arg in args)
                 if key in ("hydra.run.dir", "hydra.sweep.dir") and "${" not in value]
    locations.append(os.environ.get("MNIST_EXP_OUTPUTS") or "outputs")
    for location in locations:
        path = Path(location).absolute()
        existing = next(p for p in (path, *path.parents) if p.exists())
        problem = "is not a directory" if not existing.is_dir() else "is not writable" if not os.access(
            existing, os.W_OK) else None
        if problem:
            sys.exit(f"Cannot write run directories to {path}: {existing} {problem}. "
                     "Choose another place with hydra.run.dir=<dir> or MNIST_EXP_OUTPUTS=<dir>.")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> float:
    return train(cfg)[cfg.optimized_metric]


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train, test and record one run; returns its metrics (also in ``metrics.json``)."""
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        return run(cfg, run_dir, in_sweep, list(hydra_cfg.overrides.task))
    except SystemExit:  # stopped by a signal: metrics.json already says how to resume
        raise
    except BaseException as error:
        # A sweep's summary and the leaderboard read the status; the error goes on up to Hydra.
        # A completed run's metrics stay: a failed attempt to resume it must not erase them.
        if distributed.rank() == 0 and read_metrics(run_dir).get("status") != "completed":
            write_metrics(run_dir, {"status": "failed", "error": str(error) or type(error).__name__})
        raise


def run(cfg: DictConfig, run_dir: Path, in_sweep: bool, overrides: list[str]) -> dict[str, Any]:
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # plain values: checkpoints hold it
    trainer_cfg = cfg.trainer
    check_ranges(cfg)

    device = distributed.setup(select_device(cfg.device.name.value), trainer_cfg.batch_size)
    run_dir = Path(distributed.broadcast(str(run_dir)))  # rank 0's, where the others find checkpoints to resume
    writer = distributed.rank() == 0
    threads = set_cpu_threads(cfg.device.threads)
    bf16 = use_bf16(cfg.device.precision.value, device)
    seed_everything(cfg.seed, trainer_cfg.deterministic)
    log.info("Run directory: %s", run_dir)
    log.info("Device: %s (%d CPU threads%s)%s", device, threads, ", bf16 autocast" if bf16 else "",
             f", process 0 of {distributed.world_size()} (DDP)" if distributed.is_distributed() else "")

    with distributed.rank_zero_first():
        data = build_dataset(cfg.dataset)
    log.info("Dataset %s: %d train, %d validation, %d test images", data.name, len(data.train), len(data.val),
             len(data.test))
    model, channels_last = place_model(MODELS.build(cfg.model, len(data.class_names)), device,
                                       cfg.device.channels_last)
    image_shape = tuple(data.train.images.shape[1:])
    log.info("Model %s, %s parameters:\n%s", cfg.model.name, f"{count_parameters(model):,}",
             model_summary(model, (image_shape[0] * image_shape[1],) if data.flatten else (1, *image_shape)))

    def loader(split, batch_size: int, shuffle: bool = False, **shard) -> TensorLoader:
        return TensorLoader(split, batch_size, mean=data.mean, std=data.std, flatten=data.flatten, shuffle=shuffle,
                            seed=cfg.seed, device=device, **shard)

    train_loader = loader(data.train, trainer_cfg.batch_size, shuffle=True, rank=distributed.rank(),
                          world_size=distributed.world_size(), max_shift=trainer_cfg.augment_shift,
                          max_rotate=trainer_cfg.augment_rotate, max_scale=trainer_cfg.augment_scale,
                          max_warp=trainer_cfg.augment_warp)
    val_loader = loader(data.val, trainer_cfg.eval_batch_size)
    test_loader = loader(data.test, trainer_cfg.eval_batch_size)

    optimizer = OPTIMIZERS.build(cfg.optimizer, model.parameters())
    steps_per_epoch = len(train_loader)
    scheduler = SCHEDULERS.build(cfg.scheduler, optimizer, trainer_cfg.epochs * steps_per_epoch, steps_per_epoch)

    checkpoint_dir = run_dir / "checkpoints"
    resume_path = resume_checkpoint_path(cfg, run_dir)
    state, best_weights, checkpoint = None, None, {}
    if resume_path is not None:
        state, best_weights, checkpoint = resume(resume_path, config, model, optimizer, scheduler, checkpoint_dir,
                                                 writer)

    callbacks, tracker = [], None
    if writer:
        # The killed run may have logged past its checkpoint: TensorBoard drops its points after it.
        tracker = TensorBoardTracker(run_dir, purge_step=state.step + 1 if state else None)
        if state is None:
            tracker.images("train/samples", data.train.images[:64])
        callbacks.append(TensorBoardCallback(tracker))
    if writer and trainer_cfg.checkpoint:
        callbacks.append(CheckpointCallback(checkpoint_dir, {"config": config, "class_names": data.class_names}))
    progress = trainer_cfg.progress if trainer_cfg.progress is not None else sys.stderr.isatty() and not in_sweep
    trainer = Trainer(model, optimizer, scheduler, train_loader, val_loader, epochs=trainer_cfg.epochs, device=device,
                      label_smoothing=trainer_cfg.label_smoothing, bf16=bf16, channels_last=channels_last,
                      compile=trainer_cfg.compile, log_interval=trainer_cfg.log_interval, progress=progress,
                      callbacks=callbacks, state=state, ema_decay=trainer_cfg.ema_decay, tta=trainer_cfg.tta)
    trainer.best_weights = best_weights
    if trainer.ema and "ema" in checkpoint:
        trainer.ema.model.load_state_dict(checkpoint["ema"])
    startup_s = seconds_since_process_start()  # imports, config, data, model: all before the first batch
    if startup_s is not None:
        log.info("First batch %.2f s after the process started", startup_s)
    stop_signal = None
    with stop_on_signals(trainer.request_stop) as signals:
        try:
            state = trainer.fit()
        except TrainingStopped:
            stop_signal = signals[0]
    if stop_signal is not None:  # outside the with: the handlers from before are back
        stopped(trainer.state, run_dir, overrides, stop_signal, trainer_cfg.checkpoint and writer)

    trainer.load_best_weights()
    test = trainer.test(test_loader)
    last = state.history[-1] if state.history else {}
    metrics = {
        "status": "completed",
        "test/acc": test["acc"],
        "test/loss": test["loss"],
        "val/acc": last.get("val/acc", math.nan),
        "val/loss": last.get("val/loss", math.nan),
        "best_val/acc": state.best_val_acc,
        "best_epoch": state.best_epoch,
        "epoch": state.epoch,
        "train_time_s": state.train_time_s,
        "samples_per_s": state.samples_seen / state.train_phase_s if state.train_phase_s else math.nan,
        "params": count_parameters(model),
        "startup_s": startup_s,
    }
    distributed.cleanup()
    if not writer:
        return metrics
    tracker.scalars({"test/acc": test["acc"], "test/loss": test["loss"]}, state.step)
    figures = write_final_figures(tracker, run_dir, test_images=data.test.images, true=data.test.labels,
                                  pred=test["predictions"], class_names=data.class_names, history=state.history,
                                  step=state.step)
    tracker.hparams(hyperparameters(config), {k: metrics[k] for k in ("test/acc", "test/loss", "best_val/acc", "val/acc")})
    tracker.close()
    write_metrics(run_dir, metrics)

    chosen = (f"best validation {100 * metrics['best_val/acc']:.2f}%, epoch {metrics['best_epoch']}" if len(data.val)
              else f"no validation split: the last epoch, {metrics['best_epoch']}")
    log.info("Test accuracy %.2f%% (%s), %.1f s of training", 100 * metrics["test/acc"], chosen, metrics["train_time_s"])
    log.info("Metrics:     %s", run_dir / "metrics.json")
    log.info("Pictures:    %s", ", ".join(path.name for path in figures.values()))
    log.info("TensorBoard: tensorboard --logdir %s", run_dir)
    return metrics


def stopped(state: TrainState, run_dir: Path, overrides: list[str], signum: int, checkpointed: bool) -> None:
    """Record a run stopped by a signal and how to resume it, then exit with 128 + the signal's number.

    A submitit job preempted (or at its time limit) goes on to submitit's own handler instead: it
    calls the launcher's checkpoint hook and requeues the job, which then continues from last.pt.
    """
    if distributed.rank() > 0:  # rank 0 records the stop
        raise SystemExit(128 + signum)
    kept = [o for o in overrides if not o.lstrip("+~").startswith(("resume=", "ckpt_path=", "hydra.run.dir="))]
    program = (f"torchrun --nproc_per_node={distributed.world_size()} -m mnist_exp" if distributed.is_distributed()
               else "python -m mnist_exp")
    command = " ".join([program, *kept, "resume=true", f"hydra.run.dir={run_dir}"])
    where = f"epoch {state.epoch + 1}, batch {state.batch_in_epoch}"
    write_metrics(run_dir, {"status": "stopped", "epoch": state.epoch, "step": state.step, "resume": command})
    submitit_handler = signal.getsignal(signum)
    if checkpointed and is_submitit_preemption(signum) and callable(submitit_handler):
        log.warning("Preempted (%s) in %s; checkpoints/last.pt written. submitit requeues the job, which "
                    "continues from it.", signal.Signals(signum).name, where)
        submitit_handler(signum, None)  # requeues and exits; returns only where it declines (not rank 0)
    elif checkpointed:
        log.warning("Stopped by %s in %s; checkpoints/last.pt written. Resume with: %s",
                    signal.Signals(signum).name, where, command)
    else:
        log.warning("Stopped by %s in %s (trainer.checkpoint=false: nothing to resume from).",
                    signal.Signals(signum).name, where)
    # SystemExit, not an error: in a sweep it ends the whole sweep, as a signal should.
    raise SystemExit(128 + signum)


def check_ranges(cfg: DictConfig) -> None:
    """Values the types allow but training does not; one line each, before anything is built."""
    trainer = cfg.trainer
    for key, value, low in (("trainer.epochs", trainer.epochs, 1), ("trainer.batch_size", trainer.batch_size, 1),
                            ("trainer.eval_batch_size", trainer.eval_batch_size, 1),
                            ("trainer.log_interval", trainer.log_interval, 1)):
        if value < low:
            raise UserError(f"{key}={value} is out of range: it must be at least {low}.")
    for key, value, allowed, ok in (
            ("augment_shift", trainer.augment_shift, "0 or more pixels, e.g. 2", trainer.augment_shift >= 0),
            ("augment_rotate", trainer.augment_rotate, "degrees in [0, 180], e.g. 10", 0 <= trainer.augment_rotate <= 180),
            ("augment_scale", trainer.augment_scale, "a fraction in [0, 1), e.g. 0.1", 0 <= trainer.augment_scale < 1),
            ("augment_warp", trainer.augment_warp, "0 or more pixels, e.g. 1", trainer.augment_warp >= 0),
            ("ema_decay", trainer.ema_decay, "a decay in [0, 1), e.g. 0.999", 0 <= trainer.ema_decay < 1)):
        if not ok:
            raise UserError(f"trainer.{key}={value} is out of range: it takes {allowed}; 0 turns it off.")
    if trainer.tta and cfg.dataset.get("flatten"):
        raise UserError("trainer.tta=true shifts images, but dataset.flatten=true makes them vectors. "
                        "Use one or the other.")
    lr = cfg.optimizer.get("lr")
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise UserError(f"optimizer.lr={lr} is out of range: it must be a positive number, e.g. optimizer.lr=1e-3.")
    known = ("test/acc", "test/loss", "val/acc", "val/loss", "best_val/acc")
    if cfg.optimized_metric not in known:
        raise UserError(f"optimized_metric={cfg.optimized_metric} is not a metric.{did_you_mean(cfg.optimized_metric, known)}"
                        f" Choose one of: {', '.join(known)}.")


def resume_checkpoint_path(cfg: DictConfig, run_dir: Path) -> Path | None:
    if cfg.ckpt_path:
        return Path(cfg.ckpt_path)
    last = run_dir / "checkpoints" / "last.pt"
    if requeued(run_dir):
        log.info("A requeued job: continuing the run in %s", run_dir)
        return last
    if cfg.resume:
        if not last.exists():
            raise UserError(f"resume=true, but {last} does not exist. Point hydra.run.dir at the run to continue "
                            "(hydra.run.dir=outputs/runs/<date>/<time>...) or give ckpt_path=<checkpoint>.")
        return last
    return None


def requeued(run_dir: Path) -> bool:
    """A submitit job restarted after preemption or its time limit finds its own unfinished run in its directory."""
    return (bool(os.environ.get("SUBMITIT_EXECUTOR")) and (run_dir / "checkpoints" / "last.pt").exists()
            and read_metrics(run_dir).get("status") not in ("completed", "failed"))


def resume(path: Path, config: dict, model, optimizer, scheduler, checkpoint_dir: Path, writer: bool = True):
    """Restore a run from a checkpoint; returns its train state, its best weights and the checkpoint."""
    checkpoint = load_checkpoint(path)
    changed = changed_keys(checkpoint["config"], config)
    # Name the biggest difference first: a different model explains its other keys.
    changed.sort(key=lambda change: not change.startswith(("model.name:", "dataset.name:")))
    if changed:
        raise UserError(f"Checkpoint {path} was trained with a different config ({'; '.join(changed[:4])}). "
                        "Resume with the run's own overrides (see its .hydra/overrides.yaml).")
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    restore_rng_states(checkpoint["rng"])
    state = TrainState(**checkpoint["state"])
    best_path = path.parent / "best.pt"
    best = load_checkpoint(best_path) if best_path.exists() else checkpoint
    if writer and best_path.parent.resolve() != checkpoint_dir.resolve():
        save_checkpoint(checkpoint_dir / "best.pt", best)  # the new run directory holds its own best.pt
    log.info("Resumed from %s at epoch %d (step %d)", path, state.epoch, state.step)
    return state, best.get("ema", best["model"]), checkpoint


def changed_keys(saved: dict, current: dict) -> list[str]:
    """'model.width: 16 -> 32' for each setting that changes what is trained."""
    before, after = flatten_config(saved), flatten_config(current)
    return [f"{key}: {before.get(key)} -> {after.get(key)}" for key in sorted(before.keys() | after.keys())
            if before.get(key) != after.get(key) and not key.startswith(RESUME_MAY_CHANGE)]


def hyperparameters(config: dict) -> dict[str, Any]:
    """The flattened config as TensorBoard's HPARAMS tab shows it, less the keys that only say where or how."""
    return {key: value for key, value in flatten_config(config).items() if not key.startswith(RESUME_MAY_CHANGE)}
