"""The augmentations (augment=none|shift|affine|elastic): what each does to an image, its limits, its config."""

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from torchvision import transforms

from mnist_exp.run.config import CONF_DIR, register_schemas
from mnist_exp.data import TensorLoader
from mnist_exp.data.augment import WARP_GRID, affine, affine_images, elastic, shift
from mnist_exp.data.datasets import fake
from mnist_exp.errors import UserError
from mnist_exp.registry import AUGMENTATIONS


def test_shift_augmentation_moves_each_image_reproducibly():
    data = fake(num_train=64)
    loader = TensorLoader(data.train, 64, mean=0.0, std=1.0, shuffle=False, augment=shift(max_shift=2), seed=1)
    [(x, _)] = list(loader.epoch_batches(0))
    [(again, _)] = list(loader.epoch_batches(0))
    [(next_epoch, _)] = list(loader.epoch_batches(1))
    assert torch.equal(x, again) and not torch.equal(x, next_epoch)
    originals = data.train.images.float().div(255).unsqueeze(1)
    moved = 0
    for image, original in zip(x, originals):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if torch.equal(image, shift_twice(original, dy, dx))]
        assert matches, "every augmented image is its original moved by at most 2 pixels"
        moved += (0, 0) not in matches
    assert moved > 32  # most move: 24 of 25 offsets do


def test_every_seed_a_run_takes_draws_its_own_augmentation():
    """Seeds up to 2**32 - 1 (the range check's) give generators; a seed below 28,821,309 keeps the draws it had."""
    data = fake(num_train=8)
    batches = {seed: next(TensorLoader(data.train, 8, mean=0.0, std=1.0, shuffle=False, augment=shift(max_shift=2),
                                       seed=seed).epoch_batches(3))[0] for seed in (5, 123_456_789, 2**32 - 1)}
    assert not torch.equal(batches[123_456_789], batches[2**32 - 1]) and not torch.equal(batches[5], batches[2**32 - 1])
    generator = torch.Generator().manual_seed(((5 * 100_003 + 3) * 100_003 + 0) * 64)
    assert torch.equal(batches[5], shift(max_shift=2)(data.train.images[:8].float().div(255).unsqueeze(1), generator))


@pytest.mark.parametrize("augment", [shift(max_shift=2), affine(), elastic()], ids=["shift", "affine", "elastic"])
def test_colour_images_move_as_their_grey_channels_would_each(augment):
    """[B, 3, H, W]: every channel moved as the same draw moves a grey image; the channels stay together."""
    grey = fake(num_train=16).train.images
    colour = torch.stack([grey, grey.flip(-1), 255 - grey], dim=1)
    moved = augment(colour, torch.Generator().manual_seed(3))
    assert moved.shape == colour.shape
    for channel in range(3):
        alone = augment(colour[:, channel], torch.Generator().manual_seed(3))
        assert torch.allclose(moved[:, channel].float(), alone.float(), atol=1e-4)


def shift_twice(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``image`` moved by (dy, dx) pixels with zeros coming in, for shifts of up to 2 pixels."""
    padded = F.pad(image, (2, 2, 2, 2))
    return padded[:, 2 - dy:2 - dy + image.shape[1], 2 - dx:2 - dx + image.shape[2]]


@pytest.mark.parametrize("degrees, scale, dx, dy", [(90, 1, 0, 0), (0, 1, -1, 2), (0, 2, 0, 0), (13, 1.1, 1.5, -0.5)])
def test_affine_augmentation_turns_scales_and_moves_as_torchvision_does(degrees, scale, dx, dy):
    images = fake(num_train=8).train.images
    ours = affine_images(images, *torch.tensor([[degrees], [scale], [dx], [dy]], dtype=torch.float).expand(4, 8))
    theirs = transforms.functional.affine(images.float().unsqueeze(1), angle=degrees, translate=[dx, dy], scale=scale,
                                          shear=[0.0], interpolation=transforms.InterpolationMode.BILINEAR)
    assert torch.allclose(ours, theirs.squeeze(1), atol=1e-2)


def test_affine_augmentation_turns_clockwise():
    image = torch.zeros(1, 28, 28, dtype=torch.uint8)
    image[0, 3, 3] = 255  # top left
    turned = affine_images(image, *torch.tensor([[90.0], [1.0], [0.0], [0.0]]))
    assert turned[0].argmax() == 3 * 28 + 24  # top right


def test_a_uniform_warp_moves_the_image_the_other_way():
    # Each output pixel is read from where the warp points: reading 1 px to the right moves the image left.
    images, no = fake(num_train=8).train.images, torch.zeros(8)
    warp = torch.tensor([1.0, -2.0]).view(1, 2, 1, 1).expand(8, 2, *WARP_GRID)
    torch.testing.assert_close(affine_images(images, no, no + 1, no, no, warp),
                               affine_images(images, no, no + 1, no - 1, no + 2), atol=1e-3, rtol=0)


def test_a_warp_bends_the_image_smoothly():
    image, no = torch.zeros(1, 28, 28, dtype=torch.uint8), torch.zeros(1)
    image[0, :, 14] = 255  # a vertical line
    warp = torch.zeros(1, 2, *WARP_GRID)
    warp[0, 0, 0] = 3.0  # the top row of control points reads 3 px to the right: the line's top bends left
    bent = affine_images(image, no, no + 1, no, no, warp)[0]
    columns = (bent * torch.arange(28.0)).sum(1) / bent.sum(1)  # where the line is on each row
    assert columns[0] == pytest.approx(11, abs=0.1) and columns[-1] == pytest.approx(14, abs=0.1)
    assert columns.diff().abs().max() < 0.5  # no jumps: a smooth bend over the rows between


@pytest.mark.parametrize("augment", [affine(rotate=15, scale=0.1, shift=2), elastic(rotate=0, scale=0, shift=0, warp=1.5)])
def test_affine_augmentation_draws_within_its_limits_reproducibly(augment):
    data = fake(num_train=64)
    loader = TensorLoader(data.train, 64, mean=0.0, std=1.0, seed=1, augment=augment)
    [(x, _)] = list(loader.epoch_batches(0))
    [(again, _)] = list(loader.epoch_batches(0))
    [(next_epoch, _)] = list(loader.epoch_batches(1))
    assert torch.equal(x, again) and not torch.equal(x, next_epoch)
    original = data.train.images.float().div(255)
    ink, ink_before = x.sum(dim=(1, 2, 3)), original.sum(dim=(1, 2))
    # Scaled by at most 1.1 either way, or warped a little, the ink changes by about 1.1^2 at most (bilinear
    # sampling keeps it roughly).
    assert ((ink / ink_before - 1).abs() < 0.25).all() and not torch.allclose(ink, ink_before, rtol=1e-3)


def composed(*overrides: str):
    register_schemas()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_each_option_composes_and_builds_what_it_names():
    assert composed().augment.name == "none" and AUGMENTATIONS.build(composed().augment) is None
    cfg = composed("augment=affine", "augment.rotate=5")
    assert (cfg.augment.rotate, cfg.augment.scale, cfg.augment.shift) == (5.0, 0.1, 2.0)
    pixels = fake(num_train=16).train.images
    generator = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    built = AUGMENTATIONS.build(cfg.augment)
    torch.testing.assert_close(built(pixels, generator()), affine(rotate=5, scale=0.1, shift=2)(pixels, generator()))
    assert torch.equal(AUGMENTATIONS.build(composed("augment=shift").augment)(pixels, generator()),
                       shift(max_shift=2)(pixels, generator()))


def test_the_experiment_best_augments_as_its_recipe_says():
    cfg = composed("experiment=best")
    assert dict(cfg.augment) == {"name": "affine", "rotate": 10.0, "scale": 0.1, "shift": 2.0}


@pytest.mark.parametrize("overrides, message", [
    (["augment=affine", "augment.rotate=400"], "augment.rotate=400.0 is out of range: it takes degrees in [0, 180], e.g. 10."),
    (["augment=elastic", "augment.warp=-1"], "augment.warp=-1.0 is out of range: it takes 0 or more pixels, e.g. 1."),
    (["augment=shift", "augment.max_shift=0"], "augment.max_shift=0 is out of range: it takes 1 or more pixels, e.g. 2 "
                                               "(augment=none turns it off)."),
    (["augment=affine", "augment.scale=1"], "augment.scale=1.0 is out of range: it takes a fraction in [0, 1), e.g. 0.1."),
])
def test_out_of_range_options_are_refused_in_one_line(overrides, message):
    with pytest.raises(UserError) as refused:
        AUGMENTATIONS.build(composed(*overrides).augment)
    assert str(refused.value) == message
