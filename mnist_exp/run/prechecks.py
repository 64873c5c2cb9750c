"""What is checked on the command line before Hydra writes anything, each check one line for the user.

Every check takes the ``CommandLine`` read once by ``mnist_exp.run.command_line``: one value where
a run takes one, where the run or sweep writes, whether that would overwrite finished work
(``mnist_exp.run.no_overwrite``), whether a sweep would run no job. A single run's composed config's
values are checked before Hydra makes its directory (``CheckBeforeWriting``, a Hydra callback), and
a run its builders refuse takes away the directory it made (``discard_refused_run``).
"""

import os
import shlex
import shutil
from pathlib import Path

from hydra.core.override_parser.types import ChoiceSweep, Glob, Override
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, ValidationError

from mnist_exp.errors import UserError, advised, full_traceback_asked, print_refusal, write_problem
from mnist_exp.hydra_errors import one_line, release_stderr
from mnist_exp.run.command_line import CommandLine, read_override
from mnist_exp.paths import CONF_DIR
from mnist_exp.run.hydra_settings import (BUILT_WITH_ANY_KEYS, check_hydra_settings, check_single_run_settings,
                                         only_in_a_sweep)
from mnist_exp.registry import REGISTRIES
from mnist_exp.run.config import MADE_RUN_DIRS, check_ranges, named
from mnist_exp.run.options import PRESET_GROUPS, check_presets_agree, group_options
from mnist_exp.run.no_overwrite import check_no_overwrite
from mnist_exp.run.runtime import check_preempt_signal, select_device
from mnist_exp.runs import METRICS_FILE, check_objectives


def check_command_line(command: CommandLine) -> None:
    """Every check below, in order; a command that only prints (``--cfg job``, ``--help``) writes nothing."""
    command.resume  # a resume=... that is not a boolean, or swept, is refused first
    check_own_config_dirs(command)
    check_given_values(command)
    check_presets_agree({group: command.value(group) for group in PRESET_GROUPS}, command.overrides,
                        command.config_dirs)
    if command.prints_only:
        return
    check_hydra_settings(command)
    check_preempt_signal(command.value("hydra/launcher") if command.multirun else None)
    check_builder_names(command)
    check_output_location(command)
    check_no_overwrite(command)
    check_sweep_overrides(command)


def check_own_config_dirs(command: CommandLine) -> None:
    """A folder of ``--config-dir`` or ``hydra.searchpath`` that is not there (Hydra would only warn of the second),
    and an option there named as one of mnist_exp's own, or a ``config.yaml``, which is never read: Hydra finds
    conf/'s first (a copy of it, byte for byte, changes nothing)."""
    for config_dir in command.config_dirs:
        if not Path(config_dir).is_dir():
            given = "--config-dir" if config_dir == command.config_dir else "hydra.searchpath"
            raise UserError(f"{given} names {config_dir}, which is not a folder here ({Path.cwd()}): give the folder "
                            "your own configs are in.")
        check_own_config_dir(config_dir)


def check_own_config_dir(config_dir: str) -> None:
    for path in sorted(Path(config_dir).glob("**/*.yaml")):
        packaged = CONF_DIR / path.relative_to(config_dir)
        if not packaged.exists() or packaged.read_bytes() == path.read_bytes():
            continue
        if path.parent == Path(config_dir):  # the primary config: --config-name picks it, on top of ours
            raise UserError(f"{path} has the name of mnist_exp's own {path.name}, which Hydra reads instead: rename "
                            f"it (e.g. my_{path.name}), start its defaults list with '- config', and choose it with "
                            f"--config-dir {config_dir} --config-name my_{path.stem}.")
        group, name = path.parent.relative_to(config_dir).as_posix(), path.stem
        raise UserError(f"{path} has the name of mnist_exp's own {group}={name}, which Hydra reads instead: "
                        f"rename it (e.g. {group}/my_{name}.yaml) and choose {group}=my_{name}.")


def check_builder_names(command: CommandLine) -> None:
    """A builder is chosen with its option (``optimizer=adam``), which brings its keys: ``optimizer.name=adam`` would
    build Adam with the chosen option's values (AdamW's weight decay). A name the registry lacks gets its did-you-mean.
    So is the metric (``optimized_metric``) checked: a sweep's jobs would each be refused."""
    for registry in filter(named, REGISTRIES):
        given = command.given(kind := f"{registry.kind}.name")
        if given is None or given.is_delete():
            continue
        for name in map(str, swept_values(given) if given.is_sweep_override() else [given.value()]):
            registry.get(name)
            if name != command.value(registry.kind):
                raise UserError(f"{kind}={name}: choose the {registry.kind} with {registry.kind}={name}, which brings "
                                f"its own keys and defaults; {kind} alone swaps the builder and keeps the values of "
                                f"the option chosen.")
    metric = command.given("optimized_metric")
    if metric is not None and not metric.is_sweep_override() and "${" not in metric.input_line:
        check_objectives(metric.value())
        if not (command.multirun or command.prints_only):  # a run returns it to the sweeper that launched it
            raise UserError(f"{metric.input_line}: a search optimises that metric, and one run has no search to give "
                            "it to: leave it out, or give it to a search with -m (hparams_search=<name> or "
                            "hydra/sweeper=optuna).")


# The groups whose option is one component: a list of options (model=[cnn,mlp]) would merge several into one.
ONE_OPTION_GROUPS = ("dataset", "model", "optimizer", "scheduler", "augment", "device")
# The optimizer of a search and what stops its trials: the sweeper builds both (none: hydra/sweeper/pruner=none).
SEARCH_PARTS = ("hydra/sweeper/sampler", "hydra/sweeper/pruner")
# Keys naming a place or a file, where an empty value would mean the current directory, or nothing without saying so.
PLACES = {
    "hydra.run.dir": "give the run a directory (hydra.run.dir=outputs/my_run), or leave it out for a new one.",
    "hydra.sweep.dir": "give the sweep a directory (hydra.sweep.dir=outputs/my_sweep), or leave it out for a new one.",
    "ckpt_path": "give the checkpoint to continue from, or leave ckpt_path out to start fresh.",
    "init_from": "give the trained run (or checkpoint) to start from, or leave init_from out.",
    "dataset.data_dir": "give the directory of the datasets, or leave it out for the default (data/ in a checkout).",
    "hydra.job.name": "give the job a name (its log file is <name>.log), or leave hydra.job.name out.",
    "hydra.sweeper.storage": "give the study's database or journal file, leave it out for SQLite in the sweep directory, "
                             "or give hydra.sweeper.storage=null for a study in this process alone.",
}


# What only a sweep (-m) reads: given to one run, it would change nothing.
SWEEP_ONLY = ("hydra/launcher", "hydra/sweeper", "hydra.sweep.dir", "hydra.sweep.subdir")


def check_given_values(command: CommandLine) -> None:
    """Refuse, before Hydra does in words that point elsewhere (or not at all), values a run cannot take as given:
    several where it takes one (a sweep without -m, a list of a group's options), none (null for a group, a
    removed key, an empty place), or a number or boolean where a group takes an option's name."""
    for override in command.overrides:
        key, line, given = override.key_or_group, override.input_line, override.value()
        if override.package is not None and not key.startswith("hydra"):  # model@foo=cnn: a second model elsewhere
            raise UserError(f"{line}: a group's option goes where the config reads it, not elsewhere (@): choose it "
                            f"as {key}={given}.")
        if (override.is_add() or override.is_force_add()) and \
                group_options(key, command.config_dirs):  # +model=cnn: Hydra records it as no choice
            option = given[0] if isinstance(given, list) and len(given) == 1 else given
            raise UserError(f"{key} is a config group: choose its option without the +, {key}={option}.")
        if key == "hydra.sweeper.params" and isinstance(given, dict) and given:  # merged into null or a struct: fails
            keys = " ".join(shlex.quote(f"{name}={value}") for name, value in given.items())
            raise UserError(f"{line}: give each key's search space on the command line as the key itself, {keys} (a "
                            "search's config file lists them under hydra.sweeper.params).")
        if key in PLACES and override.is_sweep_override():  # a comma in a path
            raise UserError(f"{line}: a comma makes a sweep of a value: quote a path with one, "
                            f"'{key}=\"{line.partition('=')[2]}\"'.")
        if override.is_sweep_override() and (command.prints_only or not command.multirun):
            raise UserError(f"{line} is a sweep{sweep_advice(override, command)}")
        if key in SWEEP_ONLY and not (command.prints_only or command.multirun):
            where = f" (hydra.run.dir={given} places one run)" if key == "hydra.sweep.dir" else ""
            raise only_in_a_sweep(line, where)
        if key == "hydra.run.dir" and command.multirun and not command.prints_only:
            raise UserError(f"{line} places one run, and -m runs a sweep: give hydra.sweep.dir={given} to place the "
                            "sweep's jobs.")
        if override.is_delete() and key.startswith("logger.") and key.count(".") == 1:  # ~logger.csv: a logger
            raise UserError(without_logger(line, key.partition(".")[2], command.given("logger")))
        if override.is_delete() or given is None:
            options = ", ".join(group_options(key, command.config_dirs))
            if key in ONE_OPTION_GROUPS or key in SEARCH_PARTS:
                needs = "a search needs" if key in SEARCH_PARTS else "a run needs"
                raise UserError(f"{line}: {needs} a {key}. Give it one of its options: {options}.")
            if options and not override.is_delete():
                raise UserError(f"{line}: a group's option is not null: ~{key} removes {key}'s option, or give one "
                                f"of: {options}.")
            if not options and override.is_delete() and not key.startswith(BUILT_WITH_ANY_KEYS):
                raise UserError(f"{line}: every key of the config is read, so none can be removed: give "
                                f"{key.removeprefix('hydra.sweeper.params.')} a value "  # a search's key: fixed
                                f"({advised('--cfg job')} shows each key's).")
        values = given.list if isinstance(given, ChoiceSweep) else [] if override.is_sweep_override() else [given]
        if any(not isinstance(value, (str, list, type(None))) for value in values) and \
                (options := group_options(key, command.config_dirs)):  # model=5: Hydra's own error names no option
            raise UserError(f"{line}: {key} takes one of its options by name: {', '.join(options)}.")
        if key in PLACES and (given == "" or given is None and key.endswith(".dir")):
            raise UserError(f"{line}: {PLACES[key]}")  # ckpt_path=null, init_from=null: none, their default
        if key == "hydra.job.name" and isinstance(given, str) and "/" in given:
            raise UserError(f"{line}: the job's name names its log file (<name>.log), which is no path: give one "
                            f"without '/', e.g. hydra.job.name={given.replace('/', '_')}.")
        if isinstance(given, Glob) and not group_options(key, command.config_dirs):
            raise UserError(f"{line}: glob() matches a config group's options, and {key} is a key: list the values "
                            f"to sweep instead, {key}=<a>,<b>.")
        if key in (*ONE_OPTION_GROUPS, *SEARCH_PARTS, "experiment") and isinstance(given, list) and given:
            if len(given) > 1 and key in SEARCH_PARTS:  # their settings would merge into one
                raise UserError(f"{line}: a search has one {key.rpartition('/')[2]}: give one, {key}={given[0]}.")
            if len(given) == 1:
                raise UserError(f"{line}: give the option without brackets, {key}={given[0]} (Hydra records a list of "
                                "one as no choice).")
            options = ",".join(str(option) for option in given)
            raise UserError(f"{line}: a run has one {key}. Give one ({key}={given[0]}), or add -m to run one job "
                            f"for each ({advised(f'-m {key}={options} ...')}).")


def without_logger(line: str, name: str, chosen: Override | None) -> str:
    """A logger is left out of the list that chooses the loggers (conf/config.yaml's where none is given)."""
    if chosen is None or chosen.is_sweep_override() or chosen.is_delete():
        chosen = next(read_override(f"logger={entry['logger']}") for entry in OmegaConf.load(CONF_DIR / "config.yaml")
                      .defaults if isinstance(entry, DictConfig) and "logger" in entry)
    names = chosen.value() if isinstance(chosen.value(), list) else [chosen.value()]
    others = [str(other) for other in names if other != name]
    return (f"{line}: a logger is chosen by its name in logger=[...], not removed as a key: leave {name} out, "
            f"logger=[{','.join(others)}]{'' if others else ' for none'}.")


def sweep_advice(override: Override, command: CommandLine) -> str:
    """How to run what a sweep override given without -m asks for."""
    key, line = override.key_or_group, override.input_line
    if command.prints_only:
        return f", and --cfg, --info and --help show one run: give {key} one value."
    if override.is_interval_sweep():
        return f" sampled by a search: {advised(f'-m hydra/sweeper=optuna {shlex.quote(line)} ...')}"
    return f": add -m to run one job for each value ({advised(f'-m {shlex.quote(line)} ...')})."


def check_output_location(command: CommandLine) -> None:
    """Refuse, in one line, an output location that cannot be written (Hydra would fail with a traceback)."""
    outputs = os.environ.get("MNIST_EXP_OUTPUTS", "outputs")
    if not outputs.strip():  # the config's ${oc.env:MNIST_EXP_OUTPUTS,outputs} would put the runs at the root, /runs
        raise UserError("MNIST_EXP_OUTPUTS is set but empty: give it a directory, or unset it for ./outputs.")
    places = {"hydra.run.dir": command.run_dir, "hydra.sweep.dir": command.sweep_dir, "MNIST_EXP_OUTPUTS": Path(outputs)}
    for name, location in places.items():
        if location is not None and location.parts[0].startswith("~"):  # quoted, so the shell left it as it is
            raise UserError(f"{name}={location} starts with ~, which only the shell expands, and not in quotes: give "
                            f"the path from / (e.g. {Path(str(location)).expanduser()}).")
    for location in filter(None, places.values()):
        path = location.absolute()
        existing = next(p for p in (path, *path.parents) if p.exists())
        if problem := write_problem(existing):
            raise UserError(f"Cannot write run directories to {path}: {existing} {problem}. "
                            "Choose another place with hydra.run.dir=<dir> or MNIST_EXP_OUTPUTS=<dir>.")


def check_sweep_overrides(command: CommandLine) -> None:
    """Refuse a sweep that would run no job (over no values: Hydra calls it a success), or one a later value undoes."""
    for override in command.sweeps():
        line, key = override.input_line, override.key_or_group
        if again := [o for o in command.overrides[command.overrides.index(override) + 1:] if o.key_or_group == key]:
            raise UserError(f"{line} sweeps {key}, and {again[0].input_line} after it gives it again, which each job "
                            "would take: give it once.")
        if override.is_interval_sweep():
            continue  # sampled by a search
        if isinstance(override.value(), Glob):
            options = group_options(key, command.config_dirs)
            if options and not override.value().filter(options):
                raise UserError(f"{line} matches no {key} config: choose from {', '.join(options)}.")
        else:
            swept_values(override)


def swept_values(override: Override, **transform) -> list:
    """The values of a sweep, on the command line or in a search's params; a ``range(...)`` with a step of 0, or
    none between its ends, is refused in one line."""
    if override.is_range_sweep() and override.value().step == 0:
        raise UserError(f"{override.input_line}: range(start,stop,step) needs a step other than 0, e.g. "
                        "range(8,33,8).")
    values = list(override.sweep_iterator(**transform))
    if not values:
        raise UserError(f"{override.input_line} sweeps over no values: range(start,stop,step) stops before stop, so "
                        "the start must be below it (or above it, with a negative step).")
    return values


def discard_refused_run(run_dir: Path) -> bool:
    """A single run refused while it was built (a value only its builder checks: ``model.width=0``) leaves no run
    directory, where this command made it and it holds no record: all in it is then this run's. True if it is gone."""
    if run_dir.resolve() not in MADE_RUN_DIRS or (run_dir / METRICS_FILE).exists():
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    return not run_dir.exists()


def check_resolves(run: DictConfig) -> None:
    """Interpolations that resolve to a value their key does not take (``model.width=${trainer}``), or to themselves
    through others: refused here, in one line, rather than in the run's first step."""
    try:
        OmegaConf.to_container(run, resolve=True)
    except (ValidationError, InterpolationResolutionError) as error:  # not a resolver's own (${hydra:...}) failure
        if isinstance(error, ValidationError) or "Recursive interpolation" in str(error):
            raise UserError(one_line(str(error))) from error


class CheckBeforeWriting(Callback):
    """A single run's composed config checked before Hydra makes its directory: a value refused there leaves
    nothing behind. (The run checks it again, and so does each job of a sweep, which records a refusal as failed.)"""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        run = OmegaConf.masked_copy(config, [key for key in config if key != "hydra"])
        try:
            check_resolves(run)
            check_ranges(run)
            check_single_run_settings(config.hydra.overrides.hydra)
            select_device(run.device.name.value)
        except UserError as error:
            if full_traceback_asked():
                return  # the run raises it again, with its traceback (Hydra turns a callback's error into a warning)
            release_stderr()
            print_refusal(error)
            raise SystemExit(1) from None
        except Exception:  # not a user's value: the run meets it again and reports it as it does every error
            return
