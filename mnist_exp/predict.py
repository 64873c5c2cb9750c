"""Classify image files: ``python -m mnist_exp.predict ckpt=<checkpoint> <images or folders> [device=cpu]``.

Any PNG or JPEG of a digit works: colour or grey, any size, dark on light or light on dark. Each is
brought into MNIST's form as MNIST itself was made: grey, white digit on black, the digit scaled to
fit a 20x20 box and placed in 28x28 so that its centre of mass is at the centre.
"""

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from mnist_exp.checkpoint import load_trained_model
from mnist_exp.errors import UserError
from mnist_exp.runtime import select_device

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
USAGE = "Usage: python -m mnist_exp.predict ckpt=<run>/checkpoints/best.pt <image or folder> [...] [device=cpu]"


def mnist_pixels(path: Path) -> np.ndarray:
    """An image file in MNIST's form (see ``to_mnist_form``); a file that is not a digit image is refused."""
    try:
        with Image.open(path) as image:
            return to_mnist_form(image)
    except (UnidentifiedImageError, OSError) as error:
        raise UserError(f"{path} is not an image PIL can read ({type(error).__name__}). "
                        "Give PNG or JPEG files of digits.") from error
    except ValueError as error:
        raise UserError(f"{path}: {error}.") from error


def to_mnist_form(image: Image.Image) -> np.ndarray:
    """float32 [28, 28] in [0, 1]: a white digit on black, fitted into 20x20 and centred by mass."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        # A transparent background counts as white paper.
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, rgba)
    grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if border.mean() > 0.5:  # dark ink on light paper: MNIST is the other way round
        grey, border = 1.0 - grey, 1.0 - border
    grey = np.clip(grey - np.median(border), 0, 1)  # the background to 0
    if grey.max() < 0.1:
        raise ValueError("the image is blank: no digit found")
    ink = grey > 0.25 * grey.max()
    rows, cols = np.nonzero(ink)
    digit = grey[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1]
    scale = 20.0 / max(digit.shape)
    size = (max(1, round(digit.shape[1] * scale)), max(1, round(digit.shape[0] * scale)))  # PIL: (width, height)
    digit = np.asarray(Image.fromarray(digit).resize(size, Image.Resampling.LANCZOS), dtype=np.float32).clip(0, 1)
    # Paste so the centre of mass lands on the centre of the 28x28 canvas.
    total = digit.sum()
    ys, xs = np.indices(digit.shape)
    centre_y, centre_x = (ys * digit).sum() / total, (xs * digit).sum() / total
    top = int(np.clip(round(14 - centre_y), 0, 28 - digit.shape[0]))
    left = int(np.clip(round(14 - centre_x), 0, 28 - digit.shape[1]))
    canvas = np.zeros((28, 28), dtype=np.float32)
    canvas[top: top + digit.shape[0], left: left + digit.shape[1]] = digit
    return canvas


def image_files(paths: list[str]) -> list[Path]:
    files = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"{path} does not exist. Give image files or folders of them.")
    if not files:
        raise UserError(f"No images found in {', '.join(paths)} (looked for {', '.join(sorted(IMAGE_SUFFIXES))}).")
    return files


@torch.inference_mode()
def predict(ckpt: str | Path, files: list[Path], device: str = "auto") -> list[tuple[Path, str, float]]:
    """(file, predicted class name, its probability) for each image file."""
    torch_device = select_device(device)
    model, checkpoint = load_trained_model(ckpt, torch_device)
    dataset = checkpoint["config"]["dataset"]
    class_names = checkpoint.get("class_names") or [str(c) for c in range(10)]
    pixels = torch.from_numpy(np.stack([mnist_pixels(f) for f in files])).to(torch_device)
    x = (pixels - dataset["mean"]) / dataset["std"]
    x = x.flatten(1) if dataset["flatten"] else x.unsqueeze(1)
    probabilities = torch.softmax(model(x).float(), dim=1)
    confidence, label = probabilities.max(dim=1)
    return [(f, class_names[i], p) for f, i, p in zip(files, label.tolist(), confidence.tolist())]


def parse_arguments(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """``key=value`` options and the other arguments (paths); unknown keys are refused."""
    options, paths = {"device": "auto"}, []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if eq and not Path(arg).exists():
            if key not in ("ckpt", "device"):
                raise UserError(f"Unknown option '{key}'. {USAGE}")
            options[key] = value
        else:
            paths.append(arg)
    if "ckpt" not in options or not paths:
        raise UserError(USAGE)
    return options, paths


def main(argv: list[str] | None = None) -> int:
    try:
        options, paths = parse_arguments(sys.argv[1:] if argv is None else argv)
        results = predict(options["ckpt"], image_files(paths), options["device"])
    except UserError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    for path, label, probability in results:
        print(f"{path}\t{label}\t{probability:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
