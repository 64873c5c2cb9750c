"""mnist_exp: a Hydra-configured experiment framework for MNIST-class image classification."""

import os

__version__ = "0.1.0"

# torch's profiler (kineto, behind debug=profile) reads this as torch loads: without it, it prints its own start and
# stop, and on a CPU-only machine an ERROR that it found no GPU. A level of the user's own wins.
os.environ.setdefault("KINETO_LOG_LEVEL", "6")
