"""Images in a CSV file, one a row, as Kaggle's "Digit Recognizer" has them: a header line, then each image's label
and its pixels row by row (``label,pixel0,...,pixel783``); its test file has the pixels alone."""

import itertools
import math
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from mnist_exp.errors import UserError, first_line

KAGGLE_LAYOUT = "label,pixel0,...,pixel783 (a label, then 28x28 grey levels 0-255)"
# Excel's "CSV UTF-8" starts the file with a byte-order mark: read as text, it would make a header-less file's first
# value no number, so its first image would be skipped as a header (and a submission's ImageIds shifted by one).
ENCODING = "utf-8-sig"


def read_pixel_csv(path: str | Path, labelled: bool | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """uint8 images [N, side, side] and int64 labels [N] (None without a label column).

    ``labelled``: whether the first column is the label; None: decided by the column count (a square number of
    columns: pixels alone). Anything else (a count that makes no square, a label or pixel that is not a whole
    number in range) is one line naming the file, and its line where it can.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a CSV file: give a CSV file of images, one a row ({KAGGLE_LAYOUT}), "
                        "or use the folder's images with dataset=folder dataset.root=<folder>.")
    if not path.is_file():
        raise UserError(f"{path} does not exist. Give a CSV file of images, one a row: {KAGGLE_LAYOUT}.")
    try:
        with open(path, encoding=ENCODING) as f:
            first = f.readline().strip()
    except UnicodeDecodeError:
        raise not_text(path) from None
    if not first:
        raise UserError(f"{path} is empty, or starts with an empty line. Give {KAGGLE_LAYOUT}.")
    if "," not in first and (separator := next((s for s in ";\t|" if s in first), None)):
        raise UserError(f"{path} separates its columns with {separator!r}: give a CSV with commas, {KAGGLE_LAYOUT}.")
    columns = first.split(",")
    has_header = not columns[0].strip().lstrip("-").replace(".", "", 1).isdigit()
    names = [name.strip().strip('"').lower() for name in columns] if has_header else []
    if labelled is None:
        labelled = math.isqrt(len(columns)) ** 2 != len(columns)
        if labelled and names and all(name.startswith("pixel") for name in names):  # pixels alone, a column short
            raise UserError(f"{path} has {len(columns)} pixel columns, which make no square image (784 make 28x28). "
                            f"Give {KAGGLE_LAYOUT}, or the pixels alone.")
    if labelled and names and names[0] != "label" and ("label" in names or names[0].startswith("pixel")):
        where = f"as column {names.index('label') + 1}" if "label" in names else "nowhere"
        raise UserError(f"{path}: its header names the label {where}, and the label is the first column: give "
                        f"{KAGGLE_LAYOUT}.")
    pixels = len(columns) - labelled
    side = math.isqrt(pixels)
    if pixels < 1 or side * side != pixels:
        raise UserError(f"{path} has {len(columns)} columns: {'after the label, ' if labelled else ''}{pixels} pixels "
                        f"do not make a square image (784 make 28x28). Give {KAGGLE_LAYOUT}.")
    try:  # whole numbers: numpy parses them about 7x faster than floats
        with warnings.catch_warnings():  # numpy's warning of no rows: refused below, in one line
            warnings.simplefilter("ignore", UserWarning)
            table = np.loadtxt(path, delimiter=",", skiprows=int(has_header), dtype=np.int64, ndmin=2,
                               encoding=ENCODING, comments=None)  # numpy's '#' comments: rows dropped unsaid
    except UnicodeDecodeError:  # a ValueError too, whose message has no row to name
        raise not_text(path) from None
    except ValueError as error:  # numpy names the value, its row (from 0, after the header) and column
        found = re.search(r"string '(.*)' to int64 at row (\d+), column (\d+)", str(error))
        if not found:  # rows of different lengths; numpy's advice (usecols) is not ours
            said = re.sub(r"at row (\d+)", lambda row: f"at line {file_line(path, int(row.group(1)) - 1, has_header)}",
                          first_line(error).split(";")[0].rstrip("."))
            raise UserError(f"{path}: {said}. Every row needs the same columns: {KAGGLE_LAYOUT}.") from None
        value, line, column = found.group(1), file_line(path, int(found.group(2)), has_header), int(found.group(3))
        what = "the label" if labelled and column == 1 else "a pixel"
        raise UserError(f"{path}, line {line}, column {column}: {what} '{value}' is not a whole number (labels are "
                        "class numbers 0, 1, 2, ...; pixels grey levels 0-255).") from None
    if len(table) == 0:
        raise UserError(f"{path} has no rows of images. Give {KAGGLE_LAYOUT}.")
    if table.shape[1] != len(columns):  # the header's count chose the label column and the side: the rows must agree
        raise UserError(f"{path}: its header names {len(columns)} columns and its rows have {table.shape[1]}. Every "
                        f"row needs the header's columns: {KAGGLE_LAYOUT}.")
    values = table[:, int(labelled):]
    wrong = np.flatnonzero(((values < 0) | (values > 255)).any(axis=1))
    if wrong.size:
        raise UserError(f"{path}, line {file_line(path, wrong[0], has_header)}: pixels are grey levels from 0 to 255.")
    images = torch.from_numpy(values.astype(np.uint8)).reshape(-1, side, side)
    if not labelled:
        return images, None
    wrong = np.flatnonzero(table[:, 0] < 0)
    if wrong.size:
        line = file_line(path, wrong[0], has_header)
        raise UserError(f"{path}, line {line}: the label {table[wrong[0], 0]} is not a class number (0, 1, 2, ...).")
    return images, torch.from_numpy(table[:, 0].copy())


def file_line(path: Path, row: int, has_header: bool) -> int:
    """The line (from 1) of the file that holds the table's ``row`` (from 0): numpy counts no empty line as a row."""
    with open(path, encoding=ENCODING) as f:
        rows = (number for number, line in enumerate(f, 1) if number > has_header and line.rstrip("\r\n"))
        return next(itertools.islice(rows, row, None), row + 1 + has_header)


def not_text(path: Path) -> UserError:
    return UserError(f"{path} is not UTF-8 text (a compressed or binary file, or another encoding): unpack it, "
                     f"or save it as UTF-8, a CSV file of {KAGGLE_LAYOUT}.")
