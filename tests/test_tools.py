"""evaluate, predict and export on a checkpoint of a real (fake-data) run; refusals of bad input."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from conftest import read_metrics, run_app, run_dirs, run_module
from mnist_exp.predict import to_mnist_form


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("trained")
    # Evaluated through a weight average and shifted copies: the tools must evaluate it the same way.
    run_app("dataset=fake", "trainer.epochs=2", "trainer.batch_size=64", "trainer.ema_decay=0.9", "trainer.tta=true",
            cwd=cwd)
    [run_dir] = run_dirs(cwd / "outputs")
    return run_dir


def test_evaluate_reproduces_the_runs_test_accuracy(trained, tmp_path):
    metrics = read_metrics(trained)
    result = run_module("mnist_exp.evaluate", f"ckpt={trained / 'checkpoints' / 'best.pt'}", "device=cpu", cwd=tmp_path)
    correct = round(metrics["test/acc"] * 256)
    assert f"accuracy {100 * metrics['test/acc']:.2f}% ({correct}/256)" in result.stdout
    assert f"loss {metrics['test/loss']:.4f}" in result.stdout
    assert "accuracy per class" in result.stdout and "confusion matrix" in result.stdout
    assert list(tmp_path.iterdir()) == []  # a report: nothing written where it ran


def test_export_torchscript_gives_the_checkpoints_predictions(trained, tmp_path):
    out = tmp_path / "model.ts.pt"
    result = run_module("mnist_exp.export", f"ckpt={trained / 'checkpoints' / 'best.pt'}", f"out={out}", cwd=tmp_path)
    assert "predicts the same class as the checkpoint on 256 test images" in result.stdout
    with warnings.catch_warnings():  # TorchScript's deprecation; the file is still what libtorch loads
        warnings.simplefilter("ignore", FutureWarning)
        exported = torch.jit.load(str(out))
    assert exported(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def digit_seven(size=(90, 140), ink=0, paper=255, mode="L") -> Image.Image:
    """A hand-drawn-like 7: dark strokes on light paper, off centre, not square."""
    image = Image.new(mode, size, paper)
    draw = ImageDraw.Draw(image)
    draw.line([(10, 20), (70, 20), (35, 120)], fill=ink, width=9)
    return image


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


def test_predict_prints_a_class_and_probability_per_file(trained, tmp_path):
    folder = tmp_path / "digits"
    folder.mkdir()
    digit_seven().save(folder / "a.png")
    digit_seven(ink=255, paper=0).convert("RGB").save(folder / "b.jpg")
    result = run_module("mnist_exp.predict", f"ckpt={trained / 'checkpoints' / 'best.pt'}", str(folder),
                        "device=cpu", cwd=tmp_path)
    lines = result.stdout.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(folder / "a.png"), str(folder / "b.jpg")]
    for line in lines:
        _, label, probability = line.split("\t")
        assert label in [str(c) for c in range(10)] and 0.1 <= float(probability) <= 1


def truncated_copy(trained, tmp_path):
    data = (trained / "checkpoints" / "best.pt").read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("case, message", [
    ("not_an_image", "is not an image PIL can read"),
    ("blank_image", "the image is blank"),
    ("missing_image", "does not exist"),
    ("unknown_option", "Unknown option 'ckpy'"),
    ("truncated_checkpoint", "is unreadable (truncated or corrupt"),
])
def test_predict_refuses_bad_input_with_one_line(trained, tmp_path, case, message):
    ckpt = trained / "checkpoints" / "best.pt"
    (tmp_path / "notes.png").write_text("not a picture")
    Image.new("L", (40, 40), 255).save(tmp_path / "blank.png")
    args = {
        "not_an_image": [f"ckpt={ckpt}", str(tmp_path / "notes.png")],
        "blank_image": [f"ckpt={ckpt}", str(tmp_path / "blank.png")],
        "missing_image": [f"ckpt={ckpt}", str(tmp_path / "nope.png")],
        "unknown_option": [f"ckpy={ckpt}", str(tmp_path / "blank.png")],
        "truncated_checkpoint": [f"ckpt={truncated_copy(trained, tmp_path)}", str(tmp_path / "blank.png")],
    }[case]
    result = run_module("mnist_exp.predict", *args, cwd=tmp_path, expect_ok=False)
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("case, message", [
    ("missing", "No checkpoint at"),
    ("truncated", "is unreadable (truncated or corrupt"),
    ("not_ours", "is not an mnist_exp checkpoint"),
])
def test_evaluate_and_resume_refuse_a_bad_checkpoint_and_keep_the_file(trained, tmp_path, case, message):
    if case == "missing":
        path = tmp_path / "nothing.pt"
    elif case == "truncated":
        path = truncated_copy(trained, tmp_path)
    else:
        path = tmp_path / "weights.pt"
        torch.save({"weight": torch.zeros(3)}, path)
    before = path.read_bytes() if path.exists() else None
    for module, args in (("mnist_exp.evaluate", [f"ckpt={path}"]),
                         ("mnist_exp", ["dataset=fake", f"ckpt_path={path}"])):
        result = run_module(module, *args, cwd=tmp_path, expect_ok=False)
        assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert (path.read_bytes() if path.exists() else None) == before


def test_resume_refuses_a_checkpoint_of_another_model(trained, tmp_path):
    result = run_app("dataset=fake", "trainer.batch_size=64", "trainer.epochs=2", "model=mlp", f"ckpt_path={trained / 'checkpoints' / 'last.pt'}", cwd=tmp_path,
                     expect_ok=False)
    assert result.returncode == 1 and "was trained with a different config (model.name: cnn -> mlp" in result.stderr
