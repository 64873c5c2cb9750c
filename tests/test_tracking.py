"""TensorBoard tracking: real event files written, then read back with TensorBoard's own EventAccumulator
and through the HTTP routes of a TensorBoard server, as its TEXT, HPARAMS and CUSTOM SCALARS tabs read them."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import torch
from matplotlib import colormaps
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from conftest import count_colour, free_port, read_events, read_png
from mnist_exp.run.hparams import single_run_columns, write_sweep_experiment
from mnist_exp.runs import flatten_config
from mnist_exp.run.figures import confusion_matrix, write_final_figures
from mnist_exp.run.tensorboard import TensorBoardTracker

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLASS_NAMES = [str(digit) for digit in range(10)]


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
    tracker.hparams(params, {"test/acc": 0.98, "best_val/acc": 0.97}, step=7)
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
    assert start.hparams["optimizer.nesterov"].WhichOneof("kind") == "bool_value"  # not the number 1
    # No experiment summary of its own (a sweep's job): TensorBoard builds one from all the runs it shows.
    assert "_hparams_/experiment" not in content
    # The metric values are scalars under those tags, at the run's final step, so the HPARAMS table shows them.
    [point] = events.Scalars("hparams/test/acc")
    assert (point.step, point.value) == (7, pytest.approx(0.98))


def test_a_single_runs_columns_are_its_overrides_then_the_headline_keys():
    params = {"model.name": "cnn", "model.width": 8, "optimizer.name": "adamw", "optimizer.lr": 1e-3,
              "scheduler.name": "none", "augment.name": "none", "dataset.name": "fake", "dataset.flatten": False}
    assert single_run_columns(params, ["model.width=8", "dataset=fake", "experiment=fast", "+seed=1"]) == {
        "model.width": True, "dataset.name": True, "model.name": False, "optimizer.name": False,
        "optimizer.lr": False, "scheduler.name": False, "augment.name": False}


@contextlib.contextmanager
def tensorboard(logdir: Path, runs: int):
    """A TensorBoard server over ``logdir``, once it has loaded ``runs`` runs: yields get(route), post(route, body)."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--port", str(port),
                               "--host", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}/data/plugin"

    def get(route: str, **query):
        url = base + route + ("?" + urllib.parse.urlencode(query) if query else "")
        return json.load(urllib.request.urlopen(url, timeout=10))

    def post(route: str, body: dict):
        request = urllib.request.Request(base + route, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json", "X-XSRF-Protected": "1"})
        return json.load(urllib.request.urlopen(request, timeout=10))

    try:
        deadline, loaded = time.monotonic() + 90, {}
        while len(loaded) < runs:  # TensorBoard loads the runs in the background
            if server.poll() is not None:  # a TensorBoard that cannot serve is a failure, not a reason to skip
                pytest.fail(f"TensorBoard exited {server.returncode} before it served: {server.stderr.read()[-1000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"TensorBoard loaded {len(loaded)} of {runs} runs in 90 s")
            time.sleep(0.5)
            with contextlib.suppress(OSError):
                loaded = get("/text/tags")
        yield get, post
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def write_job(run_dir: Path, params: dict, steps: int) -> None:
    """A sweep job's TensorBoard record as app.fit_and_test writes it: text, curves, hparams at the final step."""
    tracker = TensorBoardTracker(run_dir)
    config = {"model": {"name": params["model.name"]}, "optimizer": {"nesterov": params["optimizer.nesterov"]}}
    tracker.run_record(config, f"python -m mnist_exp model={params['model.name']} dataset=fake")
    for step in range(1, steps + 1):
        tracker.scalars({"train/loss": 1 / step, "val/loss": 1.1 / step, "train/acc": 0.5, "val/acc": 0.4}, step)
    tracker.hparams(params, {"test/acc": 0.9, "best_val/acc": 0.8}, step=steps)
    tracker.close()


@pytest.mark.slow  # a TensorBoard server, a process of its own
def test_tensorboard_shows_the_config_text_the_differing_columns_and_the_curves_layout(tmp_path):
    jobs = {"0_model-mlp": {"model.name": "mlp", "model.hidden": "[64]", "optimizer.nesterov": True,
                            "dataset.flatten": True, "optimizer.lr": 0.1},
            "1_model-cnn": {"model.name": "cnn", "optimizer.nesterov": False, "dataset.flatten": True,
                            "optimizer.lr": 0.1}}
    for steps, (name, params) in enumerate(jobs.items(), start=3):
        write_job(tmp_path / name, params, steps)
    assert write_sweep_experiment(tmp_path) == ["model.name", "optimizer.nesterov", "model.hidden"]

    with tensorboard(tmp_path, runs=len(jobs)) as (get, post):
        text_tags = get("/text/tags")
        config = get("/text/text", run="0_model-mlp", tag="config/text_summary")
        overrides = get("/text/text", run="1_model-cnn", tag="overrides/text_summary")
        experiment = post("/hparams/experiment", {"experimentName": ""})
        groups = post("/hparams/session_groups", {
            "experimentName": "", "startIndex": 0, "sliceSize": 10, "colParams": [],
            "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]})
        layout = get("/custom_scalars/layout")
        metric = get("/scalars/scalars", run="1_model-cnn", tag="hparams/test/acc")

    assert all({"config/text_summary", "overrides/text_summary"} <= set(text_tags[job]) for job in jobs)
    assert "name: mlp" in config[0]["text"] and "nesterov: true" in config[0]["text"]
    assert "python -m mnist_exp model=cnn dataset=fake" in overrides[0]["text"]
    # The keys whose values differ first, then those only some jobs have; equal ones are no columns at all.
    columns = [(info["name"], info.get("differs", False), info.get("type")) for info in experiment["hparamInfos"]]
    assert columns == [("model.name", True, "DATA_TYPE_STRING"), ("optimizer.nesterov", True, "DATA_TYPE_BOOL"),
                       ("model.hidden", False, "DATA_TYPE_STRING")]
    assert {info["name"]["tag"] for info in experiment["metricInfos"]} == {"hparams/test/acc", "hparams/best_val/acc"}
    rows = {group["name"]: group for group in groups["sessionGroups"]}
    assert rows["0_model-mlp"]["hparams"]["optimizer.nesterov"] is True  # a boolean, not 1
    assert rows["1_model-cnn"]["hparams"]["optimizer.nesterov"] is False
    [[_, step, value]] = metric
    assert (step, value) == (4, pytest.approx(0.9))  # the run's final step, not 0
    [category] = layout["category"]
    assert [(chart["title"], chart["multiline"]["tag"]) for chart in category["chart"]] == [
        ("loss", ["^train/loss$", "^val/loss$"]), ("accuracy", ["^train/acc$", "^val/acc$"])]


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
    pictures = {name: read_png(path) for name, path in paths.items()}
    # Each picture's size in pixels at 100 dpi: the matrix is 7.5 in (0.55 in a class + 2) plus 1 in for the
    # colour bar; the grids are 8 images of 1.25 in a row, 1.45 in a row of 8 and 0.5 in for the title.
    wrong = int((true != pred).sum())
    rows = max(1, -(-min(wrong, 32) // 8))
    assert {name: picture.shape[1::-1] for name, picture in pictures.items()} == {
        "confusion_matrix": (850, 750), "misclassified": (1000, round(100 * (rows * 1.45 + 0.5))),
        "predictions": (1000, 630), "curves": (1000, 400)}
    # TensorBoard has the same pictures at the run's final step: the files' own bytes, with their sizes.
    events = read_events(tmp_path)
    for name, tag in (("confusion_matrix", "test/confusion_matrix"), ("misclassified", "test/misclassified"),
                      ("predictions", "test/predictions"), ("curves", "curves")):
        [image] = events.Images(tag)
        assert image.step == 7 and image.encoded_image_string == paths[name].read_bytes(), name
        assert (image.height, image.width) == pictures[name].shape[:2], name

    def share_of_paper(picture) -> float:  # the white of the figure around what is drawn
        return count_colour(picture, (255, 255, 255), tolerance=0) / (picture.shape[0] * picture.shape[1])

    # The matrix: its largest counts in the darkest blue of its colour map, its empty cells in the lightest.
    matrix = pictures["confusion_matrix"]
    assert count_colour(matrix, colormaps["Blues"](1.0)[:3]) > 1_000
    assert count_colour(matrix, colormaps["Blues"](0.0)[:3]) > 100_000
    # The grids: the 32 first test images drawn in grey (most of the grid is not paper), titles green where
    # right and red where wrong; the misclassified grid shows only mistakes, or nothing but its title.
    predictions, misclassified = pictures["predictions"], pictures["misclassified"]
    assert share_of_paper(predictions) < 0.4
    assert count_colour(predictions, "tab:green") > 50
    assert (count_colour(predictions, "red") > 1_000) == bool((true[:32] != pred[:32]).any()) == mistakes
    assert count_colour(misclassified, "tab:green") == 0
    if mistakes:
        assert count_colour(misclassified, "red") > 1_000 and share_of_paper(misclassified) < 0.5
    else:
        assert count_colour(misclassified, "red") == 0 and share_of_paper(misclassified) > 0.95
    # The curves: train (matplotlib's first colour) and validation (its second) in each panel, lines where both
    # epochs have the value; epoch 2 has no validation loss, so that is one point (and its legend entry).
    loss, accuracy = pictures["curves"][:, :500], pictures["curves"][:, 500:]
    assert count_colour(loss, "C0") > 300 and 20 < count_colour(loss, "C1") < 200
    assert count_colour(accuracy, "C0") > 300 and count_colour(accuracy, "C1") > 300


def test_a_final_record_named_before_its_training_file_is_not_purged_by_the_resume(tmp_path, monkeypatch):
    """TensorBoard reads a run's event files in name order; in one second a process's writers 9 and 10 name
    "....10.final" before "....9", whose purge_step (a resumed run's) would hide the final record."""
    from tensorboard.summary.writer import event_file_writer

    import mnist_exp.run.tensorboard as tensorboard

    class Clock:  # the same second for every writer, until the tracker waits for the next
        now = 1_800_000_000.0

        def time(self):
            return self.now

        def sleep(self, seconds):
            self.now += seconds

    clock = Clock()
    monkeypatch.setattr(event_file_writer, "time", clock)
    monkeypatch.setattr(tensorboard, "time", clock)
    monkeypatch.setattr(event_file_writer, "_global_uid", event_file_writer.AtomicCounter(9))
    tracker = TensorBoardTracker.for_run(tmp_path, resumed_step=4)  # writer 9, purge_step 5
    tracker.scalars({"val/acc": 0.9}, 8)
    tracker.final_record()
    tracker.scalars({"test/acc": 0.9}, 8)
    tracker.close()
    assert [event.step for event in read_events(tmp_path).Scalars("test/acc")] == [8]
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        f"events.out.tfevents.{clock_second}.{socket.gethostname()}.{os.getpid()}.{writer}"
        for clock_second, writer in (("1800000000", "9"), ("1800000001", "11.final"))]
