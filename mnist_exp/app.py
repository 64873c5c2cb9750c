"""The training entry point: ``python -m mnist_exp [group=option ...] [key=value ...]``.

Top to bottom, as a run goes: read the command line once and check it before anything is written
(``main``), let Hydra compose the config (``hydra_main``), build the run, open it (resume, the
search's trial), fit, test and record (``train``). The pieces live in ``mnist_exp.run``; this
module only puts them in order, and returns the metric ``optimized_metric`` names to sweepers.
"""

import atexit
import errno
import logging
import multiprocessing
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from mnist_exp.errors import UserError, advised, disk_full, full_disk_error, full_traceback_asked, print_refusal
from mnist_exp.hydra_errors import hydra_errors_in_one_line, release_stderr
from mnist_exp.run import distributed
from mnist_exp.run.build import Job, build_job, config_as_run
from mnist_exp.run.commands import continue_the_sweep
from mnist_exp.run.command_line import parse_command_line, with_overrides
from mnist_exp.run.config import CLAIMED_RUN_DIRS, CONF_DIR, MADE_RUN_DIRS, register_schemas, schema_keys
from mnist_exp.run.debugging import profiled
from mnist_exp.run.options import naming_the_preset
from mnist_exp.run.prechecks import check_command_line, discard_refused_run
from mnist_exp.run.run_dir_lock import (OWN_DIR, SWEEP_DIRS, SWEEP_LOCK, WAIT, RunDirInUse, held_run_dir,
                                        job_dir_lock, run_dir_lock)
from mnist_exp.run.record import record_failure, test_and_record
from mnist_exp.run.resume import completed_run, record_stop, write_missing_run_record
from mnist_exp.run.runtime import (restarted_by_scheduler, seconds_since_process_start, select_device,
                                   stop_on_signals)
from mnist_exp.run.trainer import TrainingStopped
from mnist_exp.runs import METRICS_FILE, Status, last_checkpoint, objectives, run_status, write_metrics
from mnist_exp.sweeps.search import register_optuna_sweeper
from mnist_exp.sweeps.trial import TrialPruned, trial_callbacks

log = logging.getLogger("mnist_exp")


def main() -> None:
    """``python -m mnist_exp``, or a script of your own that registers components first, then calls this."""
    register_optuna_sweeper()
    CLAIMED_RUN_DIRS.clear()  # a command's own: a later command in this process claims and makes its own
    MADE_RUN_DIRS.clear()
    logging.raiseExceptions = False  # a log file on a full disk: no traceback per line (the error says it once)
    JOBS_STARTED.clear()
    SWEEP_DIRS.clear()
    try:
        start(sys.argv[1:])
    except KeyboardInterrupt as stop:  # Ctrl-C outside training (once it trains, the run records the stop itself)
        said = stop if isinstance(stop, StoppedBeforeTraining) else stopped_outside_a_job(sys.argv[1:])
        if full_traceback_asked() or said is None:
            raise
        print_refusal(said)
        sys.exit(128 + signal.SIGINT)


def start(args: list[str]) -> None:
    """Check the command line, then hand it to Hydra, which composes and runs each job (``hydra_main``)."""
    try:
        register_schemas()  # here, not at import: builders registered after ``import mnist_exp.app`` count too
        command = parse_command_line(args)
        check_command_line(command)
        non_writer = distributed.non_writer_overrides()  # reads torchrun's RANK, which must be a number
    except (UserError, OSError) as error:
        if full_traceback_asked() or isinstance(error, OSError) and error.errno != errno.ENAMETOOLONG:
            raise
        print_refusal(error if isinstance(error, UserError) else "A name on the command line is longer than the "
                      f"filesystem takes ({str(error.filename)[:80]}...): give a shorter one.")
        sys.exit(1)
    # A continued run keeps the .hydra/ its first start wrote: a refused resume must not rewrite it. (From a
    # ckpt_path, resume=true or not, the run is a new one in a new directory, recorded as any.)
    continued = (command.resume and not command.from_checkpoint) or restarted_by_scheduler()
    # Under torchrun, ranks other than 0 write nothing.
    sys.argv = with_overrides(sys.argv, command, [*(["hydra.output_subdir=null"] if continued else []),
                                                  *non_writer])
    try:
        with run_dir_lock(held_run_dir(command), WAIT if command.resume else OWN_DIR), SWEEP_LOCK, \
                hydra_errors_in_one_line(schema_keys):
            hydra_main()
    except RunDirInUse as error:
        print_refusal(error)
        sys.exit(1)


# The jobs of this command that began to build their run (run and sweep directory): each records a Ctrl-C from then on.
JOBS_STARTED: list[tuple[Path, Path | None]] = []
STOPPED = "Stopped by Ctrl-C before training started"


class StoppedBeforeTraining(KeyboardInterrupt):
    """Ctrl-C while a job was built; its message says what the job left."""


def stopped_outside_a_job(args: list[str]) -> str | None:
    """Ctrl-C while the command was read or composed (a single run's directory made already goes again), or while a
    sweep ran outside its jobs (between them, or in a launcher's workers); None after a single run's job, which
    recorded the run."""
    sweep_dir = next((sweep for _, sweep in reversed(JOBS_STARTED) if sweep), None) or next(iter(SWEEP_DIRS), None)
    if sweep_dir is not None and (sweep_dir / "multirun.yaml").exists():
        return f"Stopped by Ctrl-C: {continue_the_sweep(sweep_dir)}"
    if JOBS_STARTED:
        return None
    if SWEEP_DIRS or multirun(args):
        return f"{STOPPED}: the sweep trained no job. Run the command again to start it."
    for run_dir in list(MADE_RUN_DIRS):
        discard_refused_run(run_dir)
    return f"{STOPPED}: nothing was written."


def multirun(args: list[str]) -> bool:
    """Whether the command is a sweep, as far as it could be read (a Ctrl-C may come while it is)."""
    try:
        return parse_command_line(args).multirun
    except Exception:
        return any(arg in ("-m", "--multirun") for arg in args)


def cli() -> None:
    """``python -m mnist_exp`` and ``mnist-exp``: ``main``, then an exit that skips tearing the interpreter down.

    Finalising torch's modules takes about a second, longer than a fast run's test. Taken only where the process
    is alone (no child process, such as a joblib worker, no thread but daemons), and after everything is finished:
    the atexit handlers run, the logs and the standard streams are flushed and closed. Otherwise, and for an error
    that escapes (a traceback, HYDRA_FULL_ERROR=1), the process exits the usual way.
    """
    try:
        main()
        code = 0
    except SystemExit as stop:
        code = stop.code
    alone = not multiprocessing.active_children() and all(t.daemon for t in threading.enumerate()
                                                          if t is not threading.main_thread())
    if not alone:
        sys.exit(code)
    if not isinstance(code, (int, type(None))):
        print(code, file=sys.stderr)  # as sys.exit prints a message
    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> float | tuple[float, ...]:
    single_run = HydraConfig.get().mode == RunMode.RUN
    if single_run:
        release_stderr()  # composed: from here on the run's own output (its progress bar) goes out as it comes
    try:
        with job_dir_lock(Path(HydraConfig.get().runtime.output_dir)):
            metrics = train(cfg)
    except UserError as error:
        if not single_run or full_traceback_asked():
            raise  # in a sweep the other jobs still run; the sweep's exit says one failed
        print_refusal(error)
        sys.exit(1)
    if metrics["status"] == Status.PRUNED:
        raise TrialPruned(f"pruned by the search after epoch {metrics['epoch']}")  # the sweeper tells Optuna so
    values = tuple(metrics[key] for key in objectives(cfg.optimized_metric))
    return values[0] if isinstance(cfg.optimized_metric, str) else values


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train, test and record one run; returns its metrics (also in ``metrics.json``)."""
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    sweep_dir = Path(hydra_cfg.sweep.dir) if in_sweep else None
    search = hydra_cfg.runtime.choices.get("hparams_search")
    if search and not in_sweep:  # a search's best trial reruns so; a forgotten -m would search nothing
        log.warning("hparams_search=%s without -m trains one run with its settings; to search, add -m: "
                    "%s", search, advised(f"-m hparams_search={search} ..."))
    JOBS_STARTED.append((run_dir, sweep_dir))
    try:
        if in_sweep and cfg.resume or restarted_by_scheduler():  # Hydra wrote no .hydra/ for it (start())
            write_missing_run_record(run_dir, cfg, hydra_cfg)
        if cfg.resume and not cfg.ckpt_path or restarted_by_scheduler():  # a completed run is returned as it is
            config = config_as_run(cfg, select_device(cfg.device.name.value))  # as its last.pt holds it
            recorded = completed_run(run_dir, config, overrides, in_sweep)
            if recorded:
                return recorded
        job = build_job(cfg, run_dir, in_sweep, overrides, sweep_dir)
        if job.tracker is not None:  # last: the epoch is tracked and in last.pt before a pruner stops it there
            job.trainer.callbacks += trial_callbacks(hydra_cfg, cfg.optimized_metric)
    except KeyboardInterrupt as error:
        raise StoppedBeforeTraining(stop_before_training(run_dir, sweep_dir)) from error
    except BaseException as error:
        if isinstance(error, UserError):
            error.args = (naming_the_preset(str(error), overrides, hydra_cfg.runtime.choices),)
        # Refused before training: a run's existing record stays as it is (a changed config on resume, say); a new
        # single run refused by a builder leaves no directory, any other refusal or error is recorded as failed.
        if not (run_dir / METRICS_FILE).exists():  # a record it cannot read is refused, and kept as it is
            refused = isinstance(error, UserError) and not in_sweep and distributed.rank() == 0
            if not (refused and discard_refused_run(run_dir)):
                record_failure(run_dir, error)
        raise
    try:
        return fit_and_test(job, overrides, sweep_dir)
    except SystemExit:  # stopped by a signal: metrics.json already says how to resume
        close_trackers(job, Status.STOPPED)
        raise
    except KeyboardInterrupt:  # Ctrl-C twice, or in the test: a stop as the first's, continued from last.pt
        if run_status(job.run_dir) == Status.COMPLETED:  # after the run's record: complete, and so it stays
            close_trackers(job, Status.COMPLETED)
            raise SystemExit(128 + signal.SIGINT) from None
        close_trackers(job, Status.STOPPED)
        record_stop(job.trainer.state, job.run_dir, overrides, signal.SIGINT,
                    job.tracker is not None and last_checkpoint(job.run_dir).exists(), sweep_dir)
    except BaseException as error:
        if run_status(job.run_dir) != Status.COMPLETED:  # an error after the run's record leaves the record
            record_failure(job.run_dir, error)
        close_trackers(job, Status.FAILED)
        if disk_full(error):  # the event file, the log or a checkpoint: one line, whichever hit it first
            raise full_disk_error(job.run_dir, "the run stopped; its last checkpoint is kept") from None
        raise


def stop_before_training(run_dir: Path, sweep_dir: Path | None) -> str:
    """What a job stopped while it was built leaves, and the line that says so. A record there (a resumed run's) stays
    as it is; a single run's directory this command made goes; a sweep's job is recorded as stopped, for the sweep's
    resume to train it from the start."""
    if (run_dir / METRICS_FILE).exists() or distributed.rank() > 0:
        return f"{STOPPED}: the run in {run_dir} is as it was; run the command again to continue it."
    if sweep_dir is None:
        if discard_refused_run(run_dir):
            return f"{STOPPED}: nothing was written."
        return (f"{STOPPED}: {run_dir} holds this start's config and log, and no record; run the command again to "
                "train it.")
    write_metrics(run_dir, {"status": Status.STOPPED.value, "epoch": 0, "step": 0, "resume": None})
    return f"{STOPPED} in the job {run_dir.name}, recorded as stopped: {continue_the_sweep(sweep_dir)}"


def close_trackers(job: Job, status: Status) -> None:
    """A run that did not get to its record: its trackers end with its status (MLflow: KILLED or FAILED)."""
    if job.tracker is not None:
        try:
            job.tracker.close(status.value)
        except Exception as error:  # a full disk, say: the run's own error matters more
            log.warning("The trackers could not be closed: %s", error)


def fit_and_test(job: Job, overrides: list[str], sweep_dir: Path | None = None) -> dict[str, Any]:
    """Fit until the last epoch, a stop signal (recorded, then exit) or the search's pruner; then test and record."""
    startup_s = seconds_since_process_start()  # imports, config, data, model: all before the first batch
    if startup_s is not None:
        log.info("First batch %.2f s after the process started", startup_s)
    trainer, stop_signal, status = job.trainer, None, Status.COMPLETED
    with stop_on_signals(trainer.request_stop) as signals, profiled(job.cfg.trainer.profile, job.run_dir):
        try:
            trainer.fit(job.loaders["train"], job.loaders["val"])
        except TrainingStopped:
            stop_signal = signals[0]
        except TrialPruned:  # stopped at an epoch's end by an Optuna search: tested and recorded as pruned
            status = Status.PRUNED
    if stop_signal is not None:  # outside the with: the handlers from before are back
        record_stop(trainer.state, job.run_dir, overrides, stop_signal,
                    job.cfg.trainer.checkpoint and job.tracker is not None, sweep_dir)
    return test_and_record(job, status, overrides, startup_s)
