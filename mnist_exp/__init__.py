"""mnist_exp: a Hydra-configured experiment framework for MNIST-class image classification."""

import os

__version__ = "0.1.0"

# torch's profiler (kineto, behind debug=profile) reads this as torch loads: without it, it prints its own start and
# stop, and on a machine without an NVIDIA GPU an ERROR that it found none. With a GPU its errors (no access to the
# GPU's counters, say) matter, and stay; a level of the user's own wins.
if not os.path.exists("/dev/nvidiactl"):
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
