"""Sweep bookkeeping: a Hydra callback, registered under ``hydra.callbacks`` in conf/config.yaml.

- Each job of a multirun writes its row of ``<sweep dir>/sweep.csv`` when it ends, completed or
  failed (with its error), so a running or interrupted sweep can be read at any time. The row is
  written by the process that ran the job (a joblib worker, a SLURM node), under a lock
  (``.sweep.csv.lock``), and the file is replaced atomically. One row per job: a job that ends again
  (a resumed sweep) replaces its row, so the file always counts each job once, in the order of the jobs.
- At the end of a sweep its HPARAMS columns (the keys its jobs differ in) go to TensorBoard.
- At the end of an Optuna search (``mnist_exp.search``) the study's best trial is printed as a
  command and written to ``<sweep dir>/best_trial.yaml``; ``register_optuna_sweeper`` makes
  ``hydra/sweeper=optuna`` that search's sweeper.

Before Hydra starts, ``check_sweep_overrides`` refuses a sweep that would run no job.

Hydra turns an exception in a callback into a warning, so bookkeeping never fails a sweep.
"""

import csv
import os
import shlex
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mnist_exp.errors import UserError
from mnist_exp.hparams import write_sweep_experiment
from mnist_exp.paths import CONF_DIR
from mnist_exp.run_dir import atomic_file, read_metrics, without_resume

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; rows of parallel jobs could interleave
    fcntl = None

SUMMARY_FILE = "sweep.csv"
BEST_TRIAL_FILE = "best_trial.yaml"
SUMMARY_COLUMNS = ["job", "status", "objective", "best_val/acc", "test/acc", "epoch", "train_time_s", "params",
                   "overrides", "run_dir", "error", "finished"]


def register_optuna_sweeper() -> None:
    """Make ``hydra/sweeper=optuna`` this package's sweeper, in an editable install as from the wheel.

    Hydra finds plugins by listing the ``hydra_plugins`` directories on disk; an editable install maps
    ``hydra_plugins.mnist_exp_optuna`` in through an import hook that such a listing does not see, so
    the class is registered here. Its configs are stored after Hydra's scan, so they win over those of
    a hydra-optuna-sweeper still installed in the environment.
    """
    from hydra.core.plugins import Plugins

    plugins = Plugins.instance()  # the scan of the installed plugins, once per process
    try:
        from hydra_plugins.mnist_exp_optuna import optuna_sweeper
    except ImportError:  # a checkout on PYTHONPATH with an install that predates the plugin: pip install -e . again
        return
    optuna_sweeper.store_configs()
    plugins.register(optuna_sweeper.OptunaSweeper)


def check_sweep_overrides(args: list[str]) -> None:
    """Refuse a sweep that would run no job: one over no values (Hydra launches no job and calls it a success),
    or joblib with no worker (its traceback)."""
    if "hydra.launcher.n_jobs=0" in args:
        raise UserError("hydra.launcher.n_jobs=0 runs no job: give how many jobs run at a time, at least 1 "
                        "(-1: one per core).")
    parser = None
    for arg in args:
        if "range(" not in arg and "glob(" not in arg:
            continue  # the sweeps that can be empty; the others need no parse (start-up time)
        parser = parser or OverridesParser.create()
        try:
            override = parser.parse_override(arg)
        except HydraException:
            continue  # not an override (an option, a config name), or one Hydra itself refuses
        if not override.is_sweep_override() or override.is_interval_sweep():
            continue
        sweep = override.value()
        if isinstance(sweep, Glob):
            group = CONF_DIR / override.key_or_group
            options = sorted(path.stem for path in group.glob("*.yaml"))
            if group.is_dir() and not sweep.filter(options):
                raise UserError(f"{arg} matches no {override.key_or_group} config: choose from {', '.join(options)}.")
        elif not list(override.sweep_string_iterator()):
            raise empty_sweep(arg)


def empty_sweep(line: str) -> UserError:
    """The refusal of an empty ``range(...)``, on the command line or in a search's params."""
    return UserError(f"{line} sweeps over no values: range(start,stop,step) stops before stop, so the start must be "
                     "below it (or above it, with a negative step).")


class SweepSummary(Callback):
    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        write_row(Path(config.hydra.sweep.dir) / SUMMARY_FILE, job_row(config, job_return))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        write_sweep_experiment(Path(config.hydra.sweep.dir))  # HPARAMS columns: the keys the jobs differ in


def job_row(config: DictConfig, job_return: JobReturn) -> dict[str, Any]:
    """One sweep.csv row: what the run wrote in metrics.json, or Hydra's account of the job if it wrote none."""
    run_dir = Path(config.hydra.runtime.output_dir)
    metrics = read_metrics(run_dir)
    completed = job_return.status == JobStatus.COMPLETED
    status = metrics.get("status") or ("completed" if completed else "failed")
    # ``return_value`` re-raises a failed job's exception (and prints it); the stored value is the exception.
    error = "" if completed or status == "pruned" else str(job_return._return_value) or type(
        job_return._return_value).__name__
    return {
        "job": config.hydra.job.num,
        "status": status,
        "objective": job_return._return_value if completed else "",
        **{key: metrics.get(key, "") for key in ("best_val/acc", "test/acc", "epoch", "train_time_s", "params")},
        "overrides": " ".join(without_resume(list(config.hydra.overrides.task))),
        "run_dir": os.path.relpath(run_dir, config.hydra.sweep.dir),
        "error": metrics.get("error") or error,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def write_row(path: Path, row: dict[str, Any]) -> None:
    """Put the job's row into sweep.csv, replacing an earlier row of the same job; parallel jobs may end together."""
    # A lock file of its own, opened for writing: the table itself is replaced, and NFS locks only writable files.
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
        except FileNotFoundError:
            rows = []
        same_job = [i for i, old in enumerate(rows) if old.get("run_dir") == row["run_dir"]]
        if same_job:
            rows[same_job[0]] = row
        else:
            rows.append(row)
        rows.sort(key=lambda r: int(r["job"]) if str(r["job"]).isdigit() else -1)  # parallel jobs end in any order
        with atomic_file(path, "w", newline="") as f:
            writer = csv.DictWriter(f, SUMMARY_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)


def report_best_trial(sweep_dir: Path, metric: str, study) -> None:
    """Print the Optuna study's best trial (of every worker and command) as the command that reruns it,
    and write it to best_trial.yaml."""
    counts = Counter(trial.state.name.lower() for trial in study.get_trials(deepcopy=False))
    print(f"Study {study.study_name}: {sum(counts.values())} trials ("
          + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) + ")")
    try:
        trial = study.best_trial
    except ValueError:  # no trial completed
        print("No trial has completed: no best trial yet.", flush=True)
        return
    # The job's own overrides (fixed ones included) reproduce it; the searched params alone may not.
    overrides = trial.user_attrs.get("overrides") or [f"{key}={value}" for key, value in trial.params.items()]
    run_dir = trial.user_attrs.get("run_dir")
    best = {
        "metric": metric,
        "value": trial.value,
        "trial": trial.number,
        "overrides": overrides,
        "run_dir": run_dir,
        "command": shlex.join(["python", "-m", "mnist_exp", *overrides]),
    }
    with atomic_file(sweep_dir / BEST_TRIAL_FILE, "w") as f:  # whole, where workers sharing the directory end together
        OmegaConf.save(OmegaConf.create(best), f)
    print(f"Best trial: {trial.number}, {metric} {trial.value:.4f}" + (f" in {run_dir}" if run_dir else ""))
    print(f"Run it again: {best['command']}")
    print(f"Written to {sweep_dir / BEST_TRIAL_FILE}", flush=True)
