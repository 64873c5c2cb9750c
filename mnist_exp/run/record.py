"""The end of a run: the final test, then its record (metrics.json, the test predictions, the pictures, the
HPARAMS entry), or the record of its failure."""

import logging
import math
from pathlib import Path
from typing import Any

import torch

from mnist_exp.run import distributed
from mnist_exp.run.build import Job
from mnist_exp.run.figures import write_final_figures
from mnist_exp.run.hparams import single_run_columns
from mnist_exp.run.models import count_parameters
from mnist_exp.run.tta import view_averaged
from mnist_exp.runs import METRICS_FILE, Status, hyperparameters, write_metrics, write_predictions

log = logging.getLogger("mnist_exp")


def test_and_record(job: Job, status: Status, overrides: list[str], startup_s: float | None) -> dict[str, Any]:
    """Test the run's best (or last) weights and record the run; returns its metrics (also in metrics.json)."""
    cfg, trainer, data, run_dir, tracker = job.cfg, job.trainer, job.data, job.run_dir, job.tracker
    trainer.load_best_weights()
    test_model = trainer.evaluated_model
    if cfg.trainer.tta:  # the final test averages over shifted (and scaled) views of each image; validation stays plain
        test_model = view_averaged(test_model, data.mean, data.std, cfg.trainer.tta_scales)
    test = trainer.evaluate(job.loaders["test"], model=test_model, keep_predictions=True)
    state = trainer.state
    last = state.history[-1] if state.history else {}
    metrics = {
        "status": status.value,
        "test/acc": test["acc"],
        "test/loss": test["loss"],
        "val/acc": last.get("val/acc", math.nan),
        "val/loss": last.get("val/loss", math.nan),
        "best_val/acc": state.best_val_acc,
        "best_epoch": state.best_epoch,
        "epoch": state.epoch,
        "stopped_early": state.stopped_early,  # at ``epoch``, by trainer.patience
        "train_time_s": state.train_time_s,
        "samples_per_s": state.samples_seen / state.train_phase_s if state.train_phase_s else math.nan,
        "params": count_parameters(trainer.model),
        "startup_s": startup_s,
        "flops_per_image": job.flops_per_image,  # forward; a training step takes about 3x (backward is 2x)
        "precision": job.config["device"]["precision"],  # bf16 or fp32, what device.precision=auto became
        "threads": torch.get_num_threads(),  # what device.threads=0 became (where resumed, the last part's)
    }
    metrics["train_gflops_per_s"] = 3 * job.flops_per_image * metrics["samples_per_s"] / 1e9
    distributed.cleanup()
    if tracker is None:
        return metrics
    tracker.final_record()
    tracker.scalars({"test/acc": test["acc"], "test/loss": test["loss"]}, state.step)
    tracker.images("train/samples", data.train.images[:64])  # here, not at the start: it imports torchvision
    figures = write_final_figures(tracker, run_dir, test_images=data.test.images, true=data.test.labels,
                                  pred=test["predictions"], class_names=data.class_names, history=state.history,
                                  step=state.step)
    params = hyperparameters(job.config)
    tracker.hparams(params, {k: metrics[k] for k in ("test/acc", "test/loss", "best_val/acc", "val/acc")}, state.step,
                    columns=None if job.in_sweep else single_run_columns(params, overrides))
    write_predictions(run_dir, test["predictions"].cpu(), data.test.labels.cpu(),  # for compare's paired test
                      job.test_fingerprint)
    tracker.flush()  # the record on disk before metrics.json says the run completed
    write_metrics(run_dir, metrics)
    tracker.close(status.value)  # after metrics.json: MLflow keeps a copy

    chosen = (f"best validation {100 * metrics['best_val/acc']:.2f}%, epoch {metrics['best_epoch']}" if len(data.val)
              else f"no validation split: the last epoch, {metrics['best_epoch']}")
    log.info("Test accuracy %.2f%% (%s), %.1f s of training", 100 * metrics["test/acc"], chosen, metrics["train_time_s"])
    log.info("Compute:     %.2f MFLOPs per image forward; training at %.1f GFLOP/s (3x forward per image)",
             job.flops_per_image / 1e6, metrics["train_gflops_per_s"])
    log.info("Metrics:     %s", run_dir / METRICS_FILE)
    log.info("Pictures:    %s", ", ".join(path.name for path in figures.values()))
    for store, command in tracker.views():
        log.info("%-13s%s", f"{store}:", command)
    return metrics


def record_failure(run_dir: Path, error: BaseException) -> None:
    """A sweep's summary and the leaderboard read the status; the error itself goes on up to Hydra."""
    if distributed.rank() != 0:
        return
    try:
        write_metrics(run_dir, {"status": Status.FAILED.value, "error": str(error) or type(error).__name__})
    except OSError as write_error:  # a full disk: the error that caused it matters more
        log.warning("The failure could not be recorded in %s: %s", run_dir / METRICS_FILE, write_error)
