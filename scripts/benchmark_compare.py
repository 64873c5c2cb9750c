"""How long ``python -m mnist_exp.tools.compare`` takes over many runs: ``python scripts/benchmark_compare.py [N]``.

Writes N run directories (default 10,000: 2,000 seed groups of 5) into a temporary folder, each a copy of a
real run's record with its own width, learning rate and seed, then times the leaderboard over them in this
process, by seed group and with ``--runs``. Prints the machine's CPU and the seconds of each.
"""

import contextlib
import io
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import yaml

from mnist_exp.tools import compare


def write_runs(root: Path, count: int) -> None:
    config = yaml.safe_load((Path(__file__).parent.parent / "conf" / "config.yaml").read_text())
    config = {key: value for key, value in config.items() if key not in ("defaults", "hydra")}
    for number in range(count):
        width, lr, seed = 8 + 4 * (number // 5 % 40), 10 ** -(2 + number // 200 % 50 / 25), number % 5
        overrides = [f"model.width={width}", f"optimizer.lr={lr:.6g}", f"seed={seed}"]
        run = root / f"{number}_" / ".hydra"
        run.mkdir(parents=True)
        composed = {**config, "seed": seed, "model": {"name": "cnn", "width": width},
                    "optimizer": {"name": "adamw", "lr": lr}}
        (run / "config.yaml").write_text(yaml.safe_dump(composed, sort_keys=False))
        (run / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        (run.parent / "metrics.json").write_text(json.dumps({
            "status": "completed", "test/acc": 0.98 + (number % 97) / 10_000, "best_val/acc": 0.98, "epoch": 3,
            "train_time_s": 10.0 + number % 7, "params": 6274}))


def timed(*args: str) -> float:
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        assert compare.main(list(args)) == 0
    return time.perf_counter() - started


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    with tempfile.TemporaryDirectory() as folder:
        write_runs(Path(folder), count)
        print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
              f"libyaml: {hasattr(yaml, 'CSafeLoader')}")
        for args in ((folder,), (folder, "--runs")):
            print(f"compare {' '.join(args[1:]) or '(seed groups)'} over {count:,} runs: {timed(*args):.2f} s")


if __name__ == "__main__":
    main()
