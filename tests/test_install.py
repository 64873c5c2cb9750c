"""mnist_exp as a user installs it: the wheel, in a fresh virtual environment, used outside any checkout.

The new environment gets mnist_exp only from the wheel; torch, Hydra and the rest come from the
environment running the tests, through a .pth file, so nothing is downloaded.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from conftest import REPO, read_metrics

# A wheel build, an install and seven processes: about 40 s on 2 cores.
pytestmark = pytest.mark.slow

# What the wheel is built from. Built in a copy: an in-place build leaves build/ and *.egg-info in the
# checkout, and a stale build/lib would leak removed modules into later wheels.
BUILD_INPUTS = ("pyproject.toml", "README.md", "mnist_exp", "conf")
SCRIPTS = ("mnist-exp", "mnist-exp-evaluate", "mnist-exp-predict", "mnist-exp-export", "mnist-exp-compare")

MY_EXPERIMENT = """\
# @package _global_
defaults:
  - override /dataset: fake
  - override /model: logreg
trainer:
  epochs: 1
  batch_size: 32
"""

MY_TRAIN = """\
from torch import nn

from mnist_exp.app import main
from mnist_exp.registry import MODELS


@MODELS.register("tiny")
def tiny(num_classes: int, width: int = 8) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, width), nn.ReLU(), nn.Linear(width, num_classes))


if __name__ == "__main__":
    main()
"""


@dataclass
class Install:
    venv: Path
    bin: Path
    work: Path  # the user's own project directory, outside the checkout
    env: dict[str, str]

    def run(self, *args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run([str(arg) for arg in args], cwd=self.work, env={**self.env, **(env or {})},
                                capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            pytest.fail(f"{' '.join(map(str, args))} exited {result.returncode}:\n{result.stderr[-4000:]}")
        return result

    def train(self, *args: str | Path) -> Path:
        """A one-thread CPU run of the installed app (``python -m mnist_exp`` or a script); its run directory."""
        run_dir = self.work / "runs" / str(len(list((self.work / "runs").glob("*"))))
        self.run(self.bin / "python", *args, "device=cpu", "device.threads=1", f"hydra.run.dir={run_dir}")
        return run_dir


def build_wheel(out: Path) -> Path:
    source = out / "source"
    source.mkdir()
    for name in BUILD_INPUTS:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)
    # No build isolation: the setuptools of this environment (the dev extra), no download.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--disable-pip-version-check", "-w", str(out / "dist"), str(source)], check=True)
    (wheel,) = (out / "dist").glob("mnist_exp-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Install:
    tmp = tmp_path_factory.mktemp("install")
    wheel = build_wheel(tmp)
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=False, symlinks=os.name != "nt")
    python = env_dir / "bin" / "python"
    # This environment's pip installs into the new one; before the .pth below, so it sees no mnist_exp there.
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", "--disable-pip-version-check", str(wheel)], check=True)
    site_packages = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True).stdout.strip()
    # Appended after the new environment's own site-packages: its mnist_exp comes first. A .pth line only
    # adds a path, it does not run that directory's .pth files, so this environment's editable
    # install of the checkout (a .pth that hooks the import system) stays out.
    reused = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    Path(site_packages, "reuse_test_environment.pth").write_text("".join(f"{path}\n" for path in reused))
    work = tmp / "my_project"
    work.mkdir()
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "HYDRA_FULL_ERROR", "MNIST_EXP_DATA",
                          "MNIST_EXP_OUTPUTS")}
    return Install(env_dir, env_dir / "bin", work, env)


def composed_config(run_dir: Path) -> dict:
    return OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "config.yaml"))


def test_the_wheel_is_what_gets_imported_and_has_its_configs(installed):
    probe = ("import json, os, mnist_exp, mnist_exp.data; from mnist_exp.paths import CONF_DIR, default_data_dir;"
             "cached = str(default_data_dir()); os.environ['MNIST_EXP_DATA'] = 'mine';"
             "print(json.dumps([mnist_exp.__file__, str(CONF_DIR), cached, str(default_data_dir())]))")
    cache = installed.work / "cache"
    module, conf_dir, data_dir, data_dir_from_env = json.loads(
        installed.run(installed.bin / "python", "-c", probe, env={"XDG_CACHE_HOME": str(cache)}).stdout)
    assert Path(module).is_relative_to(installed.venv), module
    assert Path(conf_dir) == Path(module).parent / "conf"
    assert {"config.yaml", "augment", "experiment"} <= {path.name for path in Path(conf_dir).iterdir()}
    assert {path.name for path in Path(conf_dir, "experiment").glob("*.yaml")} == {
        path.name for path in (REPO / "conf" / "experiment").glob("*.yaml")}
    # Outside a checkout the data goes to the per-user cache; MNIST_EXP_DATA still wins.
    assert Path(data_dir) == cache / "mnist_exp"
    assert data_dir_from_env == "mine"


def test_a_fake_data_run_outside_the_checkout(installed):
    run_dir = installed.train("-m", "mnist_exp", "experiment=smoke", "trainer.epochs=1")
    assert read_metrics(run_dir)["status"] == "completed"
    config = composed_config(run_dir)
    assert (config["dataset"]["name"], config["model"]["width"], config["trainer"]["epochs"]) == ("fake", 8, 1)

    # The console script of compare reads it back.
    table = installed.run(installed.bin / "mnist-exp-compare", run_dir, "--runs", "--format", "csv").stdout
    assert str(run_dir) in table


def test_an_own_experiment_from_an_own_config_dir(installed):
    my_conf = installed.work / "my_conf"
    (my_conf / "experiment").mkdir(parents=True)
    (my_conf / "experiment" / "mine.yaml").write_text(MY_EXPERIMENT)

    run_dir = installed.train("-m", "mnist_exp", "--config-dir", my_conf, "experiment=mine")
    assert read_metrics(run_dir)["status"] == "completed"
    config = composed_config(run_dir)
    assert (config["model"]["name"], config["dataset"]["name"], config["trainer"]["batch_size"]) == (
        "logreg", "fake", 32)

    # hydra.searchpath is the other way to add it.
    printed = installed.run(installed.bin / "python", "-m", "mnist_exp", f"hydra.searchpath=[file://{my_conf}]",
                            "experiment=mine", "--cfg", "job").stdout
    assert yaml.safe_load(printed)["trainer"]["batch_size"] == 32


def test_an_own_registered_model(installed):
    (installed.work / "my_train.py").write_text(MY_TRAIN)
    run_dir = installed.train("my_train.py", "model=tiny", "model.width=4", "dataset=fake", "trainer.epochs=1")
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed"
    assert composed_config(run_dir)["model"] == {"name": "tiny", "width": 4}
    assert metrics["params"] == 784 * 4 + 4 + 4 * 10 + 10  # the tiny net, not a built-in


def test_every_console_script_runs_and_answers_help(installed):
    """The five scripts pip wrote, each run (all at once): training's help lists the shipped configs, each tool's
    is its own parser's, under the script's name."""
    processes = {script: subprocess.Popen([installed.bin / script, "--help"], cwd=installed.work, env=installed.env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for script in SCRIPTS}
    answers = {script: (process.communicate(timeout=300), process.returncode) for script, process in processes.items()}
    answers = {script: (code, out, err) for script, ((out, err), code) in answers.items()}
    assert {script: (code, err) for script, (code, _, err) in answers.items()} == {script: (0, "") for script in SCRIPTS}

    help_text = answers["mnist-exp"][1]
    assert help_text.startswith("mnist_exp: train an image classifier on MNIST, configured with Hydra.\n")
    groups = dict(line.strip().split(":", 1) for line in help_text.split("== Config groups (group=option) ==\n")[1]
                  .split("\n\n")[0].splitlines())
    assert groups["experiment"].strip().split(", ") == sorted(path.stem for path in
                                                              (REPO / "conf" / "experiment").glob("*.yaml"))
    assert groups["model"].strip().split(", ") == sorted(path.stem for path in (REPO / "conf" / "model").glob("*.yaml"))

    from mnist_exp.tools import compare, evaluate, export, predict

    for tool in (evaluate, predict, export, compare):
        script = f"mnist-exp-{tool.__name__.rsplit('.', 1)[1]}"
        out = answers[script][1]
        assert out.startswith(f"usage: {script} [-h]"), out
        assert " ".join(tool.arguments().description.split()) in " ".join(out.split())


def test_an_optuna_search_from_the_wheel(installed):
    pytest.importorskip("optuna")
    # Hydra's own plugin scan finds the sweeper in the installed hydra_plugins namespace.
    probe = ("import sys; from hydra.core.plugins import Plugins; from hydra.plugins.sweeper import Sweeper;"
             "print(*[sys.modules[c.__module__].__file__ for c in Plugins.instance().discover(Sweeper)"
             " if c.__module__ == 'hydra_plugins.mnist_exp_optuna.optuna_sweeper'])")
    [sweeper_file] = installed.run(installed.bin / "python", "-c", probe).stdout.split()
    assert Path(sweeper_file).is_relative_to(installed.venv), sweeper_file

    sweep_dir = installed.work / "search"
    installed.run(installed.bin / "mnist-exp", "-m", "hparams_search=cnn_optuna", "hydra/sweeper/pruner=median",
                  "hydra.sweeper.n_trials=2", "dataset=fake", "trainer.epochs=2", "model.width=4", "device=cpu",
                  "device.threads=1", f"hydra.sweep.dir={sweep_dir}")
    import optuna

    study = optuna.load_study(study_name="cnn_optuna", storage=f"sqlite:///{sweep_dir}/optuna.db")
    assert [trial.state.name for trial in study.trials] == ["COMPLETE"] * 2
    assert all(list(trial.intermediate_values) == [1, 2] and trial.intermediate_values[2] == trial.value
               for trial in study.trials)  # the jobs reported each epoch
    assert yaml.safe_load((sweep_dir / "best_trial.yaml").read_text())["value"] == study.best_value
