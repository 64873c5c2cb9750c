"""Every recipe in conf/experiment/: it composes, pins what its tutorial has, and runs end to end on fake data.

The runs are one short multirun over all experiment files (one process: Python, torch and Hydra start
once), each on 256 fake 28x28 images for one epoch: 4 optimizer steps at batch 64, under 1% of an
MNIST epoch. The slow test trains seed003_cnn on real MNIST.
"""

import pytest
import yaml
from hydra import compose, initialize_config_dir
from PIL import Image

from conftest import read_metrics, run_app, run_dirs, run_module
from mnist_exp.config import CONF_DIR, register_schemas

register_schemas()

EXPERIMENTS = sorted(path.stem for path in (CONF_DIR / "experiment").glob("*.yaml"))
SEED_EXPERIMENTS = ["seed000_logreg", "seed000_cnn", "seed001_linear", "seed001_cnn", "seed002_mlp", "seed003_cnn",
                    "examples_mnist"]
PICTURES = ("curves.png", "predictions.png", "confusion_matrix.png", "misclassified.png")
TINY = ("dataset=fake", "dataset.num_train=256", "dataset.val_size=64", "dataset.num_test=64", "trainer.epochs=1",
        "trainer.batch_size=64", "trainer.eval_batch_size=64")


def compose_experiment(name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[f"experiment={name}", *overrides])


def test_the_issue_recipes_and_the_beating_one_exist():
    assert set(SEED_EXPERIMENTS) | {"beat_seeds"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_file_is_a_global_package_recipe(name):
    text = (CONF_DIR / "experiment" / f"{name}.yaml").read_text()
    assert text.startswith("# @package _global_\n")
    cfg = compose_experiment(name)
    assert cfg.trainer.epochs >= 1 and cfg.trainer.batch_size >= 1


# What each tutorial has: model, optimizer (lr, momentum), schedule, batch, epochs, normalisation, flattening.
# (None: the tutorial sets no seed, or the optimizer has no momentum.)
TUTORIAL_RECIPES = {
    "seed000_logreg": ("logreg", "sgd", 0.05, 0.0, "none", 64, 20, 0.0, 256 / 255, True, None),
    "seed000_cnn": ("strided_cnn", "sgd", 0.1, 0.9, "none", 64, 20, 0.0, 256 / 255, False, None),
    "seed001_linear": ("logreg", "adam", 1e-3, None, "none", 64, 15, 0.0, 256 / 255, True, None),
    "seed001_cnn": ("strided_cnn", "adam", 1e-3, None, "none", 64, 15, 0.0, 256 / 255, False, None),
    "seed002_mlp": ("mlp", "sgd", 0.01, 0.0, "none", 64, None, 0.5, 0.5, True, None),
    "seed003_cnn": ("conv_fc", "sgd", 0.01, 0.5, "none", 64, 3, 0.1307, 0.3081, False, 1),
    "examples_mnist": ("conv_fc", "adadelta", 1.0, None, "step", 64, 14, 0.1307, 0.3081, False, 1),
}


@pytest.mark.parametrize("name", SEED_EXPERIMENTS)
def test_seed_recipes_pin_what_the_tutorial_has(name):
    model, optimizer, lr, momentum, scheduler, batch, epochs, mean, std, flatten, seed = TUTORIAL_RECIPES[name]
    cfg = compose_experiment(name)
    assert (cfg.dataset.name, cfg.model.name, cfg.optimizer.name, cfg.scheduler.name) == ("mnist", model, optimizer,
                                                                                          scheduler)
    assert cfg.optimizer.lr == pytest.approx(lr)
    if momentum is not None:
        assert cfg.optimizer.momentum == momentum
    assert cfg.trainer.batch_size == batch
    if epochs is not None:
        assert cfg.trainer.epochs == epochs
    assert (cfg.dataset.mean, cfg.dataset.std, cfg.dataset.flatten) == (pytest.approx(mean), pytest.approx(std),
                                                                        flatten)
    assert cfg.trainer.label_smoothing == 0.0  # the tutorials train with plain cross-entropy / NLL
    assert cfg.device.precision.value == "fp32"  # and in fp32, on any device
    if seed is not None:
        assert cfg.seed == seed
    # The command line still overrides a recipe: the runs below put every recipe on fake data this way.
    assert compose_experiment(name, "trainer.epochs=2", "dataset=fake").dataset.name == "fake"


def test_seed_cnn_quirks_are_options_of_shared_builders():
    assert compose_experiment("seed000_cnn").model.relu_on_logits is True
    assert compose_experiment("seed001_cnn").model.relu_on_logits is True
    assert compose_experiment("seed001_cnn", "model.relu_on_logits=false").model.relu_on_logits is False
    seed003, examples = compose_experiment("seed003_cnn").model, compose_experiment("examples_mnist").model
    assert seed003.name == examples.name == "conv_fc"
    assert (list(seed003.channels), list(seed003.kernel_sizes), list(seed003.hidden)) == ([32, 16], [5, 3], [100])
    assert compose_experiment("examples_mnist").trainer.eval_batch_size == 1000
    assert compose_experiment("seed003_cnn").trainer.eval_batch_size == 1000


@pytest.fixture(scope="module")
def experiment_runs(tmp_path_factory):
    """{experiment: run directory} of one multirun over every experiment file, on tiny fake data."""
    cwd = tmp_path_factory.mktemp("experiments")
    result = run_app("-m", f"experiment={','.join(EXPERIMENTS)}", *TINY, cwd=cwd, expect_ok=False)
    runs = {}
    for run_dir in run_dirs(cwd / "outputs" / "multirun"):
        overrides = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
        [experiment] = [o.split("=", 1)[1] for o in overrides if o.startswith("experiment=")]
        runs[experiment] = run_dir
    return runs, result


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_runs_end_to_end_on_fake_data(experiment_runs, name):
    runs, result = experiment_runs
    assert name in runs, result.stderr[-3000:]
    metrics = read_metrics(runs[name])
    assert metrics["status"] == "completed", metrics
    assert metrics["epoch"] == 1 and 0 <= metrics["test/acc"] <= 1 and metrics["train_time_s"] > 0
    log = (runs[name] / "train.log").read_text()
    assert "output shape" in log  # the model summary, with each layer's output shape
    assert "Dataset fake: 256 train, 64 validation, 64 test images" in log


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_writes_its_pictures_as_valid_png(experiment_runs, name):
    runs, result = experiment_runs
    assert name in runs, result.stderr[-3000:]
    for picture in PICTURES:
        path = runs[name] / picture
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", picture
        with Image.open(path) as image:
            image.verify()  # the whole file decodes: chunks and checksums
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width >= 300 and image.height >= 200, picture


def test_beat_seeds_trains_on_mnist_in_fewer_epochs_than_any_seed():
    cfg = compose_experiment("beat_seeds")
    assert cfg.dataset.name == "mnist"
    assert all(cfg.trainer.epochs <= compose_experiment(name).trainer.epochs for name in SEED_EXPERIMENTS)


@pytest.mark.slow
def test_seed003_cnn_reaches_97_3_percent_on_real_mnist(tmp_path):
    result = run_module("mnist_exp", "experiment=seed003_cnn", cwd=tmp_path)
    [run_dir] = run_dirs(tmp_path / "outputs")
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["epoch"] == 3
    assert metrics["test/acc"] >= 0.973, result.stdout[-2000:]
