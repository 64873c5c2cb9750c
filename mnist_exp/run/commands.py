"""The commands a run records and prints for its user to type again: the one that ran it, the one that prints its
config, the one that resumes it, the one that resumes its sweep.
Each starts as this process was started (``python -m mnist_exp``, a user's own script, torchrun), with the
``--config-dir``, ``--config-name`` and ``hydra.searchpath`` Hydra was given."""

import shlex
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from mnist_exp.errors import entry_point
from mnist_exp.run import distributed
from mnist_exp.runs import as_override, split_override, without_keys


CONTINUED = ("resume", "ckpt_path", "hydra.run.dir")  # how a run goes on, not how it began


def this_hydra(hydra=None):
    """``hydra``, else the running job's Hydra config (None outside one)."""
    return hydra if hydra is not None else HydraConfig.get() if HydraConfig.initialized() else None


def program(hydra=None) -> list[str]:
    """How this process was started, as a user types it: ``python -m mnist_exp`` or their own script (which registers
    their builders), under torchrun where it runs there; with the ``--config-dir`` and ``--config-name`` given.
    ``hydra``: the Hydra config to read them from, where it is not yet the running job's (a sweeper's setup)."""
    started = (["torchrun", f"--nproc_per_node={distributed.world_size()}"] if distributed.is_distributed()
               else ["python"])
    hydra = this_hydra(hydra)
    config_dir = next((["--config-dir", str(Path(source.path).absolute())] for source in
                       (hydra.runtime.config_sources if hydra else []) if source.provider == "command-line"), [])
    config_name = ["--config-name", hydra.job.config_name] if hydra and hydra.job.config_name != "config" else []
    return [*started, *entry_point(), *config_dir, *config_name]


def searchpath(hydra=None) -> list[str]:
    """The ``hydra.searchpath`` override this process was given, if any, its folders made absolute as --config-dir's
    are: the configs found there (a user's ``experiment=mine``) compose only with it. An override: it goes after a
    flag such as ``-m``."""
    hydra = this_hydra(hydra)
    given = OmegaConf.to_container(hydra.overrides.hydra, resolve=False) if hydra else []  # as typed: ${...} too
    if not any(split_override(text)[0] == "hydra.searchpath" for text in given):
        return []
    return [as_override("hydra.searchpath", [f"file://{Path(entry.removeprefix('file://')).absolute()}"
                                             if entry.startswith("file://") else entry for entry in hydra.searchpath])]


def run_command(overrides: list[str]) -> str:
    """The shell command that runs this job as it was started, with its overrides: what trackers record."""
    return shlex.join([*program(), *searchpath(), *overrides])


def config_command(overrides: list[str]) -> str:
    """The shell command that prints the run's config as its first start recorded it in .hydra/config.yaml."""
    return f"{run_command(without_keys(overrides, CONTINUED))} --cfg job"


def resume_command(run_dir: Path, overrides: list[str]) -> str:
    """The shell command that continues the run, quoted where the shell needs it."""
    kept = without_keys(overrides, CONTINUED)
    return shlex.join([*program(), *searchpath(), *kept, "resume=true", as_override("hydra.run.dir", str(run_dir))])


def sweep_resume_command(sweep_dir: Path) -> str | None:
    """The command that continues a sweep, from the overrides its multirun.yaml records: a grid's with resume=true, a
    search's as it ran (its study continues); None where there is no readable record."""
    found = continuing_command(sweep_dir)
    return found[1] if found else None


def continue_the_sweep(sweep_dir: Path) -> str:
    """The advice that continues a stopped sweep: a grid's resume command, or a search's own command."""
    found = continuing_command(sweep_dir)
    if found is None:
        return "run the sweep's own command again to continue it."
    grid, command = found
    return f"{'resume the sweep' if grid else 'continue the search'} with: {command}"


def continuing_command(sweep_dir: Path) -> tuple[bool, str] | None:
    """Whether the sweep is a grid, and the command that continues it (``sweep_resume_command``)."""
    try:
        hydra = OmegaConf.load(sweep_dir / "multirun.yaml").hydra
        recorded = hydra.overrides
        # Hydra's own first (the launcher and its settings), as typed: hydra.sweep.subdir=${hydra.job.num}...
        overrides = [*OmegaConf.to_container(recorded.hydra), *OmegaConf.to_container(recorded.task)]
    except Exception:
        return None
    # The app's own, and the search path: searchpath() gives it with its folders absolute.
    kept = without_keys(overrides, ("resume", "hydra.sweep.dir", "hydra.mode", "hydra.output_subdir",
                                    "hydra.searchpath"))
    grid = records_a_grid(hydra)
    return grid, shlex.join([*program(), "-m", *searchpath(), *kept, *(["resume=true"] if grid else []),
                             as_override("hydra.sweep.dir", str(sweep_dir))])


def records_a_grid(hydra) -> bool:
    """Whether a sweep's multirun.yaml (its ``hydra`` node) is a grid's, Hydra's own sweeper's (a record without the
    sweeper: one), and not a search's, which continues when its own command runs again."""
    return OmegaConf.select(hydra, "sweeper._target_", default=".BasicSweeper").endswith(".BasicSweeper")
