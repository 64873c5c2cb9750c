"""The Optuna sweeper (hydra/sweeper=optuna) under any Hydra app, as hydra-optuna-sweeper's example apps use it.

A small app of its own (the official examples' sphere: x**2 + y**2, minimised) runs in this process:
Hydra's sweep forms map to the same distributions as the official plugin's, a study may live in
memory, every job outcome is a trial state, the grid, NSGA-II and QMC samplers run.
"""

import csv
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import read_metrics, run_main, run_module

optuna = pytest.importorskip("optuna")

APP = '''
import math
from pathlib import Path

import hydra
import torch
from mnist_exp.sweeps.search import register_optuna_sweeper

register_optuna_sweeper()


@hydra.main(version_base="1.3", config_path=str(Path(__file__).parent), config_name="config")
def sphere(cfg):
    value = cfg.x ** 2 + cfg.y ** 2
    return {"number": value, "nothing": None, "not_a_number": math.nan, "text": str(value), "pair": (value, value),
            "tensor": torch.tensor([float(value)])}[cfg.returns]
'''
CONFIG = {"defaults": [{"override hydra/sweeper": "optuna"}], "x": 1, "y": 1, "returns": "number",
          "hydra": {"sweeper": {"storage": None, "direction": "minimize", "n_trials": 6, "sampler": {"seed": 0},
                                "params": {"x": "int(interval(-5, 5))", "y": "range(-3, 3)"}}}}


def run_app(tmp_path: Path, monkeypatch, capsys, *args: str) -> tuple[int, str, str, Path]:
    """The sphere app with ``args``, as a user runs it (``python app.py -m ...``): exit code, stdout, stderr, sweep dir."""
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    spec = importlib.util.spec_from_file_location(f"sphere_app_{abs(hash(tmp_path))}", tmp_path / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sweep_dir = tmp_path / "sweep"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(tmp_path / "app.py"), "-m", f"hydra.sweep.dir={sweep_dir}", *args])
    code = 0
    try:
        module.sphere()
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code or 0, out, err, sweep_dir


def job_values(sweep_dir: Path) -> list[dict]:
    """Each job's x and y as its overrides gave them."""
    jobs = sorted((path for path in sweep_dir.iterdir() if (path / ".hydra").is_dir()), key=lambda p: int(p.name))
    return [dict(item.split("=") for item in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()))
            for job in jobs]


def test_hydras_integer_interval_and_range_sample_as_the_official_plugin(tmp_path, monkeypatch, capsys):
    code, out, err, sweep_dir = run_app(tmp_path, monkeypatch, capsys, "hydra.sweeper.n_trials=12")
    assert code == 0, err
    values = job_values(sweep_dir)
    assert len(values) == 12
    assert all(str(int(job["x"])) == job["x"] and -5 <= int(job["x"]) <= 5 for job in values)  # int(interval)
    assert all(int(job["y"]) in range(-3, 3) for job in values)  # range stops before its stop, as Hydra's does
    assert "direction minimize, metric the task function's return value" in out
    assert "in memory (it ends with this command)" in out
    best = yaml.safe_load((sweep_dir / "best_trial.yaml").read_text())
    expected = min(int(job["x"]) ** 2 + int(job["y"]) ** 2 for job in values)
    assert best["value"] == expected and best["command"].startswith(f"python {tmp_path / 'app.py'} ")


@pytest.mark.parametrize("returns, counted", [("nothing", False), ("not_a_number", False), ("text", False),
                                               ("pair", False), ("tensor", True), ("number", True)])
def test_every_return_value_is_a_trial_state_never_a_crash(returns, counted, tmp_path, monkeypatch, capsys):
    code, out, err, _ = run_app(tmp_path, monkeypatch, capsys, f"returns={returns}", "hydra.sweeper.n_trials=3",
                                "hydra.sweeper.max_failure_rate=1.0")
    assert code == (0 if counted else 1), err  # max_failure_rate=1 runs them all; a search of none completed failed
    assert sum(line.startswith("Trial ") for line in out.splitlines()) == 3
    assert ("Study search: 3 trials (3 complete)" in out) is counted
    assert ("Study search: 3 trials (3 fail)" in out) is not counted
    if not counted:
        assert "failed, it returned " in out and ", not a finite number" in out
        assert any(line.startswith("All 3 trials of this command failed (it returned ") for line in err.splitlines())


def test_max_failure_rate_stops_the_search_with_a_nonzero_exit(tmp_path, monkeypatch, capsys):
    code, out, err, _ = run_app(tmp_path, monkeypatch, capsys, "returns=nothing", "hydra.sweeper.n_trials=4")
    assert code == 1
    assert ("1 of 1 trials failed, more than hydra.sweeper.max_failure_rate=0.0 allows: the search stops (it returned "
            "None, not a finite number).") in err.splitlines()
    assert sum(line.startswith("Trial ") for line in out.splitlines()) == 1


@pytest.mark.parametrize("n_jobs", [1, 4])  # 4 at a time: the second batch has 2 points left for 4 trials
def test_the_grid_sampler_tries_every_combination_once(n_jobs, tmp_path, monkeypatch, capsys):
    code, out, err, sweep_dir = run_app(tmp_path, monkeypatch, capsys, "hydra/sweeper/sampler=grid",
                                        "x=choice(-1,0,1)", "y=range(0,2)", f"hydra.sweeper.n_jobs={n_jobs}",
                                        "hydra.sweeper.n_trials=8")
    assert code == 0, err
    assert "0 trials so far; 6 more (the grid's points left, of hydra.sweeper.n_trials=8)" in out  # it said 8 more
    assert sorted((int(job["x"]), int(job["y"])) for job in job_values(sweep_dir)) == [
        (x, y) for x in (-1, 0, 1) for y in (0, 1)]


def test_the_grid_sampler_refuses_a_continuous_interval_in_one_line(tmp_path, monkeypatch, capsys):
    code, _, err, _ = run_app(tmp_path, monkeypatch, capsys, "hydra/sweeper/sampler=grid", "y=interval(-1.0,1.0)")
    assert code == 1 and ("hydra/sweeper/sampler=grid tries listed values, and y is in [-1.0, 1.0]: give it "
                          "choice(...), a,b,c or range(start,stop,step).") in err.splitlines()


def test_a_sampler_setting_optuna_refuses_is_one_line_naming_the_settings(tmp_path, monkeypatch, capsys):
    code, _, err, _ = run_app(tmp_path, monkeypatch, capsys, "hydra/sweeper/sampler=qmc",
                              "hydra.sweeper.sampler.qmc_type=x", "x=choice(1,2)")
    refusal = "Cannot build the sampler QMCSampler from "
    assert code == 1 and any(line.startswith(refusal) and "hydra.sweeper.sampler.qmc_type=x" in line
                             and line.endswith("The `qmc_type='x'` is invalid. Choose either `halton` or `sobol`.")
                             for line in err.splitlines()), err


def test_a_qmc_seed_is_refused_where_the_sequence_is_not_scrambled_and_read_where_it_is(tmp_path, monkeypatch,
                                                                                       capsys):
    """Without scrambling, QMC's sequence is the same for every seed: the app's seed 0 and a seed 1 drew the same x, y
    after the first trial (Optuna's QMC draws that one at random)."""
    code, _, err, _ = run_app(tmp_path, monkeypatch, capsys, "hydra/sweeper/sampler=qmc")
    assert code == 1 and (
        "hydra.sweeper.sampler.seed=0: after its first trial, the QMC sampler draws x, y from one sequence whatever "
        "its seed, unless it scrambles it: give hydra.sweeper.sampler.scramble=true too, or leave the seed out."
    ) in err.splitlines()
    drawn = []
    for seed in (0, 1):  # the advice: each seed its own sequence
        (tmp_path / str(seed)).mkdir()
        code, _, err, sweep_dir = run_app(tmp_path / str(seed), monkeypatch, capsys, "hydra/sweeper/sampler=qmc",
                                          "hydra.sweeper.sampler.scramble=true", f"hydra.sweeper.sampler.seed={seed}",
                                          "hydra.sweeper.n_trials=3")
        assert code == 0, err
        drawn.append(job_values(sweep_dir))
    assert drawn[0] != drawn[1]


@pytest.mark.parametrize("sampler, name", [("nsgaii", "NSGAIISampler"), ("qmc", "QMCSampler")])
def test_the_nsgaii_and_qmc_samplers_search(sampler, name, tmp_path, monkeypatch, capsys):
    scrambled = ["hydra.sweeper.sampler.scramble=true"] if sampler == "qmc" else []  # which reads the app's seed
    code, out, err, sweep_dir = run_app(tmp_path, monkeypatch, capsys, f"hydra/sweeper/sampler={sampler}",
                                        "hydra.sweeper.n_trials=4", *scrambled)
    assert code == 0, err
    assert f"sampler {name}" in out and len(job_values(sweep_dir)) == 4
    if sampler == "nsgaii":  # its first generation is drawn at random: here, every trial
        assert ("NSGAIISampler draws at random the study's first 50 trials (hydra.sweeper.sampler.population_size), "
                "and it will have 4: give more trials, or a smaller population_size") in out


def test_a_pruner_needs_a_storage_its_jobs_reach(tmp_path, monkeypatch, capsys):
    code, _, err, _ = run_app(tmp_path, monkeypatch, capsys, "hydra/sweeper/pruner=median")
    assert code == 1 and ("A pruner needs a study its jobs can reach, and hydra.sweeper.storage=null keeps it in this "
                          "process: give a storage (the default, SQLite in the sweep directory) or "
                          "hydra/sweeper/pruner=none.") in err.splitlines()


def test_a_trial_without_a_number_is_a_failed_row_of_sweep_csv_with_its_reason(tmp_path, monkeypatch, capsys):
    """mnist_exp's own app: without a validation split val/acc is NaN, so a search of it has nothing to compare (a
    search that sets no split is refused before it starts; one that searches the split's size draws none here)."""
    code, _, err = run_main("-m", "hydra/sweeper=optuna", "optimized_metric=val/acc", "dataset=fake",
                            "dataset.val_size=choice(0)", "dataset.num_train=128", "trainer.batch_size=64",
                            "dataset.num_test=64", "model=logreg",
                            "trainer.epochs=1", "device=cpu", "hydra.sweeper.n_trials=1",
                            "hydra.sweeper.max_failure_rate=1.0", "optimizer.lr=interval(0.01,0.1)",
                            f"hydra.sweep.dir={tmp_path / 'sweep'}", monkeypatch=monkeypatch, capsys=capsys,
                            cwd=tmp_path)
    assert code == 1 and err.splitlines()[-1] == ("All 1 trials of this command failed (it returned nan, not a finite "
                                                  "number): sweep.csv has each reason."), err
    [row] = list(csv.DictReader((tmp_path / "sweep" / "sweep.csv").open()))
    assert row["status"] == "failed" and row["error"] == "it returned nan, not a finite number"
    assert read_metrics(tmp_path / "sweep" / row["run_dir"])["status"] == "completed"  # the run itself completed


TINY_SEARCH = ("dataset=fake", "dataset.num_train=128", "trainer.batch_size=64", "dataset.val_size=64", "dataset.num_test=64", "model.width=4",
               "trainer.epochs=1", "device=cpu")


def test_a_conditional_space_searches_sgds_momentum_only_where_sgd_was_drawn(tmp_path, monkeypatch, capsys):
    code, _, err = run_main("-m", "hparams_search=optimizer_conditional", *TINY_SEARCH,
                            "hydra.sweeper.sampler.seed=1", "hydra.sweeper.n_trials=6",
                            f"hydra.sweep.dir={tmp_path / 'sweep'}", monkeypatch=monkeypatch, capsys=capsys,
                            cwd=tmp_path)
    assert code == 0, err
    drawn = {}
    for job in (tmp_path / "sweep").iterdir():
        if (job / ".hydra").is_dir():
            overrides = dict(item.split("=") for item in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()))
            config = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
            drawn[job.name] = (overrides, config["optimizer"])
    assert len(drawn) == 6 and {o["optimizer"] for o, _ in drawn.values()} == {"sgd", "adamw"}
    for overrides, optimizer in drawn.values():
        conditional = {"optimizer.momentum", "optimizer.nesterov"} & set(overrides)
        if overrides["optimizer"] == "sgd":
            assert len(conditional) == 2 and optimizer["momentum"] == float(overrides["optimizer.momentum"])
            assert 0.5 <= optimizer["momentum"] <= 0.99
        else:
            assert not conditional and "momentum" not in optimizer


@pytest.mark.slow
@pytest.mark.parametrize("fixed, searched", [
    ([], {"optimizer.lr", "optimizer.momentum", "optimizer.nesterov"}),  # not drawn: SGD's keys still searched
    (["optimizer.momentum=0.9"], {"optimizer.lr", "optimizer.nesterov"}),  # and a key fixed keeps its value
    (["optimizer.momentum=0"], {"optimizer.lr"}),  # no momentum for Nesterov to look ahead along: not drawn
])
def test_a_conditional_space_searches_sgds_momentum_where_the_command_line_chose_sgd(fixed, searched, tmp_path,
                                                                                      monkeypatch, capsys):
    code, _, err = run_main("-m", "hparams_search=optimizer_conditional", "optimizer=sgd", *fixed, *TINY_SEARCH,
                            "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                            monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err
    for trial in optuna.load_study(study_name="optimizer_conditional",
                                   storage=f"sqlite:///{tmp_path}/sweep/optuna.db").trials:
        assert set(trial.params) == searched
        config = yaml.safe_load((Path(trial.user_attrs["run_dir"]) / ".hydra" / "config.yaml").read_text())
        fixed_momentum = float(fixed[0].partition("=")[2]) if fixed else None
        assert config["optimizer"]["momentum"] == trial.params.get("optimizer.momentum", fixed_momentum)


def test_a_custom_search_space_that_names_no_function_is_one_line(tmp_path, monkeypatch, capsys):
    code, out, err, _ = run_app(tmp_path, monkeypatch, capsys, "+hydra.sweeper.custom_search_space=no_such.space")
    assert code == 1 and "Error getting callable" not in out + err  # Hydra's own three lines on it: left out
    assert any(line.startswith("hydra.sweeper.custom_search_space=no_such.space names no function (")
               and line.endswith("Give the dotted path of one, e.g. mnist_exp.sweeps.space.momentum_for_sgd.")
               for line in err.splitlines()), err


def draws_z(config, trial) -> None:  # a custom search space's key of its own, which no grid lists
    trial.suggest_int("z", 0, 1)


def test_a_grid_search_whose_custom_space_draws_an_unlisted_key_is_one_line_and_leaves_no_trial_running(
        tmp_path, monkeypatch, capsys):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    code, _, err, _ = run_app(tmp_path, monkeypatch, capsys, "hydra/sweeper/sampler=grid", "x=choice(-1,1)",
                              "y=choice(0,1)", f"hydra.sweeper.storage={storage}",
                              "+hydra.sweeper.custom_search_space=test_search_any_app.draws_z")
    assert code == 1 and (
        "hydra.sweeper.custom_search_space=test_search_any_app.draws_z draws z, and hydra/sweeper/sampler=grid tries "
        "only the values the search space lists: give another sampler (hydra/sweeper/sampler=tpe), or search without "
        "the function (hydra.sweeper.custom_search_space=null).") in err.splitlines(), err
    [study] = optuna.get_all_study_summaries(storage)
    assert [trial.state.name for trial in optuna.load_study(study_name=study.study_name, storage=storage).trials] == [
        "FAIL"]


def test_a_two_objective_search_of_any_app_prints_and_writes_its_pareto_front(tmp_path, monkeypatch, capsys):
    code, out, err, sweep_dir = run_app(tmp_path, monkeypatch, capsys, "returns=pair", "hydra.sweeper.n_trials=5",
                                        "hydra.sweeper.direction=[minimize,maximize]")
    assert code == 0, err
    front = yaml.safe_load((sweep_dir / "pareto_front.yaml").read_text())
    values = [(int(job["x"]) ** 2 + int(job["y"]) ** 2) for job in job_values(sweep_dir)]
    # (v, v) minimised and maximised at once: no trial beats another on both, so every one is on the front.
    assert sorted(entry["values"][0] for entry in front) == sorted(values)
    assert f"Pareto front (minimize, maximize the task function's return value): {len(front)} trials" in out
    assert all(f"Run it again: {entry['command']}" in out for entry in front)


def test_a_two_objective_search_of_accuracy_and_training_time(tmp_path, monkeypatch, capsys):
    code, out, err = run_main("-m", "hydra/sweeper=optuna", *TINY_SEARCH, "hydra.sweeper.n_trials=4",
                              "hydra.sweeper.direction=[maximize,minimize]",
                              "optimized_metric=[best_val/acc,train_time_s]", "model.width=choice(2,4,8)",
                              "hydra.sweeper.sampler.seed=0", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                              monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err
    front = yaml.safe_load((tmp_path / "sweep" / "pareto_front.yaml").read_text())
    assert front and all(entry["metric"] == "best_val/acc, train_time_s" for entry in front)
    for entry in front:
        metrics = read_metrics(Path(entry["run_dir"]))
        assert entry["values"] == [metrics["best_val/acc"], metrics["train_time_s"]]
        assert entry["command"].startswith("python -m mnist_exp ")


@pytest.mark.parametrize("args, message", [
    (("hydra.sweeper.direction=[maximize,minimize]",),
     "hydra.sweeper.direction has 2 direction(s) and optimized_metric 1 metric(s): give one direction per metric, "
     "e.g. hydra.sweeper.direction=[maximize,minimize] optimized_metric=[best_val/acc,train_time_s]."),
    (("hydra.sweeper.direction=[maximize,minimize]", "optimized_metric=[best_val/acc,train_time_s]",
      "hydra/sweeper/pruner=median"),
     "Optuna prunes single-objective searches only: with several directions, hydra/sweeper/pruner=none."),
    (("hydra.sweeper.direction=[maximize,minimize]", "optimized_metric=[best_val/acc,train_time_s]",
      "hydra/sweeper/sampler=cmaes"),  # was Optuna's ValueError, once the study was made
     "hydra/sweeper/sampler=cmaes searches one objective, and hydra.sweeper.direction has 2: give a sampler of "
     "several, hydra/sweeper/sampler=tpe (or gp, nsgaii, qmc, random, grid)."),
    (("hydra.sweeper.direction=[maximize,minimize]", "optimized_metric=[best_val/acc,speed]"),
     "optimized_metric=speed is not a metric. Choose one of: test/acc, test/loss, val/acc, val/loss, best_val/acc, "
     "train_time_s, params, or a list of them for several objectives."),
    (("optimized_metric=${seed}",),  # not read from the command line: the search checks it before any trial
     "optimized_metric=0 is not a metric. Choose one of: test/acc, test/loss, val/acc, val/loss, best_val/acc, "
     "train_time_s, params, or a list of them for several objectives."),
])
def test_a_searchs_objectives_set_wrong_are_one_line(args, message, tmp_path, monkeypatch, capsys):
    code, _, err = run_main("-m", "hydra/sweeper=optuna", *TINY_SEARCH, "hydra.sweeper.n_trials=1", *args,
                            "model.width=choice(2,4)", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and message in err.splitlines(), err


def test_the_pareto_front_is_what_no_other_point_beats_on_both():
    from mnist_exp.tools.plots import pareto_front

    points = [(5.0, 0.97), (3.0, 0.95), (8.0, 0.99), (4.0, 0.94), (6.0, 0.99), (3.0, 0.96), (9.0, 0.985)]
    beaten = {i for i, (s, a) in enumerate(points) for t, b in points
              if (t <= s and b >= a) and (t < s or b > a)}
    assert pareto_front(points) == sorted(set(range(len(points))) - beaten, key=lambda i: points[i][0])
    assert pareto_front(points) == [5, 0, 4]


@pytest.mark.slow
def test_the_trial_of_a_killed_worker_is_failed_and_retried_by_the_next(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    search = ("-m", "hydra/sweeper=optuna", f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=shared",
              "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.n_trials=1", "optimizer.lr=interval(0.001,0.1)",
              "dataset=fake", "dataset.num_train=8192", "model.width=8", "device=cpu", "device.threads=1",
              "trainer.epochs=3")  # the same experiment in both workers: a continued study is the search it began
    # The first worker's trial trains two more epochs after its first, so the kill always lands mid-trial.
    first = subprocess.Popen([sys.executable, "-m", "mnist_exp", *search, f"hydra.sweep.dir={tmp_path / 'a'}"],
                             cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "a").glob("*/checkpoints/last.pt")):  # the trial runs, its heartbeat recorded
        assert first.poll() is None and time.monotonic() < deadline, "the first worker ended before its first epoch"
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # no tell, no record: its trial stays RUNNING, its heartbeats stop
    first.wait()
    study = optuna.load_study(study_name="shared", storage=storage)
    assert [trial.state.name for trial in study.trials] == ["RUNNING"]
    time.sleep(2.5)  # past the grace period, two heartbeat intervals
    run_module("mnist_exp", *search, f"hydra.sweep.dir={tmp_path / 'b'}", cwd=tmp_path)
    killed, retried = optuna.load_study(study_name="shared", storage=storage).trials
    assert killed.state.name == "FAIL" and retried.state.name == "COMPLETE"
    assert retried.params == killed.params
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(retried) == killed.number
