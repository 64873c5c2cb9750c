"""Real MNIST, through the real entry points: the accuracy the README promises, and what users do with the model."""

import pytest
from PIL import Image, ImageOps

from conftest import read_metrics, run_dirs, run_module
from mnist_exp.data.datasets import read_idx
from mnist_exp.data.download import ensure_mnist


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    """``experiment=fast`` on real MNIST, as a user runs it (every core); the tools below use its model."""
    cwd = tmp_path_factory.mktemp("mnist")
    result = run_module("mnist_exp", "experiment=fast", cwd=cwd)
    [run_dir] = run_dirs(cwd / "outputs")
    return run_dir, result


@pytest.mark.slow
def test_fast_reaches_99_percent(fast_run):
    run_dir, result = fast_run
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["epoch"] == metrics["best_epoch"] == 1  # its one epoch
    assert metrics["test/acc"] >= 0.99, result.stdout[-2000:]


@pytest.mark.slow
def test_evaluate_reproduces_test_acc_exactly(fast_run, tmp_path):
    run_dir, _ = fast_run
    acc = read_metrics(run_dir)["test/acc"]
    result = run_module("mnist_exp.tools.evaluate", str(run_dir), cwd=tmp_path)
    assert f"accuracy {100 * acc:.2f}% ({round(acc * 10000)}/10000)" in result.stdout


@pytest.mark.slow
def test_predict_reads_digits_drawn_as_users_draw_them(fast_run, tmp_path):
    """MNIST test digits as a user's files: scaled up, black on white, with margins, as PNG and JPEG."""
    run_dir, _ = fast_run
    raw = ensure_mnist()
    images, labels = read_idx(raw / "t10k-images-idx3-ubyte")[:20], read_idx(raw / "t10k-labels-idx1-ubyte")[:20]
    expected = {}
    for i, (pixels, label) in enumerate(zip(images, labels.tolist())):
        digit = ImageOps.invert(Image.fromarray(pixels.numpy()).resize((84 + 4 * i, 84), Image.Resampling.BILINEAR))
        page = ImageOps.expand(digit, border=(10 + i, 30, 50, 5), fill=255)
        name = tmp_path / f"digit{i:02d}.{'png' if i % 2 else 'jpg'}"
        page.convert("RGB").save(name)
        expected[str(name)] = str(label)
    result = run_module("mnist_exp.tools.predict", str(run_dir), str(tmp_path), cwd=tmp_path)
    predicted = dict(line.split("\t")[:2] for line in result.stdout.strip().splitlines())
    assert predicted.keys() == expected.keys()
    correct = sum(predicted[name] == label for name, label in expected.items())
    assert correct >= 18, result.stdout


@pytest.mark.slow
def test_onnx_export_gives_the_same_predictions(fast_run, tmp_path):
    pytest.importorskip("onnxruntime")
    run_dir, _ = fast_run
    result = run_module("mnist_exp.tools.export", str(run_dir), "--format", "onnx", "--out", str(tmp_path / "model.onnx"),
                        cwd=tmp_path)
    assert "predicts the same class as the checkpoint on 512 test images" in result.stdout
