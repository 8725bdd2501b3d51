"""Every subspace method by name, and ``fit`` to call one by name."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from metalab.subspace.anil import anil_linear
from metalab.subspace.baselines import (
    altmin,
    altmin_gd,
    method_of_moments,
    oracle,
    single_task_ols,
)
from metalab.subspace.lowrank import burer_monteiro, nuclear_norm
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
    """``METHODS[method](X, y, rank, **kwargs)``.

    Parameters
    ----------
    method : str
        A key of :data:`METHODS`: ``meta_sp``, ``mom``, ``altmin_gd``, ``altmin``, ``burer_monteiro``,
        ``nuclear_norm``, ``anil``, ``anil_fo``, ``single_task`` or ``oracle``.
    X, y : arrays (T, m, d) and (T, m), or lists of T arrays (m_t, d) and (m_t,)
        The tasks' inputs and targets.
    rank : int
        The subspace dimension s, in 1..min(T, d)-1.
    **kwargs
        The method's own keyword arguments (``oracle`` needs ``true_basis``).

    Returns
    -------
    SubspaceResult
        The method's result; ``result.method`` is the registry name (``anil_fo`` for first-order ANIL).

    Raises
    ------
    ValueError
        When ``method`` is unknown, or the method rejects the data or an argument.

    Examples
    --------
    >>> from metalab.data.linear import hps_tasks
    >>> tasks = hps_tasks(d=10, rank=2, n_tasks=30, n_samples=20, seed=0)
    >>> result = fit("altmin", tasks.X, tasks.y, 2, max_iter=50)
    >>> result.method, result.converged
    ('altmin', True)
    >>> fit("lasso", tasks.X, tasks.y, 2)
    Traceback (most recent call last):
        ...
    ValueError: method='lasso' is not allowed: one of 'meta_sp', 'mom', ...
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not allowed: one of " + ", ".join(map(repr, METHODS)))
    return METHODS[method](X, y, rank, **kwargs)
