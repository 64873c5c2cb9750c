"""scripts/benchmark.py end to end in its small mode (fake data): the report, not the timings."""

import json
import subprocess
import sys

from PIL import Image

from conftest import REPO


def test_benchmark_small_mode_writes_json_table_and_plot(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "benchmark.py"), "--small", "--out", str(tmp_path)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "benchmark.json").read_text())
    assert [p["epoch"] for p in report["reference"]] == [1]
    assert 0 <= report["reference"][0]["test_acc"] <= 1 and report["reference"][0]["seconds"] > 0
    assert report["fast"]["status"] == "completed" and report["fast"]["train_time_s"] > 0
    [(loop_s, trainer_s)] = report["overhead"]["pairs"]  # one pair in the small mode
    assert report["overhead"]["ratio"] == trainer_s / loop_s
    startup = report["startup"]
    assert startup["first_batch_s"] > 0 and startup["import_torch_torchvision_s"] > 0
    assert startup["overhead_s"] == startup["first_batch_s"] - startup["import_torch_torchvision_s"]
    table = (tmp_path / "benchmark.md").read_text()
    assert "pytorch/examples mnist" in table and "experiment=fast" in table and "ratio" in table
    assert "Start-up: the first batch" in table
    with Image.open(tmp_path / "benchmark.png") as image:
        image.verify()
