"""Continuing a run: which checkpoint to continue from, restoring it, and the record a stopped run leaves.

A run continues from ``checkpoints/last.pt`` when asked (``resume=true``, or ``ckpt_path=``) and,
inside a submitit job that was preempted or reached its time limit, by itself (the job is
requeued into the same directory). The checkpoint's config must be the run's own, except for the
keys that say where or how a run goes (``RESUME_MAY_CHANGE``).
"""

import logging
import os
import shlex
import signal
from pathlib import Path

from mnist_exp import distributed
from mnist_exp.callbacks import CheckpointCallback
from mnist_exp.checkpoint import load_checkpoint
from mnist_exp.errors import UserError
from mnist_exp.run_dir import BEST_CHECKPOINT, last_checkpoint, read_metrics, write_metrics
from mnist_exp.runtime import is_submitit_preemption
from mnist_exp.tracking import flatten_config

log = logging.getLogger("mnist_exp")

# Config keys that say where or how a run goes, not what it trains: a resumed run may change them.
RESUME_MAY_CHANGE = ("resume", "ckpt_path", "dataset.data_dir", "device.", "trainer.progress",
                     "trainer.log_interval", "trainer.compile", "trainer.eval_batch_size", "optimized_metric")


def checkpoint_to_resume(ckpt_path: str | None, resume: bool, run_dir: Path) -> Path | None:
    """The checkpoint this run continues from, or None for a fresh run."""
    if ckpt_path:
        return Path(ckpt_path)
    last = last_checkpoint(run_dir)
    if requeued(run_dir):
        log.info("A requeued job: continuing the run in %s", run_dir)
        return last
    if resume:
        if not last.exists():
            raise UserError(f"resume=true, but {last} does not exist. Point hydra.run.dir at the run to continue "
                            "(hydra.run.dir=outputs/runs/<date>/<time>...) or give ckpt_path=<checkpoint>.")
        return last
    return None


def requeued(run_dir: Path) -> bool:
    """A submitit job restarted after preemption or its time limit finds its own unfinished run in its directory."""
    return (bool(os.environ.get("SUBMITIT_EXECUTOR")) and last_checkpoint(run_dir).exists()
            and read_metrics(run_dir).get("status") not in ("completed", "failed"))


def restore(trainer, path: Path, config: dict, checkpoints: CheckpointCallback | None) -> None:
    """Continue ``trainer`` from the checkpoint at ``path``, refusing one trained with another config.

    Then best.pt is made to agree with last.pt's best epoch: a kill between the two writes of an
    epoch can leave it one best behind or ahead; last.pt carries the best weights, so they win.
    """
    checkpoint = load_checkpoint(path)
    if checkpoint["kind"] != "last":
        raise UserError(f"{path} is a {checkpoint['kind']}.pt: it holds the weights, not the training state. "
                        f"Continue from the run's checkpoints/last.pt.")
    changed = changed_keys(checkpoint["config"], config)
    # Name the biggest difference first: a different model explains its other keys.
    changed.sort(key=lambda change: not change.startswith(("model.name:", "dataset.name:")))
    if changed:
        raise UserError(f"Checkpoint {path} was trained with a different config ({'; '.join(changed[:4])}). "
                        "Resume with the run's own overrides (see its .hydra/overrides.yaml).")
    trainer.load_state_dict(checkpoint["trainer"])
    state = trainer.state
    if checkpoints is not None and trainer.best_weights is not None:
        best = checkpoints.directory / BEST_CHECKPOINT
        best_epoch = best_epoch_of(best)
        if best_epoch != state.best_epoch:
            log.info("best.pt holds epoch %s, last.pt's best is epoch %d: best.pt rewritten from last.pt",
                     best_epoch, state.best_epoch)
            checkpoints.save_best(trainer.best_weights, state.best_epoch)


def best_epoch_of(path: Path) -> int | None:
    """The epoch a best.pt holds; None where it is missing or unreadable (it is then written anew)."""
    try:
        return load_checkpoint(path)["epoch"] if path.exists() else None
    except UserError:
        return None


def changed_keys(saved: dict, current: dict) -> list[str]:
    """'model.width: 16 -> 32' for each setting that changes what is trained."""
    before, after = flatten_config(saved), flatten_config(current)
    return [f"{key}: {before.get(key)} -> {after.get(key)}" for key in sorted(before.keys() | after.keys())
            if before.get(key) != after.get(key) and not key.startswith(RESUME_MAY_CHANGE)]


def resume_command(run_dir: Path, overrides: list[str]) -> str:
    """The shell command that continues the run, quoted where the shell needs it."""
    kept = [o for o in overrides if not o.lstrip("+~").startswith(("resume=", "ckpt_path=", "hydra.run.dir="))]
    program = (["torchrun", f"--nproc_per_node={distributed.world_size()}", "-m", "mnist_exp"]
               if distributed.is_distributed() else ["python", "-m", "mnist_exp"])
    return shlex.join([*program, *kept, "resume=true", f"hydra.run.dir={run_dir}"])


def record_stop(state, run_dir: Path, overrides: list[str], signum: int, checkpointed: bool) -> None:
    """Record a run stopped by a signal and how to resume it, then exit with 128 + the signal's number.

    A submitit job preempted (or at its time limit) goes on to submitit's own handler instead: it
    calls the launcher's checkpoint hook and requeues the job, which then continues from last.pt.
    """
    if distributed.rank() > 0:  # rank 0 records the stop
        raise SystemExit(128 + signum)
    command = resume_command(run_dir, overrides)
    where = f"epoch {state.epoch + 1}, batch {state.batch_in_epoch}"
    write_metrics(run_dir, {"status": "stopped", "epoch": state.epoch, "step": state.step, "resume": command})
    name = signal.Signals(signum).name
    submitit_handler = signal.getsignal(signum)
    if checkpointed and is_submitit_preemption(signum) and callable(submitit_handler):
        log.warning("Preempted (%s) in %s; checkpoints/last.pt written. submitit requeues the job, which "
                    "continues from it.", name, where)
        submitit_handler(signum, None)  # requeues and exits; returns only where it declines (not rank 0)
    elif checkpointed:
        log.warning("Stopped by %s in %s; checkpoints/last.pt written. Resume with: %s", name, where, command)
    else:
        log.warning("Stopped by %s in %s (trainer.checkpoint=false: nothing to resume from).", name, where)
    # SystemExit, not an error: in a sweep it ends the whole sweep, as a signal should.
    raise SystemExit(128 + signum)
