"""The record stream every experiment produces and every consumer reads.

An experiment is a generator ``run(config) -> Iterator[Record]``.  A record says which part of the
experiment it belongs to (``part``), which method produced it, at which step, and a flat mapping of
values (metrics and the settings that vary within the part).  ``progress`` is the fraction of the
whole run finished when the record was emitted, for progress bars.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import pandas as pd


@dataclasses.dataclass(frozen=True)
class Record:
    part: str
    method: str
    step: int
    values: Mapping[str, Any]
    progress: float | None = None

    def as_row(self) -> dict[str, Any]:
        return {"part": self.part, "method": self.method, "step": self.step, **self.values}


RECORD_COLUMNS = ["part", "method", "step"]


def collect(records: Iterable[Record]) -> pd.DataFrame:
    """Consume a record stream into a DataFrame with columns part, method, step, then the values."""
    rows = [r.as_row() for r in records]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=RECORD_COLUMNS)
    return frame


def with_progress(records: Iterable[Record], start: float, end: float) -> Iterator[Record]:
    """Stamp a unit of work's records with progress ``start``, and its last record with ``end``."""
    previous = None
    for record in records:
        if previous is not None:
            yield dataclasses.replace(previous, progress=start)
        previous = record
    if previous is not None:
        yield dataclasses.replace(previous, progress=end)


def stream_units(units: Sequence[Callable[[], Iterable[Record]]]) -> Iterator[Record]:
    """Run the units of work of an experiment in order, stamping unit i's records with progress
    between i/n and (i+1)/n."""
    for index, unit in enumerate(units):
        yield from with_progress(unit(), start=index / len(units), end=(index + 1) / len(units))
