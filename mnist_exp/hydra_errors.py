"""Hydra's errors as one line on the terminal: an unknown option or key, a value of the wrong type, an override
it cannot parse, an interpolation it cannot resolve.

``hydra_errors_in_one_line`` goes around ``@hydra.main``: what Hydra prints before the first job starts is held
back, and a failure becomes the one line ``one_line`` writes, with the traceback only under ``HYDRA_FULL_ERROR=1``.
"""

import contextlib
import io
import re
import sys
from difflib import get_close_matches
from typing import Callable

from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from mnist_exp.errors import advised, did_you_mean, full_traceback_asked, print_refusal
from mnist_exp.hydra_keys import option_with_key, unknown_logger_key, unknown_option_key
from mnist_exp.paths import CONF_DIR

# While Hydra composes: the stream its errors are printed to, and the real stderr.
_held: dict[str, io.TextIOBase] = {}


@contextlib.contextmanager
def hydra_errors_in_one_line(key_names: Callable[[str], list[str]]):
    """Around ``@hydra.main``: what Hydra prints on stderr before the first job starts is held back; on a
    failed exit it becomes one line (``one_line``), otherwise it is passed on as it was.

    ``key_names(type_name)`` lists the keys of a config node type, for the close match of a misspelt key.
    """
    if full_traceback_asked():
        yield
        return
    real, held = sys.stderr, io.StringIO()
    sys.stderr, _held["stderr"], _held["real"] = held, held, real

    def failed(text: str) -> SystemExit:
        sys.stderr = real
        _held.pop("stderr", None)
        print_refusal(one_line(text, key_names), real)
        return SystemExit(1)

    try:
        yield
    except SystemExit as exit:
        stopped_by_signal = isinstance(exit.code, int) and exit.code > 128  # its own lines said so, and how to resume
        if sys.stderr is held and exit.code not in (0, None) and not stopped_by_signal:
            raise failed(held.getvalue()) from None
        raise
    except (HydraException, OmegaConfBaseException) as error:  # where Hydra does not report it: --help, --info
        if sys.stderr is not held:
            raise
        raise failed(held.getvalue() + "\n" + messages_of(error)) from None
    finally:
        if sys.stderr is held:
            release_stderr()
        sys.stderr = real


def messages_of(error: BaseException | None) -> str:
    """An error's message and those of the errors it was raised from, one after another, as Hydra prints them."""
    messages = []
    while error is not None:
        messages.append(str(error))
        error = error.__cause__ or error.__context__
    return "\n".join(messages)


def release_stderr() -> None:
    """Give stderr back (a job or a sweep starts): its output from now on is the user's to see as it comes."""
    held, real = _held.pop("stderr", None), _held.pop("real", sys.__stderr__)
    if held is not None and sys.stderr is held:
        sys.stderr = real
        real.write(held.getvalue())


TYPE_WORDS = {"Integer": "a whole number", "Float": "a number", "Boolean": "true or false", "String": "text"}
# Lists of a fixed length, for advice that then composes: Adam's two betas, vgg_cnn's count of convs for each stage.
FIXED_LENGTH_LISTS = {".betas": "[{0},0.999]", ".convs_per_stage": "[{0},{0},{0}]"}
# Names users know a choice by that spelling does not bring close to it (gpu is nearer cpu than cuda).
OTHER_NAMES = {"gpu": "cuda", "nvidia": "cuda", "float32": "fp32", "bfloat16": "bf16"}


def one_line(text: str, key_names: Callable[[str], list[str]] = lambda _: []) -> str:
    """Hydra's account of a failure, as the one line that says what is wrong and how to fix it."""
    full_key = re.search(r"full_key: (\S+)", text)
    # argparse's, after its usage lines (another program's "sbatch: error: ..." is that program's, said as it is)
    if (found := re.search(r"^[\w.-]+: error: (?P<message>.+)$", text, re.M)) and re.search(r"^usage: ", text, re.M):
        stranded = re.fullmatch(r"unrecognized arguments: ([^-].*)", found["message"])  # overrides after an option
        hint = f" Options such as -m go before the overrides: {advised('-m key=a,b ...')}" if stranded else ""
        from hydra._internal.utils import get_args_parser

        options = get_args_parser()._option_string_actions  # Hydra's own options: --cfg, --multirun ...
        return f"{advised()}: {found['message']}.{hint}{misspelt_option(found['message'], options)} See --help."
    # A single option names the group's options; an option in a list (logger=[a,b]) does not: conf/ has them.
    if found := re.search(r"Could not (?P<how>find|load) '(?P<group>[\w/]+)/(?P<option>[^']*)'", text):
        group, option = found["group"], found["option"]
        options = (re.findall(r"^\t(\S+)$", text, re.M) if found["how"] == "find"
                   else sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml")))
        problem = "there is no such option." if option else "give it one of its options."
        meant = OTHER_NAMES.get(option.lower())
        close = f" Did you mean '{meant}'?" if meant in options else did_you_mean(option, options)
        return (f"{group}={option}: {problem}{close} "
                f"Options of {group}: {', '.join(options)}.")
    if found := re.search(r"Multiple values for (?P<group>[\w/]+)\. To override a value use 'override [\w/]+: "
                          r"(?P<option>[^']+)'", text):  # a recipe's defaults list (the command line's +group: prechecks)
        return (f"A defaults list chooses {found['group']} again ({found['group']}: {found['option']}): write "
                f"'- override /{found['group']}: {found['option']}' there, as the experiment files do.")
    if found := re.search(r"(?:Sweeping over Hydra's configuration is not supported : |Could not override )"
                          r"'hydra\.sweeper\.params\.(?P<key>[^=']+)", text):  # a search's space, from the command line
        return (f"hydra.sweeper.params.{found['key']}: give a key's search space on the command line as the key itself, "
                f"e.g. '{found['key']}=choice(a,b)' or '{found['key']}=interval(a,b)' (a search's config file lists them "
                "under hydra.sweeper.params).")
    if (found := re.search(r"Could not override 'logger\.(?P<key>(?P<first>\w+)[^']*)'", text)) and \
            f"Key '{found['first']}' is not in struct" in text:
        return unknown_logger_key(found["key"], key_names("logger"))
    if (found := re.search(r"In '(?P<group>[\w/]+)/(?P<file>[^']+)': ConfigKeyError raised while composing config:\n"
                           r"Key '(?P=group)' not in", text)):  # its keys land under the group's name
        return missing_package_line(f"{found['group']}/{found['file']}", "keys")
    if (found := re.search(r"In '(?P<group>[\w/]+)/(?P<file>[^']+)': ConfigKeyError raised while composing config:\n"
                           r"Key '[^']+' not in '(?P<type>[^']+)'", text)) and full_key and "." in full_key[1]:
        node, recipe = full_key[1].rpartition(".")[0], f"{found['group']}={found['file']}"
        option = re.fullmatch(rf"{re.escape(node)}_(\w+)_schema", found["type"])  # the option chosen over the recipe's
        chosen = f"{node}={option[1]}" if option else f"this {node}"
        return (f"{recipe} sets {full_key[1]}, a key {chosen} does not have (its keys: "
                f"{', '.join(key_names(found['type']))}): drop what chooses {chosen} (an override of {node}, or a debug "
                f"preset) to keep the {node} of {recipe}, or write a recipe of your own from "
                f"{found['group']}/{found['file']}.yaml without that key.")
    found = re.search(r"Could not override '(?P<key>hydra\.[\w.]+)'.*Key '[^']+' is not in struct", text, re.S)
    if found and (said := unknown_option_key(found["key"])):  # a sampler's or pruner's options: dicts, no schema
        return said
    if (found := re.search(r"Key '(?P<key>[^']+)' not in '(?P<type>[^']+)'", text)) and full_key:
        if full_key[1].startswith("logger.") and not key_names(found["type"]):  # a logger without keys
            return unknown_logger_key(full_key[1].removeprefix("logger."), key_names("logger"))
        keys, (parent, _, key) = key_names(found["type"]), full_key[1].rpartition(".")
        elsewhere = option_with_key(full_key[1])  # the exact key of another option: before a close match here
        close = [] if elsewhere else get_close_matches(key, keys, n=1, cutoff=0.6)  # the key alone, not its parent
        suggestion = f" Did you mean '{parent + '.' if parent else ''}{close[0]}'?" if close else ""
        return (f"Unknown key '{full_key[1]}'.{suggestion}"
                + (f" The keys of {parent or 'the config'}: {', '.join(keys)}." if keys else "") + elsewhere)
    if (found := re.search(r"Value '(?P<value>.*)' of type '\w+' could not be converted to (?P<type>\w+)", text)
            or re.search(r"Value '(?P<value>.*)' is not a valid (?P<type>bool)", text)) and full_key:
        wanted = TYPE_WORDS.get(found["type"], "true or false" if found["type"] == "bool" else found["type"])
        if item := re.fullmatch(r"(?P<key>[\w.]+)\[(?P<index>\d+)\]", full_key[1]):  # an item of a list
            return (f"{item['key']}: its item {found['value']} is not {wanted}: give a list of them, e.g. "
                    f"{item['key']}={LIST_EXAMPLES.get(wanted, '[...]')}.")
        written = re.search(rf"Error merging override {re.escape(full_key[1])}=(\S+)", text)
        if wanted == "a whole number" and written and re.fullmatch(r"-?\d+\.0", found["value"]):  # 1e3, 8.0
            read_as = f" is read as {found['value']}," if written[1] != found["value"] else " is"
            return (f"{full_key[1]}={written[1]}{read_as} not a whole number: write it without a point or an "
                    f"exponent, {full_key[1]}={found['value'][:-2]}.")
        if found["value"] == "null" and written:  # the text null, quoted: unquoted, null is no value
            return (f"{full_key[1]}={written[1]} is the text null, not YAML's null: write {full_key[1]}=null without "
                    f"quotes, where the key takes none; else {wanted}, e.g. {full_key[1]}="
                    f"{example(wanted, found['value'])}.")
        if found["value"] in ("None", "none", "nil"):  # Python's word, or another language's (YAML's Null is null)
            return (f"{full_key[1]}={found['value']} is not {wanted}: YAML writes no value as null, "
                    f"{full_key[1]}=null, where the key takes none; else {wanted}, e.g. "
                    f"{full_key[1]}={example(wanted, found['value'])}.")
        return (f"{full_key[1]}={found['value']} is not {wanted}: give {wanted}, e.g. "
                f"{full_key[1]}={example(wanted, found['value'])}.")
    if found := re.search(r"Interpolation key '(?P<key>[^']+)' not found", text):
        return (f"${{{found['key']}}}: the config has no key {found['key']}: an interpolation names a key by its full "
                f"path, e.g. ${{trainer.epochs}} ({advised('--cfg job')} shows them).")
    if "Recursive interpolation detected" in text:
        return "An interpolation refers to itself (key=${key}), directly or through other keys: give a value instead."
    if found := re.search(r"Unsupported interpolation type (?P<name>[\w.]+)", text):
        return (f"${{{found['name']}:...}}: there is no resolver {found['name']}: refer to a key of the config instead, "
                "e.g. ${trainer.epochs}.")
    if found := re.search(r"package '(?P<package>[^']+)' not found in config", text):  # --cfg job --package <node>
        package = found["package"]
        close = "" if "." in package else did_you_mean(package, key_names("Config"))  # a top-level node's name
        return f"--package {package}: the config has no such node.{close} {advised('--cfg job')} shows them all."
    if found := re.search(r"Cannot find primary config '(?P<name>[^']*)'", text):
        return (f"--config-name {found['name']}: there is no such config. mnist_exp's is config: leave out "
                "--config-name, or put your own beside it with --config-dir <dir> --config-name <name>.")
    if found := re.search(r"Error merging override (?P<key>[^=\s]+)=(?P<value>\S*)\s+"
                          r"Cannot convert '(?P<type>list|dict)' to string", text):
        return (f"{found['key']}={found['value']} is a {found['type']}, and {found['key']} takes one text: give one "
                f"value (a text with a comma in quotes, '{found['key']}=\"a,b\"').")
    if found := re.search(r"Error merging override (?P<key>[^=\s]+)=(?i:null)\s+field '[^']+' is not Optional", text):
        shown_by = "--cfg hydra" if found["key"].startswith("hydra.") else "--cfg job"
        return (f"{found['key']}=null: {found['key']} needs a value, not null ({advised(shown_by)} shows "
                "its default).")
    if found := re.search(r"Error merging override (?P<key>[^=\s]+)=(?P<value>\S*)\s+(?:Invalid value assigned: \w+ is "
                          r"not a ListConfig|Cannot merge DictConfig with ListConfig)", text):
        key, value = found["key"], found["value"]
        fixed_length = [form for end, form in FIXED_LENGTH_LISTS.items() if key.endswith(end)]
        bracketed = (f"[...] ({advised('--cfg job')} shows its default)" if value.startswith("{")
                     else fixed_length[0].format(value) if fixed_length else f"[{value}]")
        return f"{key}={value} is not a list: give one in brackets, e.g. {key}={bracketed}."
    if found := re.search(r"Error merging override (?P<key>[^=\s]+)=(?P<value>\S*)\s+Invalid type assigned: \w+ is not a "
                          r"subclass of (?P<type>\w+)", text):
        key, keys = found["key"], key_names(found["type"])
        hint = f": set one, e.g. {key}.{keys[0]}=..." if keys else "."
        return f"{key}={found['value']}: {key} holds keys ({', '.join(keys) or 'none'}), not a value{hint}"
    if (found := re.search(r"Invalid value '(?P<value>.*)', expected one of \[(?P<choices>.*)\]", text)) and full_key:
        choices, value = found["choices"].split(", "), found["value"]
        meant = OTHER_NAMES.get(value.lower())
        return (f"{full_key[1]}={value} is not one of: {', '.join(choices)}."
                + (f" Did you mean '{meant}'?" if meant in choices else did_you_mean(value, choices)))
    if re.search(r"^(?:multiprocessing\.context\.)?TimeoutError$", text, re.M):  # joblib's, without a message
        return ("A job ran past hydra.launcher.timeout, and joblib stopped the sweep: give a timeout in seconds longer "
                "than a job takes, or leave it out for none.")
    if re.search(r"\w+ does not support sweep type : INTERVAL_SWEEP", text):
        return ("interval(low,high) is sampled only by a search: add hydra/sweeper=optuna (or hparams_search=cnn_optuna), "
                "or sweep listed values, e.g. key=4,8 or range(4,9).")
    if found := (re.search(r"^yaml\.[\w.]+Error: (?P<context>.+)\n\s+in \"(?P<file>[^\"]+)\", line (?P<line>\d+), "
                           r"column \d+(?:\n(?P<problem>.+)\n\s+in \"[^\"]+\", line (?P<at>\d+))?", text, re.M)
                 or re.search(r"^yaml\.[\w.]+Error: (?P<context>.+)\n(?P<problem>[^\s].*)\n\s+in \"(?P<file>[^\"]+)\", "
                              r"line (?P<line>\d+)(?P<at>)", text, re.M)):  # libyaml's: the problem, then where
        problem = f": {found['problem']}" if found["problem"] else ""
        return (f"{found['file']}, line {found['at'] or found['line']}: not valid YAML ({found['context']}{problem}). "
                "Fix the file.")
    if found := re.search(r"In '(?P<file>experiment/[^']+)': Could not override '(?P<group>[\w/]+)@experiment\.", text):
        return missing_package_line(found["file"], f"the {found['group']} group")
    if "Traceback (most recent call last)" in text and (raised := re.findall(r"^([\w.]+(?:Error|Exception)): (.+)$", text, re.M)):
        message = f"{raised[-1][0]}: {raised[-1][1]}"  # the error a traceback ends in, not its first lines
        if "[Errno 28]" in message:
            message += " (the disk is full: free some space, or choose another place with hydra.run.dir=<dir>)"
        return message
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith(
        ("Error executing job with overrides", "Set the environment variable HYDRA_FULL_ERROR", "See https://"))]
    message = " ".join(lines[:3]) or "Failed (set HYDRA_FULL_ERROR=1 for the details)."
    if job := re.search(r"Error executing job with overrides: \[(.*)\]", text):  # a sweep's first failed job
        return f"A job of the sweep failed ({job[1].replace(chr(39), '')}): {message}"
    return message


def missing_package_line(file: str, what: str) -> str:
    """An experiment file whose keys Hydra puts under the group's name: it lacks its package line."""
    return (f"{file}.yaml sets {what} of the whole config, which needs '# @package _global_' as the file's first line: "
            "add it, as each experiment file has.")


def misspelt_option(message: str, options) -> str:
    """' Did you mean '--cfg'?' for argparse's "unrecognized arguments: --cfgg ...", or ''. Names are compared
    without the dashes every option shares, and a little closer than a value's: --sort is not --format."""
    found = re.match(r"unrecognized arguments: (--?[\w-]+)", message)
    by_name = {option.lstrip("-").lower(): option for option in options}
    close = get_close_matches(found[1].lstrip("-").lower(), by_name, n=1, cutoff=0.65) if found else []
    return f" Did you mean '{by_name[close[0]]}'?" if close else ""


LIST_EXAMPLES = {"a whole number": "[1,2]", "a number": "[0.9,0.99]", "true or false": "[true,false]"}


def example(wanted: str, given: str = "") -> str:
    """A value of the type wanted: the whole number nearest a number given (28.5: 28; 0.1: 1, not 0, which a
    fraction did not mean and is often out of range), else a plain one."""
    if wanted == "a whole number" and re.fullmatch(r"-?\d+\.\d+", given):
        return str(round(value := float(given)) or (0 if not value else 1 if value > 0 else -1))
    return {"a whole number": "1", "a number": "0.5", "true or false": "true"}.get(wanted, "...")
