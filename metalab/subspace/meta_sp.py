"""Meta Subspace Pursuit (Meta-SP; Zhang, Liu & Zhang, arXiv 2409.02708), reconstructed as
iterative hard thresholding on the stacked coefficient matrix Θ (T, d):

    θ̂_t = θ_t - η (1/m_t) X_tᵀ(X_t θ_t - y_t)          (a gradient step for every task at once)
    Θ   = H_s(Θ̂) = U_s diag(σ_1..σ_s) V_sᵀ             (best rank-s approximation; see below)
    B   = V_s                                          (d, s): the shared subspace estimate

The paper's exact step size, initialisation and whether a least-squares refit follows the
thresholding could not be verified, so each is an option: ``step_size`` (default
η = 1 / max_t λ_max(X_tᵀX_t/m_t), the inverse of the largest per-task smoothness constant),
``init`` ("zero": Θ⁰ = 0; "spectral": Θ⁰ = H_s of the matrix with rows X_tᵀy_t/m_t) and ``refit``
("none": plain thresholding, the SVP form; "ls": after thresholding, refit every task's head by least
squares on X_t B and set Θ = W Bᵀ, the subspace-pursuit form).  The iteration stops when
||Θᵏ⁺¹ - Θᵏ||_F / ||Θᵏ||_F < tol.  The objective reported is F(Θ) = (1/2T) Σ_t (1/m_t)||X_t θ_t - y_t||²;
the residuals X_t θ_t - y_t it needs are those of the next gradient, computed once.

H_s is computed (``projection``) by a thin SVD ("svd", O(T d min(T, d)) per iteration) or by subspace
iteration warm-started from the previous iteration's block ("subspace", the default: O(T d s) per sweep,
a few sweeps per iteration; :func:`metalab.subspace.linalg.subspace_iteration`), which falls back to the
thin SVD in an iteration where it does not converge within its sweeps (a flat spectrum around σ_s).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from metalab.core.checks import check_choice, check_int, check_number
from metalab.subspace.linalg import PROJECTIONS, RankProjection
from metalab.subspace.result import IterationStep, State, SubspaceResult, collect, trace
from metalab.subspace.tasks import (
    TaskTensors,
    as_task_tensors,
    check_rank,
    check_step_size,
    check_true_basis,
)

MetaSPStep = IterationStep  # the item type of iterate_meta_subspace_pursuit

INITS = ("zero", "spectral")
REFITS = ("none", "ls")

Projected = tuple[torch.Tensor, torch.Tensor]  # (Θ, B)


def _projector(data: TaskTensors, rank: int, refit: str, projection: str) -> Callable[[torch.Tensor], Projected]:
    """Z -> (Θ, B): Θ = H_s(Z) and B = V_s; with refit="ls", Θ = W Bᵀ with W the least-squares heads on X_t B."""
    shape = (data.n_tasks, data.dim)
    rank_projection = RankProjection(rank, shape, projection, dtype=data.X.dtype, device=data.device)

    def project(Z: torch.Tensor) -> Projected:
        scores, basis = rank_projection(Z)
        return (data.fit_heads(basis) if refit == "ls" else scores) @ basis.T, basis

    return project


def _states(data: TaskTensors, rank: int, eta: float, init: str, project: Callable) -> Iterator[State]:
    if init == "zero":
        theta = torch.zeros(data.n_tasks, data.dim, dtype=data.X.dtype, device=data.device)
        basis = torch.eye(data.dim, rank, dtype=data.X.dtype, device=data.device)  # arbitrary: Θ⁰ = 0 has none
    else:
        theta, basis = project(data.moments())
    while True:
        residual = data.residual(theta)
        yield theta, basis, data.loss_from_residual(residual)
        theta, basis = project(theta - eta * data.gradients_from_residual(residual))


def iterate_meta_subspace_pursuit(
    X: Any,
    y: Any,
    rank: int,
    *,
    step_size: float | None = None,
    max_iter: int = 500,
    tol: float = 1e-10,
    init: str = "zero",
    refit: str = "none",
    projection: str = "subspace",
    true_basis: Any = None,
) -> Iterator[MetaSPStep]:
    """Run Meta-SP lazily: one :class:`MetaSPStep` per iteration, starting with the initial state
    (iteration 0; with init="zero" its basis is arbitrary).  Arguments as for meta_subspace_pursuit;
    they are checked at call time, before the first step is requested.

    Parameters
    ----------
    X, y, rank, step_size, max_iter, tol, init, refit, projection, true_basis
        As for :func:`meta_subspace_pursuit`.

    Returns
    -------
    Iterator[MetaSPStep]
        Steps ``iteration = 0, 1, ...`` carrying Θᵏ (``coef``), Bᵏ (``basis``), F(Θᵏ) (``objective``),
        sin Θ to ``true_basis`` (None without one), the seconds spent so far and the relative change
        ||Θᵏ - Θᵏ⁻¹||_F / ||Θᵏ⁻¹||_F.  It ends after ``max_iter`` iterations, when the change falls below
        ``tol``, or (with a DivergenceWarning) at the first non-finite or exploding iterate.

    Raises
    ------
    ValueError
        At call time, when the data or an argument is malformed (the message names it).

    Examples
    --------
    >>> from metalab.data.linear import hps_tasks
    >>> tasks = hps_tasks(d=10, rank=2, n_tasks=30, n_samples=20, seed=0)
    >>> steps = list(iterate_meta_subspace_pursuit(tasks.X, tasks.y, rank=2, max_iter=5))
    >>> [step.iteration for step in steps]
    [0, 1, 2, 3, 4, 5]
    >>> objectives = [step.objective for step in steps]
    >>> objectives == sorted(objectives, reverse=True)
    True
    """
    data = as_task_tensors(X, y)
    rank = check_rank(rank, data)
    step = check_step_size(step_size, "1/max_t λ_max(X_tᵀX_t/m_t)")
    max_iter = check_int("max_iter", max_iter, 1)
    tol = check_number("tol", tol, strict=False)
    init = check_choice("init", init, INITS)
    refit = check_choice("refit", refit, REFITS)
    projection = check_choice("projection", projection, PROJECTIONS)
    truth = check_true_basis(true_basis, data)
    eta = step if step is not None else 1.0 / data.smoothness()
    states = _states(data, rank, eta, init, _projector(data, rank, refit, projection))
    return trace("meta_sp", states, max_iter=max_iter, tol=tol, true_basis=truth)


def meta_subspace_pursuit(
    X: Any,
    y: Any,
    rank: int,
    *,
    step_size: float | None = None,
    max_iter: int = 500,
    tol: float = 1e-10,
    init: str = "zero",
    refit: str = "none",
    projection: str = "subspace",
    true_basis: Any = None,
) -> SubspaceResult:
    """Meta-SP: hard-thresholded gradient descent on Θ (see the module docstring),

        Θ ← H_s(Θ - η G(Θ)),   G rows = (1/m_t) X_tᵀ(X_t θ_t - y_t),   B = V_s.

    Parameters
    ----------
    X : tensor or array (T, m, d), or a list of T arrays (m_t, d)
        The tasks' inputs; a tensor keeps its device.
    y : tensor or array (T, m), or a list of T arrays (m_t,)
        The tasks' targets.
    rank : int
        The subspace dimension s, in 1..min(T, d)-1.
    step_size : float or None
        η > 0; None for 1 / max_t λ_max(X_tᵀX_t/m_t).
    max_iter : int
        At most this many iterations (>= 1).
    tol : float
        Stop when ||Θᵏ⁺¹ - Θᵏ||_F / ||Θᵏ||_F < tol (>= 0).
    init : {"zero", "spectral"}
        Θ⁰ = 0, or H_s of the matrix with rows X_tᵀy_t/m_t.
    refit : {"none", "ls"}
        Plain thresholding, or least-squares heads on X_t B after every thresholding.
    projection : {"subspace", "svd"}
        H_s by warm-started subspace iteration (O(T d s) per sweep, a thin SVD where it does not
        converge), or by a thin SVD every iteration (O(T d min(T, d))); the two agree to about 1e-10.
    true_basis : array (d, s'), optional
        When given, every history entry also holds the spectral sin Θ to it.

    Returns
    -------
    SubspaceResult
        ``basis`` V_s (d, s), the final Θ as ``coef`` (T, d), one ``history`` entry per iteration;
        ``converged`` is True when the relative change fell below ``tol`` within ``max_iter``.

    Raises
    ------
    ValueError
        When the data or an argument is malformed (the message names it and what is allowed).

    Examples
    --------
    Noise-free tasks that share a 2-dimensional subspace of R^10, with m = 20 samples each:

    >>> from metalab.data.linear import hps_tasks
    >>> from metalab.subspace import sin_theta
    >>> tasks = hps_tasks(d=10, rank=2, n_tasks=30, n_samples=20, seed=0)
    >>> result = meta_subspace_pursuit(tasks.X, tasks.y, rank=2)
    >>> tuple(result.basis.shape), tuple(result.coef.shape), result.converged
    ((10, 2), (30, 10), True)
    >>> sin_theta(result.basis, tasks.basis) < 1e-6
    True
    """
    steps = iterate_meta_subspace_pursuit(
        X, y, rank, step_size=step_size, max_iter=max_iter, tol=tol, init=init, refit=refit, projection=projection,
        true_basis=true_basis,
    )  # fmt: skip
    return collect("meta_sp", steps, max_iter=max_iter, tol=tol)
