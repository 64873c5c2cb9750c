"""The real entry point on fake data, in this process (the code path of ``python -m mnist_exp``)."""

import logging
import os
import re
import sys
import time

import pytest
import torch
import yaml

from conftest import read_events, read_metrics, run_captured, run_dirs, run_main
from mnist_exp.errors import UserError
from mnist_exp.paths import CONF_DIR
from mnist_exp.run.checkpoint import load_checkpoint
from mnist_exp.run.command_line import parse_command_line
from mnist_exp.run.prechecks import check_command_line
from mnist_exp.data import TensorLoader, build_dataset
from mnist_exp.registry import MODELS
from mnist_exp.run.trainer import evaluate

METRIC_KEYS = {"status", "test/acc", "test/loss", "val/acc", "best_val/acc", "epoch", "train_time_s", "samples_per_s"}


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    """One two-epoch run on fake data, from a working directory that is not the project's."""
    cwd = tmp_path_factory.mktemp("fake_run")
    started = time.perf_counter()
    code, out, err = run_captured("dataset=fake", "trainer.epochs=2", "trainer.batch_size=64",
                                  "trainer.log_interval=8", "device=cpu", "device.threads=1", cwd=cwd)
    wall_s = time.perf_counter() - started
    assert code == 0, err[-3000:]
    [run_dir] = run_dirs(cwd / "outputs")
    return run_dir, out + err, wall_s


def test_run_directory_is_named_by_date_time_and_overrides(fake_run):
    run_dir, _, _ = fake_run
    relative = run_dir.relative_to(run_dir.parents[2])
    assert relative.parts[0] == "runs"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", relative.parts[1])
    time_of_day, _, overrides = relative.parts[2].partition("_")
    assert re.fullmatch(r"\d{2}-\d{2}-\d{2}", time_of_day)
    # Sorted overrides, '-' and '_' for '=' and ',', cut to 80 characters.
    full = "dataset-fake_device.threads-1_device-cpu_trainer.batch_size-64_trainer.epochs-2_trainer.log_interval-8"
    assert re.fullmatch(re.escape(full[:70]) + r"\.\.\.-[0-9a-f]{6}", overrides)


def test_run_directory_holds_everything_of_the_run(fake_run):
    run_dir, output, _ = fake_run
    for name in (".hydra/config.yaml", ".hydra/overrides.yaml", "train.log", "metrics.json", "checkpoints/last.pt",
                 "checkpoints/best.pt", "confusion_matrix.png", "misclassified.png"):
        assert (run_dir / name).is_file(), name
    assert list(run_dir.glob("events.out.tfevents.*"))
    # The user is told where things are, and the log file has it too.
    for text in (output, (run_dir / "train.log").read_text()):
        assert str(run_dir) in text and "metrics.json" in text and "tensorboard --logdir" in text
        assert "output shape" in text  # the model summary


def test_metrics_json(fake_run):
    run_dir, _, wall_s = fake_run
    metrics = read_metrics(run_dir)
    assert METRIC_KEYS <= metrics.keys()
    assert metrics["status"] == "completed" and metrics["epoch"] == 2
    assert metrics["test/acc"] > 0.9  # this run reaches 1.0 on fake data; chance is 0.1
    # The accuracies are whole numbers of the 256 validation and 256 test images, the best the highest epoch's.
    events = read_events(run_dir)
    val = [event.value for event in events.Scalars("val/acc")]
    assert metrics["val/acc"] == pytest.approx(val[-1]) and metrics["best_val/acc"] == pytest.approx(max(val))
    for key in ("val/acc", "best_val/acc", "test/acc"):
        assert metrics[key] * 256 == pytest.approx(round(metrics[key] * 256), abs=1e-9), key
    # The time is the sum of the epochs' times TensorBoard has, within the run's wall time; the speed is the
    # 2 x 1024 training images over the time their training steps took (each epoch's: 1024 / its samples/s).
    epoch_s = [event.value for event in events.Scalars("time/epoch_s")]
    assert len(epoch_s) == 2 and metrics["train_time_s"] == pytest.approx(sum(epoch_s), rel=1e-5)
    assert 0 < metrics["train_time_s"] < wall_s
    train_phase_s = sum(1024 / event.value for event in events.Scalars("time/samples_per_s"))
    assert metrics["samples_per_s"] == pytest.approx(2 * 1024 / train_phase_s, rel=1e-5)
    assert train_phase_s <= metrics["train_time_s"]  # the training steps, without validation


def test_the_logged_learning_rate_is_the_one_each_step_used(fake_run):
    """fake_run: AdamW at 0.01 under one-cycle (25% warm-up, div 25 and 1e4), 2 epochs of 16 steps, logged every 8."""
    optimizer = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.01, total_steps=32, pct_start=0.25,
                                                   div_factor=25, final_div_factor=1e4, cycle_momentum=False)
    used = []
    for _ in range(32):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    logged = {event.step: event.value for event in read_events(fake_run[0]).Scalars("lr")}
    assert sorted(logged) == [8, 16, 24, 32]
    assert all(logged[step] == pytest.approx(used[step - 1], rel=1e-6) for step in logged), (logged, used)


def test_a_warm_up_of_part_of_a_step_takes_the_nearest_whole_step_and_the_log_says_so(tmp_path, monkeypatch, capsys):
    """0.45 of an epoch of 4 steps is 1.8 steps: a warm-up of 2 (the first step at half the rate), not 1 (at the full
    rate)."""
    code, _, err = run_main("dataset=fake", "model.width=4", "scheduler=cosine", "scheduler.warmup_epochs=0.45",
                            "optimizer.lr=0.01", "trainer.epochs=2", "trainer.log_interval=1", "device.threads=1",
                            "hydra.run.dir=run", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err[-2000:]
    logged = {event.step: event.value for event in read_events(tmp_path / "run").Scalars("lr")}
    assert logged[1] == pytest.approx(0.005) and logged[2] == pytest.approx(0.01)
    assert ("scheduler.warmup_epochs=0.45 is 1.8 of this run's steps (4 an epoch): it warms up for the nearest whole "
            "number, 2 steps (0.5 epochs)") in (tmp_path / "run" / "train.log").read_text()


@pytest.mark.parametrize("warmup_epochs, steps_per_epoch, said", [(0.07, 100, False), (0.45, 4, True)])
def test_the_log_says_a_warm_up_was_rounded_only_where_it_was(warmup_epochs, steps_per_epoch, said, caplog):
    from mnist_exp.run.optim import log_warmup_steps

    with caplog.at_level(logging.INFO, logger="mnist_exp"):
        log_warmup_steps({"name": "cosine", "warmup_epochs": warmup_epochs}, steps_per_epoch)  # 0.07 * 100: 7.000...1
    assert bool(caplog.records) == said


ONE_STEP_AN_EPOCH = ("dataset=fake", "dataset.num_train=256", "model.width=4", "device=cpu", "device.threads=1")


@pytest.mark.parametrize("given, epochs, message, advised", [
    (["scheduler.pct_start=0.5"], 1, "scheduler.pct_start=0.5 takes no effect: one-cycle takes this run's 1 training "
     "step (1 an epoch) at its end, and scheduler.pct_start sets where it peaks: train 3 epochs or more, or leave "
     "scheduler.pct_start out.", 3),
    (["scheduler.pct_start=0.7"], 2, "scheduler.pct_start=0.7 takes no effect: one-cycle takes this run's 2 training "
     "steps (1 an epoch) at its start and end, and scheduler.pct_start sets where it peaks: train 3 epochs or more, "
     "or leave scheduler.pct_start out.", 3),
    (["scheduler.base_momentum=0.85"], 1, "scheduler.base_momentum=0.85 takes no effect: one-cycle takes this run's 1 "
     "training step (1 an epoch) at its end, and scheduler.base_momentum sets the momentum at its peak: train 3 epochs "
     "or more, or leave scheduler.base_momentum out.", 3),
    (["scheduler=cosine", "scheduler.min_lr_ratio=0.1"], 1, "scheduler.min_lr_ratio=0.1 takes no effect: the cosine "
     "decay of this run's 1 training step (1 an epoch) is its last step alone, at the full rate, and "
     "scheduler.min_lr_ratio sets the rate it decays to: train 2 epochs or more, or leave scheduler.min_lr_ratio out.",
     2),
    (["scheduler=cosine", "scheduler.warmup_epochs=1", "scheduler.min_lr_ratio=0.1"], 2, "scheduler.min_lr_ratio=0.1 "
     "takes no effect: the cosine decay of this run's 2 training steps (1 an epoch, 1 warming up) is its last step "
     "alone, at the full rate, and scheduler.min_lr_ratio sets the rate it decays to: train 3 epochs or more, or "
     "leave scheduler.min_lr_ratio out.", 3),
])
def test_a_schedule_key_no_step_of_the_run_reaches_is_refused_and_the_advice_runs(
        given, epochs, message, advised, tmp_path, monkeypatch, capsys):
    """A run of a step or two takes a schedule's rate at its ends alone: the keys that shape what lies between
    would change nothing there, so a sweep over them would find nothing."""
    code, _, err = run_main(*ONE_STEP_AN_EPOCH, *given, f"trainer.epochs={epochs}", monkeypatch=monkeypatch,
                            capsys=capsys, cwd=tmp_path)
    assert (code, err.splitlines()) == (1, [message])
    code, _, err = run_main(*ONE_STEP_AN_EPOCH, *given, f"trainer.epochs={advised}", monkeypatch=monkeypatch,
                            capsys=capsys, cwd=tmp_path)
    assert code == 0, err[-2000:]


def test_a_run_of_one_step_keeps_its_schedules_defaults_and_the_keys_it_reaches(tmp_path, monkeypatch, capsys):
    """Refused only where given: one-cycle's own pct_start in a one-step run is its default, and div_factor sets the
    rate of that step."""
    code, _, err = run_main(*ONE_STEP_AN_EPOCH, "trainer.epochs=1", "scheduler.div_factor=10",
                            monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err[-2000:]


def test_checkpoints_reload_and_reproduce_the_test_accuracy(fake_run):
    run_dir, _, _ = fake_run
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert last["trainer"]["state"]["epoch"] == 2 and last["trainer"]["state"]["step"] > 0
    assert best["kind"] == "best" and best["epoch"] == last["trainer"]["state"]["best_epoch"]
    config = best["config"]
    model = MODELS.build(config["model"], 10)
    model.load_state_dict(best["weights"])
    data = build_dataset(config["dataset"])
    loader = TensorLoader(data.test, 256, mean=data.mean, std=data.std, flatten=data.flatten)
    result = evaluate(model, loader, device=torch.device("cpu"))
    assert result["acc"] == pytest.approx(read_metrics(run_dir)["test/acc"], abs=1e-9)


def test_tensorboard_events_read_back(fake_run):
    run_dir, _, _ = fake_run
    events = read_events(run_dir)
    tags = events.Tags()
    assert {"train/loss", "train/acc", "lr", "val/loss", "val/acc", "test/acc", "time/epoch_s",
            "time/samples_per_s"} <= set(tags["scalars"])
    assert len(events.Scalars("val/acc")) == 2  # once per epoch
    assert len(events.Scalars("train/loss")) >= 4
    assert {"train/samples", "test/confusion_matrix", "test/misclassified"} <= set(tags["images"])
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
    assert events.Scalars("hparams/test/acc")[-1].value == pytest.approx(read_metrics(run_dir)["test/acc"])
    # One run is one TensorBoard run: no add_hparams-style subdirectory beside the run's events.
    assert sorted(p.name for p in run_dir.iterdir() if p.is_dir()) == [".hydra", "checkpoints"]


CORES = len(os.sched_getaffinity(0))
MODELS_LIST = "cnn, conv_fc, logreg, mlp, strided_cnn, vgg_cnn"
TRAINER_KEYS = ("epochs, batch_size, eval_batch_size, log_interval, label_smoothing, ema_decay, tta, tta_scales, "
                "deterministic, compile, progress, checkpoint, patience, limit_batches, overfit_batches, profile")


def on_fake_data(args: list[str]) -> list[str]:
    """The command with dataset=fake, after -m where it has one (-m goes before the overrides)."""
    return [*args[:1], "dataset=fake", *args[1:]] if args[:1] == ["-m"] else ["dataset=fake", *args]


@pytest.mark.parametrize("args", [
    ["-m", "seed=0,1", "hydra/launcher=slurm", "+hydra.launcher.additional_parameters.mail_type=END"],  # any sbatch option
    ["-m", "seed=0,1", "hydra/launcher=joblib", "++hydra.launcher.n_jobs=2"],  # ++ sets a key that exists
    ["-m", "seed=0,1", "hydra.sweep.subdir=${hydra.job.id}"],
    ["-m", "seed=0,1", "hydra.sweep.subdir=run_${hydra:job.num}"],
    ["-m", "seed=0,1", "hydra.output_subdir=.hydra"],
    # Counts written as OmegaConf reads them: 01 is 1, 00 is 0.
    ["-m", "seed=0,1", "hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=01"],
    ["-m", "seed=0,1", "hydra/launcher=submitit_local", "hydra.launcher.gpus_per_node=00"],
    ["-m", "seed=0,1", "hydra/launcher=slurm", "hydra.launcher.gpus_per_task=+1"],
])
def test_launcher_and_sweep_settings_that_work_pass_the_checks(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for tool in ("sbatch", "srun"):  # SLURM's commands, as on a cluster's login node (the checks look for them)
        (tmp_path / tool).write_text("#!/bin/sh\nexit 1\n")
        (tmp_path / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    check_command_line(parse_command_line(args))  # refuses nothing


@pytest.mark.parametrize("args, message", [
    (["model.name=cnnn"], f"Unknown model 'cnnn'. Did you mean 'cnn'? Valid model names: {MODELS_LIST}."),
    (["model=cnnn"], f"model=cnnn: there is no such option. Did you mean 'cnn'? Options of model: {MODELS_LIST}."),
    (["optimizer.name=adam"], "optimizer.name=adam: choose the optimizer with optimizer=adam, which brings its own keys "
                              "and defaults; optimizer.name alone swaps the builder and keeps the values of the option "
                              "chosen."),
    (["-m", "dataset.name=mnist,kmnist"], "dataset.name=mnist: choose the dataset with dataset=mnist, which brings its "
                                          "own keys and defaults; dataset.name alone swaps the builder and keeps the "
                                          "values of the option chosen."),
    (["scheduler=onecylce"], "scheduler=onecylce: there is no such option. Did you mean 'onecycle'? Options of "
                             "scheduler: cosine, none, onecycle, step."),
    (["trainer.epochz=1"], f"Unknown key 'trainer.epochz'. Did you mean 'trainer.epochs'? The keys of trainer: "
                           f"{TRAINER_KEYS}."),
    (["experimnt=best"], "Unknown key 'experimnt'. Did you mean 'experiment'? The keys of the config: dataset, model, "
                         "optimizer, scheduler, augment, device, trainer, seed, resume, ckpt_path, init_from, optimized_metric, "
                         "logger, experiment, hparams_search, debug."),
    (["+trainer.foo=1"], f"Unknown key 'trainer.foo': mnist_exp does not read it. The trainer keys: {TRAINER_KEYS}."),
    (["trainer.epochs=abc"], "trainer.epochs=abc is not a whole number: give a whole number, e.g. trainer.epochs=1."),
    (["seed=abc"], "seed=abc is not a whole number: give a whole number, e.g. seed=1."),
    (["trainer.epochs=2.5"], "trainer.epochs=2.5 is not a whole number: give a whole number, e.g. trainer.epochs=2."),
    (["trainer.epochs=0.4"], "trainer.epochs=0.4 is not a whole number: give a whole number, e.g. trainer.epochs=1."),
    (["trainer.patience=~"], "Cannot read the override 'trainer.patience=~': write trainer.patience=null for none (~ "
                             "means null in YAML files, not on the command line)."),
    (["model.hidden=[64,32,]"], "Cannot read the override 'model.hidden=[64,32,]': a list or sweep ends in a comma: "
                                "remove it."),
    (["trainer.tta=true trainer.epochs=2"], "Cannot read the override 'trainer.tta=true trainer.epochs=2': it holds two "
                                            "overrides: give each as an argument of its own (no quotes around both)."),
    (["-m", "optimizer.lr=interval(0.1)"], "Cannot read the override 'optimizer.lr=interval(0.1)': interval(0.1): "
     "missing a required argument: 'end'. Write it as e.g. optimizer.lr=interval(0.001,0.1)."),
    (["-m", "model.width=intervl(8,16)"], "Cannot read the override 'model.width=intervl(8,16)': there is no function "
     "intervl(). Did you mean 'interval'? Hydra's functions: bool, choice, float, glob, int, interval, range, shuffle, "
     "sort, str, tag."),
    (["epochs"], "Cannot read the override 'epochs': an override is key=value, e.g. trainer.epochs=3 (python -m "
                 "mnist_exp --cfg job shows the keys)."),
    (["=3"], "Cannot read the override '=3': an override is key=value, e.g. trainer.epochs=3 (python -m mnist_exp --cfg "
             "job shows the keys)."),
    (["hydra.run.dir=runs/a,b"], "hydra.run.dir=runs/a,b: a comma makes a sweep of a value: quote a path with one, "
                                 "'hydra.run.dir=\"runs/a,b\"'."),
    (["-m", "hydra.run.dir=rd", "seed=0,1"], "hydra.run.dir=rd places one run, and -m runs a sweep: give "
                                             "hydra.sweep.dir=rd to place the sweep's jobs."),
    (["--config-path", "cfgs"], "--config-path cfgs would replace mnist_exp's configs: add your own beside them with "
                                "--config-dir cfgs."),
    (["optimized_metric=val/loss"], "optimized_metric=val/loss: a search optimises that metric, and one run has no "
     "search to give it to: leave it out, or give it to a search with -m (hparams_search=<name> or "
     "hydra/sweeper=optuna)."),
    (["seed=${seed}"], "An interpolation refers to itself (key=${key}), directly or through other keys: give a value "
                       "instead."),
    (["trainer.tta_scales={}"], "trainer.tta_scales={} is not a list: give one in brackets, e.g. trainer.tta_scales=[...] "
                                "(python -m mnist_exp --cfg job shows its default)."),
    (["+augment.foo=1"], "Unknown key 'augment.foo': augment=none takes no keys."),
    (["seed=1e3"], "seed=1e3 is read as 1000.0, not a whole number: write it without a point or an exponent, seed=1000."),
    (["trainer.epochs=2.0"], "trainer.epochs=2.0 is not a whole number: write it without a point or an exponent, "
                             "trainer.epochs=2."),
    (["seed=-1"], "seed=-1 is out of range: it takes a whole number in [0, 2**32), e.g. 0."),
    (["optimizer=adam", "optimizer.betas=[0.9]"],
     "optimizer.betas=[0.9] takes two numbers, e.g. optimizer.betas=[0.9,0.999]."),
    (["device.name=tpu"], "device.name=tpu is not one of: auto, cpu, cuda, mps. Did you mean 'cpu'?"),
    (["device.name=gpu"], "device.name=gpu is not one of: auto, cpu, cuda, mps. Did you mean 'cuda'?"),
    (["device.precision=bfloat16"], "device.precision=bfloat16 is not one of: auto, fp32, bf16. Did you mean 'bf16'?"),
    (["trainer.epochs=0"], "trainer.epochs=0 is out of range: it must be at least 1."),
    (["trainer.batch_size=-1"], "trainer.batch_size=-1 is out of range: it must be at least 1."),
    (["optimizer.weight_decay=-1"], "optimizer.weight_decay=-1.0 is out of range: it takes 0 or more, e.g. 0.01."),
    (["optimizer.betas=[0.9,1.5]"],
     "optimizer.betas=[0.9, 1.5] is out of range: it takes two fractions in [0, 1), e.g. [0.9,0.999]."),
    (["optimizer=sgd", "optimizer.momentum=-1"],
     "optimizer.momentum=-1.0 is out of range: it takes a fraction in [0, 1), e.g. 0.9."),
    (["optimizer.lr=0"], "optimizer.lr=0.0 is out of range: it must be a positive number, e.g. optimizer.lr=1e-3."),
    (["scheduler=step", "trainer.epochs=1"], "scheduler.step_size=1: the rate first changes after epoch 1, and this run "
                                             "has 1: train 2 epochs or more, or scheduler=none for a constant rate."),
    (["scheduler=step", "trainer.epochs=3", "scheduler.step_size=3"],
     "scheduler.step_size=3: the rate first changes after epoch 3, and this run has 3: give a step_size below 3, or "
     "scheduler=none for a constant rate."),
    (["scheduler=cosine", "scheduler.warmup_epochs=0.1"],
     "scheduler.warmup_epochs=0.1 warms up for 0 of this run's 8 steps (4 an epoch): give 0 for none, or from 0.25 (1 "
     "step) to 1.75 (7 steps)."),
    (["scheduler=cosine", "scheduler.warmup_epochs=2"],
     "scheduler.warmup_epochs=2.0 warms up for 8 of this run's 8 steps (4 an epoch): give 0 for none, or from 0.25 (1 "
     "step) to 1.75 (7 steps)."),
    (["scheduler=cosine", "scheduler.warmup_epochs=1.9"],  # 7.6 steps: the nearest, 8, is the whole run
     "scheduler.warmup_epochs=1.9 warms up for 8 of this run's 8 steps (4 an epoch): give 0 for none, or from 0.25 (1 "
     "step) to 1.75 (7 steps)."),
    (["scheduler=cosine", "scheduler.warmup_epochs=0.5", "trainer.batch_size=1024", "trainer.epochs=1"],  # no range
     "scheduler.warmup_epochs=0.5 warms up for 1 of this run's 1 steps (1 an epoch): give 0 for none, or train more "
     "epochs: a warm-up ends before the run's last step, and this run has one."),
    (["model.width=${oc.decode:'[1,2]'}"], "model.width=[1, 2] is not a whole number: give a whole number, e.g. "
                                           "model.width=1."),
    (["dataset=mnist", "dataset.data_dir="], "dataset.data_dir=: give the directory of the datasets, or leave it out "
                                             "for the default (data/ in a checkout)."),
    (["device=gpu"], "device=gpu: there is no such option. Did you mean 'cuda'? Options of device: auto, cpu, cuda, "
                     "mps."),
    (["optimizer=adam", "optimizer.betas={a:1}"], "optimizer.betas={a:1} is not a list: give one in brackets, e.g. "
                                                  "optimizer.betas=[...] (python -m mnist_exp --cfg job shows its "
                                                  "default)."),
    (["trainer.patience=None"], "trainer.patience=None is not a whole number: YAML writes no value as null, "
                                "trainer.patience=null, where the key takes none; else a whole number, e.g. "
                                "trainer.patience=1."),
    (["trainer.progress='null'"], "trainer.progress='null' is the text null, not YAML's null: write "
                                  "trainer.progress=null without quotes, where the key takes none; else true or "
                                  "false, e.g. trainer.progress=true."),  # was: '=null is not true or false'
    (["ckpt_path=[a]"], "ckpt_path=[a] is a list, and ckpt_path takes one text: give one value (a text with a comma in "
                        "quotes, 'ckpt_path=\"a,b\"')."),
    (["scheduler=cosine", "scheduler.warmup_epochs=inf"],
     "scheduler.warmup_epochs=inf is not a number training can use: give a finite one."),
    (["augment=elastic", "augment.warp=nan"], "augment.warp=nan is out of range: it takes 0 or more pixels, e.g. 1."),
    (["optimizer=sgd", "optimizer.momentum=nan"],
     "optimizer.momentum=nan is out of range: it takes a fraction in [0, 1), e.g. 0.9."),
    (["scheduler=step", "scheduler.step_size=0"],
     "scheduler.step_size=0 is out of range: it takes a whole number of epochs, at least 1, e.g. 1."),
    (["scheduler.pct_start=0"], "scheduler.pct_start=0.0 is out of range: it takes a fraction in (0, 1), e.g. 0.25."),
    (["optimizer.lr=${oc.env:LR}"], "optimizer.lr=${oc.env:LR}: a value from ${oc.env:...} is recorded as that text, "
     "not as the value the run took: let the shell give the value (optimizer.lr=$LR)."),
    (["-m", "experiment=fast", "hparams_search=cnn_optuna"], "experiment=fast chooses optimizer=adam and "
     "hparams_search=cnn_optuna chooses optimizer=adamw: choose one of them on the command line (optimizer=adam or "
     "optimizer=adamw)."),
    (["augment=affine", "augment.rotate=400"],
     "augment.rotate=400.0 is out of range: it takes degrees in [0, 180], e.g. 10."),
    (["trainer.label_smoothing=2"], "trainer.label_smoothing=2.0 is out of range: it takes a fraction in [0, 1), e.g. 0.1."),
    (["trainer.label_smoothing=-0.5"],
     "trainer.label_smoothing=-0.5 is out of range: it takes a fraction in [0, 1), e.g. 0.1."),
    (["trainer.tta=true", "trainer.tta_scales=[0,1]"], "trainer.tta_scales=[0.0, 1.0] is out of range: it takes a "
     "list of sizes above 0, e.g. [0.92,1.0,1.08]; [1.0] views each image at its own size."),
    (["trainer.tta_scales=[0.9,1.1]"], "trainer.tta_scales=[0.9, 1.1] takes effect only with test-time averaging: "
                                       "add trainer.tta=true, or leave trainer.tta_scales at [1.0]."),
    (["model=vgg_cnn", "model.convs_per_stage=2"],
     "model.convs_per_stage=2 is not a list: give one in brackets, e.g. model.convs_per_stage=[2,2,2]."),
    (["device.threads=-3"], "device.threads=-3 is out of range: it must be at least 0."),
    (["trainer.eval_batch_size=300"], "trainer.eval_batch_size=300 is more than the 256 images of the largest split it "
     "evaluates (256 validation, 256 test): every larger batch is the same single batch, so give at most 256."),
    (["trainer.epochs=1", "trainer.log_interval=20"], "trainer.log_interval=20 is more than this run's 4 training "
     "steps, so no step would be logged: give at most 4, e.g. trainer.log_interval=1."),  # given, though the default
    (["debug=one_batch", "trainer.log_interval=7"], "trainer.log_interval=7 is more than this run's 1 training "
     "steps, so no step would be logged: give at most 1, e.g. trainer.log_interval=1."),  # a debug run: if given
    (["optimized_metric=val_acc"], "optimized_metric=val_acc is not a metric. Did you mean 'val/acc'? Choose one of: "
                                   "test/acc, test/loss, val/acc, val/loss, best_val/acc, train_time_s, params, or a list "
                                       "of them for several objectives."),
    (["optimized_metric=null"], "optimized_metric=null is not a metric. Choose one of: test/acc, test/loss, val/acc, "
                                "val/loss, best_val/acc, train_time_s, params, or a list of them for several objectives."),
    (["--cfgg", "job"], "python -m mnist_exp: unrecognized arguments: --cfgg job. Did you mean '--cfg'? See --help."),
    (["--cfg", "jb"], "python -m mnist_exp: argument --cfg/-c: invalid choice: 'jb' (choose from 'job', 'hydra', "
                      "'all'). See --help."),
    (["model=cnn", "-m", "model.width=8,16"], "python -m mnist_exp: unrecognized arguments: model.width=8,16. Options "
                                              "such as -m go before the overrides: python -m mnist_exp -m key=a,b ... "
                                              "See --help."),
    (["model=cnn,mlp"], "model=cnn,mlp is a sweep: add -m to run one job for each value (python -m mnist_exp -m "
                        "model=cnn,mlp ...)."),
    (["trainer.epochs=range(1,3)"], "trainer.epochs=range(1,3) is a sweep: add -m to run one job for each value "
                                    "(python -m mnist_exp -m 'trainer.epochs=range(1,3)' ...)."),
    (["model.width=interval(4,8)"], "model.width=interval(4,8) is a sweep sampled by a search: python -m mnist_exp -m "
                                    "hydra/sweeper=optuna 'model.width=interval(4,8)' ..."),
    (["model=[cnn,mlp]"], "model=[cnn,mlp]: a run has one model. Give one (model=cnn), or add -m to run one job for "
                          "each (python -m mnist_exp -m model=cnn,mlp ...)."),
    (["model=cnn,mlp", "--cfg", "job"], "model=cnn,mlp is a sweep, and --cfg, --info and --help show one run: give "
                                        "model one value."),
    (["-m", "--cfg", "job"], "-m runs a sweep, and --cfg and --info show one run: leave out -m and give each swept key "
                             "one value, the values of the job to see."),
    (["model="], f"model=: give it one of its options. Options of model: {MODELS_LIST}."),
    (["model=null"], f"model=null: a run needs a model. Give it one of its options: {MODELS_LIST}."),
    (["~model"], f"~model: a run needs a model. Give it one of its options: {MODELS_LIST}."),
    (["debug=null"], "debug=null: a group's option is not null: ~debug removes debug's option, or give one of: "
                     "one_batch, overfit, profile."),
    (["model=5"], f"model=5: model takes one of its options by name: {MODELS_LIST}."),
    (["trainer=5"], f"trainer=5: trainer holds keys ({TRAINER_KEYS}), not a value: set one, e.g. trainer.epochs=..."),
    (["logger.tracking_uri=x"], "Unknown key 'logger.tracking_uri': a logger's keys go under its name "
                                "(logger.<name>.<key>). Did you mean 'logger.mlflow.tracking_uri'?"),
    (["logger.mlfow.tracking_uri=x"], "logger.mlfow.tracking_uri: there is no logger 'mlfow'. Did you mean 'mlflow'? "
                                      "Loggers: csv, mlflow, tensorboard."),
    (["logger.csv=5"], "logger.csv: the csv logger is not chosen: choose it with the others, e.g. "
                       "logger=[tensorboard,csv]."),
    (["logger.tensorboard=1"], "logger.tensorboard=1: logger.tensorboard holds the tensorboard logger's keys (it has "
                               "none), not a value; loggers are chosen with logger=[...], e.g. logger=[tensorboard,csv]."),
    (["logger=[tensorboard,csv]", "logger.tensorboard=null"],
     "logger.tensorboard=null: leave a logger out by choosing the others, logger=[csv]."),
    (["dataset.num_test=0"], "dataset=fake leaves no test images (1024 training, 256 validation): give it "
                             "dataset.num_test=256, say."),
    (["dataset.mean=nan"], "dataset.mean=nan is out of range: it takes the pixels' mean in [0, 1], e.g. 0.1307 "
                           "(MNIST's)."),
    (["dataset.std=nan"], "dataset.std=nan is out of range: it takes the pixels' standard deviation, above 0, e.g. "
                          "0.3081 (MNIST's)."),
    (["dataset.mean=2"], "dataset.mean=2.0 is out of range: it takes the pixels' mean in [0, 1], e.g. 0.1307 "
                         "(MNIST's)."),
    (["dataset.std=0"], "dataset.std=0.0 is out of range: it takes the pixels' standard deviation, above 0, e.g. "
                        "0.3081 (MNIST's)."),
    ([f"device.threads={CORES + 1}"], f"device.threads={CORES + 1} is more than the {CORES} cores this process may "
                                      f"use: give at most {CORES}, or 0 for its share of them."),
    (["hydra.run.dri=x"], "Unknown key 'hydra.run.dri'. Did you mean 'hydra.run.dir'? The keys of hydra.run: dir."),
    (["hydra.sweeper.n_trials=3"], "Unknown key 'hydra.sweeper.n_trials'. The keys of hydra.sweeper: max_batch_size, "
                                   "params. hydra/sweeper=optuna has n_trials: choose it."),
    (["hydra/launcher=joblib"], "hydra/launcher=joblib is for the jobs of a sweep, and this command is one run: add "
                                "-m for a sweep (python -m mnist_exp -m hydra/launcher=joblib ...)."),
    (["hydra.sweep.dir=s"], "hydra.sweep.dir=s is for the jobs of a sweep, and this command is one run (hydra.run.dir=s "
                            "places one run): add -m for a sweep (python -m mnist_exp -m hydra.sweep.dir=s ...)."),
    (["hydra.sweep.subdir=s"], "hydra.sweep.subdir=s is for the jobs of a sweep, and this command is one run: add -m "
                               "for a sweep (python -m mnist_exp -m hydra.sweep.subdir=s ...)."),
    (["hydra.launcher.n_jobs=2"], "Unknown key 'hydra.launcher.n_jobs'. hydra/launcher=joblib has n_jobs: choose it."),
    (["~resume"], "~resume: every key of the config is read, so none can be removed: give resume a value (python "
                  "-m mnist_exp --cfg job shows each key's)."),
    (["~seed"], "~seed: every key of the config is read, so none can be removed: give seed a value (python -m "
                "mnist_exp --cfg job shows each key's)."),
    (["seed=null"], "seed=null: seed needs a value, not null (python -m mnist_exp --cfg job shows its default)."),
    (["hydra.job.name=null"], "hydra.job.name=null: hydra.job.name needs a value, not null (python -m mnist_exp --cfg "
                              "hydra shows its default)."),
    (["optimizer=adam", "optimizer.betas=0.9"],
     "optimizer.betas=0.9 is not a list: give one in brackets, e.g. optimizer.betas=[0.9,0.999]."),
    (["hydra.run.dir="], "hydra.run.dir=: give the run a directory (hydra.run.dir=outputs/my_run), or leave it out "
                         "for a new one."),
    (["ckpt_path=nowhere/last.pt"], "ckpt_path=nowhere/last.pt: there is no such file. Give a run's "
                                    "checkpoints/last.pt, or its directory."),
    (["ckpt_path="], "ckpt_path=: give the checkpoint to continue from, or leave ckpt_path out to start fresh."),
    (["trainer.epochs==2"], "Cannot read the override 'trainer.epochs==2': one '=' goes between key and value, e.g. "
                            "trainer.epochs=2."),
    (["model:cnn"], "Cannot read the override 'model:cnn': write key=value, e.g. model=cnn."),
    (["optimizer.lr='0.1"], "Cannot read the override 'optimizer.lr='0.1': a quote in its value is not closed: close "
                            "it, or leave the quotes out."),
    (["optimizer.lr=[0.1"], "Cannot read the override 'optimizer.lr=[0.1': a bracket in its value is not closed."),
    (["resume=null"], "resume=null: resume needs a value, not null: give true or false, e.g. resume=true."),
    (["model@foo=cnn"], "model@foo=cnn: a group's option goes where the config reads it, not elsewhere (@): choose it "
                        "as model=cnn."),
    (["hydra.job.name=my/job"], "hydra.job.name=my/job: the job's name names its log file (<name>.log), which is no "
                                "path: give one without '/', e.g. hydra.job.name=my_job."),
    ([f"hydra.run.dir=/tmp/{'a' * 300}"], f"A name on the command line is longer than the filesystem takes "
                                          f"(/tmp/{'a' * 75}...): give a shorter one."),
    (["trainer.epochs = 1"], "Cannot read the override 'trainer.epochs = 1': no spaces around '=': trainer.epochs=1."),
    (["tr\u00e4iner.epochs=1"], "Cannot read the override 'tr\u00e4iner.epochs=1': a key is the config's path to it, "
                               "in ASCII letters, digits, '_' and '.' (python -m mnist_exp --cfg job shows them)."),
    (["model.width=${"], "Cannot read the override 'model.width=${': an interpolation ${...} in its value is not "
                         "closed: close it, e.g. ${trainer.epochs}."),
    (["--cfg", "job", "--package", "trainr"], "--package trainr: the config has no such node. Did you mean 'trainer'? "
                                              "python -m mnist_exp --cfg job shows them all."),
    (["--resolve"], "--resolve goes with --cfg: python -m mnist_exp --cfg job --resolve shows the config with its "
                    "interpolations resolved."),
    (["trainer.epochs=${nope}"], "${nope}: the config has no key nope: an interpolation names a key by its full path, "
                                 "e.g. ${trainer.epochs} (python -m mnist_exp --cfg job shows them)."),
    (["trainer.epochs=${foo:1}"], "${foo:...}: there is no resolver foo: refer to a key of the config instead, e.g. "
                                  "${trainer.epochs}."),
    (["model=cnnn", "--help"], "model=cnnn: there is no such option. Did you mean 'cnn'? Options of model: cnn, "
                               "conv_fc, logreg, mlp, strided_cnn, vgg_cnn."),
    (["trainer.epochs=abc", "--info", "config"], "trainer.epochs=abc is not a whole number: give a whole number, e.g. "
                                                 "trainer.epochs=1."),
    (["--hydra-help"], "--hydra-help shows Hydra's own options, and dataset=fake is a key of the run: leave the "
                       "overrides out (python -m mnist_exp --hydra-help), or see a run's config with --cfg job."),
    (["-p", "trainer"], "--package trainer goes with --cfg: python -m mnist_exp --cfg job --package trainer shows that "
                        "node of the config."),
    (["--experimental-rerun", "config.pickle"], "--experimental-rerun config.pickle: mnist_exp runs again from "
     "overrides, not from a pickle: give the overrides listed in the run's .hydra/overrides.yaml."),
    (["-m", "trainer.epochs=glob(*)"], "trainer.epochs=glob(*): glob() matches a config group's options, and "
                                       "trainer.epochs is a key: list the values to sweep instead, trainer.epochs=<a>,<b>."),
    (['hydra.run.dir="~/runs/a"'], "hydra.run.dir=~/runs/a starts with ~, which only the shell expands, and not in "
                                   f"quotes: give the path from / (e.g. {os.path.expanduser('~/runs/a')})."),
    (["+experiment=[fast]"], "experiment is a config group: choose its option without the +, experiment=fast."),
    (["experiment=[fast]"], "experiment=[fast]: give the option without brackets, experiment=fast (Hydra records a list "
                            "of one as no choice)."),
    (["+hydra.job.foo=1"], "+hydra.job.foo=1: the + adds a key to hydra.job, and Hydra reads only its own keys there: "
                           "set one of those without the + (python -m mnist_exp --cfg hydra -p hydra.job lists them)."),
    (["-m", "seed=0,1", "hydra/launcher=joblib", f"hydra.launcher.n_jobs=-{os.cpu_count() + 3}"],
     f"hydra.launcher.n_jobs=-{os.cpu_count() + 3} counts back past this machine's {os.cpu_count()} cores (-1: one job "
     f"per core, -2: one fewer), and joblib would run one at a time: give at least -{os.cpu_count()}, or a count of "
     "jobs."),
    (["hydra.job.name="], "hydra.job.name=: give the job a name (its log file is <name>.log), or leave hydra.job.name "
                          "out."),
    (["-m", "hparams_search=cnn_optuna", "hydra.sweeper.storage="], "hydra.sweeper.storage=: give the study's "
     "database or journal file, leave it out for SQLite in the sweep directory, or give hydra.sweeper.storage=null for "
     "a study in this process alone."),
    (["experiment=[fast,best]"], "experiment=[fast,best]: a run has one experiment. Give one (experiment=fast), or "
                                 "add -m to run one job for each (python -m mnist_exp -m experiment=fast,best ...)."),
    (["model=CNN"], "model=CNN: there is no such option. Did you mean 'cnn'? Options of model: cnn, conv_fc, logreg, "
                    "mlp, strided_cnn, vgg_cnn."),
    (["trainer.tta=true", "trainer.tta_scales=[inf]"], "trainer.tta_scales=[inf] is out of range: it takes a list of "
     "sizes above 0, e.g. [0.92,1.0,1.08]; [1.0] views each image at its own size."),
    (["--config-name", "conf"], "--config-name conf: there is no such config. mnist_exp's is config: leave out "
                                "--config-name, or put your own beside it with --config-dir <dir> --config-name <name>."),
    (["resume=true"], "resume=true continues a run: point hydra.run.dir at it (hydra.run.dir={outputs}/runs/<date>/"
                      "<time>...) or give ckpt_path=<checkpoint>."),  # run_main sets MNIST_EXP_OUTPUTS
    (["hydra.run.dir=/dev/null/run"], "Cannot write run directories to /dev/null/run: /dev/null is not a directory. "
                                      "Choose another place with hydra.run.dir=<dir> or MNIST_EXP_OUTPUTS=<dir>."),
    (["hydra.run.dir=r\u00fcn"], "Cannot read the override 'hydra.run.dir=r\u00fcn': quote a value with spaces, non-ASCII "
                              "letters or other special characters, e.g. 'hydra.run.dir=\"r\u00fcn\"' (with the outer "
                              "single quotes for the shell)."),
    (["trainer.overfit_batches=2", "trainer.limit_batches=1"], "trainer.overfit_batches=2 and "
     "trainer.limit_batches=1 both cut the training batches: give one of them (the other null)."),
    (["trainer.limit_batches=40"], "trainer.limit_batches=40 is more batches than the training split's 4: give at "
                                   "most 4, or null for every batch."),
    (["trainer.overfit_batches=5"], "trainer.overfit_batches=5 is more batches than the training split's 4: give at "
                                    "most 4."),
    (["trainer.batch_size=4096"], "trainer.batch_size=4096 is more than the 1024 training images: give at most 1024."),
    (["trainer.tta=true", "trainer.tta_scales=[1,0.9,1]"], "trainer.tta_scales=[1.0,0.9,1.0] lists a size more than "
                                                           "once: give each once, e.g. trainer.tta_scales=[1.0,0.9]."),
    (["trainer.tta=true", "trainer.tta_scales=[1.0,abc]"], "trainer.tta_scales: its item abc is not a number: give a "
                                                           "list of them, e.g. trainer.tta_scales=[0.9,0.99]."),
    (["+experiment=fast"], "experiment is a config group: choose its option without the +, experiment=fast."),
    (["++model=mlp"], "model is a config group: choose its option without the +, model=mlp."),
    (["experiment=fast", "optimizer=sgd"], "experiment=fast sets optimizer.betas, a key optimizer=sgd does not have "
     "(its keys: name, lr, momentum, weight_decay, nesterov): drop what chooses optimizer=sgd (an override of "
     "optimizer, or a debug preset) to keep the optimizer of experiment=fast, or write a recipe of your own from "
     "experiment/fast.yaml without that key."),
    (["experiment=best", "debug=overfit"], "experiment=best sets augment.rotate, a key augment=none does not have (its "
     "keys: name): drop what chooses augment=none (an override of augment, or a debug preset) to keep the augment of "
     "experiment=best, or write a recipe of your own from experiment/best.yaml without that key."),
    (["logger.csv.flush=1"], "logger.csv.flush: the csv logger has no key 'flush'. Its keys: none."),
    (["logger.tensorboard.flush_secs=1"], "logger.tensorboard.flush_secs: the tensorboard logger has no key "
                                          "'flush_secs'. Its keys: none."),
    # Hydra settings a command cannot honour (mnist_exp/run/hydra_settings.py).
    (["-m", "seed=0,1", "hydra.sweep.subdir=same"], "hydra.sweep.subdir=same can give two jobs of one sweep the same "
     "directory, where the second writes over the first (override_dirname leaves out keys such as logger): put the "
     "job's number in it, e.g. 'hydra.sweep.subdir=${hydra.job.num}_${hydra.job.override_dirname}'."),
    (["hydra.job.chdir=yes"], "hydra.job.chdir=true: mnist_exp reads relative paths (data, a search's study, an MLflow "
     "store) from where you start it, and writes each run into its own directory without changing into it: leave "
     "hydra.job.chdir out."),
    (["hydra.output_subdir=null"], "hydra.output_subdir=null: a run's config goes to <run dir>/.hydra, where resume and "
     "the tools (compare, evaluate, export) read it: leave hydra.output_subdir out."),
    (["-m", "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.backend=threading"], "hydra.launcher.backend="
     "threading: joblib's launcher runs each job in a process of its own (loky) whatever this says: leave "
     "hydra.launcher.backend out (hydra.launcher.n_jobs sets how many run at once)."),
    (["-m", "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.max_nbytes=1M"], "hydra.launcher.max_nbytes=1M: "
     "joblib applies it to large arrays handed to a job, and Hydra's launcher hands a job its config alone: leave it "
     "out."),  # it changed nothing
    (["-m", "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.require=sharedmem"], "hydra.launcher.require="
     "sharedmem: joblib's launcher runs each job in a process of its own (loky) whatever this says: leave "
     "hydra.launcher.require out (hydra.launcher.n_jobs sets how many run at once)."),  # was joblib's ValueError
    (["-m", "seed=0,1", "hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=2"], "hydra.launcher."
     "tasks_per_node=2: each job of a sweep is one training process, and more would train the same run side by side "
     "in one directory: give hydra.launcher.tasks_per_node=1. To train one run on several GPUs, start it with torchrun "
     "(README: several processes)."),
    (["-m", "hparams_search=cnn_optuna", "~hydra.sweeper.params.model.width"], "~hydra.sweeper.params.model.width: "
     "every key of the config is read, so none can be removed: give model.width a value (python -m mnist_exp --cfg "
     "job shows each key's)."),  # a value fixes it: the search leaves it out of its space
    (["-m", "seed=0,1", "hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=1"], "hydra.launcher."
     "cpus_per_task=1: submitit_local runs each job on this machine and applies no cpus_per_task to it (SLURM does, "
     "hydra/launcher=slurm): leave it out; device.threads=N sets a job's CPU threads."),
    # A job's one process trained on one of them, the other idle; on a machine without a GPU, on the CPU.
    (["-m", "seed=0,1", "hydra/launcher=submitit_local", "hydra.launcher.gpus_per_node=2"], "hydra.launcher."
     "gpus_per_node=2: each job of a sweep is one training process, which trains on one GPU: give "
     "hydra.launcher.gpus_per_node=1. To train one run on several GPUs, start it with torchrun (README: several "
     "processes)."),
    pytest.param(["-m", "seed=0,1", "hydra/launcher=submitit_local", "hydra.launcher.gpus_per_node=1"],
                 "hydra.launcher.gpus_per_node=1: submitit_local runs each job on this machine, which has no CUDA GPU, "
                 "so the jobs would train on the CPU: leave it out, or run the sweep where the GPUs are "
                 "(hydra/launcher=slurm).", marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU")),
    # joblib's one-at-a-time backend reads no timeout: it warned, and a job ran past it.
    (["-m", "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=1", "hydra.launcher.timeout=30"],
     "hydra.launcher.timeout=30: joblib limits a job's time only where it runs several at once, and "
     "hydra.launcher.n_jobs=1 runs one at a time: give hydra.launcher.n_jobs=2 or more (in a search, as many "
     "hydra.sweeper.n_jobs), or leave the timeout out."),
    (["-m", "seed=0,1", "hydra/launcher=joblib", f"hydra.launcher.n_jobs=-{CORES}", "hydra.launcher.timeout=30"],
     f"hydra.launcher.timeout=30: joblib limits a job's time only where it runs several at once, and "
     f"hydra.launcher.n_jobs=-{CORES} runs one at a time here: give hydra.launcher.n_jobs=2 or more (in a search, as "
     "many hydra.sweeper.n_jobs), or leave the timeout out."),
    (["-m", "seed=0,1", "hydra/launcher=submitit_local", "hydra.launcher.name=mine"], "hydra.launcher.name=mine: "
     "submitit_local runs each job on this machine and applies no name to it (SLURM does, hydra/launcher=slurm): leave "
     "it out."),  # it ran as before, the name nowhere but in the recorded config
    (["-m", "hparams_search=cnn_optuna", "hydra.sweeper.storage=sqlite:///:memory:"], "hydra.sweeper.storage=sqlite:"
     "///:memory: is a database in memory, which the trials' jobs cannot reach: leave the storage out (SQLite in the "
     "sweep directory), or give hydra.sweeper.storage=null for a study in this process alone."),
    # No path (sqlite:///$STUDY with the variable unset) is in memory too: each job would find no trial.
    (["-m", "hparams_search=cnn_optuna", "hydra.sweeper.storage=sqlite:///"], "hydra.sweeper.storage=sqlite:/// is a "
     "database in memory, which the trials' jobs cannot reach: leave the storage out (SQLite in the sweep directory), "
     "or give hydra.sweeper.storage=null for a study in this process alone."),
    # A search space as a dict: merged into the null params of hydra/sweeper=optuna, or as a key new to a search's
    # params, it failed in Hydra (an AttributeError; "not a key of the sweeper chosen").
    *(([*search, 'hydra.sweeper.params={trainer.epochs: "choice(1,2)"}'], 'hydra.sweeper.params={trainer.epochs: '
       '"choice(1,2)"}: give each key\'s search space on the command line as the key itself, '
       '\'trainer.epochs=choice(1,2)\' (a search\'s config file lists them under hydra.sweeper.params).')
      for search in (["-m", "hydra/sweeper=optuna"], ["-m", "hparams_search=cnn_optuna"])),
    (["-m", "hparams_search=cnn_optuna", "custom_search_space=my.space"], "Unknown key 'custom_search_space'. The keys "
     "of the config: dataset, model, optimizer, scheduler, augment, device, trainer, seed, resume, ckpt_path, "
     "init_from, optimized_metric, logger, experiment, hparams_search, debug. It is a key of Hydra's: "
     "hydra.sweeper.custom_search_space (hydra/sweeper=optuna)."),
    (["logger=[csv,tensorboard]", "~logger.tensorboard"], "~logger.tensorboard: a logger is chosen by its name in "
     "logger=[...], not removed as a key: leave tensorboard out, logger=[csv]."),  # was: 'give it a value'
    (["~logger.tensorboard"], "~logger.tensorboard: a logger is chosen by its name in logger=[...], not removed as a "
     "key: leave tensorboard out, logger=[] for none."),
    (["hydra.runtime.output_dir=elsewhere"], "hydra.runtime.output_dir=elsewhere: Hydra writes "
     "hydra.runtime.output_dir itself as each job starts, over the value given, which changes nothing the run does: "
     "leave it out (hydra.run.dir=<dir> places a run, hydra.sweep.dir=<dir> a sweep)."),  # it ran in outputs/
    (["hydra.overrides.task=['seed=5']"], "hydra.overrides.task=['seed=5']: Hydra writes hydra.overrides.task itself as "
     "each job starts, over the value given, which changes nothing the run does: leave it out."),  # recorded seed=5
    (["-m", "seed=0,1", "hydra.job.id=3"], "hydra.job.id=3: Hydra writes hydra.job.id itself as each job starts, over "
     "the value given, which changes nothing the run does: leave it out."),
    (["+hydra.job.env_set.MNIST_EXP_OUTPUTS=elsewhere"], "+hydra.job.env_set.MNIST_EXP_OUTPUTS=elsewhere: Hydra sets "
     "hydra.job.env_set's variables once the run's directory is placed, so the run would go to {outputs}/ and only what "
     "reads the variable later (an MLflow store) to elsewhere: set it where the command starts, "
     "MNIST_EXP_OUTPUTS=elsewhere python -m mnist_exp ..."),
    (["-m", "seed=0,1", "hydra.job.env_set={MNIST_EXP_OUTPUTS:elsewhere}"], "hydra.job.env_set={MNIST_EXP_OUTPUTS:"
     "elsewhere}: Hydra sets hydra.job.env_set's variables once the run's directory is placed, so the run would go to "
     "{outputs}/ and only what reads the variable later (an MLflow store) to elsewhere: set it where the command "
     "starts, MNIST_EXP_OUTPUTS=elsewhere python -m mnist_exp ..."),
    (["hydra.sweeper.max_batch_size=2"], "hydra.sweeper.max_batch_size=2 is for the jobs of a sweep, and this command "
     "is one run: add -m for a sweep (python -m mnist_exp -m hydra.sweeper.max_batch_size=2 ...)."),
    (["-m", "seed=0,1", "+hydra.launcher.n_jobs=2"], "+hydra.launcher.n_jobs=2: the + adds a key to the launcher's "
     "config, and the launcher reads only its own keys: set one of those without the + (python -m mnist_exp --cfg hydra "
     "hydra/launcher=<option> -p hydra.launcher lists them)."),
])
def test_bad_input_is_one_clear_line_and_a_nonzero_exit(tmp_path, monkeypatch, capsys, args, message):
    code, _, err = run_main(*on_fake_data(args), monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1
    assert err.splitlines() == [message.replace("{outputs}", str(tmp_path / "outputs"))]


@pytest.mark.parametrize("text, message", [
    ("# @package _global_\ntrainer: {epochs: 1\n", "{file}, line 3: not valid YAML (while parsing a flow mapping: "
                                                    "did not find expected ',' or '}}'). Fix the file."),  # libyaml's words
    ("foo: [\n", "{file}, line 2: not valid YAML (while parsing a flow node: did not find expected node content). Fix "
                 "the file."),  # libyaml's problem before its place
    ("defaults:\n  - override /model: mlp\n", "experiment/mine.yaml sets the model group of the whole config, which "
                                              "needs '# @package _global_' as the file's first line: add it, as each "
                                              "experiment file has."),
    ("trainer:\n  epochs: 3\n", "experiment/mine.yaml sets keys of the whole config, which needs '# @package _global_' "
                                "as the file's first line: add it, as each experiment file has."),
    ("# @package _global_\ndefaults:\n  - /model: mlp\n", "A defaults list chooses model again (model: mlp): write "
                                                          "'- override /model: mlp' there, as the experiment files do."),
])
def test_a_users_broken_experiment_file_is_one_line(text, message, tmp_path, monkeypatch, capsys):
    (tmp_path / "mine" / "experiment").mkdir(parents=True)
    (tmp_path / "mine" / "experiment" / "mine.yaml").write_text(text)
    code, _, err = run_main("--config-dir", str(tmp_path / "mine"), "experiment=mine", "dataset=fake",
                            monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines() == [message.format(file=tmp_path / "mine" / "experiment" / "mine.yaml")]


def test_an_own_option_named_as_a_packaged_one_is_refused_not_shadowed(tmp_path, monkeypatch, capsys):
    """Hydra reads conf/'s experiment/fast.yaml before the one of --config-dir: the user's would never run."""
    own = tmp_path / "mine" / "experiment" / "fast.yaml"
    own.parent.mkdir(parents=True)
    own.write_text("# @package _global_\ntrainer:\n  epochs: 7\n")
    code, _, err = run_main("--config-dir", str(tmp_path / "mine"), "experiment=fast", "--cfg", "job",
                            monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines() == [
        f"{own} has the name of mnist_exp's own experiment=fast, which Hydra reads instead: rename it (e.g. "
        "experiment/my_fast.yaml) and choose experiment=my_fast."]
    copy = own.parent.parent / "model" / "cnn.yaml"  # conf/ copied as it is changes nothing: no refusal
    copy.parent.mkdir()
    copy.write_bytes((CONF_DIR / "model" / "cnn.yaml").read_bytes())
    own.rename(own.with_name("my_fast.yaml"))  # the advice, followed
    code, out, err = run_main("--config-dir", str(tmp_path / "mine"), "experiment=my_fast", "--cfg", "job",
                              monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0 and "epochs: 7" in out, err


def test_an_own_config_yaml_is_refused_not_shadowed_and_the_advice_works(tmp_path, monkeypatch, capsys):
    """Hydra reads conf/config.yaml before a config.yaml in --config-dir: the user's seed would never be read."""
    own = tmp_path / "mine" / "config.yaml"
    own.parent.mkdir()
    own.write_text("defaults:\n  - config\n  - _self_\nseed: 7\n")
    code, _, err = run_main("--config-dir", "mine", "--cfg", "job", monkeypatch=monkeypatch, capsys=capsys,
                            cwd=tmp_path)
    assert (code, err) == (1, "mine/config.yaml has the name of mnist_exp's own config.yaml, which Hydra reads "
                              "instead: rename it (e.g. my_config.yaml), start its defaults list with '- config', and "
                              "choose it with --config-dir mine --config-name my_config.\n")
    own.rename(own.with_name("my_config.yaml"))  # the advice, followed
    code, out, err = run_main("--config-dir", "mine", "--config-name", "my_config", "--cfg", "job",
                              monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0 and "\nseed: 7\n" in out, err


def test_own_options_on_hydra_searchpath_are_checked_and_listed_as_those_of_config_dir(tmp_path, monkeypatch, capsys):
    """hydra.searchpath adds a folder of configs as --config-dir does: its options are checked and listed alike."""
    own = tmp_path / "mine" / "optimizer" / "sgd.yaml"
    own.parent.mkdir(parents=True)
    own.write_text((CONF_DIR / "optimizer" / "sgd.yaml").read_text().replace("lr: 0.01", "lr: 0.5"))
    (tmp_path / "mine" / "experiment").mkdir()
    (tmp_path / "mine" / "experiment" / "my_sgd.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /optimizer: sgd\n")
    searchpath = "hydra.searchpath=[file://mine]"
    code, _, err = run_main(searchpath, "optimizer=sgd", "--cfg", "job", monkeypatch=monkeypatch, capsys=capsys,
                            cwd=tmp_path)
    assert (code, err) == (1, "mine/optimizer/sgd.yaml has the name of mnist_exp's own optimizer=sgd, which Hydra "
                              "reads instead: rename it (e.g. optimizer/my_sgd.yaml) and choose optimizer=my_sgd.\n")
    own.unlink()
    code, _, err = run_main(searchpath, "experiment=my_sgd", "hparams_search=cnn_optuna", "--cfg", "job",
                            monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert (code, err) == (1, "experiment=my_sgd chooses optimizer=sgd and hparams_search=cnn_optuna chooses "
                              "optimizer=adamw: choose one of them on the command line (optimizer=sgd or "
                              "optimizer=adamw).\n")
    code, out, _ = run_main(searchpath, "--help", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0 and "  experiment:     best, examples_mnist, fast, my_sgd, smoke," in out


@pytest.mark.parametrize("given", [["hydra.searchpath=[file://mnie]"], ["--config-dir", "mnie"]])
def test_an_own_config_folder_that_is_not_there_is_refused(given, tmp_path, monkeypatch, capsys):
    """Hydra only warns of a searchpath folder it cannot find, and runs without its configs."""
    (tmp_path / "mine" / "experiment").mkdir(parents=True)
    (tmp_path / "mine" / "experiment" / "mine.yaml").write_text("# @package _global_\ntrainer:\n  epochs: 7\n")
    code, _, err = run_main(*given, "dataset=fake", "--cfg", "job", monkeypatch=monkeypatch, capsys=capsys,
                            cwd=tmp_path)
    assert (code, err) == (1, f"{given[0].split('=')[0]} names mnie, which is not a folder here ({tmp_path}): give "
                              "the folder your own configs are in.\n")
    fixed = [part.replace("mnie", "mine") for part in given]
    code, out, err = run_main(*fixed, "experiment=mine", "dataset=fake", "--cfg", "job", monkeypatch=monkeypatch,
                              capsys=capsys, cwd=tmp_path)
    assert code == 0 and "  epochs: 7\n" in out, err


@pytest.mark.parametrize("args", [["trainer.epochs=-1"], ["+foo=1"], ["seed=-1"], ["optimizer.lr=0"], ["device=cuda"],
                                  ["model.name=cnnn"], ["resume=true"], ["model=cnn,mlp"], ["hydra.run.dir="],
                                  ["hydra.run.dir=new", "trainer.epochs=-1"], ["logger.tensorboard=null"],
                                  ["logger.tensorboard=1"], ["-m", "seed=1,2", "optimized_metric=[val/acc,foo]"],
                                  ["model.width=${oc.decode:'[1,2]'}"],
                                  ["model.width=${model.stem_width}", "model.stem_width=${model.width}"]])
def test_a_refused_run_leaves_no_directory(tmp_path, monkeypatch, capsys, args):
    """Refused before Hydra makes the run's directory: the values of the composed config, then the run's."""
    if args == ["device=cuda"] and torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible: device=cuda is not refused")
    code, _, err = run_main(*on_fake_data(args), monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())  # no outputs/, nothing in the directory the run started in


@pytest.mark.parametrize("args, message", [
    (["optimizer=sgd", "optimizer.momentum=1.5"],
     "optimizer.momentum=1.5 is out of range: it takes a fraction in [0, 1), e.g. 0.9."),
    (["optimizer=sgd", "optimizer.momentum=0", "optimizer.nesterov=true"],  # torch's words named no fix
     "optimizer.nesterov=true looks ahead along the momentum, and optimizer.momentum=0.0 has none: give "
     "optimizer.momentum above 0, e.g. 0.9, or optimizer.nesterov=false."),
    (["optimizer=sgd", "optimizer.momentum=0", "scheduler.base_momentum=0.85"],
     "scheduler.base_momentum=0.85 cycles the optimizer's momentum, but SGD has none to cycle: set "
     "scheduler.base_momentum=null, or give the optimizer a momentum (optimizer.momentum=0.9, optimizer=adamw)."),
    (["scheduler=step", "scheduler.gamma=0"],
     "scheduler.gamma=0.0 is out of range: it takes a factor above 0, e.g. 0.7."),
    (["augment=affine", "augment.rotate=400"],
     "augment.rotate=400.0 is out of range: it takes degrees in [0, 180], e.g. 10."),
])
def test_an_optimizer_schedule_or_augmentation_its_builder_refuses_is_refused_before_the_run_logs(
        tmp_path, monkeypatch, capsys, args, message):
    """Built for a throwaway parameter with the config's other checks: no run directory, no log line before it."""
    code, out, err = run_main("dataset=fake", *args, monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert (code, out, err.splitlines()) == (1, "", [message])
    assert not any(tmp_path.iterdir())


def test_a_shipped_optimizers_refusal_comes_first_beside_a_users_own_schedule(tmp_path, monkeypatch, capsys):
    """A user's own schedule is the run's to build; the shipped optimizer beside it is still checked first."""
    from hydra.core.config_store import ConfigStore
    from torch.optim.lr_scheduler import LambdaLR

    from mnist_exp.registry import SCHEDULERS

    def flat(optimizer, total_steps: int, steps_per_epoch: int):
        return LambdaLR(optimizer, lambda step: 1.0)

    # As a user's script registers it, for this test only: the registry, and the options and schema that the run
    # stores in Hydra's ConfigStore from it, are taken away again after.
    monkeypatch.setitem(SCHEDULERS.builders, "flat", flat)
    repo = ConfigStore.instance().repo
    monkeypatch.setitem(repo.setdefault("scheduler", {}), "flat.yaml", None)
    monkeypatch.setitem(repo.setdefault("schema", {}).setdefault("scheduler", {}), "flat.yaml", None)
    code, out, err = run_main("dataset=fake", "optimizer=sgd", "optimizer.momentum=1.5", "scheduler=flat",
                              monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert (code, out, err.splitlines()) == (1, "", ["optimizer.momentum=1.5 is out of range: it takes a fraction in "
                                                     "[0, 1), e.g. 0.9."])
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("args", [["model.width=0"], ["optimizer.betas=[0.9]"], ["dataset.num_train=0"],
                                  ["dataset.std=0"], ["hydra.run.dir=new", "model.width=0"],
                                  ["augment=shift", "augment.max_shift=28"], ["trainer.log_interval=1000"]])
def test_a_run_refused_by_its_builder_leaves_no_run(tmp_path, monkeypatch, capsys, args):
    """Values only a builder checks are refused after Hydra made the run's directory: the run takes it away again."""
    code, _, err = run_main(*on_fake_data(args), monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and len(err.splitlines()) == 1, err
    if "augment.max_shift=28" in args:
        assert err == "augment.max_shift=28 moves an image out of its 28 pixels: give fewer, e.g. augment.max_shift=2.\n"
    if "trainer.log_interval=1000" in args:  # 1024 fake images, 4 batches of 256, 2 epochs
        assert err == ("trainer.log_interval=1000 is more than this run's 8 training steps, so no step would be logged: "
                       "give at most 8, e.g. trainer.log_interval=1.\n")
    assert not [path for path in tmp_path.rglob("*") if not path.is_dir()]
    assert not run_dirs(tmp_path) and not (tmp_path / "new").exists()


def test_the_default_log_interval_longer_than_a_run_warns(tmp_path, monkeypatch, capsys):
    """The default's 20 steps against a fake epoch's 4: the run goes on and tells why it has no train/ curve (an
    interval within the run draws it: test_tensorboard_events_read_back)."""
    code, _, _ = run_main("dataset=fake", "trainer.epochs=1", "device=cpu", monkeypatch=monkeypatch, capsys=capsys,
                          cwd=tmp_path)
    [run_dir] = run_dirs(tmp_path)
    assert code == 0 and ("trainer.log_interval=20 (the default) is more than this run's 4 training steps: no train/ "
                          "or lr point is logged. For them, give at most 4, e.g. trainer.log_interval=1."
                          in (run_dir / "train.log").read_text())
    assert "train/loss" not in read_events(run_dir).Tags()["scalars"]


def test_an_average_decay_the_warm_up_never_reaches_is_refused_and_the_advice_runs(tmp_path, monkeypatch, capsys):
    """Every decay above what (1 + step) / (10 + step) reaches by the last step averaged the same: 32 steps here."""
    args = ("dataset=fake", "trainer.batch_size=64", "trainer.progress=false")
    code, _, err = run_main(*args, "trainer.ema_decay=0.999", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines() == [
        "trainer.ema_decay=0.999 is never reached: the average's warm-up, (1 + step) / (10 + step), rises to 0.7857 by "
        "this run's last step (32 steps), so any decay from there up averages the same; give at most 0.7857, or "
        "train more steps."]
    code, _, err = run_main(*args, "trainer.ema_decay=0.7857", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err


def test_presets_that_choose_a_group_differently_are_refused_and_the_advice_composes(tmp_path, monkeypatch, capsys):
    """experiment=fast's Adam would have become cnn_optuna's AdamW (the later preset) without a word."""
    presets = ("experiment=fast", "hparams_search=cnn_optuna")
    code, _, err = run_main(*presets, "--cfg", "job", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines()[-1].startswith("experiment=fast chooses optimizer=adam and ")
    for optimizer in ("adam", "adamw"):
        code, out, err = run_main(*presets, f"optimizer={optimizer}", "--cfg", "job", monkeypatch=monkeypatch,
                                  capsys=capsys, cwd=tmp_path)
        assert code == 0 and yaml.safe_load(out)["optimizer"]["name"] == optimizer, err


def test_a_refused_run_keeps_a_directory_it_did_not_make(tmp_path, monkeypatch, capsys):
    """A directory that was there before the run (given by name) stays, with the failure recorded in it; so does
    one that an earlier command in this process made and took away, then the user made again."""
    refused = ("dataset=fake", "model.width=0", "hydra.run.dir=mine")
    code, _, _ = run_main(*refused, monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and not (tmp_path / "mine").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    code, _, err = run_main(*refused, monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.startswith("model.width=0 is out of range")
    assert read_metrics(tmp_path / "mine")["status"] == "failed"
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("name", ["RANK", "WORLD_SIZE"])
def test_a_torchrun_variable_that_is_no_number_is_refused_in_one_line(name, tmp_path):
    code, _, err = run_captured("dataset=fake", "hydra.run.dir=run", cwd=tmp_path, env={name: "abc"})
    assert (code, err) == (1, f"{name}=abc in the environment is not a whole number: torchrun sets it in the processes "
                              f"it starts; outside torchrun, unset it (unset {name}).\n")
    assert not (tmp_path / "run").exists()


def test_a_new_run_is_refused_inside_a_run_and_among_runs_and_the_advice_runs(tmp_path, monkeypatch, capsys):
    """Its files would mix with a run's, or hide the runs of the directory from compare; a directory inside works."""
    args = ("dataset=fake", "model.width=4", "trainer.epochs=1", "device.threads=1")
    assert run_main(*args, "hydra.run.dir=runs/a", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)[0] == 0
    for place, message in (("runs/a/.hydra", f"runs/a/.hydra is inside the run {tmp_path / 'runs/a'}"),
                           ("runs", "runs holds runs (a); a new run there would hide them from compare.")):
        code, _, err = run_main(*args, f"hydra.run.dir={place}", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
        assert code == 1 and err.startswith(message) and len(err.splitlines()) == 1, err
    assert run_main(*args, "hydra.run.dir=runs/b", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)[0] == 0
    assert sorted(path.name for path in run_dirs(tmp_path / "runs")) == ["a", "b"]


@pytest.mark.parametrize("model, fix", [(["model=cnn", "model.in_channels=3"], "model.in_channels=1"),
                                        (["model=logreg", "model.in_features=100"], "model.in_features=784"),
                                        (["model=cnn", "model.image_size=30"], "model.image_size=28")])  # rounded away
def test_a_model_that_does_not_fit_the_images_is_one_line(tmp_path, monkeypatch, capsys, model, fix):
    code, _, err = run_main("dataset=fake", *model, monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines() == [f"{model[1]} does not fit the dataset's 1x28x28 images: give {fix}."]
    code, _, err = run_main("dataset=fake", model[0], fix, "trainer.epochs=1", monkeypatch=monkeypatch, capsys=capsys,
                            cwd=tmp_path)
    assert code == 0, err


def test_images_too_small_for_the_model_are_refused_with_advice_that_runs(tmp_path, monkeypatch, capsys):
    small = ("dataset=fake", "dataset.image_size=8", "trainer.epochs=1")
    code, _, err = run_main(*small, monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines() == [
        "model.image_size=8 is too small for the cnn's convs, which take 19 pixels a side or more: give larger images "
        "(dataset.image_size=28 in the datasets that have the key), or model=vgg_cnn, which takes 8 pixels a side or "
        "more."]
    code, _, err = run_main(*small, "model=vgg_cnn", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err


def test_images_too_small_for_the_vgg_cnn_too_are_advised_a_model_that_takes_them(tmp_path, monkeypatch, capsys):
    """vgg_cnn's three pools leave nothing of 7x7: the cnn's advice named it anyway, and its refusal named keys it
    does not have."""
    small = ("dataset=fake", "dataset.image_size=7", "trainer.epochs=1")
    code, _, err = run_main(*small, monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines() == [
        "model.image_size=7 is too small for the cnn's convs, which take 19 pixels a side or more: give larger images "
        "(dataset.image_size=28 in the datasets that have the key), or model=strided_cnn, which takes any size."]
    code, _, err = run_main(*small, "model=vgg_cnn", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and len(err.splitlines()) == 1 and err.endswith(
        "Its pools leave nothing of the images: give larger ones (dataset.image_size where the dataset has the key), "
        "or model=strided_cnn, which takes any size.\n"), err
    code, _, err = run_main(*small, "model=strided_cnn", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err


def test_flat_vectors_for_a_model_of_images_are_one_line_that_names_the_key(tmp_path, monkeypatch, capsys):
    code, _, err = run_main("dataset=fake", "dataset.flatten=true", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and len(err.splitlines()) == 1 and err.startswith("The model does not take the dataset's input "
                                                                       "of shape (784,): ")
    assert err.endswith("Give it images: leave dataset.flatten out (dataset.flatten=true makes flat vectors of them).\n")


def test_a_traceback_hydra_prints_becomes_the_error_it_ends_in():
    from mnist_exp.hydra_errors import one_line

    text = ('Traceback (most recent call last):\n  File "x.py", line 1, in f\n    raise NoSuchModuleError(...)\n'
            "sqlalchemy.exc.NoSuchModuleError: Can't load plugin: sqlalchemy.dialects:foo\n")
    assert one_line(text) == "sqlalchemy.exc.NoSuchModuleError: Can't load plugin: sqlalchemy.dialects:foo"
    # joblib's launcher past hydra.launcher.timeout: an error without a message, named for what it means.
    text = 'Traceback (most recent call last):\n  File "x.py", line 1, in f\nmultiprocessing.context.TimeoutError\n'
    assert one_line(text) == ("A job ran past hydra.launcher.timeout, and joblib stopped the sweep: give a timeout in "
                              "seconds longer than a job takes, or leave it out for none.")
    # A launcher's tool (sbatch) says what it refused in argparse's form: its words, not a flag of mnist_exp's.
    text = ("sbatch: error: Invalid generic resource (gres) specification\n\n"
            "Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.\n")
    assert one_line(text) == "sbatch: error: Invalid generic resource (gres) specification"


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="Linux's /proc")
def test_a_run_directory_where_nothing_can_be_written_is_one_line(tmp_path, monkeypatch, capsys):
    # /proc looks writable to root by its permissions; the check writes there to find out.
    code, _, err = run_main("dataset=fake", "hydra.run.dir=/proc/forbidden/run", monkeypatch=monkeypatch,
                            capsys=capsys, cwd=tmp_path)
    assert code == 1 and len(err.splitlines()) == 1
    assert err.startswith("Cannot write run directories to /proc/forbidden/run: /proc cannot be written (")


def test_experiment_that_does_not_exist_names_the_recipes(tmp_path, monkeypatch, capsys):
    code, _, err = run_main("experiment=fats", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and len(err.splitlines()) == 1
    assert err.startswith("experiment=fats: there is no such option. Did you mean 'fast'? Options of "
                                    "experiment: ")
    assert "best, " in err and "smoke" in err


def test_resume_of_a_directory_without_a_run_says_how(tmp_path, monkeypatch, capsys):
    code, _, err = run_main("dataset=fake", "resume=true", f"hydra.run.dir={tmp_path / 'nothing'}",
                            monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1
    assert err.splitlines() == [
        f"resume=true, but {tmp_path / 'nothing'}/checkpoints/last.pt does not exist. Point hydra.run.dir at the run "
        f"to continue (hydra.run.dir={tmp_path}/outputs/runs/<date>/<time>...) or give ckpt_path=<checkpoint>."]
    assert not (tmp_path / "nothing").exists()  # refused before anything is written
    (tmp_path / "early" / ".hydra").mkdir(parents=True)  # a run killed before its first checkpoint
    code, _, err = run_main("dataset=fake", "resume=true", "hydra.run.dir=early", monkeypatch=monkeypatch,
                            capsys=capsys, cwd=tmp_path)
    assert (code, err) == (1, "resume=true, but the run in early has no checkpoints/last.pt to continue from (it ended "
                              "before its first, or ran with trainer.checkpoint=false). Start it afresh: its command "
                              "without resume=true, with a new hydra.run.dir (or leave it out).\n")
    code, _, err = run_main("dataset=fake", "hydra.run.dir=afresh", monkeypatch=monkeypatch, capsys=capsys,
                            cwd=tmp_path)
    assert code == 0, err


def test_a_full_traceback_only_when_asked(tmp_path, monkeypatch, capsys):
    # Without HYDRA_FULL_ERROR, one line (test_bad_input_is_one_clear_line_and_a_nonzero_exit); with it, the error
    # itself leaves main, so Python prints its traceback.
    code, _, err = run_main("dataset=fake", "trainer.epochs=0", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert (code, err) == (1, "trainer.epochs=0 is out of range: it must be at least 1.\n")
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    monkeypatch.setattr(sys, "argv", ["mnist_exp", "dataset=fake", "trainer.epochs=0"])
    from mnist_exp import app

    with pytest.raises(UserError) as raised:
        app.main()
    assert str(raised.value) == "trainer.epochs=0 is out of range: it must be at least 1."
    monkeypatch.setattr(sys, "argv", ["mnist_exp", "model.name=cnnn"])  # refused from the command line alone
    with pytest.raises(UserError, match="^Unknown model 'cnnn'"):
        app.main()


@pytest.mark.parametrize("scheduler, advice", [
    ("none", "Lower optimizer.lr or use a warm-up schedule (scheduler=onecycle)."),
    ("onecycle", "Lower optimizer.lr."),  # one-cycle already warms up: no advice to choose it
])
def test_divergence_stops_with_one_line_and_no_diverged_checkpoint(tmp_path, monkeypatch, capsys, scheduler, advice):
    code, _, err = run_main("dataset=fake", "optimizer=sgd", "optimizer.lr=1e12", f"scheduler={scheduler}", "model=mlp",
                            "trainer.log_interval=1", "device=cpu", "device.threads=1",
                            f"hydra.run.dir={tmp_path / 'run'}", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines()[-1].startswith("Training diverged: the loss is nan at step")
    assert err.splitlines()[-1].endswith(f"). {advice}")
    assert "Traceback" not in err
    assert read_metrics(tmp_path / "run")["status"] == "failed"
    assert not (tmp_path / "run" / "checkpoints" / "best.pt").exists()


@pytest.mark.parametrize("sweep, message", [
    ("model.width=range(8,4)", "model.width=range(8,4) sweeps over no values: range(start,stop,step) stops before "
                               "stop, so the start must be below it (or above it, with a negative step)."),
    ("model=glob(zz*)", f"model=glob(zz*) matches no model config: choose from {MODELS_LIST}."),
    ("model=5,cnn", f"model=5,cnn: model takes one of its options by name: {MODELS_LIST}."),
    ("model.width=interval(4,8)", "interval(low,high) is sampled only by a search: add hydra/sweeper=optuna (or "
                                  "hparams_search=cnn_optuna), or sweep listed values, e.g. key=4,8 or range(4,9)."),
    ("trainer.epochs=range(a,3)", "Cannot read the override 'trainer.epochs=range(a,3)': range() takes numbers, and "
                                  "its start in range(a,3) is not one, e.g. range(1,4)."),
    ("hydra.launcher.n_jobs=0", "hydra.launcher.n_jobs=0 runs no job: give how many jobs run at a time, at least 1 "
                                "(-1: one per core)."),
    ("hydra.launcher.n_jobs=00", "hydra.launcher.n_jobs=0 runs no job: give how many jobs run at a time, at least 1 "
                                 "(-1: one per core)."),  # joblib's own error
    ("hydra.sweeper.params.model.width=choice(8,12)", "hydra.sweeper.params.model.width: give a key's search space "
     "on the command line as the key itself, e.g. 'model.width=choice(a,b)' or 'model.width=interval(a,b)' (a search's "
     "config file lists them under hydra.sweeper.params)."),
    ("model.width=range(8,16,0)", "model.width=range(8,16,0): range(start,stop,step) needs a step other than 0, e.g. "
                                  "range(8,33,8)."),
    ("optimizer.lr=range(0.1,0.5,0.0)", "optimizer.lr=range(0.1,0.5,0.0): range(start,stop,step) needs a step other "
                                        "than 0, e.g. range(8,33,8)."),
    ("optimizer.lr=0.01,0.1 ++optimizer.lr=0.001", "optimizer.lr=0.01,0.1 sweeps optimizer.lr, and "
     "++optimizer.lr=0.001 after it gives it again, which each job would take: give it once."),
    ("model.width=4,8 model.width=16,32", "model.width=4,8 sweeps model.width, and model.width=16,32 after it gives it "
                                          "again, which each job would take: give it once."),
])
def test_a_sweep_without_jobs_is_refused_before_it_writes(tmp_path, monkeypatch, capsys, sweep, message):
    code, _, err = run_main("-m", "dataset=fake", *sweep.split(" "), monkeypatch=monkeypatch, capsys=capsys,
                            cwd=tmp_path)
    assert code == 1
    assert err.splitlines() == [message]
    assert not (tmp_path / "outputs").exists()


def test_without_a_validation_split_the_last_epoch_is_the_model(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    code, _, _ = run_main("dataset=fake", "dataset.val_size=0", "model.width=8", "trainer.epochs=2", "device=cpu",
                          "device.threads=1", f"hydra.run.dir={run_dir}", monkeypatch=monkeypatch, capsys=capsys,
                          cwd=tmp_path)
    assert code == 0
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["best_val/acc"] is None and metrics["best_epoch"] == 2
    log = (run_dir / "train.log").read_text()
    assert "Test accuracy" in log and "(no validation split: the last epoch, 2)" in log and "val loss" not in log
    best, last = (load_checkpoint(run_dir / "checkpoints" / name) for name in ("best.pt", "last.pt"))
    assert best["epoch"] == 2 and all(torch.equal(best["weights"][k], v) for k, v in last["weights"].items())


def test_an_own_experiment_that_sets_hydra_mode_is_a_sweep(tmp_path, monkeypatch, capsys):
    """hydra.mode set by a user's own config, not by -m, still makes the command a sweep: Hydra's composition that
    reads it runs where a config beyond conf/ is read."""
    own = tmp_path / "mine" / "experiment" / "seeds.yaml"
    own.parent.mkdir(parents=True)
    own.write_text("# @package _global_\nhydra:\n  mode: MULTIRUN\n  sweeper:\n    params:\n      seed: 0,1\n"
                   "trainer:\n  epochs: 1\n  limit_batches: 1\n")
    code, _, err = run_main("--config-dir", str(tmp_path / "mine"), "experiment=seeds", "dataset=fake", "device=cpu",
                            monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err
    [sweep_dir] = (tmp_path / "outputs" / "multirun").glob("*/*")
    assert [read_metrics(run)["status"] for run in run_dirs(sweep_dir)] == ["completed", "completed"]
