"""What a run's trackers are told: ``Tracker``'s calls, made of every tracker the run's ``logger`` names
(``Trackers``). The trackers themselves, and how they are chosen: ``mnist_exp.run.loggers``."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


@dataclass
class TrackedRun:
    """What a tracker needs to know of its run."""

    run_dir: Path
    resumed_step: int | None  # the step a resumed run continues after; None: a fresh run
    sweep_dir: Path | None  # the sweep's directory, for a sweep's job


class Tracker:
    """The calls a run makes of its trackers; a tracker overrides those its store records."""

    def run_record(self, config: dict, command: str) -> None:
        """The run's composed config and the command that ran it, where this tracker's record of the run is new: a
        fresh run's, or a resumed run's that began without this tracker (or in another store)."""

    def scalars(self, values: dict[str, float], step: int) -> None: ...

    def final_record(self) -> None:
        """The run's final record follows: its test's scalars, pictures and hparams, once the training is over, then
        a flush that has it whole on disk. A run killed while recording them, then resumed, records them again."""

    def hparams(self, params: dict[str, Any], metrics: dict[str, float], step: int,
                columns: dict[str, bool] | None = None) -> None:
        """The run's hyperparameters with its final metrics (``columns``: see mnist_exp.run.hparams)."""

    def images(self, tag: str, images: torch.Tensor, step: int = 0, nrow: int = 8) -> None:
        """A grid of images: uint8 [N, H, W], or [N, C, H, W] uint8 or float in 0..1."""

    def image(self, tag: str, png: Path, step: int = 0) -> None:
        """A picture (a figure), already written as an RGB PNG file: each tracker stores those bytes as they are."""

    def flush(self) -> None: ...

    def close(self, status: str = "completed") -> None:
        """The run ended with this ``Status`` value; after metrics.json is written, where it completed."""

    def view(self) -> tuple[str, str] | None:
        """(the store's name, the command that shows this run's record) for the run's last lines, if it has one."""
        return None


class Trackers:
    """The run's trackers as one: each call of ``Tracker`` goes to every one of them; ``close`` only once."""

    def __init__(self, trackers: list[Tracker]):
        self.trackers = list(trackers)
        self.closed = False

    def __getattr__(self, method: str):
        if not hasattr(Tracker, method):
            raise AttributeError(method)

        def each(*args, **kwargs) -> None:
            for tracker in self.trackers:
                getattr(tracker, method)(*args, **kwargs)

        return each

    def close(self, status: str = "completed") -> None:
        if not self.closed:
            self.closed = True
            for tracker in self.trackers:
                tracker.close(status)

    def views(self) -> list[tuple[str, str]]:
        return [view for view in (tracker.view() for tracker in self.trackers) if view is not None]
