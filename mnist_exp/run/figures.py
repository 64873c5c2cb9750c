"""The pictures of a run's end: the confusion matrix, test images with their predictions, the learning curves.

Each is drawn and encoded once, into a PNG in the run directory, whose bytes the trackers store (TensorBoard's
image event, MLflow's artifact). They are drawn with PIL into pixel arrays: the four take a few hundredths of a
second, where matplotlib's import alone takes a second or more, and a sweep draws them for every job. Sizes and
colours are matplotlib's defaults (100 pixels an inch, its Blues colour map, tab:green, C0 and C1), so they look as
a matplotlib user expects.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

IMAGES_PER_FIGURE = 32
PAPER, INK, GRID = (255, 255, 255), (0, 0, 0), (222, 222, 222)
GREEN, RED = (44, 160, 44), (255, 0, 0)  # tab:green; pure red, as matplotlib's "red"
LINE_COLOURS = {"train": (31, 119, 180), "validation": (255, 127, 14)}  # matplotlib's C0 and C1
# ColorBrewer's nine Blues, which matplotlib's "Blues" interpolates: lightest to darkest.
BLUES = np.array([(247, 251, 255), (222, 235, 247), (198, 219, 239), (158, 202, 225), (107, 174, 214),
                  (66, 146, 198), (33, 113, 181), (8, 81, 156), (8, 48, 107)], dtype=float)


def confusion_matrix(true: torch.Tensor, pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """int64 [C, C] counts: rows are the true class, columns the predicted class."""
    pair_index = true.reshape(-1).long().cpu() * num_classes + pred.reshape(-1).long().cpu()
    counts = torch.bincount(pair_index, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


@functools.lru_cache(maxsize=None)
def font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size)


def blues(fractions: np.ndarray) -> np.ndarray:
    """uint8 RGB of the Blues colour map at each fraction in [0, 1]."""
    position = np.clip(fractions, 0.0, 1.0) * (len(BLUES) - 1)
    low = np.minimum(position.astype(int), len(BLUES) - 2)
    weight = (position - low)[..., None]
    return np.round(BLUES[low] * (1 - weight) + BLUES[low + 1] * weight).astype(np.uint8)


def canvas(width: float, height: float) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGB", (round(width), round(height)), PAPER)
    return image, ImageDraw.Draw(image)


def confusion_matrix_figure(cm: torch.Tensor, class_names: list[str]) -> np.ndarray:
    """Heat map of a confusion matrix with the count in each cell, a colour bar, and the accuracy in the title."""
    counts = cm.cpu().numpy()
    total, classes = counts.sum(), len(class_names)
    accuracy = counts.trace() / total if total else 0.0
    inches = min(max(5.0, 0.55 * classes + 2.0), 30.0)  # past about 50 classes the cells shrink instead
    image, draw = canvas(100 * (inches + 1), 100 * inches)
    left, top, bottom, bar = 80, 45, 60, 110
    cell = min((image.width - left - bar - 30) / classes, (image.height - top - bottom) / classes)
    peak = max(int(counts.max()), 1) if counts.size else 1
    colours = blues(counts / peak)
    label_size = max(8, min(14, int(cell / 3)))
    for row in range(classes):
        for col in range(classes):
            x, y = left + col * cell, top + row * cell
            draw.rectangle([x, y, x + cell, y + cell], fill=tuple(int(c) for c in colours[row, col]))
            ink = PAPER if counts[row, col] > peak / 2 else INK  # readable on dark and light cells alike
            if cell >= 24:  # a count fits its cell
                draw.text((x + cell / 2, y + cell / 2), str(counts[row, col]), fill=ink, font=font(label_size),
                          anchor="mm")
    side = classes * cell
    every = max(1, round(14 / cell))  # a class name every so many cells, where one each would overlap
    for index, name in list(enumerate(class_names))[::every]:
        draw.text((left + (index + 0.5) * cell, top + side + 4), str(name), fill=INK, font=font(12), anchor="mt")
        draw.text((left - 6, top + (index + 0.5) * cell), str(name), fill=INK, font=font(12), anchor="rm")
    draw.text((left + side / 2, top + side + 24), "predicted", fill=INK, font=font(14), anchor="mt")
    draw.text((18, top + side / 2), "true", fill=INK, font=font(14), anchor="mm")
    draw.text((image.width / 2, 20), f"confusion matrix: accuracy {accuracy:.2%} ({counts.trace()}/{total})",
              fill=INK, font=font(16), anchor="mm")
    # The colour bar: the darkest blue at the top, for the largest count.
    x = left + side + 30
    ramp = blues(np.linspace(1.0, 0.0, int(side)))[:, None, :].repeat(20, axis=1)
    image.paste(Image.fromarray(ramp), (round(x), top))
    draw.text((x + 26, top), str(peak), fill=INK, font=font(12), anchor="lt")
    draw.text((x + 26, top + side), "0", fill=INK, font=font(12), anchor="lb")
    return np.asarray(image)


def predictions_figure(images: torch.Tensor, true: torch.Tensor, pred: torch.Tensor, class_names: list[str],
                       title: str, max_images: int = IMAGES_PER_FIGURE) -> np.ndarray:
    """Grid of images, each titled "true X / pred Y"; mistakes in red with a red frame, correct ones in green."""
    count = min(len(images), max_images)
    columns, cell_width, cell_height = 8, 125, 145
    rows = max(1, -(-count // columns))
    image, draw = canvas(columns * cell_width, rows * cell_height + 50)
    draw.text((image.width / 2, 25), title, fill=INK, font=font(16), anchor="mm")
    resample = Image.NEAREST if images.shape[-1] <= 56 else Image.BILINEAR  # small images: crisp, whole pixels
    for i in range(count):
        picture = images[i].detach().cpu()
        picture = picture if picture.dim() == 2 else picture.permute(1, 2, 0).squeeze(-1)  # [H, W] or [H, W, 3]
        picture = picture if picture.dtype == torch.uint8 else (picture.float().clamp(0, 1) * 255).round().byte()
        tile = Image.fromarray(picture.numpy()).resize((112, 112), resample)
        x = (i % columns) * cell_width + (cell_width - 112) // 2
        y = 50 + (i // columns) * cell_height + 26
        true_label, pred_label = int(true[i]), int(pred[i])
        colour = GREEN if true_label == pred_label else RED
        draw.text((x + 56, y - 6), f"true {class_names[true_label]} / pred {class_names[pred_label]}", fill=colour,
                  font=font(12), anchor="mb")
        image.paste(tile, (x, y))  # grey levels as they are: no per-image contrast stretch
        if true_label != pred_label:
            draw.rectangle([x - 3, y - 3, x + 114, y + 114], outline=RED, width=3)
    return np.asarray(image)


def ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round values spanning [low, high]."""
    span = high - low or abs(high) or 1.0
    step = 10 ** np.floor(np.log10(span / count))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if span / (m * step) <= count)
    return [float(v) for v in np.arange(np.ceil(low / step) * step, high + step / 2, step)]


def curves_figure(history: list[dict[str, float]]) -> np.ndarray:
    """Loss and accuracy per epoch, train and validation lines; keys missing from the history are skipped."""
    image, draw = canvas(1000, 400)
    for panel, metric in enumerate(("loss", "acc")):
        left, top, right, bottom = 500 * panel + 70, 35, 500 * panel + 485, 350
        lines = {}
        for split, label in (("train", "train"), ("val", "validation")):
            points = [(row.get("epoch", i + 1), row[f"{split}/{metric}"]) for i, row in enumerate(history)
                      if math.isfinite(row.get(f"{split}/{metric}", math.nan))]  # no validation split: NaN
            if points:
                lines[label] = points
        draw.text(((left + right) / 2, 18), "loss" if metric == "loss" else "accuracy", fill=INK, font=font(15),
                  anchor="mm")
        draw.text(((left + right) / 2, bottom + 30), "epoch", fill=INK, font=font(13), anchor="mm")
        if not lines:
            draw.rectangle([left, top, right, bottom], outline=INK)
            draw.text(((left + right) / 2, (top + bottom) / 2), "no data", fill=INK, font=font(13), anchor="mm")
            continue
        xs = sorted({x for points in lines.values() for x, _ in points})
        ys = [y for points in lines.values() for _, y in points]
        x_low, x_high = (xs[0] - 0.5, xs[0] + 0.5) if len(xs) == 1 else (xs[0], xs[-1])
        pad = (max(ys) - min(ys)) * 0.05 or abs(max(ys)) * 0.05 or 0.05
        y_low, y_high = min(ys) - pad, max(ys) + pad

        def at(x: float, y: float) -> tuple[float, float]:
            return (left + 10 + (x - x_low) / (x_high - x_low) * (right - left - 20),
                    bottom - (y - y_low) / (y_high - y_low) * (bottom - top))

        x_ticks = xs if len(xs) <= 12 else [round(v) for v in ticks(xs[0], xs[-1]) if float(v).is_integer()]
        for x in x_ticks:
            draw.line([at(x, y_low)[0], top, at(x, y_low)[0], bottom], fill=GRID)
            draw.text((at(x, y_low)[0], bottom + 5), f"{x:g}", fill=INK, font=font(11), anchor="mt")
        for y in ticks(y_low, y_high):
            if y_low <= y <= y_high:
                draw.line([left, at(x_low, y)[1], right, at(x_low, y)[1]], fill=GRID)
                draw.text((left - 5, at(x_low, y)[1]), f"{y:.3g}", fill=INK, font=font(11), anchor="rm")
        draw.rectangle([left, top, right, bottom], outline=INK)
        # The legend in the right-hand corner the lines end away from.
        ends_high = np.mean([at(*points[-1])[1] for points in lines.values()]) < (top + bottom) / 2
        legend_top = bottom - 14 - 18 * len(lines) if ends_high else top + 14
        for index, (label, points) in enumerate(lines.items()):
            colour = LINE_COLOURS[label]
            corners = [at(x, y) for x, y in points]
            if len(corners) > 1:
                draw.line(corners, fill=colour, width=2)
            for x, y in corners:
                draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
            legend_y = legend_top + 18 * index
            draw.line([right - 110, legend_y, right - 85, legend_y], fill=colour, width=2)
            draw.text((right - 78, legend_y), label, fill=INK, font=font(12), anchor="lm")
    return np.asarray(image)


def write_final_figures(tracker, run_dir: str | Path, *, test_images: torch.Tensor,
                        true: torch.Tensor, pred: torch.Tensor, class_names: list[str],
                        history: list[dict[str, float]], step: int) -> dict[str, Path]:
    """The end-of-run pictures, each as a PNG in run_dir and then to the trackers; returns {name: png path}."""
    run_dir = Path(run_dir)
    test_images, true, pred = test_images.cpu(), true.cpu(), pred.cpu()
    wrong = (true != pred).nonzero().flatten()
    shown_wrong = wrong[:IMAGES_PER_FIGURE]
    first = slice(0, IMAGES_PER_FIGURE)
    if len(wrong):
        misclassified_title = f"misclassified test images: {len(shown_wrong)} of {len(wrong)} mistakes shown"
    else:
        misclassified_title = f"no misclassified test images (all {len(true)} correct)"
    first_wrong = int((true[first] != pred[first]).sum())
    figures = {
        "confusion_matrix": ("test/confusion_matrix",
                             confusion_matrix_figure(confusion_matrix(true, pred, len(class_names)), class_names)),
        "misclassified": ("test/misclassified",
                          predictions_figure(test_images[shown_wrong], true[shown_wrong], pred[shown_wrong],
                                             class_names, misclassified_title)),
        "predictions": ("test/predictions",
                        predictions_figure(test_images[first], true[first], pred[first], class_names,
                                           f"first {len(true[first])} test images: {first_wrong} wrong (red)")),
        "curves": ("curves", curves_figure(history)),
    }
    paths = {}
    for name, (tag, rgb) in figures.items():
        paths[name] = run_dir / f"{name}.png"
        # zlib's fastest level: a run's four pictures encode in 0.05 s instead of 0.08 s, the files 16% larger
        Image.fromarray(rgb).save(paths[name], format="png", compress_level=1)
        tracker.image(tag, paths[name], step=step)
    tracker.flush()
    return paths
