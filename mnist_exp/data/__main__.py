"""``python -m mnist_exp.data [dir]``: fetch and verify MNIST (what ``make data`` runs)."""

import logging
import sys

from mnist_exp.data.download import ensure_mnist
from mnist_exp.errors import UserError

logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
try:
    ready = ensure_mnist(sys.argv[1] if len(sys.argv) > 1 else None)
except UserError as err:
    print(err, file=sys.stderr)
    sys.exit(1)
print(f"MNIST ready and verified in {ready}")
