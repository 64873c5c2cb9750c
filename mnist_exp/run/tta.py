"""Test-time averaging: the final test's view of each image at several scales and 1-pixel shifts, averaged.

The run's final test and a trained model loaded by the tools both wrap the model in ``ViewAveraged``.
"""

import math

import torch
from torch import nn

from mnist_exp.errors import UserError, check_range


def check_tta(tta: bool, scales, flatten: bool) -> None:
    """Test-time averaging needs images (a flattened dataset gives vectors) and scales above 0 to view them at."""
    if tta and flatten:
        raise UserError("trainer.tta=true shifts images, but dataset.flatten=true makes them vectors. "
                        "Use one or the other.")
    scales = list(scales)
    check_range("trainer.tta_scales", scales, scales and all(isinstance(s, (int, float)) and 0 < s < math.inf for s in scales),
                "a list of sizes above 0, e.g. [0.92,1.0,1.08]; [1.0] views each image at its own size")
    if len(set(scales)) < len(scales):  # a size twice is the same views counted twice
        listed, once = (",".join(str(s) for s in sizes) for sizes in (scales, dict.fromkeys(scales)))
        raise UserError(f"trainer.tta_scales=[{listed}] lists a size more than once: give each once, e.g. "
                        f"trainer.tta_scales=[{once}].")
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
