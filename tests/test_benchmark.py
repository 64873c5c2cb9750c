"""scripts/benchmark.py on fake data: the real reference loop, our app, and the results section it writes.

The full benchmark (real MNIST, minutes of both cores) is not run here; its small mode goes through the
same code: the pytorch/examples loop reads MNIST's IDX files through torchvision's dataset and a
DataLoader, and ours is the app's own build_job and fit_and_test.
"""

import importlib.util
import json
import os
import subprocess
import sys

import torch
from PIL import Image
from torchvision import datasets

from conftest import REPO, read_metrics
from mnist_exp.runtime import select_device, use_bf16

spec = importlib.util.spec_from_file_location("benchmark", REPO / "scripts" / "benchmark.py")
benchmark = importlib.util.module_from_spec(spec)
spec.loader.exec_module(benchmark)

HAND_WRITTEN_BEFORE = "# Results\n\n## Tutorials\n\n| recipe | test accuracy |\n|---|---|\n| a | 99.00% |\n\n"
HAND_WRITTEN_AFTER = "\n\n## DDP\n\nA table measured by hand.\n"
OLD_SECTION = f"{benchmark.START}\nMachine: an old one\n\nOLD FIGURES\n{benchmark.END}"


def cpu_model_from_proc() -> str:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    raise AssertionError("no model name in /proc/cpuinfo")


def test_the_small_mode_feeds_the_reference_the_fake_split_through_torchvision(tmp_path):
    root = benchmark.write_fake_mnist(tmp_path)
    fake = benchmark.build_dataset(benchmark.SMALL_DATA)
    train, test = datasets.MNIST(root, train=True), datasets.MNIST(root, train=False)
    assert (len(train), len(test)) == (len(fake.train), len(fake.test)) == (512, 128)
    assert torch.equal(train.data, fake.train.images) and torch.equal(train.targets, fake.train.labels)
    assert torch.equal(test.data, fake.test.images) and torch.equal(test.targets, fake.test.labels)


def test_the_reference_loop_learns_and_stops_at_its_target(tmp_path):
    root = benchmark.write_fake_mnist(tmp_path)
    points = benchmark.reference(root, max_epochs=2, target=1.01)  # a target no run reaches: both epochs
    assert [p["epoch"] for p in points] == [1, 2]
    assert 0 < points[0]["seconds"] < points[1]["seconds"]
    assert points[1]["test_acc"] >= 0.6, points  # 10 classes: chance is 0.1

    [point] = benchmark.reference(root, max_epochs=3, target=0.5)  # reached after the first epoch: stops there
    assert point["epoch"] == 1 and point["test_acc"] >= 0.5


def test_the_results_section_is_replaced_where_it_is_and_added_where_it_is_not(tmp_path):
    results = tmp_path / "RESULTS.md"
    benchmark.write_results_section(results, "first")
    assert results.read_text() == f"# Results\n\n## scripts/benchmark.py\n\n{benchmark.START}\nfirst\n{benchmark.END}\n"

    results.write_text(HAND_WRITTEN_BEFORE + OLD_SECTION + HAND_WRITTEN_AFTER)
    for section in ("second", "third\n\nwith two paragraphs"):
        benchmark.write_results_section(results, section)
        assert results.read_text() == (HAND_WRITTEN_BEFORE + f"{benchmark.START}\n{section}\n{benchmark.END}"
                                       + HAND_WRITTEN_AFTER)


def test_small_mode_end_to_end_refreshes_the_section_with_the_machine(tmp_path):
    results, out = tmp_path / "RESULTS.md", tmp_path / "out"
    results.write_text(HAND_WRITTEN_BEFORE + OLD_SECTION + HAND_WRITTEN_AFTER)
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "benchmark.py"), "--small", "--out", str(out),
                          "--results", str(results)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]

    text = results.read_text()
    assert text.startswith(HAND_WRITTEN_BEFORE + benchmark.START + "\n") and text.endswith(benchmark.END + HAND_WRITTEN_AFTER)
    assert text.count(benchmark.START) == text.count(benchmark.END) == 1 and "OLD FIGURES" not in text
    section = text[len(HAND_WRITTEN_BEFORE) + len(benchmark.START):-len(benchmark.END + HAND_WRITTEN_AFTER)]
    assert section.strip() == (out / "benchmark.md").read_text().strip()

    cores = len(os.sched_getaffinity(0))
    machine_line = section.strip().splitlines()[0]
    assert machine_line.startswith(f"Machine: {cpu_model_from_proc()}, {cores} cores")
    assert f"torch {torch.__version__}" in machine_line

    report = json.loads((out / "benchmark.json").read_text())
    fast = read_metrics(out / "fast_run")  # the run the app wrote, not a figure the script made up
    assert fast["status"] == "completed" and fast["test/acc"] >= 0.5, fast
    device = select_device("auto")  # experiment=fast composes device=auto
    ours_precision = f"{'bf16 autocast' if use_bf16('auto', device) else 'fp32'} on {device.type}"
    [reference_row] = [line for line in section.splitlines() if line.startswith("| pytorch/examples")]
    [fast_row] = [line for line in section.splitlines() if line.startswith("| mnist_exp")]
    assert reference_row.startswith("| pytorch/examples mnist (DataLoader, batch 64) | fp32 on cpu | "
                                    f"{100 * report['reference'][0]['test_acc']:.2f}% after 1 epoch(s) |")
    assert fast_row.startswith(f"| mnist_exp `experiment=fast` | {ours_precision} | "
                               f"{100 * fast['test/acc']:.2f}% | {fast['train_time_s']:.1f}")
    assert report["reference"][0]["test_acc"] >= 0.5  # the reference trained on the fake split, one epoch
    with Image.open(out / "benchmark.png") as image:
        image.verify()
