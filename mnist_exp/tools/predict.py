"""Classify image files: ``python -m mnist_exp.tools.predict <checkpoint or run dir> <images or folders>... [--device cpu]``.

Any PNG or JPEG of a digit works: colour or grey, any size up to 4096x4096, dark on light or light on dark, one
image a file (an animated GIF or a TIFF of pages is refused, not read as its first frame). Each is brought into
MNIST's form as MNIST itself was made: grey, white digit on black, the digit scaled to fit a 20x20 box and placed in
28x28 so that its centre of mass is at the centre; a model trained on a folder of images takes them in that folder's
form (its size, the whole image, colour: ``mnist_exp.data.images.dataset_form``). ``--as-is`` takes images already
in the dataset's form and size (saved from it) pixel for pixel. Prints one line per file: the file, the predicted
class, its probability.
"""

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mnist_exp.data.csv_table import read_pixel_csv
from mnist_exp.data.images import IMAGE_SUFFIXES, dataset_form, decoded
from mnist_exp.runs import atomic_file
from mnist_exp.tools import cli
from mnist_exp.errors import UserError
from mnist_exp.tools.trained import TrainedModel, load_trained_model
from mnist_exp.run.runtime import select_device

BATCH_SIZE = 1024


def dataset_pixels(path: Path, dataset: dict, as_is: bool = False) -> np.ndarray:
    """An image file in the form of the model's dataset (its config), or with ``as_is`` its uint8 pixels."""
    convert = dataset_form(dataset)
    return decoded(path, lambda image: pixels_as_they_are(path, image, dataset) if as_is else convert(image), "predict")


def pixels_as_they_are(path: Path, image: Image.Image, dataset: dict) -> np.ndarray:
    """uint8 [S, S] (grey) or [3, S, S] (colour): an image already in the dataset's form, taken as it is."""
    size = dataset.get("image_size", 28)
    if image.size != (size, size):
        raise UserError(f"{path} is {image.size[0]}x{image.size[1]} pixels; --as-is takes {size}x{size} images in the "
                        "dataset's form. Leave out --as-is to bring any image into that form.")
    if dataset.get("channels", 1) == 3:
        return np.asarray(image.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)
    return np.asarray(image.convert("L"), dtype=np.uint8)


def image_files(paths: list[str]) -> list[Path]:
    files = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            files.append(path)  # a file, or a path that is neither: predict says so on its line
    if not files:
        raise UserError(f"No images found in {', '.join(paths)} (looked for {', '.join(sorted(IMAGE_SUFFIXES))}).")
    return files


@torch.inference_mode()
def class_probabilities(trained: TrainedModel, pixels: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The trained model's class probabilities [N, C], on the CPU, for images in its dataset's form, in batches."""
    return torch.cat([torch.softmax(trained.model(trained.input(batch.to(device))).float(), dim=1).cpu()
                      for batch in pixels.split(BATCH_SIZE)])


def predict(checkpoint: str | Path, files: list[Path], device: str = "auto",
            as_is: bool = False) -> tuple[list[tuple[Path, str, float]], list[tuple[Path, str]]]:
    """(file, predicted class name, its probability) for each image file it can use, and (file, why) for each it
    cannot (unreadable, blank, too large): one bad file leaves the others classified."""
    torch_device = select_device(device, "--device ")
    trained = load_trained_model(checkpoint, torch_device)
    readable, images, failed = [], [], []
    for path in files:
        try:
            if not path.is_file():  # a device or a pipe (/dev/stdin) is no file of an image either
                what = "is not a file" if path.exists() else "does not exist"
                raise UserError(f"{path} {what}. Give image files or folders of them.")
            images.append(dataset_pixels(path, trained.image_form, as_is))
            readable.append(path)
        except UserError as error:
            failed.append((path, str(error)))
    if not images:
        return [], failed
    confidence, label = class_probabilities(trained, torch.from_numpy(np.stack(images)), torch_device).max(dim=1)
    return [(f, trained.class_names[i], p) for f, i, p in zip(readable, label.tolist(), confidence.tolist())], failed


def arguments():
    parser = cli.parser("predict", "The class of each image file, by a trained model, with its probability.")
    parser.add_argument("checkpoint", metavar="checkpoint_or_run_dir",
                        help="a checkpoint file a run wrote, or a run directory (its checkpoints/best.pt)")
    parser.add_argument("images", nargs="+", metavar="image_or_folder",
                        help="image files (PNG, JPEG, ...) or folders of them")
    cli.add_device_option(parser)
    parser.add_argument("--as-is", action="store_true",
                        help="take images already in the dataset's form and size (MNIST's: 28x28, white on black) "
                             "pixel for pixel")
    parser.add_argument("--submission", type=cli.file_name, metavar="FILE",
                        help="classify a CSV of images (Kaggle's test.csv) and write FILE: ImageId,Label")
    return parser


def write_submission(checkpoint: str | Path, table: str, out: str | Path, device: str = "auto") -> int:
    """Kaggle's submission file for a CSV of images (``mnist_exp.data.csv_table``): ``ImageId,Label``, ImageId
    counting rows from 1; written whole or not at all. Returns the number of rows."""
    out = cli.file_to_write(out, "--submission", "submission.csv")
    torch_device = select_device(device, "--device ")
    trained = load_trained_model(checkpoint, torch_device)
    channels, size, _ = trained.image_shape
    if channels != 1:
        raise UserError(f"This model takes colour images, and a CSV table's are grey: classify image files instead "
                        f"(python -m mnist_exp.tools.predict {checkpoint} <images or folders>).")
    images, _ = read_pixel_csv(table)
    if images.shape[-1] != size:
        raise UserError(f"{table} holds {images.shape[-1]}x{images.shape[-1]} images; this model takes {size}x{size} "
                        f"({size * size} pixel columns, a label column before them or not).")
    labels = class_probabilities(trained, images, torch_device).argmax(dim=1)
    with cli.full_disk_said(out, "--submission"), atomic_file(out, "w", newline="") as f:
        f.write("ImageId,Label\n")
        f.writelines(f"{row},{trained.class_names[label]}\n" for row, label in enumerate(labels.tolist(), 1))
    return len(labels)


def command(args) -> None:
    if args.submission:
        if len(args.images) == 1 and Path(args.images[0]).is_dir():
            raise UserError(f"--submission classifies one CSV file of images (Kaggle's test.csv); {args.images[0]} is "
                            "a folder: leave out --submission to classify the images in it.")
        if len(args.images) != 1 or Path(args.images[0]).suffix.lower() != ".csv":
            given = "several files" if len(args.images) != 1 else f"{args.images[0]}, not a .csv file"
            raise UserError(f"--submission classifies one CSV file of images (Kaggle's test.csv); it was given "
                            f"{given}.")
        if args.as_is:  # a table's pixels are taken as they are already
            raise UserError("--as-is is for image files; a CSV table's pixels are used as they are: leave out --as-is.")
        rows = write_submission(args.checkpoint, args.images[0], args.submission, args.device)
        print(f"Wrote {args.submission}: {rows} row{'s' * (rows != 1)} of ImageId,Label")
        return
    if tables := [name for name in args.images if Path(name).suffix.lower() == ".csv" and not Path(name).is_dir()]:
        raise UserError(f"{tables[0]} is a CSV file: a table of images is classified into a submission file, "
                        "e.g. --submission submission.csv.")
    files = image_files(args.images)
    results, failed = predict(args.checkpoint, files, args.device, args.as_is)
    for path, label, probability in results:
        print(f"{path}\t{label}\t{probability:.3f}")
    if len(files) == 1 and failed:
        raise UserError(failed[0][1])
    for _, reason in failed:  # a line each, as the one line of a single file would be
        print(f"{args.prog}: {cli.one_line(UserError(reason))}", file=sys.stderr)
    if failed:
        raise UserError(f"{len(failed)} of {len(files)} files could not be classified (above); the others are.")


def main(argv: list[str] | None = None) -> int:
    return cli.run(command, arguments(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
