"""Where mnist_exp finds its configs and puts its data, installed from a wheel or run from a source checkout.

The repository keeps its configs in a top-level ``conf/``; the wheel ships them inside the package as
``mnist_exp/conf`` (see pyproject.toml). A checkout, or an editable install of one, has the package
directory beside ``conf/`` and ``data/``.
"""

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CHECKOUT_DIR = PACKAGE_DIR.parent  # the repository root, when the package sits in a checkout
IN_CHECKOUT = (CHECKOUT_DIR / "pyproject.toml").is_file() and (CHECKOUT_DIR / "conf").is_dir()

# An installed package's own copy first: a site-packages directory may sit anywhere.
CONF_DIR = PACKAGE_DIR / "conf" if (PACKAGE_DIR / "conf").is_dir() else CHECKOUT_DIR / "conf"


def default_data_dir() -> Path:
    """Where datasets are kept when ``dataset.data_dir`` is not set.

    ``$MNIST_EXP_DATA`` wins. A checkout keeps its data in its own ``data/`` (gitignored). An installed
    package has no such place (site-packages may not be writable, and a reinstall would lose it), so
    it uses the per-user cache: ``$XDG_CACHE_HOME/mnist_exp``, else ``~/.cache/mnist_exp``.
    """
    if os.environ.get("MNIST_EXP_DATA"):
        return Path(os.environ["MNIST_EXP_DATA"]).expanduser()
    if IN_CHECKOUT:
        return CHECKOUT_DIR / "data"
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "mnist_exp"


def outputs_dir() -> str:
    """Where runs and sweeps go when no directory is given: ``$MNIST_EXP_OUTPUTS``, else ``outputs`` (conf/config.yaml
    says the same), as advice names it."""
    return os.environ.get("MNIST_EXP_OUTPUTS") or "outputs"
