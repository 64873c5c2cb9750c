"""``init_from=<run directory or checkpoint>``: a new run starts from a trained run's weights, with its own data,
optimizer and epochs; another number of classes gives a new classifier; weights that do not fit are one line."""

import shutil

import pytest
import torch

from conftest import read_metrics, run_main
from mnist_exp.run.checkpoint import load_checkpoint, save_checkpoint

SMALL = ("dataset=fake", "model.width=4", "trainer.epochs=1", "device=cpu", "device.threads=1")
# Adam moves each weight by about lr a step: at 1e-9, the fine-tuned run ends where it started.
STILL = ("optimizer=adam", "optimizer.lr=1e-9", "scheduler=none")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as monkeypatch:
        code, _, err = run_main(*SMALL, f"hydra.run.dir={cwd / 'run'}", monkeypatch=monkeypatch, cwd=cwd)
    assert code == 0, err
    return cwd / "run"


def weights_after(run_dir) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["weights"]


def test_a_run_starts_from_every_trained_weight(trained, tmp_path, monkeypatch, capsys):
    code, _, err = run_main(*SMALL, *STILL, "seed=5", f"init_from={trained}", f"hydra.run.dir={tmp_path / 'tuned'}",
                            monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err
    start = load_checkpoint(trained / "checkpoints" / "best.pt")["weights"]
    tuned = weights_after(tmp_path / "tuned")
    learned = [key for key in start if not key.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert all(torch.allclose(tuned[key], start[key], atol=1e-6) for key in learned)
    log = (tmp_path / "tuned" / "train.log").read_text()
    assert f"Weights from {trained / 'checkpoints' / 'best.pt'} (epoch 1)\n" in log


def test_another_number_of_classes_gets_a_new_classifier_and_says_so(trained, tmp_path, monkeypatch, capsys):
    code, _, err = run_main(*SMALL, *STILL, "dataset.num_classes=5", f"init_from={trained / 'checkpoints/best.pt'}",
                            f"hydra.run.dir={tmp_path / 'tuned'}", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err
    start, tuned = load_checkpoint(trained / "checkpoints" / "best.pt")["weights"], weights_after(tmp_path / "tuned")
    assert tuned["5.weight"].shape == (5, 16 * 3 * 3) and start["5.weight"].shape == (10, 16 * 3 * 3)
    assert torch.allclose(tuned["0.0.weight"], start["0.0.weight"], atol=1e-6)  # the convs came over
    assert ("all but the classifier's: 5.weight, 5.bias start anew for 5 classes (10 there)"
            in (tmp_path / "tuned" / "train.log").read_text())


def test_weights_that_do_not_fit_are_one_line(trained, tmp_path, monkeypatch, capsys):
    code, _, err = run_main(*SMALL, "model.width=8", f"init_from={trained}", monkeypatch=monkeypatch, capsys=capsys,
                            cwd=tmp_path)
    advice = ("model=cnn model.width=4 model.stem_width=null model.in_channels=1 model.image_size=28 model.dropout=0.0 "
              "model.stem_norm=true")
    assert code == 1 and err.strip() == (
        f"init_from={trained}: its weights do not fit this model (0.0.weight is [4, 1, 5, 5] there, [8, 1, 5, 5] "
        f"here). It was trained as {advice}; give the same model and sizes.")
    code, _, err = run_main(*SMALL, *advice.split(), f"init_from={trained}", f"hydra.run.dir={tmp_path / 'advised'}",
                            monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err  # the advice, typed as it stands, runs
    old = load_checkpoint(trained / "checkpoints" / "best.pt")
    del old["config"]["model"]["stem_norm"]  # a checkpoint saved before the cnn had the key: it ran with its default
    save_checkpoint(tmp_path / "old.pt", old)
    code, _, err = run_main(*SMALL, "model.width=8", f"init_from={tmp_path / 'old.pt'}", monkeypatch=monkeypatch,
                            capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.strip().endswith(f"It was trained as {advice}; give the same model and sizes.")
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    code, _, err = run_main(*SMALL, f"init_from={tmp_path / 'notes.pt'}", monkeypatch=monkeypatch, capsys=capsys,
                            cwd=tmp_path)
    assert code == 1 and err.strip().startswith(f"Checkpoint {tmp_path / 'notes.pt'} is unreadable")


def test_a_stopped_fine_tuning_resumes_without_its_source(trained, tmp_path, monkeypatch, capsys):
    """The checkpoint holds the weights a resume continues from: the run it started from may have moved since."""
    source = tmp_path / "source"
    shutil.copytree(trained, source)
    args = (*SMALL, f"init_from={source}", f"hydra.run.dir={tmp_path / 'tuned'}")
    code, _, err = run_main(*args, monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err
    tuned = weights_after(tmp_path / "tuned")
    (tmp_path / "tuned" / "metrics.json").unlink()  # as a run killed after its last checkpoint
    shutil.rmtree(source)
    code, _, err = run_main(*args, "resume=true", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err
    assert read_metrics(tmp_path / "tuned")["status"] == "completed"
    assert all(torch.equal(value, tuned[key]) for key, value in weights_after(tmp_path / "tuned").items())
