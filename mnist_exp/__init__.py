"""mnist_exp: a Hydra-configured experiment framework for MNIST-class image classification."""

__version__ = "0.1.0"
