"""``compare A --vs B``: is A better than B, and how sure is that?

Each side is one run or the runs of one seed group. Two runs are compared image by image on
their stored test predictions (``run_dir.PREDICTIONS_FILE``): the images only one of them gets
right and McNemar's exact test of that split. Two seed groups are compared by the difference of
their mean test accuracies and its 95% Welch interval: that one counts the seed's noise too.
"""

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mnist_exp.errors import UserError
from mnist_exp.runs import PREDICTIONS_FILE, Status, number, read_predictions
from mnist_exp.tools.groups import repeat_warnings, seed_groups
from mnist_exp.tools.run_records import differing_keys, measured, runs_under
from mnist_exp.tools.stats import ACCURACY, mcnemar_p, summarize, welch

SIGNIFICANCE = 0.05


def versus(a_paths: list[Path], b_paths: list[Path]) -> str:
    """The comparison's lines: each side, the test, and one sentence saying which is better, or that it is noise."""
    a, b = side("A", a_paths), side("B", b_paths)
    shared = sorted({run["dir"] for run in a} & {run["dir"] for run in b})
    if shared:
        raise UserError(f"A and B share {len(shared)} run{'s' * (len(shared) != 1)} ({shared[0]}...): give each run "
                        "to one side, A before --vs, B after it.")
    one_each = len(a) == 1 and len(b) == 1
    label_a, label_b = labels(a, b, keep_seed=one_each)
    if one_each:
        return paired(a[0], b[0], label_a, label_b)
    if len(a) > 1 and len(b) > 1:
        return groups(a, b, label_a, label_b)
    raise UserError(f"A has {len(a)} completed run{'s' * (len(a) != 1)} and B {len(b)}: compare one run with one "
                    "run (McNemar's test on their predictions), or two seed groups of two runs or more (Welch).")


def side(name: str, paths: list[Path]) -> list[dict[str, Any]]:
    """The completed runs of one side, which must form one seed group."""
    found = seed_groups(runs_under(paths))
    if len(found) > 1:
        keys = ", ".join(differing_keys(found)) or "their configs"
        raise UserError(f"{name} holds {len(found)} seed groups, not one (they differ in {keys}): give the runs of "
                        "one group, e.g. the job directories of a sweep that share a setting (sweep/0_* sweep/2_*).")
    for warning in repeat_warnings(found):
        print(warning, file=sys.stderr)
    runs = [run for run in found[0]["counted"] if number(run["metrics"].get("test/acc")) is not None]
    if not runs:
        statuses = ", ".join(sorted({str(run["metrics"].get("status", Status.UNFINISHED.value)) for run in found[0]["runs"]}))
        raise UserError(f"{name} has no completed run ({statuses}): compare runs that finished their test.")
    return runs


def labels(a: list[dict[str, Any]], b: list[dict[str, Any]], keep_seed: bool) -> tuple[str, str]:
    """Each side named by its overrides that differ from the other side's, else by its first directory."""
    def overrides(runs):
        return {k: v for k, v in runs[0]["overrides"].items()
                if keep_seed and k == "seed" or measured(k, runs[0]["cut"])}
    sides = [{"overrides": overrides(a)}, {"overrides": overrides(b)}]
    keys = differing_keys(sides)
    return tuple(" ".join(f"{k}={s['overrides'][k]}" for k in keys if k in s["overrides"]) or runs[0]["dir"].name
                 for s, runs in zip(sides, (a, b)))


def checked_predictions(run: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, str | None]:
    """A run's (predicted, true) test labels and test images' fingerprint, refused where they disagree with its
    recorded test accuracy."""
    predicted, true, images = read_predictions(run["dir"])
    accuracy, recorded = float((predicted == true).mean()) if len(true) else 0.0, number(run["metrics"]["test/acc"])
    if abs(accuracy - recorded) > 0.5 / max(len(true), 1):
        raise UserError(f"{run['dir'] / PREDICTIONS_FILE} does not belong to its run: its accuracy is "
                        f"{100 * accuracy:.2f}%, the run's metrics.json says {100 * recorded:.2f}%.")
    return predicted, true, images


def same_test_set(a: tuple[np.ndarray, np.ndarray, str | None], b: tuple[np.ndarray, np.ndarray, str | None]) -> None:
    """Two runs' (predicted, true, images) of ``read_predictions``: the same test images in the same order, as far
    as their labels and, where both recorded it, their images' fingerprint tell."""
    (_, true_a, images_a), (_, true_b, images_b) = a, b
    if true_a.shape != true_b.shape or (true_a != true_b).any():
        what = (f"{len(true_a)} and {len(true_b)} images" if true_a.shape != true_b.shape
                else f"the labels of {int((true_a != true_b).sum())} of {len(true_a)} images differ")
        raise UserError(f"A and B were tested on different test sets ({what}): compare runs of the same dataset.")
    if images_a and images_b and images_a != images_b:  # the same labels are no proof of the same images
        raise UserError("A and B were tested on different images with the same labels (their test images' "
                        "fingerprints differ: other files, or the same ones in another form, e.g. another "
                        "dataset.image_size): compare runs tested on the same images.")


def paired(a: dict[str, Any], b: dict[str, Any], label_a: str, label_b: str) -> str:
    run_a, run_b = checked_predictions(a), checked_predictions(b)
    same_test_set(run_a, run_b)
    (predicted_a, true, _), (predicted_b, _, _) = run_a, run_b
    right_a, right_b = predicted_a == true, predicted_b == true
    only_a, only_b = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
    p = mcnemar_p(only_a, only_b)
    n, more = len(true), abs(only_a - only_b)
    better = "A" if only_a > only_b else "B"
    if p < SIGNIFICANCE:
        verdict = (f"{better} is better: it gets {more} more of the {n} test images right, and a split of the "
                   f"{only_a + only_b} disagreements this uneven has p = {p:.2g} if the two were equally good. "
                   "(One run each: whether the setting is better, not just this run, needs seed groups.)")
    elif more:
        verdict = (f"The difference is within noise: {better} gets {more} more test images right, but a split of "
                   f"the {only_a + only_b} disagreements this uneven happens by chance (p = {p:.2f}).")
    else:
        verdict = "The difference is within noise: A and B get the same number of test images right."
    return "\n".join([
        f"A  {label_a}: test accuracy {100 * right_a.mean():.2f}% ({int(right_a.sum())} of {n})",
        f"B  {label_b}: test accuracy {100 * right_b.mean():.2f}% ({int(right_b.sum())} of {n})",
        f"Only A gets {only_a} test image{'s' * (only_a != 1)} right, only B {only_b}: exact McNemar test, "
        f"p = {p:.3g}.",
        verdict])


def groups(a: list[dict[str, Any]], b: list[dict[str, Any]], label_a: str, label_b: str) -> str:
    """The difference of the mean test accuracies with Welch's interval; the test sets checked where stored."""
    stored = [read_predictions(run["dir"]) for run in a + b if (run["dir"] / PREDICTIONS_FILE).exists()]
    for other in stored[1:]:
        same_test_set(stored[0], other)
    summaries = [summarize([number(run["metrics"]["test/acc"]) for run in runs], ACCURACY) for runs in (a, b)]
    lines = [f"{name}  {label}: {s.n} runs, mean test accuracy {100 * s.mean:.2f}% (std {100 * s.std:.2f}, 95% "
             f"interval {100 * s.low:.2f}% to {100 * s.high:.2f}%)"
             for name, label, s in zip("AB", (label_a, label_b), summaries)]
    w = welch(*summaries)
    interval = f"{100 * w.low:+.2f} to {100 * w.high:+.2f} points"
    df = "" if math.isnan(w.df) else f", {w.df:.1f} degrees of freedom"
    lines.append(f"B - A: {100 * w.difference:+.2f} points, 95% interval {interval} (Welch{df}, p = {w.p:.3g}).")
    if w.low > 0 or w.high < 0:
        better, lead = ("B", w.difference) if w.low > 0 else ("A", -w.difference)
        lines.append(f"{better} is better: its mean test accuracy is {100 * lead:.2f} points higher, and the 95% "
                     f"interval of the difference ({interval}) does not include zero.")
    else:
        lines.append(f"The difference is within noise: the 95% interval of B - A ({interval}) includes zero, so "
                     "these runs cannot tell which is better.")
    return "\n".join(lines)


if __name__ == "__main__":
    from mnist_exp.tools.cli import refuse_as_a_command

    refuse_as_a_command(__spec__.name)
