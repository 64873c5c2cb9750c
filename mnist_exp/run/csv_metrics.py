"""The csv logger (``logger=csv``): every scalar of a run in ``metrics.csv``, beside its ``metrics.json``.

One row per step, one column per tag (``step,train/loss,train/acc,lr,val/loss,...``), empty where a tag has no point
at that step, as Lightning's CSVLogger writes it: ``pandas.read_csv(path)`` reads it, and
``df.dropna(subset=["val/acc"])`` keeps the epochs' rows. The file is rewritten whole at every flush (once an epoch),
so it is never half written; a resumed run keeps the rows up to its checkpoint's step.
"""

import csv
import math
from pathlib import Path

from mnist_exp.errors import UserError, first_line
from mnist_exp.run.tracking import Tracker
from mnist_exp.runs import atomic_file


class CsvTracker(Tracker):
    def __init__(self, path: Path, resumed_step: int | None):
        self.path = path
        self.rows: dict[int, dict[str, float]] = {}
        if resumed_step is not None and path.exists():  # a fresh run starts a new file, even over an earlier attempt
            self.rows = {step: row for step, row in read_rows(path).items() if step <= resumed_step}

    def scalars(self, values: dict[str, float], step: int) -> None:
        self.rows.setdefault(step, {}).update((tag, float(value)) for tag, value in values.items())

    def flush(self) -> None:
        columns = list(dict.fromkeys(tag for row in self.rows.values() for tag in row))
        with atomic_file(self.path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["step", *columns])
            for step in sorted(self.rows):
                row = self.rows[step]
                writer.writerow([step, *(format_value(row[tag]) if tag in row else "" for tag in columns)])

    def close(self, status: str = "completed") -> None:
        self.flush()


def format_value(value: float) -> str:
    return repr(value) if math.isfinite(value) else str(value).lower()  # nan, inf: as pandas reads them


def read_rows(path: Path) -> dict[int, dict[str, float]]:
    """The rows a run wrote; a file of another form is refused, not half-used (a resume would write over it)."""
    try:
        with path.open(newline="") as f:
            return {int(row.pop("step")): {tag: float(value) for tag, value in row.items() if value != ""}
                    for row in csv.DictReader(f)}
    except (OSError, UnicodeError, csv.Error, KeyError, TypeError, ValueError) as error:
        said = "it has no step column" if isinstance(error, KeyError) else first_line(error)
        raise UserError(f"{path} is not the metrics.csv this run writes ({said}): move it away, and the resumed run "
                        "starts a new one.") from None
