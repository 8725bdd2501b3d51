"""The experiment contract: what every paper's lab declares, and the one ``run`` loop they share.

An experiment is an :class:`Experiment` value built from four declarations:

* a :class:`Paper` block (title, authors, venue, arXiv id, the question, the claims the lab tests),
  which Home, the page titles, ``metalab list`` and the notebooks read, so it is written once;
* a :class:`~metalab.core.Config` class with ``quick`` and ``paper`` presets;
* its :class:`Part` s, in the order they run; each names the value columns its records carry and its
  x-axis column ``x``: a record's ``step`` is its position along that axis (``step == values[x]``),
  or 0 for a part without one (one record per method, e.g. a final accuracy);
* a ``figures(frame)`` function that draws from the records alone;
* an ``estimate(config)`` function: the run's peak memory and time before it starts
  (:mod:`metalab.core.cost`), which the dashboard holds to its budget.

A part builds its work as a list of :class:`Unit` s. A unit is a callable yielding records and a
``weight`` (its cost relative to the other units, for the progress bar); a record a unit yields may
carry the fraction of *that unit* done in ``progress``, which :func:`~metalab.core.records.stream_units`
turns into the fraction of the whole run. State shared between parts (trained models, loaded data)
lives in a typed context object the experiment's ``context(config)`` factory builds once per run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pandas as pd

from metalab.core import Config, Record, seed_everything
from metalab.core.cost import Cost
from metalab.core.records import Unit, stream_units

__all__ = ["Experiment", "Paper", "Part", "Unit"]


@dataclasses.dataclass(frozen=True)
class Paper:
    """Bibliographic and scientific metadata of the paper an experiment reproduces.

    Examples
    --------
    >>> paper = Paper(
    ...     title="A Paper", authors="A. Author and B. Author", venue="NeurIPS", year=2024, arxiv="2409.02708",
    ...     question="Does it work?", claims=("It works.", "It is fast."), lab="Run it.",
    ... )
    >>> paper.citation
    'A. Author and B. Author, NeurIPS 2024 · arXiv:2409.02708'
    >>> paper.url
    'https://arxiv.org/abs/2409.02708'
    >>> paper.markdown().splitlines()[0], paper.markdown().splitlines()[-1]
    ('# A Paper', '2. It is fast.')
    """

    title: str
    authors: str
    venue: str
    year: int
    arxiv: str
    question: str
    claims: tuple[str, ...]
    #: one sentence: what the lab lets a user do (the Home card)
    lab: str

    @property
    def citation(self) -> str:
        """``Authors, Venue Year · arXiv:id``"""
        text = f"{self.authors}, {self.venue} {self.year}"
        return f"{text} · arXiv:{self.arxiv}" if self.arxiv else text

    @property
    def url(self) -> str:
        return f"https://arxiv.org/abs/{self.arxiv}" if self.arxiv else ""

    def markdown(self, heading: str = "#") -> str:
        """Title, citation, question and claims as Markdown (a notebook's first cell, a page header)."""
        claims = "\n".join(f"{number}. {claim}" for number, claim in enumerate(self.claims, 1))
        link = f"[{self.citation}]({self.url})" if self.url else self.citation
        return (
            f"{heading} {self.title}\n\n*{link}*\n\n**The question.** {self.question}\n\n"
            f"**The claims this lab tests.**\n\n{claims}\n"
        )


@dataclasses.dataclass(frozen=True)
class Part:
    """One figure's worth of an experiment: its records' columns and how to build its units of work.

    ``units(config, context)`` returns the part's units; ``x`` is the value column that ``step``
    repeats (None: no x-axis, ``step`` is 0); ``columns`` are the value columns every record carries;
    ``volatile`` names those among them that measure the machine rather than the method (wall-clock
    seconds, resident memory), which differ between two runs of the same seed.

    Examples
    --------
    >>> part = Part("rank", x="rank", columns=("rank", "error"), units=lambda config, context: [])
    >>> part.check_record(Record("rank", "mom", 2, {"rank": 2, "error": 0.1})) is None
    True
    >>> part.check_record(Record("rank", "mom", 3, {"rank": 2, "error": 0.1}))
    Traceback (most recent call last):
        ...
    ValueError: part 'rank': step=3 but its x column 'rank' is 2
    """

    name: str
    x: str | None
    columns: tuple[str, ...]
    units: Callable[[Any, Any], Sequence[Unit]]
    description: str = ""
    volatile: tuple[str, ...] = ()

    def check_record(self, record: Record) -> None:
        """Raise ValueError when ``record`` breaks this part's declaration (the contract test uses it)."""
        missing = [c for c in self.columns if c not in record.values]
        if record.part != self.name or missing:
            raise ValueError(f"record {record} of part {self.name!r} lacks the declared columns {missing}")
        expected = 0 if self.x is None else record.values.get(self.x)
        if record.step != expected:
            raise ValueError(f"part {self.name!r}: step={record.step!r} but its x column {self.x!r} is {expected!r}")


#: default drift tolerances: |fresh - stored| <= atol + rtol |stored| for every non-volatile number
DRIFT_RTOL, DRIFT_ATOL = 1e-4, 1e-7


@dataclasses.dataclass(frozen=True)
class DriftSlice:
    """What a drift check re-runs of a stored run: the ``units`` (names ``<part>/<i>``) of ``config``.

    With ``prefix``, ``config`` is the stored config at a smaller budget (fewer meta-iterations) under which
    those units stream the first records of the stored ones, so the check compares the fresh records with
    the stored run's first records of each unit.  A unit's numbers must agree to
    ``|fresh - stored| <= atol + rtol |stored|``: training on another CPU drifts in the last digits, so a
    slice that trains states a looser tolerance.
    """

    config: Config
    units: tuple[str, ...]
    prefix: bool = False
    rtol: float = DRIFT_RTOL
    atol: float = DRIFT_ATOL


def _no_context(config: Config) -> None:
    return None


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A paper's lab: metadata, settings, parts and figures; :meth:`run` streams its records.

    Examples
    --------
    A one-part experiment whose single unit counts to ``n``:

    >>> import dataclasses
    >>> from metalab.core import param
    >>> @dataclasses.dataclass(frozen=True)
    ... class CountConfig(Config):
    ...     n: int = param(3, ge=1)
    ...     parts: tuple[str, ...] = param(("count",), choices=("count",))
    ...     seed: int = param(0, ge=0)
    ...     presets = {"quick": {"n": 2}}
    >>> def count_units(config, context):
    ...     return [Unit(lambda: (Record("count", "demo", i, {"i": i}) for i in range(config.n)))]
    >>> paper = Paper("A Paper", "A. Author", "NeurIPS", 2024, "", "Does it count?", ("It counts.",), "Count.")
    >>> counting = Experiment(
    ...     "counting", paper, CountConfig, (Part("count", x="i", columns=("i",), units=count_units),),
    ...     figures=lambda frame: {}, estimate=lambda config: Cost(1e3 * config.n, 1e-6 * config.n),
    ... )
    >>> [(record.step, record.progress) for record in counting.run()]  # the quick preset: n = 2
    [(0, 0.0), (1, 1.0)]
    >>> len(list(counting.run(CountConfig(n=4)))), counting.part_names
    (4, ('count',))
    """

    name: str
    paper: Paper
    config: type[Config]
    parts: tuple[Part, ...]
    figures: Callable[[pd.DataFrame], dict[str, Any]]
    #: ``estimate(config)``: the run's :class:`~metalab.core.cost.Cost` before it starts
    estimate: Callable[[Any], Cost]
    #: ``context(config)``: the typed state the parts share during one run (None when they share none)
    context: Callable[[Any], Any] = _no_context
    #: what the ``paper`` preset keeps of the published regime, what it scales down, and why
    paper_scale: str = ""
    #: ``drift_slice(config)``: what a drift check re-runs of a stored run of ``config`` (None: the first
    #: unit of every part at the stored config)
    drift_slice: Callable[[Any], DriftSlice] | None = None

    @property
    def part_names(self) -> tuple[str, ...]:
        return tuple(part.name for part in self.parts)

    def part(self, name: str) -> Part:
        """The part called ``name``.

        Raises
        ------
        ValueError
            When the experiment has no such part (the message lists its parts).
        """
        for part in self.parts:
            if part.name == name:
                return part
        raise ValueError(f"part={name!r} is not a part of {self.name}: one of {', '.join(self.part_names)}")

    def run(self, config: Config | None = None) -> Iterator[Record]:
        """Stream the records of the selected parts (``config.parts``) in declaration order; each record's
        ``progress`` is the fraction of the whole run done when it was emitted.

        Seeds Python, NumPy and torch with ``config.seed`` and builds ``context(config)`` once, before the
        first unit runs (see the class docstring for an example).

        Parameters
        ----------
        config : Config, optional
            An instance of ``self.config`` with ``parts`` and ``seed`` fields; None for the quick preset.

        Returns
        -------
        Iterator[Record]
            The records, lazily: nothing runs until the first one is requested.
        """
        config = config if config is not None else self.config.preset("quick")
        seed_everything(config.seed)
        context = self.context(config)
        units = [unit for part in self.parts if part.name in config.parts for unit in part.units(config, context)]
        yield from stream_units(units)
