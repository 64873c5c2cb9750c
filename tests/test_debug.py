"""The debug presets: ``debug=one_batch`` (a batch of each split through everything), ``debug=overfit`` (a few
batches learnt by heart) and ``debug=profile`` (torch's profiler into the run directory)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import read_events, read_metrics, run_main

SMALL = ("dataset=fake", "trainer.batch_size=64", "trainer.eval_batch_size=32", "device=cpu", "device.threads=1")


def run(tmp_path, monkeypatch, capsys, *args: str):
    run_dir = tmp_path / "run"
    code, _, err = run_main(*SMALL, *args, f"hydra.run.dir={run_dir}", monkeypatch=monkeypatch, capsys=capsys,
                            cwd=tmp_path)
    assert code == 0, err
    return run_dir


def test_one_batch_of_every_split_goes_through_the_whole_pipeline(tmp_path, monkeypatch, capsys):
    run_dir = run(tmp_path, monkeypatch, capsys, "debug=one_batch")
    log = (run_dir / "train.log").read_text()
    assert "Dataset fake: 64 train, 32 validation, 32 test images" in log and "epoch 1/1" in log
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["epoch"] == 1
    assert all((run_dir / name).is_file() for name in ("checkpoints/best.pt", "checkpoints/last.pt", "curves.png",
                                                       "confusion_matrix.png", "test_predictions.npz"))
    assert len(read_events(run_dir).Scalars("val/acc")) == 1


@pytest.mark.parametrize("recipe", ["best", "examples_mnist"])
def test_one_batch_runs_a_recipe_whose_schedule_or_average_needs_a_longer_run(recipe, tmp_path, monkeypatch, capsys):
    """Outside a debug run, best's ema_decay=0.998 and examples_mnist's step schedule are refused in a run of one
    step (the average's warm-up and the first step of the rate come later); a debug run's cut steps are not held
    to the run's length (nor by another key given beside: gamma leaves the step where the recipe put it)."""
    given = ["scheduler.gamma=0.5"] if recipe == "examples_mnist" else []
    run_dir = run(tmp_path, monkeypatch, capsys, f"experiment={recipe}", "debug=one_batch", "trainer.tta=false", *given)
    assert read_metrics(run_dir)["status"] == "completed"
    code, _, err = run_main(*SMALL, f"experiment={recipe}", "trainer.epochs=1", "trainer.tta=false",
                            monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.startswith("trainer.ema_decay=0.998 is never reached" if recipe == "best" else
                                        "scheduler.step_size=1: the rate first changes after epoch 1"), err
    key = "trainer.ema_decay" if recipe == "best" else "scheduler.step_size"
    assert err.endswith(f" (experiment={recipe} sets {key}.)\n"), err  # the user did not type it: the recipe did


def test_a_refused_value_that_a_debug_preset_set_names_the_preset(tmp_path, monkeypatch, capsys):
    """debug=profile's 20 batches are more than fake data's 16: the refusal says where the 20 came from, and says
    nothing of the preset where the command line gave the value."""
    code, _, err = run_main(*SMALL, "debug=profile", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and err == ("trainer.limit_batches=20 is more batches than the training split's 16: give at most "
                                 "16, or null for every batch. (debug=profile sets trainer.limit_batches.)\n"), err
    code, _, err = run_main(*SMALL, "debug=profile", "trainer.limit_batches=17", monkeypatch=monkeypatch, capsys=capsys,
                            cwd=tmp_path)
    assert code == 1 and err.endswith("give at most 16, or null for every batch.\n"), err


def test_overfit_learns_its_few_batches_by_heart(tmp_path, monkeypatch, capsys):
    run_dir = run(tmp_path, monkeypatch, capsys, "debug=overfit", "model=mlp")
    assert "Dataset fake: 128 train, 128 validation, 256 test images" in (run_dir / "train.log").read_text()
    assert read_metrics(run_dir)["best_val/acc"] == 1.0  # the validation images are the two training batches


def test_a_validation_split_given_to_an_overfit_run_is_refused(tmp_path, monkeypatch, capsys):
    """Overfitting validates on its own training batches: a dataset.val_size given beside it held out images no epoch
    saw or validated on (on fake data it changed nothing at all). A recipe's own val_size (experiment=fast's 0) stays
    as the recipe has it."""
    args = (*SMALL, "debug=overfit", "model=logreg", "trainer.epochs=2")
    code, _, err = run_main(*args, "dataset.val_size=64", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines() == [
        "dataset.val_size=64 takes no effect: trainer.overfit_batches=2 validates on its own training batches, not on "
        "a held-out split. Leave dataset.val_size out, or give trainer.overfit_batches=null to validate on that split."]
    code, _, err = run_main(*args, "dataset.val_size=64", "trainer.overfit_batches=null",
                            monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)  # the advice, followed
    assert code == 0, err
    run_dir = run(tmp_path, monkeypatch, capsys, "experiment=fast", "debug=overfit", "trainer.epochs=1")
    assert read_metrics(run_dir)["best_val/acc"] is not None  # validated on its training batches


def test_an_eval_batch_size_beyond_the_splits_is_refused_in_a_debug_run_too(tmp_path, monkeypatch, capsys):
    """With trainer.limit_batches the eval batch sizes the validation and test splits: above them, every larger one
    ran the same whole splits."""
    code, _, err = run_main(*SMALL, "debug=one_batch", "trainer.eval_batch_size=300", monkeypatch=monkeypatch,
                            capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines() == [
        "trainer.eval_batch_size=300 is more than the 256 images of the largest split it evaluates (256 validation, "
        "256 test): every larger batch is the same single batch, so give at most 256."]


def test_profile_writes_a_trace_and_logs_the_top_operators(tmp_path, monkeypatch, capsys):
    run_dir = run(tmp_path, monkeypatch, capsys, "debug=profile", "trainer.limit_batches=3")
    trace = json.loads((run_dir / "profile.json").read_text())
    names = {event.get("name") for event in trace["traceEvents"]}
    assert any(str(name).startswith("aten::") for name in names)
    log = (run_dir / "train.log").read_text()
    assert f"Profile: {run_dir / 'profile.json'}" in log and "Self CPU time total" in log


@pytest.mark.slow  # a process of its own: the profiler's library writes to the process's stderr itself
def test_profile_on_a_cpu_machine_prints_none_of_the_profilers_own_lines(tmp_path):
    environment = {key: value for key, value in os.environ.items() if key != "KINETO_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-m", "mnist_exp", *SMALL, "debug=profile", "trainer.limit_batches=3",
                             f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, env=environment, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "profile.json").is_file()
    assert "USDT:" not in result.stderr and "gpuGetDeviceCount" not in result.stderr, result.stderr[-3000:]


@pytest.mark.parametrize("key", ["limit_batches", "overfit_batches"])
def test_a_batch_limit_below_one_is_one_line(key, tmp_path, monkeypatch, capsys):
    code, _, err = run_main(*SMALL, f"trainer.{key}=0", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.strip() == (f"trainer.{key}=0 is out of range: give a number of batches of at least 1, "
                                         "or null for every batch.")


def test_profile_under_torchrun_is_process_0s_alone(tmp_path, monkeypatch):
    """Every process of a torchrun has rank 0's run directory: the others profiling too wrote one profile.json
    from two processes at once, which left none at all where their renames crossed."""
    import torch

    from mnist_exp.run.debugging import profiled

    for rank, written in (("1", False), ("0", True)):
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setenv("WORLD_SIZE", "2")
        with profiled(True, tmp_path):
            torch.ones(4).sum()
        assert (tmp_path / "profile.json").is_file() == written, rank
