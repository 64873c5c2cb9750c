"""Real MNIST, through the real entry points: the accuracy the README promises, and what users do with the model.

Every test here trains on real MNIST (or uses the model it trained), so the whole file is slow. The run and the
tools run in this process, as ``python -m mnist_exp`` and ``python -m mnist_exp.tools.<tool>`` run them. The runs
take one CPU thread (device.threads=1): make test runs another test file on the other core, and two threads
sharing one core with it are several times slower than one; the recipes, and so the accuracy, are the user's.
"""

import pytest
import torch
from PIL import Image, ImageOps

from conftest import read_metrics, run_captured, run_dirs, torch_settings_kept
from mnist_exp.data.datasets import read_idx
from mnist_exp.data.download import ensure_mnist
from mnist_exp.data.loader import model_input
from mnist_exp.tools import evaluate, export, predict
from mnist_exp.tools.trained import load_trained_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    """``experiment=fast`` on real MNIST, as a user runs it (but on one thread); the tools below use its model."""
    cwd = tmp_path_factory.mktemp("mnist")
    code, out, err = run_captured("experiment=fast", "device.threads=1", cwd=cwd)
    assert code == 0, err[-3000:]
    [run_dir] = run_dirs(cwd / "outputs")
    return run_dir, out + err


@pytest.fixture(scope="module")
def mnist_test_split():
    """MNIST's 10,000 test images (uint8 [N, 28, 28]) and labels, read from the IDX files here."""
    raw = ensure_mnist(download=False)
    return read_idx(raw / "t10k-images-idx3-ubyte"), read_idx(raw / "t10k-labels-idx1-ubyte").long()


def tool(module, *args, capsys) -> str:
    """``python -m mnist_exp.tools.<tool> args`` in this process; its stdout (it must exit 0 and say nothing on stderr)."""
    with torch_settings_kept():  # evaluate takes every core, as its command does
        code = module.main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    return out


def test_tutorial_jumpml_cnn_reaches_the_tutorials_accuracy_on_real_mnist(tmp_path):
    code, out, err = run_captured("experiment=tutorial_jumpml_cnn", "device.threads=1", cwd=tmp_path)
    assert code == 0, err[-3000:]
    [run_dir] = run_dirs(tmp_path / "outputs")
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["epoch"] == metrics["best_epoch"] == 3  # the last epoch
    assert "Dataset mnist: 60000 train, 0 validation, 10000 test images" in (run_dir / "train.log").read_text()
    assert metrics["test/acc"] >= 0.9762, out[-2000:]  # the 97.62% the tutorial reports


def test_fast_reaches_99_percent(fast_run):
    run_dir, output = fast_run
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["epoch"] == metrics["best_epoch"] == 1  # its one epoch
    assert metrics["test/acc"] >= 0.99, output[-2000:]


def test_evaluate_reproduces_test_acc_exactly(fast_run, capsys):
    run_dir, _ = fast_run
    acc = read_metrics(run_dir)["test/acc"]
    out = tool(evaluate, run_dir, capsys=capsys)
    assert f"accuracy {100 * acc:.2f}% ({round(acc * 10000)}/10000)" in out


def test_predict_reads_digits_drawn_as_users_draw_them(fast_run, mnist_test_split, tmp_path, capsys):
    """MNIST test digits as a user's files: scaled up, black on white, with margins, as PNG and JPEG."""
    run_dir, _ = fast_run
    images, labels = mnist_test_split[0][:20], mnist_test_split[1][:20]
    expected = {}
    for i, (pixels, label) in enumerate(zip(images, labels.tolist())):
        digit = ImageOps.invert(Image.fromarray(pixels.numpy()).resize((84 + 4 * i, 84), Image.Resampling.BILINEAR))
        page = ImageOps.expand(digit, border=(10 + i, 30, 50, 5), fill=255)
        name = tmp_path / f"digit{i:02d}.{'png' if i % 2 else 'jpg'}"
        page.convert("RGB").save(name)
        expected[str(name)] = str(label)
    out = tool(predict, run_dir, tmp_path, capsys=capsys)
    predicted = dict(line.split("\t")[:2] for line in out.strip().splitlines())
    assert predicted.keys() == expected.keys()
    correct = sum(predicted[name] == label for name, label in expected.items())
    assert correct >= 18, out


def test_onnx_export_gives_the_same_predictions(fast_run, mnist_test_split, tmp_path, capsys):
    """onnxruntime runs the exported file on all 10,000 test images: the checkpoint's own predictions, logits alike."""
    onnxruntime = pytest.importorskip("onnxruntime")
    run_dir, _ = fast_run
    out = tool(export, run_dir, "--format", "onnx", "--out", tmp_path / "model.onnx", capsys=capsys)
    assert out.startswith(f"Wrote {tmp_path / 'model.onnx'}; it predicts the same class as the checkpoint")

    images, labels = mnist_test_split
    pixels = images.unsqueeze(1).float() / 255  # what a deployment has: [N, 1, 28, 28] in [0, 1]
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    [batch] = session.get_inputs()
    assert (batch.name, batch.shape[1:]) == ("images", [1, 28, 28])
    logits = torch.cat([torch.from_numpy(session.run(["logits"], {"images": chunk.numpy()})[0])
                        for chunk in pixels.split(1000)])  # the batch size is free: 1000, not the export's 2
    # The checkpoint's model, loaded and normalised here by hand (not by the exporter's wrapper).
    trained = load_trained_model(run_dir)
    dataset = trained.config["dataset"]
    with torch.inference_mode():
        expected = torch.cat([trained.model(model_input(chunk, dataset["mean"], dataset["std"], dataset["flatten"]))
                              for chunk in images.split(1000)])
    assert logits.shape == (10000, 10)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    assert torch.equal(logits.argmax(1), expected.argmax(1))
    assert (logits.argmax(1) == labels).float().mean().item() >= 0.99  # the 99% model, through onnxruntime
