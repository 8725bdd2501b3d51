"""The meta-training loop every learner shares: sample a batch, take a step, report, now and then evaluate.

Whatever the learner (MAML and its relatives, MLSR, meta-RL, ...), meta-training is the same loop::

    for i = 1..N:
        batch ← sample(i)                         (a meta-batch of tasks, or None)
        stats ← step(batch)                       (one meta-update; stats[loss] is its loss)
        if stats[loss] is NaN or ±inf:  yield the row with status "non_finite" and stop
        if i is a multiple of k, or i = N:  evaluation ← evaluate(i)
        yield one row: i, N, the loss, the status, the seconds, the fraction i / N done

:func:`meta_training` is that loop as a generator of :class:`Iteration` rows.  What differs between
learners (how a batch is drawn, what a step computes, what an evaluation measures) comes in as
functions; what they share (counting, timing, the stop on a diverged loss, when to evaluate, the
fraction done that a progress bar reads) is written once here.  A learner that wants an evaluation
before the first step calls its own ``evaluate(0)`` before the loop.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from metalab.core.checks import check_int

#: the status of a row whose loss came out NaN or infinite (the loop stops after it)
NON_FINITE = "non_finite"


@dataclasses.dataclass(frozen=True)
class Iteration:
    """One meta-iteration of :func:`meta_training`.

    ``iteration`` i (1-based) of ``iterations`` N; ``loss``: the step's loss; ``status``: ``"ok"``, the
    step's own status when it reported another (e.g. a meta-gradient zeroed for being non-finite), or
    ``"non_finite"`` when the loss itself was (the last row then); ``seconds``: the time this
    iteration's sample and step took, ``elapsed``: since the loop started (evaluations excluded);
    ``stats``: everything the step returned; ``evaluation``: what ``evaluate(i)`` returned on an
    evaluation iteration, else None.
    """

    iteration: int
    iterations: int
    loss: float
    status: str
    seconds: float
    elapsed: float
    stats: Mapping[str, Any]
    evaluation: Any = None

    @property
    def fraction(self) -> float:
        """The fraction of the run done after this iteration, i / N."""
        return self.iteration / self.iterations

    def as_dict(self) -> dict[str, Any]:
        """One flat row: the step's stats with the loop's ``iteration``, ``status``, ``seconds`` and ``fraction``."""
        return {
            **self.stats,
            "iteration": self.iteration,
            "status": self.status,
            "seconds": self.seconds,
            "fraction": self.fraction,
        }


def _no_batch(iteration: int) -> None:
    return None


def meta_training(
    step: Callable[[Any], Mapping[str, Any]],
    iterations: int,
    *,
    sample: Callable[[int], Any] = _no_batch,
    loss: str = "loss",
    evaluate: Callable[[int], Any] | None = None,
    evaluate_every: int = 0,
) -> Iterator[Iteration]:
    """Run ``iterations`` meta-iterations lazily, one :class:`Iteration` row per iteration.

    Parameters
    ----------
    step : callable
        ``step(batch) -> stats``: one meta-update on the batch; ``stats`` is a mapping holding the
        step's loss under the key ``loss`` and, optionally, its own ``"status"``.
    iterations : int
        N >= 1, the number of meta-iterations.
    sample : callable, optional
        ``sample(i) -> batch`` for iteration i (1-based); by default every step gets ``None`` (a
        learner that draws its own batch).
    loss : str
        The key of ``stats`` that holds the loss (a number, or a one-element tensor).
    evaluate : callable, optional
        ``evaluate(i)``, called after the step of every ``evaluate_every``-th iteration and after the
        last one (not after a non-finite loss); its result is the row's ``evaluation``.
    evaluate_every : int
        k >= 0; 0 evaluates only after the last iteration (when ``evaluate`` is given).

    Returns
    -------
    Iterator[Iteration]
        One row per iteration done.  A non-finite loss ends the run early: its row, the last, has
        ``status="non_finite"`` and a ``fraction`` below 1.  Arguments are checked at call time,
        before the first step runs.
    """
    iterations = check_int("iterations", iterations, 1)
    evaluate_every = check_int("evaluate_every", evaluate_every, 0)
    for name, function in (("step", step), ("sample", sample), ("evaluate", evaluate)):
        if function is not None and not callable(function):
            raise ValueError(f"{name}={function!r} is not allowed: a function")
    return _rows(step, iterations, sample, loss, evaluate, evaluate_every)


def _rows(step, iterations, sample, loss, evaluate, evaluate_every) -> Iterator[Iteration]:
    elapsed = 0.0
    for i in range(1, iterations + 1):
        start = time.perf_counter()
        stats = step(sample(i))
        seconds = time.perf_counter() - start
        elapsed += seconds
        value = float(stats[loss])
        finite = math.isfinite(value)
        status = stats.get("status", "ok") if finite else NON_FINITE
        due = evaluate is not None and finite and (i == iterations or (evaluate_every > 0 and i % evaluate_every == 0))
        evaluation = evaluate(i) if due else None
        yield Iteration(i, iterations, value, status, seconds, elapsed, stats, evaluation)
        if not finite:
            return
