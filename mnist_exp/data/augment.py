"""Augmentations: random changes to each training image, a new draw every epoch (the ``augment=`` config group).

Each builder returns a function ``(pixels, generator) -> images``: uint8 pixels [B, H, W] on the
training device in; uint8 images, or float ones in [0, 1], out (what ``loader.model_input``
takes); or None (``augment=none``). The loader
draws from a generator seeded by (seed, epoch, batch, rank), so a resumed run sees the same images.

- ``shift``: moved by whole pixels, up to ``max_shift`` either way (cheap: a gather, no interpolation).
- ``affine``: turned, scaled and moved by fractions of a pixel (bilinear).
- ``elastic``: ``affine`` and then bent smoothly (Simard et al. 2003).
"""

from functools import partial

import torch
import torch.nn.functional as F

from mnist_exp.errors import check_range
from mnist_exp.registry import AUGMENTATIONS


@AUGMENTATIONS.register("none")
def none() -> None:
    """Every epoch sees the images as they are."""
    return None


@AUGMENTATIONS.register("shift")
def shift(max_shift: int = 2):
    """Each image moved by a random whole number of pixels, up to ``max_shift`` either way, independently in x and y."""
    check_range("augment.max_shift", max_shift, max_shift >= 1, "1 or more pixels, e.g. 2 (augment=none turns it off)")
    return partial(shift_images, max_shift=max_shift)


@AUGMENTATIONS.register("affine")
def affine(rotate: float = 10.0, scale: float = 0.1, shift: float = 2.0):
    """Each image turned by up to ``rotate`` degrees, scaled by up to 1 +- ``scale`` and moved by up to ``shift`` pixels."""
    check_affine(rotate, scale, shift)
    return partial(random_affine, rotate=rotate, scale=scale, shift=shift, warp=0.0)


@AUGMENTATIONS.register("elastic")
def elastic(rotate: float = 10.0, scale: float = 0.1, shift: float = 2.0, warp: float = 1.0):
    """``affine``, then each image bent smoothly, its parts moved by about ``warp`` pixels."""
    check_affine(rotate, scale, shift)
    check_range("augment.warp", warp, warp >= 0, "0 or more pixels, e.g. 1")
    return partial(random_affine, rotate=rotate, scale=scale, shift=shift, warp=warp)


def check_affine(rotate: float, scale: float, shift: float) -> None:
    check_range("augment.rotate", rotate, 0 <= rotate <= 180, "degrees in [0, 180], e.g. 10")
    check_range("augment.scale", scale, 0 <= scale < 1, "a fraction in [0, 1), e.g. 0.1")
    check_range("augment.shift", shift, shift >= 0, "0 or more pixels, e.g. 2")


def shift_images(pixels: torch.Tensor, generator: torch.Generator, max_shift: int) -> torch.Tensor:
    """[B, H, W] (or [B, C, H, W]) images each moved by a random whole number of pixels; empty pixels (0) come in
    at the edge."""
    count, height, width = len(pixels), *pixels.shape[-2:]
    s = max_shift
    dy, dx = torch.randint(0, 2 * s + 1, (2, count, 1), generator=generator).to(pixels.device)
    padded = F.pad(pixels, (s, s, s, s)).reshape(count, -1, (height + 2 * s) * (width + 2 * s))  # [B, C, pixels]
    # Each image's window of the padded image, as flat indices: its top-left corner plus the window's offsets.
    padded_width = width + 2 * s
    window = (torch.arange(height, device=pixels.device).unsqueeze(1) * padded_width
              + torch.arange(width, device=pixels.device)).flatten()
    index = ((dy * padded_width + dx) + window).unsqueeze(1).expand(-1, padded.shape[1], -1)  # every channel alike
    return padded.gather(2, index).view(pixels.shape)


def random_affine(pixels: torch.Tensor, generator: torch.Generator, rotate: float, scale: float, shift: float,
                  warp: float) -> torch.Tensor:
    """[B, H, W] (or [B, C, H, W]) images each turned, scaled, moved and (``warp`` > 0) bent by a random amount
    within the limits."""
    device = pixels.device
    draws = torch.rand(4, len(pixels), generator=generator).to(device) * 2 - 1
    angle, factor, dx, dy = draws * torch.tensor([rotate, scale, shift, shift], device=device).unsqueeze(1)
    offsets = None
    if warp:
        offsets = torch.randn(len(pixels), 2, *WARP_GRID, generator=generator).to(device) * warp
    return affine_images(pixels, angle, 1 + factor, dx, dy, offsets).div_(255)


WARP_GRID = (4, 4)  # control points of an elastic warp: about 9 pixels apart on a 28x28 image


def affine_images(pixels: torch.Tensor, degrees: torch.Tensor, scale: torch.Tensor, dx: torch.Tensor,
                  dy: torch.Tensor, warp: torch.Tensor | None = None) -> torch.Tensor:
    """[B, H, W] (or [B, C, H, W]) images each turned clockwise by ``degrees`` about its centre, scaled by ``scale``
    and moved by (dx, dy) pixels (right, down); one value per image in each. Bilinear; empty pixels (0) come in at the edge.
    ``warp``, [B, 2, h, w], bends each image smoothly (an elastic distortion, as in Simard et al. 2003): (x, y)
    offsets in pixels at a coarse grid of control points, interpolated bicubically to every pixel, where each
    pixel is then read from (a uniform offset of +1 x moves the image 1 pixel left).

    Returns float images on the same 0-255 scale.
    """
    count, height, width = len(pixels), *pixels.shape[-2:]
    # The grid maps each output pixel to where it is read in the input: the inverse transform, in
    # units where the image spans [-1, 1] (2 / size per pixel).
    angle = torch.deg2rad(degrees)
    cos, sin = angle.cos() / scale, angle.sin() / scale
    shift_x, shift_y = dx * 2 / width, dy * 2 / height
    theta = torch.stack([torch.stack([cos, sin, -(cos * shift_x + sin * shift_y)], 1),
                         torch.stack([-sin, cos, sin * shift_x - cos * shift_y], 1)], 1)
    grid = F.affine_grid(theta, [count, 1, height, width], align_corners=False)
    if warp is not None:
        offsets = F.interpolate(warp, size=(height, width), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
        grid = grid + offsets * torch.tensor([2 / width, 2 / height], device=grid.device)
    grey = pixels.dim() == 3
    moved = F.grid_sample((pixels.unsqueeze(1) if grey else pixels).float(), grid, align_corners=False)
    return moved.squeeze(1) if grey else moved
