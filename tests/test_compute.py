"""Compute made visible: each run records its model's forward FLOPs per image (torch's flop counter) and the
training throughput in GFLOP/s (a training step taken as 3x the forward pass), in metrics.json and the log."""

import pytest

from conftest import read_metrics, run_main

# A linear layer's forward pass is one multiply-add (2 FLOPs) per weight: the counts follow from the sizes alone.
EXPECTED = {"logreg": 2 * 784 * 10, "mlp": 2 * (784 * 128 + 128 * 64 + 64 * 10)}


@pytest.mark.parametrize("model", sorted(EXPECTED))
def test_a_run_records_its_flops_per_image_and_its_training_gflops(model, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    code, _, err = run_main("dataset=fake", f"model={model}", "dataset.flatten=true", "trainer.epochs=1", "device=cpu",
                            f"hydra.run.dir={run_dir}", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err
    metrics = read_metrics(run_dir)
    assert metrics["flops_per_image"] == EXPECTED[model]
    assert metrics["train_gflops_per_s"] == pytest.approx(3 * EXPECTED[model] * metrics["samples_per_s"] / 1e9)
    log = (run_dir / "train.log").read_text()
    assert f"{EXPECTED[model] / 1e6:.2f} MFLOPs per image" in log
    assert f"training at {metrics['train_gflops_per_s']:.1f} GFLOP/s" in log


def test_the_leaderboard_shows_each_runs_compute(tmp_path, monkeypatch, capsys):
    from mnist_exp.tools import compare

    for model in sorted(EXPECTED):
        code, _, err = run_main("dataset=fake", f"model={model}", "trainer.epochs=1", "device=cpu",
                                f"hydra.run.dir={tmp_path / 'runs' / model}", monkeypatch=monkeypatch, capsys=capsys,
                                cwd=tmp_path)
        assert code == 0, err
    assert compare.main([str(tmp_path / "runs"), "--runs", "--compute", "--format", "csv"]) == 0
    rows = [line.split(",") for line in capsys.readouterr().out.strip().splitlines()]
    header, body = rows[0], rows[1:]
    assert header[-2:] == ["flops_per_image", "GFLOP/s"]
    for row in body:
        metrics = read_metrics(tmp_path / "runs" / row[0])
        assert float(row[-2]) == EXPECTED[row[0]] == metrics["flops_per_image"]
        assert float(row[-1]) == pytest.approx(metrics["train_gflops_per_s"])
    assert compare.main([str(tmp_path / "runs"), "--compute"]) == 1
    assert capsys.readouterr().err.strip() == ("python -m mnist_exp.tools.compare: --compute shows each run's compute: "
                                               "add --runs.")
