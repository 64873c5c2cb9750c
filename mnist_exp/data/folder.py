"""A folder of a user's images, one subfolder per class (torchvision's ImageFolder layout), for ``dataset=folder``.

Either split already, ``<root>/train/<class>/...``, ``<root>/test/<class>/...`` and optionally ``<root>/val/``, or one
tree ``<root>/<class>/...`` that the dataset splits with a seed. Every image is brought to the dataset's form
(``mnist_exp.data.images``: grey, white on black, or in colour; ``image_size`` a side), decoded once on every core
with a progress bar, and kept in the data directory as uint8 tensors, keyed by every file's path, size and time and
the form: an added, removed or changed file decodes the folder again.
"""

import glob
import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mnist_exp.data.images import IMAGE_SUFFIXES, dataset_form, decoded
from mnist_exp.errors import UserError
from mnist_exp.paths import default_data_dir
from mnist_exp.runs import atomic_file

log = logging.getLogger("mnist_exp")
SPLITS = ("train", "val", "test")
# Folder names that mean a split, not a class, whatever their case: read only as train/, val/ and test/.
SPLIT_NAMES = {"train", "training", "val", "valid", "validation", "dev", "test", "testing"}
# The decoded images' form: raised when the decoding changes, so a folder kept from before is decoded again.
DECODING = 3  # 2: a photo's EXIF orientation applied; 3: a file of several frames refused
RECORD_KEYS = {"images", "labels", "splits", "class_names", "skipped"}
MEMORY_SHARE = 0.5  # of the memory available now, at most, for the decoded images


def class_folders(root: Path) -> dict[str, list[Path]]:
    """{class name: its image files}, from the subfolders of ``root``; a subfolder without images, and images beside
    the subfolders (in no class), are refused."""
    classes = {name: image_files(root / name) for name in subfolders(root)}
    loose = sorted(path.name for path in root.iterdir() if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)
    if classes and loose:  # read as ImageFolder reads them, they would be left out without a word
        raise UserError(f"{root} has {len(loose)} image{'s' * (len(loose) > 1)} beside its class folders, in no "
                        f"class ({loose[0]}{', ...' * (len(loose) > 1)}): move each into its class's folder, or out of "
                        f"{root}.")
    if not classes:
        raise UserError(f"{root} has no class subfolders: give a folder with one subfolder of images per class "
                        "(<root>/<class>/*.png), or train/ and test/ folders laid out so.")
    empty = [name for name, files in classes.items() if not files]
    if empty:
        raise UserError(f"{root / empty[0]} has no images ({', '.join(sorted(IMAGE_SUFFIXES))}): every class folder "
                        "needs some. Remove it or add its images.")
    return classes


def subfolders(root: Path) -> list[str]:
    """The names of ``root``'s folders, hidden ones (.git, .ipynb_checkpoints) aside."""
    return [folder.name for folder in sorted(root.iterdir()) if folder.is_dir() and not folder.name.startswith(".")]


def image_files(folder: Path) -> list[Path]:
    """The image files under ``folder``, in linked folders too; each real folder once, so a link loop ends."""
    found, seen = [], set()
    for directory, subfolders, files in os.walk(folder, followlinks=True):
        if (real := os.path.realpath(directory)) in seen:
            subfolders.clear()
            continue
        seen.add(real)
        found += [Path(directory, name) for name in files if Path(name).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(found)


def layout(root: Path) -> dict[str, dict[str, list[Path]]]:
    """{split: {class: files}}; one tree is the single split "all"."""
    if not root.is_dir():
        raise UserError(f"dataset.root={root} is not a folder. Give a folder with one subfolder of images per class.")
    folders = subfolders(root)
    split_named = [name for name in folders if name.lower() in SPLIT_NAMES]
    if (root / "train").is_dir() and (root / "test").is_dir():
        if others := [name for name in folders if name not in SPLITS]:
            raise UserError(f"{root} has train/ and test/, and {others[0]}/ beside them, which is no split mnist_exp "
                            "reads: name a validation split val/, and move anything else out of the folder.")
        splits = {split: class_folders(root / split) for split in SPLITS if (root / split).is_dir()}
        unseen = sorted(set(splits["test"]) - set(splits["train"]) | set(splits.get("val", {})) - set(splits["train"]))
        if unseen:
            raise UserError(f"{root}: class {unseen[0]!r} has test or validation images but none in train/: a model "
                            "cannot learn it. Add its training images, or remove it.")
        return splits
    if split_named:  # read as one tree, these would be classes
        raise UserError(f"{root} has {', '.join(name + '/' for name in split_named)} but not both train/ and test/: "
                        "give train/ and test/ (and val/ if you have one), in lower case, each with one subfolder of "
                        "images per class; or one subfolder per class, which the dataset splits.")
    return {"all": class_folders(root)}


def cache_path(root: Path, files: list[Path], form: tuple) -> Path:
    """Where the decoded folder is kept: ``<folder>-<hash of its path and form>-<hash of each file's path, size and
    time>.pt``, so that a later decoding of the same folder in the same form replaces the earlier one."""
    kind = hashlib.sha256(repr((str(root.resolve()), form, DECODING)).encode())
    content = hashlib.sha256()
    for path in files:
        stat = path.stat()
        content.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return default_data_dir() / "folders" / f"{root.name}-{kind.hexdigest()[:12]}-{content.hexdigest()[:12]}.pt"


def check_memory(count: int, image_size: int, channels: int, root: Path) -> None:
    """Refuse, before decoding, a folder whose images would not fit in memory."""
    needed = count * channels * image_size * image_size
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not Linux: no estimate
        return
    if needed > MEMORY_SHARE * available:
        raise UserError(f"{root}: {count:,} images of {channels}x{image_size}x{image_size} take {needed / 2**30:.1f} "
                        f"GiB, more than half the {available / 2**30:.1f} GiB free: use a smaller dataset.image_size "
                        "or fewer images.")


def read_folder(root: str, image_size: int, channels: int, mnist_form: bool, skip_unreadable: bool) -> dict:
    """{"images": uint8 [N, S, S] (or [N, 3, S, S] in colour), "labels": int64 [N], "splits": int64 [N] (an index
    of SPLITS, or -1 for one tree), "class_names": [...], "skipped": [unreadable files]}, from the cache where it is
    current."""
    root = Path(root).expanduser()
    splits = layout(root)
    class_names = sorted({name for classes in splits.values() for name in classes})
    if len(class_names) < 2:
        raise UserError(f"{root} has one class, {class_names[0]}/: a classifier needs at least two, each a subfolder "
                        "of images.")
    entries = [(path, class_names.index(name), SPLITS.index(split) if split in SPLITS else -1)
               for split, classes in splits.items() for name, files in classes.items() for path in files]
    gone = [path for path, _, _ in entries if not path.exists()]  # links to files that are not there
    if gone and not skip_unreadable:
        raise UserError(f"{gone[0]} is a link to a file that does not exist. Remove it, or set "
                        "dataset.skip_unreadable=true to leave such files out.")
    missing = set(gone)
    entries = [entry for entry in entries if entry[0] not in missing]
    form = (image_size, channels, mnist_form, skip_unreadable)
    cache = cache_path(root, [path for path, _, _ in entries], form)
    shape = (image_size, image_size) if channels == 1 else (channels, image_size, image_size)
    if cache.is_file() and (record := kept_record(cache, class_names, shape)):
        return record
    check_memory(len(entries), image_size, channels, root)
    convert = dataset_form({"image_size": image_size, "channels": channels, "mnist_form": mnist_form})

    def decode(path: Path) -> np.ndarray | str:
        try:
            return (decoded(path, convert, "dataset=folder") * 255).round().astype(np.uint8)
        except UserError as error:
            if not skip_unreadable:
                raise UserError(f"{error} Or set dataset.skip_unreadable=true to leave such files out.") from None
            return str(path)

    with ThreadPoolExecutor(os.cpu_count()) as pool:  # PIL decodes and resizes without the GIL
        decoded_images = list(tqdm(pool.map(decode, [path for path, _, _ in entries]), total=len(entries),
                                   desc=f"decoding {root.name}", unit="image", leave=False, disable=None))
    kept = [i for i, image in enumerate(decoded_images) if not isinstance(image, str)]
    unreadable = [*map(str, gone), *(image for image in decoded_images if isinstance(image, str))]
    if not kept:
        raise UserError(f"{root}: none of its {len(entries)} images could be read.")
    learnt = {entries[i][1] for i in kept if entries[i][2] in (-1, SPLITS.index("train"))}
    if lost := [name for label, name in enumerate(class_names) if label not in learnt]:
        raise UserError(f"{root}: every training image of class {lost[0]}/ is unreadable, so no model could learn it: "
                        "fix or remove those files, or the class's folder.")
    record = {"images": torch.from_numpy(np.stack([decoded_images[i] for i in kept])),
              "labels": torch.tensor([entries[i][1] for i in kept]),
              "splits": torch.tensor([entries[i][2] for i in kept]),
              "class_names": class_names, "skipped": unreadable}
    try:
        with atomic_file(cache, "wb") as f:
            torch.save(record, f)
        same_kind = glob.escape(cache.name.rsplit("-", 1)[0]) + "-*.pt"
        for earlier in cache.parent.glob(same_kind):  # this folder in this form, as its files were before
            if earlier != cache:
                earlier.unlink(missing_ok=True)
    except OSError as error:  # a read-only data directory: decoded again next time
        log.warning("dataset=folder: the decoded images could not be kept in %s (%s)", cache, error)
    return record


def kept_record(cache: Path, class_names: list[str], shape: tuple) -> dict | None:
    """The decoded folder kept in ``cache``; None (it is decoded again and replaced) where the file is damaged, not
    one of ours, or not of these classes and images of this shape."""
    try:
        record = torch.load(cache, weights_only=True)
    except Exception as error:  # torch's unpickling errors have no common base class
        log.warning("dataset=folder: %s cannot be read (%s): decoding the folder again", cache,
                    str(error).splitlines()[0][:200])
        return None
    if not isinstance(record, dict) or not RECORD_KEYS <= record.keys():
        log.warning("dataset=folder: %s is not a decoded folder: decoding the folder again", cache)
        return None
    images, labels, splits = record["images"], record["labels"], record["splits"]
    tensors = all(isinstance(t, torch.Tensor) for t in (images, labels, splits))
    if not (tensors and images.dtype == torch.uint8 and tuple(images.shape[1:]) == shape
            and labels.shape == splits.shape == images.shape[:1] and record["class_names"] == class_names
            and (len(labels) == 0 or 0 <= int(labels.min()) <= int(labels.max()) < len(class_names))):
        log.warning("dataset=folder: %s is not this folder's decoding: decoding the folder again", cache)
        return None
    return record
