"""The Optuna search (hydra/sweeper=optuna, mnist_exp.sweeps.search): its search space, pruning, many workers on one study.

Skipped where Optuna (the sweep extra) is not installed. The searches train an mlp on fake data
for two epochs; the one learning rate that cannot learn (1e-9) is what the median pruner stops. The
searches here run their jobs in processes of their own (joblib's workers, two workers on one study) and
the dashboard is a server: those tests are slow.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
import yaml

from conftest import REPO, read_metrics, run_app, run_dirs, run_main
from conftest import free_port, kill_at_creation
from test_sweeps import check_summary_matches_jobs, read_summary, sweep_dir_of

from mnist_exp.data import TensorLoader, build_dataset
from mnist_exp.errors import UserError
from mnist_exp.registry import MODELS
from mnist_exp.run.checkpoint import load_checkpoint
from mnist_exp.run.trainer import evaluate
from mnist_exp.runs import read_predictions
from mnist_exp.tools import compare

optuna = pytest.importorskip("optuna")

from mnist_exp.sweeps.space import override_value, search_space  # noqa: E402 (needs Optuna)

HOPELESS, GOOD = 1e-9, 0.05
# Random proposals (seed 0: good, hopeless, good, good, hopeless, hopeless); the median pruner judges from the
# first completed trial on, at every epoch.
PRUNED_SEARCH = ("-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=0",
                 "hydra/sweeper/pruner=median", "hydra.sweeper.pruner.n_startup_trials=1",
                 f"optimizer.lr=choice({HOPELESS},{GOOD})", "model=mlp", "optimizer=sgd", "scheduler=none",
                 "dataset=fake", "trainer.epochs=2")


def load_study(storage: str, name: str = "search"):
    return optuna.load_study(study_name=name, storage=storage)


def test_the_search_space_in_hydra_sweep_syntax():
    space, fixed = search_space(["a=interval(0.1,0.5)", "b=tag(log, interval(1e-5, 1e-1))",
                                 "c=tag(int, interval(8,64))", "d=range(8,33,8)", "e=choice(sgd,adam)", "f=1,2",
                                 "g=range(0.1,0.35,0.1)", "model.width=choice(8,16)", "model.width=4", "h=5", "h=choice(1,2)",
                                 "optimizer.lr=interval(1e-4,1e-2)", "++optimizer.lr=0.001"])
    d = optuna.distributions
    assert space["a"] == d.FloatDistribution(0.1, 0.5)
    assert space["b"] == d.FloatDistribution(1e-5, 1e-1, log=True)
    assert space["c"] == d.IntDistribution(8, 64)
    assert space["d"] == d.IntDistribution(8, 32, step=8)  # range() stops before its end, as Python's
    assert space["e"] == d.CategoricalDistribution(["sgd", "adam"])
    assert space["f"] == d.CategoricalDistribution([1, 2])
    assert space["g"] == d.FloatDistribution(0.1, 0.3, step=0.1)
    # A later line for a key wins: a fixed value takes a key out of the space, a sweep puts it back in.
    assert "model.width" not in space and "optimizer.lr" not in space  # ++key=value fixes it as key=value does
    assert fixed == ["model.width=4", "++optimizer.lr=0.001"]
    assert space["h"] == d.CategoricalDistribution([1, 2])


def test_an_empty_range_in_a_searchs_params_is_refused():
    with pytest.raises(UserError, match=re.escape("d=range(8,4) sweeps over no values: range(start,stop,step) stops "
                                                  "before stop")):
        search_space(["d=range(8,4)"])


@pytest.mark.parametrize("line, message", [
    ("d=interval(8,4)", "d=interval(8,4): an interval goes from low to high, e.g. interval(4,8)."),
    ("d=tag(log,interval(0,1))", "d=tag(log,interval(0,1)): a log scale needs both ends above 0."),
    ("d=tag(loq,interval(1,2))", "d=tag(loq,interval(1,2)): a search reads the tags log and int, and no tag loq. Did "
                                 "you mean 'log'?"),
    ("d=tag(log,choice(8,16))", "d=tag(log,choice(8,16)): a search reads tags on an interval alone, e.g. "
                                "tag(log,interval(0.0001,0.1)), and tries a listed value as listed: leave the tag out."),
])
def test_an_interval_optuna_cannot_sample_is_refused(line, message):
    with pytest.raises(UserError) as refused:
        search_space([line])
    assert str(refused.value) == message


def test_a_suggested_value_reads_back_as_the_same_override():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    values = [0.001, 1e-05, 3.0e-12, 64, True, False, "sgd", "a b", "it's"]
    parsed = OverridesParser.create().parse_overrides([f"k={override_value(value)}" for value in values])
    assert [override.value() for override in parsed] == values


def test_the_sweeper_is_this_checkouts_and_its_options_compose(tmp_path, monkeypatch, capsys):
    import hydra_plugins.mnist_exp_optuna.optuna_sweeper as sweeper_module
    import mnist_exp.sweeps.search as search_module

    files = [sweeper_module.__file__, search_module.__file__]
    assert all(Path(file).is_relative_to(REPO / "mnist_exp") for file in files), files  # not an installed copy

    code, out, _ = run_main("hparams_search=cnn_optuna", "hydra/sweeper/sampler=gp", "hydra/sweeper/pruner=hyperband",
                            "--cfg", "hydra", "-p", "hydra.sweeper", monkeypatch=monkeypatch, capsys=capsys,
                            cwd=tmp_path)
    sweeper = yaml.safe_load(out)
    assert code == 0
    assert sweeper["_target_"] == "hydra_plugins.mnist_exp_optuna.optuna_sweeper.OptunaSweeper"
    assert sweeper["sampler"]["_target_"] == "optuna.samplers.GPSampler"
    assert sweeper["pruner"]["_target_"] == "optuna.pruners.HyperbandPruner"
    assert sweeper["study_name"] == "cnn_optuna" and sweeper["storage"].endswith("/optuna.db")


@pytest.mark.parametrize("override, message", [
    ("hydra.sweeper.direction=maximise", "hydra.sweeper.direction=maximise is not one of: maximize, minimize. "
                                         "Did you mean 'maximize'?"),
    ("optimized_metric=test/acc", "optimized_metric=test/acc is not measured after every epoch"),
    ("hydra.sweeper.direction=null", "hydra.sweeper.direction=null is not one of: maximize, minimize."),
    ("hydra.sweeper.heartbeat_interval=0", "hydra.sweeper.heartbeat_interval=0 is out of range: give at least 1, or "
                                           "null for no heartbeats."),
    ("hydra.sweeper.max_retry=-2", "hydra.sweeper.max_retry=-2 is out of range: give at least 0, or null for retries "
                                   "without end."),
    ("optimized_metric=val/loss", "optimized_metric=val/loss is better lower, and to maximize it would search for the "
                                  "worst trial: give hydra.sweeper.direction=minimize."),
    ("trainer.batch_size=range(64,32)", "trainer.batch_size=range(64,32) sweeps over no values"),
    ("hydra.sweeper.pruner.n_startup_trials=-3", "Cannot build the pruner MedianPruner from "
     "hydra.sweeper.pruner.n_startup_trials=-3, hydra.sweeper.pruner.n_warmup_steps=0, "
     "hydra.sweeper.pruner.interval_steps=1: Number of startup trials cannot be negative, but got n_startup_trials=-3."),
    ("hydra.sweeper.custom_search_space=os.getcwd", "hydra.sweeper.custom_search_space=os.getcwd is called with "
     "(config, trial) and takes other arguments: give a function of those two, as "
     "mnist_exp.sweeps.space.momentum_for_sgd."),
    ("hydra.sweeper.storage=.", "hydra.sweeper.storage=. is a directory: give the study's file in it, e.g. "
                                "hydra.sweeper.storage=journal.log."),
    ("trainer.epochs=1", "hydra.sweeper.pruner stops a trial between its epochs, and trainer.epochs=1 has none: train 2 "
                         "epochs or more, or hydra/sweeper/pruner=none."),
    ("hydra.sweeper.pruner.n_warmup_steps=2", "hydra.sweeper.pruner.n_warmup_steps=2: the pruner judges a trial from "
     "epoch 2 on, and a trial of trainer.epochs=2 is judged after epoch 1 only: give at most 1, or train more epochs "
     "(trainer.epochs=3)."),  # it pruned no trial
    ("trainer.batch_size=interval(32,64)", "trainer.batch_size takes whole numbers, and the search would draw numbers "
                                           "such as 48.1 for it: give trainer.batch_size=int(interval(32,64))."),
    ("+hydra.sweeper.sampler.n_startup_trials=5", "The sampler RandomSampler has no setting n_startup_trials: leave "
     "out hydra.sweeper.sampler.n_startup_trials, or remove it from a config that sets it with "
     "'~hydra.sweeper.sampler.n_startup_trials'."),
    ("hydra.sweeper.sampler.seed=abc", "hydra.sweeper.sampler.seed=abc is not a seed: give a whole number from 0 to "
     "2**32-1, e.g. hydra.sweeper.sampler.seed=0, or leave it out for a random start."),
    ("hydra.sweeper.sampler.seed=1.5", "hydra.sweeper.sampler.seed=1.5 is not a seed"),
    ("trainer.batch_size=choice(32,48.5)", "trainer.batch_size=48.5 is not a whole number: give a whole number, e.g. "
                                           "trainer.batch_size=48."),  # as a grid sweep's values are, before any trial
    ("hydra.sweeper.pruner.n_startup_trails=2", "Unknown key 'hydra.sweeper.pruner.n_startup_trails'. Did you mean "
     "'hydra.sweeper.pruner.n_startup_trials' (a key of hydra/sweeper/pruner=median)? The keys of "
     "hydra/sweeper/pruner's options: interval_steps, "),
    ("hydra.sweeper.pruner.min_resource=1", "hydra.sweeper.pruner.min_resource is not a key of the pruner chosen. "
                                            "hydra/sweeper/pruner=hyperband has min_resource: choose it."),
    ("hydra.sweeper.trial=7", "hydra.sweeper.trial=7 is the search's to set, in each job to the number of the trial it "
                              "runs: leave it out."),
    # A search's sampler and pruner: removed, null, several, or a name given to the key (no class to build).
    ("~hydra/sweeper/pruner", "~hydra/sweeper/pruner: a search needs a hydra/sweeper/pruner. Give it one of its "
                              "options: hyperband, median, none."),
    ("hydra/sweeper/sampler=null", "hydra/sweeper/sampler=null: a search needs a hydra/sweeper/sampler. Give it one of "
                                   "its options: cmaes, gp, grid, nsgaii, qmc, random, tpe."),
    ("hydra/sweeper/pruner=[median,none]", "hydra/sweeper/pruner=[median,none]: a search has one pruner: give one, "
                                           "hydra/sweeper/pruner=median."),
    ("hydra.sweeper.pruner=hyperband", "hydra.sweeper.pruner=hyperband: a search's pruner is chosen with its group: "
     "give hydra/sweeper/pruner=hyperband (its settings: hydra.sweeper.pruner.<key>=<value>)."),
    ("hydra.sweeper.sampler=null", "hydra.sweeper.sampler=null: a search's sampler is chosen with its group: give one "
     "of its options, hydra/sweeper/sampler=cmaes|gp|grid|nsgaii|qmc|random|tpe"),
])
def test_a_wrong_search_setting_is_one_line_before_any_trial(override, message, tmp_path, monkeypatch, capsys):
    code, out, err = run_main(*PRUNED_SEARCH, override, monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1
    assert message in err and "Traceback" not in err
    assert not run_dirs(tmp_path)


def test_a_misspelt_key_of_the_space_is_refused_before_the_study_and_the_advice_then_searches(tmp_path, monkeypatch,
                                                                                                capsys):
    args = ("-m", "hparams_search=cnn_optuna", "hydra.sweeper.n_trials=1", "dataset=fake", "trainer.epochs=1",
            "device.threads=1", "hydra.sweep.dir=search")
    code, _, err = run_main(*args, "optimizer.lrr=interval(0.001,0.01)", monkeypatch=monkeypatch, capsys=capsys,
                            cwd=tmp_path)
    assert code == 1 and err.splitlines() == [
        "Unknown key 'optimizer.lrr'. Did you mean 'optimizer.lr'? The keys of optimizer: name, lr, betas, "
        "weight_decay, eps."]
    assert not (tmp_path / "search").exists()  # no study made: the corrected command starts it with its own space
    code, _, err = run_main(*args, "optimizer.lr=interval(0.001,0.01)", monkeypatch=monkeypatch, capsys=capsys,
                            cwd=tmp_path)
    assert code == 0 and (tmp_path / "search" / "best_trial.yaml").is_file(), err[-2000:]


def test_a_refused_setting_of_an_experimental_sampler_is_one_line(tmp_path, monkeypatch, capsys, recwarn):
    code, _, err = run_main("-m", "hparams_search=cnn_optuna", "hydra/sweeper/sampler=qmc",
                            "hydra.sweeper.sampler.qmc_type=foo", "dataset=fake", monkeypatch=monkeypatch, capsys=capsys,
                            cwd=tmp_path)
    assert code == 1 and err.splitlines() == [  # no ExperimentalWarning on its line
        "Cannot build the sampler QMCSampler from hydra.sweeper.sampler.seed=null, hydra.sweeper.sampler.qmc_type=foo, "
        "hydra.sweeper.sampler.scramble=false: The `qmc_type='foo'` is invalid. Choose either `halton` or `sobol`."]
    assert not [w for w in recwarn if w.category.__name__ == "ExperimentalWarning"]  # on stderr outside pytest


@pytest.mark.parametrize("setting, message", [
    # Optuna takes it, then divides by its logarithm once the first trial reports an epoch: every trial failed.
    ("reduction_factor=1", "hydra.sweeper.pruner.reduction_factor=1 is out of range: each round keeps one trial in "
                           "that many, at least 2, e.g. 3."),
    # Two of its three brackets would first judge a trial at epoch 3 or 9: their trials were never pruned.
    ("max_resource=20", "hydra.sweeper.pruner.max_resource=20: Hyperband's brackets that judge trials past epoch 2 "
                        "never prune, and a trial of trainer.epochs=2 ends there: give "
                        "hydra.sweeper.pruner.max_resource=2, or auto (the epochs of the first finished trial)."),
])
def test_a_hyperband_setting_it_would_not_prune_by_is_refused_before_any_trial(setting, message, tmp_path, monkeypatch,
                                                                               capsys):
    code, _, err = run_main("-m", "hparams_search=cnn_optuna", "hydra/sweeper/pruner=hyperband",
                            f"hydra.sweeper.pruner.{setting}", "dataset=fake", "trainer.epochs=2",
                            monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines() == [message]
    assert not run_dirs(tmp_path)


def test_a_launcher_that_would_run_more_jobs_than_the_search_hands_it_is_refused(tmp_path, monkeypatch, capsys):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    code, _, err = run_main(*PRUNED_SEARCH, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", monkeypatch=monkeypatch,
                            capsys=capsys, cwd=tmp_path)  # the trials would still run one at a time
    assert code == 1 and err.splitlines()[-1] == (
        "hydra.launcher.n_jobs=2 runs that many jobs at once, and the search hands it hydra.sweeper.n_jobs=1 trial(s) "
        "at a time: give hydra.sweeper.n_jobs=2 too, for trials asked and run together.")
    assert not run_dirs(tmp_path)


def test_a_launcher_that_counts_its_jobs_back_from_the_cores_is_held_to_the_search_too(tmp_path, monkeypatch, capsys):
    """joblib's -1 (its default) is a job per core: the trials ran one at a time on a machine of several."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    from joblib import effective_n_jobs

    if (cores := effective_n_jobs(-1)) < 2:
        pytest.skip("one core: -1 runs one job at a time, as the search hands them")
    code, _, err = run_main(*PRUNED_SEARCH, "hydra/launcher=joblib", monkeypatch=monkeypatch, capsys=capsys,
                            cwd=tmp_path)
    assert code == 1 and err.splitlines()[-1] == (
        f"hydra.launcher.n_jobs=-1 runs {cores} jobs at once here (joblib counts back from the cores: -1, its default, "
        f"is one per core), and the search hands it hydra.sweeper.n_jobs=1 trial(s) at a time: give "
        f"hydra.sweeper.n_jobs={cores} too, for trials asked and run together.")
    assert not run_dirs(tmp_path)


@pytest.mark.parametrize("settings, message", [
    (["hydra.sweeper.storage={tmp}/journal.log", "hydra.sweeper.heartbeat_interval=10"],
     "hydra.sweeper.heartbeat_interval=10 and max_retry=3 take effect with a database storage, and {tmp}/journal.log "
     "is a journal file, which has no heartbeats: leave them out, or give a database (sqlite:///<file>, "
     "postgresql://...)."),
    (["hydra.sweeper.storage=null", "hydra.sweeper.max_retry=5"],
     "hydra.sweeper.heartbeat_interval=60 and max_retry=5 take effect with a database storage, and "
     "hydra.sweeper.storage=null keeps the study in this process, with no heartbeats: leave them out, or give a "
     "database (sqlite:///<file>, postgresql://...)."),
    (["hydra.sweeper.heartbeat_interval=null", "hydra.sweeper.max_retry=5"],
     "hydra.sweeper.max_retry=5 retries the trials of workers whose heartbeats stopped, and "
     "hydra.sweeper.heartbeat_interval=null sends none: leave max_retry out, or give both."),
])
def test_heartbeat_settings_that_take_no_effect_are_refused(settings, message, tmp_path, monkeypatch, capsys):
    code, _, err = run_main(*PRUNED_SEARCH, *(setting.format(tmp=tmp_path) for setting in settings),
                            monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines()[-1] == message.format(tmp=tmp_path)
    assert not run_dirs(tmp_path)


def test_a_study_continues_only_as_it_began_and_never_over_other_runs(tmp_path, monkeypatch, capsys):
    sweep = tmp_path / "search"
    first = ("-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=0",
             "model=logreg", "optimizer.lr=interval(0.01,0.1)", "dataset=fake", "trainer.epochs=1", "device=cpu",
             "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={sweep}")
    code, _, err = run_main(*first, "hydra.sweeper.n_trials=0", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines()[-1] == ("hydra.sweeper.n_trials=0 runs no trial, and study search has none "
                                                  "to report: give hydra.sweeper.n_trials=1 or more.")
    assert not sweep.exists()  # no empty study for make compare or make dashboard to pick
    code, _, err = run_main(*first, monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err[-3000:]
    (job,) = run_dirs(sweep)
    recorded = (job / "metrics.json").read_bytes()
    overwritten = (f"{sweep} holds 1 run(s) this search would overwrite, not trials of its study: give a new "
                   "hydra.sweep.dir (or leave it out), or continue the study that made them.")
    for changes, message in [
        (["hydra.sweeper.direction=minimize", "optimized_metric=val/loss"],
         f"Study search in sqlite:///{sweep}/optuna.db is a search to maximize best_val/acc, and this command would "
         "minimize val/loss. Continue it with its own direction and metric, or start another in a new "
         "hydra.sweep.dir (and a new study_name where the storage is not in it)."),
        (["hydra.sweeper.study_name=another"], overwritten),  # a new study would number its trials from 0 again
        (["hydra.sweeper.storage=null"], overwritten),
        (["resume=true"], "resume=true continues a grid sweep. A search continues its study when run again: the same "
                          "command without resume=true (the same hydra.sweep.dir, or storage and study_name)."),
        (["trainer.epochs=2"], f"Study search in sqlite:///{sweep}/optuna.db searches with dataset=fake model=logreg "
         "trainer.epochs=1, and this command gives dataset=fake model=logreg trainer.epochs=2: its trials would be "
         "ranked with trials of another experiment. Continue it with the same overrides, or start another in a new "
         "hydra.sweep.dir (and a new study_name where the storage is not in it)."),
        (["device.precision=bf16"], f"Study search in sqlite:///{sweep}/optuna.db trains its trials in fp32, and this "
         "command would in bf16: continue it with device.precision=fp32, or start another in a new hydra.sweep.dir "
         "(and a new study_name where the storage is not in it)."),  # device=cpu: fp32
        ([], f"hydra.sweeper.sampler.seed=0: Study search in sqlite:///{sweep}/optuna.db has 1 trial(s), and a sampler "
             "made anew with a seed repeats its draws, proposing trials the study has run: leave the seed out to "
             "continue it."),  # the random sampler would draw trial 0's learning rate again
    ]:
        code, _, err = run_main(*first, *changes, monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
        assert code == 1 and err.splitlines()[-1] == message, (changes, err[-2000:])
    choices = [arg.replace("interval(0.01,0.1)", "choice(0.01,0.1)") for arg in first]  # another kind of space
    code, _, err = run_main(*choices, monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines()[-1] == (
        f"optimizer.lr: Study search in sqlite:///{sweep}/optuna.db searched it as numbers in [0.01, 0.1], and this "
        "command as a choice in [0.01, 0.1], which Optuna cannot mix in one study (Cannot set different distribution "
        "kind to the same parameter name). Continue it with its own space, or start another in a new hydra.sweep.dir "
        "(and a new study_name where the storage is not in it).")
    code, _, err = run_main("-m", "model=logreg", "seed=0,1", "dataset=fake", f"hydra.sweep.dir={sweep}",
                            monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)  # a grid
    assert code == 1 and err.splitlines()[-1] == (
        f"{sweep} holds an Optuna search (optuna.db), which continues when its own command runs again; a grid sweep "
        "there would mix its jobs with that. Give the sweep a new hydra.sweep.dir, or leave it out.")
    assert run_dirs(sweep) == [job] and (job / "metrics.json").read_bytes() == recorded
    assert optuna.get_all_study_names(f"sqlite:///{sweep}/optuna.db") == ["search"]  # none made by a refused command
    # Continued as it began, less the seed, typed in another order; where and how its trials run may change.
    unseeded = [arg for arg in first[1:] if not arg.startswith("hydra.sweeper.sampler.seed=")]
    code, _, err = run_main("-m", *reversed(unseeded), "device.threads=1", monkeypatch=monkeypatch, capsys=capsys,
                            cwd=tmp_path)
    assert code == 0 and len(load_study(f"sqlite:///{sweep}/optuna.db").trials) == 2, err[-3000:]
    code, out, err = run_main("-m", *unseeded, "hydra.sweeper.n_trials=0", monkeypatch=monkeypatch, capsys=capsys,
                              cwd=tmp_path)  # the best trial so far, nothing run
    assert code == 0 and "Study search: 2 trials (2 complete)" in out and "Best trial: " in out, err[-3000:]
    assert len(run_dirs(sweep)) == 2
    code, _, err = run_main(*first, "hydra.sweeper.direction=minimize", "optimized_metric=val/loss",  # the advice
                            f"hydra.sweep.dir={tmp_path / 'another'}", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err[-3000:]


@pytest.mark.slow
def test_a_search_of_another_study_is_refused_the_directory_of_one_whose_job_has_no_record_yet(tmp_path, monkeypatch,
                                                                                               capsys):
    """The first search's job 0 has no record yet (killed as it started here; still training, where two searches
    start together): the other study's job 0 would sit beside it, in its sweep.csv, over its multirun.yaml."""
    sweep_dir = tmp_path / "search"
    sweep_dir.mkdir()
    first = subprocess.Popen([sys.executable, "-m", "mnist_exp", *PRUNED_SEARCH, "hydra.sweeper.study_name=first",
                              f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    kill_at_creation(first, sweep_dir, "0_", 1)
    record = (sweep_dir / "multirun.yaml").read_text()
    code, _, err = run_main(*PRUNED_SEARCH, "hydra.sweeper.n_trials=1", "hydra.sweeper.study_name=second",
                            f"hydra.sweep.dir={sweep_dir}", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert (code, err.splitlines()) == (1, [
        f"{sweep_dir} is the directory of study first (its multirun.yaml), and this search's study is second: give "
        "this search a new hydra.sweep.dir (or leave it out), or continue that one with "
        "hydra.sweeper.study_name=first."])
    assert len(list(sweep_dir.glob("0_*"))) == 1 and (sweep_dir / "multirun.yaml").read_text() == record
    assert optuna.get_all_study_names(f"sqlite:///{sweep_dir}/optuna.db") == ["first"]


def test_a_grid_search_continues_with_its_seed_on_the_points_not_yet_tried(tmp_path, monkeypatch, capsys):
    """The grid sampler draws from the study's unvisited points, so its seed may stay (Optuna's advice for workers)."""
    grid = ("-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=grid", "hydra.sweeper.sampler.seed=1", "model=logreg",
            "optimizer.lr=choice(0.01,0.1)", "dataset=fake", "trainer.epochs=1", "device=cpu", "device.threads=1",
            "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={tmp_path / 'grid'}")
    for _ in range(2):
        code, _, err = run_main(*grid, monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
        assert code == 0, err[-3000:]
    trials = load_study(f"sqlite:///{tmp_path / 'grid'}/optuna.db").trials
    assert sorted(trial.params["optimizer.lr"] for trial in trials) == [0.01, 0.1]


def test_a_shipped_search_runs_with_any_sampler(tmp_path, monkeypatch, capsys):
    code, _, err = run_main("-m", "hparams_search=cnn_optuna", "hydra/sweeper/sampler=random", "dataset=fake",
                            "trainer.epochs=1", "device=cpu", "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={tmp_path / 's'}",
                            monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err[-3000:]
    assert read_metrics(run_dirs(tmp_path / "s")[0])["status"] == "completed"


def check_trials_match_jobs(study, jobs: list[Path]) -> None:
    """Each trial's state, values and job directory say what the job's metrics.json says."""
    by_number = {int(job.name.split("_")[0]): job for job in jobs}
    assert sorted(by_number) == [trial.number for trial in study.trials]  # job numbers are trial numbers
    for trial in study.trials:
        job = by_number[trial.number]
        metrics = read_metrics(job)
        assert trial.user_attrs["run_dir"] == str(job)
        assert trial.state.name.lower() == {"completed": "complete"}.get(metrics["status"], metrics["status"])
        # One report per epoch trained, the best validation accuracy so far.
        assert sorted(trial.intermediate_values) == list(range(1, metrics["epoch"] + 1))
        assert trial.intermediate_values[metrics["epoch"]] == metrics["best_val/acc"]
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert trial.value == metrics["best_val/acc"]


def accuracy_of_best_checkpoint(run_dir: Path) -> float:
    """The test accuracy of the run's best.pt, rebuilt from the checkpoint alone and evaluated here."""
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    model = MODELS.build(best["config"]["model"], 10)
    model.load_state_dict(best["weights"])
    data = build_dataset(best["config"]["dataset"])
    loader = TensorLoader(data.test, 256, mean=data.mean, std=data.std, flatten=data.flatten)
    return evaluate(model, loader, device=torch.device("cpu"))["acc"]


@pytest.fixture(scope="module")
def pruned_search(tmp_path_factory) -> tuple[Path, str]:
    """Six trials, the median pruner; joblib: each job trains in a worker process, reaching its trial through SQLite."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    cwd = tmp_path_factory.mktemp("pruned_search")
    # A process of its own, as joblib's workers are: loky keeps its workers for the next sweep of the process that
    # started them, and a second sweep from this one would find them with the first one's environment.
    # One trial at a time, each in a joblib worker: a trial's pruning then follows from the trials before it.
    result = run_app(*PRUNED_SEARCH, "hydra.sweeper.n_trials=6", "hydra/launcher=joblib", "hydra.launcher.n_jobs=1",
                     cwd=cwd)
    return sweep_dir_of(cwd / "outputs"), result.stdout


@pytest.mark.slow
def test_hopeless_trials_are_pruned_after_their_first_epoch(pruned_search, capsys):
    sweep_dir, stdout = pruned_search
    study = load_study(f"sqlite:///{sweep_dir}/optuna.db")
    jobs = run_dirs(sweep_dir)
    check_trials_match_jobs(study, jobs)
    rows = {int(row["job"]): row for row in check_summary_matches_jobs(sweep_dir, jobs)}

    states = [trial.state.name for trial in study.trials]
    assert states.count("PRUNED") >= 1 and "FAIL" not in states
    for trial in study.trials:
        good_before = any(t.params["optimizer.lr"] == GOOD for t in study.trials[:trial.number])
        pruned = trial.params["optimizer.lr"] == HOPELESS and good_before
        assert trial.state.name == ("PRUNED" if pruned else "COMPLETE"), trial
        metrics = read_metrics(Path(trial.user_attrs["run_dir"]))
        assert metrics["epoch"] == (1 if pruned else 2)
        assert rows[trial.number]["status"] == metrics["status"] and rows[trial.number]["error"] == ""
        # A pruned run is still tested: its best.pt (epoch 1's weights) on the 256 test images gives its test/acc,
        # and so do the predictions it recorded.
        assert metrics["test/acc"] == accuracy_of_best_checkpoint(Path(trial.user_attrs["run_dir"]))
        predicted, true, _ = read_predictions(Path(trial.user_attrs["run_dir"]))
        assert len(true) == 256 and float((predicted == true).mean()) == pytest.approx(metrics["test/acc"], abs=1e-12)
        # A learning rate of 1e-9 leaves the model untrained; 0.05 learns (measured ~0.43 after one epoch).
        if trial.params["optimizer.lr"] == HOPELESS:
            assert metrics["test/acc"] < 0.3
        else:
            assert metrics["test/acc"] > 0.35
    assert f"Trial {states.index('PRUNED')}: pruned by the search after epoch 1" in stdout
    assert compare.main([str(sweep_dir)]) == 0  # the leaderboard names them in its hopeless group's row
    assert re.search(rf"  {states.count('PRUNED')} pruned$", capsys.readouterr().out, re.MULTILINE)
    best = yaml.safe_load((sweep_dir / "best_trial.yaml").read_text())
    assert best["value"] == study.best_value and f"optimizer.lr={GOOD}" in best["overrides"]


@pytest.mark.slow
def test_optuna_dashboard_shows_the_study(pruned_search):
    """optuna-dashboard itself, over HTTP: the study and its pruned trials, as its web page loads them."""
    pytest.importorskip("optuna_dashboard")
    sweep_dir, _ = pruned_search
    port = free_port()
    dashboard = Path(sys.executable).parent / "optuna-dashboard"
    server = subprocess.Popen([str(dashboard), f"sqlite:///{sweep_dir}/optuna.db", "--port", str(port),
                               "--host", "127.0.0.1", "--quiet"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}/api/studies"
    try:
        deadline, studies = time.monotonic() + 60, None
        while studies is None:
            if server.poll() is not None:
                pytest.fail(f"optuna-dashboard exited {server.returncode}: {server.stderr.read()[-1000:]}")
            if time.monotonic() > deadline:
                pytest.fail("optuna-dashboard did not answer in 60 s")
            time.sleep(0.5)
            try:
                studies = json.load(urllib.request.urlopen(base, timeout=10))["study_summaries"]
            except OSError:
                pass  # not listening yet
        [summary] = studies
        detail = json.load(urllib.request.urlopen(f"{base}/{summary['study_id']}", timeout=10))
    finally:
        server.terminate()
        server.wait(timeout=30)
    study = load_study(f"sqlite:///{sweep_dir}/optuna.db")
    assert summary["study_name"] == "search"
    assert [trial["state"] for trial in detail["trials"]] == [t.state.name.capitalize() for t in study.trials]
    assert detail["has_intermediate_values"]


@pytest.mark.slow
def test_two_workers_share_one_study_and_one_sweep_directory(tmp_path):
    sweep_dir = tmp_path / "search"
    worker = [sys.executable, "-m", "mnist_exp", *PRUNED_SEARCH, "hydra.sweeper.sampler.seed=null",
              f"hydra.sweep.dir={sweep_dir}", "device=cpu", "device.threads=1"]
    env = {**{k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"},
           "MNIST_EXP_OUTPUTS": str(tmp_path / "outputs")}
    processes = [subprocess.Popen([*worker, f"hydra.sweeper.n_trials={n}"], cwd=tmp_path, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for n in (3, 4)]
    outputs = [process.communicate(timeout=600) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], [err[-3000:] for _, err in outputs]

    study = load_study(f"sqlite:///{sweep_dir}/optuna.db")
    assert sorted(trial.number for trial in study.trials) == list(range(7))  # the sum, no number twice
    assert all(trial.state.name in ("COMPLETE", "PRUNED") for trial in study.trials)
    jobs = run_dirs(sweep_dir)
    check_trials_match_jobs(study, jobs)
    assert len(read_summary(sweep_dir)) == 7
    # Each worker printed the study's best when it ended; the one that ended last saw every trial.
    best = yaml.safe_load((sweep_dir / "best_trial.yaml").read_text())
    assert best["value"] == study.best_value and best["trial"] == study.best_trial.number
    assert all("Study search: " in out for out, _ in outputs)


def test_a_storage_optuna_cannot_open_is_one_line_without_its_password():
    from mnist_exp.errors import UserError
    from mnist_exp.sweeps.trial import open_storage

    with pytest.raises(UserError) as refused:
        open_storage("foo://user:secret@host/db")
    message = str(refused.value)
    assert message.startswith("hydra.sweeper.storage=foo://user:***@host/db cannot be opened (")
    assert "secret" not in message and "\n" not in message


def test_one_metric_given_as_a_list_is_searched_as_one(tmp_path, monkeypatch, capsys):
    code, out, err = run_main("-m", "hydra/sweeper=optuna", "model=logreg", "optimizer.lr=interval(0.01,0.1)",
                              "dataset=fake", "trainer.epochs=1", "device=cpu", "hydra.sweeper.n_trials=1",
                              "optimized_metric=[best_val/acc]", f"hydra.sweep.dir={tmp_path / 'search'}",
                              monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0 and "Trial 0: best_val/acc " in out, err[-3000:]


@pytest.mark.slow
def test_one_metric_given_as_a_list_is_pruned_as_one(tmp_path, monkeypatch, capsys):
    """optimized_metric=[best_val/acc] is best_val/acc: reported after every epoch, so a pruner stops the hopeless
    trial (seed 0 draws good, then hopeless), not refused as a metric that is not measured after every epoch."""
    code, out, err = run_main(*PRUNED_SEARCH, "hydra.sweeper.pruner.n_startup_trials=1", "hydra.sweeper.n_trials=2",
                              "optimized_metric=[best_val/acc]", f"hydra.sweep.dir={tmp_path / 'search'}",
                              monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err[-3000:]
    assert "Trial 1: pruned by the search after epoch 1" in out
    assert [trial.state.name for trial in load_study(f"sqlite:///{tmp_path}/search/optuna.db").trials] == [
        "COMPLETE", "PRUNED"]


def test_the_best_trials_command_finds_the_users_own_experiment_again(tmp_path, monkeypatch, capsys):
    """experiment=mine lies on the user's hydra.searchpath: the printed command names that folder, absolute."""
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "mine.yaml").write_text("# @package _global_\ntrainer:\n  epochs: 1\n")
    code, out, err = run_main("-m", "hydra/sweeper=optuna", "hydra.searchpath=[file://conf]", "experiment=mine",
                              "model=logreg", "optimizer.lr=interval(0.01,0.1)", "dataset=fake", "device=cpu",
                              "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={tmp_path / 'search'}",
                              monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err[-2000:]
    command = shlex.split(out.partition("Run it again: ")[2].splitlines()[0])
    assert command[3] == f'hydra.searchpath=["file://{tmp_path / "conf"}"]', command
    (tmp_path / "elsewhere").mkdir()
    code, _, err = run_main(*command[3:], "hydra.run.dir=best", monkeypatch=monkeypatch, capsys=capsys,
                            cwd=tmp_path / "elsewhere")
    assert code == 0, err[-2000:]


def test_a_study_file_that_is_no_database_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "optuna.db").write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 8)
    code, _, err = run_main("-m", "hydra/sweeper=optuna", "model=logreg", "optimizer.lr=interval(0.01,0.1)",
                            "dataset=fake", "trainer.epochs=1", "hydra.sweeper.n_trials=1",
                            f"hydra.sweep.dir={tmp_path / 'search'}", monkeypatch=monkeypatch, capsys=capsys,
                            cwd=tmp_path)
    assert (code, err) == (1, f"hydra.sweeper.storage=sqlite:///{tmp_path / 'search' / 'optuna.db'} is not a database "
                              "Optuna can read (file is not a database): restore the study's file from a copy, or give "
                              "another storage (a new hydra.sweep.dir).\n")


@pytest.mark.parametrize("text, reason", [
    # Another program's file of one line, which Optuna read as an empty journal and appended to.
    ("hello\n", "line 1: Expecting value: line 1 column 1 (char 0)"),
    ('{"a": 1}\n{"b": 2}\n', "line 1 is no record of Optuna's"),
])
def test_a_journal_file_that_is_no_journal_is_refused_in_one_line_and_kept(text, reason, tmp_path, monkeypatch, capsys):
    journal = tmp_path / "journal.log"
    journal.write_text(text)
    code, _, err = run_main("-m", "hydra/sweeper=optuna", "model=logreg", "optimizer.lr=interval(0.01,0.1)",
                            "dataset=fake", "trainer.epochs=1", "hydra.sweeper.n_trials=1",
                            f"hydra.sweeper.storage={journal}", f"hydra.sweep.dir={tmp_path / 'search'}",
                            monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert (code, err) == (1, f"hydra.sweeper.storage={journal} is not an Optuna journal file ({reason}): restore the "
                              "study's file from a copy, or give another storage (a new file).\n")
    assert journal.read_text() == text and not run_dirs(tmp_path)


def test_the_jobs_of_a_search_in_its_process_report_through_its_storage_not_a_replay_of_their_own(tmp_path,
                                                                                              monkeypatch, capsys):
    """Each opening of a journal replays it whole (0.2 s at 2,000 trials): the basic launcher's jobs, which run in the
    search's process, report each epoch through the storage the search opened."""
    import optuna

    opened, real_init = [], optuna.storages.JournalStorage.__init__

    def counted(storage, *args, **kwargs):  # Optuna's own, counted
        opened.append(storage)
        real_init(storage, *args, **kwargs)

    monkeypatch.setattr(optuna.storages.JournalStorage, "__init__", counted)
    journal = tmp_path / "journal.log"
    code, _, err = run_main("-m", "hydra/sweeper=optuna", "model=logreg", "optimizer.lr=interval(0.01,0.1)",
                            "dataset=fake", "trainer.epochs=2", "device=cpu", "hydra.sweeper.n_trials=3",
                            f"hydra.sweeper.storage={journal}", f"hydra.sweep.dir={tmp_path / 'search'}",
                            monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err[-3000:]
    assert len(opened) == 1
    monkeypatch.undo()
    trials = optuna.load_study(study_name="search", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal)))).trials
    assert [sorted(trial.intermediate_values) for trial in trials] == [[1, 2]] * 3  # each epoch, reported


def test_a_search_on_the_validation_split_is_refused_where_there_is_none(tmp_path, monkeypatch, capsys):
    """Refused before any trial trains (each would return nan); the advice, followed, searches."""
    args = ["-m", "hydra/sweeper=optuna", "model=logreg", "optimizer.lr=interval(0.01,0.1)", "dataset=fake",
            "trainer.epochs=1", "device=cpu", "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={tmp_path / 'search'}"]
    code, _, err = run_main(*args, "dataset.val_size=0", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert (code, err) == (1, "optimized_metric=best_val/acc is measured on the validation split, and "
                              "dataset.val_size=0 leaves none: give dataset.val_size=256, so that the trials are "
                              "compared on images none of them trained on.\n")
    assert not (tmp_path / "search" / "0").exists() and not list((tmp_path / "search").glob("0_*"))
    code, out, err = run_main(*args, "dataset.val_size=0", "dataset.val_size=256", monkeypatch=monkeypatch,
                              capsys=capsys, cwd=tmp_path)
    assert code == 0 and "Trial 0: best_val/acc " in out, err[-3000:]


@pytest.mark.slow  # Ctrl-C goes to a process of its own
def test_a_stopped_search_keeps_what_finished_and_queues_its_stopped_trial_to_train_again(tmp_path, monkeypatch,
                                                                                        capsys):
    """Two trials a batch, one after the other: Ctrl-C in the second. The first has its result in the study."""
    import signal

    from optuna.trial import TrialState

    sweep = tmp_path / "search"
    args = ["-m", "hydra/sweeper=optuna", "model=logreg", "optimizer.lr=interval(0.01,0.1)", "dataset=fake",
            "dataset.num_train=8000", "trainer.epochs=4", "device=cpu", "device.threads=1", "hydra.sweeper.n_trials=2",
            "hydra.sweeper.n_jobs=2", f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=trial${hydra.job.num}"]
    with open(tmp_path / "output.txt", "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "mnist_exp", *args], cwd=tmp_path, stdout=out,
                                   stderr=subprocess.STDOUT)
        while not (sweep / "trial1" / "checkpoints" / "last.pt").exists() and process.poll() is None:
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
    output = (tmp_path / "output.txt").read_text()
    assert process.returncode == 130, output[-2000:]
    [line] = [line for line in output.splitlines() if "The study queues this trial's settings to train again" in line]
    command = shlex.split(line.split("continue the search with: ")[1])  # Hydra's own overrides first
    assert sorted(command[3:]) == sorted(args) and "resume=true" not in output
    assert read_metrics(sweep / "trial1")["resume"] is None  # nor in its record: the search trains it again
    [done, stopped, queued] = load_study(f"sqlite:///{sweep}/optuna.db").trials
    # Found by the directory its job recorded in the trial, whatever hydra.sweep.subdir names it.
    assert done.state == TrialState.COMPLETE and done.value == read_metrics(sweep / "trial0")["best_val/acc"]
    assert (stopped.state, queued.state) == (TrialState.FAIL, TrialState.WAITING)
    assert queued.system_attrs["fixed_params"] == stopped.params  # Optuna's record of an enqueued trial's params
    code, _, err = run_main(*args, "hydra.sweeper.n_trials=1", "hydra.sweeper.n_jobs=1", monkeypatch=monkeypatch,
                            capsys=capsys, cwd=tmp_path)
    assert code == 0, err[-3000:]
    retried = load_study(f"sqlite:///{sweep}/optuna.db").trials[2]
    assert retried.state == TrialState.COMPLETE and retried.params == stopped.params


def test_a_killed_searchs_finished_job_is_told_when_the_search_continues_not_trained_again(tmp_path, monkeypatch,
                                                                                          capsys):
    """A trial left running by a search killed after its job ended (a joblib worker outlives its parent): the next
    command tells the study the job's result, where the trial would fail once its heartbeats stopped and retrain."""
    sweep = tmp_path / "search"
    args = ["-m", "hydra/sweeper=optuna", "model=logreg", "optimizer.lr=interval(0.01,0.1)", "dataset=fake",
            "trainer.epochs=1", "device=cpu", "device.threads=1", "hydra.sweeper.n_trials=1",
            f"hydra.sweep.dir={sweep}"]
    assert run_main(*args, monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)[0] == 0
    [first] = run_dirs(sweep)
    shutil.copytree(first, sweep / "1_killed")  # the finished job of a trial the killed search never told
    study = load_study(f"sqlite:///{sweep}/optuna.db")
    left = study.ask(study.trials[0].distributions)
    left.set_user_attr("run_dir", str(sweep / "1_killed"))
    code, _, err = run_main(*args, monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err[-2000:]
    trials = load_study(f"sqlite:///{sweep}/optuna.db").trials
    assert [trial.state.name for trial in trials] == ["COMPLETE"] * 3  # the told one, and one trained now
    assert trials[1].value == read_metrics(sweep / "1_killed")["best_val/acc"]
    assert len(run_dirs(sweep)) == 3


@pytest.mark.parametrize("sampler", ["grid", "random"])
def test_a_stopped_trial_is_failed_and_queued_again_but_a_grids_point_stays_failed(sampler, tmp_path):
    """A grid's last point told: Optuna's grid sampler stops the study there, which is no error here; it counts a
    failed point as visited and takes no queued one, so none is queued."""
    from optuna.trial import TrialState

    from mnist_exp.sweeps.trial import end_stopped_trial

    space = {"optimizer.lr": [0.01, 0.1]}
    chosen = optuna.samplers.GridSampler(space) if sampler == "grid" else optuna.samplers.RandomSampler(seed=0)
    study = optuna.create_study(sampler=chosen)
    distribution = optuna.distributions.CategoricalDistribution([0.01, 0.1])
    finished, stopped = (study.ask({"optimizer.lr": distribution}) for _ in range(2))
    (tmp_path / "a").mkdir()  # the batch's first job ended before the stop: its result is told
    (tmp_path / "a" / "metrics.json").write_text('{"status": "completed", "best_val/acc": 0.5}')
    for trial, run_dir in ((finished, tmp_path / "a"), (stopped, tmp_path / "b")):
        trial.set_user_attr("run_dir", str(run_dir))  # as the trial's job records it
        end_stopped_trial(study, trial, ["best_val/acc"])
    states = [trial.state for trial in study.get_trials()]
    assert states[:2] == [TrialState.COMPLETE, TrialState.FAIL] and study.trials[0].value == 0.5
    assert states[2:] == ([] if sampler == "grid" else [TrialState.WAITING])
