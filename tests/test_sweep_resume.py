"""Continuing a killed sweep with resume=true, and refusing to run a sweep over its completed jobs."""

import contextlib
import csv
import io
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import kill_at_creation, read_metrics, run_dirs, run_main
from mnist_exp.tools import compare
from mnist_exp.run.run_dir_lock import run_dir_lock
from mnist_exp.runs import last_checkpoint, write_metrics

# Four deterministic jobs of two epochs each: a kill inside job 2 leaves two completed jobs, one with an
# epoch-1 last.pt and one never started (then marked failed, as a job that raised at once is).
SWEEP = ("-m", "model.width=4,8", "seed=0,1", "dataset=fake", "dataset.num_train=1024", "trainer.epochs=2",
         "trainer.deterministic=true", "device=cpu", "device.threads=1")


def leaderboard(sweep_dir) -> list[dict]:
    """compare's CSV rows, less what differs between two runs of one config: seconds and absolute paths."""
    out = io.StringIO()
    sys.stdout, saved = out, sys.stdout
    try:
        assert compare.main([str(sweep_dir), "--format", "csv"]) in (0, None)
    finally:
        sys.stdout = saved
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    return [{k: v for k, v in row.items() if " s" not in k and k != "path"} for row in rows]


def snapshot(run_dir) -> dict:
    """Every file of a run but its log (which a resume appends to): bytes and modification time."""
    return {str(path.relative_to(run_dir)): (path.read_bytes(), path.stat().st_mtime_ns)
            for path in sorted(run_dir.rglob("*")) if path.is_file() and path.name != "train.log"}


def run_sweep(*args: str, cwd) -> None:
    """The sweep in this process: no start-up cost (the killed one needs a process of its own)."""
    from mnist_exp import app

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        patch.setattr(sys, "argv", ["mnist_exp", *SWEEP, *args])
        try:
            app.main()
        except SystemExit as exit:
            pytest.fail(f"the sweep exited with {exit.code}")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("uninterrupted")
    run_sweep(f"hydra.sweep.dir={cwd / 'sweep'}", cwd=cwd)
    return cwd / "sweep"


@pytest.mark.slow  # the sweep that is killed is a process of its own
def test_a_killed_sweep_resumed_ends_as_an_uninterrupted_one_and_keeps_its_completed_jobs(uninterrupted, tmp_path,
                                                                                           monkeypatch, capsys):
    names = [job.name for job in run_dirs(uninterrupted)]
    assert [name[0] for name in names] == ["0", "1", "2", "3"]
    sweep_dir = tmp_path / "sweep"
    # The job directory exists before the sweep starts, so its checkpoints can be watched from the first write.
    watched = sweep_dir / names[2] / "checkpoints"
    watched.mkdir(parents=True)
    process = subprocess.Popen([sys.executable, "-m", "mnist_exp", *SWEEP, f"hydra.sweep.dir={sweep_dir}"],
                               cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_at_creation(process, watched, ".last.pt.", nth=2)  # job 2's epoch-2 last.pt: epoch 1's is on disk
    assert [read_metrics(sweep_dir / name)["status"] for name in names[:2]] == ["completed", "completed"]
    assert not (sweep_dir / names[2] / "metrics.json").exists() and not (sweep_dir / names[3]).exists()
    kept = {name: snapshot(sweep_dir / name) for name in names[:2]}
    # Run again without resume=true, it would start job 2 afresh over its last.pt: refused, nothing touched.
    interrupted = (sweep_dir / names[2] / "checkpoints" / "last.pt").read_bytes()
    code, _, err = run_main(*SWEEP, f"hydra.sweep.dir={sweep_dir}", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines() == [
        f"{sweep_dir} holds a sweep with 2 completed and 1 stopped job(s); running it there again would overwrite "
        "them. Continue it with resume=true, or start fresh with a new hydra.sweep.dir (or leave it out)."]
    assert (sweep_dir / names[2] / "checkpoints" / "last.pt").read_bytes() == interrupted
    write_metrics(sweep_dir / names[3], {"status": "failed", "error": "CUDA error: out of memory"})

    launcher = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"] if joblib_installed() else []
    run_sweep(*launcher, "resume=true", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)

    assert {name: snapshot(sweep_dir / name) for name in names[:2]} == kept  # same bytes, same modification times
    logs = [(sweep_dir / name / "train.log").read_text() for name in names]
    assert all("is complete (test accuracy " in log and "Its recorded metrics go to the sweeper" in log
               for log in logs[:2])
    assert "Resumed from" in logs[2] and "after epoch 1 " in logs[2]
    assert "runs from the start" in logs[3]
    for name in names:
        assert ((sweep_dir / name / ".hydra" / "overrides.yaml").read_text()
                == (uninterrupted / name / ".hydra" / "overrides.yaml").read_text())
        for key in ("test/acc", "best_val/acc", "val/loss", "epoch"):
            assert read_metrics(sweep_dir / name)[key] == read_metrics(uninterrupted / name)[key], (name, key)
    assert leaderboard(sweep_dir) == leaderboard(uninterrupted)
    with open(sweep_dir / "sweep.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["run_dir"] for row in rows] == names and {row["status"] for row in rows} == {"completed"}
    assert "resume=" not in " ".join(row["overrides"] for row in rows)


@pytest.mark.parametrize("resume", [True, False])
def test_a_sweep_is_refused_the_directory_of_a_sweep_still_writing_there(uninterrupted, resume, tmp_path, monkeypatch,
                                                                          capsys):
    """Two resumes of one grid sweep at once would split its jobs, then each fail on the other's: the second waits."""
    before = {job.name: snapshot(job) for job in run_dirs(uninterrupted)}
    with run_dir_lock(uninterrupted, holder="sweep"):  # held as a running sweep holds its hydra.sweep.dir
        code, _, err = run_main(*SWEEP, *(["resume=true"] if resume else []), f"hydra.sweep.dir={uninterrupted}",
                                monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines() == [f"Another sweep is writing to {uninterrupted} right now: " + (
        "wait for that one to end, then run this again." if resume else
        "give this sweep its own hydra.sweep.dir (or leave it out).")]
    assert {job.name: snapshot(job) for job in run_dirs(uninterrupted)} == before


def joblib_installed() -> bool:
    try:
        import hydra_plugins.hydra_joblib_launcher  # noqa: F401
    except ImportError:
        return False
    return True


def test_a_sweep_into_a_directory_with_completed_jobs_is_refused(uninterrupted, tmp_path, monkeypatch, capsys):
    before = {job.name: snapshot(job) for job in run_dirs(uninterrupted)}
    code, _, err = run_main(*SWEEP, f"hydra.sweep.dir={uninterrupted}", monkeypatch=monkeypatch, capsys=capsys,
                            cwd=tmp_path)
    assert code == 1 and err.splitlines() == [
        f"{uninterrupted} holds a sweep with 4 completed job(s); running it there again would overwrite them. "
        "Continue it with resume=true, or start fresh with a new hydra.sweep.dir (or leave it out)."]
    assert {job.name: snapshot(job) for job in run_dirs(uninterrupted)} == before


@pytest.mark.parametrize("change", [("model.width=4,8", "model.width=4,8,16"), ("model.width=4,8", "model.width=8,4"),
                                    ("device=cpu", "device=cpu dataset.seed=1")])
def test_a_sweep_resumed_with_another_grid_is_refused(change, uninterrupted, tmp_path, monkeypatch, capsys):
    """Another grid, or one more override, would name and number the jobs anew and train the completed ones again."""
    before = {job.name: snapshot(job) for job in run_dirs(uninterrupted)}
    old, new = change
    changed = [part for arg in SWEEP for part in (new.split() if arg == old else [arg])]
    code, _, err = run_main(*changed, "resume=true", f"hydra.sweep.dir={uninterrupted}", monkeypatch=monkeypatch,
                            capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines() == [
        f"resume=true continues the sweep in {uninterrupted} as it started ({' '.join(SWEEP[1:])}), and this command "
        f"gives {' '.join(changed[1:])}: resume it with its own overrides (its multirun.yaml has them), or start "
        "another sweep with a new hydra.sweep.dir."]
    assert {job.name: snapshot(job) for job in run_dirs(uninterrupted)} == before


def test_a_sweep_resumed_with_its_grid_written_another_way_is_the_same_sweep(uninterrupted, tmp_path, monkeypatch,
                                                                          capsys):
    before = {job.name: snapshot(job) for job in run_dirs(uninterrupted)}
    table = (uninterrupted / "sweep.csv").read_text()  # each job's row, with the time it finished
    same = ["seed=range(0,2)" if arg == "seed=0,1" else arg for arg in SWEEP]
    code, _, err = run_main(*same, "resume=yes", f"hydra.sweep.dir={uninterrupted}", monkeypatch=monkeypatch,
                            capsys=capsys, cwd=tmp_path)
    assert code == 0, err[-2000:]
    assert {job.name: snapshot(job) for job in run_dirs(uninterrupted)} == before
    assert (uninterrupted / "sweep.csv").read_text() == table
    shuffled = ["seed=shuffle(0,1)" if arg == "seed=0,1" else arg for arg in SWEEP]
    code, _, err = run_main(*shuffled, "resume=yes", f"hydra.sweep.dir={uninterrupted}", monkeypatch=monkeypatch,
                            capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines() == [
        "seed=shuffle(0,1): shuffle() orders the jobs anew on each start, so resume=true cannot tell which are done: "
        "start the sweep again with a new hydra.sweep.dir."]


@pytest.mark.parametrize("where, message", [
    (None, "resume=true continues a sweep: give the directory of the sweep to continue, hydra.sweep.dir=<dir>."),
    ("nothing", "resume=true, but {dir} holds no sweep (no multirun.yaml). Give the directory of the sweep to "
                "continue, hydra.sweep.dir={outputs}/multirun/<date>/<time>."),
])
def test_resuming_a_sweep_needs_the_sweeps_directory(where, message, tmp_path, monkeypatch, capsys):
    args = [*SWEEP, "resume=true", *([f"hydra.sweep.dir={tmp_path / where}"] if where else [])]
    code, _, err = run_main(*args, monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines() == [message.format(dir=tmp_path / str(where), outputs=tmp_path / "outputs")]
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow  # Ctrl-C goes to a process of its own
def test_ctrl_c_in_a_sweep_prints_the_command_that_resumes_the_sweep(uninterrupted, tmp_path, monkeypatch, capsys):
    names = [job.name for job in run_dirs(uninterrupted)]
    sweep_dir = tmp_path / "sweep"
    watched = sweep_dir / names[1] / "checkpoints"  # there before the sweep, so its first write can be seen
    watched.mkdir(parents=True)
    with open(tmp_path / "output.txt", "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "mnist_exp", *SWEEP, f"hydra.sweep.dir={sweep_dir}"],
                                   cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
        # Ctrl-C while job 1 writes its epoch-1 last.pt: it stops in its second epoch.
        kill_at_creation(process, watched, ".last.pt.", nth=1, sig=signal.SIGINT)
    output = (tmp_path / "output.txt").read_text()
    assert process.returncode == 130 and "Failed" not in output, output[-2000:]
    [line] = [line for line in output.splitlines() if "Resume the sweep with: " in line]
    command = shlex.split(line.split("Resume the sweep with: ")[1])
    assert command == ["python", "-m", "mnist_exp", "-m", *SWEEP[1:], "resume=true", f"hydra.sweep.dir={sweep_dir}"]
    code, _, err = run_main(*command[3:], monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)  # the advice, taken
    assert code == 0, err
    assert [read_metrics(sweep_dir / name)["status"] for name in names] == ["completed"] * 4
    assert leaderboard(sweep_dir) == leaderboard(uninterrupted)



@pytest.mark.slow  # the sweep that is killed is a process of its own
@pytest.mark.skipif(not joblib_installed(), reason="hydra-joblib-launcher is not installed")
def test_joblib_workers_of_a_killed_sweep_stop_with_a_checkpoint_and_say_how_to_resume(tmp_path):
    """SIGKILL to the sweep's process leaves its workers behind: each stops its job at the next batch, as a
    terminal's end would (SIGHUP), rather than train on unseen holding the job's directory. (That the command it
    prints continues a stopped sweep: test_ctrl_c_in_a_sweep_prints_the_command_that_resumes_the_sweep.)"""
    sweep = ("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1", "dataset=fake",
             "dataset.num_train=2048", "model.width=4", "trainer.epochs=60", "device.threads=1")
    sweep_dir = tmp_path / "sweep"
    process = subprocess.Popen([sys.executable, "-m", "mnist_exp", *sweep, f"hydra.sweep.dir={sweep_dir}"],
                               cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while len(list(sweep_dir.glob("*/checkpoints/last.pt"))) < 2 and process.poll() is None:
            time.sleep(0.05)
        process.kill()
        process.wait()
        jobs = run_dirs(sweep_dir)
        deadline = time.monotonic() + 60  # the log's last line comes after the record's status: wait for both
        while time.monotonic() < deadline and not all(
                "Resume the sweep with: " in (job / "train.log").read_text() for job in jobs):
            time.sleep(0.2)
    finally:
        end_idle_workers(tmp_path)
    assert_stopped_with_the_sweeps_resume(sweep_dir, sweep, "Stopped by SIGHUP in epoch ")


@pytest.mark.slow  # the sweep that is stopped is a process of its own
@pytest.mark.skipif(not joblib_installed(), reason="hydra-joblib-launcher is not installed")
def test_joblib_workers_of_a_sweep_sigtermed_as_its_jobs_start_stop_with_a_checkpoint(tmp_path):
    """SIGTERM to the sweep's process alone (kill <pid>) ends it while its workers still build their jobs: they stop
    at their first batch as when it is killed later on, not train on (the workers' parent is the one that started
    them, not the process that has adopted them by the time they train)."""
    sweep = ("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1", "dataset=fake", "model.width=4",
             "trainer.epochs=20", "device.threads=1")
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()  # to watch for the jobs' directories, which each worker makes as its job starts
    process = subprocess.Popen([sys.executable, "-m", "mnist_exp", *sweep, f"hydra.sweep.dir={sweep_dir}"],
                               cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        kill_at_creation(process, sweep_dir, "1_", 1, sig=signal.SIGTERM)
        deadline = time.monotonic() + 60  # each job's log ends in its stop's line, or its test's (trained on)
        while time.monotonic() < deadline and not all(
                any(end in (job / "train.log").read_text() for end in ("Resume the sweep with: ", "Test accuracy"))
                for job in run_dirs(sweep_dir)):
            time.sleep(0.2)
    finally:
        end_idle_workers(tmp_path)
    assert process.returncode == -signal.SIGTERM
    assert_stopped_with_the_sweeps_resume(sweep_dir, sweep, "Stopped by SIGHUP in epoch 1, batch ")
    assert all(read_metrics(job)["step"] <= 1 for job in run_dirs(sweep_dir))  # before its first batch, or after it


def end_idle_workers(cwd: Path) -> None:
    """The joblib workers a killed sweep started in ``cwd``, idle now: loky would end them after 5 minutes."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if b"popen_loky" in cmdline.read_bytes() and Path(cmdline.parent, "cwd").resolve() == cwd:
                os.kill(int(cmdline.parent.name), signal.SIGKILL)


def assert_stopped_with_the_sweeps_resume(sweep_dir: Path, sweep: tuple[str, ...], stop: str) -> None:
    """Each job stopped with its last.pt, its log naming the ``stop`` and the command that resumes the sweep."""
    jobs = run_dirs(sweep_dir)
    assert [read_metrics(job)["status"] for job in jobs] == ["stopped", "stopped"]
    for job in jobs:
        log = (job / "train.log").read_text()
        assert last_checkpoint(job).exists() and stop in log
        [line] = [line for line in log.splitlines() if "Resume the sweep with: " in line]
        assert shlex.split(line.split("Resume the sweep with: ")[1])[3:] == [
            *sweep, "resume=true", f"hydra.sweep.dir={sweep_dir}"]


def test_the_sweeps_resume_command_keeps_its_launcher_and_leaves_out_what_the_app_adds(tmp_path, monkeypatch):
    from mnist_exp.run.commands import sweep_resume_command

    monkeypatch.setattr(sys, "argv", ["mnist_exp"])
    recorded = {"hydra": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={tmp_path}",
                          "hydra.mode=MULTIRUN", "hydra.output_subdir=null",  # as a resumed sweep's record has it
                          "hydra.sweep.subdir=${hydra.job.num}"],  # as typed, not resolved
                "task": ["seed=0,1", "resume=true"]}
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": recorded}}))
    assert sweep_resume_command(tmp_path) == ("python -m mnist_exp -m hydra/launcher=joblib hydra.launcher.n_jobs=2 "
                                              "'hydra.sweep.subdir=${hydra.job.num}' seed=0,1 resume=true "
                                              f"hydra.sweep.dir={tmp_path}")
