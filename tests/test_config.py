"""Composition through Hydra's compose API: every group option, the schema's errors, each component built."""

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from mnist_exp.run.config import CONF_DIR, register_schemas
from mnist_exp.registry import MODELS, OPTIMIZERS, SCHEDULERS

register_schemas()

GROUPS = ("dataset", "model", "optimizer", "scheduler", "device", "experiment")


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))


def compose_config(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_the_groups_the_design_names_exist():
    assert {"mnist", "fake"} <= set(options("dataset"))
    assert {"logreg", "mlp", "cnn"} <= set(options("model"))
    assert {"sgd", "adam", "adamw"} <= set(options("optimizer"))
    assert {"none", "step", "cosine", "onecycle"} <= set(options("scheduler"))
    assert {"auto", "cpu", "cuda", "mps"} <= set(options("device"))


def test_default_config():
    cfg = compose_config()
    assert (cfg.dataset.name, cfg.model.name, cfg.optimizer.name, cfg.scheduler.name) == ("mnist", "cnn", "adamw",
                                                                                          "onecycle")
    assert cfg.optimized_metric == "best_val/acc"
    assert cfg.trainer.epochs >= 1 and cfg.trainer.batch_size >= 1


@pytest.mark.parametrize("group, option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes_and_builds(group, option):
    cfg = compose_config(f"{group}={option}", "dataset=fake" if group != "dataset" else f"dataset={option}")
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # nothing left unset
    if group in ("dataset", "model", "optimizer", "scheduler"):
        assert cfg[group].name == option
    if group == "device":
        assert cfg.device.name.value == option
    model = MODELS.build(cfg.model, 10)
    shape = (2, 784) if cfg.dataset.flatten else (2, 1, 28, 28)
    assert model(torch.zeros(shape)).shape == (2, 10)
    optimizer = OPTIMIZERS.build(cfg.optimizer, model.parameters())
    scheduler = SCHEDULERS.build(cfg.scheduler, optimizer, 100, 10)
    for _ in range(100):  # every step of the planned schedule is valid
        optimizer.step()
        scheduler.step()


@pytest.mark.parametrize("override, message", [
    ("trainer.epochz=3", "epochz"),  # a key the schema does not have
    ("trainer.epochs=three", "trainer.epochs"),  # a value of the wrong type
    ("model.widht=8", "widht"),  # a per-option schema, derived from the builder
    ("optimizer.lr=fast", "optimizer.lr"),
    ("device.name=tpu", "tpu"),  # enum
    ("model=cnnn", "cnnn"),  # an option that does not exist
])
def test_mistakes_fail_at_composition(override, message):
    with pytest.raises(ConfigCompositionException) as error:
        compose_config(override)
    assert message in str(error.value) + str(error.value.__cause__)


def test_overrides_reach_the_components():
    cfg = compose_config("model=mlp", "model.hidden=[32,16]", "optimizer=sgd", "optimizer.lr=0.2", "trainer.epochs=7")
    assert list(cfg.model.hidden) == [32, 16] and cfg.optimizer.lr == 0.2 and cfg.trainer.epochs == 7
