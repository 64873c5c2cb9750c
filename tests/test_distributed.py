"""Data-parallel training: torchrun with 2 CPU processes (gloo), against the same run in one process."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import read_events, read_metrics, run_main
from mnist_exp.run.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow  # torchrun starts the processes

# No dropout or batch norm: two processes averaging the gradients of half batches take the same
# steps as one process on the whole batch, up to the order of float sums.
ARGS = ("dataset=fake", "model=logreg", "trainer.epochs=2", "trainer.batch_size=64", "device=cpu")


def torchrun(*args: str, cwd: Path, expect_ok: bool = True) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    environment["OMP_NUM_THREADS"] = "1"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "mnist_exp", *args]
    result = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=300)
    if expect_ok and result.returncode != 0:
        pytest.fail(f"torchrun exited {result.returncode}:\n{result.stderr[-4000:]}")
    return result


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("ddp") / "run"
    torchrun(*ARGS, f"hydra.run.dir={run_dir}", cwd=run_dir.parent)
    return run_dir


def test_two_processes_train_like_one(two_processes, tmp_path, monkeypatch, capsys):
    code, _, err = run_main(*ARGS, "device.threads=1", f"hydra.run.dir={tmp_path / 'one'}", monkeypatch=monkeypatch,
                            capsys=capsys, cwd=tmp_path)  # the one process: this one
    assert code == 0, err[-3000:]
    one, two = read_metrics(tmp_path / "one"), read_metrics(two_processes)
    assert two["status"] == "completed" and two["epoch"] == 2
    for key in ("test/acc", "val/acc", "best_val/acc"):
        assert two[key] == one[key], key
    assert two["test/loss"] == pytest.approx(one["test/loss"], rel=1e-4)


def test_only_rank_zero_writes_the_run_directory(two_processes):
    # One process's event files: its training's, and its final record's.
    assert sorted(path.suffix == ".final" for path in two_processes.glob("events.out.tfevents.*")) == [False, True]
    assert [e.step for e in read_events(two_processes).Scalars("val/acc")] == [16, 32]  # 1024 images / 64 per step
    assert "process 0 of 2 (DDP)" in (two_processes / "train.log").read_text()
    checkpoint = load_checkpoint(two_processes / "checkpoints" / "last.pt")
    assert not any(key.startswith("module.") for key in checkpoint["trainer"]["model"])  # the plain model's weights
    assert checkpoint["trainer"]["state"]["epoch"] == 2 and checkpoint["epoch"] == 2
    assert not list(two_processes.parent.glob("outputs"))  # the other process created no directory of its own


@pytest.mark.parametrize("override, refusal", [
    ("trainer.batch_size=63", "trainer.batch_size=63 is the global batch: it must divide among the 2 processes"),
    ("model.widht=8", "Unknown key 'model.widht'. The keys of model: name, in_features."),  # Hydra's, in one line
])
def test_a_refusal_is_said_once_for_all_processes(override, refusal, tmp_path):
    result = torchrun(*ARGS, override, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, expect_ok=False)
    assert result.returncode != 0 and result.stderr.count(refusal) == 1, result.stderr[-3000:]


def test_data_refused_to_process_0_is_one_line_from_it_alone(tmp_path):
    """Process 0 reads the data first and refuses it; process 1, waiting for it, stops without a traceback."""
    (tmp_path / "bad.csv").write_text("label,pixel0\n1,0\nx,3\n")
    result = torchrun("dataset=csv", f"dataset.train={tmp_path / 'bad.csv'}", "model=logreg", "device=cpu",
                      f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, expect_ok=False)
    refusal = f"{tmp_path / 'bad.csv'}, line 3, column 1: the label 'x' is not a whole number"
    assert result.returncode != 0 and result.stderr.count(refusal) == 1, result.stderr[-3000:]
    assert "Error executing job" not in result.stderr and "Connection closed" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_an_early_stop_is_process_0s_for_every_process(tmp_path):
    """Each process's batch norms hold the statistics of its own share of the batches, so its validation accuracy is
    its own: here process 0's does not improve after epoch 5 and process 1's does. Every process follows process 0's,
    and stops with it: process 1 went on into epoch 6 alone, and failed there when process 0 had gone."""
    run_dir = tmp_path / "run"
    torchrun("dataset=fake", "dataset.val_size=20000", "model=cnn", "model.width=1", "optimizer.lr=0.03",
             "scheduler=none", "trainer.epochs=14", "trainer.patience=1", "trainer.batch_size=64", "device=cpu",
             "seed=0", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["stopped_early"] and metrics["epoch"] == 5


def test_a_divergence_on_one_process_stops_every_process_with_one_line(tmp_path):
    """Each process's loss is that of its own share of the batch. Two images, one a process: a blank one and a bright
    one. The first step makes the weights huge, and the second's loss is NaN on the bright image's process alone; that
    process stopped there and the other went on to its next all-reduce, and failed in gloo with the peer gone.
    Seed 1 gives the bright image to process 1: process 0, whose own loss is finite, must stop too and say why."""
    header = "label," + ",".join(f"pixel{i}" for i in range(784))
    for name in ("train.csv", "test.csv"):
        (tmp_path / name).write_text(f"{header}\n0,{','.join(['0'] * 784)}\n1,{','.join(['255'] * 784)}\n")
    result = torchrun("dataset=csv", f"dataset.train={tmp_path / 'train.csv'}", f"dataset.test={tmp_path / 'test.csv'}",
                      "dataset.val_size=0", "dataset.mean=0", "dataset.std=1", "model=logreg", "optimizer=sgd",
                      "optimizer.lr=1e37", "scheduler=none", "trainer.epochs=3", "trainer.batch_size=2",
                      "trainer.log_interval=1", "device=cpu", "seed=1", f"hydra.run.dir={tmp_path / 'run'}",
                      cwd=tmp_path, expect_ok=False)
    refusal = "Training diverged: the loss is nan at step 2 (learning rate 1e+37)."
    assert result.returncode != 0 and result.stderr.count(refusal) == 1, result.stderr[-3000:]
    assert "Error executing job" not in result.stderr and "Connection closed" not in result.stderr
    assert read_metrics(tmp_path / "run")["status"] == "failed"
