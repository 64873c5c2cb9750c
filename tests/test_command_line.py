"""The command line is read once, as Hydra and OmegaConf read it, and every pre-check takes that reading.

``resume=yes`` is ``resume=true`` everywhere: a completed run is returned untouched, not overwritten,
and its ``.hydra/`` is not rewritten. ``--help`` and ``glob()`` list every option a group has,
builders registered in code (``adadelta``) among them.
"""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import run_main
from mnist_exp.errors import UserError
from mnist_exp.run.command_line import parse_command_line
from mnist_exp.run.options import group_options
from mnist_exp.run.prechecks import check_command_line
from mnist_exp.runs import read_metrics

TINY = ("dataset=fake", "dataset.num_train=128", "trainer.batch_size=64", "dataset.val_size=64", "dataset.num_test=64", "model=logreg",
        "trainer.epochs=1", "device=cpu", "device.threads=1")
TRUE_WORDS = ["resume=true", "resume=yes", "resume=True", "resume=1", "resume=on", "++resume=Yes", "resume=ON"]
FALSE_WORDS = ["resume=false", "resume=no", "resume=0", "resume=off"]  # ~resume: refused, as is removing any key


@pytest.mark.parametrize("word", TRUE_WORDS)
def test_every_way_of_writing_true_resumes(word):
    assert parse_command_line([word]).resume is True


@pytest.mark.parametrize("word", FALSE_WORDS + ["model=cnn"])
def test_every_way_of_writing_false_starts_fresh(word):
    assert parse_command_line([word]).resume is False


@pytest.mark.parametrize("words, message", [
    (["resume=maybe"], "resume=maybe is not true or false: give true or false, e.g. resume=true."),
    (["-m", "resume=true,false"], "resume=true,false: resume says how a run starts, not what it trains, so it cannot "
                                  "be swept. Give resume=true or leave it out."),
])
def test_a_resume_that_is_no_boolean_is_one_line(words, message):
    with pytest.raises(UserError) as refused:
        check_command_line(parse_command_line(words))
    assert str(refused.value) == message


@pytest.mark.parametrize("empty", ["", " "])
def test_an_empty_outputs_variable_is_refused_not_taken_for_the_root(empty, monkeypatch):
    monkeypatch.setenv("MNIST_EXP_OUTPUTS", empty)
    with pytest.raises(UserError, match=r"^MNIST_EXP_OUTPUTS is set but empty: give it a directory, or unset it for "
                                        r"\./outputs\.$"):
        check_command_line(parse_command_line(["dataset=fake"]))


def test_the_reading_takes_hydras_forms_of_the_mode_and_the_directories(tmp_path):
    command = parse_command_line(["hydra.mode=MULTIRUN", f"hydra.sweep.dir={tmp_path}", "hparams_search=cnn_optuna",
                                  "hydra.run.dir=${now:%H}", "--config-dir", str(tmp_path)])
    assert command.multirun and command.search and not command.prints_only
    assert command.sweep_dir == tmp_path and command.run_dir is None  # an interpolation is Hydra's to resolve
    assert command.config_dir == str(tmp_path)
    assert parse_command_line(["--cfg", "job", "model=cnn"]).prints_only


@pytest.fixture(scope="module")
def completed(tmp_path_factory):
    """A completed single run, and the files it wrote as they were."""
    run_dir = tmp_path_factory.mktemp("completed") / "run"
    with pytest.MonkeyPatch.context() as monkeypatch:
        code, _, _ = run_main(*TINY, f"hydra.run.dir={run_dir}", monkeypatch=monkeypatch, cwd=run_dir.parent)
    assert code == 0 and read_metrics(run_dir)["status"] == "completed"
    return run_dir


def files_of(run_dir: Path) -> dict[str, bytes]:
    return {str(path.relative_to(run_dir)): path.read_bytes() for path in sorted(run_dir.rglob("*"))
            if path.is_file() and path.name != "train.log"}


@pytest.mark.parametrize("word", TRUE_WORDS)
def test_resume_written_any_way_returns_a_completed_run_untouched(completed, word, tmp_path, monkeypatch, capsys):
    before = files_of(completed)
    code, out, err = run_main(*TINY, word, f"hydra.run.dir={completed}", monkeypatch=monkeypatch, capsys=capsys,
                              cwd=tmp_path)
    assert code == 0, err
    assert files_of(completed) == before  # .hydra/, metrics.json, checkpoints and event files byte for byte
    assert "is complete (test accuracy" in (completed / "train.log").read_text().splitlines()[-1]


@pytest.mark.parametrize("word", FALSE_WORDS)
def test_a_new_run_written_any_way_is_refused_a_completed_runs_directory(completed, word, tmp_path, monkeypatch,
                                                                          capsys):
    before = files_of(completed)
    code, _, err = run_main(*TINY, word, f"hydra.run.dir={completed}", monkeypatch=monkeypatch, capsys=capsys,
                            cwd=tmp_path)
    assert code == 1 and err.splitlines() == [
        f"{completed} holds a completed run; a new run there would overwrite it. Start fresh elsewhere (leave out "
        "hydra.run.dir, or give a new one), or see the run with resume=true."]
    assert files_of(completed) == before


@pytest.mark.parametrize("resume", [[], ["resume=true"]])
def test_a_completed_run_given_its_own_checkpoint_is_refused_with_advice_that_runs(completed, resume, tmp_path,
                                                                                   monkeypatch, capsys):
    """A ckpt_path starts a new run, resume=true or not: the advice to see the run with resume=true said to keep
    the ckpt_path beside it, which was refused again; it now says to leave it out."""
    before = files_of(completed)
    code, _, err = run_main(*TINY, f"ckpt_path={completed / 'checkpoints' / 'last.pt'}", *resume,
                            f"hydra.run.dir={completed}", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines() == [
        f"{completed} holds a completed run; a new run there would overwrite it. Start fresh elsewhere (leave out "
        "hydra.run.dir, or give a new one), or see the run with resume=true and without ckpt_path."]
    code, _, err = run_main(*TINY, "resume=true", f"hydra.run.dir={completed}", monkeypatch=monkeypatch, capsys=capsys,
                            cwd=tmp_path)
    assert code == 0, err
    assert files_of(completed) == before


@pytest.mark.parametrize("record, what", [("metrics.json", "a failed run"), ("metrics.json", "a stopped run"),
                                          ("multirun.yaml", "a sweep")])
def test_a_new_run_is_refused_a_directory_of_another_run_or_a_sweep(record, what, tmp_path, monkeypatch, capsys):
    """A failed run, or one stopped with no checkpoint to continue, keeps its log and events; a sweep, its jobs."""
    held = tmp_path / "held"
    held.mkdir()
    (held / record).write_text(json.dumps({"status": what.split()[1]}) if record == "metrics.json" else "hydra: {}\n")
    code, _, err = run_main(*TINY, f"hydra.run.dir={held}", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines() == [
        f"{held} holds {what}; a new run there would mix its files with those. Start fresh elsewhere (leave out "
        "hydra.run.dir, or give a new one), or delete that directory first."]
    assert [path.name for path in held.iterdir()] == [record]


@pytest.mark.parametrize("resume", [[], ["resume=true"]])
def test_a_run_from_a_ckpt_path_is_a_new_run_recorded_in_its_own_directory(resume, completed, tmp_path, monkeypatch,
                                                                          capsys):
    before = files_of(completed)
    code, _, err = run_main(*TINY, f"ckpt_path={completed}", *resume, f"hydra.run.dir={tmp_path / 'new'}",
                            monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err
    assert f"ckpt_path={completed}" in yaml.safe_load((tmp_path / "new" / ".hydra" / "overrides.yaml").read_text())
    assert read_metrics(tmp_path / "new")["status"] == "completed" and files_of(completed) == before


def test_a_ckpt_path_of_null_resumes_in_place_and_one_into_a_runs_directory_is_refused(completed, tmp_path,
                                                                                        monkeypatch, capsys):
    before = files_of(completed)
    code, _, err = run_main(*TINY, "resume=true", "ckpt_path=null", f"hydra.run.dir={completed}",
                            monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err
    code, _, err = run_main(*TINY, "resume=true", f"ckpt_path={completed}", f"hydra.run.dir={completed}",
                            monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines()[0].startswith(f"{completed} holds a completed run; a new run there")
    assert files_of(completed) == before  # .hydra/ as its first start wrote it


def test_a_grid_sweep_is_refused_a_runs_directory(completed, tmp_path, monkeypatch, capsys):
    before = files_of(completed)
    code, _, err = run_main("-m", *TINY, "seed=0,1", f"hydra.sweep.dir={completed}", monkeypatch=monkeypatch,
                            capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines() == [
        f"{completed} holds a completed run; a grid sweep there would mix its jobs with that. Give the sweep a new "
        "hydra.sweep.dir, or leave it out."]
    assert files_of(completed) == before


@pytest.mark.parametrize("word", ["resume=on", "resume=1"])
def test_a_sweep_resumed_any_way_needs_its_sweep(word, tmp_path, monkeypatch, capsys):
    code, _, err = run_main("-m", *TINY, word, f"hydra.sweep.dir={tmp_path / 'none'}", monkeypatch=monkeypatch,
                            capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines() == [
        f"resume=true, but {tmp_path / 'none'} holds no sweep (no multirun.yaml). Give the directory of the sweep to "
        f"continue, hydra.sweep.dir={tmp_path}/outputs/multirun/<date>/<time>."]  # where MNIST_EXP_OUTPUTS puts them


def test_print_the_config_of_a_completed_runs_directory_writes_nothing(completed, tmp_path, monkeypatch, capsys):
    before = files_of(completed)
    for resume in ([], ["resume=true"]):  # with resume=true, the overrides the app adds go beside the user's
        code, out, err = run_main(*TINY, f"hydra.run.dir={completed}", *resume, "--cfg", "job",
                                  monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
        assert code == 0 and "model:\n  name: logreg" in out and files_of(completed) == before, err


def test_help_lists_every_option_of_every_group(tmp_path, monkeypatch, capsys):
    code, out, _ = run_main("--help", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0
    lines = {line.split(":")[0].strip(): line.split(":", 1)[1].strip() for line in out.split("== Config groups")[1]
             .split("==")[1].strip().splitlines()}
    assert lines["optimizer"] == "adadelta, adam, adamw, sgd"
    for group in ("dataset", "model", "optimizer", "scheduler", "augment", "device", "experiment", "hparams_search"):
        assert lines[group] == ", ".join(group_options(group)), group


def test_glob_sweeps_over_the_builders_registered_in_code(tmp_path, monkeypatch, capsys):
    code, _, err = run_main("-m", *TINY, "optimizer=glob(adad*)", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                            monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err
    [job] = [path for path in (tmp_path / "sweep").iterdir() if path.is_dir()]
    assert "- optimizer=adadelta" in (job / ".hydra" / "overrides.yaml").read_text().splitlines()
    assert read_metrics(job)["status"] == "completed"
    with pytest.raises(UserError, match=r"^optimizer=glob\(zz\*\) matches no optimizer config: choose from adadelta, "
                                        r"adam, adamw, sgd\.$"):
        check_command_line(parse_command_line(["-m", "optimizer=glob(zz*)"]))


USER_SCRIPT = """
import sys
from torch import nn
from mnist_exp.registry import MODELS

@MODELS.register("tiny")
def tiny(num_classes: int, width: int = 8):
    return nn.Sequential(nn.Flatten(), nn.Linear(784, width), nn.ReLU(), nn.Linear(width, num_classes))

from mnist_exp.app import main
main()
"""


@pytest.mark.slow
def test_a_users_own_builder_is_an_option_in_help_glob_and_did_you_mean(tmp_path):
    script = tmp_path / "my_train.py"
    script.write_text(USER_SCRIPT)

    def run(*args):
        return subprocess.run([sys.executable, str(script), *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=300, env={**os.environ, "MNIST_EXP_OUTPUTS": str(tmp_path / "out")})

    shown = run("--help")
    assert shown.returncode == 0 and "  model:          cnn, conv_fc, logreg, mlp, strided_cnn, tiny, vgg_cnn" in shown.stdout
    wrong = run("model=tiy")
    assert wrong.returncode == 1 and wrong.stderr.strip().splitlines() == [
        "model=tiy: there is no such option. Did you mean 'tiny'? Options of model: cnn, conv_fc, logreg, mlp, "
        "strided_cnn, tiny, vgg_cnn."]
    # Advice to type a command again names this script, which registers tiny, not python -m mnist_exp, which does not.
    sweep = [*(arg for arg in TINY if not arg.startswith("model=")), f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    without_m = run("model=glob(ti*)", *sweep)
    assert without_m.returncode == 1 and without_m.stderr.strip() == (
        "model=glob(ti*) is a sweep: add -m to run one job for each value "
        f"(python {script} -m 'model=glob(ti*)' ...).")
    swept = run(*shlex.split(without_m.stderr.partition(f"(python {script} ")[2].removesuffix(" ...).\n")), *sweep)
    assert swept.returncode == 0, swept.stderr
    [job] = [path for path in (tmp_path / "sweep").iterdir() if path.is_dir()]
    assert "- model=tiny" in (job / ".hydra" / "overrides.yaml").read_text().splitlines()
