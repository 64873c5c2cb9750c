"""A sweep's runs as a user sees them in ``mlflow ui``: the page rendered by a real headless Chromium.

Needs Debian's chromium (``make test-browser`` installs it, as root, and runs these). The page is MLflow's own
run comparison, reached as a user reaches it (the experiment, its runs ticked, Compare): the rendered page
holds each job's run, its params and its metrics; a screenshot of it is kept (``MNIST_EXP_SCREENSHOTS=<dir>``).
"""

import html
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from conftest import free_port, read_metrics, run_dirs, run_main, wait_for_http

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed: pip install -e '.[mlflow]'")
pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Headless, and none of the background connections a closed network refuses.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1600,2400", "--virtual-time-budget=20000")


def chromium(url: str, profile: Path, *what: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *what, url], capture_output=True,
                          text=True, timeout=120, check=True)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium: make test-browser installs Debian's")
def test_mlflow_ui_shows_a_sweeps_runs_with_their_params_and_metrics(tmp_path, monkeypatch, capsys):
    code, _, err = run_main("-m", "dataset=fake", "trainer.epochs=2", "trainer.log_interval=1", "device=cpu",
                            "device.threads=1", "logger=[tensorboard,mlflow]", "optimizer.lr=0.001,0.003,0.01,0.03",
                            monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err
    store = f"sqlite:///{tmp_path}/outputs/mlflow.db"
    [sweep_dir] = (tmp_path / "outputs" / "multirun").glob("*/*")
    jobs = run_dirs(sweep_dir)
    client = mlflow.MlflowClient(store)
    experiment = client.get_experiment_by_name(str(sweep_dir))
    runs = client.search_runs([experiment.experiment_id])

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store, "--host",
                               "127.0.0.1", "--port", str(port), "--workers", "1"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", server)
        query = urllib.parse.urlencode({"runs": json.dumps([run.info.run_id for run in runs]),
                                        "experiments": json.dumps([experiment.experiment_id])})
        url = f"http://127.0.0.1:{port}/#/compare-runs?{query}"
        page = chromium(url, tmp_path / "profile", "--dump-dom").stdout
        screenshot = tmp_path / "mlflow_ui.png"
        chromium(url, tmp_path / "profile", f"--screenshot={screenshot}")
    finally:
        os.killpg(server.pid, 9)
        server.wait(timeout=30)

    text = html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))
    assert f"Comparing {len(jobs)} Runs from 1 Experiment" in text
    for job in jobs:
        assert job.name in text  # the run's name: its directory's
    for key in ("optimizer.lr", "model.name", "test/acc", "best_val/acc", "val/loss", "train/loss"):
        assert key in text, key
    for lr in ("0.001", "0.003", "0.01", "0.03"):
        assert f" {lr} " in text, lr
    # The metrics table: a row per metric, a column per run (in the order asked), values to 3 decimals.
    accuracies = [read_metrics(sweep_dir / run.info.run_name)["test/acc"] for run in runs]
    assert " ".join(f"{value:.3f}".rstrip("0").rstrip(".") for value in accuracies) in text
    assert screenshot.stat().st_size > 50_000  # a page, not a blank
    if os.environ.get("MNIST_EXP_SCREENSHOTS"):
        Path(os.environ["MNIST_EXP_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(os.environ["MNIST_EXP_SCREENSHOTS"]) / screenshot.name)
