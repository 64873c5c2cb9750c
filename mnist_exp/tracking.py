"""TensorBoard logging: scalars, one hparams entry per run, its config as text, image grids and figures.

One run is one TensorBoard run: every event file goes straight into the run directory, so
`tensorboard --logdir outputs` lists each run once, with its curves, pictures and hparams.
The TEXT tab holds each run's composed config and overrides; CUSTOM SCALARS draws train and
validation loss in one chart, train and validation accuracy in another (``CURVES_LAYOUT``).
Matplotlib is imported inside the figure functions (it is slow to import and only needed at
the end of a run); figures are `matplotlib.figure.Figure` objects, never pyplot's global ones.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import yaml
from torch.utils.tensorboard import SummaryWriter

from mnist_exp import hparams as hparams_tab

if TYPE_CHECKING:
    from matplotlib.figure import Figure

IMAGES_PER_FIGURE = 32
# Tags are regular expressions; anchored, so "val/acc" does not also draw "hparams/val/acc".
CURVES_LAYOUT = {"curves": {"loss": ["Multiline", ["^train/loss$", "^val/loss$"]],
                            "accuracy": ["Multiline", ["^train/acc$", "^val/acc$"]]}}


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


class TensorBoardTracker:
    """One run = one TensorBoard run: event files written directly into the run directory."""

    def __init__(self, run_dir: str | Path, purge_step: int | None = None):
        self.run_dir = Path(run_dir)
        # purge_step: a resumed run hides the events the crashed run wrote after its checkpoint.
        self.writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=purge_step)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, float(value), step)

    def run_record(self, config: dict, overrides: list[str]) -> None:
        """The TEXT tab: the composed config as YAML and the overrides as a command; the curves' layout."""
        self.writer.add_text("config", f"```yaml\n{yaml.safe_dump(config, sort_keys=False)}```", 0)
        self.writer.add_text("overrides", f"```\n{shlex.join(['python', '-m', 'mnist_exp', *overrides])}\n```", 0)
        self.writer.add_custom_scalars(CURVES_LAYOUT)

    def hparams(self, params: dict[str, Any], metrics: dict[str, float], step: int,
                columns: dict[str, bool] | None = None) -> None:
        """One hparams entry in this run's own directory; metrics appear as "hparams/<key>" columns.

        SummaryWriter.add_hparams would write into a new timestamped subdirectory (a second
        TensorBoard run), so the summaries go through this run's own file writer instead. The
        metrics get their own "hparams/" tags, at the run's final step, so they add no points to
        the training curves. ``columns``: the HPARAMS table's columns, for a single run (see
        mnist_exp.hparams); a sweep's job writes none.
        """
        for summary in hparams_tab.session_summaries(params):
            self.writer.file_writer.add_summary(summary)
        metric_values = {hparams_tab.METRIC_PREFIX + name: float(value) for name, value in metrics.items()}
        if columns is not None:
            values = hparams_tab.session_values({key: params[key] for key in columns})
            own = hparams_tab.experiment_summary({key: [values[key]] for key in columns}, list(metric_values),
                                                 differs={key for key, overridden in columns.items() if overridden})
            self.writer.file_writer.add_summary(own)
        self.scalars(metric_values, step=step)

    def images(self, tag: str, images: torch.Tensor, step: int = 0, nrow: int = 8) -> None:
        """uint8 [N, H, W] or float [N, 1, H, W] in 0..1 -> one grid image."""
        from torchvision.utils import make_grid  # importing torchvision takes ~2 s; only pay it when used

        images = images.detach().cpu()
        if images.dtype == torch.uint8:
            images = images.float() / 255
        if images.dim() == 3:
            images = images.unsqueeze(1)
        grid = make_grid(images, nrow=nrow, padding=2, pad_value=0.5)  # grey lines between the black digits
        self.writer.add_image(tag, grid, step)

    def figure(self, tag: str, fig: Figure, step: int = 0, png_path: str | Path | None = None) -> None:
        """A matplotlib figure to TensorBoard and, if png_path is given, to that PNG file: one render for both."""
        rgb = render_figure(fig)
        self.writer.add_image(tag, rgb, step, dataformats="HWC")
        if png_path is not None:
            from matplotlib.image import imsave

            imsave(png_path, rgb, format="png", dpi=fig.dpi)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def write_final_figures(tracker: TensorBoardTracker, run_dir: str | Path, *, test_images: torch.Tensor,
                        true: torch.Tensor, pred: torch.Tensor, class_names: list[str],
                        history: list[dict[str, float]], step: int) -> dict[str, Path]:
    """The end-of-run pictures, each to TensorBoard and as a PNG in run_dir; returns {name: png path}."""
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
        tracker.figure(tag, fig, step=step, png_path=paths[name])
        fig.clear()  # Figure objects outside pyplot are freed once unreferenced; clear() drops the artists now
    tracker.flush()
    return paths
