"""metalab: algorithms, experiments and interactive labs for four meta-learning papers."""

from metalab.core import ConfigError, Record, collect
from metalab.subspace import (
    METHODS as SUBSPACE_METHODS,
)
from metalab.subspace import (
    SubspaceResult,
    altmin_gd,
    anil_linear,
    burer_monteiro,
    few_shot_mse,
    fit_heads,
    iterate_meta_subspace_pursuit,
    meta_subspace_pursuit,
    method_of_moments,
    nuclear_norm,
    oracle,
    sin_theta,
    single_task_ols,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Record",
    "SUBSPACE_METHODS",
    "SubspaceResult",
    "altmin_gd",
    "anil_linear",
    "burer_monteiro",
    "collect",
    "few_shot_mse",
    "fit_heads",
    "iterate_meta_subspace_pursuit",
    "meta_subspace_pursuit",
    "method_of_moments",
    "nuclear_norm",
    "oracle",
    "sin_theta",
    "single_task_ols",
]
