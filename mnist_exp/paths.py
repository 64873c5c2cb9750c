"""Where the configs and the data are (placeholder until the packaging change lands)."""

import os
from pathlib import Path

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def default_data_dir() -> Path:
    if os.environ.get("MNIST_EXP_DATA"):
        return Path(os.environ["MNIST_EXP_DATA"]).expanduser()
    return Path(__file__).resolve().parents[1] / "data"
