"""Seed groups: the runs that train the same but for their seed, with the statistics of their metrics.

The leaderboard, ``--vs`` and ``--plot`` all rank and compare these.
"""

from collections import Counter
from typing import Any

from mnist_exp.runs import Status, changes_speed, number
from mnist_exp.tools.run_records import differing_keys, measured
from mnist_exp.tools.stats import ACCURACY, ANY_NUMBER, Summary, summarize


def seed_groups(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs that train the same but for their seed, as groups (``summarize_group``), best mean test accuracy first.

    Test accuracy ranks them: the intervals, the plot and --vs are all of test accuracy. A sweep of a key that
    changes how fast runs train (``swept_speed_keys``) keeps its values apart, that key shown.
    """
    by_settings: dict[tuple, list[dict[str, Any]]] = {}
    for run in runs:
        by_settings.setdefault(run["settings"], []).append(run)
    groups = []
    for members in by_settings.values():
        apart, parts = swept_speed_keys(members), {}
        for run in members:
            parts.setdefault(tuple(run["overrides"].get(key) for key in apart), []).append(run)
        groups += [summarize_group(part, {k: v for k, v in part[0]["overrides"].items()
                                          if k in apart or measured(k, part[0]["cut"])})
                   for part in parts.values()]
    return sorted(groups, key=lambda g: (g["test"] is None, -(g["test"].mean if g["test"] else 0.0),
                                         str(g["runs"][0]["dir"])))  # ties in the order of the runs' names


def swept_speed_keys(members: list[dict[str, Any]]) -> list[str]:
    """Of runs that train the same, the keys that change how fast a run trains (``changes_speed``) given different
    values in runs of one seed: a sweep of that key (``device.threads=1,2``), whose values are then rows of their
    own, not repeats. Runs of different seeds that ran with different threads are samples of one setting."""
    same_seed: dict[Any, list[dict[str, Any]]] = {}
    for run in members:
        same_seed.setdefault(run["seed"], []).append(run)
    return list(dict.fromkeys(key for repeats in same_seed.values() if len(repeats) > 1
                              for key in differing_keys(repeats) if changes_speed(key)))


def summarize_group(members: list[dict[str, Any]], overrides: dict[str, str]) -> dict[str, Any]:
    """Runs with their ``overrides`` and the ``stats.Summary`` of their metrics; only completed runs count, each
    seed once: a run that repeats another's seed is the same experiment again, not another sample of it."""
    done, first_of_seed, repeats, unfinished = [], {}, [], Counter()  # unfinished: how many runs of each status
    for run in members:
        status = str(run["metrics"].get("status", Status.UNFINISHED.value))
        if status != Status.COMPLETED:
            unfinished[status] += 1
        elif run["seed"] in first_of_seed:
            repeats.append((run, first_of_seed[run["seed"]]))
        else:
            done.append(run)
            first_of_seed[run["seed"]] = run

    def summary(key: str) -> Summary | None:
        values = [v for v in (number(run["metrics"].get(key)) for run in done) if v is not None]
        return summarize(values, ACCURACY if key.endswith("acc") else ANY_NUMBER) if values else None
    return {"runs": members, "overrides": overrides, "test": summary("test/acc"), "val": summary("best_val/acc"),
            "seconds": summary("train_time_s"), "unfinished": unfinished, "counted": done, "repeats": repeats}


def repeat_warnings(groups: list[dict[str, Any]]) -> list[str]:
    """A line for each run its group counts once, as a repeat of an earlier run's seed."""
    return [f"warning: {run['dir']} repeats the config and seed of {first['dir']}: its group counts that seed once."
            for group in groups for run, first in group["repeats"]]


if __name__ == "__main__":
    from mnist_exp.tools.cli import refuse_as_a_command

    refuse_as_a_command(__spec__.name)
