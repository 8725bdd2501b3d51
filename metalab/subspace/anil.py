"""ANIL (Raghu et al. 2020) for the linear model f(x) = wᵀBᵀx, B (d, k), head w (k,), k = rank.

Each outer iteration splits every task's samples at random into a support set (a fraction
``support_fraction`` of them) and a query set, then, for all tasks at once,

    inner (head only):  w_t ← w_t - α (1/n_t) BᵀX_tᵀ(X_t B w_t - y_t)   (``inner_steps`` times, from w_t = w₀)
    outer:              (B, w₀) ← Adam step on  L(B, w₀) = (1/2T) Σ_t (1/q_t) ||X_t^q B w_t - y_t^q||².

second_order=True differentiates through the inner steps; second_order=False is first-order ANIL,
which treats the adapted heads as constants (∂w_t/∂B = 0, ∂w_t/∂w₀ = I).  The estimate is the
column space of the learned B; ``coef`` rows are B w_t with the heads adapted on the last support sets.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from metalab.core.checks import check_int, check_number, check_seed
from metalab.core.seeding import generator
from metalab.subspace.linalg import orthonormal_columns
from metalab.subspace.result import State, SubspaceResult, run
from metalab.subspace.tasks import (
    TaskTensors,
    as_task_tensors,
    check_rank,
    check_true_basis,
)


def anil_meta_loss(
    B: torch.Tensor,
    head: torch.Tensor,
    support: TaskTensors,
    query: TaskTensors,
    *,
    inner_lr: float,
    inner_steps: int,
    second_order: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The query loss after adapting the head on each support set, and the adapted heads (T, k):

        w_t ← w_t - α (1/n_t) BᵀX_tᵀ(X_t B w_t - y_t)  (``inner_steps`` times from w_t = ``head``),
        L = (1/2T) Σ_t (1/q_t) ||X_t^q B w_t - y_t^q||².

    Parameters
    ----------
    B : tensor (d, k)
        The shared feature map.
    head : tensor (k,)
        The initial head w₀ every task adapts from.
    support, query : TaskTensors
        The same T tasks' support and query samples (see :func:`as_task_tensors`).
    inner_lr : float
        The inner step size α.
    inner_steps : int
        The number of head-only gradient steps (0 scores ``head`` itself).
    second_order : bool
        Differentiate through the inner steps (True) or treat the adapted heads as constants (False).

    Returns
    -------
    loss : tensor ()
        L, differentiable in ``B`` and ``head``.
    heads : tensor (T, k)
        The adapted heads w_t.

    Examples
    --------
    On the true subspace, one inner step from w₀ = 0 already lowers the query loss:

    >>> import torch
    >>> from metalab.data.linear import hps_tasks
    >>> from metalab.subspace import as_task_tensors
    >>> tasks = hps_tasks(d=10, rank=2, n_tasks=30, n_samples=20, seed=0)
    >>> support = as_task_tensors(tasks.X[:, :10], tasks.y[:, :10])
    >>> query = as_task_tensors(tasks.X[:, 10:], tasks.y[:, 10:])
    >>> head = torch.zeros(2, dtype=torch.float64)
    >>> settings = dict(inner_lr=0.5, second_order=True)
    >>> before, _ = anil_meta_loss(tasks.basis, head, support, query, inner_steps=0, **settings)
    >>> after, heads = anil_meta_loss(tasks.basis, head, support, query, inner_steps=1, **settings)
    >>> tuple(heads.shape), bool(after < 0.5 * before)
    ((30, 2), True)
    """
    features = support.X @ B  # (T, M, k)
    heads = head.expand(support.n_tasks, -1)
    for _ in range(inner_steps):  # sequential inner steps; tasks are batched
        residual = torch.einsum("tmk,tk->tm", features, heads) - support.y
        heads = heads - inner_lr * torch.einsum("tmk,tm->tk", features, residual) / support.counts[:, None]
    if not second_order:
        heads = head + (heads - head).detach()
    return query.loss(heads @ B.T), heads


def _split(data: TaskTensors, n_support: torch.Tensor, gen: torch.Generator) -> tuple[TaskTensors, TaskTensors]:
    """A random support/query partition of every task's samples (drawn on the CPU for device-independence)."""
    positions = torch.arange(data.X.shape[1], device=data.device)
    real = positions[None, :] < data.counts[:, None]
    keys = torch.rand(data.X.shape[:2], generator=gen, dtype=data.X.dtype).to(data.device)
    order = keys.masked_fill(~real, torch.inf).argsort(1).argsort(1)
    in_support = order < n_support[:, None]
    in_query = real & ~in_support

    def part(mask: torch.Tensor, counts: torch.Tensor) -> TaskTensors:
        return TaskTensors(data.X * mask[:, :, None], data.y * mask, counts)

    return part(in_support, n_support), part(in_query, data.counts - n_support)


def _anil_states(
    data: TaskTensors, B: torch.Tensor, head: torch.Tensor, optimizer: torch.optim.Optimizer, n_support: torch.Tensor,
    gen: torch.Generator, **inner: Any,
) -> Iterator[State]:  # fmt: skip
    while True:
        support, query = _split(data, n_support, gen)
        loss, heads = anil_meta_loss(B, head, support, query, **inner)
        yield (heads @ B.T).detach(), orthonormal_columns(B.detach()), loss.detach()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def anil_linear(
    X: Any,
    y: Any,
    rank: int,
    *,
    second_order: bool = True,
    inner_lr: float = 0.5,
    inner_steps: int = 1,
    outer_lr: float = 0.01,
    max_iter: int = 500,
    support_fraction: float = 0.5,
    seed: int = 0,
    true_basis: Any = None,
) -> SubspaceResult:
    """Linear ANIL (see the module docstring): ``max_iter`` Adam steps of size ``outer_lr`` on the
    meta-loss, each with ``inner_steps`` head-only gradient steps of size ``inner_lr`` per task.
    Every task needs at least 2 samples (one support, one query).  There is no tolerance: the run
    uses its full budget, and ``converged`` is False only when it diverged.

    Parameters
    ----------
    X, y : arrays (T, m, d) and (T, m), or lists of T arrays (m_t, d) and (m_t,)
        The tasks' inputs and targets (a tensor keeps its device); m_t >= 2.
    rank : int
        The subspace dimension k, in 1..min(T, d)-1.
    second_order : bool
        ANIL (True) or first-order ANIL (False).
    inner_lr : float
        The inner (head) step size α > 0.
    inner_steps : int
        Head-only gradient steps per outer iteration (>= 1).
    outer_lr : float
        The Adam step size (> 0).
    max_iter : int
        The number of outer iterations (>= 1).
    support_fraction : float
        The share of each task's samples drawn into its support set, in (0, 1).
    seed : int
        Seeds the initial B and the support/query splits.
    true_basis : array (d, s'), optional
        When given, every history entry also holds the spectral sin Θ to it.

    Returns
    -------
    SubspaceResult
        ``basis`` the column space of B (d, k), ``coef`` rows B w_t (T, d) with the heads adapted on
        the last support sets, one ``history`` entry per iteration (the objective is the meta-loss).

    Raises
    ------
    ValueError
        When a task has fewer than 2 samples, or the data or an argument is malformed.

    Examples
    --------
    From a random start, 100 outer steps move B most of the way to the true subspace:

    >>> from metalab.data.linear import hps_tasks
    >>> tasks = hps_tasks(d=10, rank=2, n_tasks=30, n_samples=20, seed=0)
    >>> result = anil_linear(tasks.X, tasks.y, rank=2, outer_lr=0.05, max_iter=100, true_basis=tasks.basis)
    >>> result.n_iter, result.converged
    (100, True)
    >>> result.history[0]["sin_theta"] > 0.9, result.history[-1]["sin_theta"] < 0.5
    (True, True)
    """
    data = as_task_tensors(X, y)
    rank = check_rank(rank, data)
    if not isinstance(second_order, bool):
        raise ValueError(f"second_order={second_order!r} is not allowed: True (ANIL) or False (first-order ANIL)")
    inner_lr = check_number("inner_lr", inner_lr)
    inner_steps = check_int("inner_steps", inner_steps, 1)
    outer_lr = check_number("outer_lr", outer_lr)
    max_iter = check_int("max_iter", max_iter, 1)
    support_fraction = check_number("support_fraction", support_fraction, high=1.0)
    seed = check_seed(seed)
    truth = check_true_basis(true_basis, data)
    fewest = int(data.counts.min())
    if fewest < 2:
        raise ValueError(f"X has a task with {fewest} sample; ANIL needs at least 2 per task (support and query)")
    gen = generator(seed, "anil_linear")
    B = torch.linalg.qr(torch.randn(data.dim, rank, generator=gen, dtype=data.X.dtype)).Q.to(data.device)
    B.requires_grad_()
    head = torch.zeros(rank, dtype=data.X.dtype, device=data.device, requires_grad=True)
    optimizer = torch.optim.Adam([B, head], lr=outer_lr)
    n_support = torch.minimum((support_fraction * data.counts).round().clamp(min=1.0), data.counts - 1)
    states = _anil_states(
        data, B, head, optimizer, n_support, gen, inner_lr=inner_lr, inner_steps=inner_steps, second_order=second_order
    )
    zero = float(data.loss(torch.zeros(data.n_tasks, data.dim, dtype=data.X.dtype, device=data.device)))
    name = "anil" if second_order else "anil_fo"
    return run(name, states, max_iter=max_iter, tol=None, true_basis=truth, baseline=zero)
