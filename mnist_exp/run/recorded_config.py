"""A continued run's ``.hydra/config.yaml`` against its checkpoint: the record that compare and the tools read says
what the run trains, or the resume is refused with what differs."""

from pathlib import Path

from omegaconf import OmegaConf

from mnist_exp.errors import UserError, first_line
from mnist_exp.runs import flatten_config, says_where_or_how


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
