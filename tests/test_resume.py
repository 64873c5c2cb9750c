"""Stopping and continuing a run: kills at exact moments, signals, submitit requeues, refused resumes.

The runs that are killed or signalled are processes of their own (slow); the runs they are compared with, the
resumes and the refusals run in this process.
"""

import importlib
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import (kill_at_creation, read_events, read_metrics, run_captured, run_dirs, run_main, tmpfs,
                      torch_settings_kept)
from mnist_exp.errors import UserError
from mnist_exp.run import build
from mnist_exp.run.checkpoint import load_checkpoint, save_checkpoint
from mnist_exp.run.run_dir_lock import run_dir_lock
from mnist_exp.run.resume import refuse_another_config, write_missing_run_record
from mnist_exp.run.runtime import seed_everything


# Dropout, shift augmentation and a weight average: every random draw and every state a resume must restore.
DETERMINISTIC = ("dataset=fake", "dataset.num_train=4096", "trainer.epochs=3", "trainer.deterministic=true",
                 "model.width=8", "model.dropout=0.2", "augment=shift", "augment.max_shift=1", "trainer.ema_decay=0.8", "seed=3",
                 "device=cpu", "device.threads=1")


def same_result(a: dict, b: dict) -> bool:
    keys = ("test/acc", "test/loss", "val/acc", "val/loss", "best_val/acc", "epoch")
    return {k: a[k] for k in keys} == {k: b[k] for k in keys}


def start_deterministic(run_dir, *options: str, stderr=subprocess.DEVNULL) -> subprocess.Popen:
    """A deterministic run (with ``options`` first) in a process of its own; ``stderr``: where its progress bar goes."""
    command = [sys.executable, "-m", "mnist_exp", *options, *DETERMINISTIC, f'hydra.run.dir="{run_dir}"']
    return subprocess.Popen(command, cwd=run_dir.parent, stdout=subprocess.DEVNULL, stderr=stderr)


def start_and_signal(run_dir, signum, *options: str) -> subprocess.Popen:
    """Start a deterministic run (with ``options`` first); send it ``signum`` once its first epoch is checkpointed
    (training is underway)."""
    process = start_deterministic(run_dir, *options)
    last = run_dir / "checkpoints" / "last.pt"
    while not last.exists() and process.poll() is None:
        time.sleep(0.005)
    process.send_signal(signum)
    process.wait(timeout=120)
    return process


BAR = re.compile(rb"epoch (\d+)/\d+: +\d+%\|[^|]*\| (\d+)/(\d+)")  # tqdm's "epoch 2/3:  38%|███▊  | 6/16"


def signal_inside_an_epoch(run_dir, signum) -> subprocess.Popen:
    """Start a deterministic run and send it ``signum`` as its progress bar shows a batch of epoch 2 or later done,
    with two or more to go: inside an epoch. A signal sent as epoch 1's last.pt appears can land before epoch 2's
    first batch, where the run stops between epochs."""
    process = start_deterministic(run_dir, "trainer.progress=true", stderr=subprocess.PIPE)
    shown, deadline = b"", time.monotonic() + 300
    while not any(int(epoch) >= 2 and 1 <= int(done) <= int(total) - 2 for epoch, done, total in BAR.findall(shown)):
        chunk = os.read(process.stderr.fileno(), 65536) if select.select([process.stderr], [], [], 1)[0] else None
        if chunk == b"" or time.monotonic() > deadline:
            pytest.fail(f"the run ended (or timed out) before its bar showed a batch inside epoch 2: {shown[-2000:]!r}")
        shown += chunk or b""
    process.send_signal(signum)
    process.communicate(timeout=120)
    return process


def run(*args: str, cwd: Path, monkeypatch, capsys) -> str:
    """``python -m mnist_exp <args>`` in this process, which must succeed; its stdout."""
    code, out, err = run_main(*args, monkeypatch=monkeypatch, capsys=capsys, cwd=cwd)
    assert code == 0, err[-3000:]
    return out


def run_once(*args: str, run_dir: Path) -> Path:
    """A module fixture's run, in this process."""
    code, _, err = run_captured(*args, f"hydra.run.dir={run_dir}", cwd=run_dir.parent)
    assert code == 0, err[-3000:]
    return run_dir


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return run_once(*DETERMINISTIC, run_dir=tmp_path_factory.mktemp("deterministic") / "run")


def test_deterministic_runs_are_bit_identical(uninterrupted, tmp_path, monkeypatch, capsys):
    run(*DETERMINISTIC, f"hydra.run.dir={tmp_path / 'again'}", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert same_result(read_metrics(tmp_path / "again"), read_metrics(uninterrupted))
    # The weights too, not only the figures they give.
    again, first = (load_checkpoint(run_dir / "checkpoints" / "last.pt")["weights"]
                    for run_dir in (tmp_path / "again", uninterrupted))
    assert all(torch.equal(again[k], v) for k, v in first.items())


def test_a_run_without_determinism_turns_off_the_deterministic_mode_of_a_run_before_it():
    """A sweep's jobs share one process: trainer.deterministic=true,false must run its second job as it says."""
    with torch_settings_kept():
        seed_everything(0, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        seed_everything(0, deterministic=False)
        assert not torch.are_deterministic_algorithms_enabled()


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_epoch_to_the_same_result(uninterrupted, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "killed"
    process = start_and_signal(run_dir, signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    state_at_kill = load_checkpoint(run_dir / "checkpoints" / "last.pt")["trainer"]["state"]
    epoch_at_kill = state_at_kill["epoch"]
    assert epoch_at_kill < 3
    # A resume may change how the run goes (here how often it logs): the change is said and recorded.
    out = run(*DETERMINISTIC, f"hydra.run.dir={run_dir}", "resume=true", "trainer.log_interval=5",
              "logger=[tensorboard,csv]", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert f"after epoch {epoch_at_kill} " in out
    assert ("other settings than before: logger: [tensorboard] -> [tensorboard,csv]; trainer.log_interval: 20 -> 5"
            in out)
    assert yaml.safe_load((run_dir / ".hydra" / "resumes.yaml").read_text()) == [
        {"after_epoch": epoch_at_kill, "after_step": state_at_kill["step"],
         "changed": {"logger": [["tensorboard"], ["tensorboard", "csv"]], "trainer.log_interval": [20, 5]}}]
    assert same_result(read_metrics(run_dir), read_metrics(uninterrupted))
    # TensorBoard shows each epoch once, not the killed run's points twice.
    steps = sorted(e.step for e in read_events(run_dir).Scalars("val/acc"))  # two event files, in either order
    assert steps == [e.step for e in read_events(uninterrupted).Scalars("val/acc")]


@pytest.mark.slow
def test_sigterm_stops_mid_epoch_writes_last_pt_and_the_printed_command_resumes_it(uninterrupted, tmp_path,
                                                                                   monkeypatch, capsys):
    run_dir = tmp_path / "terminated (a, b)"  # the printed command quotes the path for the shell and for Hydra
    process = signal_inside_an_epoch(run_dir, signal.SIGTERM)
    assert process.returncode == 128 + signal.SIGTERM
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")["trainer"]["state"]
    assert state["batch_in_epoch"] > 0  # inside an epoch, not at its end
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "stopped" and "Resume with" in (run_dir / "train.log").read_text()
    command = shlex.split(metrics["resume"])
    assert command[:3] == ["python", "-m", "mnist_exp"] and "resume=true" in command
    # The same command without resume=true would start again over the stopped run: refused, nothing touched.
    before = (run_dir / "checkpoints" / "last.pt").read_bytes()
    code, _, err = run_main(*(arg for arg in command[3:] if arg != "resume=true"), monkeypatch=monkeypatch,
                            capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines() == [
        f"{run_dir} holds a stopped run and its {run_dir / 'checkpoints' / 'last.pt'}; a new run there would overwrite "
        "it. Continue it with resume=true, or start fresh elsewhere (leave out hydra.run.dir, or give a new one)."]
    assert (run_dir / "checkpoints" / "last.pt").read_bytes() == before and read_metrics(run_dir) == metrics
    run(*command[3:], cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert same_result(read_metrics(run_dir), read_metrics(uninterrupted))
    shown = (run_dir / "train.log").read_text().rpartition("TensorBoard: ")[2].splitlines()[0]
    assert shlex.split(shown) == ["tensorboard", "--logdir", str(run_dir)]


@pytest.mark.slow
@pytest.mark.parametrize("where", [("--config-dir", "mine"), ("hydra.searchpath=[file://mine]",)])
def test_the_printed_command_resumes_a_run_of_an_own_config_folder(where, tmp_path, monkeypatch, capsys):
    """The experiment is in the user's --config-dir or on hydra.searchpath: the command that resumes the run names
    that folder too, as an absolute path."""
    (tmp_path / "mine" / "experiment").mkdir(parents=True)
    (tmp_path / "mine" / "experiment" / "own.yaml").write_text("# @package _global_\ntrainer:\n  epochs: 3\n")
    run_dir = tmp_path / "run"
    process = start_and_signal(run_dir, signal.SIGTERM, *where, "experiment=own")
    assert process.returncode == 128 + signal.SIGTERM, "the run ended before it could be stopped"
    command = shlex.split(read_metrics(run_dir)["resume"])
    assert command[3:5] == (["--config-dir", str(tmp_path / "mine")] if len(where) == 2 else
                            [f'hydra.searchpath=["file://{tmp_path / "mine"}"]', "experiment=own"]), command
    run(*command[3:], cwd=tmp_path / "run", monkeypatch=monkeypatch, capsys=capsys)  # from elsewhere too
    assert read_metrics(run_dir)["status"] == "completed"


@pytest.mark.slow
def test_a_run_record_changed_since_the_stop_is_refused_and_the_advice_writes_it_back(tmp_path, monkeypatch, capsys):
    """compare and the tools read .hydra/config.yaml: a resume refuses one that no longer says what last.pt trains."""
    run_dir = tmp_path / "run"
    process = start_and_signal(run_dir, signal.SIGTERM)
    assert process.returncode == 128 + signal.SIGTERM, "the run ended before it could be stopped"
    record = run_dir / ".hydra" / "config.yaml"
    written = record.read_text()
    resume = (*DETERMINISTIC, f"hydra.run.dir={run_dir}", "resume=true")
    for edited, said in ((written.replace("width: 8", "width: 64"), "was changed since the run wrote it "
                                                                    "(model.width=64 there, 8 in last.pt)"),
                         ("foo: [\n", "is unreadable (while parsing a flow node)")):
        record.write_text(edited)
        code, _, err = run_main(*resume, monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
        assert code == 1 and err.startswith(f"{record} {said}") and len(err.splitlines()) == 1, err
    command = shlex.split(err.partition("Write it again, ")[2].partition(" > ")[0])
    code, out, _ = run_main(*command[3:], monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0 and out == written  # --cfg job prints the record as the run wrote it
    record.write_text(out)
    run(*resume, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert read_metrics(run_dir)["status"] == "completed"


def test_ctrl_c_in_the_final_test_is_a_stop_that_resumes(tmp_path, monkeypatch, capsys):
    """The second Ctrl-C, or one after training (in the test): stopped as by the first, not failed; resume tests it."""
    import mnist_exp.app

    def ctrl_c_in_the_test(*args, **kwargs):
        raise KeyboardInterrupt

    args = ("dataset=fake", "model.width=4", "trainer.epochs=2", "device.threads=1", "hydra.run.dir=run")
    with monkeypatch.context() as patched:
        patched.setattr(mnist_exp.app, "test_and_record", ctrl_c_in_the_test)
        code, _, err = run_main(*args, monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    metrics = read_metrics(tmp_path / "run")
    assert code == 130 and metrics["status"] == "stopped" and metrics["epoch"] == 2, err[-2000:]
    assert "Traceback" not in err
    command = shlex.split(metrics["resume"])
    assert command == ["python", "-m", "mnist_exp", *args[:-1], "resume=true", f"hydra.run.dir={tmp_path / 'run'}"]
    run(*command[3:], cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert read_metrics(tmp_path / "run")["status"] == "completed"


def test_a_stop_between_epochs_of_one_batch_stops_there_and_resumes_to_the_same_result(tmp_path, monkeypatch, capsys):
    """A whole training split in one batch: SIGTERM after an epoch (in its checkpoints) stops before the next one,
    where a stop inside an epoch has no batch to come after; the printed resume ends as an uninterrupted run."""
    from mnist_exp.run.callbacks import CheckpointCallback

    args = ("dataset=fake", "trainer.batch_size=1024", "trainer.epochs=3", "trainer.deterministic=true",
            "model.width=4", "device=cpu", "device.threads=1")
    run(*args, "hydra.run.dir=uninterrupted", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    epoch_end = CheckpointCallback.on_epoch_end

    def sigterm_after_epoch_1(self, trainer, metrics, is_best):
        epoch_end(self, trainer, metrics, is_best)
        if trainer.state.epoch == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler's preemption does

    with monkeypatch.context() as patched:
        patched.setattr(CheckpointCallback, "on_epoch_end", sigterm_after_epoch_1)
        code, _, err = run_main(*args, "hydra.run.dir=run", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    metrics = read_metrics(tmp_path / "run")
    assert code == 128 + signal.SIGTERM and metrics["status"] == "stopped" and metrics["epoch"] == 1, err[-2000:]
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["trainer"]["state"]["epoch"] == 1
    run(*shlex.split(metrics["resume"])[3:], cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert same_result(read_metrics(tmp_path / "run"), read_metrics(tmp_path / "uninterrupted"))


def test_a_resume_with_another_eval_batch_size_that_cuts_other_images_is_refused_with_advice_that_runs(
        tmp_path, monkeypatch, capsys):
    """trainer.eval_batch_size may change on resume, but with trainer.limit_batches it says how many validation and
    test images a run has: refused as a change of config, not as data changed since, which nobody could put back."""
    import mnist_exp.app

    def ctrl_c_in_the_test(*args, **kwargs):
        raise KeyboardInterrupt

    args = ("dataset=fake", "model.width=4", "trainer.epochs=1", "trainer.limit_batches=2", "device.threads=1",
            "hydra.run.dir=run")
    with monkeypatch.context() as patched:
        patched.setattr(mnist_exp.app, "test_and_record", ctrl_c_in_the_test)
        assert run_main(*args, "trainer.eval_batch_size=64", monkeypatch=monkeypatch, cwd=tmp_path)[0] == 130
    resume = (*args, "trainer.eval_batch_size=32", "resume=true")
    code, _, err = run_main(*resume, monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert (code, err.splitlines()) == (1, [
        f"Checkpoint {tmp_path / 'run' / 'checkpoints' / 'last.pt'} was trained with a different config "
        "(trainer.eval_batch_size: 64 -> 32). Resume with the run's own overrides (see its .hydra/overrides.yaml) and "
        "trainer.eval_batch_size=64."])
    run(*resume, "trainer.eval_batch_size=64", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert read_metrics(tmp_path / "run")["status"] == "completed"


SAME_CONFIG = ("dataset=fake", "model.width=4", "trainer.epochs=1", "device.threads=1")


def two_stopped_runs(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    """Two runs of one config in tmp_path/ours and tmp_path/theirs, each stopped by Ctrl-C in its test: a last.pt."""
    import mnist_exp.app

    def ctrl_c_in_the_test(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(mnist_exp.app, "test_and_record", ctrl_c_in_the_test)
        for name in ("ours", "theirs"):
            assert run_main(*SAME_CONFIG, f"hydra.run.dir={name}", monkeypatch=monkeypatch, cwd=tmp_path)[0] == 130
    return tmp_path / "ours", tmp_path / "theirs"


def test_another_runs_last_pt_of_the_same_config_is_refused_and_the_advice_continues_it_elsewhere(tmp_path, monkeypatch,
                                                                                                    capsys):
    ours, theirs = two_stopped_runs(tmp_path, monkeypatch)
    shutil.copy(theirs / "checkpoints" / "last.pt", ours / "checkpoints" / "last.pt")
    before = snapshot(ours)
    code, _, err = run_main(*SAME_CONFIG, "resume=true", f"hydra.run.dir={ours}", monkeypatch=monkeypatch, capsys=capsys,
                            cwd=tmp_path)
    [line] = err.splitlines()
    last = ours / "checkpoints" / "last.pt"
    their_id, our_id = ((run_dir / ".hydra" / "run_id").read_text().strip() for run_dir in (theirs, ours))
    prefix = (f"{last} is another run's last.pt (run {their_id}; the run in {ours} is {our_id}): put the run's own "
              "back, or continue that one in a new run directory: ")
    assert code == 1 and line.startswith(prefix), err[-2000:]
    assert snapshot(ours) == before
    command = shlex.split(line.removeprefix(prefix))
    assert command == ["python", "-m", "mnist_exp", *SAME_CONFIG, f"ckpt_path={last}"]
    out = run(*command[3:], cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    [elsewhere] = run_dirs(tmp_path / "outputs")
    assert read_metrics(elsewhere)["status"] == "completed" and f"Resumed from {last} after epoch 1" in out
    run(*SAME_CONFIG, "resume=true", f"hydra.run.dir={theirs}", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert read_metrics(theirs)["status"] == "completed"  # its own last.pt, where it was


def test_another_runs_best_pt_is_refused_by_the_tools_and_init_from_and_a_resume_writes_its_own_back(tmp_path,
                                                                                                      monkeypatch, capsys):
    from mnist_exp.tools import evaluate

    ours, theirs = two_stopped_runs(tmp_path, monkeypatch)
    best = ours / "checkpoints" / "best.pt"
    shutil.copy(theirs / "checkpoints" / "best.pt", best)
    capsys.readouterr()
    assert evaluate.main([str(ours), "--device", "cpu"]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"python -m mnist_exp.tools.evaluate: {best} is another run's best.pt (run ") and line.endswith(
        f"): put the run's own back, or give that file itself ({best}) to use it."), line
    assert evaluate.main([str(best), "--device", "cpu"]) == 0  # the file itself, as advised
    code, _, err = run_main(*SAME_CONFIG, f"init_from={ours}", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and f"{best} is another run's best.pt" in err.splitlines()[-1], err[-2000:]
    out = run(*SAME_CONFIG, "resume=true", f"hydra.run.dir={ours}", cwd=tmp_path, monkeypatch=monkeypatch,
              capsys=capsys)
    assert "best.pt is another run's, last.pt's best is epoch 1: best.pt written from last.pt" in out
    assert load_checkpoint(best)["run_id"] == (ours / ".hydra" / "run_id").read_text().strip()
    assert evaluate.main([str(ours), "--device", "cpu"]) == 0


@pytest.mark.slow
def test_a_requeued_job_begun_from_a_checkpoint_continues_from_its_own(tmp_path, monkeypatch, capsys):
    """A scheduler starts the job again with its command, ckpt_path and all: the run goes on from its own last.pt, and
    a run that had completed is returned as it is, not trained again from the checkpoint it began from."""
    import mnist_exp.app

    def ctrl_c_in_the_test(*args, **kwargs):
        raise KeyboardInterrupt

    config = ("dataset=fake", "model.width=4", "trainer.epochs=3", "device=cpu", "device.threads=1")
    source = tmp_path / "source"
    (source / "checkpoints").mkdir(parents=True)  # watched from the start
    process = subprocess.Popen([sys.executable, "-m", "mnist_exp", *config, f"hydra.run.dir={source}"], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_at_creation(process, source / "checkpoints", ".last.pt.", 2)  # epoch 1's last.pt is whole
    command = (*config, f"ckpt_path={source}", "hydra.run.dir=job")
    with monkeypatch.context() as patched:  # the job trains epochs 2 and 3, then is stopped in its test
        patched.setattr(mnist_exp.app, "test_and_record", ctrl_c_in_the_test)
        assert run_main(*command, monkeypatch=monkeypatch, cwd=tmp_path)[0] == 130
    job = tmp_path / "job"
    first = (job / ".hydra" / "run_id").read_text()
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    out = run(*command, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert f"Resumed from {job / 'checkpoints' / 'last.pt'} after epoch 3" in out, out[-3000:]
    assert read_metrics(job)["status"] == "completed" and (job / ".hydra" / "run_id").read_text() == first
    before = snapshot(job)
    out = run(*command, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)  # requeued as it ended
    assert "is complete" in out and snapshot(job) == before


@pytest.mark.parametrize("scheduler", [{"SUBMITIT_EXECUTOR": "local"}, {"SLURM_RESTART_COUNT": "1"}])
def test_a_run_or_sweep_started_inside_a_schedulers_job_records_its_config(scheduler, tmp_path, monkeypatch, capsys):
    """Inside a job its scheduler may start again, Hydra is kept from rewriting an earlier start's .hydra/; the start
    that has none (a submitit job's first, a requeued sbatch job's new sweep) still records what it ran."""
    config = ("dataset=fake", "model.width=4", "trainer.epochs=1", "device=cpu", "device.threads=1")
    run(*config, "hydra.run.dir=plain", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    for key, value in scheduler.items():
        monkeypatch.setenv(key, value)
    run(*config, "hydra.run.dir=job", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    run("-m", *config, "seed=0,1", "hydra.sweep.dir=sweep", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    for run_dir in (tmp_path / "job", *sorted((tmp_path / "sweep").glob("*_seed-*"))):
        record = {name: yaml.safe_load((run_dir / ".hydra" / name).read_text()) for name in ("config.yaml",
                                                                                             "overrides.yaml")}
        seed = [f"seed={record['config.yaml']['seed']}"] if "seed-" in run_dir.name else []
        assert record == {"config.yaml": yaml.safe_load((tmp_path / "plain" / ".hydra" / "config.yaml").read_text())
                          | {"seed": record["config.yaml"]["seed"]}, "overrides.yaml": [*config, *seed]}, run_dir


@pytest.mark.parametrize("record", [None, b"", b"\xff\xfe not text", b"0123 not an id"])
def test_a_run_without_a_readable_run_id_takes_its_last_pts(record, tmp_path):
    from mnist_exp.run.recorded_config import record_run_identity, run_identity

    if record is not None:
        (tmp_path / ".hydra").mkdir()
        (tmp_path / ".hydra" / "run_id").write_bytes(record)
    theirs = "0123456789abcdef" * 2
    assert run_identity(tmp_path, tmp_path / "last.pt", {"run_id": theirs}, []) == theirs
    record_run_identity(tmp_path, theirs)
    assert (tmp_path / ".hydra" / "run_id").read_text() == theirs + "\n"
    with pytest.raises(UserError, match=f"is another run's last.pt .run {'f' * 32}; the run in {tmp_path} is {theirs}"):
        run_identity(tmp_path, tmp_path / "last.pt", {"run_id": "f" * 32}, [])


def test_ctrl_c_after_the_runs_record_leaves_it_completed(tmp_path, monkeypatch, capsys):
    """In the trackers' last writes (an MLflow upload, say): the run is complete, and its record says so."""
    from mnist_exp.run.tensorboard import TensorBoardTracker

    close = TensorBoardTracker.close

    def close_then_ctrl_c(self, *args, **kwargs):
        close(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(TensorBoardTracker, "close", close_then_ctrl_c)
    code, _, _ = run_main("dataset=fake", "model.width=4", "trainer.epochs=1", "device.threads=1", "hydra.run.dir=run",
                          monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 130 and read_metrics(tmp_path / "run")["status"] == "completed"


def ctrl_c(*args, **kwargs):
    raise KeyboardInterrupt


STOPPED_AT_START = "Stopped by Ctrl-C before training started: nothing was written."


@pytest.mark.parametrize("module, function", [("mnist_exp.app", "check_command_line"),  # the command line read
                                              ("mnist_exp.run.prechecks", "check_resolves"),  # composed by Hydra
                                              ("mnist_exp.run.build", "build_dataset")])  # the run built
def test_ctrl_c_before_training_is_one_line_and_leaves_nothing(module, function, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(importlib.import_module(module), function, ctrl_c)
    code, _, err = run_main("dataset=fake", "model.width=4", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 130 and err.splitlines()[-1] == STOPPED_AT_START and "Traceback" not in err, err[-2000:]
    assert not [path for path in tmp_path.rglob("*") if not path.is_dir()]


def test_ctrl_c_while_python_imports_the_app_is_one_line(monkeypatch, capsys):
    """python -m mnist_exp spends seconds importing torch and Hydra before any of its code runs."""
    import importlib.abc
    import runpy

    import mnist_exp.app  # noqa: F401  (imported, to be taken away and imported again)

    class CtrlCOnImport(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "mnist_exp.app":
                raise KeyboardInterrupt

    monkeypatch.delitem(sys.modules, "mnist_exp.app")  # put back afterwards, as the other tests imported it
    monkeypatch.setattr(sys, "meta_path", [CtrlCOnImport(), *sys.meta_path])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.delitem(sys.modules, "mnist_exp.__main__", raising=False)  # python -m runs it anew
    with pytest.raises(SystemExit) as stop:
        runpy.run_module("mnist_exp", run_name="__main__")
    assert stop.value.code == 130 and capsys.readouterr().err == STOPPED_AT_START + "\n"
    from mnist_exp.__main__ import main  # the mnist-exp script's entry point: importing it runs nothing

    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 130 and capsys.readouterr().err == STOPPED_AT_START + "\n"


def test_ctrl_c_while_a_run_in_a_given_directory_is_built_says_what_it_holds_and_the_advice_runs(tmp_path, monkeypatch,
                                                                                                 capsys):
    """A directory that was there before stays; the new run's config and log are in it, and no record to refuse."""
    (tmp_path / "mine").mkdir()
    args = ("dataset=fake", "model.width=4", "trainer.epochs=1", "device.threads=1", "hydra.run.dir=mine")
    with monkeypatch.context() as patched:
        patched.setattr(build, "build_dataset", ctrl_c)
        code, _, err = run_main(*args, monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 130 and err.splitlines()[-1] == (
        f"Stopped by Ctrl-C before training started: {tmp_path / 'mine'} holds this start's config and log, and no "
        "record; run the command again to train it."), err[-2000:]
    run(*args, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert read_metrics(tmp_path / "mine")["status"] == "completed"


def test_ctrl_c_while_a_sweeps_job_is_built_records_it_stopped_and_the_printed_resume_trains_it(tmp_path, monkeypatch,
                                                                                                capsys):
    args = ("-m", "dataset=fake", "model.width=4", "trainer.epochs=1", "device.threads=1", "seed=0,1",
            "hydra.sweep.dir=sweep")
    with monkeypatch.context() as patched:
        patched.setattr(build, "build_dataset", ctrl_c)
        code, _, err = run_main(*args, monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    [job] = run_dirs(tmp_path / "sweep")
    assert code == 130 and read_metrics(job)["status"] == "stopped" and "Traceback" not in err, err[-2000:]
    line = err.splitlines()[-1]
    prefix = (f"Stopped by Ctrl-C before training started in the job {job.name}, recorded as stopped: resume the sweep "
              "with: ")
    assert line.startswith(prefix), line
    command = shlex.split(line.removeprefix(prefix))
    assert command[:3] == ["python", "-m", "mnist_exp"]
    run(*command[3:], cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert [read_metrics(job)["status"] for job in run_dirs(tmp_path / "sweep")] == ["completed", "completed"]


def test_ctrl_c_between_a_sweeps_jobs_is_one_line_whose_resume_trains_the_rest(tmp_path, monkeypatch, capsys):
    from mnist_exp.sweeps.summary import SweepSummary

    args = ("-m", "dataset=fake", "model.width=4", "trainer.epochs=1", "device.threads=1", "seed=0,1",
            "hydra.sweep.dir=sweep")
    on_job_end = SweepSummary.on_job_end

    def then_ctrl_c(self, *args, **kwargs):  # as the first job's end is recorded: the second is not begun
        on_job_end(self, *args, **kwargs)
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(SweepSummary, "on_job_end", then_ctrl_c)
        code, _, err = run_main(*args, monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    prefix = "Stopped by Ctrl-C: resume the sweep with: "
    assert code == 130 and err.splitlines()[-1].startswith(prefix) and "Traceback" not in err, err[-2000:]
    [done] = run_dirs(tmp_path / "sweep")
    command = shlex.split(err.splitlines()[-1].removeprefix(prefix))
    run(*command[3:], cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert [read_metrics(job)["status"] for job in run_dirs(tmp_path / "sweep")] == ["completed", "completed"]
    assert "is complete" in (done / "train.log").read_text()  # kept, not trained again


def test_the_printed_command_starts_as_the_users_own_script_started(monkeypatch):
    """A script that registers the user's own builders, then calls mnist_exp's main: model=tiny exists only there."""
    from mnist_exp.run.commands import resume_command

    monkeypatch.setattr(sys, "argv", ["my_train.py", "model=tiny"])
    assert resume_command(Path("/runs/a"), ["model=tiny", "resume=false"]) == (
        "python my_train.py model=tiny resume=true hydra.run.dir=/runs/a")


def submitit_task(folder: Path) -> int | None:
    """The pid of the submitit task (the process running the job) whose files are under ``folder``."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "submitit.core._submit" in args and any(str(folder) in arg for arg in args):
            return int(cmdline.parent.name)
    return None


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds the job's process through /proc")
def test_a_preempted_submitit_job_is_requeued_and_continues_to_the_same_result(uninterrupted, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep_dir = tmp_path / "sweep"
    command = [sys.executable, "-m", "mnist_exp", "-m", "hydra/launcher=submitit_local", *DETERMINISTIC,
               f"hydra.sweep.dir={sweep_dir}"]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while not list(sweep_dir.glob("0_*/checkpoints/last.pt")) and process.poll() is None:
        time.sleep(0.005)
    # What SLURM does on preemption: submitit's signal (USR2) to the job's process.
    os.kill(submitit_task(sweep_dir), signal.SIGUSR2)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    [job] = run_dirs(sweep_dir)
    log = (job / "train.log").read_text()
    assert "Stopped by SIGUSR2 in epoch" in log and "A requeued job: continuing" in log and "Resumed from" in log
    assert same_result(read_metrics(job), read_metrics(uninterrupted))


# The case: validation accuracy peaks at epoch 3 of 4, after a first best at epoch 1.
BEST_LATE = ("dataset=fake", "model=vgg_cnn", "trainer.epochs=4", "trainer.deterministic=true", "scheduler=none",
             "optimizer.lr=0.1", "device=cpu", "device.threads=1")


@pytest.fixture(scope="module")
def best_late(tmp_path_factory):
    run_dir = run_once(*BEST_LATE, run_dir=tmp_path_factory.mktemp("best_late") / "run")
    metrics = read_metrics(run_dir)
    val = [event.value for event in read_events(run_dir).Scalars("val/acc")]
    improvements = [epoch for epoch in range(1, 5) if val[epoch - 1] > max(val[:epoch - 1], default=-1)]
    assert metrics["best_epoch"] == improvements[-1] == 3 and len(improvements) == 2, (val, improvements)
    return run_dir


@pytest.mark.slow
@pytest.mark.parametrize("moment, prefix, nth", [
    ("while epoch 3's best.pt is written", ".best.pt.", 2),
    ("between epoch 3's best.pt and its last.pt", ".last.pt.", 3),
])
def test_a_kill_between_the_checkpoints_of_a_best_epoch_resumes_to_the_right_model(best_late, tmp_path, moment,
                                                                                   prefix, nth, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)  # watched from the start
    process = subprocess.Popen([sys.executable, "-m", "mnist_exp", *BEST_LATE, f"hydra.run.dir={run_dir}"],
                               cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_at_creation(process, run_dir / "checkpoints", prefix, nth)
    assert process.returncode == -signal.SIGKILL
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["epoch"] == 2, moment  # killed where aimed
    out = run(*BEST_LATE, f"hydra.run.dir={run_dir}", "resume=true", cwd=tmp_path, monkeypatch=monkeypatch,
              capsys=capsys)
    resumed, uninterrupted = read_metrics(run_dir), read_metrics(best_late)
    assert same_result(resumed, uninterrupted) and resumed["best_epoch"] == 3
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    expected = load_checkpoint(best_late / "checkpoints" / "best.pt")
    assert best["epoch"] == 3 and all(torch.equal(best["weights"][k], v) for k, v in expected["weights"].items())
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))  # the killed write's leftover is gone
    if nth == 3:  # best.pt was one best ahead of last.pt: resume put it back, and epoch 3 wrote it again
        assert "best.pt holds epoch 3, last.pt's best is epoch 1: best.pt written from last.pt" in out


@pytest.mark.slow
def test_a_run_killed_as_it_records_its_test_records_it_once_when_resumed(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()  # watched from the start
    args = ["dataset=fake", "model=logreg", "trainer.epochs=1", "device=cpu", "device.threads=1",
            f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen([sys.executable, "-m", "mnist_exp", *args], cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    kill_at_creation(process, run_dir, ".metrics.json.", 1)  # the test, pictures and hparams were recorded
    step = load_checkpoint(run_dir / "checkpoints" / "last.pt")["trainer"]["state"]["step"]
    assert [event.step for event in read_events(run_dir).Scalars("test/acc")] == [step]
    run(*args, "resume=true", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    events = read_events(run_dir)
    assert read_metrics(run_dir)["status"] == "completed"
    for tag in events.Tags()["scalars"]:
        steps = [event.step for event in events.Scalars(tag)]
        assert len(steps) == len(set(steps)), (tag, steps)
    assert [event.step for event in events.Scalars("test/acc")] == [step]
    assert {tag: len(events.Images(tag)) for tag in events.Tags()["images"]} == dict.fromkeys(
        ["train/samples", "test/confusion_matrix", "test/misclassified", "test/predictions", "curves"], 1)
    assert len(list(run_dir.glob("events.out.tfevents.*.final"))) == 1


def snapshot(run_dir: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of a run (the log aside) with its bytes and modification time."""
    return {str(path.relative_to(run_dir)): (path.read_bytes(), path.stat().st_mtime_ns)
            for path in sorted(run_dir.rglob("*")) if path.is_file() and path.name != "train.log"}


def test_a_refused_resume_changes_nothing_of_the_run(best_late, tmp_path, monkeypatch, capsys):
    before = snapshot(best_late)
    code, _, err = run_main(*BEST_LATE, "model.width=16", f"hydra.run.dir={best_late}", "resume=true",
                            monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1
    assert err.splitlines() == [
        f"Checkpoint {best_late}/checkpoints/last.pt was trained with a different config (model.width: 24 -> 16). "
        "Resume with the run's own overrides (see its .hydra/overrides.yaml) and model.width=24."]
    assert snapshot(best_late) == before  # .hydra/ (the file the error points to), metrics.json, events: all as they were


def test_a_truncated_last_pt_is_refused_with_advice_that_starts_anew_from_the_best_weights(best_late, tmp_path,
                                                                                           monkeypatch, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(best_late, run_dir)
    (run_dir / "metrics.json").unlink()  # as a run killed after its checkpoints
    last, best = run_dir / "checkpoints" / "last.pt", run_dir / "checkpoints" / "best.pt"
    last.write_bytes(last.read_bytes()[:1000])
    code, _, err = run_main(*BEST_LATE, f"hydra.run.dir={run_dir}", "resume=true", monkeypatch=monkeypatch,
                            capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines() == [
        f"Checkpoint {last} is unreadable: it is truncated or corrupt, and a run continues only from its last.pt. "
        f"Start a new run (without resume=true or ckpt_path, in a new directory), or from its best weights: "
        f"init_from={best}."]
    run(*BEST_LATE, f"init_from={best}", f"hydra.run.dir={tmp_path / 'anew'}", cwd=tmp_path, monkeypatch=monkeypatch,
        capsys=capsys)
    assert read_metrics(tmp_path / "anew")["status"] == "completed"


def test_a_hand_edited_record_of_a_completed_run_is_refused_and_kept_and_the_advice_runs(best_late, tmp_path,
                                                                                       monkeypatch, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(best_late, run_dir)
    metrics = run_dir / "metrics.json"
    edited = metrics.read_text().replace('"test/acc": ', '"test/acc": "96%", "was": ')
    metrics.write_text(edited)
    code, _, err = run_main(*BEST_LATE, f"hydra.run.dir={run_dir}", "resume=true", monkeypatch=monkeypatch,
                            capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines() == [
        f'{metrics} has test/acc="96%", not a value a run writes (a number in [0, 1], or null): it is not the record '
        "this run wrote. Put it back as the run wrote it, or move it away to continue the run from its checkpoint."]
    assert metrics.read_text() == edited
    metrics.rename(tmp_path / "edited.json")
    run(*BEST_LATE, f"hydra.run.dir={run_dir}", "resume=true", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert same_result(read_metrics(run_dir), read_metrics(best_late))


def test_a_resume_in_another_precision_is_refused_with_the_one_it_ran_in(best_late, tmp_path, monkeypatch, capsys):
    """device.precision changes what a run computes: half a run in each would be recorded as one."""
    ran = read_metrics(best_late)["precision"]  # what auto became on this machine
    other = "fp32" if ran == "bf16" else "bf16"
    code, _, err = run_main(*BEST_LATE, f"device.precision={other}", f"hydra.run.dir={best_late}", "resume=true",
                            monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines() == [
        f"Checkpoint {best_late}/checkpoints/last.pt was trained with a different config (device.precision: {ran} -> "
        f"{other}). Resume with the run's own overrides (see its .hydra/overrides.yaml) and device.precision={ran}."]


@pytest.mark.parametrize("checkpoint", ["true", "false"])  # last.pt's config, or .hydra/config.yaml's (auto)
def test_a_completed_run_of_precision_auto_resumes_as_complete(checkpoint, tmp_path, monkeypatch, capsys):
    """device.precision=auto, the default: the record holds what it became, and resume=true compares that."""
    run_dir = tmp_path / "run"
    args = ("dataset=fake", "trainer.epochs=1", "model.width=4", f"trainer.checkpoint={checkpoint}",
            f"hydra.run.dir={run_dir}")
    run(*args, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    metrics = (run_dir / "metrics.json").read_bytes()
    run(*args, "resume=true", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert "is complete (test accuracy" in (run_dir / "train.log").read_text().splitlines()[-1]
    assert (run_dir / "metrics.json").read_bytes() == metrics


def test_a_run_saved_before_a_key_existed_ran_with_its_default_and_resumes_as_advised(best_late, tmp_path,
                                                                                      monkeypatch, capsys):
    """A key added to a builder since a run was saved held the builder's default in that run; where a recipe now
    sets it otherwise, the refusal names the value that gives the run back."""
    old_run = tmp_path / "old_run"
    shutil.copytree(best_late, old_run)
    last = old_run / "checkpoints" / "last.pt"
    checkpoint = load_checkpoint(last)
    del checkpoint["config"]["model"]["pool_before_norm"]  # vgg_cnn's key; BEST_LATE runs its default, true
    save_checkpoint(last, checkpoint)
    code, _, err = run_main(*BEST_LATE, "model.pool_before_norm=false", f"hydra.run.dir={old_run}", "resume=true",
                            monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines() == [
        f"Checkpoint {last} was trained with a different config (model.pool_before_norm: true -> false). Resume with "
        "the run's own overrides (see its .hydra/overrides.yaml) and model.pool_before_norm=true."]
    out = run(*BEST_LATE, "model.pool_before_norm=true", f"hydra.run.dir={old_run}", "resume=true", cwd=tmp_path,
              monkeypatch=monkeypatch, capsys=capsys)  # the advice as it stands
    assert f"The run in {old_run} is complete (test accuracy " in out


def test_resuming_a_completed_run_says_so_and_changes_nothing(best_late, tmp_path, monkeypatch, capsys):
    before = snapshot(best_late)
    out = run(*BEST_LATE, f"hydra.run.dir={best_late}", "resume=true", cwd=tmp_path, monkeypatch=monkeypatch,
              capsys=capsys)
    assert f"The run in {best_late} is complete (test accuracy " in out
    assert "Resumed from" not in out and "epoch 1/4" not in out  # nothing trained again
    assert snapshot(best_late) == before  # no second event file, no re-test


def test_a_completed_run_whose_last_checkpoint_is_corrupt_is_shown_from_its_record(tmp_path, monkeypatch, capsys):
    args = ("dataset=fake", "model.width=4", "trainer.epochs=1", "device.threads=1", "hydra.run.dir=run")
    run(*args, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    data = bytearray(last.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a failed disk's byte
    last.write_bytes(bytes(data))
    out = run(*args, "resume=true", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert f"The run in {tmp_path / 'run'} is complete (test accuracy " in out


def test_in_a_sweep_the_refusal_says_that_a_restored_value_runs_the_jobs_again(best_late, tmp_path):
    """A sweep's overrides name its jobs' directories: a value added to resume one as it ran makes new jobs."""
    ran = load_checkpoint(best_late / "checkpoints" / "last.pt")["config"]
    saved = {**ran, "model": {key: value for key, value in ran["model"].items() if key != "pool_before_norm"}}
    now = {**ran, "model": {**ran["model"], "pool_before_norm": False}}  # a recipe that now sets it otherwise
    with pytest.raises(UserError) as refused:
        refuse_another_config(tmp_path / "last.pt", saved, now, in_sweep=True)
    assert str(refused.value) == (
        f"Checkpoint {tmp_path / 'last.pt'} was trained with a different config (model.pool_before_norm: true -> "
        "false). Resume with the sweep's own overrides (see its multirun.yaml). Where those are yours, the config "
        "files have changed since it ran: with model.pool_before_norm=true added the sweep runs its jobs again as "
        "they ran, each in a new directory named with it.")
    refuse_another_config(tmp_path / "last.pt", saved, ran, in_sweep=True)  # the run's own config: accepted


@pytest.mark.slow
def test_a_refused_resume_keeps_a_stopped_runs_record(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "stopped"
    process = start_and_signal(run_dir, signal.SIGTERM)
    assert process.returncode == 128 + signal.SIGTERM
    before = snapshot(run_dir)
    assert read_metrics(run_dir)["status"] == "stopped"
    code, _, err = run_main(*DETERMINISTIC, "seed=4", f"hydra.run.dir={run_dir}", "resume=true",
                            monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and "was trained with a different config (seed: 3 -> 4)" in err
    assert snapshot(run_dir) == before and read_metrics(run_dir)["status"] == "stopped"


@pytest.mark.slow
def test_two_runs_started_together_each_own_a_directory(tmp_path):
    # The same name for both, as two runs of one command started in the same second get.
    name = "${claim_run_dir:" + str(tmp_path / "runs" / "same") + "}"
    command = [sys.executable, "-m", "mnist_exp", "dataset=fake", "model=logreg", "trainer.epochs=1", "device=cpu",
               "device.threads=1", f"hydra.run.dir={name}"]
    processes = [subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for _ in range(2)]
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0]
    assert sorted(path.name for path in (tmp_path / "runs").iterdir()) == ["same", "same-2"]
    for run_dir in (tmp_path / "runs").iterdir():
        assert read_metrics(run_dir)["status"] == "completed"
        assert sorted(path.suffix == ".final" for path in run_dir.glob("events.out.tfevents.*")) == [False, True]
    [second] = [out for out in outputs if "same-2" in out.split("Run directory: ")[1].splitlines()[0]]
    assert f"{tmp_path / 'runs' / 'same'} was taken by a run started in the same second: this run is in " in second


def test_a_run_is_refused_a_directory_another_run_is_writing(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "shared"
    with run_dir_lock(run_dir):  # held as a running run holds its hydra.run.dir
        code, _, err = run_main("dataset=fake", "model=logreg", f"hydra.run.dir={run_dir}", monkeypatch=monkeypatch,
                                capsys=capsys, cwd=tmp_path)
        assert list(run_dir.iterdir()) == []  # refused before Hydra wrote anything there
    assert code == 1 and err.splitlines() == [
        f"Another run is writing to {run_dir} right now: give this one its own hydra.run.dir (in a job array, e.g. "
        "with ${oc.env:SLURM_ARRAY_TASK_ID} in it), or wait for that one to end."]
    assert not run_dir.exists()  # the holder made it and wrote nothing there: an empty directory is not left behind


@pytest.mark.slow
def test_a_run_holds_the_directory_it_named_itself_while_it_writes_there(tmp_path, monkeypatch, capsys):
    """A resume given its directory meanwhile would train beside it in the same files."""
    outputs = tmp_path / "outputs"
    process = subprocess.Popen([sys.executable, "-m", "mnist_exp", *DETERMINISTIC, "trainer.epochs=50"], cwd=tmp_path,
                               env={**os.environ, "MNIST_EXP_OUTPUTS": str(outputs)}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        while not list(outputs.glob("runs/*/*/checkpoints/last.pt")) and process.poll() is None:
            time.sleep(0.01)
        [run_dir] = run_dirs(outputs)
        code, _, err = run_main(*DETERMINISTIC, "trainer.epochs=50", "resume=true", f"hydra.run.dir={run_dir}",
                                monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
        assert process.poll() is None, "the run ended before the resume was tried"
    finally:
        process.kill()
        process.wait(timeout=60)
    assert code == 1 and err.splitlines() == [
        f"Another run is writing to {run_dir} right now: wait for that one to end, then run this again."]


def test_a_new_run_in_a_completed_runs_directory_is_refused(best_late, tmp_path, monkeypatch, capsys):
    before = snapshot(best_late)
    code, _, err = run_main(*BEST_LATE, f"hydra.run.dir={best_late}", monkeypatch=monkeypatch, capsys=capsys,
                            cwd=tmp_path)
    assert code == 1 and err.splitlines() == [
        f"{best_late} holds a completed run; a new run there would overwrite it. Start fresh elsewhere (leave out "
        "hydra.run.dir, or give a new one), or see the run with resume=true."]
    assert snapshot(best_late) == before


def fill(disk: Path) -> None:
    """Write zeros into ``disk`` until it has no space left."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, bytes(1 << 16))
    except OSError:
        pass
    finally:
        os.close(fd)


@pytest.mark.slow
def test_a_full_disk_stops_the_run_in_one_line_keeps_its_checkpoint_and_resume_finishes_it(tmp_path, monkeypatch,
                                                                                            capsys):
    with tmpfs(tmp_path / "disk", "4m") as disk:
        run_dir = disk / "run"
        args = ("dataset=fake", "dataset.num_train=4096", "model.width=8", "trainer.epochs=3", "device=cpu",
                "device.threads=1", f"hydra.run.dir={run_dir}")
        process = subprocess.Popen([sys.executable, "-m", "mnist_exp", *args], cwd=tmp_path,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        last = run_dir / "checkpoints" / "last.pt"
        while not last.exists() and process.poll() is None:
            time.sleep(0.005)
        fill(disk)  # epoch 1 is checkpointed: the next write of the event file, the log or a checkpoint fails
        stderr = process.communicate(timeout=120)[1]
        assert process.returncode == 1
        assert "Traceback" not in stderr and "Logging error" not in stderr
        assert stderr.splitlines()[-1].startswith(f"The disk holding {run_dir} is full")
        assert load_checkpoint(last)["epoch"] >= 1  # the last good checkpoint is whole

        code, _, err = run_main(*args[:-1], f"hydra.run.dir={disk / 'another'}", monkeypatch=monkeypatch,
                                capsys=capsys, cwd=tmp_path)
        assert code == 1 and err.splitlines() == [f"Cannot write run directories to {disk / 'another'}: {disk} is on a "
                                                  "full disk. Choose another place with hydra.run.dir=<dir> or "
                                                  "MNIST_EXP_OUTPUTS=<dir>."]

        (disk / "filler").unlink()
        (run_dir / "checkpoints" / ".last.pt.killed.tmp").write_bytes(b"half a checkpoint")  # a write a kill cut
        run(*args, "resume=true", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
        assert read_metrics(run_dir)["status"] == "completed" and read_metrics(run_dir)["epoch"] == 3
        assert not list((run_dir / "checkpoints").glob(".*.tmp"))


def test_a_completed_run_without_checkpoints_is_matched_by_its_values(tmp_path, monkeypatch, capsys):
    """trainer.checkpoint=false leaves no last.pt: its .hydra/config.yaml says what ran, however a value is spelt."""
    run_dir = tmp_path / "run"
    args = ("dataset=fake", "trainer.epochs=1", "model.width=4", "device=cpu", f"hydra.run.dir={run_dir}")
    run(*args, "trainer.checkpoint=false", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    metrics = (run_dir / "metrics.json").read_bytes()
    for spelt in ("trainer.checkpoint=no", "++trainer.checkpoint=False"):
        run(*args, spelt, "resume=true", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
        assert "is complete (test accuracy" in (run_dir / "train.log").read_text().splitlines()[-1]
    code, _, err = run_main(*args, "trainer.checkpoint=false", "model.width=8", "resume=true", monkeypatch=monkeypatch,
                            capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines() == [
        f"The run of {run_dir / '.hydra' / 'config.yaml'} was trained with a different config (model.width: 4 -> 8). "
        "Resume with the run's own overrides (see its .hydra/overrides.yaml) and model.width=4."]
    assert (run_dir / "metrics.json").read_bytes() == metrics
    for record in ("config.yaml", "overrides.yaml"):  # corrupt: nothing says what it trained
        (run_dir / ".hydra" / record).write_bytes(b"\xff\xfe: [")
    code, _, err = run_main(*args, "trainer.checkpoint=false", "resume=true", monkeypatch=monkeypatch, capsys=capsys,
                            cwd=tmp_path)
    assert code == 1 and err.splitlines() == [
        f"{run_dir} holds a completed run whose .hydra/config.yaml and overrides.yaml cannot be read, so nothing says "
        "what it trained: start fresh elsewhere (leave out hydra.run.dir)."]
    assert (run_dir / "metrics.json").read_bytes() == metrics


@pytest.mark.parametrize("cut", [b"- after_epoch: 1\n  after_step: 4\n  changed:\n    trainer.log_interval: [20",
                                 b"- after_epoch: 1\n  after_step: 4\n"])
def test_a_cut_record_of_earlier_resumes_is_refused_in_one_line_and_kept(cut, tmp_path, monkeypatch, capsys):
    """.hydra/resumes.yaml as a kill in its write (or a hand edit) left it: not added to as if it were whole."""
    config = ("dataset=fake", "model.width=4", "trainer.epochs=1", "device=cpu", "device.threads=1")
    run(*config, "hydra.run.dir=run", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    (tmp_path / "run" / "metrics.json").unlink()  # as a run killed after its checkpoints
    record = tmp_path / "run" / ".hydra" / "resumes.yaml"
    record.write_bytes(cut)
    code, _, err = run_main(*config, "hydra.run.dir=run", "resume=true", "trainer.log_interval=1",
                            monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and len(err.splitlines()) == 1 and f"{record} is unreadable" in err, err[-3000:]
    assert record.read_bytes() == cut


def test_a_run_record_written_for_a_job_is_whole_or_absent_when_a_write_fails(tmp_path):
    """The record a resumed sweep's job or a requeued job gets is written once, where it has no config.yaml: one of
    its files failing (a full disk, a kill) leaves no config.yaml, so the next start writes the whole record."""
    from omegaconf import OmegaConf

    record = tmp_path / "run" / ".hydra"
    (record / "overrides.yaml").mkdir(parents=True)  # a file that cannot be written there
    with pytest.raises(OSError):
        write_missing_run_record(tmp_path / "run", OmegaConf.create({"seed": 1}),
                                 OmegaConf.create({"overrides": {"task": ["seed=1"]}}))
    assert not (record / "config.yaml").exists()
    assert sorted(path.name for path in record.iterdir()) in (["overrides.yaml"], ["hydra.yaml", "overrides.yaml"])
