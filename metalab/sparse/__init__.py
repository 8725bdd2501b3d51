"""Sparse recovery for meta-learning: ISTA/FISTA, MLSR and its diagnostics.

The L1-regularised MAML ablation is :func:`metalab.gbml.meta_gradient` with ``method="maml"`` and
``l1=λ``; test-time adaptation (without the regulariser) is :func:`metalab.gbml.fine_tune`.
"""

from metalab.sparse.diagnostics import (
    HeadSparsity,
    RIPEstimate,
    head_sparsity,
    rip_estimate,
    task_rip_estimates,
)
from metalab.sparse.ista import (
    ALGORITHMS,
    RECOVERY_LOSSES,
    RecoveryIterate,
    RecoveryResult,
    fista,
    ista,
    iterate_recovery,
    lipschitz_constant,
    objective,
    soft_threshold,
    sparse_recovery,
)
from metalab.sparse.mlsr import (
    HEAD_INITS,
    QUERY_LOSSES,
    bias_free_penalty,
    body_features,
    head_layer,
    head_matrix,
    mlsr_gradient,
    recover_heads,
    recovery_predictions,
    recovery_targets,
    split_body,
)

__all__ = [
    "ALGORITHMS",
    "HEAD_INITS",
    "QUERY_LOSSES",
    "RECOVERY_LOSSES",
    "HeadSparsity",
    "RIPEstimate",
    "RecoveryIterate",
    "RecoveryResult",
    "bias_free_penalty",
    "body_features",
    "fista",
    "head_layer",
    "head_matrix",
    "head_sparsity",
    "ista",
    "iterate_recovery",
    "lipschitz_constant",
    "mlsr_gradient",
    "objective",
    "recover_heads",
    "recovery_predictions",
    "recovery_targets",
    "rip_estimate",
    "soft_threshold",
    "sparse_recovery",
    "split_body",
    "task_rip_estimates",
]
