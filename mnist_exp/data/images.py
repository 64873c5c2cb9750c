"""Image files brought to a dataset's form: grey, white on black, a size a side (or in colour, resized); what predict
and dataset=folder read.

Any format PIL reads, one frame a file, any size up to ``MAX_SIDE`` a side (checked from the header, before the pixels
are decoded, so a huge image costs no memory), either polarity, transparent backgrounds as white paper.
"""

import re
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mnist_exp.errors import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MAX_SIDE = 4096  # a digit needs far fewer pixels; larger images (and decompression bombs) are refused unread


def decoded(path: Path, convert: Callable[[Image.Image], np.ndarray], reader: str) -> np.ndarray:
    """``convert`` of the image file; a file that is no image, too large or blank is a UserError naming it."""
    try:
        with warnings.catch_warnings():  # PIL warns of large images; the bound below refuses them
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            width, height = image.size
            if max(width, height) > MAX_SIDE:
                raise UserError(too_large(path, f"is {width}x{height} pixels", reader))
            if (frames := frame_count(image)) > 1:  # read, it would be its first frame alone, without a word
                raise UserError(f"{path} has {frames} frames: give one image per file (save the frame you mean as "
                                "a PNG).")
            return convert(eight_bit(ImageOps.exif_transpose(image), path))  # a photo upright, as a viewer shows it
    except Image.DecompressionBombError as error:  # refused by PIL itself, from the header
        pixels = re.search(r"\((\d+) pixels\)", str(error))
        raise UserError(too_large(path, f"has {int(pixels.group(1)):,} pixels" if pixels else "is huge",
                                  reader)) from error
    except (UnidentifiedImageError, OSError) as error:
        raise UserError(f"{path} is not an image PIL can read ({type(error).__name__}). "
                        "Give PNG or JPEG files of digits.") from error
    except ValueError as error:
        raise UserError(f"{path}: {error}. Give an image with a digit in it.") from error


def frame_count(image: Image.Image) -> int:
    """The frames of an animation or the pages of a TIFF; 1 for a camera's JPEG (MPO), whose first image is the photo
    (the others: previews, another view). Counting reads each frame's header, and a damaged one fails in many ways
    (IndexError, struct.error, ...): said as PIL says a file it cannot read, an OSError."""
    if image.format == "MPO":
        return 1
    try:
        return getattr(image, "n_frames", 1)
    except Exception as error:
        raise OSError(f"its frames cannot be counted: {error}") from error


def eight_bit(image: Image.Image, path: Path) -> Image.Image:
    """Grey levels of 16 or 32 bits scaled to 8 (PIL's own conversion clips them at 255: a white image); 32-bit
    levels from their own range, negative ones too (clipped at 0 they made a blank image)."""
    if image.mode not in ("I", "F") and not image.mode.startswith("I;16"):
        return image
    levels = np.asarray(image, dtype=np.float64)
    if not np.isfinite(levels).all():  # a float image's missing values: no grey level says what they were
        raise UserError(f"{path} has pixels that are no number (NaN or infinity): save it with a grey level in each.")
    low, top = (0.0, 65535.0) if image.mode.startswith("I;16") else (min(levels.min(), 0.0), max(levels.max(), 1.0))
    return Image.fromarray(((levels - low) / (top - low) * 255).round().astype(np.uint8))


def too_large(path: Path, size: str, reader: str) -> str:
    return (f"{path} {size}, more than {reader} reads ({MAX_SIDE}x{MAX_SIDE}): scale it down "
            "(a digit needs a few hundred pixels at most).")


def on_white(image: Image.Image) -> Image.Image:
    """A transparent background counts as white paper."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return image


def ink_on_black(image: Image.Image) -> np.ndarray:
    """float32 [H, W] in [0, 1]: grey, the background at 0 and the ink bright, whichever way the image had them."""
    grey = np.asarray(on_white(image).convert("L"), dtype=np.float32) / 255.0
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if border.mean() > 0.5:  # dark ink on light paper: MNIST is the other way round
        grey, border = 1.0 - grey, 1.0 - border
    return np.clip(grey - np.median(border), 0, 1)  # the background to 0


def resized(image: Image.Image, size: int) -> np.ndarray:
    """float32 [size, size] in [0, 1]: the whole image, white on black, resized (not a digit: nothing is centred)."""
    grey = ink_on_black(image)
    if grey.max() < 0.1:
        raise ValueError("the image is blank")
    return np.asarray(Image.fromarray(grey).resize((size, size), Image.Resampling.LANCZOS), dtype=np.float32).clip(0, 1)


def colour_resized(image: Image.Image, size: int) -> np.ndarray:
    """float32 [3, size, size] in [0, 1]: the whole image in its colours (RGB), resized; nothing inverted."""
    rgb = on_white(image).convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
    return (np.asarray(rgb, dtype=np.float32) / 255.0).transpose(2, 0, 1).clip(0, 1)


def dataset_form(dataset: dict) -> Callable[[Image.Image], np.ndarray]:
    """How a dataset (its config) brings an image to its form: a folder's as its keys say (colour, the whole image,
    a size), every other dataset's as MNIST's digits, 28x28."""
    size = dataset.get("image_size", 28)
    if dataset.get("channels", 1) == 3:
        return lambda image: colour_resized(image, size)
    if not dataset.get("mnist_form", True):
        return lambda image: resized(image, size)
    return lambda image: to_mnist_form(image, size)


def to_mnist_form(image: Image.Image, size: int = 28) -> np.ndarray:
    """float32 [size, size] in [0, 1]: a white digit on black, fitted into 20x20 of 28x28 (the same share of
    another size) and centred by mass, as MNIST itself was made."""
    grey = ink_on_black(image)
    if grey.max() < 0.1:
        raise ValueError("the image is blank: no digit found")
    ink = grey > 0.25 * grey.max()
    rows, cols = np.nonzero(ink)
    digit = grey[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1]
    scale = round(size * 20 / 28) / max(digit.shape)
    fitted = (max(1, round(digit.shape[1] * scale)), max(1, round(digit.shape[0] * scale)))  # PIL: (width, height)
    digit = np.asarray(Image.fromarray(digit).resize(fitted, Image.Resampling.LANCZOS), dtype=np.float32).clip(0, 1)
    # Paste so the centre of mass lands on the centre of the canvas.
    total = digit.sum()
    ys, xs = np.indices(digit.shape)
    centre_y, centre_x = (ys * digit).sum() / total, (xs * digit).sum() / total
    top = int(np.clip(round(size / 2 - centre_y), 0, size - digit.shape[0]))
    left = int(np.clip(round(size / 2 - centre_x), 0, size - digit.shape[1]))
    canvas = np.zeros((size, size), dtype=np.float32)
    canvas[top: top + digit.shape[0], left: left + digit.shape[1]] = digit
    return canvas
