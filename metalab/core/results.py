"""What every meta-gradient method returns, and the guard that keeps non-finite numbers out of it.

A method (an implicit hypergradient, MAML, MLSR's sparse recovery...) hands its raw gradients to
:func:`finish`, which detaches them and checks that every entry is finite.  A non-finite gradient
(the inner loop diverged) is replaced by zeros, reported in ``status`` and as a
:class:`HypergradientWarning`: numerical failure is never returned as silent NaN.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Protocol

import torch

#: how the tasks of a meta-batch are run: vectorised with torch.func, or one after the other
BATCH_MODES = ("vmap", "sequential")


#: an objective this many times its starting value means an iteration has blown up
BLOW_UP = 1e10


class DivergenceWarning(RuntimeWarning):
    """An iterative method (Meta-SP and the subspace baselines, ISTA/FISTA) produced non-finite or
    exploding iterates (an objective ``BLOW_UP`` times its start) and was stopped.

    The result then holds the last finite iterate, with ``converged=False`` (or ``status="diverged"``).

    Examples
    --------
    A step size far above 1/L makes Meta-SP's gradient step expand instead of contract:

    >>> import warnings
    >>> from metalab.data.linear import hps_tasks
    >>> from metalab.subspace import meta_subspace_pursuit
    >>> tasks = hps_tasks(d=10, rank=2, n_tasks=30, n_samples=20, seed=0)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     result = meta_subspace_pursuit(tasks.X, tasks.y, rank=2, step_size=10.0)
    >>> [warning.category.__name__ for warning in caught], result.converged
    (['DivergenceWarning'], False)
    """


class AssumptionWarning(RuntimeWarning):
    """An estimator's assumption does not hold for the data it was given (e.g. the method of moments' isotropic
    inputs), so its answer is biased: the result says ``converged=False``."""


class HypergradientWarning(RuntimeWarning):
    """A hypergradient is unreliable: it came out non-finite (e.g. the inner loop diverged) and was replaced
    by zeros, or the implicit hypergradient's inner solve stopped far from the inner optimum the
    implicit-function theorem assumes (status ``inner_not_converged``)."""


class LinearSolve(Protocol):
    """The part of a linear solve's report a result needs (e.g. :class:`metalab.implicit.cg.CGResult`)."""

    @property
    def failed(self) -> bool: ...


@dataclass
class HypergradResult:
    """What one call of a hypergradient method returns.

    ``hypergrad``: the meta-gradient for the backbone parameters, averaged over the tasks.
    ``head_hypergrad``: the meta-gradient for the head initialisation where the method meta-learns it
    (MAML, FOMAML, ANIL, iMAML), else None.  ``query_loss``/``query_accuracy``: means over tasks at
    the adapted parameters.  ``cg``: the linear solve(s) of implicit methods (batched over tasks).
    ``adapted_head``: per-task adapted heads (B, ...) for head-only methods.  ``status``: "ok",
    "cg_fallback" (some linear solve failed; see ``cg``) or "non_finite" (replaced by zeros, warned).
    """

    method: str
    hypergrad: dict[str, torch.Tensor]
    head_hypergrad: dict[str, torch.Tensor] | None
    query_loss: float
    query_accuracy: float
    cg: Any = None
    adapted_head: dict[str, torch.Tensor] | None = None
    status: str = "ok"


def all_finite(tensors: list[torch.Tensor]) -> bool:
    """Whether every entry of every tensor is finite, without a temporary of a tensor's size.

    A NaN or inf entry makes its tensor's sum NaN or inf, so finite sums settle it with one reduction per
    tensor and one host sync.  A sum that is not finite may also be an overflow of finite entries; then
    the tensors' minima and maxima decide (a NaN propagates into both, an inf shows in one).
    """
    tensors = [t.detach() for t in tensors if t.numel()]
    if not tensors or bool(torch.isfinite(torch.stack([t.sum().double() for t in tensors])).all()):
        return True
    extremes = [value.double() for t in tensors for value in torch.aminmax(t)]
    return bool(torch.isfinite(torch.stack(extremes)).all())


def _detached(tensors: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
    return None if tensors is None else {k: v.detach() for k, v in tensors.items()}


def _zeros(tensors: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
    return None if tensors is None else {k: torch.zeros_like(v) for k, v in tensors.items()}


def finish(
    method: str,
    hypergrad: dict[str, torch.Tensor],
    head_hypergrad: dict[str, torch.Tensor] | None,
    query_loss: torch.Tensor | float,
    query_accuracy: torch.Tensor | float,
    cg: LinearSolve | None = None,
    adapted_head: dict[str, torch.Tensor] | None = None,
) -> HypergradResult:
    """Build the result of ``method``; a non-finite hypergradient is zeroed and reported, never returned as NaN.

    Parameters
    ----------
    method : str
        The method's name, kept in the result and quoted by the warning.
    hypergrad, head_hypergrad : dict of tensors
        The meta-gradients for the backbone and (None when not meta-learned) the head initialisation.
    query_loss, query_accuracy : tensor or float
        Means over the tasks at the adapted parameters.
    cg : LinearSolve, optional
        The linear solve behind an implicit method; a failed one gives status ``"cg_fallback"``.
    adapted_head : dict of tensors, optional
        The per-task adapted heads.

    Returns
    -------
    HypergradResult
        Detached tensors; ``status`` is ``"non_finite"`` (gradients zeroed, a
        :class:`HypergradientWarning` issued), ``"cg_fallback"`` or ``"ok"``.
    """
    status = "cg_fallback" if cg is not None and cg.failed else "ok"
    grads = [*hypergrad.values(), *(head_hypergrad or {}).values()]
    if not all_finite(grads):
        warnings.warn(
            HypergradientWarning(
                f"method {method!r} produced a non-finite hypergradient (the inner loop probably diverged: "
                "lower inner_lr); it was replaced by zeros"
            ),
            stacklevel=3,
        )
        hypergrad, head_hypergrad = _zeros(hypergrad), _zeros(head_hypergrad)
        status = "non_finite"
    return HypergradResult(
        method=method,
        hypergrad=_detached(hypergrad),
        head_hypergrad=_detached(head_hypergrad),
        query_loss=float(query_loss),
        query_accuracy=float(query_accuracy),
        cg=cg,
        adapted_head=_detached(adapted_head),
        status=status,
    )
