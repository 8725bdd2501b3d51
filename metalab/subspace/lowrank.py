"""Low-rank estimation of the stacked coefficients Θ (T × d) as subspace baselines: the Burer-Monteiro
factorisation Θ = V Bᵀ fitted by L-BFGS, and nuclear-norm (trace-norm) regularised least squares by
proximal gradient (singular-value soft-thresholding).

Conventions as in :mod:`metalab.subspace.baselines`: B (d, s), heads V (T, s), S_t = X_tᵀX_t/m_t and
F(Θ) = (1/2T) Σ_t (1/m_t)||X_t θ_t - y_t||².
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch

from metalab.core.checks import check_number, check_seed
from metalab.core.seeding import generator
from metalab.subspace.baselines import check_iterations
from metalab.subspace.linalg import top_right_singular_vectors
from metalab.subspace.result import State, SubspaceResult, run
from metalab.subspace.tasks import TaskTensors, as_task_tensors, check_rank, check_step_size, check_true_basis

# ---------------------------------------------------------------------------------------------
# Burer-Monteiro factorisation


def _bm_objective(data: TaskTensors, B: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """f(B, V) = F(V Bᵀ) + (1/8)||BᵀB - VᵀV||_F²  (the balance term removes the GL(s) ambiguity)."""
    return data.loss(V @ B.T) + 0.125 * (B.T @ B - V.T @ V).square().sum()


def _bm_start(data: TaskTensors, rank: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.optim.LBFGS]:
    """A seeded, balanced Gaussian start (E[BᵀB] = E[VᵀV], E||θ_t||² = 1 for Θ = V Bᵀ) and its optimiser."""
    gen = generator(seed, "burer_monteiro")
    scale_B = (data.n_tasks / rank) ** 0.25 / data.dim**0.5
    scale_V = 1.0 / (data.n_tasks * rank) ** 0.25
    B = scale_B * torch.randn(data.dim, rank, generator=gen, dtype=data.X.dtype)
    V = scale_V * torch.randn(data.n_tasks, rank, generator=gen, dtype=data.X.dtype)
    B, V = B.to(data.device).requires_grad_(), V.to(data.device).requires_grad_()
    # One L-BFGS iteration per step() call; max_eval leaves room for the line search (its budget is
    # max_eval minus the one evaluation step() makes first).
    optimizer = torch.optim.LBFGS(
        [B, V], lr=1.0, max_iter=1, max_eval=26, history_size=20, tolerance_grad=1e-14, tolerance_change=0.0,
        line_search_fn="strong_wolfe",
    )  # fmt: skip
    return B, V, optimizer


def _bm_states(data: TaskTensors, B: torch.Tensor, V: torch.Tensor, optimizer: torch.optim.LBFGS) -> Iterator[State]:
    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = _bm_objective(data, B, V)
        loss.backward()
        return loss

    while True:
        with torch.no_grad():
            yield V @ B.T, torch.linalg.svd(B, full_matrices=False).U, _bm_objective(data, B, V)
        optimizer.step(closure)


def burer_monteiro(
    X: Any,
    y: Any,
    rank: int,
    *,
    max_iter: int = 500,
    tol: float = 1e-10,
    seed: int = 0,
    true_basis: Any = None,
) -> SubspaceResult:
    """Burer-Monteiro: minimise F(V Bᵀ) + (1/8)||BᵀB - VᵀV||_F² over B (d, s), V (T, s) with L-BFGS
    (torch.optim.LBFGS, strong-Wolfe line search) from a seeded Gaussian start; basis = left singular
    vectors of B.  Stops when the relative change of Θ = V Bᵀ falls below ``tol``.

    Parameters
    ----------
    X, y : arrays (T, m, d) and (T, m), or lists of T arrays (m_t, d) and (m_t,)
        The tasks' inputs and targets (a tensor keeps its device).
    rank : int
        The subspace dimension s, in 1..min(T, d)-1.
    max_iter : int
        At most this many L-BFGS iterations (>= 1).
    tol : float
        Stop when the relative change of Θ falls below ``tol`` (>= 0).
    seed : int
        Seeds the Gaussian start.
    true_basis : array (d, s'), optional
        When given, every history entry also holds the spectral sin Θ to it.

    Returns
    -------
    SubspaceResult
        ``basis`` (d, s), the per-task estimates θ_t as ``coef`` (T, d), one ``history`` entry per
        iteration; ``converged`` is True when the change fell below ``tol`` within ``max_iter``.

    Raises
    ------
    ValueError
        When the data or an argument is malformed (the message names it and what is allowed).

    Examples
    --------
    >>> from metalab.data.linear import hps_tasks
    >>> from metalab.subspace import sin_theta
    >>> tasks = hps_tasks(d=10, rank=2, n_tasks=30, n_samples=20, seed=0)
    >>> result = burer_monteiro(tasks.X, tasks.y, rank=2, max_iter=100)
    >>> result.n_iter, sin_theta(result.basis, tasks.basis) < 1e-4
    (100, True)
    """
    data = as_task_tensors(X, y)
    rank = check_rank(rank, data)
    max_iter, tol = check_iterations(max_iter, tol)
    seed = check_seed(seed)
    truth = check_true_basis(true_basis, data)
    states = _bm_states(data, *_bm_start(data, rank, seed))
    return run("burer_monteiro", states, max_iter=max_iter, tol=tol, true_basis=truth)


# ---------------------------------------------------------------------------------------------
# Nuclear-norm (trace-norm) regularisation


def _nuclear_states(data: TaskTensors, rank: int, lam: float, eta: float) -> Iterator[State]:
    penalty = lam / (2 * math.sqrt(data.n_tasks))
    threshold = eta * lam * math.sqrt(data.n_tasks) / 2  # η·T·penalty: the per-task gradient is T∇F
    W = torch.zeros(data.n_tasks, data.dim, dtype=data.X.dtype, device=data.device)
    singular = torch.zeros(0, dtype=W.dtype, device=W.device)
    basis = top_right_singular_vectors(W, rank)  # arbitrary at W = 0
    while True:
        yield W, basis, data.loss(W) + penalty * singular.sum()
        U, singular, Vh = torch.linalg.svd(W - eta * data.task_gradients(W), full_matrices=False)
        singular = (singular - threshold).clamp(min=0)
        W = (U * singular) @ Vh
        basis = Vh[:rank].T


def _default_lambda(data: TaskTensors) -> float:
    """λ = σ̂ sqrt(T + d²/m̄) / sqrt(T m̄), with σ̂ = RMS(y) standing in for the unknown noise level."""
    m_bar = float(data.counts.mean())
    sigma = math.sqrt(float(data.y.square().sum() / data.counts.sum()))
    return sigma * math.sqrt(data.n_tasks + data.dim**2 / m_bar) / math.sqrt(data.n_tasks * m_bar)


def nuclear_norm(
    X: Any,
    y: Any,
    rank: int,
    *,
    lam: float | None = None,
    step_size: float | None = None,
    max_iter: int = 500,
    tol: float = 1e-10,
    true_basis: Any = None,
) -> SubspaceResult:
    """Trace-norm multi-task regression by proximal gradient:

        min_W  F(W) + (λ / (2√T)) ||W||_*      (half the objective of Boursier et al.'s reference code),
        W ← SVT(W - η G(W), η λ √T / 2),  G rows = (1/m_t) X_tᵀ(X_t w_t - y_t),  SVT = soft-threshold singular values.

    η = step_size or 1/max_t λ_max(X_tᵀX_t/m_t).  λ = lam or the reference rule σ sqrt(T + d²/m)/sqrt(T m)
    with σ estimated by RMS(y), an upper bound on the noise level: pass ``lam`` when σ is known.
    basis = top-s right singular vectors of W.  Stops when the relative change of W falls below ``tol``.

    Parameters
    ----------
    X, y : arrays (T, m, d) and (T, m), or lists of T arrays (m_t, d) and (m_t,)
        The tasks' inputs and targets (a tensor keeps its device).
    rank : int
        The subspace dimension s, in 1..min(T, d)-1.
    lam : float or None
        λ >= 0; None for the reference rule above.
    step_size : float or None
        η > 0; None for 1/max_t λ_max(X_tᵀX_t/m_t).
    max_iter : int
        At most this many iterations (>= 1).
    tol : float
        Stop when the relative change of Θ falls below ``tol`` (>= 0).
    true_basis : array (d, s'), optional
        When given, every history entry also holds the spectral sin Θ to it.

    Returns
    -------
    SubspaceResult
        ``basis`` (d, s), the per-task estimates θ_t as ``coef`` (T, d), one ``history`` entry per
        iteration; ``converged`` is True when the change fell below ``tol`` within ``max_iter``. ``coef`` is W itself (shrunk by the penalty).

    Raises
    ------
    ValueError
        When the data or an argument is malformed (the message names it and what is allowed).

    Examples
    --------
    The penalty shrinks the estimates; a small λ recovers noise-free tasks closely:

    >>> from metalab.data.linear import hps_tasks
    >>> from metalab.subspace import sin_theta
    >>> tasks = hps_tasks(d=10, rank=2, n_tasks=30, n_samples=20, seed=0)
    >>> result = nuclear_norm(tasks.X, tasks.y, rank=2, lam=1e-3)
    >>> result.converged, sin_theta(result.basis, tasks.basis) < 0.01
    (True, True)
    """
    data = as_task_tensors(X, y)
    rank = check_rank(rank, data)
    lam = (
        _default_lambda(data)
        if lam is None
        else check_number("lam", lam, strict=False, hint=", or None for the default")
    )
    step = check_step_size(step_size, "1/max_t λ_max(X_tᵀX_t/m_t)")
    max_iter, tol = check_iterations(max_iter, tol)
    truth = check_true_basis(true_basis, data)
    eta = step if step is not None else 1.0 / data.smoothness()
    return run("nuclear_norm", _nuclear_states(data, rank, lam, eta), max_iter=max_iter, tol=tol, true_basis=truth)
