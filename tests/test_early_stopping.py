"""``trainer.patience``: a run stops when its validation accuracy has not improved for that many epochs, says so in
its log and metrics.json, keeps the decision in last.pt, and the leaderboards show the epoch it stopped at."""

import csv
import io

import pytest

from conftest import read_events, read_metrics, run_dirs, run_main
from mnist_exp.run.checkpoint import load_checkpoint
from mnist_exp.tools import compare

# The fake data's validation accuracy reaches 100% by epoch 7 of 10 (seed 0) and cannot improve on it.
PLATEAU = ("dataset=fake", "model=mlp", "trainer.epochs=10", "device=cpu", "device.threads=1")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("early")
    with pytest.MonkeyPatch.context() as monkeypatch:
        code, _, err = run_main("-m", *PLATEAU, "trainer.patience=2,null", monkeypatch=monkeypatch, cwd=cwd)
    assert code == 0, err
    return run_dirs(cwd / "outputs")  # job 0: patience 2; job 1: every epoch


def test_a_run_stops_after_patience_epochs_without_a_better_val_acc(sweep):
    stopped, every_epoch = sweep
    metrics = read_metrics(stopped)
    assert metrics["stopped_early"] and metrics["status"] == "completed"
    assert metrics["epoch"] == metrics["best_epoch"] + 2 < 10
    val = [event.value for event in read_events(stopped).Scalars("val/acc")]
    assert len(val) == metrics["epoch"] and max(val[-2:]) <= max(val[:-2])  # two epochs without a better one
    log = (stopped / "train.log").read_text()
    assert (f"Early stop after epoch {metrics['epoch']} of 10: val/acc has not improved for 2 epochs (best 100.00%, "
            f"epoch {metrics['best_epoch']})") in log
    assert load_checkpoint(stopped / "checkpoints" / "last.pt")["trainer"]["state"]["stopped_early"]
    assert not read_metrics(every_epoch)["stopped_early"] and read_metrics(every_epoch)["epoch"] == 10


def test_the_leaderboards_show_the_epoch_a_run_stopped_at(sweep, capsys):
    stopped_at = read_metrics(sweep[0])["epoch"]
    for args in ([], ["--runs"]):
        assert compare.main([str(sweep[0].parent), *args, "--format", "csv"]) in (0, None)
        rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
        by_patience = {row["trainer.patience"]: row["stopped at"] for row in rows}
        assert by_patience == {"2": str(stopped_at), "null": ""}, rows


@pytest.mark.parametrize("args, message", [
    (("trainer.patience=0", "trainer.epochs=5"),
     "trainer.patience=0 is out of range: it stops a run after that many epochs without a better val/acc, at the "
     "earliest after epoch 1 + patience, before the last of trainer.epochs=5: give 1 to 3, or trainer.patience=null to "
     "train every epoch."),
    (("trainer.patience=4", "trainer.epochs=5"),  # its first chance to stop would be after the last epoch
     "trainer.patience=4 is out of range: it stops a run after that many epochs without a better val/acc, at the "
     "earliest after epoch 1 + patience, before the last of trainer.epochs=5: give 1 to 3, or trainer.patience=null to "
     "train every epoch."),
    (("trainer.patience=1",),  # the default two epochs
     "trainer.patience=1 is out of range: it stops a run after that many epochs without a better val/acc, at the "
     "earliest after epoch 1 + patience, before the last of trainer.epochs=2: train more than 2 epochs, or "
     "trainer.patience=null to train every epoch."),
    (("trainer.patience=2", "trainer.epochs=5", "dataset.val_size=0"),
     "trainer.patience=2 watches the validation accuracy, and dataset.val_size=0 leaves no validation split: give "
     "dataset.val_size a size above 0, or trainer.patience=null."),
])
def test_a_patience_that_cannot_work_is_one_line(args, message, tmp_path, monkeypatch, capsys):
    code, _, err = run_main("dataset=fake", *args, monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.strip() == message
