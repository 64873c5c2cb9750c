"""TensorBoard's HPARAMS tab: each run's values, and which columns the table shows.

Each run writes its session: the values of its config keys (booleans as booleans) and its status;
its metrics are ``hparams/<metric>`` scalars at its final step. The table's columns come from an
experiment summary. TensorBoard takes the first one it finds for the whole table, puts the keys
marked as differing first and shows five columns by default, so:

- a sweep's directory gets one when the sweep ends (``write_sweep_experiment``): the keys whose
  values differ between its jobs (marked so: they come first), then the keys only some jobs have.
  Keys equal in every job are left out (each run's TEXT tab holds its whole config). Its jobs write
  none: while a sweep runs, TensorBoard builds the columns from all runs, the differing keys first.
- a single run gets one in its own directory: the keys its overrides set (marked as differing from
  the defaults: they come first), then what every run trains with (``HEADLINE_KEYS``). Several
  single runs in one TensorBoard share the first one's.
"""

from pathlib import Path
from typing import Any

from google.protobuf import struct_pb2
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from torch.utils.tensorboard.writer import FileWriter

from mnist_exp.runs import split_override

METRIC_PREFIX = "hparams/"
HEADLINE_KEYS = ("model.name", "optimizer.name", "optimizer.lr", "scheduler.name", "augment.name")
SWEEP_EXPERIMENT_SUFFIX = ".hparams"  # the sweep directory's event file, replaced when the sweep ends again
VALUE_TYPES = {"bool_value": api_pb2.DATA_TYPE_BOOL, "number_value": api_pb2.DATA_TYPE_FLOAT64,
               "string_value": api_pb2.DATA_TYPE_STRING}


def summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
    """One hparams plugin summary, as TensorBoard's own hparams API writes it."""
    result = Summary()
    result.value.add(tag=tag, metadata=metadata.create_summary_metadata(data), tensor=metadata.NULL_TENSOR)
    return result


def session_values(params: dict[str, Any]) -> dict[str, struct_pb2.Value]:
    """Each value as the plugin holds it: booleans as booleans (checked first: a bool is an int), None and lists as text."""
    start = plugin_data_pb2.SessionStartInfo()
    for name, value in params.items():
        if isinstance(value, bool):
            start.hparams[name].bool_value = value
        elif isinstance(value, (int, float)):
            start.hparams[name].number_value = value
        else:
            start.hparams[name].string_value = value if isinstance(value, str) else str(value)
    return dict(start.hparams)


def session_summaries(params: dict[str, Any]) -> list[Summary]:
    """The run's session: its start with the values, and its end."""
    start = plugin_data_pb2.SessionStartInfo(hparams=session_values(params))
    end = plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS)
    return [summary(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=start)),
            summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end))]


def experiment_summary(values: dict[str, list], metric_tags: list[str], differs: set[str]) -> Summary:
    """The table's columns: ``values`` maps each key to the protobuf Values the runs have; ``differs`` go first."""
    infos = []
    for name, seen in values.items():
        kinds = {value.WhichOneof("kind") for value in seen}
        info = api_pb2.HParamInfo(name=name, differs=name in differs)
        if len(kinds) == 1:  # one type: its domain, so the tab can filter on the values
            info.type = VALUE_TYPES[kinds.pop()]
            distinct = {value.SerializeToString(): value for value in seen}
            info.domain_discrete.values.extend(distinct.values())
        infos.append(info)
    experiment = api_pb2.Experiment(hparam_infos=infos, metric_infos=[
        api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag)) for tag in metric_tags])
    return summary(metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment))


def single_run_columns(params: dict[str, Any], overrides: list[str]) -> dict[str, bool]:
    """A single run's columns, each with whether an override set it (``model=mlp`` sets model.name): those go first."""
    overridden = []
    for override in overrides:
        key = split_override(override)[0]
        overridden.append(key if key in params else f"{key}.name")
    return {key: key in overridden for key in dict.fromkeys([*overridden, *HEADLINE_KEYS]) if key in params}


def run_session(run_dir: Path) -> tuple[dict | None, list[str]]:
    """The latest session values a run's event files hold (None if none), and its ``hparams/`` metric tags."""
    values, metric_tags = None, []
    for path in sorted(Path(run_dir).glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag == metadata.SESSION_START_INFO_TAG:
                    values = dict(metadata.parse_session_start_info_plugin_data(
                        value.metadata.plugin_data.content).hparams)
                elif value.tag.startswith(METRIC_PREFIX) and value.tag not in metric_tags:
                    metric_tags.append(value.tag)
    return values, metric_tags


def write_sweep_experiment(sweep_dir: Path) -> list[str]:
    """The sweep directory's experiment summary: the keys that differ between its jobs; returns them."""
    sweep_dir = Path(sweep_dir)
    sessions, metric_tags = [], []
    for run_dir in sorted(path for path in sweep_dir.iterdir() if path.is_dir()):
        values, tags = run_session(run_dir)
        if values is not None:
            sessions.append(values)
            metric_tags += [tag for tag in tags if tag not in metric_tags]
    columns = {key: [values[key] for values in sessions if key in values]
               for key in sorted({key for values in sessions for key in values})}
    # First the keys whose values differ, then those only some jobs have (mlp's model.hidden in a sweep over models).
    differs = {key for key, seen in columns.items() if len({value.SerializeToString() for value in seen}) > 1}
    some = {key for key, seen in columns.items() if len(seen) < len(sessions)}
    for old in sweep_dir.glob(f"events.out.tfevents.*{SWEEP_EXPERIMENT_SUFFIX}"):
        old.unlink()
    if len(sessions) > 1:
        writer = FileWriter(str(sweep_dir), filename_suffix=SWEEP_EXPERIMENT_SUFFIX)
        writer.add_summary(experiment_summary({key: columns[key] for key in columns if key in differs | some},
                                              metric_tags, differs))
        writer.close()
    return [key for key in columns if key in differs] + [key for key in columns if key in some - differs]
