"""Unknown keys that Hydra names without a close match: a key of one of Hydra's own groups (a launcher's, a
sampler's, a pruner's option, which have no schema), a logger's key. Each says which option or logger has it."""

from difflib import get_close_matches

from hydra.core.config_store import ConfigStore

from mnist_exp.errors import did_you_mean


def option_with_key(full_key: str) -> str:
    """' hydra/launcher=joblib has n_jobs: choose it.' for a key of another option of a Hydra group; for a key of
    one at the top of the config, where it goes; or ''."""
    parts = full_key.split(".")
    if len(parts) == 1:  # custom_search_space=...: a sweeper's or launcher's key, given without its place
        said = [f"hydra.{group}.{full_key} (hydra/{group}={' or '.join(names)})"
                for group, options in hydra_group_options([]).items()
                if isinstance(options, dict) and (names := options_having(options, full_key))]
        return f" It is a key of Hydra's: {' or '.join(said)}." if said else ""
    if len(parts) < 3 or parts[0] != "hydra":
        return ""
    having = options_having(hydra_group_options(parts[1:-1]), parts[-1])
    others = f" (or {', '.join(having[1:])})" if len(having) > 1 else ""
    return f" hydra/{'/'.join(parts[1:-1])}={having[0]} has {parts[-1]}: choose it{others}." if having else ""


def unknown_option_key(full_key: str) -> str:
    """A key of a schema-less Hydra group's option (a sampler's, a pruner's); '' where the path is no such group."""
    *path, key = full_key.split(".")
    options = hydra_group_options(path[1:])
    keys = sorted({name for entry in options.values() if hasattr(entry, "node") for name in entry.node} - {"_target_"})
    if not keys or (elsewhere := option_with_key(full_key)):  # another option has it: that option
        return f"{full_key} is not a key of the {path[-1]} chosen.{elsewhere}" if keys else ""
    close, group = get_close_matches(key, keys, n=1, cutoff=0.6), f"hydra/{'/'.join(path[1:])}"
    suggestion = (f" Did you mean '{'.'.join(path)}.{close[0]}' (a key of {group}="  # the option that has it
                  f"{' or '.join(options_having(options, close[0]))})?" if close else "")
    return f"Unknown key '{full_key}'.{suggestion} The keys of {group}'s options: {', '.join(keys)}."


def hydra_group_options(path: list[str]) -> dict:
    """The ConfigStore entries of Hydra's group hydra/<path> ({} where there is none)."""
    options = ConfigStore.instance().repo.get("hydra", {})
    for part in path:
        options = options.get(part, {}) if isinstance(options, dict) else {}
    return options


def options_having(options: dict, key: str) -> list[str]:
    """The options of a Hydra group (its ConfigStore entries) whose config has ``key``."""
    return [name.removesuffix(".yaml") for name, entry in options.items()
            if hasattr(entry, "node") and key in entry.node]


def unknown_logger_key(key: str, known: list[str]) -> str:
    """``logger.<key>`` that no chosen logger has. ``known``: every logger's name and its keys
    ('mlflow.tracking_uri')."""
    loggers = [name for name in known if "." not in name]
    name, dot, _ = key.partition(".")
    if dot and name in loggers:
        setting, keys = key.partition(".")[2], [k.partition(".")[2] for k in known if k.startswith(f"{name}.")]
        if setting.split(".")[0] not in keys:
            return (f"logger.{key}: the {name} logger has no key '{setting}'.{did_you_mean(setting, keys)} "
                    f"Its keys: {', '.join(keys) or 'none'}.")
        return (f"logger.{key} is a key of the {name} logger, which this run does not use: choose it too, "
                f"e.g. logger=[tensorboard,{name}] logger.{key}=...")
    if dot:
        return f"logger.{key}: there is no logger '{name}'.{did_you_mean(name, loggers)} Loggers: {', '.join(loggers)}."
    if name in loggers:
        return (f"logger.{key}: the {name} logger is not chosen: choose it with the others, e.g. "
                f"logger=[tensorboard,{name}].")
    settings = {known_key.partition(".")[2]: known_key for known_key in known if "." in known_key}
    close = get_close_matches(name, settings, n=1, cutoff=0.6)
    suggestion = f" Did you mean 'logger.{settings[close[0]]}'?" if close else ""
    return f"Unknown key 'logger.{key}': a logger's keys go under its name (logger.<name>.<key>).{suggestion}"
