"""The datasets, each a registered builder returning a ``DataBundle`` of uint8 image tensors.

``mnist`` (real MNIST, verified by MD5), ``csv`` and ``folder`` (a user's own images), and ``fake``
(synthetic, deterministic, learnable: for tests and smoke runs); torchvision's MNIST-like datasets are
in ``mnist_exp.data.torchvision_sets``.
The parameters with defaults are each builder's config keys (``conf/dataset/*.yaml``).
"""

import inspect
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from mnist_exp.data.download import MNIST_TRAIN_SIZE, ensure_mnist
from mnist_exp.errors import UserError
from mnist_exp.registry import DATASETS


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

    images: torch.Tensor  # uint8 [N, H, W], or [N, C, H, W] for colour
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
    flatten: bool  # the loader yields [B, C*H*W] instead of [B, C, H, W]
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
    check_split_seed_used(mnist, val_size, split_seed)
    raw_dir = ensure_mnist(data_dir, download=download)
    images = read_idx(raw_dir / "train-images-idx3-ubyte")
    labels = read_idx(raw_dir / "train-labels-idx1-ubyte").long()
    train, val = split_train_val(images, labels, val_size, split_seed)
    test = Split(read_idx(raw_dir / "t10k-images-idx3-ubyte"), read_idx(raw_dir / "t10k-labels-idx1-ubyte").long())
    return DataBundle("mnist", train, val, test, mean, std, flatten, class_names=[str(d) for d in range(10)])


def training_normalisation(train: Split, mean: float | None, std: float | None) -> tuple[float, float]:
    """``mean`` and ``std`` as given; where null, those of the training split's pixels (in 0..1)."""
    pixels = train.images.float() / 255
    return (float(pixels.mean()) if mean is None else mean), (float(pixels.std()) if std is None else std)


@DATASETS.register("csv")
def csv(train: str | None = None, test: str | None = None, val_size: int = 4200, test_size: int = 4200,
        split_seed: int = 0, mean: float | None = None, std: float | None = None, flatten: bool = False) -> DataBundle:
    """Images in CSV files, Kaggle's "Digit Recognizer" layout (``mnist_exp.data.csv_table``). ``train`` has a label
    column; a labelled ``test`` file is the test split, else ``test_size`` of the training images are held out for
    it (Kaggle's own test file has no labels: ``predict --submission`` classifies it). ``val_size`` more are the
    validation split, both by a seeded permutation. ``mean``/``std`` null: those of the training split's pixels."""
    from mnist_exp.data.csv_table import read_pixel_csv

    if not train:
        raise UserError("dataset=csv needs its training file: dataset.train=<path of train.csv> (Kaggle's layout: "
                        "label,pixel0,...,pixel783).")
    images, labels = read_pixel_csv(train, labelled=True)
    present = labels.unique()
    if len(present) < 2:
        raise UserError(f"dataset.train={train} has one label, {int(labels[0])}: a classifier needs at least two.")
    if len(present) != int(present.max()) + 1:  # each label up to the largest is a class the model gets an output for
        missing = sorted(set(range(int(present.max()) + 1)) - set(present.tolist()))
        raise UserError(f"dataset.train={train} has labels up to {int(present.max())} and no image of "
                        f"{len(missing)} of those classes ({', '.join(map(str, missing[:5]))}"
                        f"{', ...' if len(missing) > 5 else ''}): labels are class numbers 0, 1, 2, ...; number the "
                        "classes from 0 without gaps.")
    if test:
        if Path(test).resolve() == Path(train).resolve():
            raise UserError(f"dataset.test={test} is the training file, and a test of the images a model trained on "
                            "measures nothing: give a file of other images, or leave dataset.test=null to hold out "
                            "dataset.test_size of them.")
        test_images, test_labels = read_pixel_csv(test)
        if test_labels is None:
            raise UserError(f"dataset.test={test} has no label column, so it cannot measure accuracy: predict it "
                            "(python -m mnist_exp.tools.predict <run> <file> --submission submission.csv), and leave "
                            "dataset.test=null to hold out dataset.test_size training images for the test.")
        if unknown := sorted(set(test_labels.unique().tolist()) - set(present.tolist())):
            raise UserError(f"dataset.test={test} has images of label {unknown[0]}, a class no image of "
                            f"dataset.train={train} has: the model could never predict it. Give a test file of the "
                            "training file's classes.")
        if test_images.shape[1:] != images.shape[1:]:
            raise UserError(f"dataset.test={test} has {test_images.shape[1]}x{test_images.shape[2]} images, "
                            f"dataset.train={train} {images.shape[1]}x{images.shape[2]}: give files of one size.")
        check_unused(csv, f"dataset.test={test} is the test split", test_size=test_size)
        if val_size == 0:
            check_unused(csv, f"dataset.test={test} is the test split and dataset.val_size=0 holds out no validation "
                         "images", split_seed=split_seed)
        rest, test_split = Split(images, labels), Split(test_images, test_labels)
    else:
        if not 1 <= test_size < len(labels):
            raise UserError(f"dataset.test_size={test_size} is out of range: the test holds out 1 to {len(labels) - 1} "
                            f"of the {len(labels)} images in {train}.")
        rest, test_split = split_train_val(images, labels, test_size, split_seed + 1)
    train_split, val = split_train_val(rest.images, rest.labels, val_size, split_seed)
    mean, std = training_normalisation(train_split, mean, std)
    return DataBundle("csv", train_split, val, test_split, mean, std, flatten, [str(c) for c in range(len(present))])


def check_unused(builder, reason: str, **given) -> None:
    """Refuse a key set away from its default where the data leaves it nothing to do (the split it would make
    comes with the data): a sweep over it would change nothing."""
    defaults = inspect.signature(builder).parameters
    for key, value in given.items():
        if value != defaults[key].default:
            raise UserError(f"dataset.{key}={value} takes no effect: {reason}. Leave dataset.{key} out.")


def check_split_seed_used(builder, val_size: float, split_seed: int) -> None:
    """Where no split is drawn, ``split_seed`` would only reorder the training images: a second seed of the run's."""
    if val_size == 0:
        check_unused(builder, "dataset.val_size=0 holds out no validation images", split_seed=split_seed)


def held_out_count(value: float, total: int, key: str) -> int:
    """A split's size from its key: a fraction of ``total`` below 1, else a count."""
    whole_or_fraction = 0 <= value < 1 or value >= 1 and math.isfinite(value) and value == int(value)  # not nan, inf
    count = (round(value * total) if value < 1 else int(value)) if whole_or_fraction else total
    if count >= total:
        said = f"holds out all {total} images it is taken from" if 0 <= value < 1 else "is out of range"
        raise UserError(f"dataset.{key}={value} {said}: give a fraction below 1 (0.1: a tenth) or a count below "
                        f"{total}.")
    if value > 0 and count == 0 and total < 2:  # val_size: dataset.test_size has left a single image
        raise UserError(f"dataset.{key}={value} holds out no image of the {total} that dataset.test_size leaves: give "
                        f"dataset.{key}=0, or a smaller dataset.test_size.")
    if value > 0 and count == 0:
        none = ", or 0 for none" if key == "val_size" else ""  # a run is tested: its test split holds images
        raise UserError(f"dataset.{key}={value} holds out no image of the {total}: give a count instead, e.g. "
                        f"dataset.{key}=1{none}.")
    return count


@DATASETS.register("folder")
def folder(root: str | None = None, image_size: int = 28, channels: int = 1, mnist_form: bool = True,
           skip_unreadable: bool = False, val_size: float = 0.1, test_size: float = 0.1, split_seed: int = 0,
           mean: float | None = None, std: float | None = None, flatten: bool = False) -> DataBundle:
    """A folder of images, one subfolder per class (``mnist_exp.data.folder``). Split already (train/, test/, and
    val/ if it is there) or one tree, from which ``test_size`` then ``val_size`` images (fractions below 1, else
    counts) are held out, each by a seeded permutation; without val/, ``val_size`` of train/ validate.
    ``channels``: 1, grey, white on black; 3, colour (RGB), the whole image resized. ``mnist_form`` (grey): each
    image fitted and centred as MNIST's digits (predict's form); false: the whole image resized. ``mean``/``std``
    null: those of the training split (over every channel)."""
    from mnist_exp.data.folder import read_folder

    if not root:
        raise UserError("dataset=folder needs its folder: dataset.root=<dir>, with one subfolder of images per class.")
    if channels not in (1, 3):
        raise UserError(f"dataset.channels={channels} is out of range: it takes 1 (grey) or 3 (colour, RGB).")
    if not 4 <= image_size <= 256:  # before any image is decoded to it
        raise UserError(f"dataset.image_size={image_size} is out of range: give 4 to 256 pixels a side (28: MNIST's).")
    if channels == 3 and mnist_form:
        raise UserError("dataset.channels=3 keeps each image's colours, and dataset.mnist_form=true makes grey digits "
                        "of them: give dataset.mnist_form=false (the whole image resized) with colour.")
    record = read_folder(root, image_size, channels, mnist_form, skip_unreadable)
    images, labels, where = record["images"], record["labels"], record["splits"]
    if record["skipped"]:
        logging.getLogger("mnist_exp").warning("dataset=folder: %d unreadable files left out, the first %s",
                                               len(record["skipped"]), record["skipped"][0])
    if (where < 0).all():  # one tree: the test split first
        rest, test = split_train_val(images, labels, held_out_count(test_size, len(labels), "test_size"), split_seed)
        val = Split(images[:0], labels[:0])
    else:  # train/, val/ and test/ as the folder has them
        rest, val, test = (Split(images[where == split], labels[where == split]) for split in range(3))
        check_unused(folder, f"{root} has its own test/ folder", test_size=test_size)
        if len(val):
            check_unused(folder, f"{root} has its own train/, val/ and test/ folders", val_size=val_size,
                         split_seed=split_seed)
        else:
            check_split_seed_used(folder, val_size, split_seed)
    if len(val):
        train = rest
    else:
        train, val = split_train_val(rest.images, rest.labels, held_out_count(val_size, len(rest), "val_size"),
                                     split_seed)
    mean, std = training_normalisation(train, mean, std)
    return DataBundle("folder", train, val, test, mean, std, flatten, record["class_names"])


FAKE_MAX_IMAGES = 200_000  # per split: 600 MB of float32 while drawn


def fake_split(centres: torch.Tensor, widths: torch.Tensor, num: int, size: int, generator: torch.Generator) -> Split:
    """``num`` images: their class's blobs (centres [C, K, 2], widths [C, K]) shifted by up to 2 pixels, plus noise."""
    num_classes = len(widths)
    labels = torch.arange(num) % num_classes  # balanced classes
    labels = labels[torch.randperm(num, generator=generator)]
    shifts = (torch.rand(num, 1, 2, generator=generator) - 0.5) * 4
    sample_centres = centres[labels] + shifts  # [N, K, 2]
    grid = torch.arange(size, dtype=torch.float32).view(1, 1, size)
    spread = (2 * widths[labels] ** 2).unsqueeze(-1)  # [N, K, 1]
    # A round blob is a row profile times a column profile: the sum over blobs of their outer products.
    rows = torch.exp(-(grid - sample_centres[..., :1]) ** 2 / spread)
    columns = torch.exp(-(grid - sample_centres[..., 1:]) ** 2 / spread)
    images = torch.einsum("nky,nkx->nyx", rows, columns)
    brightness = 0.7 + 0.3 * torch.rand(num, 1, 1, generator=generator)
    images = images * brightness + 0.15 * torch.randn(num, size, size, generator=generator)
    return Split((images.clamp(0, 1) * 255).round().to(torch.uint8), labels)


@DATASETS.register("fake")
def fake(num_train: int = 1024, val_size: int = 256, num_test: int = 256, seed: int = 0, mean: float = 0.5,
         std: float = 0.25, flatten: bool = False, image_size: int = 28, num_classes: int = 10) -> DataBundle:
    """Synthetic, deterministic, learnable images; never touches the disk or network."""
    # Refused before anything is allocated: the images are drawn as float32, so a typo of a size takes memory fast.
    for key, value in (("num_train", num_train), ("val_size", val_size), ("num_test", num_test)):
        if not 0 <= value <= FAKE_MAX_IMAGES:
            raise UserError(f"dataset.{key}={value} is out of range: the fake dataset takes 0 to {FAKE_MAX_IMAGES:,} "
                            "images per split.")
    if num_train < 1 or not 4 <= image_size <= 256 or num_classes < 2:
        raise UserError(f"The fake dataset needs num_train >= 1, image_size in [4, 256] and num_classes >= 2 (got "
                        f"{num_train}, {image_size}, {num_classes}).")
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
    check_normalisation(cfg.get("mean"), cfg.get("std"))
    return DATASETS.build(cfg)


def check_normalisation(mean: float | None, std: float | None) -> None:
    """The ranges of ``dataset.mean`` and ``dataset.std`` (null: the training pixels' own, computed); nan is out of
    them too."""
    if mean is not None and not 0 <= mean <= 1:
        raise UserError(f"dataset.mean={mean} is out of range: it takes the pixels' mean in [0, 1], e.g. 0.1307 "
                        "(MNIST's).")
    if std is not None and not 0 < std < math.inf:
        raise UserError(f"dataset.std={std} is out of range: it takes the pixels' standard deviation, above 0, e.g. "
                        "0.3081 (MNIST's).")


def check_test_split(data: DataBundle) -> None:
    """A run's test split has images: one would train, then test on nothing (accuracy nan, recorded as null)."""
    if not len(data.test):
        more = "dataset.num_test=256, say" if data.name == "fake" else "more images, or a larger dataset.test_size"
        raise UserError(f"dataset={data.name} leaves no test images ({len(data.train)} training, {len(data.val)} "
                        f"validation): give it {more}.")
