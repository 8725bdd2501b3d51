"""How good is an estimated subspace: principal-angle distance, coefficient error, few-shot error."""

from __future__ import annotations

from typing import Any

import torch

from metalab.core.checks import as_float_tensor, check_choice, check_number
from metalab.subspace.tasks import as_task_tensors, check_basis

NORMS = ("spectral", "fro")


def subspace_distance(basis_hat: torch.Tensor, basis_true: torch.Tensor, norm: str = "spectral") -> float:
    """||(I - Q̂Q̂ᵀ) Q*|| for bases that already have orthonormal columns (no checks)."""
    residual = basis_true - basis_hat @ (basis_hat.T @ basis_true)
    if norm == "fro":
        return float(torch.linalg.matrix_norm(residual, ord="fro"))
    return min(float(torch.linalg.matrix_norm(residual, ord=2)), 1.0)


def sin_theta(basis_hat: Any, basis_true: Any, norm: str = "spectral") -> float:
    """sin Θ(B̂, B*) = ||(I - P̂) Q*||, with P̂ the projector onto col(B̂) and Q* an orthonormal basis of col(B*).

    Both inputs are (d, s) matrices whose columns are orthonormalised first; their widths may differ
    (an over- or under-specified rank).  ``norm="spectral"`` gives the largest principal-angle sine, in
    [0, 1]; ``norm="fro"`` gives the root sum of squared sines, in [0, sqrt(s_true)], and
    spectral <= fro <= sqrt(s_true) * spectral.

    Parameters
    ----------
    basis_hat : array (d, s)
        The estimate; only its column space matters.
    basis_true : array (d, s')
        The reference; only its column space matters.
    norm : {"spectral", "fro"}
        The largest sine, or the root sum of squared sines.

    Returns
    -------
    float
        sin Θ(B̂, B*), 0 when col(B*) lies in col(B̂).

    Raises
    ------
    ValueError
        When a basis is not a finite (d, s) matrix with 1 <= s <= d, the dimensions differ, or ``norm``
        is unknown.

    Examples
    --------
    >>> e1, e2, diagonal = [[1.0], [0.0]], [[0.0], [1.0]], [[1.0], [1.0]]
    >>> sin_theta(e1, e1), sin_theta(e1, e2)
    (0.0, 1.0)
    >>> round(sin_theta(diagonal, e1), 4)  # 45 degrees
    0.7071
    >>> round(sin_theta([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], "fro"), 4)
    1.0
    """
    check_choice("norm", norm, NORMS)
    hat = as_float_tensor("basis_hat", basis_hat, None)
    if hat.ndim != 2 or not 1 <= hat.shape[1] <= hat.shape[0]:
        raise ValueError(f"basis_hat has shape {tuple(hat.shape)}; expected (d, s) with 1 <= s <= d")
    hat = check_basis("basis_hat", hat, hat.shape[0], hat.device)
    true = check_basis("basis_true", basis_true, hat.shape[0], hat.device)
    return subspace_distance(hat, true, norm)


def coef_error(coef_hat: Any, coef_true: Any, relative: bool = True) -> float:
    """||Θ̂ - Θ*||_F, divided by ||Θ*||_F when ``relative``.

    Parameters
    ----------
    coef_hat, coef_true : arrays of one shape, e.g. (T, d)
        The estimated and the true coefficients.
    relative : bool
        Divide by ||Θ*||_F.

    Returns
    -------
    float
        The (relative) Frobenius error.

    Raises
    ------
    ValueError
        When the shapes differ, or ``relative`` and Θ* = 0.

    Examples
    --------
    >>> coef_error([[3.0, 0.0]], [[3.0, 4.0]])
    0.8
    >>> coef_error([[3.0, 0.0]], [[3.0, 4.0]], relative=False)
    4.0
    """
    hat = as_float_tensor("coef_hat", coef_hat, None)
    true = as_float_tensor("coef_true", coef_true, hat.device)
    if hat.shape != true.shape:
        raise ValueError(f"coef_hat has shape {tuple(hat.shape)}; expected {tuple(true.shape)}, the shape of coef_true")
    error = float(torch.linalg.norm(hat - true))
    if not relative:
        return error
    scale = float(torch.linalg.norm(true))
    if scale == 0:
        raise ValueError("coef_true is all zeros, so the relative error is undefined; use relative=False")
    return error / scale


def fit_heads(basis: Any, X: Any, y: Any, ridge: float = 0.0) -> torch.Tensor:
    """Per-task heads W (T, s) in the coordinates of ``basis`` as given:
    w_t = argmin_w (1/m_t)||X_t B w - y_t||² + ridge ||w||² (the minimum-norm solution when ridge = 0).

    Parameters
    ----------
    basis : array (d, s)
        The features are X_t B; the columns are used as given (not orthonormalised).
    X, y : arrays (T, m, d) and (T, m), or lists of T arrays (m_t, d) and (m_t,)
        The tasks' inputs and targets.
    ridge : float
        The ridge penalty (>= 0).

    Returns
    -------
    tensor (T, s)
        The heads w_t, one row per task.

    Raises
    ------
    ValueError
        When the data, the basis or ``ridge`` is malformed.

    Examples
    --------
    On the true basis of noise-free tasks the heads are the true ones:

    >>> import torch
    >>> from metalab.data.linear import hps_tasks
    >>> tasks = hps_tasks(d=10, rank=2, n_tasks=30, n_samples=20, seed=0)
    >>> heads = fit_heads(tasks.basis, tasks.X, tasks.y)
    >>> tuple(heads.shape), torch.allclose(heads, tasks.head)
    ((30, 2), True)
    """
    data = as_task_tensors(X, y)
    B = check_basis("basis", basis, data.dim, data.device, orthonormalize=False)
    return data.fit_heads(B, check_number("ridge", ridge, strict=False))


def few_shot_mse(basis: Any, X_support: Any, y_support: Any, X_query: Any, y_query: Any, ridge: float = 0.0) -> float:
    """Adapt on the support set, score on the query set, average over tasks:
    (1/T) Σ_t (1/n_t) ||X_t^q B w_t - y_t^q||², with w_t the heads fitted on (X_t^s B, y_t^s).

    The columns of ``basis`` are orthonormalised first, so ``ridge`` shrinks coordinates in an orthonormal basis.

    Parameters
    ----------
    basis : array (d, s)
        The subspace the heads live in.
    X_support, y_support : arrays (T, n, d) and (T, n), or lists of T arrays
        The samples each head is fitted on.
    X_query, y_query : arrays (T, q, d) and (T, q), or lists of T arrays
        The samples the adapted heads are scored on (the same T tasks, in the same order).
    ridge : float
        The ridge penalty of the head fit (>= 0).

    Returns
    -------
    float
        The query mean squared error averaged over tasks.

    Raises
    ------
    ValueError
        When the support and query tasks do not match, or the data, the basis or ``ridge`` is malformed.

    Examples
    --------
    Five shots per new task suffice on the right 2-dimensional subspace, not on a wrong one:

    >>> import torch
    >>> from metalab.data.linear import hps_tasks
    >>> tasks = hps_tasks(d=10, rank=2, n_tasks=30, n_samples=20, seed=0)
    >>> new = tasks.new_tasks(n_tasks=20, n_samples=25, seed=1)
    >>> shots = (new.X[:, :5], new.y[:, :5], new.X[:, 5:], new.y[:, 5:])
    >>> few_shot_mse(tasks.basis, *shots) < 1e-12
    True
    >>> first_two_axes = torch.eye(10)[:, :2]
    >>> few_shot_mse(first_two_axes, *shots) > 0.1
    True
    """
    support = as_task_tensors(X_support, y_support)
    query = as_task_tensors(X_query, y_query)
    if query.n_tasks != support.n_tasks or query.dim != support.dim:
        raise ValueError(
            f"X_query holds {query.n_tasks} tasks of dimension {query.dim}; expected {support.n_tasks} tasks of "
            f"dimension {support.dim} to match X_support"
        )
    B = check_basis("basis", basis, support.dim, support.device)
    heads = support.fit_heads(B, check_number("ridge", ridge, strict=False))
    return 2 * float(query.loss(heads @ B.T))
