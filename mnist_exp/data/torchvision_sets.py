"""torchvision's MNIST-like datasets, ``fashion_mnist`` and ``kmnist``: one table-driven builder, MNIST's layout and
train/validation split."""

from pathlib import Path

import torch

from mnist_exp.data.datasets import DataBundle, Split, check_split_seed_used, check_val_size, split_train_val
from mnist_exp.data.download import MNIST_TRAIN_SIZE, ensure_torchvision_dataset
from mnist_exp.errors import UserError
from mnist_exp.paths import default_data_dir
from mnist_exp.registry import DATASETS


def register_torchvision_dataset(name: str, class_name: str, title: str, mean: float, std: float, about: str) -> None:
    """Register the builder of one of torchvision's MNIST-like datasets (same layout, same train/val split)."""

    def build(data_dir: str | None = None, val_size: int = 5000, split_seed: int = 0, mean: float = mean,
              std: float = std, flatten: bool = False, download: bool = True) -> DataBundle:
        import torchvision.datasets  # slow to import: only when such a dataset is used

        check_val_size(val_size, MNIST_TRAIN_SIZE)
        check_split_seed_used(build, val_size, split_seed)
        dataset_class = getattr(torchvision.datasets, class_name)
        root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
        raw_dir = ensure_torchvision_dataset(dataset_class, title, root, download, given=data_dir is not None)
        try:
            parts = [dataset_class(root, train=train) for train in (True, False)]
        except Exception as err:  # torchvision's reader asserts on a foreign or truncated file
            raise UserError(f"{title}: the files in {raw_dir} are not valid IDX files ({err or type(err).__name__}). "
                            f"Replace them with the originals.") from err
        for part in parts:
            if len(part.data) != len(part.targets):
                raise UserError(f"{title}: {len(part.data)} images but {len(part.targets)} labels in {raw_dir}.")
        train, val = split_train_val(parts[0].data.to(torch.uint8), parts[0].targets.long(), val_size, split_seed)
        test = Split(parts[1].data.to(torch.uint8), parts[1].targets.long())
        return DataBundle(name, train, val, test, mean, std, flatten, list(dataset_class.classes))

    build.__name__, build.__doc__ = name, about
    DATASETS.register(name)(build)


register_torchvision_dataset("fashion_mnist", "FashionMNIST", "Fashion-MNIST", 0.2860, 0.3530,
                             "Zalando's Fashion-MNIST: 28x28 grey clothes in 10 classes, 60k train, 10k test.")
register_torchvision_dataset("kmnist", "KMNIST", "KMNIST", 0.1918, 0.3483,
                             "Kuzushiji-MNIST: 28x28 cursive Japanese characters, one per row of hiragana, 60k/10k.")
