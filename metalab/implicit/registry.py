"""Every hypergradient method by name, and ``hypergradient`` to call one by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from metalab.core.results import HypergradResult
from metalab.implicit.baselines import (
    anil,
    anil_recompute,
    fomaml,
    imaml,
    itd_bio,
    itd_bio_recompute,
    maml,
)
from metalab.implicit.common import Options
from metalab.implicit.hypergrad import (
    implicit_hypergradient,
    unfused_implicit_hypergradient,
)

HYPERGRADIENTS: dict[str, Callable[..., HypergradResult]] = {
    "implicit": implicit_hypergradient,
    "implicit_unfused": unfused_implicit_hypergradient,
    "maml": maml,
    "fomaml": fomaml,
    "anil": anil,
    "anil_recompute": anil_recompute,
    "itd_bio": itd_bio,
    "itd_bio_recompute": itd_bio_recompute,
    "imaml": imaml,
}

#: methods whose inner loop adapts only the head, on fixed backbone features
HEAD_ONLY = ("implicit", "implicit_unfused", "anil", "anil_recompute", "itd_bio", "itd_bio_recompute")
#: methods that meta-learn the head initialisation too (their results carry ``head_hypergrad``)
LEARNS_HEAD = ("maml", "fomaml", "anil", "anil_recompute", "imaml")

OPTION_NAMES = tuple(Options.__dataclass_fields__)


def hypergradient(
    method: str, backbone, params, head, support_x, support_y, query_x, query_y, **options: Any
) -> HypergradResult:
    """The meta-gradient of ``method`` on one meta-batch: ``HYPERGRADIENTS[method](...)``.

    Parameters
    ----------
    method : str
        A key of :data:`HYPERGRADIENTS`.
    backbone : nn.Module
        A buffer-free module mapping inputs (n, ...) to features (n, d) (see :mod:`metalab.nets`).
    params : dict of tensors
        The backbone's parameters (the upper level θ).
    head : dict
        The linear head ``{"weight": (C, d), "bias": (C,)}`` (the lower level's start φ_0).
    support_x, support_y, query_x, query_y : tensor
        The meta-batch: inputs (B, n, ...) and integer labels in 0..C-1 (B, n).
    **options
        Those of :class:`~metalab.implicit.common.Options` (inner_steps, inner_lr, l2, cg_steps,
        cg_tol, prox, batch_mode, and Algorithm 1's inner_solver, inner_tol, max_inner_residual; a
        method ignores those it does not use); ``warm_start`` for ``"implicit"`` only.

    Returns
    -------
    HypergradResult
        The meta-gradient averaged over the tasks, the query loss and accuracy, the CG solve(s) and
        the status (see :class:`metalab.core.results.HypergradResult`; ``"implicit"`` may also report
        ``"inner_not_converged"``).
    """
    if method not in HYPERGRADIENTS:
        raise ValueError(f"method={method!r} is not allowed: one of " + ", ".join(map(repr, HYPERGRADIENTS)))
    allowed = OPTION_NAMES + (("warm_start",) if method == "implicit" else ())
    for name in options:
        if name not in allowed:
            raise ValueError(
                f"{name}={options[name]!r} is not allowed for method {method!r}: options are " + ", ".join(allowed)
            )
    return HYPERGRADIENTS[method](backbone, params, head, support_x, support_y, query_x, query_y, **options)
