"""Result types, and the loop that times, scores and stops every subspace method.

Each method is written as a generator of states ``(coef, basis, objective)``: first its initial state
(iteration 0), then one state per iteration.  :func:`trace` turns that into :class:`IterationStep` items
(the live stream the dashboard draws) and :func:`run` collects them into a :class:`SubspaceResult`.
"""

from __future__ import annotations

import itertools
import math
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from metalab.core.results import BLOW_UP, DivergenceWarning
from metalab.subspace.metrics import subspace_distance

#: a run whose last objective is this many times its first did not descend: it is not converged
GROWTH = 10.0


@dataclass
class SubspaceResult:
    """What every subspace method returns (see :func:`metalab.subspace.fit` for an example).

    Attributes
    ----------
    method : str
        The registry name, e.g. ``"meta_sp"``.
    basis : tensor (d, s)
        The estimated subspace, orthonormal columns.
    coef : tensor (T, d) or None
        The per-task coefficient estimates θ_t.
    history : list of dict
        One entry per iteration (0 is the initial state): ``iteration``, ``objective``, ``seconds``, and
        ``sin_theta`` when a true basis was given.
    converged : bool
        The relative change of Θ fell below the tolerance (methods without one: the full budget ran
        without divergence).
    n_iter : int
        The last iteration run.
    seconds : float
        Time spent computing the method's iterates.
    """

    method: str
    basis: torch.Tensor
    coef: torch.Tensor | None
    history: list[dict]
    converged: bool
    n_iter: int
    seconds: float


@dataclass(frozen=True)
class IterationStep:
    """One state of an iterative method (iteration 0 is the initial state)."""

    iteration: int
    coef: torch.Tensor  # (T, d)
    basis: torch.Tensor  # (d, s)
    objective: float
    sin_theta: float | None  # spectral sin Θ to the true basis, when one was given
    seconds: float  # since the start of the run
    change: float  # ||Θᵏ - Θᵏ⁻¹||_F / ||Θᵏ⁻¹||_F (inf at iteration 0)


State = tuple[torch.Tensor, torch.Tensor, torch.Tensor | float]


def _relative_change(new: torch.Tensor, old: torch.Tensor) -> float:
    scale = float(torch.linalg.norm(old))
    diff = float(torch.linalg.norm(new - old))
    return diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf)


def trace(
    method: str,
    states: Iterator[State],
    *,
    max_iter: int,
    tol: float | None,
    true_basis: torch.Tensor | None,
) -> Iterator[IterationStep]:
    """Time and score ``states``; stop after ``max_iter`` iterations, when the relative change of Θ
    falls below ``tol`` (never when ``tol`` is None), or, with a DivergenceWarning, at the first
    non-finite or exploding state (which is not yielded).

    ``seconds`` counts only the time spent computing the method's states: neither the scoring against
    ``true_basis`` nor the time a consumer (a live dashboard) spends between steps."""
    elapsed, previous, reference = 0.0, None, None
    states = iter(states)
    for iteration in itertools.count():
        resumed = time.perf_counter()
        try:
            coef, basis, objective = next(states)
        except StopIteration:
            return
        value = float(objective)  # a synchronisation point on CUDA, so the clock covers the work
        elapsed += time.perf_counter() - resumed
        reference = abs(value) if reference is None else reference
        if not (
            math.isfinite(value) and value <= BLOW_UP * max(reference, 1e-300) and bool(torch.isfinite(coef).all())
        ):
            warnings.warn(
                f"{method} diverged at iteration {iteration} (objective {value:.3g}); returning the last finite "
                "iterate with converged=False. A smaller step_size usually helps.",
                DivergenceWarning,
                stacklevel=3,
            )
            return
        change = math.inf if previous is None else _relative_change(coef, previous)
        sin = None if true_basis is None else subspace_distance(basis, true_basis, "spectral")
        yield IterationStep(iteration, coef, basis, value, sin, elapsed, change)
        if iteration >= max_iter or (tol is not None and change < tol):
            return
        previous = coef


def collect(
    method: str, steps: Iterator[IterationStep], *, max_iter: int, tol: float | None, baseline: float | None = None
) -> SubspaceResult:
    """Consume a step stream into a result.  converged: the change fell below ``tol`` (or, with
    ``tol=None``, the full ``max_iter`` budget ran without divergence), and the last objective is not
    ``GROWTH`` times above the first one nor above ``baseline`` (the objective of a trivial answer, such
    as predicting zero; a DivergenceWarning says which)."""
    history, last = [], None
    for step in steps:
        entry = {"iteration": step.iteration, "objective": step.objective, "seconds": step.seconds}
        if step.sin_theta is not None:
            entry["sin_theta"] = step.sin_theta
        history.append(entry)
        last = step
    if last is None:
        raise FloatingPointError(f"{method}: the initial iterate is not finite; rescale X and y")
    converged = last.change < tol if tol is not None else last.iteration == max_iter
    first = history[0]["objective"]
    references = [("its start", first)] + ([("predicting zero", baseline)] if baseline is not None else [])
    for name, reference in references:
        if converged and last.objective > GROWTH * max(abs(reference), 1e-300):  # a blow-up warned in trace
            warnings.warn(
                f"{method} ended with its objective {last.objective / max(abs(reference), 1e-300):.3g} times "
                f"that of {name} ({reference:.3g} -> {last.objective:.3g}): it did not descend; "
                "converged=False. A smaller step size or learning rate usually helps.",
                DivergenceWarning,
                stacklevel=3,
            )
            converged = False
    return SubspaceResult(method, last.basis, last.coef, history, converged, last.iteration, last.seconds)


def run(
    method: str,
    states: Iterator[State],
    *,
    max_iter: int,
    tol: float | None,
    true_basis: torch.Tensor | None,
    baseline: float | None = None,
) -> SubspaceResult:
    """trace + collect."""
    steps = trace(method, states, max_iter=max_iter, tol=tol, true_basis=true_basis)
    return collect(method, steps, max_iter=max_iter, tol=tol, baseline=baseline)
