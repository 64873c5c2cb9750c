"""Hydra settings that a mnist_exp command cannot honour as written, refused from the command line in one line.

Each would otherwise run without a word, or end in a traceback: jobs of one sweep sharing a directory, runs the
tools cannot find, a launcher setting the launcher ignores, two processes training one run, no job at all.
"""

import os
import re
import shutil

from mnist_exp.errors import UserError, advised
from mnist_exp.paths import outputs_dir
from mnist_exp.run.command_line import CommandLine, as_bool, as_int

# What tells the jobs of one sweep apart whatever they override: their number (or id), as a key or a resolver.
JOB_NUMBER = "${hydra.job.num}"
UNIQUE_PER_JOB = (JOB_NUMBER, "${hydra.job.id}", "${hydra:job.num}", "${hydra:job.id}")
# joblib's launcher runs each job in a process of its own (loky), whatever these say.
JOBLIB_FIXED = {"hydra.launcher.backend": ("loky", "null"), "hydra.launcher.prefer": ("processes", "null"),
                "hydra.launcher.require": ("null",)}  # sharedmem: threads, which loky refuses
# joblib's settings for the large arrays handed to a job, which it memory-maps: Hydra's launcher hands a job none.
JOBLIB_NO_ARRAYS = ("hydra.launcher.temp_folder", "hydra.launcher.max_nbytes", "hydra.launcher.mmap_mode")
# submitit's launchers: a job is one process, the run's own; torchrun starts a run's several (README: several processes).
ONE_PROCESS_KEYS = ("hydra.launcher.tasks_per_node", "hydra.launcher.nodes")
# A job is one process that trains on one device: a second GPU would sit idle.
ONE_GPU_KEYS = ("hydra.launcher.gpus_per_node", "hydra.launcher.gpus_per_task")
# submitit_local applies these to no job (its gpus_per_node does set CUDA_VISIBLE_DEVICES); SLURM applies them.
LOCAL_IGNORES = ("hydra.launcher.cpus_per_task", "hydra.launcher.mem_gb", "hydra.launcher.name")
# The launchers that submit to SLURM, and what submitit calls there.
SLURM_LAUNCHERS, SLURM_TOOLS = ("slurm", "submitit_slurm"), ("sbatch", "srun")
# SQLite URLs SQLAlchemy opens in memory: no path (sqlite:///$UNSET_VARIABLE), or :memory:; any driver, any query.
IN_MEMORY_SQLITE = re.compile(r"sqlite(\+\w+)?://(/(:memory:)?)?(\?.*)?")
# Hydra's record of each job, which it writes itself as the job starts, over a value given (to hydra.overrides it adds
# the job's own: the record would name an override that never ran).
SET_BY_HYDRA = ("hydra.runtime", "hydra.overrides", "hydra.job.override_dirname", "hydra.job.config_name",
                "hydra.job.num", "hydra.job.id")
# Nodes that are keyword arguments as they stand (Optuna's sampler and pruner): a key of them may be added or removed.
BUILT_WITH_ANY_KEYS = ("hydra.sweeper.sampler.", "hydra.sweeper.pruner.")
# Nodes that take any key: the above, sbatch's other options, and a search's space (whose keys Hydra cannot add).
FREE_NODES = (*BUILT_WITH_ANY_KEYS, "hydra.launcher.additional_parameters.", "hydra.sweeper.params.")
# Hydra's settings of fixed keys (hydra.conf's dataclasses), where a key the + adds is read by nothing.
FIXED_NODES = ("hydra", "hydra.run", "hydra.sweep", "hydra.job", "hydra.job.config", "hydra.job.config.override_dirname",
               "hydra.help", "hydra.hydra_help", "hydra.runtime", "hydra.overrides")


def check_hydra_settings(command: CommandLine) -> None:
    """Where any command writes; then, in a sweep, what its launcher and sweeper are given (one run's keys of them
    are refused by ``check_single_run_settings``, after Hydra's own refusal of a key the chosen one lacks)."""
    for override in command.overrides:
        if override.is_add() and (node := override.key_or_group.rpartition(".")[0]) in FIXED_NODES:
            raise UserError(f"{override.input_line}: the + adds a key to {node}, and Hydra reads only its own keys "
                            f"there: set one of those without the + ({advised(f'--cfg hydra -p {node}')} lists them).")
    for override in command.overrides:
        check_env_set(override.key_or_group, override.value(), override.input_line)
        key = override.key_or_group
        if any(key == own or key.startswith(f"{own}.") for own in SET_BY_HYDRA):
            instead = {"hydra.runtime.output_dir": "hydra.run.dir=<dir> places a run, hydra.sweep.dir=<dir> a sweep",
                       "hydra.runtime.choices": f"{key.rpartition('.')[2]}=<option> chooses an option"}
            hint = next((f" ({text})" for own, text in instead.items() if key.startswith(f"{own}.") or key == own), "")
            raise UserError(f"{override.input_line}: Hydra writes {key} itself as each job starts, over the value "
                            f"given, which changes nothing the run does: leave it out{hint}.")
    chdir = command.value("hydra.job.chdir")
    if chdir is not None and as_bool("hydra.job.chdir", chdir):
        raise UserError("hydra.job.chdir=true: mnist_exp reads relative paths (data, a search's study, an MLflow "
                        "store) from where you start it, and writes each run into its own directory without "
                        "changing into it: leave hydra.job.chdir out.")
    output_subdir = command.given("hydra.output_subdir")
    if output_subdir is not None and command.value("hydra.output_subdir") != ".hydra":
        raise UserError(f"{output_subdir.input_line}: a run's config goes to <run dir>/.hydra, where resume "
                        "and the tools (compare, evaluate, export) read it: leave hydra.output_subdir out.")
    if command.multirun:
        check_sweep_settings(command)


def check_env_set(key: str, value, line: str) -> None:
    """Hydra sets hydra.job.env_set's variables as the job starts, after it has placed the run's (or the sweep's)
    directory with ${oc.env:MNIST_EXP_OUTPUTS,outputs}: the run would go to outputs/, its MLflow store elsewhere."""
    given = value if key == "hydra.job.env_set" and isinstance(value, dict) else {key.rpartition(".")[2]: value} \
        if key.startswith("hydra.job.env_set.") else {}
    if (outputs := given.get("MNIST_EXP_OUTPUTS")) is not None:
        raise UserError(f"{line}: Hydra sets hydra.job.env_set's variables once the run's directory is placed, so "
                        f"the run would go to {outputs_dir()}/ and only what reads the variable later (an MLflow "
                        f"store) to {outputs}: set it where the command starts, MNIST_EXP_OUTPUTS={outputs} "
                        f"{advised('...')}")


def check_sweep_settings(command: CommandLine) -> None:
    for override in command.overrides:
        key = override.key_or_group  # ++ sets a key that exists; + adds one, which the launcher or sweeper never reads
        if override.is_add() and key.startswith(("hydra.launcher.", "hydra.sweeper.")) and not key.startswith(FREE_NODES):
            kind = key.split(".")[1]
            raise UserError(f"{override.input_line}: the + adds a key to the {kind}'s config, and the {kind} reads only "
                            f"its own keys: set one of those without the + "
                            f"({advised(f'--cfg hydra hydra/{kind}=<option> -p hydra.{kind}')} lists them).")
    subdir = command.given("hydra.sweep.subdir")
    if subdir is not None and not any(unique in subdir.input_line for unique in UNIQUE_PER_JOB):
        raise UserError(f"{subdir.input_line} can give two jobs of one sweep the same directory, where the second "
                        f"writes over the first (override_dirname leaves out keys such as logger): put the job's "
                        f"number in it, e.g. 'hydra.sweep.subdir={JOB_NUMBER}_${{hydra.job.override_dirname}}'.")
    jobs = command.value("hydra.launcher.n_jobs")
    count = as_int(jobs)
    if count == 0:  # joblib's own error is a traceback
        raise UserError("hydra.launcher.n_jobs=0 runs no job: give how many jobs run at a time, at least 1 "
                        "(-1: one per core).")
    if count is not None and count < -os.cpu_count():
        raise UserError(f"hydra.launcher.n_jobs={jobs} counts back past this machine's {os.cpu_count()} cores (-1: "
                        f"one job per core, -2: one fewer), and joblib would run one at a time: give at least "
                        f"-{os.cpu_count()}, or a count of jobs.")
    timeout = command.value("hydra.launcher.timeout")
    joblib = command.value("hydra/launcher") == "joblib"
    if timeout not in (None, "null") and joblib and jobs_at_once(-1 if count is None else count) == 1:  # its default
        here = " here" if count is None or count < 0 else ""
        raise UserError(f"hydra.launcher.timeout={timeout}: joblib limits a job's time only where it runs several at "
                        f"once, and hydra.launcher.n_jobs={jobs or -1} runs one at a time{here}: give "
                        "hydra.launcher.n_jobs=2 or more (in a search, as many hydra.sweeper.n_jobs), or leave the "
                        "timeout out.")
    for key, allowed in JOBLIB_FIXED.items():
        if (value := command.value(key)) is not None and value not in allowed:
            raise UserError(f"{key}={value}: joblib's launcher runs each job in a process of its own (loky) whatever "
                            f"this says: leave {key} out (hydra.launcher.n_jobs sets how many run at once).")
    for given in filter(None, map(command.given, JOBLIB_NO_ARRAYS)):
        raise UserError(f"{given.input_line}: joblib applies it to large arrays handed to a job, and Hydra's launcher "
                        "hands a job its config alone: leave it out.")
    for key in ONE_PROCESS_KEYS:
        if (value := command.value(key)) is not None and as_int(value) != 1:
            raise UserError(f"{key}={value}: each job of a sweep is one training process, and more would train the "
                            f"same run side by side in one directory: give {key}=1. To train one run on several "
                            "GPUs, start it with torchrun (README: several processes).")
    for key in ONE_GPU_KEYS:
        if (as_int(value := command.value(key)) or 0) > 1:
            raise UserError(f"{key}={value}: each job of a sweep is one training process, which trains on one GPU: "
                            f"give {key}=1. To train one run on several GPUs, start it with torchrun (README: several "
                            "processes).")
    launcher = command.value("hydra/launcher")
    # submitit's own error, without SLURM's commands, is a traceback.
    if launcher in SLURM_LAUNCHERS and (missing := [tool for tool in SLURM_TOOLS if shutil.which(tool) is None]):
        raise UserError(f"hydra/launcher={launcher} hands each job to SLURM, and this machine has no "
                        f"{' or '.join(missing)} on its PATH: run the sweep on a login node of the cluster, or on this "
                        "machine with hydra/launcher=submitit_local (the same code path, without SLURM).")
    if launcher == "submitit_local" and as_int(gpus := command.value("hydra.launcher.gpus_per_node")):
        import torch  # the GPUs this machine has, where submitit_local runs the jobs

        if not torch.cuda.is_available():
            raise UserError(f"hydra.launcher.gpus_per_node={gpus}: submitit_local runs each job on this machine, which "
                            "has no CUDA GPU, so the jobs would train on the CPU: leave it out, or run the sweep where "
                            "the GPUs are (hydra/launcher=slurm).")
    if launcher == "submitit_local":
        for given in filter(None, map(command.given, LOCAL_IGNORES)):
            key = given.key_or_group.rpartition('.')[2]
            threads = "; device.threads=N sets a job's CPU threads" if key == "cpus_per_task" else ""
            raise UserError(f"{given.input_line}: submitit_local runs each job on this machine and applies no {key} to "
                            f"it (SLURM does, hydra/launcher=slurm): leave it out{threads}.")
    storage = command.value("hydra.sweeper.storage")
    if isinstance(storage, str) and IN_MEMORY_SQLITE.fullmatch(storage):
        raise UserError(f"hydra.sweeper.storage={storage} is a database in memory, which the trials' jobs cannot "
                        "reach: leave the storage out (SQLite in the sweep directory), or give "
                        "hydra.sweeper.storage=null for a study in this process alone.")


def jobs_at_once(n_jobs: int) -> int:
    """How many jobs joblib runs at once, given ``n_jobs``: a negative count is counted back from the cores, as joblib
    counts it (-1, its default: one per core). One runs on its sequential backend, which has no timeout."""
    if n_jobs >= 0:
        return n_jobs
    try:
        from joblib import effective_n_jobs  # the launcher's own count
    except ImportError:  # no joblib launcher either: Hydra refuses its keys
        return n_jobs
    return effective_n_jobs(n_jobs)


def check_single_run_settings(hydra_overrides: list[str]) -> None:
    """A key of the sweeper or the launcher, which one run reads neither of; refused once Hydra has composed them,
    after its own refusal of a key that the chosen sweeper or launcher lacks (hydra/launcher=joblib has n_jobs)."""
    for line in hydra_overrides:
        if line.lstrip("+~").startswith(("hydra.sweeper.", "hydra.launcher.")):
            raise only_in_a_sweep(line)


def only_in_a_sweep(line: str, where: str = "") -> UserError:
    """The refusal of an override that only a sweep reads, given to one run; ``where``: what one run takes instead."""
    return UserError(f"{line} is for the jobs of a sweep, and this command is one run{where}: add -m for a sweep "
                     f"({advised(f'-m {line} ...')}).")
