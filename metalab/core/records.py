"""The record stream every experiment produces and every consumer reads.

An experiment is a generator ``run(config) -> Iterator[Record]``.  A record says which part of the
experiment it belongs to (``part``), which method produced it, its position ``step`` along the part's
x-axis, and a flat mapping of values (metrics and the settings that vary within the part).
``progress`` is the fraction of the whole run finished when the record was emitted, for progress bars
(a unit of work may report its own fraction there; :func:`stream_units` rescales it).
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
    step: int | float
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


@dataclasses.dataclass(frozen=True)
class Unit:
    """A unit of an experiment's work: ``work()`` yields its records; ``weight`` is its cost relative to
    the run's other units (the share of the progress bar it fills).  A record it yields may carry in
    ``progress`` the fraction of this unit done; :func:`stream_units` rescales it to the whole run."""

    work: Callable[[], Iterable[Record]]
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.weight > 0:
            raise ValueError(f"weight={self.weight!r} is not allowed: a unit's weight must be > 0")


def with_progress(records: Iterable[Record], start: float, end: float) -> Iterator[Record]:
    """Map each record's within-unit fraction ``p`` (None: not reported) to ``start + p (end - start)``;
    records without one get the last fraction seen, and the unit's last record gets ``end``."""
    previous, done = None, start
    for record in records:
        if record.progress is not None:
            done = start + min(max(float(record.progress), 0.0), 1.0) * (end - start)
        if previous is not None:
            yield previous
        previous = dataclasses.replace(record, progress=done)
    if previous is not None:
        yield dataclasses.replace(previous, progress=end)


def stream_units(units: Sequence[Unit]) -> Iterator[Record]:
    """Run the units in order; unit i covers the share ``weight_i / sum(weights)`` of the progress."""
    units = [u if isinstance(u, Unit) else Unit(u) for u in units]  # TRANSITION: removed once every experiment declares Units
    total = sum(unit.weight for unit in units)
    start = 0.0
    for unit in units:
        end = start + unit.weight / total
        yield from with_progress(unit.work(), start=start, end=min(end, 1.0))
        start = end
