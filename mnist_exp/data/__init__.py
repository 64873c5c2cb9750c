"""Data: fetching and verifying the files (download), the datasets (datasets), batches (loader), augmentation (augment)."""

from mnist_exp.data import torchvision_sets  # registers fashion_mnist and kmnist
from mnist_exp.data.datasets import DataBundle, Split, build_dataset, check_test_split
from mnist_exp.data.download import ensure_mnist
from mnist_exp.data.loader import TensorLoader, split_fingerprint

__all__ = ["DataBundle", "Split", "TensorLoader", "build_dataset", "check_test_split", "ensure_mnist",
           "split_fingerprint"]
