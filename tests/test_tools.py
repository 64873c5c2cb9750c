"""evaluate, predict and export on one real (fake-data) run; the one CLI style; refusals of bad input.

The run averages its weights (EMA) and tests on shifted and scaled copies (TTA), so each tool must rebuild
the model exactly as the run tested it to pass.
"""

import os
import pickle
import runpy
import shutil
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from conftest import read_metrics, run_dirs, run_main
from mnist_exp.tools import compare
from mnist_exp.tools import evaluate
from mnist_exp.tools import export
from mnist_exp.tools import predict
from mnist_exp.errors import UserError
from mnist_exp.data.loader import model_input
from mnist_exp.run.tta import ViewAveraged
from mnist_exp.tools.trained import load_trained_model
from mnist_exp.data.images import to_mnist_form
from mnist_exp.registry import DATASETS

TOOLS = {"evaluate": evaluate, "predict": predict, "export": export, "compare": compare}


def train_run(cwd: Path, *args: str) -> Path:
    """The run directory of a narrow net trained on fake data in ``cwd``, with ``args`` beside."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        code, _, _ = run_main("dataset=fake", "trainer.batch_size=64", "model.width=8", "device=cpu", "device.threads=1",
                              *args, monkeypatch=monkeypatch, cwd=cwd)
    assert code == 0
    [run_dir] = run_dirs(cwd / "outputs")
    return run_dir


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """Two epochs, the weights averaged, tested on three views: 99.6% on the test images and on validation here."""
    return train_run(tmp_path_factory.mktemp("trained"), "trainer.epochs=2", "trainer.ema_decay=0.75",
                     "trainer.tta=true", "trainer.tta_scales=[0.9,1.0,1.1]")


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Path:
    """One epoch, no averaging, one view: the tests of where an export is written, which then takes a second (the
    three views make a pt2 export about 5 s, an ONNX one about 12 s)."""
    return train_run(tmp_path_factory.mktemp("plain"), "trainer.epochs=1")


@pytest.fixture(autouse=True)
def keep_cpu_threads():
    """evaluate's command sets torch's threads; in this process they stay as conftest set them."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def test_split(trained):
    """The run's own test images (uint8 [N, 28, 28]) and labels."""
    return DATASETS.build(load_trained_model(trained).config["dataset"]).test


@torch.inference_mode()
def model_predictions(run_dir: Path, pixels: torch.Tensor) -> tuple[list[int], list[float]]:
    """The checkpoint's model on ``pixels``, loaded and normalised by hand: labels and their probabilities."""
    trained = load_trained_model(run_dir)
    dataset = trained.config["dataset"]
    probabilities = trained.model(model_input(pixels, dataset["mean"], dataset["std"], dataset["flatten"])).softmax(1)
    confidence, label = probabilities.max(dim=1)
    return label.tolist(), confidence.tolist()


def call(tool: str, *args, capsys) -> tuple[int, str, str]:
    """``python -m mnist_exp.<tool> args`` in this process: exit code, stdout, stderr."""
    code = TOOLS[tool].main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_loaded_model_is_the_weight_average_under_shift_averaging(trained):
    model = load_trained_model(trained).model
    last = torch.load(trained / "checkpoints" / "last.pt", weights_only=True)["trainer"]
    assert isinstance(model, ViewAveraged) and not model.training
    assert model.background == -0.5 / 0.25  # a black pixel, normalised with the fake dataset's mean and std
    assert last["state"]["best_epoch"] == last["state"]["epoch"]  # so the best weights are the last average
    for name, value in model.model.state_dict().items():
        assert torch.equal(value, last["best_weights"][name]) and torch.equal(value, last["ema"][name]), name


def test_model_input_takes_uint8_and_float_pixels_alike():
    pixels = torch.tensor([[[0, 255], [51, 102]]], dtype=torch.uint8)
    expected = torch.tensor([[[[-2.0, 2.0], [-1.2, -0.4]]]])
    assert torch.allclose(model_input(pixels, 0.5, 0.25, flatten=False), expected)
    as_float = pixels.float() / 255
    assert torch.allclose(model_input(as_float, 0.5, 0.25, flatten=True), expected.flatten(1))
    assert torch.equal(as_float, pixels.float() / 255)  # the caller's tensor is left as it was


def test_evaluate_reproduces_the_runs_test_accuracy(trained, tmp_path, monkeypatch, capsys):
    metrics = read_metrics(trained)
    report = evaluate.evaluate_checkpoint(trained / "checkpoints" / "best.pt", device="cpu")
    assert report["acc"] == metrics["test/acc"] and report["count"] == 256
    assert report["loss"] == pytest.approx(metrics["test/loss"], abs=1e-6)
    assert 0.8 < metrics["test/acc"] < 1  # a model that gets some wrong: the check means something
    monkeypatch.chdir(tmp_path)
    code, out, err = call("evaluate", trained, "--device", "cpu", capsys=capsys)  # the run directory
    assert (code, err) == (0, "")
    correct = round(metrics["test/acc"] * 256)
    assert f"test: loss {metrics['test/loss']:.4f}  accuracy {100 * metrics['test/acc']:.2f}% ({correct}/256)  " \
           "after epoch 2 of 2" in out
    assert "accuracy per class" in out and "confusion matrix" in out
    assert list(tmp_path.iterdir()) == []  # a report: nothing written where it ran


def test_evaluate_without_tta_tests_the_plain_model(trained, test_split, capsys):
    code, out, err = call("evaluate", trained, "--no-tta", "--device", "cpu", capsys=capsys)
    assert (code, err) == (0, "")
    plain = load_trained_model(trained, tta=False)
    assert not isinstance(plain.model, ViewAveraged)
    with torch.inference_mode():
        labels = plain.model(plain.input(test_split.images)).argmax(1)
    correct = int((labels == test_split.labels).sum())
    assert f"accuracy {100 * correct / 256:.2f}% ({correct}/256)" in out
    assert out.startswith(f"{trained} on cpu, without test-time averaging\n")
    assert f"loss {read_metrics(trained)['test/loss']:.4f}" not in out  # not the run's own (averaged) figures


def test_evaluate_on_validation_images_evaluates_as_the_run_validated(trained, capsys):
    """The run averaged its test images' views only: its validation accuracy is the plain model's."""
    metrics = read_metrics(trained)
    report = evaluate.evaluate_checkpoint(trained, "val", device="cpu")
    assert report["acc"] == metrics["best_val/acc"] and report["without_tta"]
    code, out, err = call("evaluate", trained, "--split", "val", "--device", "cpu", capsys=capsys)
    assert (code, err) == (0, "") and out.startswith(f"{trained} on cpu, without test-time averaging\n")


def test_predict_gives_the_checkpoints_own_predictions_on_test_images(trained, test_split, tmp_path, capsys):
    folder = tmp_path / "test_images"
    folder.mkdir()
    pixels, labels = test_split.images[:40], test_split.labels[:40].tolist()
    for i, image in enumerate(pixels):
        Image.fromarray(image.numpy()).save(folder / f"{i:02d}.png")
    code, out, err = call("predict", trained, folder, "--as-is", "--device", "cpu", capsys=capsys)
    assert (code, err) == (0, "")
    lines = [line.split("\t") for line in out.strip().splitlines()]
    assert [name for name, _, _ in lines] == [str(folder / f"{i:02d}.png") for i in range(40)]
    expected_labels, expected_probabilities = model_predictions(trained, pixels)
    assert [int(label) for _, label, _ in lines] == expected_labels
    assert [float(p) for _, _, p in lines] == pytest.approx(expected_probabilities, abs=1.5e-3)
    assert sum(p == t for p, t in zip(expected_labels, labels)) >= 34  # mostly right: the model of a 96% run
    first, *others = sorted(folder.iterdir())
    assert call("predict", trained, first, "--as-is", "--device", "cpu", *others, capsys=capsys) == (0, out, "")


def test_predict_reports_each_file_it_cannot_use_and_classifies_the_others(trained, test_split, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i, image in enumerate(test_split.images[:3]):
        Image.fromarray(image.numpy()).save(folder / f"{i}.png")
    (folder / "3_notes.png").write_text("not a picture")
    Image.new("L", (40, 40), 255).save(folder / "4_blank.png")
    (folder / "5_more.png").mkdir()  # a folder in the folder, named as an image: not searched, and not 'missing'
    missing = tmp_path / "typo.png"  # a mistyped name among the files: its line, the others still classified
    code, out, err = call("predict", trained, missing, folder, "/dev/null", "--device", "cpu", capsys=capsys)
    assert code == 1
    assert [line.split("\t")[0] for line in out.strip().splitlines()] == [str(folder / f"{i}.png") for i in range(3)]
    assert err.splitlines() == [
        f"{PREDICT}: {missing} does not exist. Give image files or folders of them.",
        f"{PREDICT}: {folder / '3_notes.png'} is not an image PIL can read (UnidentifiedImageError). Give PNG or JPEG "
        "files of digits.",
        f"{PREDICT}: {folder / '4_blank.png'}: the image is blank: no digit found. Give an image with a digit in it.",
        f"{PREDICT}: /dev/null is not a file. Give image files or folders of them.",
        f"{PREDICT}: 4 of 7 files could not be classified (above); the others are."]


def test_predict_refuses_an_animation_or_pages_and_reads_a_gif_or_tiff_of_one_frame(trained, tmp_path, capsys):
    """An animated GIF or a TIFF of pages was read as its first frame alone: one prediction for several images."""
    folder = tmp_path / "frames"
    folder.mkdir()
    seven, turned = digit_seven(), digit_seven().rotate(90, expand=True, fillcolor=255)
    for name in ("0.png", "1.gif", "2.tif"):
        seven.save(folder / name)
    seven.save(folder / "3_animated.gif", save_all=True, append_images=[turned, seven])
    seven.save(folder / "4_pages.tif", save_all=True, append_images=[turned])
    code, out, err = call("predict", trained, folder, "--device", "cpu", capsys=capsys)
    lines = [line.split("\t") for line in out.strip().splitlines()]
    assert [name for name, _, _ in lines] == [str(folder / name) for name in ("0.png", "1.gif", "2.tif")]
    assert len({(label, probability) for _, label, probability in lines}) == 1  # one picture, saved three ways
    assert (code, err.splitlines()) == (1, [
        f"{PREDICT}: {folder / '3_animated.gif'} has 3 frames: give one image per file (save the frame you mean as "
        "a PNG).",
        f"{PREDICT}: {folder / '4_pages.tif'} has 2 frames: give one image per file (save the frame you mean as a "
        "PNG).",
        f"{PREDICT}: 2 of 5 files could not be classified (above); the others are."])
    assert call("predict", trained, folder / "3_animated.gif", "--device", "cpu", capsys=capsys) == (
        1, "", f"{PREDICT}: {folder / '3_animated.gif'} has 3 frames: give one image per file (save the frame you "
               "mean as a PNG).\n")


def digit_seven(size=(90, 140), ink=0, paper=255, mode="L") -> Image.Image:
    """A hand-drawn-like 7: dark strokes on light paper, off centre, not square."""
    image = Image.new(mode, size, paper)
    draw = ImageDraw.Draw(image)
    draw.line([(10, 20), (70, 20), (35, 120)], fill=ink, width=9)
    return image


def test_predict_brings_any_image_into_mnist_form_first(trained, tmp_path, capsys):
    folder = tmp_path / "digits"
    folder.mkdir()
    digit_seven().save(folder / "a.png")
    digit_seven(ink=255, paper=0).convert("RGB").save(folder / "b.jpg")
    code, out, err = call("predict", trained, folder, "--device", "cpu", capsys=capsys)
    assert code == 0 and err == ""
    files = [folder / "a.png", folder / "b.jpg"]
    forms = torch.from_numpy(np.stack([to_mnist_form(Image.open(f)) for f in files]))
    labels, probabilities = model_predictions(trained, forms)
    assert out == "".join(f"{f}\t{label}\t{p:.3f}\n" for f, label, p in zip(files, labels, probabilities))


@pytest.mark.parametrize("image", [
    digit_seven(), digit_seven(ink=255, paper=0), digit_seven(mode="RGB", ink=(20, 20, 90), paper=(250, 240, 230)),
])
def test_to_mnist_form_is_white_on_black_in_20x20_centred_by_mass(image):
    pixels = to_mnist_form(image)
    assert pixels.shape == (28, 28) and pixels.dtype == np.float32
    assert pixels.max() > 0.9 and pixels[0].max() == 0 and pixels[:, 0].max() == 0  # white digit, black border
    rows, cols = np.nonzero(pixels > 0.05)
    assert rows.max() - rows.min() < 21 and cols.max() - cols.min() < 21
    ys, xs = np.indices(pixels.shape)
    assert abs((ys * pixels).sum() / pixels.sum() - 14) < 1 and abs((xs * pixels).sum() / pixels.sum() - 14) < 1


def test_a_transparent_png_is_ink_on_white_paper(tmp_path):
    rgba = Image.new("RGBA", (60, 60), (0, 0, 0, 0))
    ImageDraw.Draw(rgba).line([(30, 5), (30, 55)], fill=(0, 0, 0, 255), width=6)
    pixels = to_mnist_form(rgba)
    assert pixels[14, 14] > 0.9 and pixels[14, 2] == 0


def test_export_pt2_is_a_torch_export_program_with_the_checkpoints_predictions(trained, test_split, tmp_path, capsys):
    code, stdout, _ = call("export", trained, capsys=capsys)  # the default format, beside the checkpoint
    out = trained / "checkpoints" / "best.pt2"
    assert code == 0 and stdout.startswith(f"Wrote {out}; it predicts the same class as the checkpoint")
    program = torch.export.load(str(out))
    with torch.inference_mode():
        logits = program.module()(test_split.images.unsqueeze(1).float() / 255)  # any batch size
    expected, _ = model_predictions(trained, test_split.images)
    assert logits.shape == (256, 10) and logits.argmax(1).tolist() == expected
    assert call("evaluate", out, capsys=capsys) == (  # where a checkpoint is read
        1, "", f"python -m mnist_exp.tools.evaluate: {out} is a torch.export program, an export of a model, not a "
               "checkpoint: give the run directory or its checkpoints/best.pt.\n")
    assert call("export", out, capsys=capsys)[2] == (  # an export of the export: refused as such, not as written
        f"python -m mnist_exp.tools.export: {out} is a torch.export program, an export of a model, not a checkpoint: "
        "give the run directory or its checkpoints/best.pt.\n")
    written = out.read_bytes()
    assert call("export", trained, capsys=capsys) == (  # a second time: the first export stays as it is
        1, "", f"python -m mnist_exp.tools.export: {out} exists, an earlier export of best.pt: use it, or give --out "
               "a new name, or delete it first to export again.\n")
    assert out.read_bytes() == written
    best = trained / "checkpoints" / "best.pt"
    before = best.stat()
    os.utime(best, (before.st_atime, out.stat().st_mtime + 1))  # as when the run writes a better best.pt
    try:
        assert call("export", trained, capsys=capsys) == (
            1, "", f"python -m mnist_exp.tools.export: {out} exists, an export of an earlier best.pt, which has changed "
                   "since: delete it first to export again, or give --out a new name.\n")
    finally:
        os.utime(best, (before.st_atime, before.st_mtime))


def test_an_export_that_disagrees_with_its_checkpoint_or_is_stopped_leaves_no_file(trained, tmp_path, monkeypatch,
                                                                                    capsys):
    from mnist_exp.tools import export

    out = tmp_path / "model.pt2"

    def flawed(model, images, path):  # an exporter whose file is written whole but computes other classes
        path.write_bytes(b"a program")
        with torch.inference_mode():
            return -model(images)

    monkeypatch.setattr(export, "export_program", flawed)
    assert call("export", trained, "--out", out, capsys=capsys) == (
        1, "", "python -m mnist_exp.tools.export: The pt2 export disagrees with the checkpoint on 256 of 256 test "
               f"images: not safe to use, so {out} was not written.\n")

    def stopped(model, images, path):  # Ctrl-C as the exporter writes
        path.write_bytes(b"half a program")
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "export_program", stopped)
    assert call("export", trained, "--out", out, capsys=capsys)[0] == 130
    assert list(tmp_path.iterdir()) == []  # a whole export is renamed to --out: test_export_pt2_... above


def test_export_torchscript_says_it_is_deprecated_and_gives_the_checkpoints_predictions(trained, test_split,
                                                                                          tmp_path, capsys):
    out = tmp_path / "model.ts.pt"
    code, stdout, _ = call("export", trained, "--format", "torchscript", "--out", out, capsys=capsys)
    assert code == 0
    assert stdout.startswith("TorchScript is deprecated in PyTorch; --format pt2 (torch.export) is its successor.")
    assert f"Wrote {out}; it predicts the same class as the checkpoint on 256 test images" in stdout
    with warnings.catch_warnings():  # TorchScript's deprecation; the file is still what libtorch loads
        warnings.simplefilter("ignore", FutureWarning)
        exported = torch.jit.load(str(out))
    with torch.inference_mode():
        logits = exported(test_split.images.unsqueeze(1).float() / 255)  # what a deployment has: pixels in [0, 1]
    expected, _ = model_predictions(trained, test_split.images)
    assert logits.shape == (256, 10) and logits.argmax(1).tolist() == expected
    assert call("evaluate", out, capsys=capsys) == (
        1, "", f"python -m mnist_exp.tools.evaluate: {out} is a TorchScript export of a model, not a checkpoint: give "
               "the run directory or its checkpoints/best.pt.\n")
    image = write_png(tmp_path / "digit.png", 28, 28)
    assert call("predict", image, trained, capsys=capsys) == (  # the two paths the wrong way round
        1, "", f"python -m mnist_exp.tools.predict: {image} is a PNG image, not a checkpoint: give the checkpoint or "
               "run directory first (e.g. python -m mnist_exp.tools.predict <run dir> <images>).\n")


def write_png(path: Path, width: int, height: int, pixels: bool = True) -> Path:
    """A black grey PNG, written row by row so the test itself stays small; ``pixels=False``: the header alone."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    body = b""
    if pixels:
        compressor, row = zlib.compressobj(9), bytes(1 + width)  # filter byte 0, then the row's pixels
        body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


@pytest.mark.slow  # predict in a process of its own, whose peak memory the parent measures
def test_a_decompression_bomb_is_refused_by_its_size_before_it_is_decoded(trained, tmp_path):
    bomb = write_png(tmp_path / "bomb.png", 12000, 12000)  # 144 million pixels in about 140 kB
    assert bomb.stat().st_size < 200_000
    # The peak memory of predict alone, measured by a parent that runs nothing else.
    measure = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "sys.stderr.write(r.stderr); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
               "sys.exit(r.returncode)")
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    result = subprocess.run([sys.executable, "-c", measure, sys.executable, "-m", "mnist_exp.tools.predict", str(trained),
                             str(bomb), "--device", "cpu"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 1
    assert result.stderr == (f"python -m mnist_exp.tools.predict: {bomb} is 12000x12000 pixels, more than predict reads "
                             "(4096x4096): scale it down (a digit needs a few hundred pixels at most).\n")
    peak_mb = int(result.stdout) / 1024
    assert peak_mb < 1200, f"predict took {peak_mb:.0f} MB to refuse a 140 kB file"  # decoded, it takes 2.3 GB


def truncated_copy(trained: Path, tmp_path: Path) -> Path:
    data = (trained / "checkpoints" / "best.pt").read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[:-64])  # the zip's central directory, at its end, is cut off
    return path


PREDICT = "python -m mnist_exp.tools.predict"


@pytest.mark.parametrize("case", ["not_an_image", "blank_image", "missing_image", "huge_header", "as_is_size",
                                  "unknown_option", "no_images", "truncated_checkpoint", "run_without_checkpoint"])
def test_predict_refuses_bad_input_with_one_line(trained, tmp_path, capsys, case):
    (tmp_path / "notes.png").write_text("not a picture")
    Image.new("L", (40, 40), 255).save(tmp_path / "blank.png")
    huge = write_png(tmp_path / "huge.png", 20000, 20000, pixels=False)  # past PIL's own limit: refused at open
    (tmp_path / "empty_run" / ".hydra").mkdir(parents=True)
    digit = tmp_path / "seven.png"
    digit_seven().save(digit)
    args, code, message = {
        "not_an_image": ([trained, tmp_path / "notes.png"], 1,
                         f"{tmp_path / 'notes.png'} is not an image PIL can read (UnidentifiedImageError). "
                         "Give PNG or JPEG files of digits."),
        "blank_image": ([trained, tmp_path / "blank.png"], 1,
                        f"{tmp_path / 'blank.png'}: the image is blank: no digit found. "
                        "Give an image with a digit in it."),
        "missing_image": ([trained, tmp_path / "nope.png"], 1,
                          f"{tmp_path / 'nope.png'} does not exist. Give image files or folders of them."),
        "huge_header": ([trained, huge], 1, f"{huge} has 400,000,000 pixels, more than predict reads (4096x4096): "
                                            "scale it down (a digit needs a few hundred pixels at most)."),
        "as_is_size": ([trained, digit, "--as-is"], 1,
                       f"{digit} is 90x140 pixels; --as-is takes 28x28 images in the dataset's form. Leave out --as-is "
                       "to bring any image into that form."),
        "unknown_option": (["--ckpt", trained, digit], 2, "unrecognized arguments: --ckpt. See --help."),
        "no_images": ([trained], 2, "the following arguments are required: image_or_folder. See --help."),
        "truncated_checkpoint": ([truncated_copy(trained, tmp_path), digit], 1,
                                 f"Checkpoint {tmp_path / 'truncated.pt'} is unreadable: it is truncated or corrupt (not a "
                                 "complete torch archive). Use another checkpoint, e.g. the run's checkpoints/best.pt."),
        "run_without_checkpoint": ([tmp_path / "empty_run", digit], 1,
                                   f"{tmp_path / 'empty_run'} is a directory without checkpoints/best.pt: give a run "
                                   "directory that has finished an epoch with trainer.checkpoint=true, or a "
                                   "checkpoint file."),
    }[case]
    assert call("predict", *args, "--device", "cpu", capsys=capsys) == (code, "", f"{PREDICT}: {message}\n")


def test_a_checkpoints_folder_or_a_directory_of_runs_is_told_the_path_to_give(trained, capsys):
    folder = trained / "checkpoints"  # where shell completion stops; it was said to have no checkpoints/best.pt
    assert call("evaluate", folder, capsys=capsys) == (
        1, "", f"python -m mnist_exp.tools.evaluate: {folder} is a folder of checkpoints, not a run directory: give "
               f"the run directory ({trained}) or a checkpoint file ({folder / 'best.pt'}).\n")
    assert call("export", trained.parent, capsys=capsys) == (
        1, "", f"python -m mnist_exp.tools.export: {trained.parent} is a directory of runs, not a run: give one of "
               f"them, e.g. {trained}.\n")
    assert call("evaluate", trained / ".hydra", capsys=capsys) == (
        1, "", f"python -m mnist_exp.tools.evaluate: {trained / '.hydra'} is a folder of the run {trained}: give the "
               f"run directory ({trained}) or a checkpoint file.\n")
    assert call("evaluate", folder / "best.pt", capsys=capsys)[0] == 0  # the advice, followed


class RunsCode:
    """A pickle that runs a shell command when loaded without weights_only."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def bad_checkpoint(case: str, trained: Path, tmp_path: Path) -> tuple[Path, str]:
    """A file that is not a usable checkpoint, and the line that refuses it."""
    path = tmp_path / f"{case}.pt"
    ours = "Use a checkpoints/best.pt or last.pt written by a run."
    if case == "missing":
        return path, f"No checkpoint at {path}. Give the path of a checkpoints/last.pt or best.pt written by a run."
    if case in ("truncated", "garbage"):
        if case == "truncated":
            path = truncated_copy(trained, tmp_path)
        else:  # not a zip archive, not a pickle: the unpickler trips on its first byte
            path.write_bytes(b"\n")
        return path, (f"Checkpoint {path} is unreadable: it is truncated or corrupt (not a complete torch archive). "
                      "Use another checkpoint, e.g. the run's checkpoints/best.pt.")
    if case == "foreign_dict":
        torch.save({"weight": torch.zeros(3)}, path)
        return path, (f"{path} is not a checkpoint mnist_exp wrote (missing: format, kind, config, class_names, "
                      f"weights, epoch). {ours}")
    if case == "pickled_module":
        torch.save(torch.nn.Linear(2, 2), path)
        return path, (f"{path} is not a checkpoint mnist_exp wrote (it holds a pickled torch.nn.modules.linear.Linear, "
                      f"which mnist_exp checkpoints never do; it was not loaded). {ours}")
    if case == "saved_code":  # the same in torch's own archive, as torch.save writes it
        torch.save({"weights": RunsCode(tmp_path / "code_ran")}, path)
        return path, (f"{path} is not a checkpoint mnist_exp wrote (it holds a pickled {os.system.__module__}.system, "
                      f"which mnist_exp checkpoints never do; it was not loaded). {ours}")
    with open(path, "wb") as f:  # "runs_code"
        pickle.dump(RunsCode(tmp_path / "code_ran"), f)
    return path, (f"{path} is not a checkpoint mnist_exp wrote (it holds pickled Python code, which mnist_exp "
                  f"checkpoints never do; it was not loaded). {ours}")


@pytest.mark.parametrize("case", ["missing", "truncated", "garbage", "foreign_dict", "pickled_module", "runs_code",
                                  "saved_code"])
def test_evaluate_refuses_a_bad_checkpoint_in_one_line_and_keeps_the_file(trained, tmp_path, capsys, case):
    path, message = bad_checkpoint(case, trained, tmp_path)
    before = path.read_bytes() if path.exists() else None
    assert call("evaluate", path, capsys=capsys) == (1, "", f"python -m mnist_exp.tools.evaluate: {message}\n")
    assert "weights_only" not in message and not (tmp_path / "code_ran").exists()
    assert (path.read_bytes() if path.exists() else None) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_an_absent_device_is_named_as_the_tools_take_it(trained, capsys):
    assert call("evaluate", trained, "--device", "cuda", capsys=capsys) == (
        1, "", "python -m mnist_exp.tools.evaluate: --device cuda, but no CUDA GPU is visible to torch "
               "(torch.cuda.is_available() is False). Use --device auto or --device cpu.\n")


@pytest.mark.parametrize("case", ["truncated", "runs_code", "saved_code"])
def test_training_from_a_bad_checkpoint_is_refused_in_one_line(trained, tmp_path, monkeypatch, capsys, case):
    path, message = bad_checkpoint(case, trained, tmp_path)
    if case == "truncated":  # a run continues only from a last.pt: no other checkpoint to advise
        message = (f"Checkpoint {path} is unreadable: it is truncated or corrupt, and a run continues only from its "
                   "last.pt. Start a new run (without resume=true or ckpt_path, in a new directory).")
    code, _, err = run_main("dataset=fake", "device=cpu", "device.threads=1", f"ckpt_path={path}",
                            monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines() == [message]
    assert not (tmp_path / "code_ran").exists()


def test_evaluate_without_a_checkpoint_is_one_line(capsys):
    assert call("evaluate", capsys=capsys) == (2, "", "python -m mnist_exp.tools.evaluate: the following arguments "
                                                      "are required: run_dir_or_checkpoint. See --help.\n")


@pytest.mark.parametrize("args, code, message", [
    (["--split", "dev"], 2,
     "argument --split: invalid choice: 'dev' (choose from 'test', 'val', 'train'). See --help."),
    (["--batch-size", "0"], 2, "argument --batch-size: '0' is not a whole number of at least 1. See --help."),
    (["--batch-size", "2²"], 2, "argument --batch-size: '2²' is not a whole number of at least 1. See --help."),
    (["--devcie", "cpu"], 2, "unrecognized arguments: --devcie cpu. Did you mean '--device'? See --help."),
    (["--device", "gpu"], 2,
     "argument --device: invalid choice: 'gpu' (choose from 'auto', 'cpu', 'cuda', 'mps'). See --help."),
])
def test_evaluate_refuses_wrong_options_in_one_line(trained, capsys, args, code, message):
    assert call("evaluate", trained, *args, capsys=capsys) == (code, "", f"python -m mnist_exp.tools.evaluate: {message}\n")


def test_export_refuses_an_out_file_where_it_cannot_write(plain, tmp_path, capsys):
    out = tmp_path / "no" / "model.ts.pt"
    assert call("export", plain, "--out", out, capsys=capsys) == (
        1, "", f"python -m mnist_exp.tools.export: Cannot write {out}: there is no directory {out.parent}. "
               "Create it, or give another --out.\n")
    code, _, err = call("export", plain, "--out", "/proc/model.pt2", capsys=capsys)  # even root cannot write there
    assert (code, err.splitlines()) == (1, ["python -m mnist_exp.tools.export: Cannot write /proc/model.pt2: /proc "
                                            "cannot be written (No such file or directory). Give another --out."])
    assert call("export", plain, "--out", tmp_path, capsys=capsys) == (
        1, "", f"python -m mnist_exp.tools.export: --out {tmp_path} is a directory: give the file to write, e.g. "
               f"{tmp_path / 'best.pt2'}.\n")
    assert call("export", plain, "--out", tmp_path / "best.pt2", capsys=capsys)[0] == 0  # the advice, followed


@pytest.mark.parametrize("name", ["model.pt2", "model.pt", "model.onnx"])
def test_an_export_that_fills_the_disk_is_one_line_and_leaves_no_file(name, plain, small_disk, capsys):
    (small_disk / "filler").write_bytes(bytes(40 * 1024))  # 24 KiB left: less than any format's file of this net
    out = small_disk / name  # torch's own writer hit the full disk, then aborted the process (pt2, torchscript)
    code, _, err = call("export", plain, "--out", out, capsys=capsys)
    free = shutil.disk_usage(small_disk).free // 1024
    assert (code, err.splitlines()[-1]) == (1, f"python -m mnist_exp.tools.export: The disk holding {small_disk} is "
                                               f"full ({free} KiB free): {out} was not written. Free some space, or "
                                               "give --out a file on another disk.")
    assert [path.name for path in small_disk.iterdir()] == ["filler"]


def test_a_submission_that_fills_the_disk_is_one_line_and_leaves_no_file(trained, small_disk, tmp_path, capsys):
    table = tmp_path / "test.csv"  # 3000 rows: some 20 KiB of ImageId,Label, where 12 KiB are left
    np.savetxt(table, np.zeros((3000, 784), int), fmt="%d", delimiter=",")
    (small_disk / "filler").write_bytes(bytes(52 * 1024))
    out = small_disk / "submission.csv"
    said = call("predict", trained, table, "--submission", out, capsys=capsys)
    free = shutil.disk_usage(small_disk).free // 1024
    assert said == (1, "", f"python -m mnist_exp.tools.predict: The disk holding {small_disk} is full ({free} KiB "
                           f"free): {out} was not written. Free some space, or give --submission a file on another "
                           "disk.\n")
    assert [path.name for path in small_disk.iterdir()] == ["filler"]


def test_export_beside_a_read_only_checkpoint_says_to_give_out(plain, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(plain, run_dir, ignore=shutil.ignore_patterns("*.pt2", "*.onnx", "*.ts.pt"))  # no exports
    mount = subprocess.run(["mount", "--bind", "-o", "ro", str(run_dir), str(run_dir)], capture_output=True, text=True)
    if mount.returncode:
        pytest.skip(f"a read-only directory needs mount (root): {mount.stderr.strip()}")
    try:  # it named the temporary file it could not make, and gave no advice
        assert call("export", run_dir, capsys=capsys) == (
            1, "", f"python -m mnist_exp.tools.export: Cannot write {run_dir}/checkpoints/best.pt2: "
                   f"{run_dir}/checkpoints cannot be written (Read-only file system). Give --out a file elsewhere.\n")
        assert call("export", run_dir, "--out", tmp_path / "best.pt2", capsys=capsys)[0] == 0  # the advice, followed
    finally:
        subprocess.run(["umount", "-l", str(run_dir)], check=False)


@pytest.mark.parametrize("args, message", [
    (["--out", "model.onnx", "--format", "pt2"],
     "--out model.onnx does not end in .pt2, the ending of --format pt2: name it model.pt2, or leave out --format."),
    (["--out", "model.md"], "--out model.md: end its name in the format's ending: .pt2, .onnx or .pt (torchscript)."),
    (["--out", ".pt2"], "--out .pt2: give the file a name before its ending, e.g. model.pt2."),
    (["--out", "../m.ts", "--format", "torchscript"], "--out ../m.ts does not end in .pt, the ending of --format "
     "torchscript: name it ../m.pt, or leave out --format."),  # in the folder given
])
def test_export_refuses_an_out_file_named_for_another_format(args, message, trained, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "README.md").write_text("mine")
    assert call("export", trained, *args, capsys=capsys) == (1, "", f"python -m mnist_exp.tools.export: {message}\n")
    assert [path.name for path in tmp_path.iterdir()] == ["README.md"] and (tmp_path / "README.md").read_text() == "mine"


def test_a_submission_is_refused_in_one_line_for_a_table_or_place_it_cannot_use(trained, tmp_path, capsys):
    two_columns = tmp_path / "two.csv"
    two_columns.write_text("a,b\n1,2\n")
    prefix = "python -m mnist_exp.tools.predict: "
    assert call("predict", trained, two_columns, "--submission", tmp_path / "s.csv", "--device", "cpu",
                capsys=capsys) == (1, "", f"{prefix}{two_columns} holds 1x1 images; this model takes 28x28 (784 pixel "
                                         "columns, a label column before them or not).\n")
    assert call("predict", trained, tmp_path / "seven.png", "--submission", tmp_path / "s.csv",
                capsys=capsys) == (1, "", f"{prefix}--submission classifies one CSV file of images (Kaggle's "
                                         f"test.csv); it was given {tmp_path / 'seven.png'}, not a .csv file.\n")
    assert call("predict", trained, two_columns, capsys=capsys) == (1, "", f"{prefix}{two_columns} is a CSV file: a "
                                                                         "table of images is classified into a "
                                                                         "submission file, e.g. --submission "
                                                                         "submission.csv.\n")
    assert call("predict", trained, two_columns, "--submission", tmp_path / "s.csv", "--as-is", capsys=capsys) == (
        1, "", f"{prefix}--as-is is for image files; a CSV table's pixels are used as they are: leave out --as-is.\n")
    assert call("predict", trained, two_columns, "--submission", tmp_path, capsys=capsys) == (
        1, "", f"{prefix}--submission {tmp_path} is a directory: give the file to write, e.g. "
               f"{tmp_path / 'submission.csv'}.\n")
    assert call("predict", trained, two_columns, "--submission", "/dev/null", capsys=capsys) == (
        1, "", f"{prefix}--submission /dev/null is not a regular file: give the name of a file to write, e.g. "
               "submission.csv.\n")  # written atomically, it would have replaced the device
    assert call("predict", trained, two_columns, "--submission", "", capsys=capsys) == (  # an unset variable
        2, "", f"{prefix}argument --submission: an empty name: give the file to write. See --help.\n")
    folder = tmp_path / "images.csv"  # a folder of images, named as a table
    folder.mkdir()
    digit_seven().save(folder / "seven.png")
    assert call("predict", trained, folder, "--submission", tmp_path / "s.csv", capsys=capsys) == (
        1, "", f"{prefix}--submission classifies one CSV file of images (Kaggle's test.csv); {folder} is a folder: "
               "leave out --submission to classify the images in it.\n")
    code, out, err = call("predict", trained, folder, "--device", "cpu", capsys=capsys)  # which that advice runs
    assert (code, err) == (0, "") and out.startswith(f"{folder / 'seven.png'}\t")


def test_no_tool_writes_over_a_file_of_a_run(plain, tmp_path, capsys):
    table = tmp_path / "test.csv"
    table.write_text("pixel0\n0\n")
    record = {path: path.read_bytes() for path in plain.rglob("*") if path.is_file()}
    for tool, option, target in [("export", "--out", plain / "checkpoints" / "best.pt"),
                                 ("export", "--out", plain / "checkpoints" / "last.pt"),
                                 ("predict", "--submission", plain / "metrics.json"),
                                 ("compare", "--plot", plain / "curves.png")]:
        args = [plain, table] if tool == "predict" else [plain]
        assert call(tool, *args, option, target, capsys=capsys) == (
            1, "", f"python -m mnist_exp.tools.{tool}: {target} is a file of the run {plain}, and a tool writes no "
                   f"file over a run's: give {option} a new name.\n")
    assert {path: path.read_bytes() for path in plain.rglob("*") if path.is_file()} == record
    # Outside a run too: no file a user has, the tool's own input least of all.
    notes, picture = tmp_path / "notes.onnx", tmp_path / "picture.png"
    notes.write_text("mine")
    picture.write_text("mine too")
    for tool, option, target in [("predict", "--submission", table), ("export", "--out", notes),
                                 ("compare", "--plot", picture)]:
        args = [plain, table] if tool == "predict" else [plain]
        assert call(tool, *args, option, target, capsys=capsys) == (
            1, "", f"python -m mnist_exp.tools.{tool}: {option} {target} exists, and a tool writes over no file: give "
                   "a new name, or delete that file first to replace it.\n")
    assert table.read_text() == "pixel0\n0\n" and notes.read_text() == "mine" and picture.read_text() == "mine too"
    out = plain / "checkpoints" / "exported.pt2"  # a new file in the run is the tool's to write
    assert call("export", plain, "--out", out, capsys=capsys)[0] == 0 and out.is_file()
    out.unlink()


def test_evaluate_reproduces_a_debug_run_on_its_own_batches(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    code, _, err = run_main("dataset=fake", "trainer.epochs=1", "trainer.limit_batches=1", "trainer.eval_batch_size=8",
                            "model.width=4", "device=cpu", f"hydra.run.dir={run_dir}", monkeypatch=monkeypatch,
                            capsys=capsys, cwd=tmp_path)
    assert code == 0, err[-3000:]
    report = evaluate.evaluate_checkpoint(run_dir)
    assert report["count"] == 8 and report["acc"] == read_metrics(run_dir)["test/acc"]
    # 8 images of 10 classes: a class without any has no accuracy, not 0%
    absent = [name for name, row in zip(report["class_names"], report["confusion_matrix"]) if sum(row) == 0]
    assert absent and all(report["per_class_acc"][name] is None for name in absent)
    assert all(report["per_class_acc"][name] is not None for name in report["class_names"] if name not in absent)
    code, out, _ = call("evaluate", run_dir, capsys=capsys)
    assert code == 0 and f"  {absent[0]:<6}   n/a (no images in this split)" in out.splitlines()


def test_evaluate_of_a_split_the_run_has_not_is_one_line(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    code, _, err = run_main("dataset=fake", "dataset.val_size=0", "trainer.epochs=1", "model.width=4", "device=cpu",
                            f"hydra.run.dir={run_dir}", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err[-3000:]
    assert call("evaluate", run_dir, "--split", "val", capsys=capsys) == (
        1, "", f"python -m mnist_exp.tools.evaluate: The run's dataset has no val images ({run_dir}): evaluate another "
               "split, e.g. --split test.\n")
    assert call("evaluate", run_dir, "--no-tta", capsys=capsys) == (
        1, "", f"python -m mnist_exp.tools.evaluate: --no-tta leaves out test-time averaging, and {run_dir} was tested "
               "without it: leave out --no-tta.\n")


@pytest.mark.parametrize("tool", TOOLS)
def test_every_tool_answers_help_in_the_same_style(tool, capsys):
    code, out, err = call(tool, "--help", capsys=capsys)
    assert code == 0 and err == "" and out.startswith(f"usage: python -m mnist_exp.tools.{tool} [-h]")


@pytest.mark.parametrize("module", sorted({path.stem for path in Path(compare.__file__).parent.glob("[!_]*.py")}
                                           - set(TOOLS)))
def test_a_module_of_the_tools_that_is_not_a_command_says_so_when_run(module):
    """As ``python -m`` runs it (in this process: sys.exit's message is what Python prints, and exit status 1)."""
    with warnings.catch_warnings(), pytest.raises(SystemExit) as exit:
        warnings.simplefilter("ignore", RuntimeWarning)  # runpy's note that this process imported it already
        runpy.run_module(f"mnist_exp.tools.{module}", run_name="__main__")
    assert exit.value.code == (f"python -m mnist_exp.tools.{module}: this module is a part of the tools, not a "
                               "command. The commands: python -m mnist_exp.tools.compare, python -m "
                               "mnist_exp.tools.evaluate, python -m mnist_exp.tools.predict, python -m "
                               "mnist_exp.tools.export (each with --help).")


def test_hydra_full_error_shows_the_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(UserError, match="No checkpoint at"):
        evaluate.main([str(tmp_path / "nothing.pt")])


def test_weights_edited_to_another_shape_are_refused_by_the_tools_and_by_resume(trained, tmp_path, monkeypatch,
                                                                             capsys):
    """Its config says cnn at width 8, and one tensor is not that net's: torch's first complaint, not its header."""
    last = torch.load(trained / "checkpoints" / "last.pt", weights_only=True)
    for weights in (last["weights"], last["trainer"]["model"]):
        weights["0.0.weight"] = torch.zeros(3)
    torch.save(last, tmp_path / "edited.pt")
    misfit = ("does not fit the model its config names (cnn): size mismatch for 0.0.weight: copying a param with shape "
              "torch.Size([3]) from checkpoint, the shape in current model is torch.Size([8, 1, 5, 5]).")
    assert call("evaluate", tmp_path / "edited.pt", capsys=capsys) == (
        1, "", f"python -m mnist_exp.tools.evaluate: Checkpoint {tmp_path / 'edited.pt'} {misfit}\n")
    code, _, err = run_main("dataset=fake", "trainer.epochs=2", "trainer.batch_size=64", "model.width=8",
                            "trainer.ema_decay=0.75", "trainer.tta=true", "trainer.tta_scales=[0.9,1.0,1.1]",
                            "device=cpu", f"ckpt_path={tmp_path / 'edited.pt'}", monkeypatch=monkeypatch,
                            capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines() == [f"Checkpoint {tmp_path / 'edited.pt'} {misfit[:-1]}. Continue from a "
                                              "checkpoint the run wrote, or start fresh."]


@pytest.mark.parametrize("where", ["checkpoints/last.pt", "."])  # a run directory: its last.pt
def test_resume_refuses_a_checkpoint_of_another_model(where, trained, tmp_path, monkeypatch, capsys):
    code, _, err = run_main("dataset=fake", "trainer.batch_size=64", "trainer.epochs=2", "model=mlp", "device=cpu",
                            f"ckpt_path={trained / where}", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and "was trained with a different config (model.name: cnn -> mlp" in err.splitlines()[-1]
