"""The training entry point: ``python -m mnist_exp [group=option ...] [key=value ...]``.

``hydra_main`` is the thin Hydra layer: it composes the config, calls ``train`` and returns the
metric that ``optimized_metric`` names, for sweepers. ``train`` builds every component from its
registry, fits, tests and records the run in its directory (``mnist_exp.run_dir``).
"""

import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mnist_exp import distributed
from mnist_exp.callbacks import CheckpointCallback, TensorBoardCallback
from mnist_exp.checkpoint import full_disk_error
from mnist_exp.config import CLAIMED_RUN_DIRS, CONF_DIR, check_ranges, register_schemas, schema_keys
from mnist_exp.errors import UserError, disk_full, full_traceback_asked, hydra_errors_in_one_line, release_stderr
from mnist_exp.data import DataBundle, TensorLoader, build_dataset
from mnist_exp.hparams import single_run_columns
from mnist_exp.inference import view_averaged
from mnist_exp.models import count_parameters, model_summary
from mnist_exp.registry import AUGMENTATIONS, MODELS, OPTIMIZERS, SCHEDULERS
from mnist_exp.resume import (check_no_overwrite, checkpoint_to_resume, completed_run, load_resumable, record_stop,
                              restore, write_missing_run_record)
from mnist_exp.run_dir import (CHECKPOINT_DIR, METRICS_FILE, RESUME_MAY_CHANGE, RunDirInUse, check_output_location,
                               flatten_config, named_run_dir, read_metrics, run_dir_lock, without_resume,
                               write_metrics, write_predictions)
from mnist_exp.runtime import (place_model, seconds_since_process_start, seed_everything, select_device,
                               set_cpu_threads, stop_on_signals, use_bf16)
from mnist_exp.sweep import check_sweep_overrides, register_optuna_sweeper
from mnist_exp.tracking import TensorBoardTracker, write_final_figures
from mnist_exp.trainer import LoopSettings, Trainer, TrainingStopped
from mnist_exp.trial import TrialPruned, trial_callbacks

log = logging.getLogger("mnist_exp")


def main() -> None:
    """``python -m mnist_exp``, or a script of your own that registers components first, then calls this."""
    register_schemas()  # here, not at import: builders registered after ``import mnist_exp.app`` count too
    register_optuna_sweeper()
    logging.raiseExceptions = False  # a log file on a full disk: no traceback per line (the error says it once)
    resume = any(arg.lower() in ("resume=true", "+resume=true") for arg in sys.argv[1:])
    try:
        check_output_location(sys.argv[1:])
        check_no_overwrite(sys.argv[1:], resume)
        check_sweep_overrides(sys.argv[1:])
    except UserError as error:
        sys.exit(str(error))
    if resume:
        # A continued run keeps the .hydra/ its first start wrote: a refused resume must not rewrite it.
        sys.argv.append("hydra.output_subdir=null")
    sys.argv += distributed.non_writer_overrides()  # under torchrun, ranks other than 0 write nothing
    try:
        with run_dir_lock(named_run_dir(sys.argv[1:])), hydra_errors_in_one_line(schema_keys):
            hydra_main()
    except RunDirInUse as error:
        sys.exit(str(error))


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> float:
    single_run = HydraConfig.get().mode == RunMode.RUN
    if single_run:
        release_stderr()  # composed: from here on the run's own output (its progress bar) goes out as it comes
    try:
        metrics = train(cfg)
    except UserError as error:
        if not single_run or full_traceback_asked():
            raise  # in a sweep the other jobs still run; the sweep's exit says one failed
        print(error, file=sys.stderr)
        sys.exit(1)
    if metrics["status"] == "pruned":
        raise TrialPruned(f"pruned by the search after epoch {metrics['epoch']}")  # the sweeper tells Optuna so
    return metrics[cfg.optimized_metric]


@dataclass
class Job:
    """One run, built and ready to fit: what ``fit_and_test`` needs."""

    cfg: DictConfig
    config: dict  # the composed config as plain values: checkpoints and the HPARAMS tab hold it
    run_dir: Path
    data: DataBundle
    trainer: Trainer
    loaders: dict[str, TensorLoader]  # train, val, test
    tracker: TensorBoardTracker | None  # rank 0's; None on the other DDP processes
    in_sweep: bool  # a sweep's job: the sweep, not the job, sets the HPARAMS table's columns


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train, test and record one run; returns its metrics (also in ``metrics.json``)."""
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    search = hydra_cfg.runtime.choices.get("hparams_search")
    if search and not in_sweep:  # a search's best trial reruns so; a forgotten -m would search nothing
        log.warning("hparams_search=%s without -m trains one run with its settings; to search, add -m: "
                    "python -m mnist_exp -m hparams_search=%s ...", search, search)
    try:
        if in_sweep and cfg.resume:
            write_missing_run_record(run_dir, cfg, hydra_cfg)
        if cfg.resume and not cfg.ckpt_path:
            config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
            recorded = completed_run(run_dir, config, overrides, in_sweep)
            if recorded:
                return recorded
        job = build_job(cfg, run_dir, in_sweep, overrides)
    except BaseException as error:
        # Refused before training (a changed config on resume, say): a run's existing record stays as it is.
        if not read_metrics(run_dir):
            record_failure(run_dir, error)
        raise
    try:
        return fit_and_test(job, overrides)
    except SystemExit:  # stopped by a signal: metrics.json already says how to resume
        raise
    except BaseException as error:
        record_failure(job.run_dir, error)
        if disk_full(error):  # the event file, the log or a checkpoint: one line, whichever hit it first
            raise full_disk_error(job.run_dir, "the run stopped; its last checkpoint is kept") from None
        raise


def record_failure(run_dir: Path, error: BaseException) -> None:
    """A sweep's summary and the leaderboard read the status; the error itself goes on up to Hydra."""
    if distributed.rank() != 0:
        return
    try:
        write_metrics(run_dir, {"status": "failed", "error": str(error) or type(error).__name__})
    except OSError as write_error:  # a full disk: the error that caused it matters more
        log.warning("The failure could not be recorded in %s: %s", run_dir / METRICS_FILE, write_error)


def build_job(cfg: DictConfig, run_dir: Path, in_sweep: bool, overrides: list[str] = ()) -> Job:
    """Check, build and (where asked) restore everything of the run, in the order of the data flow."""
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # plain values: checkpoints hold it
    check_ranges(cfg)
    device = distributed.setup(select_device(cfg.device.name.value), cfg.trainer.batch_size)
    run_dir = Path(distributed.broadcast(str(run_dir)))  # rank 0's, where the others find checkpoints to resume
    writer = distributed.rank() == 0
    threads = set_cpu_threads(cfg.device.threads)
    bf16 = use_bf16(cfg.device.precision.value, device)
    seed_everything(cfg.seed, cfg.trainer.deterministic)
    resume_from = checkpoint_to_resume(cfg.ckpt_path, cfg.resume, run_dir, in_sweep)
    resumed = load_resumable(resume_from, config) if resume_from is not None else None  # refused before the build
    log.info("Run directory: %s", run_dir)
    taken = [given for given, claimed in CLAIMED_RUN_DIRS.items() if Path(claimed) == run_dir and claimed != given]
    if taken:
        log.warning("%s was taken by a run started in the same second: this run is in %s", taken[0], run_dir)

    with distributed.rank_zero_first():
        data = build_dataset(cfg.dataset)
    log.info("Dataset %s: %d train, %d validation, %d test images", data.name, len(data.train), len(data.val),
             len(data.test))
    augment = AUGMENTATIONS.build(cfg.augment)
    model, channels_last = place_model(MODELS.build(cfg.model, len(data.class_names)), device,
                                       cfg.device.channels_last)
    speed = [f"{threads} CPU threads", *(["bf16 autocast"] if bf16 else []), *(["channels-last"] if channels_last else []),
             *(["torch.compile"] if cfg.trainer.compile else [])]
    log.info("Device: %s (%s)%s", device, ", ".join(speed),
             f", process 0 of {distributed.world_size()} (DDP)" if distributed.is_distributed() else "")
    image_shape = tuple(data.train.images.shape[1:])
    log.info("Model %s, %s parameters:\n%s", cfg.model.name, f"{count_parameters(model):,}",
             model_summary(model, (image_shape[0] * image_shape[1],) if data.flatten else (1, *image_shape)))

    def loader(split, batch_size: int, **options) -> TensorLoader:
        return TensorLoader(split, batch_size, mean=data.mean, std=data.std, flatten=data.flatten, seed=cfg.seed,
                            device=device, **options)

    train_loader = loader(data.train, cfg.trainer.batch_size, shuffle=True, augment=augment, rank=distributed.rank(),
                          world_size=distributed.world_size())
    val_loader = loader(data.val, cfg.trainer.eval_batch_size)
    test_loader = loader(data.test, cfg.trainer.eval_batch_size)
    optimizer = OPTIMIZERS.build(cfg.optimizer, model.parameters())
    scheduler = SCHEDULERS.build(cfg.scheduler, optimizer, cfg.trainer.epochs * len(train_loader), len(train_loader))

    progress = cfg.trainer.progress if cfg.trainer.progress is not None else sys.stderr.isatty() and not in_sweep
    settings = LoopSettings(epochs=cfg.trainer.epochs, device=device, label_smoothing=cfg.trainer.label_smoothing,
                            bf16=bf16, channels_last=channels_last, compile=cfg.trainer.compile,
                            log_interval=cfg.trainer.log_interval, progress=progress, ema_decay=cfg.trainer.ema_decay)
    trainer = Trainer(model, optimizer, scheduler, settings)
    checkpoints = None
    if writer and cfg.trainer.checkpoint:
        checkpoints = CheckpointCallback(run_dir / CHECKPOINT_DIR, {"config": config, "class_names": data.class_names})
        trainer.callbacks.append(checkpoints)
    # Last: the epoch is in TensorBoard and last.pt before a search's pruner may stop the trial there.
    if writer and HydraConfig.initialized():  # a job of a search reports to its study
        trainer.callbacks += trial_callbacks(HydraConfig.get(), cfg.optimized_metric)
    if resume_from is not None:
        restore(trainer, resumed, checkpoints)
        log.info("Resumed from %s at epoch %d (step %d)", resume_from, trainer.state.epoch, trainer.state.step)

    tracker = None
    if writer:
        # The killed run may have logged past its checkpoint: TensorBoard drops its points after it. A fresh run
        # where an earlier attempt logged (a resumed sweep's failed job) drops all of those.
        stale = resume_from is None and any(run_dir.glob("events.out.tfevents.*"))
        tracker = TensorBoardTracker(run_dir, purge_step=trainer.state.step + 1 if resume_from else 0 if stale else None)
        if resume_from is None:
            tracker.run_record(config, without_resume(list(overrides)))
        # First: an epoch's points are on disk before the checkpoint that covers them (a kill between loses none).
        trainer.callbacks.insert(0, TensorBoardCallback(tracker))
    return Job(cfg, config, run_dir, data, trainer, {"train": train_loader, "val": val_loader, "test": test_loader},
               tracker, in_sweep)


def fit_and_test(job: Job, overrides: list[str]) -> dict[str, Any]:
    cfg, trainer, data, run_dir, tracker = job.cfg, job.trainer, job.data, job.run_dir, job.tracker
    startup_s = seconds_since_process_start()  # imports, config, data, model: all before the first batch
    if startup_s is not None:
        log.info("First batch %.2f s after the process started", startup_s)
    stop_signal, status = None, "completed"
    with stop_on_signals(trainer.request_stop) as signals:
        try:
            trainer.fit(job.loaders["train"], job.loaders["val"])
        except TrainingStopped:
            stop_signal = signals[0]
        except TrialPruned:  # stopped at an epoch's end by an Optuna search: tested and recorded as pruned
            status = "pruned"
    state = trainer.state
    if stop_signal is not None:  # outside the with: the handlers from before are back
        record_stop(trainer.state, run_dir, overrides, stop_signal, cfg.trainer.checkpoint and tracker is not None)

    trainer.load_best_weights()
    test_model = trainer.evaluated_model
    if cfg.trainer.tta:  # the final test averages over shifted (and scaled) views of each image; validation stays plain
        test_model = view_averaged(test_model, data.mean, data.std, cfg.trainer.tta_scales)
    test = trainer.evaluate(job.loaders["test"], model=test_model, keep_predictions=True)
    last = state.history[-1] if state.history else {}
    metrics = {
        "status": status,
        "test/acc": test["acc"],
        "test/loss": test["loss"],
        "val/acc": last.get("val/acc", math.nan),
        "val/loss": last.get("val/loss", math.nan),
        "best_val/acc": state.best_val_acc,
        "best_epoch": state.best_epoch,
        "epoch": state.epoch,
        "train_time_s": state.train_time_s,
        "samples_per_s": state.samples_seen / state.train_phase_s if state.train_phase_s else math.nan,
        "params": count_parameters(trainer.model),
        "startup_s": startup_s,
    }
    distributed.cleanup()
    if tracker is None:
        return metrics
    tracker.scalars({"test/acc": test["acc"], "test/loss": test["loss"]}, state.step)
    tracker.images("train/samples", data.train.images[:64])  # here, not at the start: it imports torchvision
    figures = write_final_figures(tracker, run_dir, test_images=data.test.images, true=data.test.labels,
                                  pred=test["predictions"], class_names=data.class_names, history=state.history,
                                  step=state.step)
    params = hyperparameters(job.config)
    tracker.hparams(params, {k: metrics[k] for k in ("test/acc", "test/loss", "best_val/acc", "val/acc")}, state.step,
                    columns=None if job.in_sweep else single_run_columns(params, overrides))
    tracker.close()
    write_predictions(run_dir, test["predictions"].cpu(), data.test.labels.cpu())  # for compare's paired test
    write_metrics(run_dir, metrics)

    chosen = (f"best validation {100 * metrics['best_val/acc']:.2f}%, epoch {metrics['best_epoch']}" if len(data.val)
              else f"no validation split: the last epoch, {metrics['best_epoch']}")
    log.info("Test accuracy %.2f%% (%s), %.1f s of training", 100 * metrics["test/acc"], chosen, metrics["train_time_s"])
    log.info("Metrics:     %s", run_dir / METRICS_FILE)
    log.info("Pictures:    %s", ", ".join(path.name for path in figures.values()))
    log.info("TensorBoard: tensorboard --logdir %s", run_dir)
    return metrics


def hyperparameters(config: dict) -> dict[str, Any]:
    """The flattened config as TensorBoard's HPARAMS tab shows it, less the keys that only say where or how."""
    return {key: value for key, value in flatten_config(config).items() if not key.startswith(RESUME_MAY_CHANGE)}
