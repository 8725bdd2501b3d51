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
    """One row of an experiment's output (see the module docstring).

    Attributes
    ----------
    part : str
        The experiment part the record belongs to.
    method : str
        The method that produced it.
    step : int or float
        Its position along the part's x-axis (0 for a part without one).
    values : Mapping[str, Any]
        Metrics and the settings that vary within the part.
    progress : float or None
        The fraction of the run (or, as a unit yields it, of the unit) done.

    Examples
    --------
    >>> Record("convergence", "meta_sp", 3, {"iteration": 3, "objective": 0.5}).as_row()
    {'part': 'convergence', 'method': 'meta_sp', 'step': 3, 'iteration': 3, 'objective': 0.5}
    """

    part: str
    method: str
    step: int | float
    values: Mapping[str, Any]
    progress: float | None = None

    def as_row(self) -> dict[str, Any]:
        return {"part": self.part, "method": self.method, "step": self.step, **self.values}


RECORD_COLUMNS = ["part", "method", "step"]


def collect(records: Iterable[Record]) -> pd.DataFrame:
    """Consume a record stream into a DataFrame with columns part, method, step, then the values.

    Parameters
    ----------
    records : iterable of Record

    Returns
    -------
    pandas.DataFrame
        One row per record; no rows (but the three columns) for an empty stream.

    Examples
    --------
    >>> records = [Record("rank", "mom", s, {"rank": s, "error": s / 8}) for s in (2, 4)]
    >>> frame = collect(records)
    >>> list(frame.columns), frame["error"].tolist()
    (['part', 'method', 'step', 'rank', 'error'], [0.25, 0.5])
    >>> list(collect([]).columns)
    ['part', 'method', 'step']
    """
    rows = [r.as_row() for r in records]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=RECORD_COLUMNS)
    return frame


@dataclasses.dataclass(frozen=True)
class Unit:
    """A unit of an experiment's work: ``work()`` yields its records; ``weight`` is its cost relative to
    the run's other units (the share of the progress bar it fills).  A record it yields may carry in
    ``progress`` the fraction of this unit done; :func:`stream_units` rescales it to the whole run.

    Attributes
    ----------
    work : callable returning an iterable of Record
        Called once, when the unit runs.
    weight : float
        The unit's relative cost (> 0).

    Raises
    ------
    ValueError
        When ``weight`` is not > 0.

    Examples
    --------
    >>> Unit(lambda: [], weight=2.0).weight
    2.0
    >>> Unit(lambda: [], weight=0)
    Traceback (most recent call last):
        ...
    ValueError: weight=0 is not allowed: a unit's weight must be > 0
    """

    work: Callable[[], Iterable[Record]]
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.weight > 0:
            raise ValueError(f"weight={self.weight!r} is not allowed: a unit's weight must be > 0")


def with_progress(records: Iterable[Record], start: float, end: float) -> Iterator[Record]:
    """Map each record's within-unit fraction ``p`` (None: not reported) to ``start + p (end - start)``;
    records without one get the last fraction seen, and the unit's last record gets ``end``.

    Parameters
    ----------
    records : iterable of Record
        One unit's records; ``progress`` (if set) is clipped to [0, 1].
    start, end : float
        The run's fractions done when the unit starts and ends.

    Returns
    -------
    Iterator[Record]
        The same records with ``progress`` the fraction of the whole run.

    Examples
    --------
    >>> unit = [Record("p", "m", 0, {}), Record("p", "m", 1, {}, progress=0.5), Record("p", "m", 2, {})]
    >>> [record.progress for record in with_progress(unit, start=0.5, end=1.0)]
    [0.5, 0.75, 1.0]
    """
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
    """Run the units in order; unit i covers the share ``weight_i / sum(weights)`` of the progress.

    Parameters
    ----------
    units : sequence of Unit

    Returns
    -------
    Iterator[Record]
        Every unit's records in order, ``progress`` rescaled by :func:`with_progress` to the whole run.

    Examples
    --------
    A unit of weight 1 then one of weight 3 (which reports being half done after its first record):

    >>> light = Unit(lambda: [Record("p", "light", 0, {})], weight=1)
    >>> heavy = Unit(lambda: [Record("p", "heavy", 0, {}, progress=0.5), Record("p", "heavy", 1, {})], weight=3)
    >>> [(record.method, record.progress) for record in stream_units([light, heavy])]
    [('light', 0.25), ('heavy', 0.625), ('heavy', 1.0)]
    """
    total = sum(unit.weight for unit in units)
    start, done = 0.0, 0.0
    for unit in units:
        done += unit.weight
        end = done / total  # cumulative, so the last unit ends at exactly 1 (a sum of shares can miss it by a rounding)
        yield from with_progress(unit.work(), start=start, end=end)
        start = end
