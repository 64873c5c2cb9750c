"""The config is the experiment: every value a user can set takes effect as written, or is refused in one line.

- Every optimizer under every schedule, built from the composed config as a run builds them and
  stepped through the whole schedule: the learning rate follows its schedule, every other
  hyperparameter (betas, momentum, weight decay, ...) stays exactly as configured, unless the
  config itself asks one-cycle to cycle the momentum.
- Every key of every model, augmentation and dataset option, changed: what is built changes, or
  the value is refused.

The options come from the groups' own lists (``group_options``), so a new option is covered at once.
"""

import copy
import functools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import run_main
from mnist_exp.data.datasets import read_idx
from mnist_exp.errors import UserError
from mnist_exp.paths import CONF_DIR, default_data_dir
from mnist_exp.registry import AUGMENTATIONS, DATASETS, MODELS, OPTIMIZERS, SCHEDULERS
from mnist_exp.run.checkpoint import load_checkpoint
from mnist_exp.run.config import register_schemas
from mnist_exp.run.optim import momentum_of
from mnist_exp.run.options import group_options

register_schemas()

STEPS_PER_EPOCH, EPOCHS = 7, 4
TOTAL_STEPS = STEPS_PER_EPOCH * EPOCHS


def composed(*overrides: str) -> dict:
    """The config as a dict, each caller its own copy: a config the tests share is composed once."""
    return copy.deepcopy(compose_once(overrides))


@functools.cache
def compose_once(overrides: tuple[str, ...]) -> dict:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["dataset=fake", *overrides])
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def expected_lr(schedule: dict, lr: float, step: int, total: int = TOTAL_STEPS) -> float:
    """The learning rate at ``step`` as each schedule's YAML describes it, computed here independently of torch."""
    name = schedule["name"]
    if name == "none":
        return lr
    if name == "step":
        return lr * schedule["gamma"] ** ((step // STEPS_PER_EPOCH) // schedule["step_size"])
    if name == "cosine":
        warmup = math.floor(schedule["warmup_epochs"] * STEPS_PER_EPOCH + 0.5)  # the nearest whole step
        if step < warmup:
            return lr * (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, TOTAL_STEPS - warmup))
        ratio = schedule["min_lr_ratio"]
        return lr * (ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
    if name == "onecycle":  # cosine up from lr / div_factor to lr, then down to lr / (div_factor * final_div_factor)
        start, low = lr / schedule["div_factor"], lr / schedule["div_factor"] / schedule["final_div_factor"]
        peak = schedule["pct_start"] * total - 1  # at or before step 0 where the warm-up is a step or less
        if step < peak:
            return low_to_high(start, lr, step / peak)
        return low_to_high(lr, low, (step - peak) / (total - 1 - peak))
    raise AssertionError(f"no expected learning rate for scheduler={name}: add it here")


def low_to_high(begin: float, end: float, fraction: float) -> float:
    return end + (begin - end) / 2 * (1 + math.cos(math.pi * fraction))


def expected_momentum(schedule: dict, configured: float, step: int) -> float:
    """One-cycle's momentum: the optimizer's own unless base_momentum is set, then the learning rate's mirror image."""
    if schedule.get("base_momentum") is None:
        return configured
    peak = schedule["pct_start"] * TOTAL_STEPS - 1
    base = schedule["base_momentum"]
    if step <= peak:
        return low_to_high(configured, base, step / peak)
    return low_to_high(base, configured, (step - peak) / (TOTAL_STEPS - 1 - peak))


def as_configured(group: dict, optimizer_cfg: dict) -> dict:
    """The param group's value of each configured key, in the config's form (betas as a list)."""
    return {key: list(group[key]) if isinstance(group[key], tuple) else group[key]
            for key in optimizer_cfg if key not in ("name", "lr")}


def build(config: dict, total: int = TOTAL_STEPS):
    model = torch.nn.Linear(3, 2)
    optimizer = OPTIMIZERS.build(config["optimizer"], model.parameters())
    scheduler = SCHEDULERS.build(config["scheduler"], optimizer, total, min(total, STEPS_PER_EPOCH))
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)
    return optimizer, scheduler


PAIRS = [(o, s) for o in group_options("optimizer") for s in group_options("scheduler")]


@pytest.mark.parametrize("optimizer_name, scheduler_name", PAIRS, ids=[f"{o}-{s}" for o, s in PAIRS])
def test_every_optimizer_under_every_schedule_runs_as_configured(optimizer_name, scheduler_name):
    config = composed(f"optimizer={optimizer_name}", f"scheduler={scheduler_name}")
    optimizer, scheduler = build(config)
    lr, wanted = config["optimizer"]["lr"], config["optimizer"]
    for step in range(TOTAL_STEPS):
        for group in optimizer.param_groups:
            assert as_configured(group, wanted) == {k: v for k, v in wanted.items() if k not in ("name", "lr")}, step
            assert group["lr"] == pytest.approx(expected_lr(config["scheduler"], lr, step), rel=1e-9), step
        optimizer.step()
        scheduler.step()


@pytest.mark.parametrize("total, pct_start", [(16, 0.01), (4, 0.25), (5, 0.1)])
def test_one_cycle_of_a_short_run_follows_its_curve_to_the_configured_end(total, pct_start):
    """A warm-up of a step or less (torch divides by zero at exactly one) peaks at or before the first step, and the
    run's last step is still at lr / (div_factor * final_div_factor): no cycle stretched past the run's end."""
    config = composed("scheduler=onecycle", f"scheduler.pct_start={pct_start}", "scheduler.final_div_factor=10")
    optimizer, scheduler = build(config, total)
    lr, seen = config["optimizer"]["lr"], []
    for step in range(total):
        seen.append(optimizer.param_groups[0]["lr"])
        assert seen[-1] == pytest.approx(expected_lr(config["scheduler"], lr, step, total), rel=1e-9), step
        optimizer.step()
        scheduler.step()
    assert seen[-1] == pytest.approx(lr / 25 / 10)


MOMENTUM_OPTIMIZERS = [name for name in group_options("optimizer")
                       if momentum_of(OPTIMIZERS.build({"name": name}, [torch.nn.Parameter(torch.zeros(1))])
                                      .param_groups[0]) > 0]


@pytest.mark.parametrize("optimizer_name", MOMENTUM_OPTIMIZERS)
def test_one_cycle_cycles_the_momentum_only_as_the_config_asks(optimizer_name):
    config = composed(f"optimizer={optimizer_name}", "scheduler=onecycle", "scheduler.base_momentum=0.8")
    optimizer, scheduler = build(config)
    configured = momentum_of(optimizer.defaults)
    seen = []
    for step in range(TOTAL_STEPS):
        momentum = momentum_of(optimizer.param_groups[0])
        assert momentum == pytest.approx(expected_momentum(config["scheduler"], configured, step), abs=1e-9), step
        seen.append(momentum)
        optimizer.step()
        scheduler.step()
    assert seen[0] == pytest.approx(configured) and min(seen) == pytest.approx(0.8, abs=1e-3)


def test_a_momentum_cycle_the_optimizer_cannot_run_is_refused():
    with pytest.raises(UserError, match=r"scheduler.base_momentum=0.85 cycles the optimizer's momentum, but Adadelta "
                                        r"has none to cycle"):
        build(composed("optimizer=adadelta", "scheduler=onecycle", "scheduler.base_momentum=0.85"))
    with pytest.raises(UserError, match=r"scheduler.base_momentum=0.95 is out of range: it takes the momentum at the "
                                        r"peak learning rate, in \[0, 0.9\]"):
        build(composed("optimizer=adamw", "scheduler=onecycle", "scheduler.base_momentum=0.95"))


def test_fast_runs_with_the_betas_its_config_shows_and_its_checkpoint_agrees(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "fast"
    code, _, err = run_main("experiment=fast", "dataset=fake", "device=cpu", f"hydra.run.dir={run_dir}",
                            monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err
    shown = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    assert list(shown.optimizer.betas) == [0.7, 0.9] and shown.scheduler.base_momentum is None
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")["trainer"]["optimizer"]
    for group in state["param_groups"]:
        assert list(group["betas"]) == [0.7, 0.9]
        assert group["weight_decay"] == shown.optimizer.weight_decay and group["eps"] == shown.optimizer.eps


def changed(value):
    """Another value of the same type: what a user sweeping this key would try (a size for a null one)."""
    if value is None:
        return 8
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 0.1 if value < 0.85 else value / 2
    if isinstance(value, list):
        return [changed(item) for item in value]
    raise AssertionError(f"no changed value for {value!r}: add one here")


def option_keys(group: str) -> list[tuple[str, str]]:
    """(option, key) for each key of each option, at collection (in each test worker): the option composed alone
    has the keys it has in the whole config, in half the time."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return [(option, key) for option in group_options(group)
                for key in compose(overrides=[f"+{group}={option}"])[group] if key != "name"]


def model_fingerprint(node: dict):
    """What a model config builds: its layers, their shapes, and its output on a fixed input from fixed weights."""
    torch.manual_seed(0)
    model = MODELS.build(node, 10).eval()
    size = node.get("image_size", 28)
    shape = (2, node["in_features"]) if "in_features" in node else (2, node.get("in_channels", 1), size, size)
    with torch.no_grad():
        output = model(torch.rand(shape, generator=torch.Generator().manual_seed(1)))
    return repr(model), [(name, tuple(p.shape)) for name, p in model.named_parameters()], output


@pytest.mark.parametrize("option, key", option_keys("model"))
def test_each_model_key_changes_the_model_or_is_refused(option, key):
    node = composed(f"model={option}")["model"]
    before = model_fingerprint(node)
    try:
        after = model_fingerprint({**node, key: changed(node[key])})
    except UserError:
        return
    assert not same(before, after), f"model={option}: {key} changed nothing that was built"


AUGMENT_KEYS = [(option, key) for option, key in option_keys("augment")]


@pytest.mark.parametrize("option, key", AUGMENT_KEYS)
def test_each_augmentation_key_changes_the_images_or_is_refused(option, key):
    node = composed(f"augment={option}")["augment"]
    pixels = DATASETS.build({"name": "fake", "num_train": 64, "val_size": 0, "num_test": 0}).train.images

    def augmented(settings):
        return AUGMENTATIONS.build(settings)(pixels, torch.Generator().manual_seed(0)).float()

    try:
        after = augmented({**node, key: changed(node[key])})
    except UserError:
        return
    assert not torch.equal(augmented(node), after), f"augment={option}: {key} changed no image"


# Keys that say where the data is or how it is fetched, not what it is: the files are MD5-verified either way.
# skip_unreadable says what to do with a file PIL cannot read: with every file readable, the data are the same.
WHERE_OR_HOW = {"data_dir", "download", "skip_unreadable"}
DATASET_KEYS = [(option, key) for option, key in option_keys("dataset") if key not in WHERE_OR_HOW]


@pytest.fixture(scope="module")
def idx_root(tmp_path_factory):
    """MNIST's files laid out also as torchvision's FashionMNIST and KMNIST, so their builders run without a download."""
    raw = default_data_dir() / "MNIST" / "raw"
    if not (raw / "t10k-labels-idx1-ubyte").exists():
        pytest.skip("real MNIST is not in the data directory: make data")
    root = tmp_path_factory.mktemp("idx")
    for folder in ("MNIST", "FashionMNIST", "KMNIST"):
        (root / folder / "raw").mkdir(parents=True)
        for path in raw.glob("*-ubyte"):
            (root / folder / "raw" / path.name).symlink_to(path)
    # And as Kaggle's CSVs for dataset=csv: two training files of different images, a labelled test file.
    images, labels = read_idx(raw / "train-images-idx3-ubyte"), read_idx(raw / "train-labels-idx1-ubyte")
    for name, part in (("a.csv", slice(0, 600)), ("b.csv", slice(600, 1200)), ("test.csv", slice(1200, 1300))):
        rows = np.column_stack([labels[part].numpy(), images[part].reshape(-1, 784).numpy()])
        np.savetxt(root / name, rows, fmt="%d", delimiter=",", header="label," + ",".join(f"pixel{i}" for i in
                                                                                         range(784)), comments="")
    # And as folders of PNGs, one subfolder per class, for dataset=folder: two of different images.
    for name, part in (("folder_a", slice(0, 300)), ("folder_b", slice(300, 600))):
        for i, (image, label) in enumerate(zip(images[part].numpy(), labels[part].tolist())):
            (root / name / str(label)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(root / name / str(label) / f"{i}.png")
    return root


@functools.cache
def composed_dataset_fingerprint(option: str, idx_root: Path):
    """The fingerprint of an option as composed (the same for each of its keys' tests: built once)."""
    return dataset_fingerprint(local(composed(f"dataset={option}")["dataset"], idx_root))


def local(node: dict, idx_root: Path) -> dict:
    """A dataset node that reads the files laid out in ``idx_root``, never downloading."""
    if node["name"] == "csv":
        return {**node, "train": str(idx_root / "a.csv"), "val_size": 100, "test_size": 100}
    if node["name"] == "folder":
        return {**node, "root": str(idx_root / "folder_a")}
    return {**node, "data_dir": str(idx_root), "download": False} if "data_dir" in node else node


def changed_dataset_value(key: str, value, idx_root: Path):
    """``changed``; for dataset=csv's files another file, and for its computed normalisation (null) a number."""
    if key == "train":
        return str(idx_root / "b.csv")
    if key == "root":
        return str(idx_root / "folder_b")
    if value is None:
        return {"test": str(idx_root / "test.csv"), "mean": 0.5, "std": 0.25}[key]
    return changed(value)


def dataset_fingerprint(node: dict):
    data = DATASETS.build(node)
    splits = [(split.images[:50].clone(), split.labels[:50].clone(), len(split))
              for split in (data.train, data.val, data.test)]
    return splits, data.mean, data.std, data.flatten, data.class_names


@pytest.mark.parametrize("option, key", DATASET_KEYS)
def test_each_dataset_key_changes_the_data_or_is_refused(option, key, idx_root):
    node = local(composed(f"dataset={option}")["dataset"], idx_root)
    before = composed_dataset_fingerprint(option, idx_root)
    try:
        after = dataset_fingerprint({**node, key: changed_dataset_value(key, node[key], idx_root)})
    except UserError:
        return
    assert not same(before, after), f"dataset={option}: {key} changed nothing in the data"


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b
