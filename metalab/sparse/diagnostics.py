"""Diagnostics of sparse recovery: how sparse the recovered heads are, and how RIP-like a feature matrix is.

The restricted isometry constant δ_k of a matrix with unit-norm columns is the smallest δ with
(1 − δ)||s||² <= ||Φs||² <= (1 + δ)||s||² for every k-sparse s, i.e. every k-column submatrix has
squared singular values within [1 − δ, 1 + δ].  Computing it exactly is combinatorial; sampling random
k-column submatrices gives a lower bound (the worst submatrix seen), alongside the mutual coherence
μ = max_{i≠j} |⟨φ_i, φ_j⟩|, which bounds it from above: δ_k <= (k − 1) μ.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from metalab.core.checks import check_int, check_number, check_seed
from metalab.core.seeding import generator


@dataclass
class HeadSparsity:
    """``fraction``: per head, the share of entries with |w| < tol; ``mean_fraction``: its mean;
    ``magnitudes``: every |w| flattened (ready for a histogram); ``tol``."""

    fraction: torch.Tensor
    mean_fraction: float
    magnitudes: torch.Tensor
    tol: float


def head_sparsity(heads: torch.Tensor, *, tol: float = 1e-6) -> HeadSparsity:
    """Sparsity of heads, one per task.

    Parameters
    ----------
    heads : Tensor
        (B, ...), one head per task (a single head is a batch of one); for MLSR's ``recovered_head``
        (B, p + 1, m) pass ``heads[:, :-1]`` to leave out the bias row.
    tol : float
        |w| below ``tol`` counts as zero (soft-thresholding gives exact zeros).

    Returns
    -------
    HeadSparsity
    """
    if not isinstance(heads, torch.Tensor) or not heads.is_floating_point() or heads.numel() == 0:
        raise ValueError("heads is not allowed: a non-empty floating tensor (tasks, ...)")
    tol = check_number("tol", tol, strict=False)
    flat = heads.detach().reshape(heads.shape[0] if heads.ndim > 1 else 1, -1).abs()
    fraction = (flat < tol).to(flat.dtype).mean(-1)
    return HeadSparsity(fraction=fraction, mean_fraction=float(fraction.mean()), magnitudes=flat.flatten(), tol=tol)


@dataclass
class RIPEstimate:
    """``coherence`` μ; ``delta`` the δ_k estimate (max over the sampled submatrices); ``sigma_min`` and
    ``sigma_max`` per sampled submatrix; ``k``; ``live_columns`` used and ``dead_columns`` (zero norm,
    e.g. ReLU units silent on every sample) left out."""

    coherence: float
    delta: float
    sigma_min: torch.Tensor
    sigma_max: torch.Tensor
    k: int
    live_columns: int
    dead_columns: int


def rip_estimate(
    Phi: torch.Tensor, k: int, *, trials: int = 200, seed: int = 0, zero_tol: float = 1e-12
) -> RIPEstimate:
    """Coherence and a sampled restricted-isometry estimate for a feature matrix Φ (n, p) of one task.

    Parameters
    ----------
    Phi : Tensor
        (n samples, p features); columns are normalised to unit length, and columns of norm <=
        ``zero_tol`` are dropped and counted.
    k : int
        The sparsity level, 1..(non-zero columns).
    trials : int
        Random sets of ``k`` distinct columns whose singular values are computed.
    seed : int
        The seed of the sampled sets.
    zero_tol : float

    Returns
    -------
    RIPEstimate
        μ, the δ_k lower bound (the worst sampled submatrix) and the singular values.
    """
    if not isinstance(Phi, torch.Tensor) or not Phi.is_floating_point() or Phi.ndim != 2 or min(Phi.shape) < 1:
        shape = tuple(Phi.shape) if isinstance(Phi, torch.Tensor) else type(Phi).__name__
        raise ValueError(f"Phi of shape/type {shape} is not allowed: a floating tensor (n samples, p features)")
    if not bool(torch.isfinite(Phi).all()):
        raise ValueError("Phi contains non-finite values (NaN or inf)")
    trials = check_int("trials", trials, 1)
    seed = check_seed(seed)
    zero_tol = check_number("zero_tol", zero_tol, strict=False)
    Phi = Phi.detach()
    norms = Phi.norm(dim=0)
    live = norms > zero_tol
    cols = Phi[:, live] / norms[live]
    p_live = cols.shape[1]
    if p_live == 0:
        raise ValueError(f"Phi has no column with norm above zero_tol={zero_tol:g} (an all-zero Phi has no isometry)")
    k = check_int("k", k, 1, p_live, hint=f" (the number of non-zero columns, {p_live})")
    gram = cols.T @ cols
    coherence = float((gram - torch.eye(p_live, dtype=gram.dtype)).abs().max()) if p_live > 1 else 0.0
    g = generator(seed, "rip")
    subsets = torch.argsort(torch.rand(trials, p_live, generator=g), dim=1)[:, :k]
    sub = cols.T[subsets].transpose(1, 2)  # (trials, n, k)
    sv = torch.linalg.svdvals(sub)
    smax, smin = sv[:, 0], (sv[:, -1] if k <= Phi.shape[0] else torch.zeros(trials, dtype=sv.dtype))
    delta = float(torch.maximum(smax.square() - 1, 1 - smin.square()).max())
    return RIPEstimate(coherence, delta, smin, smax, k, p_live, int((~live).sum()))


def task_rip_estimates(Phi: torch.Tensor, k: int, *, trials: int = 100, seed: int = 0) -> list[RIPEstimate]:
    """:func:`rip_estimate` for every task of a batch of feature matrices Φ (B, n, p).

    Parameters
    ----------
    Phi : Tensor
        One feature matrix (n samples, p features) per task.
    k : int
        The sparsity level; a task with fewer than ``k`` non-zero columns is estimated at that
        smaller level (δ_k is only defined for k up to the number of columns).
    trials : int
        Sampled k-column submatrices per task.
    seed : int
        Task t samples with the seed ``seed + t``.

    Returns
    -------
    list[RIPEstimate]
        One estimate per task, in order.
    """
    if not isinstance(Phi, torch.Tensor) or not Phi.is_floating_point() or Phi.ndim != 3:
        shape = tuple(Phi.shape) if isinstance(Phi, torch.Tensor) else type(Phi).__name__
        raise ValueError(f"Phi of shape/type {shape} is not allowed: a floating tensor (tasks, n samples, p features)")
    k = check_int("k", k, 1)
    live = (Phi.detach().norm(dim=1) > 1e-12).sum(-1)  # (B,) non-zero columns per task
    return [
        rip_estimate(Phi[t], min(k, max(1, int(live[t]))), trials=trials, seed=seed + t) for t in range(Phi.shape[0])
    ]
