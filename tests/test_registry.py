"""Registries: build by name, did-you-mean on typos, components registered by users."""

import pytest
import torch
from hydra.core.config_store import ConfigStore

from conftest import read_events, read_metrics, run_dirs, run_main, run_module
from mnist_exp.errors import UserError, did_you_mean
from mnist_exp.registry import DATASETS, MODELS, OPTIMIZERS, SCHEDULERS, Registry
from mnist_exp.tools import evaluate


def test_did_you_mean_names_the_close_match_only():
    assert did_you_mean("cnnn", ["logreg", "mlp", "cnn"]) == " Did you mean 'cnn'?"
    assert did_you_mean("transformer", ["logreg", "mlp", "cnn"]) == ""


@pytest.mark.parametrize("registry, typo, match", [
    (MODELS, "cnnn", "cnn"), (OPTIMIZERS, "adamw_", "adamw"), (SCHEDULERS, "onecylce", "onecycle"),
    (DATASETS, "mnsit", "mnist"),
])
def test_unknown_name_is_one_line_with_the_close_match_and_the_valid_names(registry, typo, match):
    with pytest.raises(UserError) as error:
        registry.build({"name": typo})
    message = str(error.value)
    assert "\n" not in message
    assert f"Did you mean '{match}'?" in message
    assert ", ".join(registry.names()) in message


def test_every_builtin_is_registered():
    assert {"cnn", "logreg", "mlp"} <= set(MODELS.names())
    assert {"sgd", "adam", "adamw"} <= set(OPTIMIZERS.names())
    assert {"none", "step", "cosine", "onecycle"} <= set(SCHEDULERS.names())
    assert {"mnist", "fake"} <= set(DATASETS.names())


def test_build_passes_config_keys_and_code_arguments():
    model = MODELS.build({"name": "mlp", "hidden": [32]}, 10)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert [m.out_features for m in model if isinstance(m, torch.nn.Linear)] == [32, 10]
    optimizer = OPTIMIZERS.build({"name": "sgd", "lr": 0.5}, model.parameters())
    assert optimizer.param_groups[0]["lr"] == 0.5


def test_unknown_argument_names_the_close_key():
    with pytest.raises(UserError, match=r"Unknown key 'model.widht'.*Did you mean 'width'\?"):
        MODELS.build({"name": "cnn", "widht": 8}, 10)


def test_register_with_a_decorator_and_refuse_a_second_builder_under_one_name():
    registry = Registry("model", "math")

    @registry.register("tiny")
    def tiny(num_classes: int, width: int = 4):
        return torch.nn.Linear(width, num_classes)

    assert registry.names() == ["tiny"]
    assert registry.build({"name": "tiny", "width": 3}, 5).weight.shape == (5, 3)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("tiny")(lambda num_classes: None)


USER_SCRIPT = '''
import math

from torch import nn
from mnist_exp.registry import MODELS
from mnist_exp.app import main


@MODELS.register("tiny")
def tiny(num_classes: int, width: int = 8, max_norm: float = math.inf) -> nn.Module:  # inf: the user's "off"
    return nn.Sequential(nn.Flatten(), nn.Linear(784, width), nn.ReLU(), nn.Linear(width, num_classes))


if __name__ == "__main__":
    main()
'''


@pytest.mark.slow  # the user's own script, run as its own process: its registration must not leak into this one
def test_a_users_own_model_trains_through_the_entry_point(tmp_path, capsys):
    (tmp_path / "my_models.py").write_text(USER_SCRIPT)
    run_module("my_models", "model=tiny", "model.width=12", "dataset=fake", "trainer.epochs=1", "device=cpu",
               "device.threads=1", cwd=tmp_path)
    [run_dir] = run_dirs(tmp_path / "outputs")
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed"
    assert metrics["params"] == 784 * 12 + 12 + 12 * 10 + 10
    # The command TensorBoard records is the one that ran: the user's script, which registers tiny.
    [command] = read_events(run_dir).Tensors("overrides/text_summary")
    assert command.tensor_proto.string_val[0].decode().endswith(
        f"python {tmp_path / 'my_models.py'} model=tiny model.width=12 dataset=fake trainer.epochs=1 device=cpu "
        "device.threads=1\n```")
    # A typo in the new model's key fails at composition, as for the built-in ones: one line, the close match
    # among the keys its builder takes.
    result = run_module("my_models", "model=tiny", "model.widht=12", "dataset=fake", cwd=tmp_path, expect_ok=False)
    assert (result.returncode, result.stderr) == (
        1, "Unknown key 'model.widht'. Did you mean 'model.width'? The keys of model: name, width, max_norm.\n")
    # The tools, where tiny is not registered (this process), say how to reach it; the advice, followed, works.
    assert evaluate.main([str(run_dir)]) == 1
    assert capsys.readouterr().err == (
        f"python -m mnist_exp.tools.evaluate: {run_dir / 'checkpoints' / 'best.pt'} holds a model 'tiny', which is "
        "registered where it was trained, not here: import the module that registers it, then call the tool's "
        "main([...]) from Python, e.g. mnist_exp.tools.evaluate.main(['<run>']).\n")
    (tmp_path / "evaluate_mine.py").write_text(f"import my_models\nfrom mnist_exp.tools import evaluate\n"
                                               f"raise SystemExit(evaluate.main([{str(run_dir)!r}]))\n")
    assert "accuracy" in run_module("evaluate_mine", cwd=tmp_path).stdout


TYPED_SCRIPT = '''
from typing import Literal, Sequence

from torch import nn
from mnist_exp.registry import MODELS
from mnist_exp.app import main


@MODELS.register("typed")
def typed(num_classes: int, act: Literal["relu", "gelu"] = "relu", hidden: Sequence[int] = (8,),
          width: int = None) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, hidden[0]), nn.GELU() if act == "gelu" else nn.ReLU(),
                         nn.Linear(hidden[0], num_classes))


if __name__ == "__main__":
    main()
'''


@pytest.mark.slow  # the user's own script, run as its own process
def test_a_users_builder_typed_as_python_allows_is_an_option(tmp_path):
    """Annotations OmegaConf has no type for (Literal, Sequence) and ``int = None`` do not break the app: the keys
    are the builder's, its values as given."""
    (tmp_path / "typed_models.py").write_text(TYPED_SCRIPT)
    result = run_module("typed_models", "model=typed", "model.act=gelu", "model.hidden=[6]", "dataset=fake",
                        "--cfg", "job", "--package", "model", cwd=tmp_path)
    assert result.stdout == "# @package model\nname: typed\nact: gelu\nhidden:\n- 6\nwidth: null\n"
    result = run_module("typed_models", "model=typed", "model.width=abc", "dataset=fake", cwd=tmp_path,
                        expect_ok=False)
    assert (result.returncode, result.stderr) == (
        1, "model.width=abc is not a whole number: give a whole number, e.g. model.width=1.\n")


def test_a_users_builder_with_a_default_no_config_holds_is_one_line_and_the_advice_runs(tmp_path, monkeypatch, capsys):
    """A class as a default (act=nn.ReLU) cannot be a config value: every command says so in one line, naming the
    builder and the key, instead of a traceback; the default it advises (a name the builder looks up) runs."""
    def with_class(num_classes: int, act=torch.nn.ReLU) -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, num_classes), act())

    def with_name(num_classes: int, act: str = "relu") -> torch.nn.Module:
        return with_class(num_classes, {"relu": torch.nn.ReLU, "gelu": torch.nn.GELU}[act])

    try:
        MODELS.register("mine")(with_class)
        code, _, err = run_main("model=mine", "dataset=fake", "--cfg", "job", monkeypatch=monkeypatch, capsys=capsys,
                                cwd=tmp_path)
        assert (code, err) == (1, "Cannot make model 'mine' an option: the default of act, <class "
                                  "'torch.nn.modules.activation.ReLU'>, is not a value a config can hold: give act a "
                                  "default that is a number, a string, a bool, None or a list of them, and let the "
                                  "builder make its object from that value (e.g. a name it looks up).\n")
        MODELS._builders["mine"] = with_name  # the advice, followed
        code, out, err = run_main("model=mine", "model.act=gelu", "dataset=fake", "--cfg", "job", "--package", "model",
                                  monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
        assert (code, out) == (0, "# @package model\nname: mine\nact: gelu\n"), err
    finally:  # this process's other tests list the options of model: none of this test's
        MODELS._builders.pop("mine", None)
        for group in (ConfigStore.instance().repo["model"], ConfigStore.instance().repo["schema"]["model"]):
            group.pop("mine.yaml", None)
