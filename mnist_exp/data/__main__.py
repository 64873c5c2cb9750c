"""``python -m mnist_exp.data [DIR]``: fetch and verify MNIST (what ``make data`` runs)."""

import logging
import sys

from mnist_exp.data.download import ensure_mnist
from mnist_exp.errors import UserError

USAGE = ("usage: python -m mnist_exp.data [DIR]\n\nFetch MNIST into DIR/MNIST/raw (default: $MNIST_EXP_DATA, else the "
         "checkout's data/) and verify its MD5 checksums.")

arguments = sys.argv[1:]
if arguments in (["-h"], ["--help"]):
    print(USAGE)
    sys.exit(0)
if len(arguments) > 1 or arguments and (arguments[0].startswith("-") or "=" in arguments[0]
                                        or not arguments[0].strip()):
    sys.exit(f"python -m mnist_exp.data takes a directory, not {' '.join(arguments) or repr('')}: python -m "
             "mnist_exp.data [DIR]. See --help.")
logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
try:
    ready = ensure_mnist(arguments[0] if arguments else None, instead="")  # training's dataset=fake is not for here
except UserError as err:
    print(err, file=sys.stderr)
    sys.exit(1)
print(f"MNIST ready and verified in {ready}")
