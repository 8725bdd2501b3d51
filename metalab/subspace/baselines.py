"""Baselines for learning the shared subspace of linear multi-task regression.

All use the column convention: B or U (d, s) with orthonormal columns, heads v_t (s,), θ_t = B v_t,
S_t = X_tᵀX_t/m_t and F(Θ) = (1/2T) Σ_t (1/m_t)||X_t θ_t - y_t||².  Each returns a SubspaceResult whose
``coef`` rows are the method's per-task estimates θ_t (for the two-stage methods, MoM and the oracle,
the least-squares heads on X_t B).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Iterator
from typing import Any

import torch

from metalab.core.checks import check_choice, check_int, check_number, check_seed
from metalab.core.results import AssumptionWarning
from metalab.core.seeding import generator
from metalab.subspace.linalg import top_right_singular_vectors
from metalab.subspace.result import State, SubspaceResult, run
from metalab.subspace.tasks import (
    TaskTensors,
    as_task_tensors,
    check_basis,
    check_rank,
    check_step_size,
    check_true_basis,
)

ALTMIN_INITS = ("mom", "random")
#: MoM's inputs count as isotropic up to this many times the condition number isotropic inputs reach
ISOTROPY_SLACK = 2.0


def _with_heads(data: TaskTensors, basis: torch.Tensor) -> State:
    """(Θ = W Bᵀ, B, F(Θ)) with W the least-squares heads on X_t B."""
    coef = data.fit_heads(basis) @ basis.T
    return coef, basis, data.loss(coef)


def random_basis(data: TaskTensors, rank: int, seed: int) -> torch.Tensor:
    """Q from the QR factorisation of a seeded d × s Gaussian (drawn on the CPU, then moved)."""
    gaussian = torch.randn(data.dim, rank, generator=generator(seed, "random_basis"), dtype=data.X.dtype)
    return torch.linalg.qr(gaussian).Q.to(data.device)


def check_iterations(max_iter: Any, tol: Any) -> tuple[int, float]:
    """The iteration budget (an integer >= 1) and the relative-change tolerance (>= 0) of an iterative method."""
    return check_int("max_iter", max_iter, 1), check_number("tol", tol, strict=False)


# ---------------------------------------------------------------------------------------------
# Method of moments (Tripuraneni, Jin & Jordan 2021)


def isotropy(data: TaskTensors) -> tuple[float, float]:
    """``(κ, κ_iso)``: the condition number κ of the pooled input second moment (1/T) Σ_t X_tᵀX_t/m_t, and
    the largest one isotropic Gaussian inputs of the same total size N reach, the Marchenko-Pastur edge ratio
    κ_iso = ((1 + √(d/N)) / (1 − √(d/N)))² (infinite when N <= d: then isotropy cannot be told)."""
    rows = data.X.reshape(-1, data.dim)  # the pooled moment without the (T, d, d) of every task's S_t
    weighted = (data.X / data.counts[:, None, None]).reshape(-1, data.dim)
    eigenvalues = torch.linalg.eigvalsh(weighted.T @ rows / data.n_tasks)
    kappa = float(eigenvalues[-1] / eigenvalues[0].clamp_min(torch.finfo(eigenvalues.dtype).tiny))
    ratio = data.dim / float(data.counts.sum())
    return kappa, ((1 + math.sqrt(ratio)) / (1 - math.sqrt(ratio))) ** 2 if ratio < 1 else math.inf


def _mom_basis(data: TaskTensors, rank: int) -> torch.Tensor:
    """Top-s eigenvectors of M̂ = (1/T) Σ_t (1/m_t) Σ_i y_ti² x_ti x_tiᵀ  (E[y²xxᵀ] = (||θ||²+σ²)I + 2θθᵀ)."""
    weights = data.y.square() / data.counts[:, None]
    moment = torch.einsum("tm,tma,tmb->ab", weights, data.X, data.X) / data.n_tasks
    return torch.linalg.eigh(moment).eigenvectors[:, -rank:].flip(1)


def method_of_moments(X: Any, y: Any, rank: int, *, true_basis: Any = None) -> SubspaceResult:
    """MoM: B̂ = top-s eigenvectors of (1/T) Σ_t (1/m_t) Σ_i y_ti² x_ti x_tiᵀ; heads by least squares on X_t B̂.

    For Gaussian inputs the moment matrix has mean (1/T) Σ_t [(||θ_t||² + σ²) I + 2 θ_tθ_tᵀ], whose top-s
    eigenvectors span col(B*); one pass, no iterations.

    Parameters
    ----------
    X, y : arrays (T, m, d) and (T, m), or lists of T arrays (m_t, d) and (m_t,)
        The tasks' inputs and targets (a tensor keeps its device).
    rank : int
        The subspace dimension s, in 1..min(T, d)-1.
    true_basis : array (d, s'), optional
        When given, every history entry also holds the spectral sin Θ to it.

    Returns
    -------
    SubspaceResult
        ``basis`` (d, s), the per-task estimates θ_t as ``coef`` (T, d) and a single history entry
        (iteration 0); ``converged`` is False, with an :class:`~metalab.core.results.AssumptionWarning`,
        when the inputs are far from isotropic (the condition number of their pooled second moment above
        ``ISOTROPY_SLACK`` times what isotropic inputs of that size reach, :func:`isotropy`): the moment
        identity above then no longer holds and the basis is biased.

    Raises
    ------
    ValueError
        When the data or an argument is malformed (the message names it and what is allowed).

    Examples
    --------
    A one-pass estimate, rough with few samples per task and sharper with many tasks:

    >>> from metalab.data.linear import hps_tasks
    >>> from metalab.subspace import sin_theta
    >>> tasks = hps_tasks(d=10, rank=2, n_tasks=300, n_samples=30, seed=0)
    >>> result = method_of_moments(tasks.X, tasks.y, rank=2)
    >>> result.n_iter, tuple(result.basis.shape)
    (0, (10, 2))
    >>> sin_theta(result.basis, tasks.basis) < 0.3
    True
    """
    data = as_task_tensors(X, y)
    rank = check_rank(rank, data)
    truth = check_true_basis(true_basis, data)

    def states() -> Iterator[State]:
        yield _with_heads(data, _mom_basis(data, rank))

    result = run("mom", states(), max_iter=0, tol=None, true_basis=truth)
    kappa, isotropic = isotropy(data)
    if kappa > ISOTROPY_SLACK * isotropic:
        warnings.warn(
            f"mom assumes isotropic inputs (E[xxᵀ] = I), but the tasks' pooled E[xxᵀ] has condition number "
            f"{kappa:.3g} where isotropic inputs of this size reach about {isotropic:.3g}: its basis is biased; "
            "converged=False. Whiten the inputs, or use meta_sp or altmin_gd.",
            AssumptionWarning,
            stacklevel=2,
        )
        result = dataclasses.replace(result, converged=False)
    return result


# ---------------------------------------------------------------------------------------------
# AltMin / AltMinGD (Thekumparampil, Jain, Netrapalli & Oh 2021)


def _altmin_states(data: TaskTensors, U: torch.Tensor, step: float | None, exact: bool) -> Iterator[State]:
    grams = data.grams() if exact else None
    rank = U.shape[1]
    # mean feature variance tr(S_t)/d over the samples (1 for standardised inputs): it makes the default
    # step invariant to a common scale of X, under which V scales by 1/c and ∇_U F does not change
    variance = float(data.X.square().sum() / (data.counts.sum() * data.dim))
    while True:
        V = data.fit_heads(U)  # v_t = (UᵀS_tU)⁻¹ Uᵀ X_tᵀy_t/m_t for every task
        coef = V @ U.T
        yield coef, U, data.loss(coef)
        if exact:
            # ∇_U F = 0:  (1/T) Σ_t S_t U v_t v_tᵀ = (1/T) Σ_t (X_tᵀy_t/m_t) v_tᵀ, a (d s) × (d s) system.
            system = torch.einsum("tab,ti,tj->aibj", grams, V, V).reshape(data.dim * rank, -1)
            rhs = torch.einsum("ta,ti->ai", data.moments(), V).reshape(-1)
            U_new = (torch.linalg.pinv(system, hermitian=True) @ rhs).reshape(data.dim, rank)
        else:
            # ∇_U F = (1/T) Σ_t (1/m_t) X_tᵀ(X_t U v_t - y_t) v_tᵀ;  default η = 1/(λ_max(VᵀV/T) tr(S)/d).
            grad = data.task_gradients(coef).T @ V / data.n_tasks
            curvature = float(torch.linalg.eigvalsh(V.T @ V / data.n_tasks)[-1]) * variance
            eta = step if step is not None else 1.0 / curvature
            U_new = U - eta * grad
        U = torch.linalg.qr(U_new).Q


def altmin_gd(
    X: Any,
    y: Any,
    rank: int,
    *,
    step_size: float | None = None,
    max_iter: int = 500,
    tol: float = 1e-10,
    init: str = "mom",
    exact: bool = False,
    seed: int = 0,
    true_basis: Any = None,
) -> SubspaceResult:
    """AltMinGD: alternate the exact head step v_t = argmin_v ||X_t U v - y_t||² with a gradient step on U,
    U ← QR(U - η ∇_U F(U, V)), η = step_size or 1/(λ_max(VᵀV/T) σ²) with σ² = tr(S_t)/d averaged over the samples
    (recomputed every iteration; σ² makes it invariant to a common scale of X).

    exact=True is AltMin: the U-step solves the (d s)-dimensional normal equations of F in U exactly.
    init: "mom" (the method-of-moments basis) or "random" (QR of a Gaussian drawn from ``seed``).
    Stops when the relative change of Θ = V Uᵀ falls below ``tol``.

    Parameters
    ----------
    X, y : arrays (T, m, d) and (T, m), or lists of T arrays (m_t, d) and (m_t,)
        The tasks' inputs and targets (a tensor keeps its device).
    rank : int
        The subspace dimension s, in 1..min(T, d)-1.
    step_size : float or None
        η > 0 for the U-step; None for 1/(λ_max(VᵀV/T) σ²).  Unused when ``exact``.
    max_iter : int
        At most this many iterations (>= 1).
    tol : float
        Stop when the relative change of Θ falls below ``tol`` (>= 0).
    init : {"mom", "random"}
        The starting basis U⁰.
    exact : bool
        False: a gradient step on U (AltMinGD); True: the exact least-squares U-step (AltMin).
    seed : int
        Seeds the random start (init="random").
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
    >>> result = altmin_gd(tasks.X, tasks.y, rank=2, init="random")
    >>> result.converged, sin_theta(result.basis, tasks.basis) < 1e-6
    (True, True)
    """
    data = as_task_tensors(X, y)
    rank = check_rank(rank, data)
    step = check_step_size(step_size, "1/(λ_max(VᵀV/T) σ²)")
    max_iter, tol = check_iterations(max_iter, tol)
    init = check_choice("init", init, ALTMIN_INITS)
    if not isinstance(exact, bool):
        raise ValueError(f"exact={exact!r} is not allowed: True (AltMin) or False (AltMinGD)")
    seed = check_seed(seed)
    truth = check_true_basis(true_basis, data)
    U0 = _mom_basis(data, rank) if init == "mom" else random_basis(data, rank, seed)
    name = "altmin" if exact else "altmin_gd"
    return run(name, _altmin_states(data, U0, step, exact), max_iter=max_iter, tol=tol, true_basis=truth)


def altmin(
    X: Any,
    y: Any,
    rank: int,
    *,
    max_iter: int = 500,
    tol: float = 1e-10,
    init: str = "mom",
    seed: int = 0,
    true_basis: Any = None,
) -> SubspaceResult:
    """AltMin: altmin_gd with the exact least-squares U-step,
    U ← QR(argmin_U F(V Uᵀ)) after each head step v_t = argmin_v ||X_t U v - y_t||².

    Parameters
    ----------
    X, y, rank, max_iter, tol, init, seed, true_basis
        As for :func:`altmin_gd`.

    Returns
    -------
    SubspaceResult
        As for :func:`altmin_gd`, with ``method="altmin"``.

    Raises
    ------
    ValueError
        When the data or an argument is malformed (the message names it and what is allowed).

    Examples
    --------
    With m = 5 < d = 10 samples per task no single task is identifiable, but the shared subspace is:

    >>> from metalab.data.linear import hps_tasks
    >>> from metalab.subspace import coef_error
    >>> tasks = hps_tasks(d=10, rank=2, n_tasks=30, n_samples=5, seed=0)
    >>> result = altmin(tasks.X, tasks.y, rank=2)
    >>> result.converged, coef_error(result.coef, tasks.coef) < 1e-6
    (True, True)
    """
    return altmin_gd(X, y, rank, max_iter=max_iter, tol=tol, init=init, exact=True, seed=seed, true_basis=true_basis)


# ---------------------------------------------------------------------------------------------
# Single-task regression and the oracle


def single_task_ols(X: Any, y: Any, rank: int, *, ridge: float = 0.0, true_basis: Any = None) -> SubspaceResult:
    """Per-task θ̂_t = argmin_θ (1/m_t)||X_t θ - y_t||² + ridge||θ||² (minimum norm when m_t < d and ridge = 0);
    basis = top-s right singular vectors of the stacked Θ̂, coef = Θ̂.

    Parameters
    ----------
    X, y : arrays (T, m, d) and (T, m), or lists of T arrays (m_t, d) and (m_t,)
        The tasks' inputs and targets (a tensor keeps its device).
    rank : int
        The subspace dimension s, in 1..min(T, d)-1.
    ridge : float
        The ridge penalty (>= 0).
    true_basis : array (d, s'), optional
        When given, every history entry also holds the spectral sin Θ to it.

    Returns
    -------
    SubspaceResult
        ``basis`` (d, s), the per-task estimates θ_t as ``coef`` (T, d) and a single history entry
        (iteration 0); ``converged`` is False, with an :class:`~metalab.core.results.AssumptionWarning`,
        when the inputs are far from isotropic (the condition number of their pooled second moment above
        ``ISOTROPY_SLACK`` times what isotropic inputs of that size reach, :func:`isotropy`): the moment
        identity above then no longer holds and the basis is biased.

    Raises
    ------
    ValueError
        When the data or an argument is malformed (the message names it and what is allowed).

    Examples
    --------
    Exact with m = 20 >= d = 10 noise-free samples per task, far off with m = 5 < d:

    >>> from metalab.data.linear import hps_tasks
    >>> from metalab.subspace import coef_error
    >>> tasks = hps_tasks(d=10, rank=2, n_tasks=30, n_samples=20, seed=0)
    >>> coef_error(single_task_ols(tasks.X, tasks.y, rank=2).coef, tasks.coef) < 1e-10
    True
    >>> few = hps_tasks(d=10, rank=2, n_tasks=30, n_samples=5, seed=0)
    >>> coef_error(single_task_ols(few.X, few.y, rank=2).coef, few.coef) > 0.5
    True
    """
    data = as_task_tensors(X, y)
    rank = check_rank(rank, data)
    ridge = check_number("ridge", ridge, strict=False)
    truth = check_true_basis(true_basis, data)

    def states() -> Iterator[State]:
        coef = data.fit_heads(torch.eye(data.dim, dtype=data.X.dtype, device=data.device), ridge)
        yield coef, top_right_singular_vectors(coef, rank), data.loss(coef)

    return run("single_task", states(), max_iter=0, tol=None, true_basis=truth)


def oracle(X: Any, y: Any, rank: int, *, true_basis: Any) -> SubspaceResult:
    """The true subspace (its own width, whatever ``rank``), with per-task least-squares heads on X_t B*:
    θ_t = B* argmin_w ||X_t B* w - y_t||².

    Parameters
    ----------
    X, y : arrays (T, m, d) and (T, m), or lists of T arrays (m_t, d) and (m_t,)
        The tasks' inputs and targets (a tensor keeps its device).
    rank : int
        The subspace dimension s, in 1..min(T, d)-1.
    true_basis : array (d, s')
        The true basis (required); its column space is the returned basis.

    Returns
    -------
    SubspaceResult
        ``basis`` (d, s), the per-task estimates θ_t as ``coef`` (T, d) and a single history entry
        (iteration 0); ``converged`` is False, with an :class:`~metalab.core.results.AssumptionWarning`,
        when the inputs are far from isotropic (the condition number of their pooled second moment above
        ``ISOTROPY_SLACK`` times what isotropic inputs of that size reach, :func:`isotropy`): the moment
        identity above then no longer holds and the basis is biased.

    Raises
    ------
    ValueError
        When ``true_basis`` is None, or the data or an argument is malformed.

    Examples
    --------
    >>> from metalab.data.linear import hps_tasks
    >>> from metalab.subspace import coef_error
    >>> tasks = hps_tasks(d=10, rank=2, n_tasks=30, n_samples=20, noise=0.1, seed=0)
    >>> result = oracle(tasks.X, tasks.y, rank=2, true_basis=tasks.basis)
    >>> tuple(result.basis.shape), coef_error(result.coef, tasks.coef) < 0.1
    ((10, 2), True)
    """
    data = as_task_tensors(X, y)
    check_rank(rank, data)
    if true_basis is None:
        raise ValueError("true_basis=None is not allowed: the oracle needs the true (d, s) basis")
    truth = check_basis("true_basis", true_basis, data.dim, data.device)

    def states() -> Iterator[State]:
        yield _with_heads(data, truth)

    return run("oracle", states(), max_iter=0, tol=None, true_basis=truth)
