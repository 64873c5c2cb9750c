"""The logger group: where a run's curves, pictures and record go (``logger=tensorboard``, the default;
``logger=csv``, ``logger=mlflow``, or several: ``logger=[tensorboard,mlflow]``).

Each option of ``conf/logger/`` is a node under ``logger.<name>``, so several sit side by side, as in
lightning-hydra-template; the node's keys are the builder's config keys (``logger.mlflow.tracking_uri``).
A run's trackers are built from ``LOGGERS`` by those names, and every tracker gets every call of
``Tracker``: each records what its store holds and ignores the rest. Add your own with
``@LOGGERS.register("name")``: a function of the run (``TrackedRun``) and its keys that returns a ``Tracker``.
"""

import importlib.util
from collections.abc import Mapping
from typing import Any

from mnist_exp.errors import UserError, did_you_mean
from mnist_exp.registry import LOGGERS, config_parameters
from mnist_exp.run.tracking import TrackedRun, Tracker, Trackers


def open_trackers(logger: dict[str, dict], run: TrackedRun) -> Trackers:
    """The trackers ``logger`` names, in the order it lists them."""
    return Trackers([LOGGERS.build({"name": name, **(settings or {})}, run) for name, settings in logger.items()])


def check_loggers(logger: Mapping[str, Any]) -> None:
    """Before anything is built: every name a logger, each a node of its keys, MLflow installed where it is asked for."""
    for name, settings in logger.items():
        keys = [f"logger.{name}.{key}" for key in config_parameters(LOGGERS.get(name))]  # an unknown name: refused
        if settings is None:
            others = [other for other, node in logger.items() if other != name and node is not None]
            raise UserError(f"logger.{name}=null: leave a logger out by choosing the others, logger=[{','.join(others)}]"
                            + ("" if others else " for none") + ".")
        if not isinstance(settings, Mapping):
            raise UserError(f"logger.{name}={settings}: logger.{name} holds the {name} logger's keys "
                            f"({', '.join(keys) or 'it has none'}), not a value; loggers are chosen with "
                            f"logger=[...], e.g. logger=[tensorboard,csv].")
        taken = config_parameters(LOGGERS.get(name))
        if unknown := [f"logger.{name}.{key}" for key in settings if key not in taken]:
            raise UserError(f"Unknown key '{unknown[0]}'." + (f"{did_you_mean(unknown[0], keys)} The keys of "
                            f"logger.{name}: {', '.join(taken)}." if taken else f" The {name} logger has no keys."))
        if missing := [key for key in taken if key not in settings]:  # a node made by +logger.<name>.<key>=...
            raise UserError(f"logger.{name} has {', '.join(settings)} without {', '.join(missing)}: choose the {name} "
                            f"logger, which brings all its keys, then set them, e.g. logger=[tensorboard,{name}] "
                            f"{keys[0]}=...")
    if "mlflow" in logger and importlib.util.find_spec("mlflow") is None:
        raise UserError("logger=mlflow needs MLflow, which is not installed: pip install -e '.[mlflow]' "
                        "(or pip install mlflow), or choose another logger.")
    if "mlflow" in logger:
        from mnist_exp.run.mlflow_tracking import check_store

        check_store(logger["mlflow"]["tracking_uri"])
        if logger["mlflow"]["experiment_name"] is not None and not str(logger["mlflow"]["experiment_name"]).strip():
            raise UserError("logger.mlflow.experiment_name is empty: give the experiment a name, or null for the "
                            "sweep's directory (a sweep's jobs) or mnist_exp (single runs).")


# Each builder imports its tracker: a run pays for the libraries of the loggers it uses (config.py imports this).
@LOGGERS.register("tensorboard")
def tensorboard(run: TrackedRun) -> Tracker:
    """Event files in the run directory: curves, the HPARAMS entry, the config as text, the pictures."""
    from mnist_exp.run.tensorboard import TensorBoardTracker

    return TensorBoardTracker.for_run(run.run_dir, run.resumed_step)


@LOGGERS.register("csv")
def csv(run: TrackedRun) -> Tracker:
    """metrics.csv in the run directory: a row per step, a column per scalar (pandas.read_csv reads it)."""
    from mnist_exp.run.csv_metrics import CsvTracker

    return CsvTracker(run.run_dir / "metrics.csv", run.resumed_step)


@LOGGERS.register("mlflow")
def mlflow(run: TrackedRun, tracking_uri: str = "sqlite:///outputs/mlflow.db",
           experiment_name: str | None = None) -> Tracker:
    """An MLflow run: params, scalars, pictures, metrics.json and the config, its status. experiment_name null:
    a sweep's directory for its jobs, "mnist_exp" for single runs."""
    from mnist_exp.run.mlflow_tracking import MlflowTracker

    # The sweep's directory however the command spells it (a resume may give it from elsewhere, or absolute): one
    # experiment for all its jobs, where a resumed job finds its own MLflow run.
    name = experiment_name or (str(run.sweep_dir.resolve()) if run.sweep_dir is not None else "mnist_exp")
    return MlflowTracker(run, tracking_uri, name)
