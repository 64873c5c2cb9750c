"""A leaderboard of runs: ``python -m mnist_exp.compare <dir> [<dir> ...] [--format table|csv|markdown] [--top N]``.

Reads every run directory (one holding ``.hydra/``) under the given paths, single runs and the jobs
of sweeps alike, and prints them best validation accuracy first: the command-line overrides that
differ between the runs, then each run's best validation accuracy, test accuracy, epochs, training
seconds, parameters and status from its ``metrics.json``. Failed, stopped, unfinished and unreadable
runs come last; a metrics.json that cannot be read is named in a warning on stderr. CSV keeps full
precision (accuracies as fractions) and adds each run's error and path.
"""

import csv
import io
import math
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from mnist_exp import cli
from mnist_exp.errors import UserError
from mnist_exp.run_dir import METRICS_FILE, UnreadableMetrics, read_metrics

FORMATS = ("table", "csv", "markdown")
METRIC_COLUMNS = ("best val acc", "test acc", "epochs", "train s", "params", "status")
ERROR_WIDTH = 60  # characters of a failed run's error shown in a table


def find_runs(paths: list[Path]) -> list[Path]:
    """Run directories under each path (or the path itself); one clear error for a path with none."""
    runs: dict[Path, None] = {}  # ordered and without duplicates when paths overlap
    for path in paths:
        if not path.exists():
            raise UserError(f"{path} does not exist. Give a run directory or a directory of runs.")
        if not path.is_dir():
            raise UserError(f"{path} is not a directory. Give a run directory or a directory of runs.")
        found = sorted(hydra_dir.parent for hydra_dir in path.rglob(".hydra") if hydra_dir.is_dir())
        if not found:
            raise UserError(f"No runs under {path} (a run directory holds .hydra/ and metrics.json, "
                            "as python -m mnist_exp writes them).")
        runs.update((run.resolve(), None) for run in found)
    return list(runs)


def read_run(run_dir: Path) -> dict[str, Any]:
    """A run's overrides ({key: value}) and its metrics.json ({} while it has none).

    An unreadable metrics.json makes the status "unreadable" and ``problem`` says why, naming the file.
    """
    try:
        items = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text()) or []
    except (OSError, yaml.YAMLError):
        items = []
    overrides = {}
    for item in items:
        key, _, value = str(item).partition("=")
        overrides[key.lstrip("+~")] = value
    try:
        return {"dir": run_dir, "overrides": overrides, "metrics": read_metrics(run_dir, strict=True), "problem": None}
    except UnreadableMetrics as error:
        reason = str(error).replace(str(run_dir / METRICS_FILE), METRICS_FILE)
        return {"dir": run_dir, "overrides": overrides, "metrics": {"status": "unreadable", "error": reason},
                "problem": str(error)}


def differing_keys(runs: list[dict[str, Any]]) -> list[str]:
    """Override keys whose value is not the same in every run (absent counts as a value), in first-seen order."""
    keys = list(dict.fromkeys(key for run in runs for key in run["overrides"]))
    return [key for key in keys if len({run["overrides"].get(key) for run in runs}) > 1]


def number(value: Any) -> float | None:
    """A finite number from metrics.json, else None (absent, null for NaN, text)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def rank(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best validation accuracy first, test accuracy breaking ties; runs without one last."""
    def key(run):
        metrics = run["metrics"]
        best_val, test = number(metrics.get("best_val/acc")), number(metrics.get("test/acc"))
        return (best_val is None, -(best_val or 0.0), -(test or 0.0), str(run["dir"]))
    return sorted(runs, key=key)


def run_names(runs: list[dict[str, Any]]) -> list[str]:
    """Each run's path relative to the directory all of them are in: the job names of one sweep."""
    common = os.path.commonpath([run["dir"].parent for run in runs])
    return [os.path.relpath(run["dir"], common) for run in runs]


def leaderboard(runs: list[dict[str, Any]], raw: bool, top: int | None = None) -> tuple[list[str], list[list[Any]]]:
    """The header and a row for each of the ``top`` best runs; ``raw`` keeps numbers as they are (CSV).

    The override columns and the run names come from all runs, so a top few still show what differs.
    """
    runs = rank(runs)
    keys = differing_keys(runs)
    header = ["run", *keys, *METRIC_COLUMNS] + (["error", "path"] if raw else [])
    rows = []
    for name, run in list(zip(run_names(runs), runs))[:top]:
        metrics = run["metrics"]
        status = metrics.get("status", "unfinished")  # no metrics.json: still running, or killed
        values = [metrics.get("best_val/acc"), metrics.get("test/acc"), metrics.get("epoch"),
                  metrics.get("train_time_s"), metrics.get("params")]
        overrides = [run["overrides"].get(key, "" if raw else "-") for key in keys]
        if raw:
            rows.append([name, *overrides, *("" if v is None else v for v in values), status,
                         metrics.get("error", ""), str(run["dir"])])
        else:
            error = str(metrics.get("error", ""))
            if error:
                status = f"{status}: {error if len(error) <= ERROR_WIDTH else error[:ERROR_WIDTH - 3] + '...'}"
            best_val, test, epochs, seconds, params = (number(v) for v in values)
            rows.append([name, *overrides, percent(best_val), percent(test), "-" if epochs is None else f"{epochs:.0f}",
                         "-" if seconds is None else f"{seconds:.1f}", "-" if params is None else f"{params:,.0f}",
                         status])
    return header, rows


def percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100 * fraction:.2f}%"


def format_table(header: list[str], rows: list[list[Any]]) -> str:
    """Aligned columns: text to the left, numbers to the right."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    numeric = [all(is_numeric(row[i]) for row in rows) for i in range(len(header))]

    def line(cells):
        return "  ".join(str(c).rjust(w) if right else str(c).ljust(w)
                         for c, w, right in zip(cells, widths, numeric)).rstrip()
    return "\n".join([line(header), line("-" * w for w in widths), *(line(row) for row in rows)])


def is_numeric(cell: Any) -> bool:
    text = str(cell).rstrip("%").replace(",", "")
    try:
        float(text)
    except ValueError:
        return text == "-"
    return True


def format_markdown(header: list[str], rows: list[list[Any]]) -> str:
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
    numeric = [all(is_numeric(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join([line(header), "|" + "|".join("---:" if n else "---" for n in numeric) + "|",
                      *(line(row) for row in rows)])


def format_csv(header: list[str], rows: list[list[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().rstrip("\n")


def arguments():
    parser = cli.parser("compare", "Leaderboard of runs and sweep jobs, best validation accuracy first.")
    parser.add_argument("paths", nargs="+", type=Path, metavar="dir",
                        help="a run directory, a sweep directory, or any directory of runs (outputs/)")
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    parser.add_argument("--top", type=cli.positive_int, default=None, metavar="N", help="show only the best N runs")
    return parser


def command(args) -> None:
    runs = [read_run(run_dir) for run_dir in find_runs(args.paths)]
    for run in runs:
        if run["problem"]:
            print(f"warning: {run['problem']}; the run is listed as unreadable.", file=sys.stderr)
    header, rows = leaderboard(runs, raw=args.format == "csv", top=args.top)
    formatter = {"table": format_table, "csv": format_csv, "markdown": format_markdown}[args.format]
    print(formatter(header, rows))


def main(argv: list[str] | None = None) -> int:
    return cli.run(command, arguments(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
