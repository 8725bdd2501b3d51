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
    """Sparsity of heads (B, ...) (one per task; a single head is a batch of one).

    For MLSR's ``recovered_head`` (B, p + 1, m) pass ``heads[:, :-1]`` to leave out the bias row.
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

    Columns are normalised to unit length (columns of norm <= ``zero_tol`` are dropped and counted);
    ``trials`` random sets of ``k`` distinct columns (seeded) give the singular values.
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
    k = check_int("k", k, 1, max(p_live, 1), hint=f" (the number of non-zero columns, {p_live})")
    if p_live == 0:
        raise ValueError("Phi has no column with norm above zero_tol")
    gram = cols.T @ cols
    coherence = float((gram - torch.eye(p_live, dtype=gram.dtype)).abs().max()) if p_live > 1 else 0.0
    g = generator(seed, "rip")
    subsets = torch.argsort(torch.rand(trials, p_live, generator=g), dim=1)[:, :k]
    sub = cols.T[subsets].transpose(1, 2)  # (trials, n, k)
    sv = torch.linalg.svdvals(sub)
    smax, smin = sv[:, 0], (sv[:, -1] if k <= Phi.shape[0] else torch.zeros(trials, dtype=sv.dtype))
    delta = float(torch.maximum(smax.square() - 1, 1 - smin.square()).max())
    return RIPEstimate(coherence, delta, smin, smax, k, p_live, int((~live).sum()))
