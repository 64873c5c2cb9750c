"""Seconds to 99.0% test accuracy: pytorch/examples' mnist recipe against our `fast` experiment, in one run.

    python scripts/benchmark.py            # real MNIST: several minutes on 2 CPU cores; refreshes scripts/RESULTS.md
    python scripts/benchmark.py --small    # fake data, seconds: checks that the script works (results in --out)

(a) the reference, as pytorch/examples mnist/main.py writes it: its network, Adadelta lr 1.0,
    StepLR gamma 0.7, torchvision's MNIST with ToTensor and Normalize, a DataLoader of batch 64,
    seed 1; trained until 99.0% test accuracy or 3 epochs (then its time is a lower bound);
(b) `python -m mnist_exp experiment=fast`, its training time and test accuracy;
(c) the framework's overhead: one epoch through our Trainer (logging, progress bar, checkpoints)
    against a minimal hand-written loop over the same tensors, model, optimizer and batch size;
(d) start-up: seconds from the start of `python -m mnist_exp experiment=fast` to its first batch,
    against the seconds `python -c "import torch, torchvision"` takes.

Only training counts as seconds: the reference's per-epoch test pass is not timed, and our time
includes validation passes where the recipe has a validation split. Results go to
<out>/benchmark.json, benchmark.md and benchmark.png, and the table, with the date and the machine,
replaces the part of the results file (--results) between its benchmark markers; the hand-written
tables around them stay as they are.
"""

import argparse
import contextlib
import io
import json
import logging
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from mnist_exp.app import build_job, fit_and_test
from mnist_exp.callbacks import CheckpointCallback, TensorBoardCallback
from mnist_exp.config import register_schemas
from mnist_exp.data import TensorLoader, build_dataset, ensure_mnist
from mnist_exp.data.download import idx_bytes
from mnist_exp.paths import CONF_DIR
from mnist_exp.registry import MODELS, OPTIMIZERS, SCHEDULERS
from mnist_exp.runtime import cpu_has_bf16, place_model, set_cpu_threads, use_bf16
from mnist_exp.tracking import TensorBoardTracker
from mnist_exp.trainer import LoopSettings, Trainer, autocast_context

TARGET = 0.99
SMALL_DATA = {"name": "fake", "num_train": 512, "val_size": 128, "num_test": 128}
SMALL = [f"dataset.{key}={value}" if key != "name" else f"dataset={value}" for key, value in SMALL_DATA.items()]
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
START, END = "<!-- benchmark:start -->", "<!-- benchmark:end -->"


class ExamplesNet(nn.Module):
    """pytorch/examples mnist/main.py's network, as written there."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(self.dropout1(x), 1)
        x = self.dropout2(F.relu(self.fc1(x)))
        return F.log_softmax(self.fc2(x), dim=1)


def write_fake_mnist(root: Path) -> Path:
    """The small mode's fake data as MNIST's four IDX files in torchvision's layout, so the reference reads it
    through ``datasets.MNIST`` exactly as it reads the real files."""
    data = build_dataset(SMALL_DATA)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, split in (("train", data.train), ("t10k", data.test)):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(split.images))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(split.labels.to(torch.uint8)))
    return root


def reference(root: Path, max_epochs: int = 3, target: float = TARGET) -> list[dict]:
    """Train the pytorch/examples recipe on the MNIST files under ``root`` (torchvision's layout: root/MNIST/raw)
    until ``target`` test accuracy or ``max_epochs``; test accuracy after each epoch against seconds of training."""
    torch.manual_seed(1)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train_set = datasets.MNIST(root, train=True, transform=transform)
    test_set = datasets.MNIST(root, train=False, transform=transform)
    train_loader = DataLoader(train_set, batch_size=64, shuffle=True)
    test_loader = DataLoader(test_set, batch_size=1000)
    model = ExamplesNet()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    seconds, points = 0.0, []
    for epoch in range(1, max_epochs + 1):
        model.train()
        started = time.perf_counter()
        for x, y in train_loader:
            optimizer.zero_grad()
            F.nll_loss(model(x), y).backward()
            optimizer.step()
        seconds += time.perf_counter() - started
        model.eval()
        with torch.inference_mode():
            correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in test_loader)
        points.append({"epoch": epoch, "seconds": seconds, "test_acc": correct / len(test_set)})
        print(f"  reference epoch {epoch}: {100 * points[-1]['test_acc']:.2f}% after {seconds:.1f} s", flush=True)
        if points[-1]["test_acc"] >= target:
            break
        scheduler.step()
    return points


def compose_fast(small: bool):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=["experiment=fast", "trainer.progress=false", *(SMALL if small else [])])


def ours(small: bool, out: Path) -> dict:
    """`python -m mnist_exp experiment=fast`, built and run in this process as the app runs it."""
    cfg = compose_fast(small)
    job = build_job(cfg, out / "fast_run", in_sweep=False)
    metrics = fit_and_test(job, ["experiment=fast"])
    device = job.trainer.settings.device
    metrics["precision"] = f"{'bf16 autocast' if job.trainer.settings.bf16 else 'fp32'} on {device.type}"
    print(f"  fast: {100 * metrics['test/acc']:.2f}% after {metrics['train_time_s']:.1f} s "
          f"({metrics['precision']})", flush=True)
    return metrics


def overhead(small: bool, out: Path, repeats: int) -> dict:
    """Seconds of one epoch (and its validation pass, if any): our Trainer with its callbacks vs a minimal loop."""
    cfg = compose_fast(small)
    data = build_dataset(cfg.dataset)
    cpu = torch.device("cpu")
    bf16 = use_bf16(cfg.device.precision.value, cpu)  # as `experiment=fast` runs here, for both loops

    def setup():
        torch.manual_seed(0)
        model, channels_last = place_model(MODELS.build(cfg.model, 10), cpu, cfg.device.channels_last)
        optimizer = OPTIMIZERS.build(cfg.optimizer, model.parameters())
        loader = TensorLoader(data.train, cfg.trainer.batch_size, mean=data.mean, std=data.std, flatten=data.flatten,
                              shuffle=True)
        val = TensorLoader(data.val, cfg.trainer.eval_batch_size, mean=data.mean, std=data.std, flatten=data.flatten)
        scheduler = SCHEDULERS.build(cfg.scheduler, optimizer, len(loader), len(loader))
        return model, channels_last, optimizer, scheduler, loader, val

    def minimal() -> float:
        model, channels_last, optimizer, scheduler, loader, val = setup()
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        started = time.perf_counter()
        model.train()
        for x, y in loader.epoch_batches(0):
            with autocast_context(cpu, bf16):
                logits = model(x.contiguous(memory_format=memory_format))
            loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.trainer.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        model.eval()
        with torch.inference_mode():
            for x, y in val:
                with autocast_context(cpu, bf16):
                    model(x.contiguous(memory_format=memory_format)).argmax(1)
        return time.perf_counter() - started

    def framework() -> float:
        model, channels_last, optimizer, scheduler, loader, val = setup()
        run_dir = Path(tempfile.mkdtemp(dir=out))
        tracker = TensorBoardTracker(run_dir)
        callbacks = [TensorBoardCallback(tracker), CheckpointCallback(run_dir / "checkpoints", {"config": {}})]
        settings = LoopSettings(epochs=1, device=cpu, label_smoothing=cfg.trainer.label_smoothing, bf16=bf16,
                                channels_last=channels_last, log_interval=cfg.trainer.log_interval, progress=True)
        trainer = Trainer(model, optimizer, scheduler, settings, callbacks)
        started = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):  # the progress bar is drawn, but not onto this report
            trainer.fit(loader, val)
        seconds = time.perf_counter() - started
        tracker.close()
        return seconds

    minimal()  # warm-up: first-touch allocations and kernel selection, for both
    # Back to back, in alternating order: a shared machine's speed drifts by more than the overhead.
    pairs = []
    for i in range(repeats):
        if i % 2:
            trainer_s = framework()
            loop_s = minimal()
        else:
            loop_s = minimal()
            trainer_s = framework()
        pairs.append((loop_s, trainer_s))
    ratio = statistics.median(trainer_s / loop_s for loop_s, trainer_s in pairs)
    print(f"  overhead: median ratio {ratio:.3f} over {repeats} pairs (minimal loop s, trainer s): "
          + ", ".join(f"({loop_s:.2f}, {trainer_s:.2f})" for loop_s, trainer_s in pairs), flush=True)
    return {"minimal_epoch_s": statistics.median(p[0] for p in pairs),
            "trainer_epoch_s": statistics.median(p[1] for p in pairs), "ratio": ratio, "pairs": pairs}


def startup(small: bool, out: Path, repeats: int) -> dict:
    """Seconds to the first batch of a real `python -m mnist_exp` (which it logs), against importing torch alone."""
    def seconds(command: list[str]) -> float:
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        return time.perf_counter() - started

    def first_batch(run_dir: Path) -> float:
        command = [sys.executable, "-m", "mnist_exp", "experiment=fast", *(SMALL if small else []),
                   "trainer.progress=false", f"hydra.run.dir={run_dir}"]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in process.stdout:
            found = re.search(r"First batch ([\d.]+) s after the process started", line)
            if found:
                process.send_signal(signal.SIGTERM)  # stops after that batch; the rest is not start-up
                process.communicate()
                return float(found.group(1))
        raise RuntimeError(f"{' '.join(command)} ended before its first batch")

    imports = min(seconds([sys.executable, "-c", "import torch, torchvision"]) for _ in range(repeats))
    first = min(first_batch(out / f"startup_{i}") for i in range(repeats))
    print(f"  start-up: first batch after {first:.2f} s; importing torch and torchvision takes {imports:.2f} s", flush=True)
    return {"first_batch_s": first, "import_torch_torchvision_s": imports, "overhead_s": first - imports}


def cpu_model() -> str:
    """The CPU's name as /proc/cpuinfo gives it (Linux), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"date": date.today().isoformat(), "cpu": cpu_model(), "cores": cores, "bf16_instructions": cpu_has_bf16(),
            "torch": torch.__version__, "threads": torch.get_num_threads()}


def machine_line(m: dict) -> str:
    return (f"Machine: {m['cpu']}, {m['cores']} cores{', bf16 instructions' if m['bf16_instructions'] else ''}; "
            f"torch {m['torch']} ({m['threads']} threads). Run on {m['date']}.")


def report(result: dict) -> str:
    ref, fast, over, up = result["reference"], result["fast"], result["overhead"], result["startup"]
    reached = [p for p in ref if p["test_acc"] >= TARGET]
    ref_seconds = reached[0]["seconds"] if reached else ref[-1]["seconds"]
    ref_text = f"{ref_seconds:.1f}" if reached else f"> {ref_seconds:.1f} (not reached in {len(ref)} epochs)"
    fast_reached = fast["test/acc"] >= TARGET
    ratio = ref_seconds / fast["train_time_s"]
    ratio_text = (f"{ratio:.1f}x" if reached else f"> {ratio:.1f}x") if fast_reached else "n/a (fast missed 99.0%)"
    lines = [machine_line(result["machine"]), ""]
    if result["small"]:
        lines += ["`--small`: fake data, a few batches. These figures check that the script works; they measure "
                  "nothing.", ""]
    return "\n".join(lines + [
        "| recipe | precision | test accuracy | seconds of training to 99.0% |",
        "|---|---|---|---|",
        f"| pytorch/examples mnist (DataLoader, batch 64) | fp32 on cpu | {100 * ref[-1]['test_acc']:.2f}% after "
        f"{len(ref)} epoch(s) | {ref_text} |",
        f"| mnist_exp `experiment=fast` | {fast['precision']} | {100 * fast['test/acc']:.2f}% | "
        f"{fast['train_time_s']:.1f}{'' if fast_reached else ' (99.0% not reached)'} |",
        f"| speed-up | | | {ratio_text} |",
        "",
        f"Framework overhead, one epoch of the fast recipe: our Trainer with logging, progress "
        f"bar and checkpoints {over['trainer_epoch_s']:.2f} s, a minimal loop {over['minimal_epoch_s']:.2f} s "
        f"(medians): ratio {over['ratio']:.3f} (the median of {len(over['pairs'])} back-to-back pairs). "
        "Both loops compute in the fast recipe's precision.",
        "",
        f"Start-up: the first batch of `python -m mnist_exp experiment=fast` {up['first_batch_s']:.2f} s after the "
        f"process started; `import torch, torchvision` alone {up['import_torch_torchvision_s']:.2f} s: "
        f"{up['overhead_s']:.2f} s more.",
    ])


def write_results_section(path: Path, section: str) -> None:
    """Put ``section`` between the benchmark markers of ``path``: replaced where they are, appended where not."""
    block = f"{START}\n{section.strip()}\n{END}"
    text = path.read_text() if path.exists() else "# Results\n"
    if START in text and END in text:
        before, _, rest = text.partition(START)
        _, _, after = rest.partition(END)
        text = before + block + after
    else:
        text = text.rstrip("\n") + "\n\n## scripts/benchmark.py\n\n" + block + "\n"
    path.write_text(text)


def plot(result: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    ref = result["reference"]
    ax.plot([0] + [p["seconds"] for p in ref], [0.1] + [p["test_acc"] for p in ref], "o-",
            label="pytorch/examples mnist")
    ax.plot([result["fast"]["train_time_s"]], [result["fast"]["test/acc"]], "s", markersize=9,
            label="mnist_exp experiment=fast")
    ax.axhline(TARGET, color="grey", linestyle="--", linewidth=1)
    ax.set(xlabel="seconds of training", ylabel="test accuracy", ylim=(0.95, 1.0) if not result["small"] else None,
           title="Test accuracy against training time")
    ax.legend(loc="lower right")
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="fake data, seconds: checks that the script works")
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmark"), help="where results go")
    parser.add_argument("--results", type=Path, default=None,
                        help="the results file whose benchmark section is refreshed (default: scripts/RESULTS.md; "
                             "with --small, <out>/RESULTS.md, so a check never replaces measured figures)")
    parser.add_argument("--repeats", type=int, default=9, help="epochs of each loop for the overhead ratio")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.results or (args.out / "RESULTS.md" if args.small else RESULTS)
    logging.basicConfig(level=logging.WARNING)
    register_schemas()
    set_cpu_threads(0)
    result = {"machine": machine(), "small": args.small}
    print("Reference (pytorch/examples mnist):", flush=True)
    root = write_fake_mnist(args.out / "fake_mnist") if args.small else ensure_mnist().parents[1]
    result["reference"] = reference(root, max_epochs=1 if args.small else 3)
    print("Ours (experiment=fast):", flush=True)
    result["fast"] = ours(args.small, args.out)
    print("Overhead:", flush=True)
    result["overhead"] = overhead(args.small, args.out, 1 if args.small else args.repeats)
    print("Start-up:", flush=True)
    result["startup"] = startup(args.small, args.out, 1 if args.small else 3)
    table = report(result)
    (args.out / "benchmark.json").write_text(json.dumps(result, indent=2))
    (args.out / "benchmark.md").write_text(table + "\n")
    plot(result, args.out / "benchmark.png")
    write_results_section(results, table)
    print("\n" + table)
    print(f"\nWrote {args.out / 'benchmark.json'}, benchmark.md and benchmark.png; refreshed the benchmark section "
          f"of {results}")


if __name__ == "__main__":
    main()
