"""A continued run's ``.hydra/`` record against its checkpoint: ``config.yaml``, which compare and the tools read, says
what the run trains, and ``run_id`` that the checkpoint is the run's own; or the resume is refused with what differs."""

import uuid
from pathlib import Path

from omegaconf import OmegaConf

from mnist_exp.errors import UserError, first_line
from mnist_exp.run.commands import CONTINUED, run_command
from mnist_exp.runs import (RUN_ID_FILE, as_override, atomic_file, flatten_config, of_another_run, recorded_run_id,
                            says_where_or_how, without_keys)


def load_recorded_config(run_dir: Path) -> dict:
    """The run's .hydra/config.yaml, resolved as the run resolved it; raises where it cannot be read."""
    return OmegaConf.to_container(OmegaConf.load(Path(run_dir) / ".hydra" / "config.yaml"), resolve=True)


def check_recorded_config(run_dir: Path, trained: dict, rewrite: str) -> None:
    """``trained``: the config of the run's last.pt; ``rewrite``: the command that prints the record as the run
    wrote it (``--cfg job``). Where and how a run goes may change on resume (device.*, loggers): not compared."""
    record = Path(run_dir) / ".hydra" / "config.yaml"
    if not record.exists():
        return
    try:
        recorded = flatten_config(load_recorded_config(run_dir))
    except Exception as error:  # garbled YAML, or an interpolation that no longer resolves
        raise UserError(f"{record} is unreadable ({first_line(error)}): it is the run's record of what it trains. "
                        f"Write it again, {rewrite} > {record}, then resume.") from None
    saved = flatten_config(trained)
    # device.precision too: the record keeps "auto", last.pt what it became.
    changed = [key for key in sorted(recorded.keys() | saved.keys()) if not key.startswith("device.")
               and not says_where_or_how(key) and recorded.get(key) != saved.get(key)]
    if changed:
        shown = ", ".join(f"{key}={recorded.get(key)} there, {saved.get(key)} in last.pt" for key in changed[:3])
        raise UserError(f"{record} was changed since the run wrote it ({shown}): the run trains what its checkpoint "
                        f"holds. Write the record back, {rewrite} > {record}, or start a new run with the new values.")


def run_identity(run_dir: Path, continued: Path | None, checkpoint: dict | None, overrides: list[str]) -> str:
    """The run's id: a new one for a run that starts; a run continued in place (``continued``: its last.pt) keeps its
    own, and a last.pt of another run put there (of the same config, or the config check would have refused it) is
    refused, with the command that continues it into a new run directory instead."""
    if continued is None:
        return uuid.uuid4().hex
    ours, theirs = recorded_run_id(run_dir), checkpoint.get("run_id")
    if of_another_run(checkpoint, ours):
        elsewhere = run_command([*without_keys(overrides, CONTINUED), as_override("ckpt_path", str(continued))])
        raise UserError(f"{continued} is another run's last.pt (run {theirs}; the run in {run_dir} is {ours}): put "
                        f"the run's own back, or continue that one in a new run directory: {elsewhere}")
    return theirs or ours or uuid.uuid4().hex  # a run from before run ids gets one now


def record_run_identity(run_dir: Path, run_id: str) -> None:
    if recorded_run_id(run_dir) != run_id:
        with atomic_file(Path(run_dir) / RUN_ID_FILE, "w") as f:
            f.write(run_id + "\n")


RESUME_ENTRY = {"after_epoch", "after_step", "changed"}  # the keys of each entry in .hydra/resumes.yaml


def read_resumes(record: Path) -> list[dict]:
    """The run's .hydra/resumes.yaml ([] where it has none); one not of the form a resume writes is refused, not added
    to as if it were whole."""
    try:
        earlier = OmegaConf.to_container(OmegaConf.load(record)) if record.exists() else []
    except Exception as error:  # not text, not YAML (cut inside a value)
        earlier = first_line(error)
    if isinstance(earlier, list) and all(isinstance(entry, dict) and set(entry) == RESUME_ENTRY for entry in earlier):
        return earlier
    said = earlier if isinstance(earlier, str) else "not a list of resumes, each with after_epoch, after_step, changed"
    raise UserError(f"{record} is unreadable ({said}): it is the run's record of what its resumes changed. Put it back "
                    "as the run wrote it, or move it away, then resume.")
