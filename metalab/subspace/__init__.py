"""Learning the shared subspace of linear multi-task regression: Meta-SP and its baselines."""

from metalab.subspace.anil import anil_linear, anil_meta_loss
from metalab.subspace.baselines import (
    altmin,
    altmin_gd,
    method_of_moments,
    oracle,
    single_task_ols,
)
from metalab.subspace.lowrank import burer_monteiro, nuclear_norm
from metalab.subspace.meta_sp import (
    MetaSPStep,
    iterate_meta_subspace_pursuit,
    meta_subspace_pursuit,
)
from metalab.subspace.metrics import coef_error, few_shot_mse, fit_heads, sin_theta
from metalab.subspace.registry import METHODS, fit
from metalab.subspace.result import DivergenceWarning, SubspaceResult
from metalab.subspace.tasks import TaskTensors, as_task_tensors

__all__ = [
    "METHODS",
    "DivergenceWarning",
    "MetaSPStep",
    "SubspaceResult",
    "TaskTensors",
    "altmin",
    "altmin_gd",
    "anil_linear",
    "anil_meta_loss",
    "as_task_tensors",
    "burer_monteiro",
    "coef_error",
    "few_shot_mse",
    "fit",
    "fit_heads",
    "iterate_meta_subspace_pursuit",
    "meta_subspace_pursuit",
    "method_of_moments",
    "nuclear_norm",
    "oracle",
    "sin_theta",
    "single_task_ols",
]
