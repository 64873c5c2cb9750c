"""``compare --plot``: test accuracy against training seconds, a point per leaderboard row.

The accuracy/time trade-off of a sweep at a glance: error bars are the 95% interval of a seed
group's mean, labels the overrides that tell the rows apart, and the Pareto front (the points no
other is both faster and more accurate than) is marked and joined. A ``matplotlib.figure.Figure`` drawn
by the Agg renderer, never pyplot's global state (as in ``mnist_exp.run.figures``).
"""

from pathlib import Path
from typing import Any

from mnist_exp.errors import UserError
from mnist_exp.runs import atomic_file
from mnist_exp.tools.run_records import differing_keys


def plot_points(groups: list[dict[str, Any]]) -> list[tuple[str, float, float, float]]:
    """(label, mean train seconds, mean test accuracy, half its 95% interval or 0) of each group with both."""
    keys = differing_keys(groups)
    points = []
    for group in groups:
        test, seconds = group["test"], group["seconds"]
        if test and seconds:
            label = " ".join(f"{key}={group['overrides'][key]}" for key in keys if key in group["overrides"])
            half = test.high - test.mean if test.n > 1 else 0.0
            points.append((label or group["runs"][0]["dir"].name, seconds.mean, test.mean, half))
    return points


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """The indices of the (seconds, accuracy) points that no other point beats on both (faster and as accurate, or
    as fast and more accurate), fastest first: the trade-off a multi-objective search looks for."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -float("inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def plot_accuracy_vs_time(groups: list[dict[str, Any]], path: Path) -> None:
    """Write the PNG of the groups (``groups.seed_groups``, or one per run) to ``path``, atomically."""
    from matplotlib.figure import Figure

    points = plot_points(groups)
    if not points:
        raise UserError(f"Nothing to plot into {path}: no completed run has a test accuracy and training time.")
    fig = Figure(figsize=(8, 5.5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    grouped = any(half > 0 for *_, half in points)
    middle = (min(p[1] for p in points) + max(p[1] for p in points)) / 2
    for label, seconds, accuracy, half in points:
        ax.errorbar(seconds, 100 * accuracy, yerr=100 * half if half > 0 else None, fmt="o", capsize=4,
                    markersize=5)
        right = seconds > middle  # labels toward the middle, so none runs off the figure
        label = label if len(label) <= 48 else label[:47] + "\u2026"
        note = ax.annotate(label, (seconds, 100 * accuracy), xytext=(-6 if right else 6, 4), textcoords="offset points",
                           fontsize=8, ha="right" if right else "left")
        note.set_in_layout(False)  # a long label must not squeeze the axes to nothing
    front = pareto_front([(seconds, accuracy) for _, seconds, accuracy, _ in points])
    # In black, apart from the points' own colours: circled and joined, the points no other beats on both.
    ax.plot([points[i][1] for i in front], [100 * points[i][2] for i in front], "--", color="k", alpha=0.4,
            drawstyle="steps-post", linewidth=1)
    ax.scatter([points[i][1] for i in front], [100 * points[i][2] for i in front], s=140, facecolors="none",
               edgecolors="k", linewidths=1, zorder=3)
    ax.set_xlabel("training seconds" + (" (mean of the group)" if grouped else ""))
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("test accuracy against training time" + (": mean and 95% interval of each seed group"
                                                           if grouped else "") + "\ncircled: the Pareto front")
    ax.grid(alpha=0.3)
    ax.margins(x=0.1, y=0.1)
    with atomic_file(Path(path), "wb") as f:
        fig.savefig(f, format="png")
    fig.clear()


if __name__ == "__main__":
    from mnist_exp.tools.cli import refuse_as_a_command

    refuse_as_a_command(__spec__.name)
