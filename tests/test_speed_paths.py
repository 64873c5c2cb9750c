"""The fast data path against the plain one, the speed flags on the CPU, and the accuracy tricks of experiment=best."""

import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from conftest import read_metrics, run_app, run_dirs
from mnist_exp.data import WARP_GRID, TensorLoader, affine_images, fake
from mnist_exp.models import ShiftAveraged, cnn, shift_image
from mnist_exp.runtime import use_bf16
from mnist_exp.trainer import Trainer, WeightAverage


class PlainMNIST(Dataset):
    """The tutorials' path: a PIL image per sample through ToTensor and Normalize, batched by a DataLoader."""

    def __init__(self, split, mean: float, std: float):
        self.split = split
        self.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((mean,), (std,))])

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.split.images[i].numpy(), mode="L")), int(self.split.labels[i])


def both_paths(epoch: int, batch_size: int = 64):
    data = fake(num_train=512)
    fast = TensorLoader(data.train, batch_size, mean=data.mean, std=data.std, shuffle=True, seed=7)
    # The same order as the fast path's epoch: the DataLoader's sampler is that permutation.
    plain = DataLoader(PlainMNIST(data.train, data.mean, data.std), batch_size=batch_size,
                       sampler=fast.epoch_order(epoch).tolist())
    return fast, plain


def test_the_fast_path_yields_the_plain_paths_batches():
    fast, plain = both_paths(epoch=3)
    batches = list(zip(fast.epoch_batches(3), plain, strict=True))
    assert len(batches) == 8
    for (x_fast, y_fast), (x_plain, y_plain) in batches:
        assert torch.equal(y_fast, y_plain)
        torch.testing.assert_close(x_fast, x_plain, rtol=0, atol=1e-6)


def train_one_epoch(batches) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = cnn(10, width=8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for x, y in batches:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.state_dict()


def test_the_fast_path_trains_the_same_model_as_the_plain_path():
    fast, plain = both_paths(epoch=0)
    fast_weights, plain_weights = train_one_epoch(fast.epoch_batches(0)), train_one_epoch(plain)
    for name in fast_weights:
        torch.testing.assert_close(fast_weights[name], plain_weights[name], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("flags, log_line", [
    (["device.precision=bf16"], "bf16 autocast"),
    (["device.channels_last=true"], "Device: cpu"),
    pytest.param(["trainer.compile=true"], "Device: cpu", marks=pytest.mark.skipif(
        shutil.which("cc") is None and shutil.which("gcc") is None, reason="torch.compile on the CPU needs a C compiler")),
])
def test_speed_flags_run_on_the_cpu(tmp_path, flags, log_line):
    result = run_app("dataset=fake", "trainer.epochs=1", "trainer.batch_size=128", *flags, cwd=tmp_path)
    [run_dir] = run_dirs(tmp_path / "outputs")
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["test/acc"] > 0.2  # learnt something: chance is 0.1
    assert log_line in result.stdout


def test_shift_augmentation_moves_each_image_reproducibly():
    data = fake(num_train=64)
    loader = TensorLoader(data.train, 64, mean=0.0, std=1.0, shuffle=False, max_shift=2, seed=1)
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


@pytest.mark.parametrize("limits", [dict(max_shift=2, max_rotate=15, max_scale=0.1), dict(max_warp=1.5)])
def test_affine_augmentation_draws_within_its_limits_reproducibly(limits):
    data = fake(num_train=64)
    loader = TensorLoader(data.train, 64, mean=0.0, std=1.0, seed=1, **limits)
    [(x, _)] = list(loader.epoch_batches(0))
    [(again, _)] = list(loader.epoch_batches(0))
    [(next_epoch, _)] = list(loader.epoch_batches(1))
    assert torch.equal(x, again) and not torch.equal(x, next_epoch)
    original = data.train.images.float().div(255)
    ink, ink_before = x.sum(dim=(1, 2, 3)), original.sum(dim=(1, 2))
    # Scaled by at most 1.1 either way, or warped a little, the ink changes by about 1.1^2 at most (bilinear
    # sampling keeps it roughly).
    assert ((ink / ink_before - 1).abs() < 0.25).all() and not torch.allclose(ink, ink_before, rtol=1e-3)


def test_weight_average_follows_the_model_with_its_decay():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    average = WeightAverage(model, decay=0.9)
    before = {k: v.clone() for k, v in average.model.state_dict().items()}
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model.train()(torch.randn(4, 3))  # batch-norm statistics and count move as well
    average.update(model, step=1000)  # past the ramp: the decay itself
    after, current = average.model.state_dict(), model.state_dict()
    for name, value in after.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, 0.9 * before[name] + 0.1 * current[name])
        else:
            assert torch.equal(value, current[name])
    assert not any(p.requires_grad for p in average.model.parameters())


def test_shift_averaged_evaluation_averages_nine_views_and_trains_as_the_model():
    torch.manual_seed(0)
    model = cnn(10, width=4).eval()
    x = torch.randn(3, 1, 28, 28)
    wrapped = ShiftAveraged(model, background=-1.0).eval()
    assert sorted(ShiftAveraged.SHIFTS) == [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    views = [shift_image(x, dy, dx, -1.0) for dy, dx in ShiftAveraged.SHIFTS]
    expected = torch.stack([model(v).softmax(dim=1) for v in views]).mean(dim=0).log()
    torch.testing.assert_close(wrapped(x), expected)
    down, left = shift_image(x, 1, 0, -1.0), shift_image(x, 0, -1, -1.0)
    assert torch.equal(down[:, :, 1:], x[:, :, :-1]) and (down[:, :, 0] == -1.0).all()
    assert torch.equal(left[..., :-1], x[..., 1:]) and (left[..., -1] == -1.0).all()
    wrapped.train()
    torch.testing.assert_close(wrapped(x), model.train()(x))


def test_trainer_evaluates_the_average_and_keeps_it_as_the_best_weights():
    data = fake(num_train=256)
    loader = TensorLoader(data.train, 64, mean=data.mean, std=data.std, shuffle=True)
    val = TensorLoader(data.val, 128, mean=data.mean, std=data.std)
    model = cnn(10, width=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    trainer = Trainer(model, optimizer, scheduler, loader, val, epochs=1, device=torch.device("cpu"), ema_decay=0.9,
                      tta=True)
    trainer.fit()
    for name, value in trainer.ema.model.state_dict().items():
        assert torch.equal(trainer.best_weights[name], value)
    assert trainer.eval_model is trainer.ema.model  # validation: the average, plain
    assert isinstance(trainer.test_model, ShiftAveraged) and trainer.test_model.model is trainer.ema.model
    assert "ema" in trainer.checkpoint({})


def test_auto_precision_is_bf16_on_the_cpu_only_where_it_has_bf16_instructions():
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("needs Linux's /proc/cpuinfo to know the CPU's instructions")
    flags = set(cpuinfo.read_text().split())
    cpu = torch.device("cpu")
    assert use_bf16("auto", cpu) == bool(flags & {"avx512_bf16", "amx_tile"})
    assert use_bf16("bf16", cpu) and not use_bf16("fp32", cpu)
