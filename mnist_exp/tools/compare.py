"""The leaderboard of runs: ``python -m mnist_exp.tools.compare <dir> [<dir> ...] [--runs] [--format F] [--plot P]``.

Reads every run directory (one holding ``.hydra/``) under the given paths, sweep jobs and single runs.
By default a row is a seed group: the runs whose composed configs differ only in ``seed`` and in keys
that say where or how a run goes (``runs.RESUME_MAY_CHANGE``; a sweep of a speed key, e.g. ``device.threads``, or
of ``trainer.eval_batch_size`` in runs cut to ``trainer.limit_batches``, whose test images it counts: a row per value),
with the mean, spread, minimum and 95% interval (Student's t) of their test accuracy, best mean first. ``--runs``
lists each run from its ``metrics.json``, best validation accuracy first, failed, stopped, unfinished and unreadable
runs last. CSV keeps full precision (accuracies as fractions). ``A --vs B`` is ``mnist_exp.tools.versus``.
"""

import argparse
import csv
import io
import os
import sys
from pathlib import Path
from typing import Any


from mnist_exp.errors import UserError
from mnist_exp.runs import Status, number
from mnist_exp.tools import cli
from mnist_exp.tools.groups import repeat_warnings, seed_groups, summarize_group
from mnist_exp.tools.run_records import differing_keys, runs_under

FORMATS = ("table", "csv", "markdown")
METRIC_COLUMNS = ("best val acc", "test acc", "epochs", "train s", "params", "status")
GROUP_COLUMNS = ("n", "test acc", "test std", "test min", "95% CI low", "95% CI high", "best val acc",
                 "best val std", "train s", "overlaps top", "not completed")
ERROR_WIDTH = 60  # characters of a failed run's error shown in a table


def overlap_mark(group: dict[str, Any], top: dict[str, Any]) -> str:
    """Whether a group's 95% interval overlaps the top group's: its lead over this one may be noise."""
    if group is top:
        return "top"
    if group["test"] is None or top["test"] is None or group["test"].n < 2 or top["test"].n < 2:
        return "-"
    return "yes" if group["test"].overlaps(top["test"]) else "no"


def group_leaderboard(groups: list[dict[str, Any]], raw: bool, top: int | None = None
                      ) -> tuple[list[str], list[list[Any]]]:
    """The header and a row for each of the ``top`` best seed groups; ``raw`` keeps numbers as they are (CSV)."""
    keys = differing_keys(groups)
    every_run = [run for group in groups for run in group["runs"]]
    names = dict(zip((run["dir"] for run in every_run), run_names(every_run)))
    header = ["runs", *keys, *GROUP_COLUMNS]
    rows = []
    for group in groups[:top]:
        test, val, seconds = group["test"], group["val"], group["seconds"]
        fractions = ([test.mean, test.std, test.min, test.low, test.high] if test else [None] * 5) + (
            [val.mean, val.std] if val else [None] * 2)
        mean_seconds = number(seconds.mean) if seconds else None
        runs = [names[run["dir"]] for run in group["runs"]]
        if raw:
            cells = [*("" if number(v) is None else v for v in fractions), "" if mean_seconds is None else mean_seconds]
            runs_cell = ";".join(runs)
        else:
            cells = [*(percent(number(v)) for v in fractions), "-" if mean_seconds is None else f"{mean_seconds:.1f}"]
            runs_cell = runs[0] + (f" +{len(runs) - 1}" if len(runs) > 1 else "")
        cells.insert(0, test.n if test else 0)
        overrides = [group["overrides"].get(key, "" if raw else "-") for key in keys]
        counts = sorted(group["unfinished"].items())
        unfinished = sum(n for _, n in counts) if raw else ", ".join(f"{n} {status}" for status, n in counts) or 0
        rows.append([runs_cell, *overrides, *cells, overlap_mark(group, groups[0]), unfinished])
    if any(run["metrics"].get("stopped_early") for run in every_run):  # early stopping: the epochs each ended at
        header.append("stopped at")
        for row, group in zip(rows, groups):
            epochs = sorted({run["metrics"]["epoch"] for run in group["runs"] if run["metrics"].get("stopped_early")})
            row.append("/".join(str(epoch) for epoch in epochs) or ("" if raw else "-"))
    return header, rows


def stopped_at(run: dict[str, Any], raw: bool) -> Any:
    """The epoch an early-stopped run ended at; '-' (CSV: empty) for a run that trained every epoch."""
    return run["metrics"]["epoch"] if run["metrics"].get("stopped_early") else "" if raw else "-"


def rank(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Completed runs, then those a search pruned, then the rest (failed, stopped, unfinished); within each, best
    validation accuracy first (runs without a validation split after), test accuracy breaking ties."""
    def key(run):
        metrics = run["metrics"]
        best_val, test = number(metrics.get("best_val/acc")), number(metrics.get("test/acc"))
        ended = {Status.COMPLETED: 0, Status.PRUNED: 1}.get(metrics.get("status"), 2)
        return (ended, best_val is None, -(best_val or 0.0), -(test or 0.0), str(run["dir"]))
    return sorted(runs, key=key)


def run_names(runs: list[dict[str, Any]]) -> list[str]:
    """Each run's path relative to the directory all of them are in: the job names of one sweep."""
    common = os.path.commonpath([run["dir"].parent for run in runs])
    return [os.path.relpath(run["dir"], common) for run in runs]


def leaderboard(runs: list[dict[str, Any]], raw: bool, top: int | None = None,
                compute: bool = False) -> tuple[list[str], list[list[Any]]]:
    """The header and a row for each of the ``top`` best runs; ``raw`` keeps numbers as they are (CSV); ``compute``
    adds each run's forward MFLOPs per image and training GFLOP/s.

    The override columns and the run names come from all runs, so a top few still show what differs.
    """
    runs = rank(runs)
    keys = differing_keys(runs)
    early = any(run["metrics"].get("stopped_early") for run in runs)
    header = ["run", *keys, *METRIC_COLUMNS] + (["error", "path"] if raw else []) + (["stopped at"] if early else [])
    rows = []
    for name, run in list(zip(run_names(runs), runs))[:top]:
        metrics = run["metrics"]
        status = metrics.get("status", Status.UNFINISHED.value)  # no metrics.json: still running, or killed
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
        if early:
            rows[-1].append(stopped_at(run, raw))
        if compute:
            flops, speed = number(metrics.get("flops_per_image")), number(metrics.get("train_gflops_per_s"))
            rows[-1] += ([flops, speed] if raw else
                         ["-" if flops is None else f"{flops / 1e6:.2f}", "-" if speed is None else f"{speed:.1f}"])
    return header + (["MFLOPs/img" if not raw else "flops_per_image", "GFLOP/s"] if compute else []), rows


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
    parser = cli.parser("compare", "Leaderboard of runs and sweep jobs: seed groups with 95% intervals, best mean\n"
                        "test accuracy first; or every run (--runs); or is A better than B (A --vs B).")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("examples (the job directories of a sweep over model.width=12,16 seed=0,1,2):\n"
                     "  python -m mnist_exp.tools.compare SWEEP --plot tradeoff.png\n"
                     "  python -m mnist_exp.tools.compare SWEEP/0_* --vs SWEEP/3_*                    two runs\n"
                     "  python -m mnist_exp.tools.compare SWEEP/[012]_* --vs SWEEP/[345]_*            two seed groups")
    parser.add_argument("paths", nargs="+", type=Path, metavar="dir",
                        help="a run directory, a sweep directory, or any directory of runs (outputs/); with --vs, "
                             "the runs of A")
    parser.add_argument("--vs", nargs="+", type=Path, metavar="dir",
                        help="compare A (the dirs before --vs) with B (these): each one run, or the runs of one seed "
                             "group (a sweep's job dirs, e.g. sweep/0_* sweep/2_*). Two runs: their test images only "
                             "one gets right, McNemar's exact test. Two groups: the difference of the mean test "
                             "accuracies with its 95%% interval (Welch)")
    parser.add_argument("--runs", action="store_true", help="list every run, best validation accuracy first, "
                                                            "instead of seed groups")
    parser.add_argument("--format", choices=FORMATS, help="output format (default: table)")  # None: not given
    parser.add_argument("--top", type=cli.positive_int, default=None, metavar="N", help="show only the best N rows")
    parser.add_argument("--compute", action="store_true", help="with --runs: each run's forward MFLOPs per image and "
                                                               "training GFLOP/s")
    parser.add_argument("--plot", type=cli.file_name, metavar="file.png",
                        help="also draw test accuracy against training seconds, a point per row (error bars: the "
                             "95%% interval of a group's mean)")
    return parser


def command(args) -> None:
    if args.vs:
        if args.runs or args.top or args.plot or args.compute or args.format:  # --format table too: --vs writes none
            raise UserError("--vs compares A with B: leave out --runs, --top, --format, --plot and --compute, which "
                            "shape the leaderboard.")
        from mnist_exp.tools.versus import versus

        print(versus(args.paths, args.vs))
        return
    if args.compute and not args.runs:
        raise UserError("--compute shows each run's compute: add --runs.")
    if args.plot and args.plot.suffix.lower() != ".png":
        raise UserError(f"--plot {args.plot}: give a file name ending in .png.")
    if args.plot:
        cli.file_to_write(args.plot, "--plot", "tradeoff.png")
    runs = runs_under(args.paths)
    output = args.format or "table"
    raw = output == "csv"
    groups = None if args.runs else seed_groups(runs)  # a row per run, or per seed group
    for warning in repeat_warnings(groups or []):
        print(warning, file=sys.stderr)
    header, table = leaderboard(runs, raw, args.top, args.compute) if args.runs else group_leaderboard(groups, raw,
                                                                                                       args.top)
    formatter = {"table": format_table, "csv": format_csv, "markdown": format_markdown}[output]
    print(formatter(header, table))
    if args.plot:
        from mnist_exp.tools.plots import plot_accuracy_vs_time

        points = groups or [summarize_group([run], run["overrides"]) for run in rank(runs)]
        with cli.full_disk_said(args.plot, "--plot"):
            plot_accuracy_vs_time(points[:args.top], args.plot)


def main(argv: list[str] | None = None) -> int:
    return cli.run(command, arguments(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
