"""A trained model as its run evaluated it: the input it takes, its weights, its test-time averaging.

The loader, evaluate, predict and export all go through here, so a model sees the same input
after training as during it. No Hydra: a checkpoint's config is a plain dict.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnist_exp.checkpoint import load_checkpoint
from mnist_exp.errors import UserError, check_range
from mnist_exp.registry import MODELS
from mnist_exp.run_dir import best_checkpoint


def model_input(pixels: torch.Tensor, mean: float, std: float, flatten: bool) -> torch.Tensor:
    """Images [B, H, W], uint8 in 0..255 or float in 0..1 -> normalised [B, 1, H, W], or [B, H*W] with ``flatten``."""
    x = pixels.float().div_(255) if pixels.dtype == torch.uint8 else pixels.to(torch.float32, copy=True)
    x = x.sub_(mean).div_(std)
    return x.flatten(1) if flatten else x.unsqueeze(1)


def check_tta(tta: bool, scales, flatten: bool) -> None:
    """Test-time averaging needs images (a flattened dataset gives vectors) and scales above 0 to view them at."""
    if tta and flatten:
        raise UserError("trainer.tta=true shifts images, but dataset.flatten=true makes them vectors. "
                        "Use one or the other.")
    scales = list(scales)
    check_range("trainer.tta_scales", scales, scales and all(isinstance(s, (int, float)) and s > 0 for s in scales),
                "a list of sizes above 0, e.g. [0.92,1.0,1.08]; [1.0] views each image at its own size")
    if not tta and scales != [1.0]:
        raise UserError(f"trainer.tta_scales={scales} takes effect only with test-time averaging: "
                        "add trainer.tta=true, or leave trainer.tta_scales at [1.0].")


class ViewAveraged(nn.Module):
    """Test-time augmentation: in eval mode, the mean of the class probabilities over views of each image
    (log of it, so argmax and cross-entropy apply). The views: the image at each of ``scales`` (about its
    centre, bilinear), and each of those with its eight copies shifted by one pixel, straight and diagonally.

    ``background`` is the normalised value of an empty pixel, which fills the edge a shift or a shrink
    uncovers. In train mode it is the model itself. The weights stay the model's: ``model.*`` in a state dict.
    """

    SHIFTS = tuple((dy, dx) for dy in (0, 1, -1) for dx in (0, 1, -1))  # (0, 0) first

    def __init__(self, model: nn.Module, background: float, scales=(1.0,)):
        super().__init__()
        self.model = model
        self.background = background
        self.scales = tuple(float(s) for s in scales)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self.model(x)
        sizes = [scale_image(x, scale, self.background) for scale in self.scales]
        probabilities = sum(self.model(shift_image(sized, dy, dx, self.background)).float().softmax(dim=1)
                            for sized in sizes for dy, dx in self.SHIFTS)
        return (probabilities / (len(sizes) * len(self.SHIFTS))).log()


def view_averaged(model: nn.Module, mean: float, std: float, scales=(1.0,)) -> ViewAveraged:
    """``model`` under test-time averaging; the uncovered edge is a black pixel, normalised."""
    return ViewAveraged(model, background=-mean / std, scales=scales)


def scale_image(x: torch.Tensor, scale: float, background: float) -> torch.Tensor:
    """[B, C, H, W] images enlarged (``scale`` > 1) or shrunk about their centre, bilinear; ``background``
    fills what a shrink uncovers."""
    if scale == 1:
        return x
    height, width = x.shape[-2:]
    # Where each output pixel's centre samples the input, in grid_sample's [-1, 1] (align_corners=False).
    ys = ((torch.arange(height, device=x.device) * 2 + 1) / height - 1) / scale
    xs = ((torch.arange(width, device=x.device) * 2 + 1) / width - 1) / scale
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).unsqueeze(0)
    # One grid for the whole batch, as channels of a single image, so a traced export takes any batch size.
    # grid_sample fills with zeros: sample the offset from the background, then add it back.
    offset = (x - background).float().reshape(1, -1, height, width)
    inside = nn.functional.grid_sample(offset, grid, align_corners=False).reshape_as(x)
    return (inside + background).to(x.dtype)


def shift_image(x: torch.Tensor, dy: int, dx: int, background: float) -> torch.Tensor:
    """[B, C, H, W] images moved by (dy, dx) pixels; the uncovered edge is ``background``."""
    if dy == dx == 0:
        return x
    height, width = x.shape[-2:]
    padded = nn.functional.pad(x, (1, 1, 1, 1), value=background)
    return padded[..., 1 - dy:1 - dy + height, 1 - dx:1 - dx + width]


@dataclass
class TrainedModel:
    model: nn.Module  # in eval mode, on its device: the weights and test-time averaging the run tested
    config: dict[str, Any]  # the run's composed config
    class_names: list[str]
    epoch: int  # epochs completed when the checkpoint was written

    def input(self, pixels: torch.Tensor) -> torch.Tensor:
        """``model_input`` with the normalisation the run trained with."""
        dataset = self.config["dataset"]
        return model_input(pixels, dataset["mean"], dataset["std"], dataset["flatten"])


def checkpoint_file(path: str | Path) -> Path:
    """A checkpoint file, or a run directory's checkpoints/best.pt."""
    path = Path(path)
    if not path.is_dir():
        return path
    best = best_checkpoint(path)
    if not best.is_file():
        raise UserError(f"{path} is a directory without {best.relative_to(path)}: give a run directory that has "
                        "finished an epoch with trainer.checkpoint=true, or a checkpoint file.")
    return best


def load_trained_model(path: str | Path, device: torch.device | str = "cpu") -> TrainedModel:
    """The model of a checkpoint (or of a run directory's best.pt), rebuilt from its config, as the run tested it."""
    path = checkpoint_file(path)
    checkpoint = load_checkpoint(path)
    config = checkpoint["config"]
    class_names = checkpoint["class_names"]
    model = MODELS.build(config["model"], len(class_names))
    try:
        model.load_state_dict(checkpoint["weights"])  # the weights the run evaluated
    except RuntimeError as error:
        raise UserError(f"Checkpoint {path} does not fit the model its config names ({config['model']['name']}): "
                        f"{str(error).splitlines()[0]}") from error
    dataset, trainer = config["dataset"], config.get("trainer", {})
    tta, scales = trainer.get("tta", False), trainer.get("tta_scales", [1.0])
    check_tta(tta, scales, dataset["flatten"])
    if tta:
        model = view_averaged(model, dataset["mean"], dataset["std"], scales)
    return TrainedModel(model.to(device).eval(), config, class_names, checkpoint["epoch"])
