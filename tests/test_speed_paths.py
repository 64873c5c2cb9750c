"""The fast data path against the plain one, the speed flags on the CPU, and the accuracy tricks of experiment=best."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from conftest import read_metrics, run_dirs, run_main
from mnist_exp.data import TensorLoader
from mnist_exp.data.augment import affine_images
from mnist_exp.data.datasets import fake
from mnist_exp.data.loader import model_input
from mnist_exp.registry import OPTIMIZERS
from mnist_exp.run.tta import ViewAveraged, scale_image, shift_image
from mnist_exp.run.models import cnn
from mnist_exp.run.runtime import use_bf16
from mnist_exp.run.ema import WeightAverage
from mnist_exp.run.trainer import LoopSettings, Trainer


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


NO_C_COMPILER = shutil.which("cc") is None and shutil.which("gcc") is None


@pytest.mark.parametrize("flags, device_line, expected", [
    (["device.precision=bf16", "device.channels_last=false"], "Device: cpu (1 CPU thread, bf16 autocast)",
     {"bf16": True, "channels_last": False, "compile": False}),
    (["device.precision=fp32", "device.channels_last=true"], "Device: cpu (1 CPU thread, channels-last)",
     {"bf16": False, "channels_last": True, "compile": False}),
    pytest.param(["device.precision=fp32", "device.channels_last=false", "trainer.compile=true"],
                 "Device: cpu (1 CPU thread, torch.compile)", {"bf16": False, "channels_last": False, "compile": True},
                 marks=pytest.mark.skipif(NO_C_COMPILER, reason="torch.compile on the CPU needs a C compiler")),
])
def test_speed_flags_run_on_the_cpu(tmp_path, monkeypatch, capsys, flags, device_line, expected):
    """The flags reach the loop the app builds, and its training steps compute as they say."""
    from mnist_exp import app

    built, seen = [], []

    def record(module, inputs, output):  # the second convolution: its input is the first one's 8-channel output
        if module.training:
            x = inputs[0]
            seen.append((x.is_contiguous(memory_format=torch.channels_last), x.is_contiguous(), output.dtype))

    def build_job(*args, **kwargs):  # the app's own build_job; the job it built is kept to look at
        job = real_build_job(*args, **kwargs)
        built.append(job)
        if not job.trainer.settings.compile:  # a hook inside a compiled graph would be traced, not called
            [_, second, *_] = [m for m in job.trainer.model.modules() if isinstance(m, torch.nn.Conv2d)]
            second.register_forward_hook(record)
        return job

    real_build_job = app.build_job
    monkeypatch.setattr(app, "build_job", build_job)
    if expected["compile"]:  # an earlier job of this process compiled its model; Dynamo's limit then is 1 graph
        monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 1)
        torch.compile(torch.nn.Sequential(torch.nn.Linear(2, 2)))(torch.zeros(1, 2))
    graphs_before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    code, out, _ = run_main("dataset=fake", "model.width=8", "trainer.epochs=2", "trainer.batch_size=64", "device=cpu",
                            "device.threads=1", *flags, monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    [run_dir] = run_dirs(tmp_path / "outputs")
    metrics = read_metrics(run_dir)
    assert code == 0 and metrics["status"] == "completed" and metrics["test/acc"] > 0.8  # fp32 reaches ~0.9
    assert device_line + "\n" in out

    [job] = built
    trainer, settings = job.trainer, job.trainer.settings
    assert isinstance(settings, LoopSettings) and settings.device == torch.device("cpu")
    assert {"bf16": settings.bf16, "channels_last": settings.channels_last, "compile": settings.compile} == expected
    # The convolutions' weights past the first (whose one input channel makes both layouts the same memory).
    weights = [m.weight for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1]
    assert len(weights) >= 2
    assert all(w.is_contiguous(memory_format=torch.channels_last) != w.is_contiguous() for w in weights) \
        if expected["channels_last"] else all(w.is_contiguous() for w in weights)
    if expected["compile"]:
        # The training step calls the compiled model, which wraps the plain one (whose weights checkpoints hold),
        # and Dynamo compiled graphs for it during the run.
        assert isinstance(trainer.train_model, torch._dynamo.eval_frame.OptimizedModule)
        assert trainer.train_model._orig_mod is trainer.model
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > graphs_before
    else:
        assert trainer.train_model is trainer.model
        # Every training step: 2 epochs of 1024 / 64 batches, in the memory layout and precision asked for.
        assert len(seen) == 2 * 1024 // 64
        layout = (True, False) if expected["channels_last"] else (False, True)  # (NHWC, NCHW)-contiguous
        dtype = torch.bfloat16 if expected["bf16"] else torch.float32
        assert set(seen) == {(*layout, dtype)}


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


def test_view_averaged_evaluation_averages_nine_shifts_and_trains_as_the_model():
    torch.manual_seed(0)
    model = cnn(10, width=4).eval()
    x = torch.randn(3, 1, 28, 28)
    wrapped = ViewAveraged(model, background=-1.0).eval()
    assert sorted(ViewAveraged.SHIFTS) == [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    views = [shift_image(x, dy, dx, -1.0) for dy, dx in ViewAveraged.SHIFTS]
    expected = torch.stack([model(v).softmax(dim=1) for v in views]).mean(dim=0).log()
    torch.testing.assert_close(wrapped(x), expected)
    down, left = shift_image(x, 1, 0, -1.0), shift_image(x, 0, -1, -1.0)
    assert torch.equal(down[:, :, 1:], x[:, :, :-1]) and (down[:, :, 0] == -1.0).all()
    assert torch.equal(left[..., :-1], x[..., 1:]) and (left[..., -1] == -1.0).all()
    wrapped.train()
    torch.testing.assert_close(wrapped(x), model.train()(x))


def test_scaled_views_are_the_training_augmentation_s_scaling_with_a_black_edge():
    pixels = torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8)
    mean, std = 0.1307, 0.3081
    background = -mean / std
    x = model_input(pixels, mean, std, flatten=False)
    assert scale_image(x, 1.0, background) is x
    for scale in (0.9, 1.1):
        augmented = affine_images(pixels, torch.zeros(4), torch.full((4,), scale), torch.zeros(4), torch.zeros(4))
        torch.testing.assert_close(scale_image(x, scale, background),
                                   model_input(augmented / 255, mean, std, flatten=False))
    white = torch.ones(1, 1, 28, 28)
    shrunk = scale_image(white, 0.5, background)  # the image in the middle, empty pixels around it
    assert shrunk[0, 0, 0, 0] == background and shrunk[0, 0, 14, 14] == 1.0


def test_view_averaged_with_scales_averages_every_shift_at_every_scale():
    torch.manual_seed(0)
    model = cnn(10, width=4).eval()
    x = torch.randn(2, 1, 28, 28)
    wrapped = ViewAveraged(model, background=-1.0, scales=(0.9, 1.0, 1.1)).eval()
    views = [shift_image(scale_image(x, scale, -1.0), dy, dx, -1.0)
             for scale in (0.9, 1.0, 1.1) for dy, dx in ViewAveraged.SHIFTS]
    expected = torch.stack([model(v).softmax(dim=1) for v in views]).mean(dim=0).log()
    torch.testing.assert_close(wrapped(x), expected)


def test_trainer_evaluates_the_average_and_keeps_it_as_the_best_weights():
    data = fake(num_train=256)
    loader = TensorLoader(data.train, 64, mean=data.mean, std=data.std, shuffle=True)
    val = TensorLoader(data.val, 128, mean=data.mean, std=data.std)
    model = cnn(10, width=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    trainer = Trainer(model, optimizer, scheduler, LoopSettings(epochs=1, patience=None, label_smoothing=0.0, log_interval=50, ema_decay=0.9, compile=False, progress=False))
    trainer.fit(loader, val)
    assert trainer.evaluated_model is trainer.ema.model  # validation: the average
    for name, value in trainer.ema.model.state_dict().items():
        assert torch.equal(trainer.best_weights[name], value)
    assert not torch.equal(trainer.ema.model[0][0].weight, model[0][0].weight)  # the average is not the model
    saved = trainer.state_dict()
    assert torch.equal(saved["ema"]["0.0.weight"], trainer.ema.model[0][0].weight)


def test_auto_precision_is_bf16_on_the_cpu_only_where_it_has_bf16_instructions_and_torch_uses_them():
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("needs Linux's /proc/cpuinfo to know the CPU's instructions")
    flags = set(cpuinfo.read_text().split())
    cpu = torch.device("cpu")
    kernels_use_them = torch.backends.cpu.get_cpu_capability().startswith("AVX512")  # not where held to AVX2
    assert use_bf16("auto", cpu) == (bool(flags & {"avx512_bf16", "amx_tile"}) and kernels_use_them)
    assert use_bf16("bf16", cpu) and not use_bf16("fp32", cpu)


@pytest.mark.slow
def test_auto_precision_is_fp32_where_torch_is_held_to_avx2_kernels():
    """With its kernels held to AVX2 torch emulates bf16 at several times fp32's cost, so ``auto`` keeps fp32."""
    held = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    code = "import torch; from mnist_exp.run.runtime import use_bf16; print(use_bf16('auto', torch.device('cpu')))"
    answer = subprocess.run([sys.executable, "-c", code], env=held, capture_output=True, text=True, check=True)
    assert answer.stdout.strip() == "False"


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_cpu_optimizers_take_torchs_fused_kernel_and_step_as_its_loop_does(name):
    def trained(fused: bool | None) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = cnn(10, width=4)
        params = list(model.parameters())
        optimizer = (OPTIMIZERS.build({"name": name, "lr": 0.01}, params) if fused
                     else OPTIMIZERS.build({"name": name, "lr": 0.01}, [{"params": params}]))  # a group: torch's loop
        assert optimizer.defaults["fused"] is fused
        x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
        for _ in range(5):
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
        return [p.detach() for p in params]

    for fused_param, loop_param in zip(trained(True), trained(None), strict=True):
        torch.testing.assert_close(fused_param, loop_param)
