"""scripts/benchmark.py's output: the machine, the table, the plot and the results file's section."""

import os
import platform
import statistics
from datetime import date
from pathlib import Path

import torch

from mnist_exp.run.runtime import cpu_has_bf16
from mnist_exp.runs import atomic_file

START, END = "<!-- benchmark:start -->", "<!-- benchmark:end -->"


def cpu_model() -> str:
    """The CPU's name as /proc/cpuinfo gives it (Linux), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_features() -> list[str]:
    """The vector instructions that decide a CPU's speed here, of those /proc/cpuinfo lists (Linux)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    present = set(flags.partition(":")[2].split())
    return [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16") if f in present]


def cpu_mhz() -> float | None:
    """The clock /proc/cpuinfo gives (Linux; on a virtual machine, usually its nominal one)."""
    try:
        return next(float(line.partition(":")[2]) for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("cpu MHz"))
    except (OSError, StopIteration, ValueError):
        return None


def nominal_peak(features: list[str], mhz: float | None, threads: int) -> dict | None:
    """fp32 FLOPs a second at most, where the CPU's kind says it: an AVX2-only x86 core does two 8-wide FMAs a
    cycle (32 FLOPs; Intel since Haswell, AMD since Zen 2). With AVX-512 the count depends on the model (one or two
    512-bit units, or 256-bit halves): unknown, as it is without a clock."""
    if mhz is None or "avx512f" in features or not {"avx2", "fma"} <= set(features):
        return None
    return {"gflops": threads * mhz * 32 / 1000, "how": f"{threads} core{'s' * (threads > 1)} x {mhz:.0f} MHz x 32 "
                                                         "FLOPs a cycle (two 8-wide FMAs, AVX2)"}


def machine(peak_gflops: float | None = None) -> dict:
    """The machine's facts for the report; ``peak_gflops``, where given, is its fp32 peak as the user knows it."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = torch.get_num_threads()
    peak = ({"gflops": peak_gflops, "how": "as given (--peak-gflops)"} if peak_gflops
            else nominal_peak(cpu_features(), cpu_mhz(), threads))
    return {"date": date.today().isoformat(), "cpu": cpu_model(), "cores": cores, "bf16_instructions": cpu_has_bf16(),
            "cpu_features": cpu_features(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__, "threads": threads, "fp32_peak": peak}


def machine_line(m: dict) -> str:
    features = ", ".join(m.get("cpu_features", [])) or "unknown"
    bf16 = "bf16 instructions" if m["bf16_instructions"] else "no bf16 instructions (`auto` computes in fp32)"
    return (f"Machine: {m['cpu']}, {m['cores']} cores, {bf16} "
            f"(CPU flags: {features}; torch's kernels: {m.get('torch_cpu_capability', '?')}); "
            f"torch {m['torch']} ({m['threads']} threads). Run on {m['date']}.")


def seconds_to(points: list[dict], target: float) -> float | None:
    """The seconds of training at the first checkpoint at or above ``target``; None if none is."""
    return next((p["seconds"] for p in points if p["test_acc"] >= target), None)


def times_cell(curves: list[list[dict]], target: float, not_reached: str) -> str:
    """The median over runs of the seconds to ``target`` (each run's figure in brackets where there are several)."""
    reached = [s for s in (seconds_to(curve, target) for curve in curves) if s is not None]
    if not reached:
        return not_reached
    runs = f" ({', '.join(f'{s:.1f}' for s in reached)})" if len(reached) > 1 else ""
    return f"{statistics.median(reached):.1f}{runs}"


def accuracy_cell(accuracies: list[float], suffix: str = "") -> str:
    distinct = sorted(set(f"{100 * a:.2f}%" for a in accuracies))
    return " / ".join(distinct) + suffix


def speedup_cell(speedups: list[dict | None]) -> str:
    if not speedups or any(s is None for s in speedups):
        return "n/a (fast missed 99.0%)"
    median = statistics.median(s["ratio"] for s in speedups)
    bound = "> " if any(s["lower_bound"] for s in speedups) else ""
    each = ", ".join(f"{s['ratio']:.1f}" for s in speedups)
    return f"**{bound}{median:.1f}x** ({each})"


def report(result: dict) -> str:
    runs, over, up, targets = result["pairs"], result["overhead"], result["startup"], result["targets"]
    ref_curves, fast_runs = runs["reference"], runs["fast"]
    full = ref_curves[0]  # the run that went all its epochs
    epochs = round(full[-1]["epoch"])
    header = " | ".join(f"to {100 * t:.1f}%" for t in targets)
    rows = [
        ("pytorch/examples mnist (DataLoader batch 64 without shuffling, Adadelta)", "fp32 on cpu",
         accuracy_cell([full[-1]["test_acc"]], f" after {epochs} epoch(s)"), ref_curves, f"not in {epochs} epochs"),
        ("mnist_exp `experiment=fast`", fast_runs[0]["precision"], accuracy_cell([r["test/acc"] for r in fast_runs]),
         [r["curve"] for r in fast_runs], "not reached"),
        ("mnist_exp `experiment=fast device.precision=fp32`", runs["fast_fp32"][0]["precision"],
         accuracy_cell([r["test/acc"] for r in runs["fast_fp32"]]), [r["curve"] for r in runs["fast_fp32"]],
         "not reached"),
    ]
    if "best" in result:
        best = result["best"]
        plain = best.get("test_acc_without_tta")
        without = f" ({100 * plain:.2f}% without its test-time averaging)" if plain is not None else ""
        rows.append(("mnist_exp `experiment=best`", best["precision"], accuracy_cell([best["test/acc"]], without),
                     [best["curve"]], "not reached"))
    lines = [machine_line(result["machine"]), ""]
    if result["small"]:
        lines += ["`--small`: fake data, a few batches. These figures check that the script works; they measure "
                  "nothing.", ""]
    lines += [f"| recipe | precision | test accuracy | seconds of training {header} |",
              "|---|---|---|" + "---|" * len(targets)]
    for name, precision, accuracy, curves, missing in rows:
        lines.append(f"| {name} | {precision} | {accuracy} | "
                     + " | ".join(times_cell(curves, t, missing) for t in targets) + " |")
    for side, speedups in (("`fast`", runs["speedups"]), ("`fast` in fp32", runs["speedups_fp32"])):
        lines.append(f"| speed-up of {side} to {100 * targets[0]:.1f}% (median of {len(speedups)} alternating runs) "
                     f"| | | {speedup_cell(speedups)} |" + " |" * (len(targets) - 1))
    return "\n".join(lines + [
        "",
        *everyday_table(result["everyday"]),
        "",
        *compute_table(result),
        "",
        fixed_costs_line(result["fixed_costs"]),
        "",
        "Both sides train on the CPU, in the precision shown. Seconds are of training alone: the test accuracy is "
        "checked outside the timed region, the reference's every quarter epoch, fast's every log interval, best's "
        "after each epoch (its last point with its test-time averaging); figures in brackets are each run's.",
        "",
        f"Framework overhead, one epoch of the fast recipe: our Trainer with its INFO lines, progress bar, TensorBoard "
        f"and checkpoints {over['trainer_epoch_s']:.2f} s, a minimal loop {over['minimal_epoch_s']:.2f} s (medians): "
        f"ratio {over['ratio']:.3f} (the median of {len(over['pairs'])} back-to-back pairs). Both loops compute in "
        "the fast recipe's precision.",
        "",
        f"Start-up, from the process's start: the first batch of `python -m mnist_exp experiment=fast` after "
        f"{up['first_batch_s']:.2f} s; `import torch, torchvision` done after {up['import_torch_torchvision_s']:.2f} s: "
        f"{up['overhead_s']:.2f} s more.",
    ])


def everyday_table(everyday: dict) -> list[str]:
    lines = ["| the runs most users start from | precision | test accuracy | mean | seconds of training | mean |",
             "|---|---|---|---|---|---|"]
    for command, runs in everyday.items():
        accuracies, seconds = [100 * r["test/acc"] for r in runs], [r["train_s"] for r in runs]
        seeds = f"seed{'s' * (len(runs) > 1)} {', '.join(str(r['seed']) for r in runs)}"
        lines.append(f"| `{command}` ({seeds}) | {runs[0]['precision']} | "
                     f"{' / '.join(f'{a:.2f}%' for a in accuracies)} | {statistics.mean(accuracies):.2f}% | "
                     f"{' / '.join(f'{s:.1f}' for s in seconds)} | {statistics.mean(seconds):.1f} |")
    return lines


def compute_table(result: dict) -> list[str]:
    """Each of our runs' forward FLOPs per image (torch's flop counter) and training throughput (3x that per image,
    times the images a second), against the machine's fp32 peak where it is known."""
    peak = result["machine"].get("fp32_peak")
    runs = [("`experiment=fast`", result["pairs"]["fast"]), ("`experiment=fast device.precision=fp32`",
                                                             result["pairs"]["fast_fp32"])]
    runs += [(f"`{command}`", r) for command, r in result["everyday"].items()]
    runs += [("`experiment=best`", [result["best"]])] if "best" in result else []
    lines = ["| run | precision | MFLOPs per image (forward) | GFLOP/s in training | of the fp32 peak |",
             "|---|---|---|---|---|"]
    for name, metrics in runs:
        speed = statistics.median(m["train_gflops_per_s"] for m in metrics)
        share = (f"{100 * speed / peak['gflops']:.0f}%" if peak and metrics[0]["precision"].startswith("fp32")
                 else "n/a")
        lines.append(f"| {name} | {metrics[0]['precision']} | {metrics[0]['flops_per_image'] / 1e6:.2f} | "
                     f"{speed:.1f} | {share} |")
    lines.append("")
    lines.append(f"fp32 peak: {peak['gflops']:.1f} GFLOP/s, {peak['how']}." if peak else
                 "fp32 peak: unknown for this CPU (give it with --peak-gflops).")
    return lines


def fixed_costs_line(costs: dict) -> str:
    seeds = ",".join(str(seed) for seed in range(costs["jobs"]))
    return (f"Fixed costs: `python -m mnist_exp -m experiment=fast seed={seeds}` (the basic "
            f"launcher) took {costs['sweep_s']:.1f} s for {sum(costs['sweep_train_s']):.1f} s of training in its "
            f"{costs['jobs']} jobs: **{costs['sweep_ratio']:.2f}x**. One `python -m mnist_exp experiment=fast`: "
            f"{costs['run_s']:.1f} s for {costs['run_train_s']:.1f} s of training; `import torch` alone done "
            f"{costs['import_torch_s']:.1f} s after its process started: **{costs['run_beyond_s']:.1f} s** beyond "
            "both.")


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
    with atomic_file(path, "w") as f:  # the file holds other measured figures: a cut write would lose them
        f.write(text)


def plot(result: dict, path: Path) -> None:
    """Test accuracy against seconds of training (log scale), each target a line, where each run first reaches it."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    curves = [("pytorch/examples mnist", result["pairs"]["reference"][0]),
              ("mnist_exp experiment=fast", result["pairs"]["fast"][0]["curve"])]
    if "best" in result:
        curves.append(("mnist_exp experiment=best", result["best"]["curve"]))
    for (label, points), marker in zip(curves, "o^s"):
        [line] = ax.plot([p["seconds"] for p in points], [p["test_acc"] for p in points], marker + "-", markersize=4,
                         label=label)
        for target in result["targets"]:
            seconds = seconds_to(points, target)
            if seconds is not None:
                ax.plot([seconds], [target], "*", color=line.get_color(), markersize=12)
    for target in result["targets"]:
        ax.axhline(target, color="grey", linestyle="--", linewidth=1)
        ax.annotate(f"{100 * target:.1f}%", (1, target), xycoords=("axes fraction", "data"), ha="right",
                    va="bottom", fontsize=8, color="grey")
    ax.set_xscale("log")
    ax.set(xlabel="seconds of training (log scale)", ylabel="test accuracy",
           ylim=(0.97, 1.0) if not result["small"] else None,
           title="Test accuracy against training time (stars: first at 99.0 / 99.5 / 99.7%)")
    ax.legend(loc="lower right")
    fig.savefig(path, dpi=120)
