"""What a new run or sweep would overwrite, refused before Hydra writes: a completed run, a stopped one with a
checkpoint to continue, another run's or a sweep's files, a sweep's completed jobs; and a resume that has nothing to
continue, or a sweep resumed as another grid."""

from pathlib import Path

from hydra.core.override_parser.types import Glob
from omegaconf import OmegaConf

from mnist_exp.errors import UserError, first_line
from mnist_exp.paths import outputs_dir
from mnist_exp.run.command_line import CommandLine, read_override
from mnist_exp.run.commands import records_a_grid, sweep_resume_command
from mnist_exp.run.resume import nothing_to_resume
from mnist_exp.run.run_dir_lock import written_now
from mnist_exp.run.runtime import restarted_by_scheduler
from mnist_exp.runs import METRICS_FILE, RESUME_MAY_CHANGE, Status, last_checkpoint, run_status, split_override


def check_not_among_runs(run_dir: Path) -> None:
    """A new run's directory is its own: not inside a run (its .hydra/), not one that holds runs, which the run's
    files would hide from compare (it reads a directory with .hydra/ as one run)."""
    parent = run_dir.resolve().parent
    if (parent / ".hydra").is_dir():
        raise UserError(f"{run_dir} is inside the run {parent}; a new run there would mix its files with that run's. "
                        "Give a directory of its own (leave out hydra.run.dir, or give a new one).")
    held = sorted(child.name for child in run_dir.iterdir() if (child / ".hydra").is_dir()) if run_dir.is_dir() else []
    if held:
        raise UserError(f"{run_dir} holds runs ({', '.join(held[:3])}{', ...' if len(held) > 3 else ''}); a new run "
                        "there would hide them from compare. Give a directory of its own (leave out hydra.run.dir, or "
                        "give a new one, e.g. inside it).")


def check_no_overwrite(command: CommandLine) -> None:
    """Refuse a command line that would overwrite finished work.

    A new run in the directory of a completed run, or of a stopped one with a checkpoint to continue,
    or a grid sweep run again into a directory holding such jobs, would overwrite them: resume=true
    continues them instead, and a sweep's resume=true needs the directory of the sweep. A new run in
    any other run's directory, or a sweep's, would mix its files with theirs. A search
    (``hparams_search=``, ``hydra/sweeper=``) continues its study when run again, without resume=true;
    its sweeper refuses a directory whose job numbers the study would reuse.
    """
    resume, run_dir, sweep_dir = command.resume, command.run_dir, command.sweep_dir
    if not command.multirun:
        if resume and not command.from_checkpoint and not restarted_by_scheduler():
            if run_dir is None:
                raise UserError(f"resume=true continues a run: point hydra.run.dir at it (hydra.run.dir="
                                f"{outputs_dir()}/runs/<date>/<time>...) or give ckpt_path=<checkpoint>.")
            if not last_checkpoint(run_dir).exists() and run_status(run_dir) != Status.COMPLETED:
                raise nothing_to_resume(run_dir)  # a completed run without checkpoints is shown as it is
        # A job its scheduler started again returns the completed run instead (mnist_exp.run.resume.completed_run).
        if (not resume or command.from_checkpoint) and run_dir and not restarted_by_scheduler():  # a new run
            # With a ckpt_path the run is a new one, resume=true or not: the run there is continued without it.
            resume_it = "resume=true and without ckpt_path" if command.from_checkpoint else "resume=true"
            if run_status(run_dir) == Status.COMPLETED:
                raise UserError(f"{run_dir} holds a completed run; a new run there would overwrite it. Start fresh "
                                f"elsewhere (leave out hydra.run.dir, or give a new one), or see the run with "
                                f"{resume_it}.")
            if resumable(run_dir) and not written_now(run_dir):  # a run writing there is refused by its lock
                raise UserError(f"{run_dir} holds a stopped run and its {last_checkpoint(run_dir)}; a new run there "
                                f"would overwrite it. Continue it with {resume_it}, or start fresh elsewhere (leave "
                                "out hydra.run.dir, or give a new one).")
            check_not_among_runs(run_dir)
            if ((run_dir / METRICS_FILE).exists() or (run_dir / "multirun.yaml").exists()) and not written_now(run_dir):
                what = "a sweep" if (run_dir / "multirun.yaml").exists() else f"a {run_status(run_dir)} run"
                raise UserError(f"{run_dir} holds {what}; a new run there would mix its files with those. Start fresh "
                                "elsewhere (leave out hydra.run.dir, or give a new one), or delete that directory first.")
        return
    if resume and command.search:
        raise UserError("resume=true continues a grid sweep. A search continues its study when run again: the same "
                        "command without resume=true (the same hydra.sweep.dir, or storage and study_name).")
    if resume and sweep_dir is None:
        raise UserError("resume=true continues a sweep: give the directory of the sweep to continue, "
                        "hydra.sweep.dir=<dir>.")
    if resume and not (sweep_dir / "multirun.yaml").exists():
        raise UserError(f"resume=true, but {sweep_dir} holds no sweep (no multirun.yaml). Give the directory of the "
                        f"sweep to continue, hydra.sweep.dir={outputs_dir()}/multirun/<date>/<time>.")
    if resume:
        check_same_grid(command, sweep_dir)
    if not resume and not command.search and sweep_dir is not None:
        check_no_other_records(sweep_dir)
    jobs = [] if resume or command.search or sweep_dir is None else sorted(sweep_dir.glob("*/"))
    completed = sum(run_status(job) == Status.COMPLETED for job in jobs)
    stopped = sum(resumable(job) for job in jobs)
    if (completed or stopped) and not written_now(sweep_dir):  # a sweep writing there is refused by its lock
        held = " and ".join(f"{count} {what}" for count, what in ((completed, "completed"), (stopped, "stopped")) if count)
        raise UserError(f"{sweep_dir} holds a sweep with {held} job(s); running it there again would overwrite them. "
                        "Continue it with resume=true, or start fresh with a new hydra.sweep.dir (or leave it out).")


def check_no_other_records(sweep_dir: Path) -> None:
    """A grid's jobs go beside nothing but a grid's: a run's own files there, or a search's study, are refused."""
    held = ("an Optuna search (optuna.db), which continues when its own command runs again"
            if (sweep_dir / "optuna.db").exists() else
            f"a {run_status(sweep_dir)} run" if (sweep_dir / METRICS_FILE).exists() else None)
    if held:
        raise UserError(f"{sweep_dir} holds {held}; a grid sweep there would mix its jobs with that. Give the sweep a "
                        "new hydra.sweep.dir, or leave it out.")


def resumable(run_dir: Path) -> bool:
    """A run stopped or killed before it ended, with a last.pt to continue from (a failed run's is not)."""
    return last_checkpoint(run_dir).exists() and run_status(run_dir) in (Status.STOPPED, Status.UNFINISHED)


def check_same_grid(command: CommandLine, sweep_dir: Path) -> None:
    """A resumed grid sweep is the sweep it continues. Hydra numbers and names the jobs by the grid and the other
    overrides, so another grid, or one more override, would train completed jobs again under new names."""
    try:
        hydra = OmegaConf.load(sweep_dir / "multirun.yaml").hydra
        recorded, unnamed = list(hydra.overrides.task), set(hydra.job.config.override_dirname.exclude_keys)
    except Exception as error:  # not YAML, or not Hydra's record of a sweep
        raise UserError(f"resume=true, but {sweep_dir / 'multirun.yaml'} is not a sweep's record ({first_line(error)})."
                        " Give the directory of the sweep to continue.") from error
    if not records_a_grid(hydra):
        raise UserError(f"resume=true, but {sweep_dir} holds a search, which continues its study when its own command "
                        f"runs again, without resume=true: {sweep_resume_command(sweep_dir)}")

    def grid(overrides: list[str]) -> list[str]:  # less what a resume may change and no job's name holds
        keys = [split_override(line)[0] for line in overrides]
        return [line for line, key in zip(overrides, keys)
                if not (key.startswith("hydra") or key in unnamed and key.startswith(RESUME_MAY_CHANGE))]

    def jobs(overrides: list[str]) -> list[tuple]:  # as the jobs they make, in order: range(0,2) is 0,1
        made = []
        for override in map(read_override, overrides):
            value = override.value()
            if getattr(value, "shuffle", False):
                raise UserError(f"{override.input_line}: shuffle() orders the jobs anew on each start, so resume=true "
                                "cannot tell which are done: start the sweep again with a new hydra.sweep.dir.")
            made.append((override.get_key_element(), override.input_line if isinstance(value, Glob)
                         else tuple(override.sweep_string_iterator()) if override.is_sweep_override()
                         else override.get_value_element_as_str()))
        return made

    before, now = grid(recorded), grid([override.input_line for override in command.overrides])
    if jobs(before) != jobs(now):
        raise UserError(f"resume=true continues the sweep in {sweep_dir} as it started ({' '.join(before)}), and this "
                        f"command gives {' '.join(now) or 'no overrides'}: resume it with its own overrides (its "
                        "multirun.yaml has them), or start another sweep with a new hydra.sweep.dir.")
