"""scripts/benchmark.py on fake data: the real reference loop, our app, and the results section it writes.

The full benchmark (real MNIST, minutes of both cores) is not run here; its small mode goes through the
same code: the pytorch/examples loop reads MNIST's IDX files through torchvision's dataset and a
DataLoader, and ours is the app's own build_job and fit_and_test.
"""

import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision import datasets

from conftest import REPO, read_metrics
from mnist_exp.run.runtime import use_bf16
from mnist_exp.tools.evaluate import evaluate_checkpoint

spec = importlib.util.spec_from_file_location("benchmark", REPO / "scripts" / "benchmark.py")
benchmark = importlib.util.module_from_spec(spec)
spec.loader.exec_module(benchmark)
benchmark.register_schemas()  # as its main does, for the tests that compose a recipe

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


def test_the_reference_loop_learns_logs_every_10_batches_and_stops_at_its_target(tmp_path):
    root = benchmark.write_fake_mnist(tmp_path)
    log = io.StringIO()
    points = benchmark.reference(root, max_epochs=2, log_file=log)  # no stop_at: both epochs, a check each quarter
    assert [p["epoch"] for p in points] == [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
    assert all(a["seconds"] < b["seconds"] for a, b in zip(points, points[1:])) and points[0]["seconds"] > 0
    assert points[-1]["test_acc"] >= 0.6, points  # 10 classes: chance is 0.1
    # main.py's log line, loss.item() read, at batches 0 of each epoch (8 batches of 64 from 512 images)
    assert [line.split("\t")[0] for line in log.getvalue().splitlines()] == [
        "Train Epoch: 1 [0/512 (0%)]", "Train Epoch: 2 [0/512 (0%)]"]
    first = next(i for i, p in enumerate(points) if p["test_acc"] >= 0.5)
    stopped = benchmark.reference(root, max_epochs=3, stop_at=0.5)  # the same run, cut at its first check >= 0.5
    assert [p["test_acc"] for p in stopped] == [p["test_acc"] for p in points[:first + 1]]


def test_the_test_curve_checks_outside_the_clock_without_changing_the_training(tmp_path):
    def train(with_curve: bool):
        cfg = benchmark.compose_recipe("fast", small=True, extra=["trainer.progress=false", "trainer.log_interval=1",
                                                                   "trainer.checkpoint=false"])
        job = benchmark.build_job(cfg, tmp_path / f"run_{with_curve}", in_sweep=False)
        curve = benchmark.TestCurve(job.loaders["test"], every_log=True)
        if with_curve:
            job.trainer.callbacks.append(curve)
        job.trainer.fit(job.loaders["train"], job.loaders["val"])
        job.tracker.close()
        return job.trainer.model.state_dict(), curve, job.trainer.state.step

    plain, _, _ = train(False)
    checked, curve, steps = train(True)
    assert all(torch.equal(plain[k], checked[k]) for k in plain)  # batch norm trained in training mode throughout
    assert steps > 1 and [p["step"] for p in curve.points] == list(range(1, steps + 1))  # a check after each step
    seconds = [p["seconds"] for p in curve.points]
    assert curve.checking_s > 0 and 0 < seconds[0] and seconds == sorted(seconds)


def test_fasts_speed_leaves_out_the_test_checks_made_inside_its_training_phase(tmp_path):
    run = benchmark.ours("fast", small=True, out=tmp_path, extra=("trainer.log_interval=1",))  # a check each step
    recorded = read_metrics(Path(run["run_dir"]))  # the run's own record counts the checks' seconds as training
    assert run["train_s"] < recorded["train_time_s"]
    assert run["train_gflops_per_s"] > recorded["train_gflops_per_s"]


def test_the_results_section_is_replaced_where_it_is_and_added_where_it_is_not(tmp_path):
    results = tmp_path / "RESULTS.md"
    benchmark.write_results_section(results, "first")
    assert results.read_text() == f"# Results\n\n## scripts/benchmark.py\n\n{benchmark.START}\nfirst\n{benchmark.END}\n"

    results.write_text(HAND_WRITTEN_BEFORE + OLD_SECTION + HAND_WRITTEN_AFTER)
    for section in ("second", "third\n\nwith two paragraphs"):
        benchmark.write_results_section(results, section)
        assert results.read_text() == (HAND_WRITTEN_BEFORE + f"{benchmark.START}\n{section}\n{benchmark.END}"
                                       + HAND_WRITTEN_AFTER)


@pytest.mark.slow  # the script itself, which runs the reference and each of our runs in processes of their own
def test_small_mode_end_to_end_refreshes_the_section_with_the_machine(tmp_path):
    results, out = tmp_path / "RESULTS.md", tmp_path / "out"
    results.write_text(HAND_WRITTEN_BEFORE + OLD_SECTION + HAND_WRITTEN_AFTER)
    # One thread, as a launcher's share (OMP_NUM_THREADS): make test runs another file on the other core.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "benchmark.py"), "--small", "--out", str(out),
                          "--results", str(results)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
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
    fast = read_metrics(Path(report["pairs"]["fast"][0]["run_dir"]))  # the run the app wrote, not a made-up figure
    assert fast["status"] == "completed" and fast["test/acc"] >= 0.3, fast
    ours_precision = f"{'bf16 autocast' if use_bf16('auto', torch.device('cpu')) else 'fp32'} on cpu"  # as the reference
    rows = {line.split(" | ")[0]: line for line in section.splitlines() if line.startswith("| ")}
    reference = report["pairs"]["reference"]
    assert len(reference) == len(report["pairs"]["fast"]) == 2  # --small: two alternating pairs
    assert rows["| pytorch/examples mnist (DataLoader batch 64 without shuffling, Adadelta)"].startswith(
        "| pytorch/examples mnist (DataLoader batch 64 without shuffling, Adadelta) | fp32 on cpu | "
        f"{100 * reference[0][-1]['test_acc']:.2f}% after 1 epoch(s) |")
    assert rows["| mnist_exp `experiment=fast`"].startswith(
        f"| mnist_exp `experiment=fast` | {ours_precision} | {100 * fast['test/acc']:.2f}% |")
    plain = report["best"]["test_acc_without_tta"]  # best tests with TTA: the plain model is beside it
    assert rows["| mnist_exp `experiment=best`"].startswith(
        f"| mnist_exp `experiment=best` | {ours_precision} | {100 * report['best']['test/acc']:.2f}% "
        f"({100 * plain:.2f}% without its test-time averaging) |")
    assert plain == evaluate_checkpoint(Path(report["best"]["run_dir"]), tta=False)["acc"]
    fp32 = read_metrics(Path(report["pairs"]["fast_fp32"][0]["run_dir"]))
    assert rows["| mnist_exp `experiment=fast device.precision=fp32`"].startswith(
        f"| mnist_exp `experiment=fast device.precision=fp32` | fp32 on cpu | {100 * fp32['test/acc']:.2f}% |")
    assert len(report["pairs"]["speedups_fp32"]) == 2 and "speed-up of `fast` in fp32" in section
    assert "(CPU flags: " in machine_line and "torch's kernels: " in machine_line
    assert report["pairs"]["fast"][0]["curve"][-1]["test_acc"] == fast["test/acc"]  # the curve ends at the run's test
    assert reference[0][-1]["test_acc"] >= 0.5  # the reference trained on the fake split, one epoch

    # The runs most users start from, and each run's compute, as their metrics.json files have them.
    for command in ("python -m mnist_exp", "python -m mnist_exp model=cnn optimizer=adam"):
        [run] = report["everyday"][command]
        metrics = read_metrics(Path(run["run_dir"]))
        assert rows[f"| `{command}` (seed 0)"].startswith(
            f"| `{command}` (seed 0) | {ours_precision} | {100 * metrics['test/acc']:.2f}% | ")
        assert rows[f"| `{command}`"].startswith(f"| `{command}` | {ours_precision} | "
                                                 f"{metrics['flops_per_image'] / 1e6:.2f} | "
                                                 f"{metrics['train_gflops_per_s']:.1f} | ")
    assert rows["| `experiment=fast`"].startswith(f"| `experiment=fast` | {ours_precision} | "
                                                  f"{fast['flops_per_image'] / 1e6:.2f} | ")
    assert ("fp32 peak: " in section) and (report["machine"]["fp32_peak"] is None) == ("fp32 peak: unknown" in section)

    # Fixed costs: a real sweep of two jobs and a real single run, their training seconds from their metrics.json.
    costs = report["fixed_costs"]
    trained = [read_metrics(path.parent)["train_time_s"]
               for path in sorted(Path(costs["sweep_dir"]).glob("*/metrics.json"))]
    assert len(trained) == 2 and costs["sweep_train_s"] == trained
    assert costs["sweep_ratio"] == pytest.approx(costs["sweep_s"] / sum(trained)) and costs["sweep_ratio"] > 1
    assert costs["run_train_s"] == read_metrics(Path(costs["run_dir"]))["train_time_s"]
    # That run's first batch, as its log has it, is the start-up's (--small: one run).
    log = (Path(costs["run_dir"]) / "train.log").read_text()
    assert f"First batch {costs['run_first_batch_s']:.2f} s after the process started" in log
    assert report["startup"]["first_batch_s"] == costs["run_first_batch_s"]
    assert 0 < costs["import_torch_s"] < report["startup"]["import_torch_torchvision_s"]  # one process, read twice
    assert f"took {costs['sweep_s']:.1f} s for {sum(trained):.1f} s of training in its 2 jobs: " \
           f"**{costs['sweep_ratio']:.2f}x**" in section
    with Image.open(out / "benchmark.png") as image:
        image.verify()


@pytest.mark.parametrize("argv, said", [
    (["--pairs", "0"], "argument --pairs: '0' is not a whole number of at least 1"),  # was the default, 3
    (["--pairs", "-1"], "argument --pairs: '-1' is not a whole number of at least 1"),  # was an IndexError at the end
    (["--repeats", "0"], "argument --repeats: '0' is not a whole number of at least 1"),
    (["--reference-epochs", "0"], "argument --reference-epochs: '0' is not a whole number of at least 1"),
    (["--peak-gflops", "0"], "argument --peak-gflops: '0' is not a number above 0"),  # was: the peak unknown
    (["--peak-gflops", "nan"], "argument --peak-gflops: 'nan' is not a number above 0"),
    (["--small", "--reference-epochs", "3"], "--reference-epochs takes no effect with --small, which runs 1: leave "
                                             "--reference-epochs out, or --small"),
    (["--small", "--repeats", "5"], "--repeats takes no effect with --small, which runs 1: leave --repeats out, or "
                                    "--small"),
])
def test_the_benchmarks_options_take_effect_or_are_refused_in_one_line_before_it_runs(argv, said, capsys):
    with pytest.raises(SystemExit) as refused:
        benchmark.arguments(argv)
    assert refused.value.code == 2
    assert capsys.readouterr().err == f"python scripts/benchmark.py: {said}. See --help.\n"


def test_the_benchmarks_out_and_results_are_refused_where_they_cannot_be_written_before_it_runs(tmp_path, capsys):
    (tmp_path / "a_file").write_text("mine\n")
    for argv, said in ((["--out", str(tmp_path / "a_file")], f"--out {tmp_path / 'a_file'} is a file"),
                       (["--results", str(tmp_path)], f"--results {tmp_path} is a directory")):
        with pytest.raises(SystemExit):
            benchmark.arguments(argv)
        assert capsys.readouterr().err.startswith(f"python scripts/benchmark.py: {said}: ")
    assert (tmp_path / "a_file").read_text() == "mine\n"
    args = benchmark.arguments(["--pairs", "2", "--peak-gflops", "100"])
    assert (args.pairs, args.reference_epochs, args.repeats, args.peak_gflops) == (2, 14, 15, 100.0)
