"""``python -m mnist_exp.tools.compare``: the leaderboard of runs and of seed groups, A --vs B, the plot, the statistics.

Made-up run directories (written with the project's own writers) carry numbers simple enough to
check by hand; one real fake-data sweep checks the whole path from training to the comparison.
"""

import csv
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from matplotlib.colors import to_rgb

from conftest import read_metrics, read_png, run_dirs, run_main
from mnist_exp.tools import compare
from mnist_exp.tools import stats
from mnist_exp.run.checkpoint import load_checkpoint
from mnist_exp.runs import PREDICTIONS_FILE, read_predictions, write_metrics, write_predictions
from mnist_exp.tools.run_records import read_run, read_runs


def make_run(run_dir: Path, overrides: list[str], metrics: dict | None) -> Path:
    """A run directory as the app leaves it: .hydra/overrides.yaml and (unless None) metrics.json."""
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return run_dir


def completed(best_val: float, test: float, params: int = 7850) -> dict:
    return {"status": "completed", "best_val/acc": best_val, "test/acc": test, "epoch": 2, "train_time_s": 1.25,
            "params": params}


@pytest.fixture
def sweep(tmp_path) -> Path:
    """A made-up sweep: three completed jobs out of order, a failed one, one that never wrote metrics.json."""
    sweep_dir = tmp_path / "multirun" / "2026-01-01" / "10-00-00"
    make_run(sweep_dir / "0_model-logreg", ["model=logreg", "dataset=fake"], completed(0.80, 0.79))
    make_run(sweep_dir / "1_model-mlp", ["model=mlp", "dataset=fake"], completed(0.95, 0.94, params=109386))
    make_run(sweep_dir / "2_model-cnn", ["model=cnn", "dataset=fake"], completed(0.90, 0.91))
    make_run(sweep_dir / "3_model-cnn_optimizer.lr-1e12", ["model=cnn", "optimizer.lr=1e12", "dataset=fake"],
             {"status": "failed", "error": "Training diverged: the loss is nan at step 3"})
    make_run(sweep_dir / "4_model-mlp_optimizer.lr-0.1", ["model=mlp", "optimizer.lr=0.1", "dataset=fake"], None)
    (sweep_dir / "sweep.csv").write_text("not a run\n")
    return sweep_dir


def run_compare(capsys, *args: str) -> str:
    assert compare.main([str(arg) for arg in args]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


def read_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_ranked_by_best_validation_accuracy_with_failed_and_unfinished_runs_last(sweep, capsys):
    rows = read_csv(run_compare(capsys, sweep, "--runs", "--format", "csv"))
    assert [row["run"] for row in rows] == ["1_model-mlp", "2_model-cnn", "0_model-logreg",
                                            "3_model-cnn_optimizer.lr-1e12", "4_model-mlp_optimizer.lr-0.1"]
    assert [row["status"] for row in rows] == ["completed"] * 3 + ["failed", "unfinished"]
    assert rows[3]["error"] == "Training diverged: the loss is nan at step 3"
    assert float(rows[0]["best val acc"]) == 0.95 and float(rows[0]["test acc"]) == 0.94
    assert rows[0]["params"] == "109386" and rows[0]["epochs"] == "2" and float(rows[0]["train s"]) == 1.25
    assert Path(rows[0]["path"]) == (sweep / "1_model-mlp").resolve()
    # A trial a search pruned after its first epoch ranks after every completed run, whatever its accuracy.
    make_run(sweep / "5_model-cnn", ["model=cnn", "dataset=fake"], {**completed(0.99, 0.99), "status": "pruned"})
    rows = read_csv(run_compare(capsys, sweep, "--runs", "--format", "csv"))
    assert [row["status"] for row in rows] == ["completed"] * 3 + ["pruned", "failed", "unfinished"]


def test_only_the_overrides_that_differ_are_columns(sweep, capsys):
    header = read_csv(run_compare(capsys, sweep, "--runs", "--format", "csv"))[0].keys()
    assert list(header) == ["run", "model", "optimizer.lr", *compare.METRIC_COLUMNS, "error", "path"]
    rows = read_csv(run_compare(capsys, sweep, "--runs", "--format", "csv"))
    assert [row["optimizer.lr"] for row in rows] == ["", "", "", "1e12", "0.1"]  # absent: the config's value


def test_table_and_markdown_are_readable(sweep, capsys):
    table = run_compare(capsys, sweep, "--runs").splitlines()
    assert table[0].split() == ["run", "model", "optimizer.lr", "best", "val", "acc", "test", "acc", "epochs",
                                "train", "s", "params", "status"]
    assert set(table[1]) <= {"-", " "}
    assert table[2].split() == ["1_model-mlp", "mlp", "-", "95.00%", "94.00%", "2", "1.2", "109,386", "completed"]
    assert "failed: Training diverged" in table[5]
    markdown = run_compare(capsys, sweep, "--runs", "--format", "markdown").splitlines()
    assert markdown[0] == ("| run | model | optimizer.lr | best val acc | test acc | epochs | train s | params "
                           "| status |")
    assert markdown[1].startswith("|---|---|") and len(markdown) == 2 + 5


def test_top_n_keeps_the_best_and_the_columns_of_all(sweep, capsys):
    rows = read_csv(run_compare(capsys, sweep, "--runs", "--format", "csv", "--top", "2"))
    assert [row["run"] for row in rows] == ["1_model-mlp", "2_model-cnn"]
    assert "optimizer.lr" in rows[0]


def test_a_run_whose_config_is_not_yaml_is_named_and_compared_by_its_overrides(sweep, capsys):
    broken = make_run(sweep / "5_model-logreg_optimizer.lr-0.5", ["model=logreg", "optimizer.lr=0.5", "dataset=fake"],
                      completed(0.9, 0.9))
    (broken / ".hydra" / "config.yaml").write_text("{{{ not yaml")
    assert compare.main([str(sweep), "--runs", "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    assert err == (f"warning: {broken.resolve() / '.hydra' / 'config.yaml'} is not a config; the run is compared by "
                   "its overrides alone.\n")
    assert [row["run"] for row in read_csv(out)].count(broken.name) == 1


def test_another_programs_run_is_named_and_left_out(sweep, capsys):
    """Another Hydra app's outputs beside ours: not a run to rank, nor an unfinished one of ours."""
    foreign = make_run(sweep / "9_other", [], {"test/acc": "high"})  # lightning-hydra-template's nodes, say
    (foreign / ".hydra" / "config.yaml").write_text("model: {_target_: my.Net}\ndata: {batch_size: 64}\ntrainer: {}\n")
    assert compare.main([str(sweep), "--runs", "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    assert err == (f"warning: {foreign.resolve() / '.hydra' / 'config.yaml'} is not a mnist_exp run's config (it "
                   "names no model and dataset): the run is left out.\n")
    assert foreign.name not in [row["run"] for row in read_csv(out)]
    assert compare.main([str(foreign)]) == 1
    assert capsys.readouterr().err.endswith(f"No runs of mnist_exp under {foreign}: their configs are another "
                                            "program's.\n")


def test_several_paths_single_runs_and_sweeps_together(sweep, tmp_path, capsys):
    single = make_run(tmp_path / "runs" / "2026-01-01" / "09-00-00", [], completed(0.99, 0.98))
    rows = read_csv(run_compare(capsys, sweep, single, sweep / "1_model-mlp", "--runs", "--format", "csv"))
    assert len(rows) == 6  # the run given twice is listed once
    assert rows[0]["run"] == "runs/2026-01-01/09-00-00" and rows[0]["model"] == ""
    assert rows[1]["run"] == "multirun/2026-01-01/10-00-00/1_model-mlp"
    after_options = read_csv(run_compare(capsys, sweep, "--runs", single, "--format", "csv", sweep / "1_model-mlp"))
    assert after_options == rows  # a path after an option is a path too, as in most commands


def test_a_plot_that_fills_the_disk_is_one_line_and_leaves_no_file(sweep, small_disk, capsys):
    (small_disk / "filler").write_bytes(bytes(52 * 1024))  # 12 KiB left: the probe's 4 KiB, not the picture
    out = small_disk / "tradeoff.png"
    assert compare.main([str(sweep), "--plot", str(out)]) == 1
    free = shutil.disk_usage(small_disk).free // 1024  # said in KiB: under a MiB is no "0 MiB free"
    assert 0 < free < 1024 and capsys.readouterr().err == (
        f"{PROG}: The disk holding {small_disk} is full ({free} KiB free): {out} was not written. Free some space, or "
        "give --plot a file on another disk.\n")
    assert [path.name for path in small_disk.iterdir()] == ["filler"]


def test_links_to_runs_are_followed_once_and_a_loop_ends(sweep, tmp_path, capsys):
    chosen = tmp_path / "chosen"  # a folder of links to the runs worth keeping: 'No runs under chosen' before
    chosen.mkdir()
    (chosen / "mlp").symlink_to(sweep / "1_model-mlp")
    (chosen / "also_mlp").symlink_to(sweep / "1_model-mlp")
    (chosen / "the_sweep").symlink_to(sweep)
    (chosen / "up").symlink_to(tmp_path)  # back to a folder above: walked once
    rows = read_csv(run_compare(capsys, chosen, "--runs", "--format", "csv"))
    assert sorted(Path(row["path"]) for row in rows) == sorted(run.resolve() for run in sweep.iterdir() if run.is_dir())


def test_an_unreadable_metrics_json_is_named_and_listed_as_unreadable(sweep, capsys):
    broken = make_run(sweep / "5_model-logreg_optimizer.lr-0.5", ["model=logreg", "optimizer.lr=0.5", "dataset=fake"],
                      None)
    (broken / "metrics.json").write_text('{"status": "compl')  # cut short, as a full disk leaves it
    reason = "is not valid JSON (Unterminated string starting at: line 1 column 12 (char 11))"
    warning = f"warning: {broken.resolve() / 'metrics.json'} {reason}; the run is listed as unreadable.\n"
    assert compare.main([str(sweep), "--runs", "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    rows = read_csv(out)
    assert rows[-1]["run"] == broken.name and rows[-1]["status"] == "unreadable"
    assert rows[-1]["error"] == f"metrics.json {reason}" and err == warning
    assert compare.main([str(sweep), "--runs"]) == 0
    out, err = capsys.readouterr()
    [line] = [line for line in out.splitlines() if line.startswith(broken.name)]
    assert line.endswith("unreadable: metrics.json is not valid JSON (Unterminated string start...")
    assert err == warning
    (broken / "metrics.json").write_text('{"status": "completed", "test/acc": "high", "best_val/acc": 2.5}')
    assert compare.main([str(sweep), "--runs", "--format", "csv"]) == 0
    rows = read_csv(capsys.readouterr().out)
    assert rows[-1]["status"] == "unreadable" and rows[-1]["error"] == (
        'metrics.json has test/acc="high", not a value a run writes (a number in [0, 1], or null)')
    (broken / "metrics.json").write_bytes(b'\xff\xfe{"status": 1}')  # bytes that are no text
    (broken / ".hydra" / "config.yaml").write_bytes(b"\xff\xfe&a [*a]")
    assert compare.main([str(sweep), "--runs", "--format", "csv"]) == 0
    rows = read_csv(capsys.readouterr().out)
    assert rows[-1]["status"] == "unreadable" and rows[-1]["error"] == (
        "metrics.json is unreadable ('utf-8' codec can't decode byte 0xff in position 0: invalid start byte)")
    (broken / ".hydra" / "config.yaml").write_text("&a [*a]")  # an alias within itself
    assert compare.main([str(sweep), "--runs", "--format", "csv"]) == 0 and read_csv(capsys.readouterr().out)


PROG = "python -m mnist_exp.tools.compare"


@pytest.mark.parametrize("args, code, message", [
    (["no/such/dir"], 1, "no/such/dir does not exist. Give a run directory or a directory of runs."),
    (["empty"], 1, "No runs under empty (a run directory holds .hydra/ and metrics.json, as python -m mnist_exp "
                   "writes them)."),
    (["empty/file.txt"], 1, "empty/file.txt is not a directory. Give a run directory or a directory of runs."),
    (["sweep", "--format", "xml"], 2,
     "argument --format: invalid choice: 'xml' (choose from 'table', 'csv', 'markdown'). See --help."),
    (["sweep", "--top", "0"], 2, "argument --top: '0' is not a whole number of at least 1. See --help."),
    ([], 2, "the following arguments are required: dir. See --help."),
    (["sweep", "--tpo", "3"], 2, "unrecognized arguments: --tpo 3. Did you mean '--top'? See --help."),
    (["sweep", "--sort", "acc"], 2, "unrecognized arguments: --sort acc. See --help."),  # not close to --format
])
def test_wrong_input_is_one_line_and_a_nonzero_exit(sweep, tmp_path, monkeypatch, capsys, args, code, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "file.txt").write_text("")
    (tmp_path / "sweep").symlink_to(sweep)
    monkeypatch.chdir(tmp_path)  # the paths as a user types them, relative to where they are
    returned = compare.main(args)  # what `python -m mnist_exp.tools.compare` exits with
    assert (returned, *capsys.readouterr()) == (code, "", f"{PROG}: {message}\n")


def test_a_folder_of_a_run_is_told_the_run_directory_to_give(sweep, monkeypatch, capsys):
    run = sweep / "1_model-mlp"
    monkeypatch.chdir(run / ".hydra")
    assert compare.main(["."]) == 1
    assert capsys.readouterr().err == (f"{PROG}: No runs under .: it is a folder of the run {run}. Give the run "
                                       f"directory ({run}) or a directory of runs.\n")
    assert compare.main([str(run), "--runs"]) == 0 and "1_model-mlp" in capsys.readouterr().out  # which then runs


# --- statistics, against closed forms and published tables ---

@pytest.mark.parametrize("p, df, t", [
    (0.975, 1, 12.706204736), (0.975, 2, 4.302652730), (0.975, 4, 2.776445105), (0.975, 30, 2.042272456),
    (0.995, 10, 3.169272673), (0.95, 5, 2.015048373), (0.975, 1e6, 1.959966),
])
def test_t_quantile_matches_the_tables(p, df, t):
    assert stats.t_quantile(p, df) == pytest.approx(t, abs=1e-6)
    assert stats.t_quantile(1 - p, df) == pytest.approx(-t, abs=1e-6)


@pytest.mark.parametrize("p", [0.6, 0.8, 0.9, 0.99, 0.999])
def test_t_quantile_and_cdf_match_the_closed_forms_of_one_and_two_degrees_of_freedom(p):
    assert stats.t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9)
    assert stats.t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-9)
    for t in (-3.0, 0.5, 7.0):
        assert stats.t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)
        assert stats.t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)


def test_mean_and_interval_of_three_values():
    summary = stats.summarize([0.978, 0.980, 0.982])
    assert (summary.n, summary.mean, summary.min) == (3, pytest.approx(0.98), 0.978)
    assert summary.std == pytest.approx(0.002)
    half = 4.302652730 * 0.002 / math.sqrt(3)
    assert (summary.low, summary.high) == (pytest.approx(0.98 - half), pytest.approx(0.98 + half))
    single = stats.summarize([0.5])
    assert single.mean == 0.5 and math.isnan(single.std) and math.isnan(single.low)


def test_the_interval_of_a_mean_accuracy_stays_within_0_and_100_percent():
    half = 12.706204736 * math.sqrt(0.5 * 0.009 ** 2) / math.sqrt(2)  # two runs: t with 1 degree of freedom
    accuracy, seconds = stats.summarize([0.99, 0.999], stats.ACCURACY), stats.summarize([0.99, 0.999])
    assert accuracy.low == pytest.approx(0.9945 - half) and accuracy.high == 1.0 < 0.9945 + half
    assert (seconds.low, seconds.high) == (pytest.approx(0.9945 - half), pytest.approx(0.9945 + half))


@pytest.mark.parametrize("only_a, only_b, p", [
    (0, 5, 0.0625), (5, 0, 0.0625), (1, 9, 0.021484375), (9, 1, 0.021484375), (3, 3, 1.0), (0, 0, 1.0), (2, 3, 1.0),
])
def test_mcnemar_exact_p_values(only_a, only_b, p):
    assert stats.mcnemar_p(only_a, only_b) == p  # 2 * (1 + 9) / 2**10 for (1, 9): exact in binary


def test_mcnemar_of_thousands_of_disagreements_does_not_overflow():
    assert 0.0 < stats.mcnemar_p(4000, 4200) < 0.05 < stats.mcnemar_p(4000, 4050) < 1.0


def test_welch_against_a_hand_computation():
    a, b = stats.summarize([1.0, 2.0, 3.0]), stats.summarize([4.0, 6.0, 8.0, 10.0])
    # variances 1 and 20/3: standard error sqrt(1/3 + 5/3) = sqrt(2); df = 2**2 / ((1/3)**2/2 + (5/3)**2/3) = 216/53
    result = stats.welch(a, b)
    assert result.difference == 5.0 and result.df == pytest.approx(216 / 53)
    half = stats.t_quantile(0.975, 216 / 53) * math.sqrt(2)
    assert (result.low, result.high) == (pytest.approx(5 - half), pytest.approx(5 + half))
    assert 2.7764 > stats.t_quantile(0.975, 216 / 53) > 2.5706  # between the df=4 and df=5 table values
    equal = stats.welch(stats.summarize([1.0, 2.0, 3.0]), stats.summarize([2.0, 3.0, 4.0]))
    assert equal.df == pytest.approx(4)  # equal variances and sizes: 2 (n - 1)
    assert equal.high == pytest.approx(1 + 2.776445105 * math.sqrt(2 / 3))
    assert equal.p == pytest.approx(0.2878641347, abs=1e-6)  # Student's two-sample t = -1.2247, df 4


# --- seed groups on made-up runs ---

def make_job(sweep_dir: Path, name: str, settings: dict, metrics: dict, predictions=None) -> Path:
    """A job directory as the app writes it: .hydra/config.yaml and overrides.yaml, metrics.json, predictions."""
    run_dir = sweep_dir / name
    config = {"model": {"name": "cnn", "width": 16}, "dataset": {"name": "fake", "seed": 0},
              "device": {"name": "cpu", "threads": 1}, "trainer": {"epochs": 2, "progress": None}, "seed": 0}
    overrides = []
    for key, value in settings.items():
        section, _, leaf = key.rpartition(".")
        (config[section] if section else config)[leaf] = value
        overrides.append(f"{key}={value}")
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    write_metrics(run_dir, metrics)
    if predictions is not None:
        write_predictions(run_dir, *predictions)
    return run_dir


def done(test: float, best_val: float, seconds: float) -> dict:
    return {"status": "completed", "test/acc": test, "best_val/acc": best_val, "train_time_s": seconds,
            "epoch": 2, "params": 1000}


@pytest.fixture
def seeds(tmp_path) -> Path:
    """width 16: 3 seeds (and a failed fourth); width 12: 3 seeds; width 8: 2 seeds; an mlp: 1 run.

    The runs of a group differ in where or how they ran too (threads, progress bar): still one group.
    """
    sweep_dir = tmp_path / "sweep"
    jobs = [({"model.width": 16}, [(0.985, 0.990, 10), (0.986, 0.992, 11), (0.984, 0.994, 12)]),
            ({"model.width": 12}, [(0.978, 0.981, 8), (0.980, 0.983, 8), (0.982, 0.985, 8)]),
            ({"model.width": 8}, [(0.960, 0.965, 5), (0.962, 0.967, 7)]),
            ({"model.name": "mlp"}, [(0.970, 0.975, 3)])]
    number = 0
    for settings, results in jobs:
        for seed, (test, val, seconds) in enumerate(results):
            where = {"device.threads": 2, "trainer.progress": True} if seed == 1 else {}
            make_job(sweep_dir, f"{number}_seed-{seed}", {**settings, "seed": seed, **where}, done(test, val, seconds))
            number += 1
    make_job(sweep_dir, f"{number}_seed-3", {"model.width": 16, "seed": 3}, {"status": "failed", "error": "boom"})
    return sweep_dir


def test_runs_that_differ_only_in_seed_and_where_they_ran_are_one_row(seeds, capsys):
    rows = read_csv(run_compare(capsys, seeds, "--format", "csv"))
    assert [(row["model.width"], row["model.name"], row["n"], row["not completed"]) for row in rows] == [
        ("16", "", "3", "1"), ("12", "", "3", "0"), ("", "mlp", "1", "0"), ("8", "", "2", "0")]  # by mean test acc
    top, _, mlp, eight = rows
    assert top["runs"] == "0_seed-0;1_seed-1;2_seed-2;9_seed-3"
    assert float(top["test acc"]) == pytest.approx(0.985) and float(top["test std"]) == pytest.approx(0.001)
    assert float(top["test min"]) == 0.984 and float(top["train s"]) == pytest.approx(11)
    assert float(top["best val acc"]) == pytest.approx(0.992) and float(top["best val std"]) == pytest.approx(0.002)
    half = 4.302652730 * 0.001 / math.sqrt(3)  # t(0.975, 2) * std / sqrt(n)
    assert float(top["95% CI low"]) == pytest.approx(0.985 - half) and float(top["95% CI high"]) == pytest.approx(
        0.985 + half)
    # 12: 0.980 +- 0.00497 reaches into 16's 0.985 +- 0.00248; 8: 0.961 +- 12.706 * 0.00141 / sqrt(2) does not.
    assert float(eight["95% CI high"]) == pytest.approx(0.961 + 12.706204736 * math.sqrt(2e-6) / math.sqrt(2))
    assert [row["overlaps top"] for row in rows] == ["top", "yes", "-", "no"]
    assert mlp["test std"] == mlp["95% CI low"] == ""  # one run: no spread, no interval


def test_a_run_that_repeats_a_seed_counts_once_and_is_named(seeds, capsys):
    """A copied job directory, or the same command run twice, is not another sample: n and the interval would lie."""
    shutil.copytree(seeds / "6_seed-0", seeds / "6_seed-0_again")  # width 8, seed 0, again
    warning = (f"warning: {(seeds / '6_seed-0_again').resolve()} repeats the config and seed of "
               f"{(seeds / '6_seed-0').resolve()}: its group counts that seed once.\n")
    assert compare.main([str(seeds), "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    eight = read_csv(out)[-1]
    assert err == warning and (eight["n"], eight["not completed"]) == ("2", "0")
    assert float(eight["95% CI high"]) == pytest.approx(0.961 + 12.706204736 * math.sqrt(2e-6) / math.sqrt(2))
    assert compare.main([str(seeds / "6_seed-0"), str(seeds / "6_seed-0_again"), "--vs", str(seeds / "0_seed-0"),
                         str(seeds / "1_seed-1")]) == 1  # one seed left on A's side: no Welch interval
    assert capsys.readouterr().err == warning + (
        "python -m mnist_exp.tools.compare: A has 1 completed run and B 2: compare one run with one run (McNemar's "
        "test on their predictions), or two seed groups of two runs or more (Welch).\n")
    assert compare.main([str(seeds), "--compute"]) == 1  # refused before the runs are read and warned of
    assert capsys.readouterr().err == f"{PROG}: --compute shows each run's compute: add --runs.\n"


def test_a_sweep_of_the_thread_count_is_a_row_for_each_count(tmp_path, capsys):
    """device.threads=1,2 over seeds 0 and 1: each seed ran twice, at two speeds; the rows keep the speeds apart.
    Beside them, width 8's three seeds ran with different threads, each once: samples of one setting, one row."""
    for number, (threads, seed) in enumerate([(1, 0), (1, 1), (2, 0), (2, 1)]):
        make_job(tmp_path / "sweep", f"{number}_threads-{threads}_seed-{seed}",
                 {"device.threads": threads, "seed": seed}, done(0.98 + seed / 1000, 0.99, 10 / threads))
    for seed, threads in enumerate([1, 2, 1]):
        make_job(tmp_path / "sweep", f"{4 + seed}_width-8_seed-{seed}",
                 {"model.width": 8, "device.threads": threads, "seed": seed}, done(0.97, 0.98, 3))
    for number, device in enumerate(["cpu", "cuda"], start=7):  # the device group's option: a speed too
        make_job(tmp_path / "sweep", f"{number}_device-{device}", {"model.width": 4, "device": device, "seed": 0},
                 done(0.96, 0.97, 4 if device == "cpu" else 1))
    rows = read_csv(run_compare(capsys, tmp_path / "sweep", "--format", "csv"))
    assert [(row["model.width"], row["device.threads"], row["device"], row["n"], float(row["train s"]))
            for row in rows] == [("", "1", "", "2", 10), ("", "2", "", "2", 5), ("8", "", "", "3", 3),
                                 ("4", "", "cpu", "1", 4), ("4", "", "cuda", "1", 1)]


def test_thousands_of_runs_read_on_every_core_give_the_same_leaderboard(seeds, monkeypatch, capsys):
    one_process = run_compare(capsys, seeds, "--format", "csv")
    monkeypatch.setattr("mnist_exp.tools.run_records.PARALLEL_RUNS", 2)  # 10 runs: a process a core, as 10,000 runs get
    assert read_runs(sorted(seeds.iterdir())) == [read_run(run_dir) for run_dir in sorted(seeds.iterdir())]
    assert run_compare(capsys, seeds, "--format", "csv") == one_process


# Each reader waits in its first run, so Ctrl-C comes while they read.
READ_SLOWLY = """import sys, time
from pathlib import Path
from mnist_exp.tools import compare, run_records
run_records.PARALLEL_RUNS, read = 2, run_records.read_run
def slowly(run_dir):
    Path(sys.argv[2]).touch()
    time.sleep(60)
    return read(run_dir)
run_records.read_run = slowly
sys.exit(compare.main([sys.argv[1]]))
"""


@pytest.mark.slow  # Ctrl-C reaches a process group: compare in one of its own
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="runs are read in processes where there are cores for them")
def test_ctrl_c_while_runs_are_read_on_every_core_ends_without_a_traceback(seeds, tmp_path):
    reading = tmp_path / "reading"
    process = subprocess.Popen([sys.executable, "-c", READ_SLOWLY, str(seeds), str(reading)], start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not reading.exists() and process.poll() is None:
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: every process of the command
    _, stderr = process.communicate(timeout=30)
    assert (process.returncode, stderr) == (130, "")  # each reader printed its KeyboardInterrupt's traceback


def test_a_setting_that_changes_what_is_trained_is_its_own_group(tmp_path, capsys):
    make_job(tmp_path, "0_a", {"seed": 0}, done(0.9, 0.9, 1))
    make_job(tmp_path, "1_b", {"seed": 1, "device.threads": 4}, done(0.8, 0.8, 1))
    make_job(tmp_path, "2_c", {"seed": 2, "dataset.seed": 1}, done(0.7, 0.7, 1))  # other data: not the same runs
    rows = read_csv(run_compare(capsys, tmp_path, "--format", "csv"))
    assert [(row["runs"], row["n"], row["dataset.seed"]) for row in rows] == [("0_a;1_b", "2", ""), ("2_c", "1", "1")]


def test_group_table_and_markdown_carry_the_csv_columns(seeds, capsys):
    header = ["runs", "model.width", "model.name", *compare.GROUP_COLUMNS]
    assert list(read_csv(run_compare(capsys, seeds, "--format", "csv"))[0]) == header
    table = run_compare(capsys, seeds).splitlines()
    assert table[2].split() == ["0_seed-0", "+3", "16", "-", "3", "98.50%", "0.10%", "98.40%", "98.25%", "98.75%",
                                "99.20%", "0.20%", "11.0", "top", "1", "failed"]  # seed 3 failed
    markdown = run_compare(capsys, seeds, "--format", "markdown", "--top", "2").splitlines()
    assert markdown[0] == "| " + " | ".join(header) + " |" and len(markdown) == 2 + 2
    assert markdown[3].startswith("| 3_seed-0 +2 | 12 | - | 3 | 98.00% | 0.20% | 97.80% | 97.50% | 98.50% |")


def marker_at(pixels: np.ndarray, colour: str) -> tuple[int, int] | None:
    """Where a point of ``colour`` (a filled dot, 5 px across) is: the centre of the 5 x 5 square most filled with
    that colour, if at least 20 of its pixels are (lines, rings and the edges of text fill far fewer)."""
    rgb = np.array([round(255 * channel) for channel in to_rgb(colour)])
    mask = (np.abs(pixels - rgb).max(axis=-1) <= 1).astype(int)
    sums = np.pad(mask, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    boxes = sums[5:, 5:] - sums[:-5, 5:] - sums[5:, :-5] + sums[:-5, :-5]  # each 5 x 5 square's count
    row, col = np.unravel_index(boxes.argmax(), boxes.shape)
    return (int(row) + 2, int(col) + 2) if boxes[row, col] >= 20 else None


def marker_colours(pixels: np.ndarray) -> list[str]:
    """Which of matplotlib's ten cycle colours (C0, C1, ...) have a point in the picture."""
    return [f"C{i}" for i in range(10) if marker_at(pixels, f"C{i}") is not None]


def test_the_plot_is_a_png_of_the_rows(seeds, tmp_path, capsys):
    # A point per row, each in the next colour of matplotlib's cycle: the 4 seed groups, or the 9 completed runs
    # (the failed one has no accuracy to plot).
    for args, points in (([], 4), (["--runs"], 9)):
        plot = tmp_path / f"plot{len(args)}.png"
        run_compare(capsys, seeds, "--plot", plot, *args)
        pixels = read_png(plot)
        assert pixels.shape == (550, 800, 3)  # 8 x 5.5 inches at 100 dpi
        assert marker_colours(pixels) == [f"C{i}" for i in range(points)]


def test_long_labels_do_not_squeeze_the_plot(tmp_path, capsys):
    """Runs that differ in many keys: each label is cut short, and the axes keep their size."""
    keys = [f"model.key_number_{i}" for i in range(12)]
    for number in range(6):
        make_run(tmp_path / f"{number}_run", [f"{key}={number}" for key in keys], completed(0.9, 0.9 + number / 100))
    plot = tmp_path / "plot.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns when constrained layout collapses the axes
        run_compare(capsys, tmp_path, "--runs", "--plot", plot)
    pixels = read_png(plot)
    assert pixels.shape == (550, 800, 3) and marker_colours(pixels) == [f"C{i}" for i in range(6)]
    # The six runs' accuracies (90% to 95%, one training time) spread evenly over most of the figure's height, one
    # above the other: the axes were not squeezed to make room for the labels.
    rows, columns = zip(*(marker_at(pixels, f"C{i}") for i in range(6)))
    steps = np.diff(rows)  # the rows come best first: each point 1% of accuracy below the one before
    assert (steps > 0).all() and steps.max() - steps.min() <= 2
    assert rows[-1] - rows[0] > 300 and max(columns) - min(columns) <= 1


# --- A --vs B ---

def paired_runs(tmp_path: Path, only_a: int, only_b: int, both: int = 80, neither: int = 10) -> tuple[Path, Path]:
    """Two runs on the same test set: ``only_a`` images only A gets right, ``only_b`` only B."""
    true = np.arange(both + only_a + only_b + neither) % 10
    wrong = (true + 1) % 10
    a = np.concatenate([true[:both + only_a], wrong[both + only_a:]])
    b = np.concatenate([true[:both], wrong[both:both + only_a], true[both + only_a:both + only_a + only_b],
                        wrong[both + only_a + only_b:]])
    dirs = []
    for name, predicted, width in (("a", a, 8), ("b", b, 16)):
        accuracy = float((predicted == true).mean())
        dirs.append(make_job(tmp_path / "pair", name, {"model.width": width}, done(accuracy, accuracy, 1),
                             (predicted, true)))
    return dirs[0], dirs[1]


def test_two_runs_b_better_by_mcnemar(tmp_path, capsys):
    a, b = paired_runs(tmp_path, only_a=1, only_b=9)
    assert run_compare(capsys, a, "--vs", b).splitlines() == [
        "A  model.width=8: test accuracy 81.00% (81 of 100)",
        "B  model.width=16: test accuracy 89.00% (89 of 100)",
        "Only A gets 1 test image right, only B 9: exact McNemar test, p = 0.0215.",
        ("B is better: it gets 8 more of the 100 test images right, and a split of the 10 disagreements this uneven "
         "has p = 0.021 if the two were equally good. (One run each: whether the setting is better, not just this "
         "run, needs seed groups.)")]


def test_two_runs_within_noise_by_mcnemar(tmp_path, capsys):
    a, b = paired_runs(tmp_path, only_a=5, only_b=0)
    lines = run_compare(capsys, a, "--vs", b).splitlines()
    assert lines[2:] == ["Only A gets 5 test images right, only B 0: exact McNemar test, p = 0.0625.",
                         ("The difference is within noise: A gets 5 more test images right, but a split of the 5 "
                          "disagreements this uneven happens by chance (p = 0.06).")]


def test_two_seed_groups_by_welch(seeds, capsys):
    sixteen = [seeds / "0_seed-0", seeds / "1_seed-1", seeds / "2_seed-2"]
    twelve = [seeds / "3_seed-0", seeds / "4_seed-1", seeds / "5_seed-2"]
    lines = run_compare(capsys, *twelve, "--vs", *sixteen, seeds / "9_seed-3").splitlines()  # the failed run: left out
    # By hand: difference 0.005, standard error sqrt(0.002**2/3 + 0.001**2/3), df = 25 / (17/2) = 50/17.
    se = math.sqrt(5e-6 / 3)
    half = stats.t_quantile(0.975, 50 / 17) * se
    assert 3.1824 < stats.t_quantile(0.975, 50 / 17) < 4.3027  # between the df=3 and df=2 table values
    interval = f"{100 * (0.005 - half):+.2f} to {100 * (0.005 + half):+.2f} points"
    assert lines[0] == "A  model.width=12: 3 runs, mean test accuracy 98.00% (std 0.20, 95% interval 97.50% to 98.50%)"
    assert lines[1].startswith("B  model.width=16: 3 runs, mean test accuracy 98.50% (std 0.10,")
    assert lines[2].startswith(f"B - A: +0.50 points, 95% interval {interval} (Welch, 2.9 degrees of freedom, p = ")
    assert lines[3] == (f"B is better: its mean test accuracy is 0.50 points higher, and the 95% interval of the "
                        f"difference ({interval}) does not include zero.")
    swapped = run_compare(capsys, *sixteen, "--vs", *twelve).splitlines()
    assert swapped[3].startswith("A is better: its mean test accuracy is 0.50 points higher")


def test_two_noisy_seed_groups_are_within_noise(tmp_path, capsys):
    a = [make_job(tmp_path, f"a{seed}", {"model.width": 4, "seed": seed}, done(acc, acc, 1))
         for seed, acc in enumerate((0.90, 0.95))]
    b = [make_job(tmp_path, f"b{seed}", {"model.width": 8, "seed": seed}, done(acc, acc, 1))
         for seed, acc in enumerate((0.91, 0.96))]
    # Variances 0.00125 each: standard error sqrt(2 * 0.00125 / 2) = 0.035355, df 2, so 0.01 +- 4.3027 * 0.035355;
    # t = 0.28284 and, by the closed form of 2 degrees of freedom, p = 1 - t / sqrt(2 + t**2) = 0.8039.
    lines = run_compare(capsys, *a, "--vs", *b).splitlines()
    assert lines[2] == ("B - A: +1.00 points, 95% interval -14.21 to +16.21 points (Welch, 2.0 degrees of freedom, "
                        "p = 0.804).")
    assert lines[3] == ("The difference is within noise: the 95% interval of B - A (-14.21 to +16.21 points) includes "
                        "zero, so these runs cannot tell which is better.")


def wrong_vs(capsys, *args) -> str:
    assert compare.main([str(arg) for arg in args]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    return err.removeprefix("python -m mnist_exp.tools.compare: ").rstrip("\n")


def test_wrong_comparisons_are_one_line(seeds, tmp_path, capsys):
    a, b = paired_runs(tmp_path, only_a=1, only_b=9)
    assert wrong_vs(capsys, seeds, "--vs", a) == (
        "A holds 4 seed groups, not one (they differ in model.width, model.name): give the runs of one group, e.g. "
        "the job directories of a sweep that share a setting (sweep/0_* sweep/2_*).")
    assert wrong_vs(capsys, a, "--vs", seeds / "0_seed-0", seeds / "1_seed-1") == (
        "A has 1 completed run and B 2: compare one run with one run (McNemar's test on their predictions), or two "
        "seed groups of two runs or more (Welch).")
    shared = seeds / "1_seed-1"
    assert wrong_vs(capsys, seeds / "0_seed-0", shared, "--vs", shared, seeds / "2_seed-2") == (
        f"A and B share 1 run ({shared.resolve()}...): give each run to one side, A before --vs, B after it.")
    assert wrong_vs(capsys, a, "--vs", seeds / "9_seed-3") == ("B has no completed run (failed): compare runs that "
                                                               "finished their test.")
    assert wrong_vs(capsys, a, "--vs", seeds / "0_seed-0") == (
        f"{seeds / '0_seed-0'} has no {PREDICTIONS_FILE}: a run writes it when it completes its test. "
        "Compare completed runs.")
    assert wrong_vs(capsys, a, "--vs", b, "--runs") == ("--vs compares A with B: leave out --runs, --top, --format, "
                                                        "--plot and --compute, which shape the leaderboard.")
    assert wrong_vs(capsys, a, "--vs", b, "--compute") == wrong_vs(capsys, a, "--vs", b, "--runs")
    assert wrong_vs(capsys, a, "--vs", b, "--format", "table") == wrong_vs(capsys, a, "--vs", b, "--runs")
    assert wrong_vs(capsys, seeds, "--plot", tmp_path / "plot.svg") == f"--plot {tmp_path / 'plot.svg'}: give a file " \
                                                                       "name ending in .png."


def test_a_foreign_or_corrupt_predictions_file_is_refused(tmp_path, capsys):
    a, b = paired_runs(tmp_path, only_a=1, only_b=9)
    predicted, true, _ = read_predictions(b)
    write_predictions(b, predicted[:50], true[:50])  # another test set, and the accuracy still 89/100 in metrics
    write_metrics(b, done(float((predicted[:50] == true[:50]).mean()), 0.9, 1))
    assert wrong_vs(capsys, a, "--vs", b) == ("A and B were tested on different test sets (100 and 50 images): "
                                              "compare runs of the same dataset.")
    write_predictions(b, (predicted + 1) % 10, true)  # right length, wrong run: its accuracy is not the recorded one
    assert wrong_vs(capsys, a, "--vs", b) == (f"{b / PREDICTIONS_FILE} does not belong to its run: its accuracy is "
                                              "0.00%, the run's metrics.json says 100.00%.")
    (b / PREDICTIONS_FILE).write_bytes(b"PK\x03\x04 cut short")
    message = wrong_vs(capsys, a, "--vs", b)
    assert message.startswith(f"{b / PREDICTIONS_FILE} is not a predictions file that python -m mnist_exp wrote (")
    np.savez(b / PREDICTIONS_FILE, predicted=np.zeros((2, 2), dtype=np.int64), true=np.zeros((2, 2), dtype=np.int64))
    assert wrong_vs(capsys, a, "--vs", b) == (f"{b / PREDICTIONS_FILE} is not a predictions file that python -m "
                                              "mnist_exp wrote (predicted labels int64[2, 2], true labels "
                                              "int64[2, 2]).")


def test_runs_tested_on_other_images_with_the_same_labels_are_not_paired(tmp_path, capsys):
    a, b = paired_runs(tmp_path, only_a=1, only_b=9)
    predicted_a, true, _ = read_predictions(a)
    predicted_b, _, _ = read_predictions(b)
    write_predictions(a, predicted_a, true, "0123456789abcdef")
    write_predictions(b, predicted_b, true, "fedcba9876543210")  # other images behind the same labels
    assert wrong_vs(capsys, a, "--vs", b) == (
        "A and B were tested on different images with the same labels (their test images' fingerprints differ: other "
        "files, or the same ones in another form, e.g. another dataset.image_size): compare runs tested on the same "
        "images.")
    write_predictions(b, predicted_b, true, "0123456789abcdef")
    assert "exact McNemar test" in run_compare(capsys, a, "--vs", b)


# --- a real sweep ---

def test_a_real_seed_sweep_is_two_groups_of_two_and_compares(tmp_path, monkeypatch, capsys):
    code, _, err = run_main("-m", "dataset=fake", "trainer.epochs=1", "model=cnn", "model.width=4,8", "seed=0,1",
                            "device=cpu", "device.threads=1", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err[-2000:]
    [sweep_dir] = (tmp_path / "outputs" / "multirun").glob("*/*")
    jobs = run_dirs(sweep_dir)
    rows = read_csv(run_compare(capsys, sweep_dir, "--format", "csv"))
    assert [(row["model.width"], row["n"], row["not completed"]) for row in rows] in (
        [("4", "2", "0"), ("8", "2", "0")], [("8", "2", "0"), ("4", "2", "0")])
    for row in rows:
        members = [job for job in jobs if f"model.width-{row['model.width']}_" in job.name]
        tests = [read_metrics(job)["test/acc"] for job in members]
        assert float(row["test acc"]) == pytest.approx(sum(tests) / 2) and float(row["test min"]) == min(tests)
        assert sorted(row["runs"].split(";")) == sorted(job.name for job in members)
    for job in jobs:  # each run's predictions are its test: 256 fake images, its recorded accuracy
        predicted, true, images = read_predictions(job)
        assert images == read_predictions(jobs[0])[2]  # one test set: its fingerprint
        assert len(true) == 256 and float((predicted == true).mean()) == pytest.approx(read_metrics(job)["test/acc"])
    runs = read_csv(run_compare(capsys, sweep_dir, "--runs", "--format", "csv"))
    assert sorted(row["run"] for row in runs) == sorted(job.name for job in jobs)
    for row in runs:
        metrics = read_metrics(Path(row["path"]))
        assert row["status"] == metrics["status"] == "completed"
        assert float(row["test acc"]) == metrics["test/acc"] and float(row["train s"]) == metrics["train_time_s"]
    # The jobs in Hydra's order: seed varies fastest.
    lines = run_compare(capsys, jobs[0], "--vs", jobs[2]).splitlines()
    assert lines[0].startswith("A  model.width=4: test accuracy") and "exact McNemar test" in lines[2]
    lines = run_compare(capsys, jobs[0], jobs[1], "--vs", jobs[2], jobs[3]).splitlines()
    assert lines[0].startswith("A  model.width=4: 2 runs") and lines[2].startswith("B - A: ")


def test_runs_in_bf16_and_in_fp32_are_two_groups_named_by_the_precision_that_ran(tmp_path, monkeypatch, capsys):
    """bf16 changes a run's numbers: runs that differ in it are not one seed group, and auto is what it became."""
    code, _, err = run_main("-m", "dataset=fake", "trainer.epochs=1", "model.width=4", "device.precision=fp32,bf16",
                            "seed=0,1", "device=cpu", "device.threads=1", monkeypatch=monkeypatch, capsys=capsys,
                            cwd=tmp_path)
    assert code == 0, err[-2000:]
    [sweep_dir] = (tmp_path / "outputs" / "multirun").glob("*/*")
    rows = read_csv(run_compare(capsys, sweep_dir, "--format", "csv"))
    assert sorted((row["device.precision"], row["n"]) for row in rows) == [("bf16", "2"), ("fp32", "2")]
    code, out, err = run_main("dataset=fake", "trainer.epochs=1", "model.width=4", "device=cpu", "device.threads=1",
                              "hydra.run.dir=auto", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    ran = "bf16" if "bf16 autocast" in out + err else "fp32"  # the run's Device line
    assert code == 0 and read_metrics(tmp_path / "auto")["precision"] == ran
    assert {read_metrics(run)["threads"] for run in [tmp_path / "auto", *run_dirs(sweep_dir)]} == {1}  # what ran
    assert load_checkpoint(tmp_path / "auto" / "checkpoints" / "best.pt")["config"]["device"]["precision"] == ran


def test_runs_cut_to_batches_of_another_eval_batch_size_are_not_one_group(tmp_path, monkeypatch, capsys):
    """With trainer.limit_batches, trainer.eval_batch_size sets how many test images a run has (64 or 128 here):
    runs that differ in it measured different things, not one setting's seeds."""
    runs = tmp_path / "runs"
    for seed, size in [(0, 32), (1, 64), (2, 32)]:
        code, _, err = run_main("dataset=fake", "trainer.epochs=1", "trainer.limit_batches=2", "model.width=4",
                                f"trainer.eval_batch_size={size}", f"seed={seed}", "device=cpu", "device.threads=1",
                                f"hydra.run.dir={runs / f'{seed}_eval-{size}'}", monkeypatch=monkeypatch,
                                capsys=capsys, cwd=tmp_path)
        assert code == 0, err[-2000:]
    assert [len(read_predictions(runs / name)[1]) for name in ("0_eval-32", "1_eval-64")] == [64, 128]
    rows = read_csv(run_compare(capsys, runs, "--format", "csv"))
    assert sorted((row["trainer.eval_batch_size"], row["runs"], row["n"]) for row in rows) == [
        ("32", "0_eval-32;2_eval-32", "2"), ("64", "1_eval-64", "1")]
    assert compare.main([str(runs / "0_eval-32"), str(runs / "1_eval-64"), "--vs", str(runs / "2_eval-32")]) == 1
    assert capsys.readouterr().err == (
        "python -m mnist_exp.tools.compare: A holds 2 seed groups, not one (they differ in trainer.eval_batch_size): "
        "give the runs of one group, e.g. the job directories of a sweep that share a setting (sweep/0_* sweep/2_*).\n")


@pytest.mark.parametrize("debug, rows", [({}, 1), ({"trainer.overfit_batches": 2}, 1),
                                         ({"trainer.limit_batches": 2}, 2)])
def test_eval_batch_size_tells_runs_apart_only_where_limit_batches_cuts_the_test_split(tmp_path, capsys, debug, rows):
    """A full run, or one with trainer.overfit_batches (which cuts the training split only), tests every test image
    at any eval_batch_size: its batches change the speed alone."""
    for seed, size in enumerate([32, 64]):
        make_job(tmp_path, f"{seed}_eval-{size}", {**debug, "trainer.eval_batch_size": size, "seed": seed},
                 done(0.9, 0.9, 1))
    assert len(read_csv(run_compare(capsys, tmp_path, "--format", "csv"))) == rows


def test_runs_known_by_their_overrides_alone_with_a_debug_preset_keep_their_eval_batch_sizes_apart(tmp_path, capsys):
    """Without a config.yaml, debug=one_batch is all there is to say the run cut its splits (to limit_batches=1)."""
    for seed, size in enumerate([32, 64]):
        make_run(tmp_path / f"{seed}_eval-{size}", ["debug=one_batch", f"trainer.eval_batch_size={size}",
                                                    f"seed={seed}"], completed(0.9, 0.9))
    rows = read_csv(run_compare(capsys, tmp_path, "--format", "csv"))
    assert sorted((row["trainer.eval_batch_size"], row["n"]) for row in rows) == [("32", "1"), ("64", "1")]


def test_help_says_how_to_pick_a_and_b(capsys):
    assert compare.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "compare SWEEP/0_* --vs SWEEP/3_*" in text and "95% interval" in text and "%%" not in text


def test_runs_without_a_config_yaml_group_by_their_overrides(sweep, capsys):
    rows = read_csv(run_compare(capsys, sweep, "--format", "csv"))
    assert [(row["model"], row["optimizer.lr"], row["n"], row["not completed"]) for row in rows] == [
        ("mlp", "", "1", "0"), ("cnn", "", "1", "0"), ("logreg", "", "1", "0"), ("cnn", "1e12", "0", "1"),
        ("mlp", "0.1", "0", "1")]  # by test accuracy; groups without a completed run last
    assert rows[-1]["test acc"] == "" and rows[0]["overlaps top"] == "top" and rows[1]["overlaps top"] == "-"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="the Makefile's targets need make")
@pytest.mark.parametrize("target, advice", [
    ("compare", "make compare: no sweep in outputs/multirun yet: run make sweep, or give DIR=<a run, a sweep or a "
                "folder of runs>."),
    ("dashboard", "make dashboard: no search in outputs/multirun yet: run make search, or give STUDY=<storage URL or "
                  "journal file>."),
])
def test_make_compare_and_dashboard_before_any_sweep_say_what_to_run(tmp_path, target, advice):
    (tmp_path / "pyproject.toml").touch()
    os.utime(tmp_path / "pyproject.toml", (0, 0))  # older than the environment's install stamp: nothing to install
    makefile = Path(__file__).resolve().parents[1] / "Makefile"
    made = subprocess.run(["make", "--no-print-directory", "-f", str(makefile), target,
                           f"VENV={Path(sys.executable).parents[1]}"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert made.returncode != 0 and made.stderr.splitlines()[0] == advice and "Traceback" not in made.stderr
