"""Real MNIST, through the real entry point: the accuracy the README promises."""

import pytest

from conftest import read_metrics, run_dirs, run_module


@pytest.mark.slow
def test_default_cnn_reaches_98_5_percent_in_one_epoch(tmp_path):
    result = run_module("mnist_exp", "model=cnn", "trainer.epochs=1", cwd=tmp_path)
    [run_dir] = run_dirs(tmp_path / "outputs")
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["epoch"] == 1
    assert metrics["test/acc"] >= 0.985, result.stdout[-2000:]
