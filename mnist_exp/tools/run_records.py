"""Finding and reading run directories for the leaderboard: each run's overrides, what it trains, its metrics.

Thousands of runs are read on every core, their configs with libyaml's parser (``scripts/RESULTS.md``, "The
leaderboard over many runs").
"""

import multiprocessing
import os
import signal
import sys
from pathlib import Path
from typing import Any

import yaml

from mnist_exp.errors import UserError
from mnist_exp.runs import (METRICS_FILE, PRECISION, Status, UnreadableMetrics, flatten_config, read_metrics,
                            says_where_or_how, split_override)


def find_runs(paths: list[Path]) -> list[Path]:
    """Run directories under each path (or the path itself); one clear error for a path with none."""
    runs: dict[Path, None] = {}  # ordered and without duplicates when paths overlap
    for path in paths:
        if not path.exists():
            raise UserError(f"{path} does not exist. Give a run directory or a directory of runs.")
        if not path.is_dir():
            raise UserError(f"{path} is not a directory. Give a run directory or a directory of runs.")
        found = sorted(run_dirs_under(path.resolve()))  # resolved once: the walk's folders are resolved too
        if not found and (run := next((p for p in path.resolve().parents if (p / ".hydra").is_dir()), None)):
            raise UserError(f"No runs under {path}: it is a folder of the run {run}. Give the run directory ({run}) "
                            "or a directory of runs.")
        if not found:
            raise UserError(f"No runs under {path} (a run directory holds .hydra/ and metrics.json, "
                            "as python -m mnist_exp writes them).")
        runs.update((run, None) for run in found)
    return list(runs)


def run_dirs_under(path: Path, walked: set[Path] | None = None) -> list[Path]:
    """The directories holding a ``.hydra/`` under ``path`` (resolved; itself included); a run's own folders are not
    searched. A link to a folder (a run, a sweep) is walked where it points, once: one back up is not walked again."""
    walked = walked if walked is not None else set()
    walked.add(path)
    found = []
    for folder, subfolders, _ in os.walk(path):
        if ".hydra" in subfolders:
            found.append(Path(folder))
            subfolders.clear()
        for link in (Path(folder, name) for name in subfolders if os.path.islink(os.path.join(folder, name))):
            if (target := link.resolve()) not in walked:
                found += run_dirs_under(target, walked)
    return found


def runs_under(paths: list[Path]) -> list[dict[str, Any]]:
    """The runs under ``paths``, read, each problem said on stderr; another program's runs (a config that names no
    model and dataset, ``read_run``'s ``foreign``) are left out."""
    runs = read_runs(find_runs(paths))
    for run in runs:
        if run["problem"]:
            print(f"warning: {run['problem']}.", file=sys.stderr)
    if not (ours := [run for run in runs if not run["foreign"]]):
        raise UserError(f"No runs of mnist_exp under {', '.join(map(str, paths))}: their configs are another "
                        "program's.")
    return ours


def read_runs(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """``read_run`` of each directory; thousands of them on every core, since parsing their configs is most of it."""
    processes = min(os.cpu_count() or 1, len(run_dirs) // PARALLEL_RUNS)
    if processes < 2:
        return [read_run(run_dir) for run_dir in run_dirs]
    with multiprocessing.Pool(processes, initializer=leave_interrupts_to_the_parent) as pool:
        return pool.map(read_run, run_dirs, chunksize=250)


def leave_interrupts_to_the_parent() -> None:
    """A reader ignores Ctrl-C, which reaches every process: the parent stops them all, and no reader prints its
    traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def read_run(run_dir: Path) -> dict[str, Any]:
    """A run's overrides ({key: value}), what it trains (``trained_settings``), metrics.json ({} while it has none).

    An unreadable metrics.json or config.yaml is named in ``problem``: the run is unreadable, or compared by its
    overrides alone (as a run without a config.yaml is).
    """
    items, record = read_yaml(run_dir / ".hydra" / "overrides.yaml"), run_dir / ".hydra" / "config.yaml"
    config = read_yaml(record)  # only compared: its values as text
    overrides = dict(split_override(str(item)) for item in (items if isinstance(items, list) else []))
    readable = isinstance(config, dict)
    problem = None if readable or not record.exists() else f"{record} is not a config; the run is compared by its " \
        "overrides alone"
    try:
        metrics = read_metrics(run_dir, strict=True)
    except UnreadableMetrics as error:
        reason = str(error).replace(str(run_dir / METRICS_FILE), METRICS_FILE)
        metrics, problem = {"status": Status.UNREADABLE.value, "error": reason}, f"{error}; the run is listed as unreadable"
    # Every config a run of ours writes names its model and dataset (another Hydra app's may have a model node too).
    if foreign := readable and not (isinstance(config.get("model"), dict) and "name" in config["model"]
                                    and isinstance(config.get("dataset"), dict)):
        problem = f"{record} is not a mnist_exp run's config (it names no model and dataset): the run is left out"
    if isinstance(precision := metrics.get("precision"), str):  # what device.precision=auto became
        overrides[PRECISION] = precision
        if readable and isinstance(config.get("device"), dict):
            config["device"]["precision"] = precision
    settings = flatten_config(config) if readable else overrides
    cut = cut_to_batches(settings)
    return {"dir": run_dir, "overrides": overrides, "settings": trained_settings(settings, cut), "cut": cut,
            "seed": config.get("seed") if readable else overrides.get("seed", "the config's"), "problem": problem,
            "metrics": metrics, "foreign": foreign}


# libyaml's parser where PyYAML has it (its wheels do): many times faster than the pure-Python one over thousands of
# runs. It leaves every value a string: a run's values are only compared with each other, its overrides are text.
YAML_TEXT_LOADER = getattr(yaml, "CBaseLoader", yaml.BaseLoader)
PARALLEL_RUNS = 1000  # runs per process, at least, before read_runs starts processes


def read_yaml(path: Path) -> Any:
    """A YAML file with every value left as text: libyaml's nodes, turned into dicts and lists here in 0.6 of the
    time ``yaml.load`` takes with its own constructor (reading configs is most of compare's time over many runs)."""
    def value(node: yaml.Node) -> Any:
        if isinstance(node, yaml.MappingNode):
            return {value(key): value(item) for key, item in node.value}
        if isinstance(node, yaml.SequenceNode):
            return [value(item) for item in node.value]
        return node.value

    try:
        node = yaml.compose(path.read_text(), Loader=YAML_TEXT_LOADER)
        return None if node is None else value(node)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):  # RecursionError: an alias within itself
        return None


def trained_settings(settings: dict[str, Any], cut: bool) -> tuple:
    """What a run trains and measures, apart from its seed: the keys of its flattened config (its overrides where the
    config is missing) that are ``measured``."""
    return tuple(sorted((key, repr(value)) for key, value in settings.items() if measured(key, cut)))


def measured(key: str, cut: bool) -> bool:
    """A key whose values make different experiments, the seed aside: what a run trains (not ``says_where_or_how``),
    and trainer.eval_batch_size in a run ``cut`` to trainer.limit_batches batches a split: there it sets how many
    validation and test images the run was measured on."""
    return key != "seed" and (not says_where_or_how(key) or cut and key == "trainer.eval_batch_size")


def cut_to_batches(settings: dict[str, Any]) -> bool:
    """Whether a run's flattened config (or overrides) sets trainer.limit_batches. Overrides alone name a debug
    preset, not what it sets: any one counts (debug=one_batch sets limit_batches)."""
    return any(str(settings.get(key)).lower() not in ("none", "null", "~", "")
               for key in ("trainer.limit_batches", "debug"))


def differing_keys(runs: list[dict[str, Any]]) -> list[str]:
    """Override keys whose value is not the same in every run (absent counts as a value), in first-seen order."""
    keys = list(dict.fromkeys(key for run in runs for key in run["overrides"]))
    return [key for key in keys if len({run["overrides"].get(key) for run in runs}) > 1]


if __name__ == "__main__":
    from mnist_exp.tools.cli import refuse_as_a_command

    refuse_as_a_command(__spec__.name)
