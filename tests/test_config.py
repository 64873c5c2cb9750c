"""Composition through Hydra's compose API: every group option, the schema's errors, each component built."""

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from mnist_exp.hydra_errors import one_line
from mnist_exp.run.config import CONF_DIR, register_schemas, schema_keys
from mnist_exp.registry import MODELS, OPTIMIZERS, SCHEDULERS
from mnist_exp.sweeps.search import register_optuna_sweeper

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
    # The default run conf/config.yaml's header describes: 2 epochs of batches of 256, tested in batches of 500.
    assert (cfg.trainer.epochs, cfg.trainer.batch_size, cfg.trainer.eval_batch_size) == (2, 256, 500)


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


TRAINER_KEYS = ("epochs, batch_size, eval_batch_size, log_interval, label_smoothing, ema_decay, tta, tta_scales, "
                "deterministic, compile, progress, checkpoint, patience, limit_batches, overfit_batches, profile")


@pytest.mark.parametrize("override, hydra_says, message", [
    # a key the schema does not have
    ("trainer.epochz=3", "Key 'epochz' not in 'TrainerConfig'\n    full_key: trainer.epochz",
     f"Unknown key 'trainer.epochz'. Did you mean 'trainer.epochs'? The keys of trainer: {TRAINER_KEYS}."),
    # a value of the wrong type
    ("trainer.epochs=three", "Value 'three' of type 'str' could not be converted to Integer\n    full_key: trainer.epochs",
     "trainer.epochs=three is not a whole number: give a whole number, e.g. trainer.epochs=1."),
    # a per-option schema, derived from the builder's arguments
    ("model.widht=8", "Key 'widht' not in 'model_cnn_schema'\n    full_key: model.widht",
     "Unknown key 'model.widht'. Did you mean 'model.width'? The keys of model: name, width, stem_width, "
     "in_channels, image_size, dropout, stem_norm."),
    ("optimizer.lr=fast", "Value 'fast' of type 'str' could not be converted to Float\n    full_key: optimizer.lr",
     "optimizer.lr=fast is not a number: give a number, e.g. optimizer.lr=0.5."),
    # an enum
    ("device.name=tpu", "Invalid value 'tpu', expected one of [auto, cpu, cuda, mps]\n    full_key: device.name",
     "device.name=tpu is not one of: auto, cpu, cuda, mps. Did you mean 'cpu'?"),
    # an option that does not exist
    ("model=cnnn", "In 'config': Could not find 'model/cnnn'\n\nAvailable options in 'model':\n\tcnn\n\tconv_fc\n",
     "model=cnnn: there is no such option. Did you mean 'cnn'? Options of model: cnn, conv_fc, logreg, mlp, "
     "strided_cnn, vgg_cnn."),
])
def test_mistakes_fail_at_composition(override, hydra_says, message):
    """Hydra refuses each at composition; what it says becomes the one line the user reads, with its advice."""
    with pytest.raises(ConfigCompositionException) as error:
        compose_config(override)
    said = str(error.value) + "\n" + str(error.value.__cause__)
    assert hydra_says in said
    assert one_line(said, schema_keys) == message


@pytest.mark.parametrize("option, given", [("optimizer=adam", "optimizer.betas=0.8"),
                                           ("model=vgg_cnn", "model.convs_per_stage=2")])
def test_a_fixed_length_list_given_as_a_number_gets_a_list_that_builds(option, given):
    """The advice is a list of the length the component takes, so that it then builds."""
    with pytest.raises(ConfigCompositionException) as error:
        compose_config(option, given)
    message = one_line(str(error.value) + "\n" + str(error.value.__cause__), schema_keys)
    advised = message.rpartition("e.g. ")[2][:-1]
    assert message.startswith(f"{given} is not a list") and advised.startswith(given.replace("=", "=["))
    cfg = compose_config(option, advised)
    OPTIMIZERS.build(cfg.optimizer, MODELS.build(cfg.model, 10).parameters())


def test_overrides_reach_the_components():
    cfg = compose_config("model=mlp", "model.hidden=[32,16]", "optimizer=sgd", "optimizer.lr=0.2", "trainer.epochs=7")
    assert list(cfg.model.hidden) == [32, 16] and cfg.optimizer.lr == 0.2 and cfg.trainer.epochs == 7


def test_libyaml_reads_every_config_file_as_omegaconfs_own_parser_does():
    """OmegaConf parses YAML on libyaml's parser here (mnist_exp/run/hydra_speedups.py): the same values and types
    as its pure-Python parser gives, for every file under conf/ and for the values where YAML 1.1 and OmegaConf
    differ (1e3 is a float, a date stays text), and the same refusal of a key given twice."""
    import omegaconf._utils

    from mnist_exp.run import hydra_speedups

    def load(text: str, loader) -> tuple:
        omegaconf._utils.get_yaml_loader = loader
        try:
            config = OmegaConf.create(text)
        finally:
            omegaconf._utils.get_yaml_loader = hydra_speedups.libyaml_loader
        values = OmegaConf.to_container(config)
        return values, repr(values)  # repr tells 1000 from 1000.0

    texts = [path.read_text() for path in sorted(CONF_DIR.rglob("*.yaml"))]
    texts.append("a: 1e3\nb: 2001-12-14\nc: 1_000\nd: .5\ne: yes\nf: 0x10\ng: ~\nh: [1, -2.5e-3, .inf]\n")
    assert len(texts) > 40 and omegaconf._utils.get_yaml_loader is hydra_speedups.libyaml_loader
    for text in texts:
        assert load(text, hydra_speedups.libyaml_loader) == load(text, hydra_speedups.PURE_PYTHON_YAML_LOADER), text
    with pytest.raises(Exception, match="found duplicate key epochs"):
        OmegaConf.create("epochs: 1\nepochs: 2\n")


def test_no_option_in_conf_sets_hydra_mode():
    """Hydra composes a command's config once only to read hydra.mode, which mnist_exp skips where only conf/'s
    configs are read (mnist_exp/run/hydra_speedups.py): that holds while no file there can set it."""
    register_optuna_sweeper()  # hparams_search's options choose it
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for path in sorted(CONF_DIR.rglob("*.yaml")):
            group, option = path.parent.relative_to(CONF_DIR).as_posix(), path.stem
            if path.read_text().startswith("# @package _global_") or group.startswith("hydra"):
                chosen = [f"{group}={option}"] if group != "." else []
                assert compose("config", overrides=chosen, return_hydra_config=True).hydra.mode is None, path
