"""Seconds of training to 99.0%, 99.5% and 99.7% test accuracy: pytorch/examples' mnist recipe against our `fast`
and `best` experiments, in one run, on the same device (the CPU, where the reference runs).

    python scripts/benchmark.py            # real MNIST: about half an hour on 2 CPU cores; refreshes scripts/RESULTS.md
    python scripts/benchmark.py --small    # fake data, seconds: checks that the script works (results in --out)

(a) the reference, as pytorch/examples mnist/main.py runs it on a CPU: its network, Adadelta lr 1.0, StepLR
    gamma 0.7, torchvision's MNIST with ToTensor and Normalize, a DataLoader of batch 64 without shuffling
    (main.py shuffles only with CUDA), ``loss.item()`` read for its log line every 10 batches, seed 1, fp32;
(b) `python -m mnist_exp experiment=fast device.name=cpu` and `experiment=best device.name=cpu`, built and run
    in this process as the app runs them, in their own precision (bf16 autocast where the CPU has bf16), and
    `fast` again in fp32 (`device.precision=fp32`), the reference's precision;
(c) the headline: the reference's seconds to 99.0% over fast's (each precision), the median of --pairs runs of
    each, back to back in alternating order (this machine's speed drifts by more than the differences measured);
(d) the framework's overhead: one epoch through our Trainer (INFO log lines, progress bar, TensorBoard,
    checkpoints, as a user sees them) against a minimal loop over the same tensors, model, optimizer and batch;
(e) the runs most users start from: `python -m mnist_exp` and `model=cnn optimizer=adam`, seeds 0-2, alternating;
(f) compute: each of our runs' FLOPs per image and training GFLOP/s, against the CPU's fp32 peak where known;
(g) fixed costs: the whole command of `python -m mnist_exp -m experiment=fast seed=0,...,5` and of one `fast` run,
    wall clock, against the seconds of training their metrics.json files record, and `import torch` alone;
(h) start-up, both measured from the kernel's start time of the process, neither including its exit: to the first
    batch of `python -m mnist_exp experiment=fast` (the fixed costs' run is the first of them), and to the end of
    `import torch` and of `import torch, torchvision` (one process, read twice).

Only training counts as seconds. The test accuracy is measured at checkpoints outside the timed region: the
reference every quarter epoch, fast every ``trainer.log_interval`` steps, best after each epoch (without its
test-time averaging, which only its final point has; its table cell also gives its final model without it); each
side's seconds to X% are those of its first checkpoint at or above X%. Results go to <out>/benchmark.json,
benchmark.md and benchmark.png, and the table, with the date and the machine, replaces the part of the results file
(--results) between its benchmark markers.
"""

import argparse
import json
import logging
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from mnist_exp.app import build_job, fit_and_test
from mnist_exp.run.callbacks import Callback, CheckpointCallback, TrackingCallback
from mnist_exp.run.config import register_schemas
from mnist_exp.data import TensorLoader, build_dataset, ensure_mnist
from mnist_exp.data.download import idx_bytes
from mnist_exp.paths import CONF_DIR
from mnist_exp.registry import MODELS, OPTIMIZERS, SCHEDULERS
from mnist_exp.run.runtime import place_model, set_cpu_threads, use_bf16
from mnist_exp.run.tensorboard import TensorBoardTracker
from mnist_exp.run.trainer import LoopSettings, Trainer, autocast_context
from mnist_exp.runs import read_metrics
from mnist_exp.tools.cli import OneLineParser, positive_int
from mnist_exp.tools.evaluate import evaluate_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_report import END, START, machine, plot, report, seconds_to, write_results_section  # noqa: E402,F401

TARGETS = (0.99, 0.995, 0.997)
SMALL_DATA = {"name": "fake", "num_train": 512, "val_size": 128, "num_test": 128}
SMALL = [f"dataset.{key}={value}" if key != "name" else f"dataset={value}" for key, value in SMALL_DATA.items()]
SMALL += ["trainer.batch_size=64"]  # the reference's batches: 8 steps an epoch on the fake data, not 2
EVERYDAY = {"python -m mnist_exp": (), "python -m mnist_exp model=cnn optimizer=adam": ("model=cnn", "optimizer=adam")}
SAME_DEVICE = ["device.name=cpu"]  # the reference's device; precision, threads and memory format stay the recipe's
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


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


def reference(root: Path, max_epochs: int = 14, stop_at: float | None = None, log_file=None,
              checks_per_epoch: int = 4) -> list[dict]:
    """Train the pytorch/examples recipe on the MNIST files under ``root`` (torchvision's layout: root/MNIST/raw)
    for ``max_epochs`` (its 14), or until ``stop_at`` test accuracy; the test accuracy at every check (a quarter
    epoch), against seconds of training. Its log line every 10 batches goes to ``log_file`` (default: nowhere)."""
    torch.manual_seed(1)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train_set = datasets.MNIST(root, train=True, transform=transform)
    test_set = datasets.MNIST(root, train=False, transform=transform)
    train_loader = DataLoader(train_set, batch_size=64)  # main.py's train_kwargs on a CPU: no shuffle, no workers
    test_loader = DataLoader(test_set, batch_size=1000)
    model = ExamplesNet()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    checks = {round(len(train_loader) * k / checks_per_epoch) for k in range(1, checks_per_epoch + 1)}
    seconds, points = 0.0, []
    for epoch in range(1, max_epochs + 1):
        model.train()
        started = time.perf_counter()
        for batch_idx, (data, target) in enumerate(train_loader):
            optimizer.zero_grad()
            loss = F.nll_loss(model(data), target)
            loss.backward()
            optimizer.step()
            if batch_idx % 10 == 0:
                print(f"Train Epoch: {epoch} [{batch_idx * len(data)}/{len(train_set)} "
                      f"({100.0 * batch_idx / len(train_loader):.0f}%)]\tLoss: {loss.item():.6f}", file=log_file)
            if batch_idx + 1 in checks:
                seconds += time.perf_counter() - started
                model.eval()
                with torch.no_grad():
                    correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in test_loader)
                model.train()
                points.append({"epoch": epoch - 1 + (batch_idx + 1) / len(train_loader), "seconds": seconds,
                               "test_acc": correct / len(test_set)})
                if stop_at is not None and points[-1]["test_acc"] >= stop_at:
                    return points
                started = time.perf_counter()
        print(f"  reference epoch {epoch}: {100 * points[-1]['test_acc']:.2f}% after {seconds:.1f} s", flush=True)
        scheduler.step()
    return points


class TestCurve(Callback):
    """Test accuracy at checkpoints of a run, against its seconds of training: the seconds the checks take are
    not counted, and the model goes back to training mode after each, so the run trains as it would without."""

    def __init__(self, test_loader, every_log: bool):
        self.test_loader, self.every_log = test_loader, every_log
        self.started, self.checking_s, self.points = time.perf_counter(), 0.0, []

    def check(self, trainer) -> None:
        started, training = time.perf_counter(), trainer.train_model.training
        acc = trainer.evaluate(self.test_loader)["acc"]
        trainer.train_model.train(training)
        self.points.append({"step": trainer.state.step, "seconds": started - self.started - self.checking_s,
                            "test_acc": acc})
        self.checking_s += time.perf_counter() - started

    def on_train_log(self, trainer, values) -> None:
        if self.every_log:
            self.check(trainer)

    def on_epoch_end(self, trainer, metrics, is_best) -> None:
        if not self.every_log and trainer.state.epoch < trainer.settings.epochs:  # the last: the run's own test
            self.check(trainer)


def recipe(name: str | None) -> list[str]:
    """`experiment=<name>`'s override; none for the default run (None)."""
    return [f"experiment={name}"] if name else []


def compose_recipe(name: str | None, small: bool, extra: list[str] = ()):
    """The config of `experiment=<name>` (None: the default run) on the reference's device, with ``extra``."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[*recipe(name), *SAME_DEVICE, *(SMALL if small else []), *extra])


def ours(name: str | None, small: bool, out: Path, extra: tuple[str, ...] = ()) -> dict:
    """`python -m mnist_exp experiment=<name> device.name=cpu <extra>` (no experiment where ``name`` is None), built
    and run in this process as the app runs it, with its test accuracy at checkpoints (fast: every log interval;
    the others: every epoch) and at the end."""
    # best in small mode: one epoch of 6 steps, with an average of the weights that their warm-up reaches.
    extra = ["trainer.progress=false", *(["trainer.epochs=1", "trainer.ema_decay=0.4"] if small and name == "best" else []),
             *extra]
    cfg = compose_recipe(name, small, extra)
    job = build_job(cfg, Path(tempfile.mkdtemp(prefix=f"{name or 'default'}_run_", dir=out)), in_sweep=False)
    curve = TestCurve(job.loaders["test"], every_log=name == "fast")
    job.trainer.callbacks.append(curve)
    curve.started = time.perf_counter()
    metrics = fit_and_test(job, [*recipe(name), *extra])
    seconds = metrics["train_time_s"] - curve.checking_s
    if curve.every_log:  # its checks ran inside the training phases, whose images a second metrics.json counts
        phases_s = job.trainer.state.train_phase_s
        metrics["train_gflops_per_s"] *= phases_s / (phases_s - curve.checking_s)
    if cfg.trainer.tta:  # the plain model's accuracy beside the averaged views' (the run's own test/acc)
        plain = evaluate_checkpoint(job.run_dir, device=job.trainer.settings.device, tta=False)  # its best.pt
        metrics["test_acc_without_tta"] = plain["acc"]
    metrics.update(run_dir=str(job.run_dir), train_s=seconds,
                   curve=[*curve.points, {"step": job.trainer.state.step, "seconds": seconds,
                                          "test_acc": metrics["test/acc"]}],
                   precision=f"{'bf16 autocast' if job.trainer.settings.bf16 else 'fp32'} on "
                             f"{job.trainer.settings.device.type}")
    print(f"  {' '.join([name or 'default', *extra[1:]])}: {100 * metrics['test/acc']:.2f}% after {seconds:.1f} s of "
          f"training ({metrics['precision']})", flush=True)
    return metrics


def everyday(small: bool, out: Path, seeds: list[int]) -> dict:
    """The default run and `model=cnn optimizer=adam` (the runs most users start from), a run of each per seed,
    alternating."""
    runs = {label: [] for label in EVERYDAY}
    for seed in seeds:
        for label, overrides in EVERYDAY.items():
            runs[label].append({**ours(None, small, out, (*overrides, f"seed={seed}")), "seed": seed})
    return runs


SINCE_START = "from mnist_exp.run.runtime import seconds_since_process_start as s; print(s())"


def imports(repeats: int) -> dict:
    """Seconds from the process's start to the end of `import torch`, then of `import torchvision` (the fewest of
    ``repeats`` processes): the floor of any command of ours."""
    command = [sys.executable, "-c", f"import torch; {SINCE_START}; import torchvision; {SINCE_START}"]
    readings = [subprocess.run(command, check=True, capture_output=True, text=True).stdout.split()
                for _ in range(repeats)]
    return {"torch_s": min(float(torch_s) for torch_s, _ in readings),
            "torch_torchvision_s": min(float(both_s) for _, both_s in readings)}


def first_batch_s(output: str) -> float | None:
    """The seconds the app's "First batch ... after the process started" line gives, if ``output`` has it."""
    for line in output.splitlines():
        if "First batch" in line and "after the process started" in line:
            return float(line.split("First batch")[1].split()[0])
    return None


def fixed_costs(small: bool, out: Path, jobs: int, imported: dict) -> dict:
    """Wall-clock seconds of whole commands against the seconds of training their metrics.json files record:
    `python -m mnist_exp -m experiment=fast seed=0,1,...` (the basic launcher, ``jobs`` jobs) and one
    `python -m mnist_exp experiment=fast`, whose floor is `import torch` (``imported``)."""
    def wall(*command: str) -> tuple[float, str]:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, *command], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"python {' '.join(command)} exited {done.returncode}:\n{done.stderr[-2000:]}")
        return time.perf_counter() - started, done.stdout + done.stderr

    def trained(run_dir: Path) -> float:
        return read_metrics(run_dir, strict=True)["train_time_s"]

    fast = ["experiment=fast", *(SMALL if small else []), "trainer.progress=false"]
    sweep_dir, run_dir = (Path(tempfile.mkdtemp(prefix=prefix, dir=out)) for prefix in ("sweep_", "fast_run_"))
    sweep_s, _ = wall("-m", "mnist_exp", "-m", *fast, f"seed={','.join(map(str, range(jobs)))}",
                      f"hydra.sweep.dir={sweep_dir}")
    sweep_trained = [trained(path.parent) for path in sorted(sweep_dir.glob("*/metrics.json"))]
    run_s, output = wall("-m", "mnist_exp", *fast, f"hydra.run.dir={run_dir}")
    run_trained, torch_s, run_first_s = trained(run_dir), imported["torch_s"], first_batch_s(output)
    if run_first_s is None:  # the start-up's first reading
        raise RuntimeError(f"python -m mnist_exp {' '.join(fast)} logged no first batch")
    result = {"jobs": jobs, "sweep_dir": str(sweep_dir), "sweep_s": sweep_s, "sweep_train_s": sweep_trained,
              "sweep_ratio": sweep_s / sum(sweep_trained), "run_dir": str(run_dir), "run_s": run_s,
              "run_train_s": run_trained, "run_first_batch_s": run_first_s, "import_torch_s": torch_s,
              "run_beyond_s": run_s - run_trained - torch_s}
    print(f"  sweep of {jobs}: {sweep_s:.1f} s for {sum(sweep_trained):.1f} s of training "
          f"({result['sweep_ratio']:.2f}x); one run: {run_s:.1f} s for {run_trained:.1f} s of training, "
          f"import torch {torch_s:.1f} s", flush=True)
    return result


def pairs(root: Path, small: bool, out: Path, count: int, max_epochs: int) -> dict:
    """``count`` (reference, fast, fast in fp32) triples back to back, in alternating order. The first reference run
    goes all its epochs (its curve); the others stop at 99.0%, all the headline needs."""
    runs = {"reference": [], "fast": [], "fast_fp32": []}
    with open(out / "reference_log.txt", "w") as log_file:
        for i in range(count):
            for side in (("reference", "fast", "fast_fp32") if i % 2 == 0 else ("fast_fp32", "fast", "reference")):
                if side == "fast":
                    runs["fast"].append(ours("fast", small, out))
                elif side == "fast_fp32":  # the reference's precision, on any CPU
                    runs["fast_fp32"].append(ours("fast", small, out, ("device.precision=fp32",)))
                else:
                    print(f"Reference (pytorch/examples mnist), run {len(runs['reference']) + 1}:", flush=True)
                    runs["reference"].append(reference(root, max_epochs, stop_at=TARGETS[0] if runs["reference"]
                                                       else None, log_file=log_file))
    speedups = {}
    for side in ("fast", "fast_fp32"):
        ratios = speedups[side] = []
        for points, fast in zip(runs["reference"], runs[side]):
            ref_s, fast_s = seconds_to(points, TARGETS[0]), seconds_to(fast["curve"], TARGETS[0])
            ratios.append(None if fast_s is None else {"ratio": (ref_s or points[-1]["seconds"]) / fast_s,
                                                       "lower_bound": ref_s is None})
        print(f"  speed-ups of {side}: " + ", ".join("n/a" if r is None else f"{'>' * r['lower_bound']}"
                                                     f"{r['ratio']:.1f}x" for r in ratios), flush=True)
    return {**runs, "speedups": speedups["fast"], "speedups_fp32": speedups["fast_fp32"]}


def overhead(small: bool, out: Path, repeats: int) -> dict:
    """Seconds of one epoch (and its validation pass, if any): our Trainer with its callbacks, log lines and progress
    bar, as a user sees them, vs a minimal loop."""
    cfg = compose_recipe("fast", small)
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
        callbacks = [TrackingCallback(tracker), CheckpointCallback(run_dir / "checkpoints", {"config": {}})]
        settings = LoopSettings(epochs=1, patience=None, label_smoothing=cfg.trainer.label_smoothing, log_interval=cfg.trainer.log_interval,
                                ema_decay=cfg.trainer.ema_decay, compile=False, progress=True, device=cpu, bf16=bf16,
                                channels_last=channels_last)
        trainer = Trainer(model, optimizer, scheduler, settings, callbacks)
        started = time.perf_counter()
        trainer.fit(loader, val)  # its bar on stderr and its INFO line on stdout, as the app shows them
        seconds = time.perf_counter() - started
        tracker.close()
        return seconds

    minimal()  # warm-up: first-touch allocations and kernel selection, for both
    measured = []
    for i in range(repeats):  # back to back, in alternating order
        if i % 2 == 0:
            loop_s = minimal()
            trainer_s = framework()
        else:
            trainer_s = framework()
            loop_s = minimal()
        measured.append((loop_s, trainer_s))
    ratio = statistics.median(trainer_s / loop_s for loop_s, trainer_s in measured)
    print(f"  overhead: median ratio {ratio:.3f} over {repeats} pairs (minimal loop s, trainer s): "
          + ", ".join(f"({loop_s:.2f}, {trainer_s:.2f})" for loop_s, trainer_s in measured), flush=True)
    return {"minimal_epoch_s": statistics.median(p[0] for p in measured),
            "trainer_epoch_s": statistics.median(p[1] for p in measured), "ratio": ratio, "pairs": measured}


def startup(small: bool, out: Path, repeats: int, first_run_s: float, imported: dict) -> dict:
    """Seconds from the kernel's start of the process to the first batch of a real `python -m mnist_exp` (which it
    logs, reading the same clock; the fewest of ``first_run_s``, the fixed costs' run, and ``repeats - 1`` more),
    against the same clock read right after `import torch, torchvision` (``imported``)."""
    def first_batch(run_dir: Path) -> float:
        command = [sys.executable, "-m", "mnist_exp", "experiment=fast", *(SMALL if small else []),
                   "trainer.progress=false", f"hydra.run.dir={run_dir}"]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in process.stdout:
            if (seconds := first_batch_s(line)) is not None:
                process.terminate()  # stops after that batch; the rest is not start-up
                process.communicate()
                return seconds
        raise RuntimeError(f"{' '.join(command)} ended before its first batch")

    imported_s = imported["torch_torchvision_s"]
    first = min([first_run_s, *(first_batch(out / f"startup_{i}") for i in range(1, repeats))])
    print(f"  start-up: first batch after {first:.2f} s; torch and torchvision imported after {imported_s:.2f} s",
          flush=True)
    return {"first_batch_s": first, "import_torch_torchvision_s": imported_s, "overhead_s": first - imported_s}


def positive_float(text: str) -> float:
    """An argparse type: a finite number above 0 (0, a negative or nan would be taken for no peak, or a wrong one)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number above 0")
    return value


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, each option taking effect as given or refused in one line before minutes of benchmarks."""
    parser = OneLineParser(prog="python scripts/benchmark.py", description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="fake data, seconds: checks that the script works")
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmark"), help="where results go")
    parser.add_argument("--results", type=Path, default=None,
                        help="the results file whose benchmark section is refreshed (default: scripts/RESULTS.md; "
                             "with --small, <out>/RESULTS.md, so a check never replaces measured figures)")
    parser.add_argument("--pairs", type=positive_int, default=None,
                        help="alternating (reference, fast) pairs for the speed-up (default 3; with --small, 2)")
    parser.add_argument("--reference-epochs", type=positive_int, default=None,
                        help="the reference's epochs (main.py: 14; --small: 1)")
    parser.add_argument("--no-best", action="store_true", help="skip experiment=best (minutes)")
    parser.add_argument("--peak-gflops", type=positive_float, default=None,
                        help="this machine's fp32 peak, for the compute table (default: the nominal peak of an "
                             "AVX2-only CPU from its clock; unknown on others)")
    parser.add_argument("--repeats", type=positive_int, default=None,
                        help="epochs of each loop for the overhead ratio (default 15; --small: 1; a single pair "
                             "varies by up to 20%%)")
    args = parser.parse_args(argv)
    for option, value in (("--reference-epochs", args.reference_epochs), ("--repeats", args.repeats)):
        if args.small and value is not None:  # the small mode's are fixed: seconds, not minutes
            parser.error(f"{option} takes no effect with --small, which runs 1: leave {option} out, or --small")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} is a file: give the directory the results go to")
    if args.results is not None and args.results.is_dir():
        parser.error(f"--results {args.results} is a directory: give the results file, e.g. "
                     f"{args.results / 'RESULTS.md'}")
    args.reference_epochs = args.reference_epochs or 14
    args.repeats = args.repeats or 15
    return args


def main() -> None:
    args = arguments()
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.results or (args.out / "RESULTS.md" if args.small else RESULTS)
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout,
                        format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    logging.getLogger("mnist_exp").setLevel(logging.INFO)  # the app's INFO lines, as a user sees them
    register_schemas()
    set_cpu_threads(0)
    result = {"machine": machine(args.peak_gflops), "small": args.small, "targets": TARGETS}
    root = write_fake_mnist(args.out / "fake_mnist") if args.small else ensure_mnist().parents[1]
    result["pairs"] = pairs(root, args.small, args.out, args.pairs or (2 if args.small else 3),
                            1 if args.small else args.reference_epochs)
    if not args.no_best:
        print("Ours (experiment=best):", flush=True)
        result["best"] = ours("best", args.small, args.out)
    print("The default run and model=cnn optimizer=adam:", flush=True)
    result["everyday"] = everyday(args.small, args.out, [0] if args.small else [0, 1, 2])
    print("Fixed costs:", flush=True)
    imported = imports(1 if args.small else 3)
    result["fixed_costs"] = fixed_costs(args.small, args.out, 2 if args.small else 6, imported)
    print("Overhead:", flush=True)
    result["overhead"] = overhead(args.small, args.out, 1 if args.small else args.repeats)
    print("Start-up:", flush=True)
    result["startup"] = startup(args.small, args.out, 1 if args.small else 3,
                                result["fixed_costs"]["run_first_batch_s"], imported)
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
