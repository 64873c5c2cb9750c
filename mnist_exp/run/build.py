"""Building a run from its composed config, in the order of the data flow: check, device, data, model, loaders,
optimizer and schedule, the loop, checkpoints, the trackers, and the state of a run it continues."""

import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from mnist_exp.data import DataBundle, TensorLoader, build_dataset, check_test_split, split_fingerprint
from mnist_exp.errors import UserError
from mnist_exp.paths import CONF_DIR
from mnist_exp.registry import AUGMENTATIONS, MODELS, OPTIMIZERS, SCHEDULERS
from mnist_exp.run import distributed
from mnist_exp.run.callbacks import CheckpointCallback, TrackingCallback
from mnist_exp.run.checkpoint import misfit
from mnist_exp.run.commands import config_command, run_command
from mnist_exp.run.recorded_config import check_recorded_config, record_run_identity, run_identity
from mnist_exp.run.config import CLAIMED_RUN_DIRS, check_ranges
from mnist_exp.run.debugging import check_overfit_validation, limited
from mnist_exp.run.ema import check_decay
from mnist_exp.run.finetune import load_initial_weights
from mnist_exp.run.models import count_parameters, model_summary
from mnist_exp.run.optim import check_schedule_fits, log_warmup_steps
from mnist_exp.run.resume import (check_same_data, checkpoint_to_resume, load_resumable, record_resume_changes,
                                  restore)
from mnist_exp.run.runtime import place_model, seed_everything, select_device, set_cpu_threads, use_bf16
from mnist_exp.run.loggers import open_trackers
from mnist_exp.run.tracking import TrackedRun, Trackers
from mnist_exp.run.trainer import LoopSettings, Trainer
from mnist_exp.runs import CHECKPOINT_DIR, last_checkpoint, split_override, without_resume

log = logging.getLogger("mnist_exp")


@dataclass
class Job:
    """One run, built and ready to fit."""

    cfg: DictConfig
    config: dict  # the composed config as plain values: checkpoints and the HPARAMS tab hold it
    run_dir: Path
    data: DataBundle
    trainer: Trainer
    loaders: dict[str, TensorLoader]  # train, val, test
    tracker: Trackers | None  # rank 0's, those cfg.logger names; None on the other DDP processes
    in_sweep: bool  # a sweep's job: the sweep, not the job, sets the HPARAMS table's columns
    flops_per_image: int  # of the model's forward pass
    test_fingerprint: str  # of the test split's images and labels (split_fingerprint), which the run records


def config_as_run(cfg: DictConfig, device: torch.device) -> dict:
    """The composed config as plain values, as checkpoints and trackers hold it: device.precision as it runs on
    ``device`` (what auto becomes there)."""
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    config["device"]["precision"] = "bf16" if use_bf16(cfg.device.precision.value, device) else "fp32"
    return config


def build_job(cfg: DictConfig, run_dir: Path, in_sweep: bool, overrides: list[str] = (),
              sweep_dir: Path | None = None) -> Job:
    """Check, build and (where asked) restore everything of the run."""
    check_ranges(cfg)
    device = distributed.setup(select_device(cfg.device.name.value), cfg.trainer.batch_size)
    run_dir = Path(distributed.broadcast(str(run_dir)))  # rank 0's, where the others find checkpoints to resume
    writer = distributed.rank() == 0
    threads = set_cpu_threads(cfg.device.threads)
    config = config_as_run(cfg, device)
    bf16 = config["device"]["precision"] == "bf16"
    seed_everything(cfg.seed, cfg.trainer.deterministic)
    resume_from = checkpoint_to_resume(cfg.ckpt_path, cfg.resume, run_dir, in_sweep)
    # Refused before anything is built.
    resumed = load_resumable(resume_from, config, in_sweep) if resume_from is not None else None
    in_place = resume_from if resumed and resume_from.resolve() == last_checkpoint(run_dir).resolve() else None
    if in_place and writer:  # the record there must say what it trains
        check_recorded_config(run_dir, resumed["config"], config_command(list(overrides)))
    run_id = run_identity(run_dir, in_place, resumed, list(overrides))
    log.info("Run directory: %s", run_dir)
    taken = [given for given, claimed in CLAIMED_RUN_DIRS.items() if Path(claimed) == run_dir and claimed != given]
    if taken:
        log.warning("%s was taken by a run started in the same second: this run is in %s", taken[0], run_dir)

    given = {split_override(line)[0] for line in overrides}  # on the command line, not by a recipe
    check_overfit_validation(cfg.trainer.overfit_batches, given, cfg.dataset.get("val_size"))
    with distributed.rank_zero_first():
        data = limited(build_dataset(cfg.dataset), cfg.trainer.limit_batches, cfg.trainer.overfit_batches,
                       cfg.trainer.batch_size, cfg.trainer.eval_batch_size)
    check_test_split(data)
    # What the run trains and is tested on: a resume refuses data that changed since, and so do the tools.
    splits = ("train", "val", "test")
    data_record = {"split_sizes": {split: len(getattr(data, split)) for split in splits},
                   "fingerprints": {split: split_fingerprint(getattr(data, split)) for split in splits}}
    if resumed is not None:
        check_same_data(resume_from, resumed, data_record)
    if cfg.trainer.batch_size > len(data.train):  # every larger batch would be the same single batch
        raise UserError(f"trainer.batch_size={cfg.trainer.batch_size} is more than the {len(data.train)} training "
                        f"images: give at most {len(data.train)}.")
    evaluated = max(len(data.val), len(data.test))  # a default above it (500 on fake data) is left as it is
    if "trainer.eval_batch_size" in given and cfg.trainer.eval_batch_size > evaluated:
        raise UserError(f"trainer.eval_batch_size={cfg.trainer.eval_batch_size} is more than the {evaluated} images of "
                        f"the largest split it evaluates ({len(data.val)} validation, {len(data.test)} test): every "
                        f"larger batch is the same single batch, so give at most {evaluated}.")
    log.info("Dataset %s: %d train, %d validation, %d test images", data.name, len(data.train), len(data.val),
             len(data.test))
    if nulls := [key for key in ("mean", "std") if cfg.dataset.get(key, 0) is None]:  # what the run uses for them
        log.info("Normalisation: mean %.4f, std %.4f (%s null: the training split's)", data.mean, data.std,
                 " and ".join(f"dataset.{key}" for key in nulls))
    augment = AUGMENTATIONS.build(cfg.augment)
    model, channels_last = place_model(MODELS.build(cfg.model, len(data.class_names)), device,
                                       cfg.device.channels_last)
    if cfg.init_from and resumed is None:  # a resumed run's weights are its checkpoint's, the source may have gone
        load_initial_weights(model, cfg.init_from, len(data.class_names))
    speed = [f"{threads} CPU thread{'' if threads == 1 else 's'}", *(["bf16 autocast"] if bf16 else []),
             *(["channels-last"] if channels_last else []), *(["torch.compile"] if cfg.trainer.compile else [])]
    log.info("Device: %s (%s)%s", device, ", ".join(speed),
             f", process 0 of {distributed.world_size()} (DDP)" if distributed.is_distributed() else "")
    image_shape = tuple(data.train.images.shape[1:])
    image_shape = image_shape if len(image_shape) == 3 else (1, *image_shape)  # [C, H, W]: grey is one channel
    input_shape = (math.prod(image_shape),) if data.flatten else image_shape
    for key in ("max_shift", "shift"):  # a move as long as the image's side leaves nothing of it in view
        if cfg.augment.get(key, 0) >= min(image_shape[1:]):
            raise UserError(f"augment.{key}={cfg.augment[key]} moves an image out of its {min(image_shape[1:])} pixels: "
                            f"give fewer, e.g. augment.{key}=2.")
    # A size some nets round away (image_size 30 gives a 28's maps) would be recorded but not run: it is the data's.
    for key, size in (("image_size", image_shape[-1]), ("in_channels", image_shape[0]),
                      ("in_features", math.prod(image_shape))):
        if cfg.model.get(key, size) != size:
            MODELS.build({**cfg.model, key: size}, len(data.class_names))  # the advice below: refused where it would be
            raise UserError(f"model.{key}={cfg.model[key]} does not fit the dataset's {'x'.join(map(str, image_shape))} "
                            f"images: give model.{key}={size}.")
    summary, flops = model_summary(model, input_shape)
    log.info("Model %s, %s parameters, %.2f MFLOPs per image:\n%s", cfg.model.name, f"{count_parameters(model):,}",
             flops / 1e6, summary)

    def loader(split, batch_size: int, **options) -> TensorLoader:
        return TensorLoader(split, batch_size, mean=data.mean, std=data.std, flatten=data.flatten, seed=cfg.seed,
                            device=device, **options)

    train_loader = loader(data.train, cfg.trainer.batch_size, shuffle=True, augment=augment, rank=distributed.rank(),
                          world_size=distributed.world_size())
    val_loader = loader(data.val, cfg.trainer.eval_batch_size)
    test_loader = loader(data.test, cfg.trainer.eval_batch_size)
    if cfg.trainer.patience is not None and not len(data.val) and cfg.trainer.overfit_batches is None:
        raise UserError(f"trainer.patience={cfg.trainer.patience} watches the validation accuracy, and "
                        f"dataset.val_size={cfg.dataset.get('val_size')} holds out no image of this dataset: give a "
                        "larger dataset.val_size, or trainer.patience=null.")
    steps = cfg.trainer.epochs * len(train_loader)
    # A debug run cuts its steps: a recipe's values are left as they are, and those given on its command line checked.
    debug = cfg.trainer.limit_batches is not None or cfg.trainer.overfit_batches is not None
    if not debug or given & {"scheduler.step_size", "scheduler.warmup_epochs"}:  # the keys it judges
        check_schedule_fits(cfg.scheduler, cfg.trainer.epochs, len(train_loader), given)
    if not debug or "trainer.ema_decay" in given:
        check_decay(cfg.trainer.ema_decay, steps)
    if not debug or "trainer.log_interval" in given:
        check_log_interval(cfg.trainer.log_interval, steps, "trainer.log_interval" in given)
    optimizer = OPTIMIZERS.build(cfg.optimizer, model.parameters())
    scheduler = SCHEDULERS.build(cfg.scheduler, optimizer, cfg.trainer.epochs * len(train_loader), len(train_loader))
    log_warmup_steps(cfg.scheduler, len(train_loader))

    progress = cfg.trainer.progress if cfg.trainer.progress is not None else sys.stderr.isatty() and not in_sweep
    settings = LoopSettings(epochs=cfg.trainer.epochs, device=device, label_smoothing=cfg.trainer.label_smoothing,
                            bf16=bf16, channels_last=channels_last, compile=cfg.trainer.compile,
                            log_interval=cfg.trainer.log_interval, progress=progress, ema_decay=cfg.trainer.ema_decay,
                            patience=cfg.trainer.patience)
    trainer = Trainer(model, optimizer, scheduler, settings)
    checkpoints = None
    if writer and cfg.trainer.checkpoint:
        # The normalisation as used (a dataset may compute it: mean: null) and the images' [C, H, W] (a CSV's size
        # is its file's): the tools bring new images to that form.
        shape = list(data.train.images.shape[1:])
        record_run_identity(run_dir, run_id)
        checkpoints = CheckpointCallback(run_dir / CHECKPOINT_DIR, {
            "run_id": run_id, "config": config, "class_names": data.class_names, "normalisation": [data.mean, data.std],
            "image_shape": [1, *shape] if len(shape) == 2 else shape, **data_record})
        trainer.callbacks.append(checkpoints)
    if resume_from is not None:
        try:
            restore(trainer, resumed, checkpoints)
        except RuntimeError as error:  # weights of another shape than its config's model: an edited file
            if not str(error).startswith("Error(s) in loading state_dict"):
                raise
            raise UserError(f"Checkpoint {resume_from} does not fit the model its config names ({cfg.model.name}): "
                            f"{misfit(error)}. Continue from a checkpoint the run wrote, or start fresh.") from error
        state = trainer.state  # said as a stop says where it stopped
        where = f"in epoch {state.epoch + 1}, batch {state.batch_in_epoch}" if state.batch_in_epoch else \
            f"after epoch {state.epoch}"
        log.info("Resumed from %s %s (step %d)", resume_from, where, state.step)
        if writer and in_place:  # its record is this directory's
            record_resume_changes(run_dir, resumed["config"], config, trainer.state.epoch, trainer.state.step)

    tracker = None
    if writer:
        tracker = open_trackers(config["logger"], TrackedRun(run_dir, trainer.state.step if resume_from else None,
                                                             sweep_dir))
        tracker.run_record(config, run_command(without_resume(list(overrides))))
        # First: an epoch's points are on disk before the checkpoint that covers them (a kill between loses none).
        trainer.callbacks.insert(0, TrackingCallback(tracker))
    return Job(cfg, config, run_dir, data, trainer, {"train": train_loader, "val": val_loader, "test": test_loader},
               tracker, in_sweep, flops, data_record["fingerprints"]["test"])


def check_log_interval(log_interval: int, steps: int, given: bool) -> None:
    """A log interval longer than the run logs no step at all: refused where it was set (on the command line or in
    a recipe), a warning where it is the default (which a run of the fake dataset, 8 steps, would have to change)."""
    if log_interval <= steps:
        return
    advice = f"give at most {steps}, e.g. trainer.log_interval={max(1, steps // 10)}"
    if given or log_interval != OmegaConf.load(CONF_DIR / "config.yaml").trainer.log_interval:
        raise UserError(f"trainer.log_interval={log_interval} is more than this run's {steps} training steps, so no "
                        f"step would be logged: {advice}.")
    log.warning("trainer.log_interval=%d (the default) is more than this run's %d training steps: no train/ or lr "
                "point is logged. For them, %s.", log_interval, steps, advice)
