"""Continuing a run: which checkpoint to continue from, restoring it, and the record a stopped run leaves.

A run continues from ``checkpoints/last.pt`` when asked (``resume=true``, or ``ckpt_path=``) and,
inside a submitit job that was preempted or reached its time limit, by itself (the job is
requeued into the same directory). The checkpoint's config must be the run's own, except for the
keys that say where or how a run goes (``RESUME_MAY_CHANGE``).

A sweep continues with ``-m <the same sweep> resume=true hydra.sweep.dir=<that sweep>``: each job
whose run completed with the same config returns its recorded metrics untouched, an interrupted
job continues from its last.pt, a failed or missing one runs fresh. ``hydra.output_subdir=null``
keeps Hydra from rewriting the jobs' ``.hydra/``; a job that has none gets it written here.
"""

import json
import logging
import shlex
import signal
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf

from mnist_exp.run import distributed
from mnist_exp.run.callbacks import CheckpointCallback
from mnist_exp.run.checkpoint import UnreadableCheckpoint, load_checkpoint
from mnist_exp.run.commands import continue_the_sweep, resume_command, sweep_resume_command
from mnist_exp.run.recorded_config import load_recorded_config, read_resumes
from mnist_exp.run.config import with_builder_defaults
from mnist_exp.errors import UserError
from mnist_exp.paths import outputs_dir
from mnist_exp.runs import (BEST_CHECKPOINT, PRECISION, RESUME_MAY_CHANGE, Status, UnreadableMetrics, as_override,
                            atomic_file, flatten_config, last_checkpoint, of_another_run, read_metrics, run_status,
                            says_where_or_how, without_resume, write_metrics)
from mnist_exp.run.runtime import is_submitit_preemption, restarted_by_scheduler

log = logging.getLogger("mnist_exp")


def checkpoint_to_resume(ckpt_path: str | None, resume: bool, run_dir: Path, in_sweep: bool = False) -> Path | None:
    """The checkpoint this run continues from, or None for a fresh run."""
    last = last_checkpoint(run_dir)
    if requeued(run_dir):  # its own last.pt, also where its command names the checkpoint it began from
        log.info("A requeued job: continuing the run in %s", run_dir)
        return last
    if ckpt_path:  # a run directory means the checkpoint it continues from
        return last_checkpoint(ckpt_path) if Path(ckpt_path).is_dir() else Path(ckpt_path)
    if resume and in_sweep and (not last.exists() or run_status(run_dir) == Status.FAILED):
        log.info("Resumed sweep: the job in %s has %s, so it runs from the start", run_dir,
                 "failed" if last.exists() else "no checkpoint")
        return None
    if resume and not last.exists():
        raise nothing_to_resume(run_dir)
    return last if resume else None


def nothing_to_resume(run_dir: Path) -> UserError:
    if (run_dir / ".hydra").is_dir():  # the run, stopped before it wrote one
        return UserError(f"resume=true, but the run in {run_dir} has no checkpoints/last.pt to continue from (it "
                         "ended before its first, or ran with trainer.checkpoint=false). Start it afresh: its command "
                         "without resume=true, with a new hydra.run.dir (or leave it out).")
    return UserError(f"resume=true, but {last_checkpoint(run_dir)} does not exist. Point hydra.run.dir at the run to "
                     f"continue (hydra.run.dir={outputs_dir()}/runs/<date>/<time>...) or give ckpt_path=<checkpoint>.")


def completed_run(run_dir: Path, config: dict, overrides: list[str], in_sweep: bool) -> dict | None:
    """The recorded metrics of a completed run with this config, else None: resume=true, or a job its scheduler
    started again after it had completed (requeued as it ended, a node lost after the run), trains nothing.

    The config is last.pt's; a run without checkpoints (trainer.checkpoint=false) has its .hydra/config.yaml, else
    its overrides. A completed run of another config is refused, as a checkpoint of another config is.
    """
    try:
        recorded = read_metrics(run_dir, strict=True)
    except UnreadableMetrics as error:  # edited by hand, or another program's: not the run's record to write over
        raise UserError(f"{error}: it is not the record this run wrote. Put it back as the run wrote it, or move it "
                        "away to continue the run from its checkpoint.") from None
    if recorded.get("status") != Status.COMPLETED:
        return None
    last, record, trained = last_checkpoint(run_dir), recorded_config(run_dir), None
    try:
        trained = load_checkpoint(last)["config"] if last.exists() else None
    except UnreadableCheckpoint:  # a completed run is shown from its record; its weights are best.pt's
        if record is None:
            raise
        log.warning("%s is unreadable: the run's .hydra/config.yaml says what it trained", last)
    if trained is not None:
        refuse_another_config(last, trained, config, in_sweep)
    elif record is not None:  # its values, however they were written (trainer.checkpoint=no is false)
        refuse_another_config(Path(run_dir) / ".hydra" / "config.yaml", record, config, in_sweep)
    elif (ran := read_run_overrides(run_dir)) is None:
        raise UserError(f"{run_dir} holds a completed run whose .hydra/config.yaml and overrides.yaml cannot be read, "
                        "so nothing says what it trained: start fresh elsewhere (leave out hydra.run.dir).")
    elif set(ran) != set(without_resume(overrides)):
        raise UserError(f"{run_dir} holds a completed run of other overrides than {without_resume(overrides)}. "
                        "Resume with the run's own overrides (see its .hydra/overrides.yaml).")
    log.info("The run in %s is complete (test accuracy %.2f%%): nothing to resume, nothing changed.%s", run_dir,
             100 * recorded["test/acc"], " Its recorded metrics go to the sweeper." if in_sweep else "")
    return recorded


def recorded_config(run_dir: Path) -> dict | None:
    """The run's .hydra/config.yaml, resolved as the run resolved it; None where it has none this process can read."""
    try:
        return load_recorded_config(run_dir)
    except Exception:  # none, not YAML, or an interpolation only its own run could resolve
        return None


def read_run_overrides(run_dir: Path) -> list[str] | None:
    """The run's .hydra/overrides.yaml ([] where it has none); None where the file is not a list of overrides."""
    path = Path(run_dir) / ".hydra" / "overrides.yaml"
    try:
        overrides = OmegaConf.load(path) if path.exists() else []
    except Exception:  # not text, not YAML
        return None
    return [str(o) for o in overrides] if isinstance(overrides, (list, ListConfig)) else None


def write_missing_run_record(run_dir: Path, cfg: DictConfig, hydra_cfg: DictConfig) -> None:
    """A job Hydra wrote no ``.hydra/`` for, to keep an earlier start's (``app.start``), gets the one its first start
    would have written where it has none: a resumed sweep's job that never started, a scheduler's job on its first."""
    record = Path(run_dir) / ".hydra"
    if (record / "config.yaml").exists() or distributed.rank() > 0:
        return
    hydra_node = OmegaConf.create({"hydra": OmegaConf.merge(hydra_cfg, {"output_subdir": ".hydra"})})
    overrides = OmegaConf.create(without_resume(list(hydra_cfg.overrides.task)))
    for name, node in (("hydra.yaml", hydra_node), ("overrides.yaml", overrides),
                       ("config.yaml", OmegaConf.merge(cfg, {"resume": False}))):
        with atomic_file(record / name, "w") as f:  # config.yaml last: there, it says the record is whole
            f.write(OmegaConf.to_yaml(node))


def requeued(run_dir: Path) -> bool:
    """A job the scheduler started again (preempted, at its time limit, requeued) finds its own unfinished run."""
    return (restarted_by_scheduler() and last_checkpoint(run_dir).exists()
            and run_status(run_dir) not in (Status.COMPLETED, Status.FAILED))


def load_resumable(path: Path, config: dict, in_sweep: bool = False) -> dict:
    """The checkpoint at ``path``, refused unless it is a last.pt of this config: checked before anything is built."""
    if not Path(path).exists():
        raise UserError(f"ckpt_path={path}: there is no such file. Give a run's checkpoints/last.pt, or its directory.")
    try:
        checkpoint = load_checkpoint(path)
    except UnreadableCheckpoint:
        best = Path(path).with_name(BEST_CHECKPOINT)
        start = f", or from its best weights: init_from={best}" if best.is_file() and path != best else ""
        raise UserError(f"Checkpoint {path} is unreadable: it is truncated or corrupt, and a run continues only from "
                        f"its last.pt. Start a new run (without resume=true or ckpt_path, in a new directory)"
                        f"{start}.") from None
    if checkpoint["kind"] != "last":
        raise UserError(f"{path} is a {checkpoint['kind']}.pt: it holds the weights, not the training state. "
                        f"Continue from the run's checkpoints/last.pt.")
    refuse_another_config(path, checkpoint["config"], config, in_sweep)
    return checkpoint


def check_same_data(path: Path, checkpoint: dict, now: dict) -> None:
    """A run continues on the images it started on; a dataset's files (a folder, a CSV) may have changed since."""
    changed = [f"{before} {split} images, now {now['split_sizes'][split]}"
               for split, before in checkpoint.get("split_sizes", {}).items() if before != now["split_sizes"][split]]
    changed = changed or [f"other {split} images" for split, before in checkpoint.get("fingerprints", {}).items()
                          if before != now["fingerprints"][split]]
    if changed:
        raise UserError(f"Checkpoint {path} was trained on other data than the dataset gives now ({', '.join(changed)})"
                        ": continued, the run would train and be tested on other images. Put the data back as it was, "
                        "or start a new run (without resume=true or ckpt_path).")


def restore(trainer, checkpoint: dict, checkpoints: CheckpointCallback | None) -> None:
    """Continue ``trainer`` from a checkpoint of ``load_resumable``.

    Then best.pt is made to agree with last.pt's best epoch: a kill between the two writes of an epoch can leave it
    one best behind or ahead, or another run's may have been put there; last.pt carries the best weights, so they win.
    """
    trainer.load_state_dict(checkpoint["trainer"])
    state = trainer.state
    if checkpoints is not None and trainer.best_weights is not None:
        best = best_held(checkpoints.directory / BEST_CHECKPOINT)
        own = best is not None and not of_another_run(best, checkpoints.metadata["run_id"])
        if not own or best["epoch"] != state.best_epoch:
            held = ("best.pt is missing or unreadable" if best is None else "best.pt is another run's" if not own
                    else f"best.pt holds epoch {best['epoch']}")
            log.info("%s, last.pt's best is epoch %d: best.pt written from last.pt", held, state.best_epoch)
            checkpoints.save_best(trainer.best_weights, state.best_epoch)


UNKNOWN = object()  # a key the saved config lacks and no builder defines


def refuse_another_config(path: Path, saved: dict, config: dict, in_sweep: bool = False) -> None:
    """Refuse a checkpoint of another config, saying how to resume it as it ran.

    The run's own overrides give back its config unless the config files changed since; then, and where the
    user's overrides differ in a few keys, the advice also names the value each changed key had. A sweep's
    overrides name its jobs' directories, so there such a value makes new jobs, and the advice says so.
    """
    before, after = flatten_config(with_builder_defaults(saved)), flatten_config(config)
    if before.get(PRECISION) == "auto":  # written before a run recorded what auto became: not known
        before[PRECISION] = after.get(PRECISION)
    cut = after.get("trainer.limit_batches") is not None  # then trainer.eval_batch_size cuts the val and test splits
    changed = sorted(key for key in before.keys() | after.keys() if before.get(key, UNKNOWN) != after.get(key)
                     and (not says_where_or_how(key) or cut and key == "trainer.eval_batch_size"))
    if not changed:
        return
    # Name the biggest difference first: a different model explains its other keys.
    changed.sort(key=lambda key: key not in ("model.name", "dataset.name"))
    shown = "; ".join(f"{key}: {shown_value(before.get(key, UNKNOWN))} -> {shown_value(after.get(key))}"
                      for key in changed[:4])
    advice = ("Resume with the sweep's own overrides (see its multirun.yaml)" if in_sweep
              else "Resume with the run's own overrides (see its .hydra/overrides.yaml)")
    # Set back on the command line: a key with a known value there and a place here, that chooses no group option.
    if len(changed) <= 4 and all(key in before and key in after and not key.endswith(".name") for key in changed):
        restore = shlex.join(as_override(key, before[key]) for key in changed)
        advice += (f". Where those are yours, the config files have changed since it ran: with {restore} added the "
                   "sweep runs its jobs again as they ran, each in a new directory named with it" if in_sweep
                   else f" and {restore}")
    what = "Checkpoint" if Path(path).suffix == ".pt" else "The run of"
    raise UserError(f"{what} {path} was trained with a different config ({shown}). {advice}.")


RESUMES_FILE = "resumes.yaml"  # in the run's .hydra/: what each resume ran with that its first start did not


def record_resume_changes(run_dir: Path, saved: dict, config: dict, epoch: int, step: int) -> None:
    """A resume may change where or how the run goes (``RESUME_MAY_CHANGE``); .hydra/config.yaml keeps the first
    start's config, so each change is logged and added to .hydra/resumes.yaml, with the last epoch completed before
    it and the step it took effect after (a stop within an epoch resumes there)."""
    # The loggers as the list they are chosen by: one without keys (csv) leaves no key of its own.
    before, after = ({**flatten_config(c), "logger": list(c.get("logger") or {})} for c in (saved, config))
    changed = {key: [before.get(key), after.get(key)] for key in sorted(before.keys() | after.keys())
               if key.startswith(RESUME_MAY_CHANGE) and key not in ("resume", "ckpt_path")
               and before.get(key) != after.get(key)}
    if not changed:
        return
    log.info("Resumed with other settings than before: %s",
             "; ".join(f"{key}: {shown_value(old)} -> {shown_value(new)}" for key, (old, new) in changed.items()))
    record = Path(run_dir) / ".hydra" / RESUMES_FILE
    earlier = read_resumes(record)
    with atomic_file(record, "w") as f:  # a kill in the write leaves the earlier record whole
        f.write(OmegaConf.to_yaml(earlier + [{"after_epoch": epoch, "after_step": step, "changed": changed}]))


def shown_value(value: Any) -> str:
    """A value as the config shows it (true, null), or that the saved config lacks the key."""
    if value is UNKNOWN:
        return "(not in that config)"
    if isinstance(value, list):
        return f"[{','.join(shown_value(item) for item in value)}]"
    return json.dumps(value) if value is None or isinstance(value, bool) else str(value)


def best_held(path: Path) -> dict | None:
    """A best.pt; None where it is missing or unreadable (it is then written anew)."""
    try:
        return load_checkpoint(path) if path.exists() else None
    except UserError:
        return None


def record_stop(state, run_dir: Path, overrides: list[str], signum: int, checkpointed: bool,
                sweep_dir: Path | None = None) -> None:
    """Record a run stopped by a signal and how to resume it, then exit with 128 + the signal's number.

    A submitit job at its time limit goes on to submitit's own handler instead: it calls the launcher's
    checkpoint hook and requeues the job, which then continues from last.pt. A SLURM job stopped by
    SIGTERM (``scontrol requeue``, preemption) exits at once: SLURM requeues it where it is set to.
    """
    if distributed.rank() > 0:  # rank 0 records the stop
        raise SystemExit(128 + signum)
    command = resume_command(run_dir, overrides)
    where = f"epoch {state.epoch + 1}, batch {state.batch_in_epoch}"
    sweeper = HydraConfig.get().sweeper if sweep_dir is not None else {}
    searched = sweeper.get("trial") is not None  # a search's trial: the search trains it again, not a resume
    write_metrics(run_dir, {"status": Status.STOPPED.value, "epoch": state.epoch, "step": state.step,
                            "resume": command if checkpointed and not searched else None})
    name = signal.Signals(signum).name
    submitit_handler = signal.getsignal(signum)
    if checkpointed and is_submitit_preemption(signum) and callable(submitit_handler):
        log.warning("Stopped by %s in %s, ahead of the time limit; checkpoints/last.pt written. submitit requeues "
                    "the job, which continues from it.", name, where)
        submitit_handler(signum, None)  # requeues and exits; returns only where it declines (not rank 0)
    elif checkpointed and restarted_by_scheduler():
        log.warning("Stopped by %s in %s; checkpoints/last.pt written. Where the scheduler requeues the job, it "
                    "continues from there; otherwise resume with: %s", name, where, command)
    elif searched:
        grid = str(sweeper.get("sampler", {}).get("_target_")).endswith("GridSampler")  # a failed point stays so
        log.warning("Stopped by %s in %s. %s: %s", name, where, "The study keeps this grid point as failed" if grid
                    else "The study queues this trial's settings to train again", continue_the_sweep(sweep_dir))
    elif checkpointed and sweep_dir is not None and (sweep_command := sweep_resume_command(sweep_dir)):
        log.warning("Stopped by %s in %s; checkpoints/last.pt written. Resume the sweep with: %s", name, where,
                    sweep_command)
    elif checkpointed:
        log.warning("Stopped by %s in %s; checkpoints/last.pt written. Resume with: %s", name, where, command)
    else:
        log.warning("Stopped by %s in %s, with no checkpoints/last.pt to resume from (trainer.checkpoint=false, or "
                    "stopped before the first).", name, where)
    # SystemExit, not an error: in a sweep it ends the whole sweep, as a signal should.
    raise SystemExit(128 + signum)
