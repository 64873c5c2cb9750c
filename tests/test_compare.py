"""``python -m mnist_exp.compare``: the leaderboard of runs, on made-up run directories and on a real sweep."""

import csv
import io
import json
from pathlib import Path

import pytest
import yaml

from conftest import read_metrics, run_app, run_dirs, run_module
from mnist_exp import compare


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
    rows = read_csv(run_compare(capsys, sweep, "--format", "csv"))
    assert [row["run"] for row in rows] == ["1_model-mlp", "2_model-cnn", "0_model-logreg",
                                            "3_model-cnn_optimizer.lr-1e12", "4_model-mlp_optimizer.lr-0.1"]
    assert [row["status"] for row in rows] == ["completed"] * 3 + ["failed", "unfinished"]
    assert rows[3]["error"] == "Training diverged: the loss is nan at step 3"
    assert float(rows[0]["best val acc"]) == 0.95 and float(rows[0]["test acc"]) == 0.94
    assert rows[0]["params"] == "109386" and rows[0]["epochs"] == "2" and float(rows[0]["train s"]) == 1.25
    assert Path(rows[0]["path"]) == (sweep / "1_model-mlp").resolve()


def test_only_the_overrides_that_differ_are_columns(sweep, capsys):
    header = read_csv(run_compare(capsys, sweep, "--format", "csv"))[0].keys()
    assert list(header) == ["run", "model", "optimizer.lr", *compare.METRIC_COLUMNS, "error", "path"]
    rows = read_csv(run_compare(capsys, sweep, "--format", "csv"))
    assert [row["optimizer.lr"] for row in rows] == ["", "", "", "1e12", "0.1"]  # absent: the config's value


def test_table_and_markdown_are_readable(sweep, capsys):
    table = run_compare(capsys, sweep).splitlines()
    assert table[0].split() == ["run", "model", "optimizer.lr", "best", "val", "acc", "test", "acc", "epochs",
                                "train", "s", "params", "status"]
    assert set(table[1]) <= {"-", " "}
    assert table[2].split() == ["1_model-mlp", "mlp", "-", "95.00%", "94.00%", "2", "1.2", "109,386", "completed"]
    assert "failed: Training diverged" in table[5]
    markdown = run_compare(capsys, sweep, "--format", "markdown").splitlines()
    assert markdown[0] == ("| run | model | optimizer.lr | best val acc | test acc | epochs | train s | params "
                           "| status |")
    assert markdown[1].startswith("|---|---|") and len(markdown) == 2 + 5


def test_top_n_keeps_the_best_and_the_columns_of_all(sweep, capsys):
    rows = read_csv(run_compare(capsys, sweep, "--format", "csv", "--top", "2"))
    assert [row["run"] for row in rows] == ["1_model-mlp", "2_model-cnn"]
    assert "optimizer.lr" in rows[0]


def test_several_paths_single_runs_and_sweeps_together(sweep, tmp_path, capsys):
    single = make_run(tmp_path / "runs" / "2026-01-01" / "09-00-00", [], completed(0.99, 0.98))
    rows = read_csv(run_compare(capsys, sweep, single, sweep / "1_model-mlp", "--format", "csv"))
    assert len(rows) == 6  # the run given twice is listed once
    assert rows[0]["run"] == "runs/2026-01-01/09-00-00" and rows[0]["model"] == ""
    assert rows[1]["run"] == "multirun/2026-01-01/10-00-00/1_model-mlp"


def test_an_unreadable_metrics_json_is_named_and_listed_as_unreadable(sweep, capsys):
    broken = make_run(sweep / "5_model-logreg_optimizer.lr-0.5", ["model=logreg", "optimizer.lr=0.5", "dataset=fake"],
                      None)
    (broken / "metrics.json").write_text('{"status": "compl')  # cut short, as a full disk leaves it
    reason = "is not valid JSON (Unterminated string starting at: line 1 column 12 (char 11))"
    warning = f"warning: {broken.resolve() / 'metrics.json'} {reason}; the run is listed as unreadable.\n"
    assert compare.main([str(sweep), "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    rows = read_csv(out)
    assert rows[-1]["run"] == broken.name and rows[-1]["status"] == "unreadable"
    assert rows[-1]["error"] == f"metrics.json {reason}" and err == warning
    assert compare.main([str(sweep)]) == 0
    out, err = capsys.readouterr()
    [line] = [line for line in out.splitlines() if line.startswith(broken.name)]
    assert line.endswith("unreadable: metrics.json is not valid JSON (Unterminated string start...")
    assert err == warning


PROG = "python -m mnist_exp.compare"


@pytest.mark.parametrize("args, code, message", [
    (["no/such/dir"], 1, "no/such/dir does not exist. Give a run directory or a directory of runs."),
    (["empty"], 1, "No runs under empty (a run directory holds .hydra/ and metrics.json, as python -m mnist_exp "
                   "writes them)."),
    (["empty/file.txt"], 1, "empty/file.txt is not a directory. Give a run directory or a directory of runs."),
    (["sweep", "--format", "xml"], 2,
     "argument --format: invalid choice: 'xml' (choose from 'table', 'csv', 'markdown'). See --help."),
    (["sweep", "--top", "0"], 2, "argument --top: '0' is not a whole number of at least 1. See --help."),
    ([], 2, "the following arguments are required: dir. See --help."),
])
def test_wrong_input_is_one_line_and_a_nonzero_exit(sweep, tmp_path, args, code, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "file.txt").write_text("")
    (tmp_path / "sweep").symlink_to(sweep)
    result = run_module("mnist_exp.compare", *args, cwd=tmp_path, expect_ok=False)
    assert (result.returncode, result.stdout, result.stderr) == (code, "", f"{PROG}: {message}\n")


def test_on_a_real_sweep_the_table_is_the_jobs_metrics(tmp_path):
    run_app("-m", "model=logreg", "optimizer=sgd", "scheduler=none", "optimizer.lr=-1,0.05,0.2", "dataset=fake",
            "trainer.epochs=1", cwd=tmp_path, expect_ok=False)
    [sweep_dir] = (tmp_path / "outputs" / "multirun").glob("*/*")
    result = run_module("mnist_exp.compare", str(sweep_dir), "--format", "csv", cwd=tmp_path)
    rows = read_csv(result.stdout)
    assert sorted(row["run"] for row in rows) == sorted(job.name for job in run_dirs(sweep_dir))
    assert [row["optimizer.lr"] for row in rows][-1] == "-1"  # the failed job last
    for row in rows:
        metrics = read_metrics(Path(row["path"]))
        assert row["status"] == metrics["status"]
        if metrics["status"] == "completed":
            assert float(row["best val acc"]) == metrics["best_val/acc"]
            assert float(row["test acc"]) == metrics["test/acc"]
            assert int(row["epochs"]) == metrics["epoch"] and int(row["params"]) == metrics["params"]
            assert float(row["train s"]) == metrics["train_time_s"]
        else:
            assert row["error"] == metrics["error"] and "out of range" in row["error"]
    completed_rows = rows[:2]
    assert float(completed_rows[0]["best val acc"]) >= float(completed_rows[1]["best val acc"])
