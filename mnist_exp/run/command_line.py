"""The training command line, read once, with Hydra's own parsers, before Hydra runs.

Hydra composes the config from the same words afterwards. The checks that must come first (is it
a sweep, where does it write, does it resume) read this one object, and read each value as
OmegaConf will: ``resume=yes``, ``resume=True``, ``resume=1`` and ``resume=on`` are all ``true``.
A word Hydra cannot read is left for Hydra to refuse, in its own words (made one line).
"""

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf import ValidationError
from omegaconf.nodes import BooleanNode, IntegerNode

from mnist_exp.errors import UserError, advised, did_you_mean

# Resolvers whose value comes from outside the config: the environment, the clock.
OUTSIDE_VALUE = re.compile(r"\$\{(oc\.env|now):([^,}]*)")
# Groups that turn a sweep into an Optuna search.
SEARCH_GROUPS = ("hparams_search", "hydra/sweeper")


@functools.cache
def override_parser() -> OverridesParser:
    return OverridesParser.create()


def read_override(text: str) -> Override:
    """One ``key=value`` as Hydra reads it; what Hydra cannot read, refused in a line that says what is mistyped."""
    try:
        override = override_parser().parse_override(text)
    except HydraException as error:
        raise UserError(f"Cannot read the override '{text}': {typing_mistake(text, str(error))}") from None
    if not override.key_or_group:
        raise UserError(f"Cannot read the override '{text}': {typing_mistake(text, '')}")
    return override


def as_bool(key: str, value) -> bool:
    """A value as OmegaConf reads a boolean (true, yes, on, 1, ...); a UserError for one it does not take."""
    if value is None:  # BooleanNode takes null; the key does not
        raise UserError(f"{key}=null: {key} needs a value, not null: give true or false, e.g. {key}=true.")
    try:
        return bool(BooleanNode(value=value)._value())
    except ValidationError:
        raise UserError(f"{key}={value} is not true or false: give true or false, e.g. {key}=true.") from None


def as_int(value: str | None) -> int | None:
    """The whole number OmegaConf reads from a value as typed (01, +2, 1_000 too); None where it reads none."""
    try:
        return None if value is None else IntegerNode(value=value)._value()
    except ValidationError:
        return None


@dataclass(frozen=True)
class CommandLine:
    overrides: tuple[Override, ...]  # the ones Hydra can read, in order
    multirun: bool  # -m, --multirun or hydra.mode=MULTIRUN
    prints_only: bool  # --cfg, --help, --info, a wrong flag...: Hydra prints something and runs nothing
    config_dir: str | None  # --config-dir: more config files, beside conf/

    def given(self, key: str) -> Override | None:
        """The last override of ``key`` (Hydra's rule: a later one wins), or None."""
        found = [override for override in self.overrides if override.key_or_group == key]
        return found[-1] if found else None

    def value(self, key: str) -> str | None:
        """The plain value given to ``key`` as text; None where it is not given, swept or interpolated (``${...}``)."""
        override = self.given(key)
        if override is None or override.is_sweep_override() or override.is_delete():
            return None
        value = override.value()
        text = value if isinstance(value, str) else override.get_value_element_as_str()  # as typed, unescaped
        return None if "${" in text else text

    def path(self, key: str) -> Path | None:
        text = self.value(key)
        return Path(text) if text else None

    @property
    def config_dirs(self) -> tuple[str, ...]:
        """The user's config folders, in the order Hydra searches them after conf/: ``--config-dir``, then the
        folders of the first ``hydra.searchpath`` (Hydra reads that one; ``pkg://`` entries are packages)."""
        searchpath = next((o.value() for o in self.overrides if o.key_or_group == "hydra.searchpath"), None)
        entries = [entry for entry in searchpath or [] if isinstance(entry, str) and "${" not in entry]
        folders = [entry.removeprefix("file://") for entry in entries if "://" not in entry.removeprefix("file://")]
        return tuple(filter(None, [self.config_dir, *folders]))

    @property
    def run_dir(self) -> Path | None:
        return self.path("hydra.run.dir")

    @property
    def sweep_dir(self) -> Path | None:
        return self.path("hydra.sweep.dir")

    @property
    def from_checkpoint(self) -> bool:
        """Whether the run starts from a checkpoint (``ckpt_path``, not null), in a directory of its own."""
        override = self.given("ckpt_path")
        return override is not None and not override.is_delete() and override.value() not in (None, "")

    @property
    def resume(self) -> bool:
        override = self.given("resume")
        if override is None or override.is_delete():
            return False
        if override.is_sweep_override():
            raise UserError(f"resume={override.get_value_string()}: resume says how a run starts, not what it "
                            "trains, so it cannot be swept. Give resume=true or leave it out.")
        return as_bool("resume", override.value())

    @property
    def search(self) -> bool:
        """An Optuna search: its jobs go into new directories numbered by trial."""
        return any(self.given(group) is not None for group in SEARCH_GROUPS)

    def sweeps(self) -> list[Override]:
        return [override for override in self.overrides if override.is_sweep_override()]


def with_overrides(argv: list[str], command: CommandLine, more: list[str]) -> list[str]:
    """``argv`` with ``more`` overrides right after the user's last one, so that they win: Hydra's parser takes the
    overrides as one run of words, and refuses words after a flag that follows them (``a=1 --cfg job b=2``)."""
    words = [override.input_line for override in command.overrides]
    at = max((i for i, word in enumerate(argv) if i > 0 and word in words), default=len(argv) - 1) + 1
    return [*argv[:at], *more, *argv[at:]]


def parse_command_line(argv: list[str]) -> CommandLine:
    """``sys.argv[1:]`` of ``python -m mnist_exp``, read with Hydra's argument parser and override grammar."""
    from hydra._internal.utils import get_args_parser  # Hydra's own, so flags mean here what they mean to Hydra

    parser = get_args_parser()
    parser.error = refuse  # a wrong flag (--cfg jb) is Hydra's to refuse, in its own words
    version = "--version" in argv  # argparse would print it and exit here
    try:
        args, _ = parser.parse_known_args([arg for arg in argv if arg != "--version"])  # unknown words: Hydra's too
    except ValueError:
        return CommandLine((), False, True, None)
    if args.multirun and (args.cfg or args.info):
        raise UserError("-m runs a sweep, and --cfg and --info show one run: leave out -m and give each swept key "
                        "one value, the values of the job to see.")
    if args.resolve and not (args.cfg or args.help):
        raise UserError(f"--resolve goes with --cfg: {advised('--cfg job --resolve')} shows the config with its "
                        "interpolations resolved.")
    if args.config_path:
        raise UserError(f"--config-path {args.config_path} would replace mnist_exp's configs: add your own beside them "
                        f"with --config-dir {args.config_path}.")
    if args.package and not args.cfg:
        raise UserError(f"--package {args.package} goes with --cfg: {advised('--cfg job --package')} "
                        f"{args.package} shows that node of the config.")
    if args.experimental_rerun:  # Hydra reads a pickle there, which can run any code; runs here write none
        raise UserError(f"--experimental-rerun {args.experimental_rerun}: mnist_exp runs again from overrides, not "
                        "from a pickle: give the overrides listed in the run's .hydra/overrides.yaml.")
    overrides = tuple(read_override(text) for text in args.overrides or [])
    for override in overrides:  # Hydra records a value as typed: the environment's or the clock's would be lost
        if not override.key_or_group.startswith("hydra") and (found := OUTSIDE_VALUE.search(override.input_line)):
            shell = f"${found[2]}" if found[1] == "oc.env" else f"$(date +{found[2]})"
            raise UserError(f"{override.input_line}: a value from ${{{found[1]}:...}} is recorded as that text, not as "
                            f"the value the run took: let the shell give the value ({override.key_or_group}={shell}).")
    if args.hydra_help and (job_keys := [o.input_line for o in overrides if not o.key_or_group.startswith("hydra")]):
        raise UserError(f"--hydra-help shows Hydra's own options, and {job_keys[0]} is a key of the run: leave the "
                        f"overrides out ({advised('--hydra-help')}), or see a run's config with --cfg job.")
    mode = [o.get_value_element_as_str() for o in overrides if o.key_or_group == "hydra.mode"]
    multirun = args.multirun or (mode[-1].upper() == "MULTIRUN" if mode else False)
    prints_only = version or bool(args.help or args.hydra_help or args.cfg or args.info or args.shell_completion)
    return CommandLine(overrides, multirun, prints_only, args.config_dir)


# Hydra's functions, each as it is written (glob: a group's options by name).
SWEEP_EXAMPLES = {"choice": "choice(8,16)", "range": "range(1,4)", "interval": "interval(0.001,0.1)",
                  "tag": "tag(log,interval(0.001,0.1))", "int": "int(interval(8,16))", "float": "float(range(1,4))",
                  "str": "str(1)", "bool": "bool(1)", "shuffle": "shuffle(1,2,3)", "sort": "sort(3,1,2)",
                  "glob": "glob(c*)"}


def typing_mistake(text: str, error: str) -> str:
    """What is mistyped in an override Hydra cannot read (``error``: how Hydra's grammar put it), and how it reads."""
    key, equals, value = text.partition("=")
    if found := re.search(r"while evaluating '(?P<call>(?P<name>\w+)\([^']*\))': mismatch type argument (?P<arg>\w+)",
                          error):
        return (f"{found['name']}() takes numbers, and its {found['arg']} in {found['call']} is not one, e.g. "
                f"{found['name']}(1,4).")
    if found := re.search(r"while evaluating '(?P<call>(?P<name>\w+)\([^']*\))': (?P<what>[^\n]*)", error):
        name, what = found["name"], found["what"].rstrip(".") or "Hydra cannot evaluate it"
        if functions := re.search(r"Available: ([\w,]+)", error):  # an unknown function
            names = functions[1].split(",")
            return f"there is no function {name}().{did_you_mean(name, names)} Hydra's functions: {', '.join(names)}."
        example = f" Write it as e.g. {key}={SWEEP_EXAMPLES[name]}." if name in SWEEP_EXAMPLES else ""
        return f"{found['call']}: {what[0].lower()}{what[1:]}.{example}"
    if value == "~":  # YAML's null, which the override grammar does not take
        return f"write {key}=null for none (~ means null in YAML files, not on the command line)."
    if re.search(r"\s[\w.+~/]+=", value):
        return "it holds two overrides: give each as an argument of its own (no quotes around both)."
    if re.search(r",\s*(?:[\])]|$)", value):
        return "a list or sweep ends in a comma: remove it."
    if not equals and ":" in text:
        return f"write key=value, e.g. {text.replace(':', '=', 1)}."
    if not equals or not key.strip("+~"):
        return f"an override is key=value, e.g. trainer.epochs=3 ({advised('--cfg job')} shows the keys)."
    if value.startswith("="):
        return f"one '=' goes between key and value, e.g. {key}={value.lstrip('=')}."
    if value.count("'") % 2 or value.count('"') % 2:
        return "a quote in its value is not closed: close it, or leave the quotes out."
    if value.count("[") != value.count("]") or value.count("(") != value.count(")"):
        return "a bracket in its value is not closed."
    if key != key.strip() or value != value.lstrip():
        return f"no spaces around '=': {key.strip()}={value.strip()}."
    if not re.fullmatch(r"[+~]{0,2}[\w./@-]+", key) or not key.isascii():
        return (f"a key is the config's path to it, in ASCII letters, digits, '_' and '.' ({advised('--cfg job')} "
                "shows them).")
    if value.count("${") > value.count("}"):
        return "an interpolation ${...} in its value is not closed: close it, e.g. ${trainer.epochs}."
    if value.count("}") > value.count("{"):
        return "a '}' in its value closes nothing: remove it."
    return (f"quote a value with spaces, non-ASCII letters or other special characters, e.g. "
            f"'{key}=\"{value}\"' (with the outer single quotes for the shell).")


def refuse(message: str):
    raise ValueError(message)
