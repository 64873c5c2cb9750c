"""Every recipe in conf/experiment/: it composes, pins what its tutorial has, and runs end to end on fake data.

The runs are one short multirun over all experiment files (one process: Python, torch and Hydra start
once), each on 256 fake 28x28 images for two epochs (a step schedule's first step comes after the first): 3
optimizer steps an epoch at batch 64, under 1% of an MNIST epoch, in this process. tests/test_mnist.py trains tutorial_jumpml_cnn and fast on real MNIST.
"""

from enum import Enum

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image

from conftest import read_events, read_metrics, run_captured, run_dirs
from mnist_exp.run.config import CONF_DIR, register_schemas

register_schemas()

EXPERIMENTS = sorted(path.stem for path in (CONF_DIR / "experiment").glob("*.yaml"))
# Each tutorial recipe and the title of the tutorial it reproduces.
TUTORIALS = {
    "tutorial_scratch_logreg": "Learn MNIST in PyTorch from Scratch to CNN",
    "tutorial_scratch_cnn": "Learn MNIST in PyTorch from Scratch to CNN",
    "tutorial_basics_linear": "PyTorch Basics",
    "tutorial_basics_cnn": "PyTorch Basics",
    "tutorial_udacity_mlp": "MNIST Classifier with Pytorch [Part I]",
    "tutorial_jumpml_cnn": "Tutorial on recognizing digits in PyTorch",
    "examples_mnist": "pytorch/examples mnist/main.py",
}
PICTURES = ("curves.png", "predictions.png", "confusion_matrix.png", "misclassified.png")
TINY = ("dataset=fake", "dataset.num_train=256", "dataset.val_size=64", "dataset.num_test=64", "trainer.epochs=2",
        "trainer.batch_size=64", "trainer.eval_batch_size=64")


def compose_experiment(name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[f"experiment={name}", *overrides])


def test_the_recipes_are_the_tutorials_and_fast_best_smoke():
    assert EXPERIMENTS == sorted([*TUTORIALS, "fast", "best", "smoke"])


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_file_is_a_global_package_recipe_that_says_how_to_run_it(name):
    text = (CONF_DIR / "experiment" / f"{name}.yaml").read_text()
    assert text.startswith("# @package _global_\n")
    header = text[:text.index("\ndefaults:")]
    assert f"python -m mnist_exp experiment={name}" in header
    if name in TUTORIALS:
        assert TUTORIALS[name] in header  # the title of the tutorial it reproduces
    cfg = compose_experiment(name)
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # nothing left unset


# What each tutorial's code has, key by key: the composed recipe must be exactly this.
PKL_PIXELS = {"dataset.mean": 0.0, "dataset.std": 256 / 255}  # x/256, not normalised
TORCHVISION_MNIST = {"dataset.mean": 0.1307, "dataset.std": 0.3081, "dataset.flatten": False}
PLAIN_CROSS_ENTROPY = {"trainer.label_smoothing": 0.0, "trainer.ema_decay": 0.0, "trainer.tta": False,
                       "device.precision": "fp32", "dataset.name": "mnist"}
STRIDED_CNN = {"model.name": "strided_cnn", "model.channels": [16, 16], "model.in_channels": 1,
               "model.relu_on_logits": True, "dataset.flatten": False}
ADAM_1E_3 = {"optimizer.name": "adam", "optimizer.lr": 1e-3, "optimizer.betas": [0.9, 0.999],
             "optimizer.weight_decay": 0.0, "optimizer.eps": 1e-8}


def sgd(lr: float, momentum: float) -> dict:
    return {"optimizer.name": "sgd", "optimizer.lr": lr, "optimizer.momentum": momentum,
            "optimizer.weight_decay": 0.0, "optimizer.nesterov": False}


def trainer(epochs: int, batch: int, eval_batch: int) -> dict:
    return {"trainer.epochs": epochs, "trainer.batch_size": batch, "trainer.eval_batch_size": eval_batch}


TUTORIAL_SETTINGS = {
    "tutorial_scratch_logreg": {**PKL_PIXELS, "dataset.flatten": True, "model.name": "logreg",
                                "model.in_features": 784, **sgd(0.05, 0.0), "scheduler.name": "none",
                                **trainer(20, 64, 128), "seed": 0},
    "tutorial_scratch_cnn": {**PKL_PIXELS, **STRIDED_CNN, **sgd(0.1, 0.9), "scheduler.name": "none",
                             **trainer(20, 64, 128), "seed": 0},
    "tutorial_basics_linear": {**PKL_PIXELS, "dataset.flatten": True, "model.name": "logreg", "model.in_features": 784,
                               **ADAM_1E_3, "scheduler.name": "none", **trainer(15, 64, 128), "seed": 0},
    "tutorial_basics_cnn": {**PKL_PIXELS, **STRIDED_CNN, **ADAM_1E_3, "scheduler.name": "none",
                            **trainer(15, 64, 128), "seed": 0},
    "tutorial_udacity_mlp": {"dataset.mean": 0.5, "dataset.std": 0.5, "dataset.flatten": True, "model.name": "mlp",
                             "model.hidden": [128, 64], "model.dropout": 0.0, "model.in_features": 784,
                             **sgd(0.01, 0.0), "scheduler.name": "none", **trainer(10, 64, 1000), "seed": 0},
    "tutorial_jumpml_cnn": {**TORCHVISION_MNIST, "dataset.val_size": 0, "model.name": "conv_fc",
                            "model.channels": [32, 16], "model.kernel_sizes": [5, 3], "model.pool": [True, True],
                            "model.conv_dropout": 0.0, "model.hidden": [100], "model.dropout": 0.5,
                            "model.log_softmax": True, **sgd(0.01, 0.5), "scheduler.name": "none",
                            **trainer(3, 64, 1000), "seed": 1},
    "examples_mnist": {**TORCHVISION_MNIST, "dataset.val_size": 0, "model.name": "conv_fc", "model.channels": [32, 64],
                       "model.kernel_sizes": [3, 3], "model.pool": [False, True], "model.conv_dropout": 0.25,
                       "model.hidden": [128], "model.dropout": 0.5, "model.log_softmax": True,
                       "optimizer.name": "adadelta", "optimizer.lr": 1.0, "optimizer.rho": 0.9, "optimizer.eps": 1e-6,
                       "optimizer.weight_decay": 0.0, "scheduler.name": "step", "scheduler.step_size": 1,
                       "scheduler.gamma": 0.7, **trainer(14, 64, 1000), "seed": 1},
}


def test_every_tutorial_recipe_has_its_settings_listed():
    assert set(TUTORIAL_SETTINGS) == set(TUTORIALS)


def setting(cfg, key: str):
    """The composed value at a dotted key, as plain Python (lists, enum values)."""
    value = OmegaConf.select(cfg, key, throw_on_missing=True)
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value)
    return value.value if isinstance(value, Enum) else value


@pytest.mark.parametrize("name", TUTORIAL_SETTINGS)
def test_tutorial_recipes_compose_to_the_tutorials_settings(name):
    cfg = compose_experiment(name)
    expected = {**PLAIN_CROSS_ENTROPY, **TUTORIAL_SETTINGS[name]}
    wrong = {key: (setting(cfg, key), value) for key, value in expected.items()
             if setting(cfg, key) != (pytest.approx(value) if isinstance(value, float) else value)}
    assert not wrong, f"{name}: key: (composed, the tutorial's): {wrong}"


def test_the_command_line_still_overrides_a_recipe():
    cfg = compose_experiment("tutorial_basics_cnn", "model.relu_on_logits=false", "dataset=fake", "trainer.epochs=2")
    assert cfg.model.relu_on_logits is False and cfg.dataset.name == "fake" and cfg.trainer.epochs == 2


@pytest.fixture(scope="module")
def experiment_runs(tmp_path_factory):
    """{experiment: run directory} of one multirun over every experiment file, on tiny fake data."""
    cwd = tmp_path_factory.mktemp("experiments")
    # An average of the weights that the 6 steps' warm-up reaches: best's 0.998 is refused in so short a run.
    code, _, err = run_captured("-m", f"experiment={','.join(EXPERIMENTS)}", *TINY, "trainer.ema_decay=0.4", "device=cpu",
                                "device.threads=1", cwd=cwd)
    runs = {}
    for run_dir in run_dirs(cwd / "outputs" / "multirun"):
        overrides = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
        [experiment] = [o.split("=", 1)[1] for o in overrides if o.startswith("experiment=")]
        runs[experiment] = run_dir
    return runs, err


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_runs_end_to_end_on_fake_data(experiment_runs, name):
    runs, err = experiment_runs
    assert name in runs, err[-3000:]
    metrics = read_metrics(runs[name])
    assert metrics["status"] == "completed", metrics
    assert metrics["epoch"] == 2 and metrics["train_time_s"] > 0
    # The recipe's own model and optimizer ran, with the tiny data's overrides on top.
    ran = OmegaConf.load(runs[name] / ".hydra" / "config.yaml")
    recipe = compose_experiment(name, *TINY)
    assert (ran.model, ran.optimizer, ran.scheduler) == (recipe.model, recipe.optimizer, recipe.scheduler)
    assert metrics["params"] > 0 and f"{metrics['params']:,}" in (runs[name] / "train.log").read_text()
    # Tested on the 64 test images: a whole number of them right, the figure TensorBoard has too.
    correct = metrics["test/acc"] * 64
    assert abs(correct - round(correct)) < 1e-6
    [point] = read_events(runs[name]).Scalars("test/acc")
    assert point.value == pytest.approx(metrics["test/acc"])
    log = (runs[name] / "train.log").read_text()
    assert "output shape" in log  # the model summary, with each layer's output shape
    assert "Dataset fake: 256 train, 64 validation, 64 test images" in log


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_writes_its_pictures_as_valid_png(experiment_runs, name):
    runs, err = experiment_runs
    assert name in runs, err[-3000:]
    for picture in PICTURES:
        path = runs[name] / picture
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", picture
        with Image.open(path) as image:
            image.verify()  # the whole file decodes: chunks and checksums
        with Image.open(path) as image:
            tall = 150 if picture == "misclassified.png" else 200  # a run with few mistakes shows one row of them
            assert image.format == "PNG" and image.width >= 300 and image.height >= tall, picture


def test_fast_trains_on_all_of_mnist_in_fewer_epochs_than_any_tutorial_recipe():
    cfg = compose_experiment("fast")
    assert cfg.dataset.name == "mnist" and cfg.dataset.val_size == 0
    assert all(cfg.trainer.epochs < compose_experiment(name).trainer.epochs for name in TUTORIALS)
