"""Every subspace method by name, and ``fit`` to call one by name."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from metalab.subspace.anil import anil_linear
from metalab.subspace.baselines import (
    altmin,
    altmin_gd,
    burer_monteiro,
    method_of_moments,
    nuclear_norm,
    oracle,
    single_task_ols,
)
from metalab.subspace.meta_sp import meta_subspace_pursuit
from metalab.subspace.result import SubspaceResult

METHODS: dict[str, Callable[..., SubspaceResult]] = {
    "meta_sp": meta_subspace_pursuit,
    "mom": method_of_moments,
    "altmin_gd": altmin_gd,
    "altmin": altmin,
    "burer_monteiro": burer_monteiro,
    "nuclear_norm": nuclear_norm,
    "anil": anil_linear,
    "anil_fo": partial(anil_linear, second_order=False),
    "single_task": single_task_ols,
    "oracle": oracle,
}


def fit(method: str, X: Any, y: Any, rank: int, **kwargs: Any) -> SubspaceResult:
    """``METHODS[method](X, y, rank, **kwargs)``."""
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not allowed: one of " + ", ".join(map(repr, METHODS)))
    return METHODS[method](X, y, rank, **kwargs)
