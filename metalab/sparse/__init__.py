"""Sparse recovery for meta-learning: ISTA/FISTA, MLSR and its diagnostics.

The L1-regularised MAML ablation is :func:`metalab.gbml.meta_gradient` with ``method="maml"`` and
``l1=λ``; test-time adaptation (without the regulariser) is :func:`metalab.gbml.fine_tune`.
"""

from metalab.sparse.diagnostics import (
    HeadSparsity,
    RIPEstimate,
    head_sparsity,
    rip_estimate,
)
from metalab.sparse.ista import (
    ALGORITHMS,
    RECOVERY_LOSSES,
    RecoveryResult,
    fista,
    ista,
    lipschitz_constant,
    objective,
    soft_threshold,
    sparse_recovery,
)
from metalab.sparse.mlsr import (
    HEAD_INITS,
    QUERY_LOSSES,
    body_features,
    mlsr_gradient,
    split_body,
)

__all__ = [
    "ALGORITHMS",
    "HEAD_INITS",
    "QUERY_LOSSES",
    "RECOVERY_LOSSES",
    "HeadSparsity",
    "RIPEstimate",
    "RecoveryResult",
    "body_features",
    "fista",
    "head_sparsity",
    "ista",
    "lipschitz_constant",
    "mlsr_gradient",
    "objective",
    "rip_estimate",
    "soft_threshold",
    "sparse_recovery",
    "split_body",
]
