"""Sweep bookkeeping: a Hydra callback, registered under ``hydra.callbacks`` in conf/config.yaml.

- Each job of a multirun writes its row of ``<sweep dir>/sweep.csv`` when it ends, completed or
  failed (with its error), so a running or interrupted sweep can be read at any time. The row is
  written by the process that ran the job (a joblib worker, a SLURM node), under a lock
  (``.sweep.csv.lock``), and the file is replaced atomically. One row per job: a job that ends again
  (a resumed sweep) replaces its row, in place, so the file always counts each job once.
- An Optuna search keeps its study in SQLite inside the sweep directory (``conf/hparams_search/``);
  the directory is created before the sweeper opens that file. At the end, the best trial's
  overrides are printed and written to ``<sweep dir>/best_trial.yaml``.

Hydra turns an exception in a callback into a warning, so bookkeeping never fails a sweep.
"""

import csv
import os
import shlex
import tempfile
import time
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mnist_exp.hparams import write_sweep_experiment
from mnist_exp.run_dir import current_umask, read_metrics

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; rows of parallel jobs could interleave
    fcntl = None

SUMMARY_FILE = "sweep.csv"
BEST_TRIAL_FILE = "best_trial.yaml"
OPTUNA_RESULTS_FILE = "optimization_results.yaml"  # written by hydra-optuna-sweeper
SUMMARY_COLUMNS = ["job", "status", "objective", "best_val/acc", "test/acc", "epoch", "train_time_s", "params",
                   "overrides", "run_dir", "error", "finished"]


class SweepSummary(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # The Optuna sweeper opens its SQLite file in the sweep directory before any launcher creates it.
        Path(config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        write_row(Path(config.hydra.sweep.dir) / SUMMARY_FILE, job_row(config, job_return))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        write_sweep_experiment(sweep_dir)  # the HPARAMS table's columns: the keys that differ between the jobs
        if (sweep_dir / OPTUNA_RESULTS_FILE).exists():
            report_best_trial(sweep_dir, config.optimized_metric)


def job_row(config: DictConfig, job_return: JobReturn) -> dict[str, Any]:
    """One sweep.csv row: what the run wrote in metrics.json, or Hydra's account of the job if it wrote none."""
    run_dir = Path(config.hydra.runtime.output_dir)
    metrics = read_metrics(run_dir)
    completed = job_return.status == JobStatus.COMPLETED
    # ``return_value`` re-raises a failed job's exception (and prints it); the stored value is the exception.
    error = "" if completed else str(job_return._return_value) or type(job_return._return_value).__name__
    return {
        "job": config.hydra.job.num,
        "status": metrics.get("status") or ("completed" if completed else "failed"),
        "objective": job_return._return_value if completed else "",
        **{key: metrics.get(key, "") for key in ("best_val/acc", "test/acc", "epoch", "train_time_s", "params")},
        "overrides": " ".join(o for o in config.hydra.overrides.task if not o.lstrip("+~").startswith("resume=")),
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
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", newline="") as f:
                writer = csv.DictWriter(f, SUMMARY_COLUMNS, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows)
            os.chmod(tmp, 0o666 & ~current_umask())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def report_best_trial(sweep_dir: Path, metric: str) -> None:
    """Print the best Optuna trial as a command that reruns it, and write it to best_trial.yaml."""
    results = OmegaConf.load(sweep_dir / OPTUNA_RESULTS_FILE)
    best_params = {f"{key}={value}" for key, value in results.best_params.items()}
    run_dir = find_run(sweep_dir, best_params)
    # The run's own overrides (fixed ones included) reproduce it; the sweeper's params alone may not.
    overrides = read_overrides(run_dir) if run_dir else sorted(best_params)
    best = {
        "metric": metric,
        "value": results.best_value,
        "overrides": overrides,
        "run_dir": str(run_dir) if run_dir else None,
        "command": shlex.join(["python", "-m", "mnist_exp", *overrides]),
    }
    OmegaConf.save(OmegaConf.create(best), sweep_dir / BEST_TRIAL_FILE)
    print(f"Best trial: {metric} {results.best_value:.4f}" + (f" in {run_dir}" if run_dir else ""))
    print(f"Run it again: {best['command']}")
    print(f"Written to {sweep_dir / BEST_TRIAL_FILE}", flush=True)


def find_run(sweep_dir: Path, overrides: set[str]) -> Path | None:
    """The completed job of the sweep whose overrides include all of ``overrides``."""
    for hydra_dir in sorted(sweep_dir.glob("*/.hydra")):
        run_dir = hydra_dir.parent
        completed = read_metrics(run_dir).get("status") == "completed"
        if completed and overrides <= set(read_overrides(run_dir)):
            return run_dir
    return None


def read_overrides(run_dir: Path) -> list[str]:
    return list(OmegaConf.load(run_dir / ".hydra" / "overrides.yaml"))
