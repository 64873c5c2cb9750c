"""The tensorboard logger (``logger=tensorboard``, the default): scalars, one hparams entry per run, its config
as text, image grids and pictures.

One run is one TensorBoard run: every event file goes straight into the run directory, so
`tensorboard --logdir outputs` lists each run once, with its curves, pictures and hparams.
The TEXT tab holds each run's composed config and overrides; CUSTOM SCALARS draws train and
validation loss in one chart, train and validation accuracy in another (``CURVES_LAYOUT``).
The figures themselves are drawn by ``mnist_exp.run.figures``.
"""

import shlex
import struct
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter

from mnist_exp.run import hparams as hparams_tab
from mnist_exp.run.tracking import Tracker

# The event file of a run's final record (its test, pictures, hparams): a resumed run that records them again
# replaces an earlier attempt's file, so TensorBoard shows them once.
FINAL_RECORD_SUFFIX = ".final"
# Tags are regular expressions; anchored, so "val/acc" does not also draw "hparams/val/acc".
CURVES_LAYOUT = {"curves": {"loss": ["Multiline", ["^train/loss$", "^val/loss$"]],
                            "accuracy": ["Multiline", ["^train/acc$", "^val/acc$"]]}}


class TensorBoardTracker(Tracker):
    """One run = one TensorBoard run: event files written directly into the run directory."""

    def __init__(self, run_dir: str | Path, purge_step: int | None = None):
        self.run_dir = Path(run_dir)
        # A resumed run's events hold its config already, unless it began without this tracker.
        self.recorded = purge_step is not None and purge_step > 0 and any(self.run_dir.glob("events.out.tfevents.*"))
        # purge_step: a resumed run hides the events the crashed run wrote after its checkpoint.
        self.writer, self.training_file = self.open_writer(purge_step=purge_step)
        self.earlier_final_records: list[Path] = []

    def open_writer(self, **options) -> tuple[SummaryWriter, Path]:
        """A writer into the run directory, and the event file it opened (TensorBoard keeps its name private)."""
        before = set(self.run_dir.glob("events.out.tfevents.*"))
        writer = SummaryWriter(log_dir=str(self.run_dir), **options)
        [opened] = set(self.run_dir.glob("events.out.tfevents.*")) - before
        return writer, opened

    @classmethod
    def for_run(cls, run_dir: Path, resumed_step: int | None) -> "TensorBoardTracker":
        """A resumed run drops the killed run's points after its checkpoint; a fresh run where an earlier attempt
        logged (a resumed sweep's failed job), all of them."""
        stale = resumed_step is None and any(run_dir.glob("events.out.tfevents.*"))
        return cls(run_dir, purge_step=resumed_step + 1 if resumed_step is not None else 0 if stale else None)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, float(value), step)

    def final_record(self) -> None:
        self.writer.close()
        self.earlier_final_records = list(self.run_dir.glob(f"events.out.tfevents.*{FINAL_RECORD_SUFFIX}"))
        while True:
            self.writer, final = self.open_writer(filename_suffix=FINAL_RECORD_SUFFIX)
            # TensorBoard reads a run's files in name order (<second>.<host>.<pid>.<writer number>), and a resumed
            # run's training file purges what was read before it from its first step on: in one second, writer 10's
            # final record would come before writer 9's training file. The next second's name comes after it.
            if final.name > self.training_file.name:
                return
            self.writer.close()
            final.unlink()
            time.sleep(1.01 - time.time() % 1)

    def run_record(self, config: dict, command: str) -> None:
        """The TEXT tab: the composed config as YAML and the command that ran it; the curves' layout."""
        if self.recorded:
            return
        self.writer.add_text("config", f"```yaml\n{yaml.safe_dump(config, sort_keys=False)}```", 0)
        self.writer.add_text("overrides", f"```\n{command}\n```", 0)
        self.writer.add_custom_scalars(CURVES_LAYOUT)

    def hparams(self, params: dict[str, Any], metrics: dict[str, float], step: int,
                columns: dict[str, bool] | None = None) -> None:
        """One hparams entry in this run's own directory; metrics appear as "hparams/<key>" columns.

        SummaryWriter.add_hparams would write into a new timestamped subdirectory (a second
        TensorBoard run), so the summaries go through this run's own file writer instead. The
        metrics get their own "hparams/" tags, at the run's final step, so they add no points to
        the training curves. ``columns``: the HPARAMS table's columns, for a single run (see
        mnist_exp.run.hparams); a sweep's job writes none.
        """
        for summary in hparams_tab.session_summaries(params):
            self.writer.file_writer.add_summary(summary)
        metric_values = {hparams_tab.METRIC_PREFIX + name: float(value) for name, value in metrics.items()}
        if columns is not None:
            values = hparams_tab.session_values({key: params[key] for key in columns})
            own = hparams_tab.experiment_summary({key: [values[key]] for key in columns}, list(metric_values),
                                                 differs={key for key, overridden in columns.items() if overridden})
            self.writer.file_writer.add_summary(own)
        self.scalars(metric_values, step=step)

    def images(self, tag: str, images: torch.Tensor, step: int = 0, nrow: int = 8) -> None:
        """uint8 [N, H, W] or float [N, 1, H, W] in 0..1 -> one grid image."""
        from torchvision.utils import make_grid  # importing torchvision takes ~2 s; only pay it when used

        images = images.detach().cpu()
        if images.dtype == torch.uint8:
            images = images.float() / 255
        if images.dim() == 3:
            images = images.unsqueeze(1)
        grid = make_grid(images, nrow=nrow, padding=2, pad_value=0.5)  # grey lines between the black digits
        self.writer.add_image(tag, grid, step)

    def image(self, tag: str, png: Path, step: int = 0) -> None:
        self.writer.file_writer.add_summary(picture_summary(tag, png.read_bytes()), step)

    def flush(self) -> None:
        self.writer.flush()
        for earlier in self.earlier_final_records:  # the final record is whole on disk (record.py flushes it)
            earlier.unlink(missing_ok=True)
        self.earlier_final_records = []

    def close(self, status: str = "completed") -> None:
        self.writer.close()

    def view(self) -> tuple[str, str]:
        return "TensorBoard", shlex.join(["tensorboard", "--logdir", str(self.run_dir)])


def picture_summary(tag: str, png: bytes) -> Summary:
    """The image event ``SummaryWriter.add_image`` writes for an RGB picture, holding the given PNG as it is (add_image
    would decode, resample and encode it again)."""
    width, height = struct.unpack(">II", png[16:24])  # from the IHDR chunk, which every PNG starts with
    picture = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=png)
    return Summary(value=[Summary.Value(tag=tag, image=picture)])
