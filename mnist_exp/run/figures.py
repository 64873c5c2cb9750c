"""The pictures of a run's end: the confusion matrix, test images with their predictions, the learning curves.

Each is drawn once and goes both to TensorBoard (through the tracker) and to a PNG in the run directory.
Matplotlib is imported inside the functions (it is slow to import and only needed at the end of a run);
figures are ``matplotlib.figure.Figure`` objects, never pyplot's global ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure

IMAGES_PER_FIGURE = 32


def confusion_matrix(true: torch.Tensor, pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """int64 [C, C] counts: rows are the true class, columns the predicted class."""
    pair_index = true.reshape(-1).long().cpu() * num_classes + pred.reshape(-1).long().cpu()
    counts = torch.bincount(pair_index, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def render_figure(fig: Figure) -> np.ndarray:
    """Draw a figure with the Agg renderer (no pyplot) into an RGB uint8 array [H, W, 3]."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()


def confusion_matrix_figure(cm: torch.Tensor, class_names: list[str]) -> Figure:
    """Heat map of a confusion matrix with the count in each cell and the accuracy in the title."""
    from matplotlib.figure import Figure

    counts = cm.cpu().numpy()
    total = counts.sum()
    accuracy = counts.trace() / total if total else 0.0
    size = max(5.0, 0.55 * len(class_names) + 2.0)
    fig = Figure(figsize=(size + 1.0, size), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    heat = ax.imshow(counts, cmap="Blues")
    fig.colorbar(heat, ax=ax, shrink=0.8)
    ticks = range(len(class_names))
    ax.set_xticks(ticks, labels=class_names)
    ax.set_yticks(ticks, labels=class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix: accuracy {accuracy:.2%} ({counts.trace()}/{total})")
    # White text on dark cells, black on light ones, so every count stays readable.
    threshold = counts.max() / 2 if counts.size else 0
    for row in range(counts.shape[0]):
        for col in range(counts.shape[1]):
            color = "white" if counts[row, col] > threshold else "black"
            ax.text(col, row, str(counts[row, col]), ha="center", va="center", color=color, fontsize=9)
    return fig


def predictions_figure(images: torch.Tensor, true: torch.Tensor, pred: torch.Tensor, class_names: list[str],
                       title: str, max_images: int = IMAGES_PER_FIGURE) -> Figure:
    """Grid of images, each titled "true X / pred Y"; mistakes in red with a red frame, correct ones in green."""
    from matplotlib.figure import Figure

    count = min(len(images), max_images)
    columns = 8
    rows = max(1, -(-count // columns))
    fig = Figure(figsize=(columns * 1.25, rows * 1.45 + 0.5), dpi=100, layout="constrained")
    fig.suptitle(title)
    axes = fig.subplots(rows, columns, squeeze=False).flat
    for i, ax in enumerate(axes):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= count:
            ax.set_axis_off()
            continue
        image = images[i].detach().cpu().reshape(images.shape[-2], images.shape[-1])
        image = image.float() / 255 if image.dtype == torch.uint8 else image.float()
        ax.imshow(image.numpy(), cmap="gray", vmin=0.0, vmax=1.0)  # fixed range: no per-image contrast stretch
        true_label, pred_label = int(true[i]), int(pred[i])
        color = "tab:green" if true_label == pred_label else "red"
        ax.set_title(f"true {class_names[true_label]} / pred {class_names[pred_label]}", color=color, fontsize=8)
        if true_label != pred_label:
            for spine in ax.spines.values():
                spine.set_color("red")
                spine.set_linewidth(2)
    return fig


def curves_figure(history: list[dict[str, float]]) -> Figure:
    """Loss and accuracy per epoch, train and validation lines; keys missing from the history are skipped."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs_seen = sorted({row.get("epoch", i + 1) for i, row in enumerate(history)})
    fig = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    for ax, metric in ((loss_ax, "loss"), (acc_ax, "acc")):
        for split, label in (("train", "train"), ("val", "validation")):
            key = f"{split}/{metric}"
            points = [(row.get("epoch", i + 1), row[key]) for i, row in enumerate(history) if key in row]
            if points:
                epochs, values = zip(*points)
                ax.plot(epochs, values, marker="o", markersize=3, label=label)
        ax.set_title("loss" if metric == "loss" else "accuracy")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend()
            # Epochs are whole numbers: tick each one on short runs, integer ticks on long ones.
            if len(epochs_seen) <= 12:
                ax.set_xticks(epochs_seen)
            else:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    return fig


def write_final_figures(tracker, run_dir: str | Path, *, test_images: torch.Tensor,
                        true: torch.Tensor, pred: torch.Tensor, class_names: list[str],
                        history: list[dict[str, float]], step: int) -> dict[str, Path]:
    """The end-of-run pictures, each to TensorBoard and as a PNG in run_dir; returns {name: png path}."""
    from matplotlib.image import imsave

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
    for name, (tag, fig) in figures.items():
        paths[name] = run_dir / f"{name}.png"
        rgb = render_figure(fig)
        tracker.image(tag, rgb, step=step)
        imsave(paths[name], rgb, format="png", dpi=fig.dpi)
        fig.clear()  # Figure objects outside pyplot are freed once unreferenced; clear() drops the artists now
    tracker.flush()
    return paths
