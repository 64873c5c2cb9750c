"""Sweep bookkeeping: a Hydra callback, registered under ``hydra.callbacks`` in conf/config.yaml.

- Each job of a multirun writes its row of ``<sweep dir>/sweep.csv`` when it ends, completed or
  failed (with its error), so a running or interrupted sweep can be read at any time. The row is
  written by the process that ran the job (a joblib worker, a SLURM node), under a lock
  (``.sweep.csv.lock``), and the file is replaced atomically. One row per job: a job that ends again
  (a resumed sweep) replaces its row, so the file always counts each job once, in the order of the jobs.
- At the end of a sweep its HPARAMS columns (the keys its jobs differ in) go to TensorBoard.
- At the end of an Optuna search (``mnist_exp.sweeps.search``) the study's best trial is printed as a
  command and written to ``<sweep dir>/best_trial.yaml``.

Hydra turns an exception in a callback into a warning, so bookkeeping never fails a sweep.
"""

import csv
import logging
import os
import shlex
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mnist_exp.run.hparams import write_sweep_experiment
from mnist_exp.runs import METRICS_FILE, Status, as_override, atomic_file, read_metrics, without_keys, without_resume

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; rows of parallel jobs could interleave
    fcntl = None

log = logging.getLogger("mnist_exp")
csv.field_size_limit(2**31 - 1)  # a failed job's error is a field: the 131,072 characters csv reads by default are few

SUMMARY_FILE = "sweep.csv"
BEST_TRIAL_FILE = "best_trial.yaml"
PARETO_FILE = "pareto_front.yaml"  # a multi-objective search's best trials
SUMMARY_COLUMNS = ["job", "status", "objective", "best_val/acc", "test/acc", "epoch", "train_time_s", "params",
                   "overrides", "run_dir", "error", "finished"]


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
    status = metrics.get("status") or (Status.COMPLETED if completed else Status.FAILED).value
    # ``return_value`` re-raises a failed job's exception (and prints it); the stored value is the exception.
    error = "" if completed or status == Status.PRUNED else str(job_return._return_value) or type(
        job_return._return_value).__name__
    return {
        "job": config.hydra.job.num,
        "status": status,
        "objective": job_return._return_value if completed else "",
        **{key: metrics.get(key, "") for key in ("best_val/acc", "test/acc", "epoch", "train_time_s", "params")},
        "overrides": " ".join(without_resume(list(config.hydra.overrides.task))),
        "run_dir": os.path.relpath(run_dir, config.hydra.sweep.dir),
        "error": metrics.get("error") or error,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(finished_at(run_dir))),
    }


def finished_at(run_dir: Path) -> float:
    """When the job's run wrote its record (a completed job a resume returns untouched keeps its time), else now."""
    try:
        return (run_dir / METRICS_FILE).stat().st_mtime
    except OSError:  # a job that failed before its run wrote anything
        return time.time()


def write_row(path: Path, row: dict[str, Any]) -> None:
    """Put the job's row into sweep.csv, replacing an earlier row of the same job; parallel jobs may end together."""

    def put(rows: list[dict[str, Any]]) -> None:
        same_job = [i for i, old in enumerate(rows) if old.get("run_dir") == row["run_dir"]]
        if same_job:
            rows[same_job[0]] = row
        else:
            rows.append(row)

    edit_rows(path, put)


def record_failed_trial(hydra_cfg: DictConfig, reason: str) -> None:
    """A search's job that completed without a number to optimise: its row says the trial failed, and why."""
    run_dir = os.path.relpath(hydra_cfg.runtime.output_dir, hydra_cfg.sweep.dir)
    path = Path(hydra_cfg.sweep.dir) / SUMMARY_FILE
    if not path.exists():  # another Hydra app's search: no SweepSummary callback, no sweep.csv
        return

    def fail(rows: list[dict[str, Any]]) -> None:
        for row in rows:
            if row.get("run_dir") == run_dir:
                row.update(status=Status.FAILED.value, error=reason)

    edit_rows(path, fail)


def edit_rows(path: Path, edit) -> None:
    """Change sweep.csv's rows under its lock (``edit`` changes the list in place) and replace the file whole."""
    # A lock file of its own, opened for writing: the table itself is replaced, and NFS locks only writable files.
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                rows, columns = list(reader), reader.fieldnames or []
            if "job" not in columns:
                raise csv.Error("no job column")
        except FileNotFoundError:
            rows = []
        except (UnicodeDecodeError, csv.Error) as error:  # kept aside, not half-read: the jobs' rows are written anew
            kept, number = path.with_name(f"{path.name}.unreadable"), 1
            while kept.exists():  # an earlier one kept aside stays too
                number += 1
                kept = path.with_name(f"{path.name}.unreadable-{number}")
            path.replace(kept)
            log.warning("%s is no sweep summary this tool wrote (%s): kept as %s; a new one lists each job as it "
                        "ends (a resumed sweep's, all of them)", path, error, kept.name)
            rows = []
        edit(rows)
        rows.sort(key=lambda r: int(r["job"]) if str(r["job"]).isdigit() else -1)  # parallel jobs end in any order
        with atomic_file(path, "w", newline="") as f:
            writer = csv.DictWriter(f, SUMMARY_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)


def report_best_trials(sweep_dir: Path, metric: str, study, program: list[str]) -> None:
    """Print the Optuna study's best trial (of every worker and command) as the command that reruns it, and write it
    to best_trial.yaml; of a multi-objective study, every trial of its Pareto front, to pareto_front.yaml."""
    counts = Counter(trial.state.name.lower() for trial in study.get_trials(deepcopy=False))
    print(f"Study {study.study_name}: {sum(counts.values())} trials ("
          + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) + ")")
    several = len(study.directions) > 1
    front = sorted(study.best_trials, key=lambda trial: trial.number)[:None if several else 1]  # ties: the first
    if not front:
        print("No trial has completed: no best trial yet.", flush=True)
        return
    best = [trial_record(trial, metric, program) for trial in front]
    path = sweep_dir / (PARETO_FILE if several else BEST_TRIAL_FILE)
    with atomic_file(path, "w") as f:  # whole, where workers sharing the directory end together
        OmegaConf.save(OmegaConf.create(best if several else best[0]), f)
    if several:
        print(f"Pareto front ({', '.join(d.name.lower() for d in study.directions)} {metric}): {len(front)} trials")
    for record in best:
        values = ", ".join(f"{value:.4f}" for value in record["values"])
        where = f" in {record['run_dir']}" if record["run_dir"] else ""
        print(f"{'Trial' if several else 'Best trial:'} {record['trial']}, {metric} {values}{where}")
        print(f"Run it again: {record['command']}")
    print(f"Written to {path}", flush=True)


def trial_record(trial, metric: str, program: list[str]) -> dict[str, Any]:
    # The job's own overrides (fixed ones included) reproduce it; the searched params alone may not.
    overrides = trial.user_attrs.get("overrides") or [as_override(key, value) for key, value in trial.params.items()]
    return {"metric": metric, "value": trial.values[0] if len(trial.values) == 1 else None, "values": trial.values,
            "trial": trial.number, "overrides": overrides, "run_dir": trial.user_attrs.get("run_dir"),
            "command": shlex.join([*program, *without_keys(overrides, ("optimized_metric",))])}  # a search's alone
