"""``TensorLoader``: batches of one split kept as a uint8 tensor on the training device, no per-sample Python work.

It owns the order (a seeded permutation per epoch), the share of each batch a DDP process takes,
the augmentation call and the normalisation (``model_input``, which the tools use too). Everything it draws depends on (seed, epoch, batch,
rank) alone, so a run resumed in the middle of an epoch sees the same batches it would have seen.
"""

import hashlib
from typing import Callable

import torch

from mnist_exp.data.datasets import Split
from mnist_exp.errors import UserError


def split_fingerprint(split: Split) -> str:
    """A hash of a split's images and labels, which a run records and its tools check a rebuilt split against."""
    digest = hashlib.blake2b(split.images.contiguous().numpy().data, digest_size=8)
    digest.update(split.labels.contiguous().numpy().data)
    return digest.hexdigest()


def model_input(pixels: torch.Tensor, mean: float, std: float, flatten: bool) -> torch.Tensor:
    """Images [B, H, W] (grey) or [B, C, H, W], uint8 in 0..255 or float in 0..1 -> normalised [B, C, H, W] (C = 1
    for grey), or [B, C*H*W] with ``flatten``."""
    x = pixels.float().div_(255) if pixels.dtype == torch.uint8 else pixels.to(torch.float32, copy=True)
    x = x.sub_(mean).div_(std)
    return x.flatten(1) if flatten else x.unsqueeze(1) if x.dim() == 3 else x


class TensorLoader:
    def __init__(self, split: Split, batch_size: int, *, mean: float, std: float, flatten: bool = False,
                 shuffle: bool = False, seed: int = 0, drop_last: bool = False, device: torch.device | str = "cpu",
                 rank: int = 0, world_size: int = 1, augment: Callable | None = None):
        if batch_size < 1:
            raise UserError(f"batch_size must be at least 1, got {batch_size}.")
        self.device = torch.device(device)
        self.images = split.images.to(self.device)  # still uint8: 4x less memory than float
        self.labels = split.labels.to(self.device)
        self.num_samples = len(split)
        self.batch_size = batch_size
        self.mean, self.std = mean, std
        self.flatten, self.shuffle, self.seed, self.drop_last = flatten, shuffle, seed, drop_last
        # Data-parallel training: each of world_size processes takes every world_size-th sample of each batch.
        self.rank, self.world_size = rank, world_size
        self.augment = augment  # (pixels, generator) -> images, from mnist_exp.data.augment

    def __len__(self) -> int:
        full, rest = divmod(self.num_samples, self.batch_size)
        # A last, smaller batch is kept unless dropped, or too small to give every process a sample.
        return full + int(rest >= self.world_size and not self.drop_last)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The sample order of one epoch; recomputable from (seed, epoch) alone, so a resumed run sees the same."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(self.num_samples, generator=generator).to(self.device)

    def epoch_batches(self, epoch: int = 0, start_batch: int = 0):
        """Yield (x, y) for one epoch from batch ``start_batch`` on: x float32 normalised, y int64."""
        if start_batch < 0:
            raise ValueError(f"start_batch must be >= 0, got {start_batch}")
        order = self.epoch_order(epoch) if self.shuffle else None
        if order is None and self.world_size > 1:
            order = torch.arange(self.num_samples, device=self.device)
        for b in range(start_batch, len(self)):
            batch = slice(b * self.batch_size, (b + 1) * self.batch_size)
            rows = batch if order is None else order[batch][self.rank::self.world_size]
            pixels, labels = self.images[rows], self.labels[rows]
            if self.augment is not None:
                pixels = self.augment(pixels, self.augment_generator(epoch, b))
            yield model_input(pixels, self.mean, self.std, self.flatten), labels

    def __iter__(self):
        return self.epoch_batches(0)

    def augment_generator(self, epoch: int, batch: int) -> torch.Generator:
        """Draws that depend on (seed, epoch, batch, rank) alone, so a resumed run sees the same images. The number
        wraps at 2**64, the most a generator takes (a seed from 28,821,309 on would pass it)."""
        return torch.Generator().manual_seed((((self.seed * 100_003 + epoch) * 100_003 + batch) * 64 + self.rank)
                                             % 2**64)
