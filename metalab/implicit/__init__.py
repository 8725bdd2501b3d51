"""Implicit (CG-based) meta-learning hypergradients and their unrolled baselines.

``hypergradient(method, backbone, params, head, support_x, support_y, query_x, query_y, **options)``
computes a meta-gradient for one meta-batch; ``method`` is a key of ``HYPERGRADIENTS``.  It returns a
:class:`metalab.core.results.HypergradResult` (shared with :mod:`metalab.gbml`).
:mod:`metalab.implicit.measure` measures what one call costs (graph memory, time, peak RSS) and
:mod:`metalab.implicit.evaluation` how well a meta-learned network adapts.
"""

from metalab.implicit.baselines import (
    anil,
    anil_recompute,
    fomaml,
    imaml,
    itd_bio,
    itd_bio_recompute,
    maml,
)
from metalab.implicit.cg import (
    STATUSES,
    CGResult,
    CGWarning,
    conjugate_gradient,
    stack_results,
)
from metalab.implicit.common import Options, quiet_numerics
from metalab.implicit.hypergrad import (
    WarmStart,
    dense_implicit_hypergradient,
    implicit_hypergradient,
    unfused_implicit_hypergradient,
)
from metalab.implicit.registry import HYPERGRADIENTS, hypergradient

__all__ = [
    "CGResult",
    "CGWarning",
    "HYPERGRADIENTS",
    "Options",
    "STATUSES",
    "WarmStart",
    "anil",
    "anil_recompute",
    "conjugate_gradient",
    "dense_implicit_hypergradient",
    "fomaml",
    "hypergradient",
    "imaml",
    "implicit_hypergradient",
    "itd_bio",
    "itd_bio_recompute",
    "maml",
    "quiet_numerics",
    "stack_results",
    "unfused_implicit_hypergradient",
]
