"""TensorBoard tracking: real event files written, then read back with TensorBoard's own EventAccumulator."""

from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from mnist_exp.tracking import (
    TensorBoardTracker,
    confusion_matrix,
    flatten_config,
    write_final_figures,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLASS_NAMES = [str(digit) for digit in range(10)]


def read_events(run_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def test_flatten_config():
    cfg = {"model": {"name": "cnn", "width": 32}, "optimizer": {"lr": 1e-3}, "epochs": 2}
    assert flatten_config(cfg) == {"model.name": "cnn", "model.width": 32, "optimizer.lr": 0.001, "epochs": 2}


def test_confusion_matrix_hand_counted():
    true = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    pred = torch.tensor([0, 1, 1, 1, 2, 0, 2])
    expected = torch.tensor([[1, 1, 0],
                             [0, 2, 0],
                             [1, 0, 2]])
    cm = confusion_matrix(true, pred, num_classes=3)
    assert cm.dtype == torch.int64
    assert torch.equal(cm, expected)


def test_scalars_read_back(tmp_path):
    tracker = TensorBoardTracker(tmp_path)
    for step in range(3):
        tracker.scalars({"train/loss": 1.0 / (step + 1), "lr": 0.1}, step=step)
    tracker.close()

    events = read_events(tmp_path)
    assert {"train/loss", "lr"} <= set(events.Tags()["scalars"])
    loss = events.Scalars("train/loss")
    assert [event.step for event in loss] == [0, 1, 2]
    assert [event.value for event in loss] == pytest.approx([1.0, 0.5, 1 / 3])


def test_hparams_in_the_runs_own_directory(tmp_path):
    tracker = TensorBoardTracker(tmp_path)
    tracker.scalars({"val/acc": 0.9}, step=1)
    params = flatten_config({"model": {"name": "cnn", "width": 32, "sizes": [1, 2]}, "seed": None,
                             "optimizer": {"lr": 1e-3, "nesterov": True}})
    tracker.hparams(params, {"test/acc": 0.98, "best_val/acc": 0.97})
    tracker.close()

    assert [path for path in tmp_path.iterdir() if path.is_dir()] == []  # no add_hparams-style subdirectory
    events = read_events(tmp_path)
    content = events.PluginTagToContent("hparams")
    assert content
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["model.name"].string_value == "cnn"
    assert start.hparams["model.width"].number_value == 32
    assert start.hparams["optimizer.lr"].number_value == pytest.approx(1e-3)
    assert start.hparams["model.sizes"].string_value == "[1, 2]"
    assert start.hparams["seed"].string_value == "None"
    # No experiment summary of its own: TensorBoard builds one from all the runs it shows.
    assert "_hparams_/experiment" not in content
    # The metric values are scalars under those tags, so the HPARAMS table can show them.
    assert events.Scalars("hparams/test/acc")[-1].value == pytest.approx(0.98)


def test_image_grid(tmp_path):
    tracker = TensorBoardTracker(tmp_path)
    tracker.images("train/samples", torch.randint(0, 256, (10, 28, 28), dtype=torch.uint8), step=0)
    tracker.images("train/augmented", torch.rand(4, 1, 28, 28), step=0, nrow=2)
    tracker.close()

    events = read_events(tmp_path)
    assert {"train/samples", "train/augmented"} <= set(events.Tags()["images"])
    grid = events.Images("train/samples")[0]
    assert (grid.width, grid.height) == (8 * 30 + 2, 2 * 30 + 2)  # 8 per row, 2 px padding
    assert grid.encoded_image_string.startswith(PNG_SIGNATURE)


@pytest.mark.parametrize("mistakes", [True, False])
def test_write_final_figures(tmp_path, mistakes):
    generator = torch.Generator().manual_seed(0)
    true = torch.randint(0, 10, (50,), generator=generator)
    pred = torch.where(torch.rand(50, generator=generator) < 0.3, (true + 1) % 10, true) if mistakes else true.clone()
    images = torch.randint(0, 256, (50, 28, 28), dtype=torch.uint8, generator=generator)
    history = [{"epoch": 1, "train/loss": 1.0, "train/acc": 0.6, "val/loss": 0.8, "val/acc": 0.7},
               {"epoch": 2, "train/loss": 0.5, "train/acc": 0.8, "val/acc": 0.85}]

    tracker = TensorBoardTracker(tmp_path)
    paths = write_final_figures(tracker, tmp_path, test_images=images, true=true, pred=pred,
                                class_names=CLASS_NAMES, history=history, step=7)
    tracker.close()

    assert paths == {name: tmp_path / f"{name}.png"
                     for name in ("confusion_matrix", "misclassified", "predictions", "curves")}
    for path in paths.values():
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        assert len(data) > 5_000
    events = read_events(tmp_path)
    tags = {"test/confusion_matrix", "test/misclassified", "test/predictions", "curves"}
    assert tags <= set(events.Tags()["images"])
    assert events.Images("curves")[0].step == 7
