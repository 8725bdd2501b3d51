"""SVD helpers shared by the subspace methods, and the rank-s projection by subspace iteration.

The best rank-s approximation of Z (T, d) is H_s(Z) = U_s Σ_s V_sᵀ = (Z V_s) V_sᵀ (Eckart-Young).  A thin
SVD finds V_s in O(T d min(T, d)); subspace iteration with a Rayleigh-Ritz step finds it in O(T d k)
per sweep from a block of k > s orthonormal columns, and warm-started from the previous iterate's block
an iterative method such as Meta-SP needs only a few sweeps per iteration.
"""

from __future__ import annotations

import torch

from metalab.core.checks import check_choice
from metalab.core.seeding import generator

#: converged when the Ritz residual bounds sin Θ(V_s, the top-s right singular subspace) by this
RITZ_TOL = 1e-10
#: sweeps of subspace iteration before the caller should fall back to a thin SVD
MAX_SWEEPS = 10
#: how RankProjection computes H_s
PROJECTIONS = ("subspace", "svd")


def orthonormal_columns(B: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis (d, s) of the column space of B (d, s): the left singular vectors of B."""
    return torch.linalg.svd(B, full_matrices=False).U


def top_right_singular_vectors(Z: torch.Tensor, s: int) -> torch.Tensor:
    """The top-s right singular vectors of Z (T, d), as the columns of a (d, s) matrix."""
    return torch.linalg.svd(Z, full_matrices=False).Vh[:s].T


def block_size(rank: int, shape: tuple[int, int]) -> int:
    """k = s + max(3, s/2), at most min(T, d): the oversampling makes a sweep contract the error in V_s by
    about σ_{k+1}/σ_s, which stays well below 1 when σ_s and σ_{s+1} are close.  (Measured on Meta-SP's
    iterates, d = 100 and 400, s = 5: 8, 10 and 15 columns took the same sweeps, so the smallest wins.)"""
    return min(rank + max(3, rank // 2), min(shape))


def subspace_iteration(
    Z: torch.Tensor, rank: int, block: torch.Tensor, *, tol: float = RITZ_TOL, max_sweeps: int = MAX_SWEEPS
) -> tuple[torch.Tensor, torch.Tensor, int] | None:
    """The top-s right singular subspace of Z (T, d) by subspace iteration from ``block`` (d, k), k > s.
    One sweep, O(T d k):

        Q = orth(Z V),   Qᵀ Z = Ũ Σ̃ Wᵀ (a k × d SVD),   V ← W        (Rayleigh-Ritz)

    Converged when the Ritz residual E = Z V_s - Q Ũ_s Σ̃_s (the residual Zᵀ Q Ũ_s - V_s Σ̃_s is zero by
    construction) bounds sin Θ(V_s, top-s) in the Davis-Kahan form ||E||_F / (σ̃_s - σ̃_k) <= ``tol``; a
    small gap σ̃_s - σ̃_k (a flat spectrum across the block) keeps it from converging.

    Returns (Z V_s (T, s), V (d, k), the sweeps taken), so that H_s(Z) = (Z V_s) V_sᵀ and V warm-starts
    the next call, or None after ``max_sweeps`` sweeps without convergence.
    """
    product = Z @ block
    for sweep in range(1, max_sweeps + 1):
        Q = torch.linalg.qr(product).Q
        left, ritz_values, right = torch.linalg.svd(Q.T @ Z, full_matrices=False)
        block = right.T
        product = Z @ block  # the residual's Z V_s, and the next sweep's start
        residual = product[:, :rank] - (Q @ left[:, :rank]) * ritz_values[:rank]
        if float(torch.linalg.norm(residual)) <= tol * float(ritz_values[rank - 1] - ritz_values[-1]):
            return product[:, :rank], block, sweep
    return None


class RankProjection:
    """H_s(Z) = (Z V_s) V_sᵀ for a sequence of matrices Z (T, d) that change little from one call to the
    next (the iterates of a method): by a thin SVD (``method="svd"``), or by :func:`subspace_iteration`
    from the block the previous call converged to (``method="subspace"``; a seeded Gaussian block the
    first time), falling back to the thin SVD, whose top-k right singular vectors then seed the next call.

    ``sweeps`` and ``fallbacks`` count the subspace-iteration sweeps and the thin SVDs taken so far.
    """

    def __init__(self, rank: int, shape: tuple[int, int], method: str, *, dtype: torch.dtype, device: torch.device):
        self.rank, self.method, self.sweeps, self.fallbacks = rank, check_choice("method", method, PROJECTIONS), 0, 0
        gaussian = torch.randn(
            shape[1], block_size(rank, shape), generator=generator(0, "rank_projection"), dtype=dtype
        )
        self.block = torch.linalg.qr(gaussian).Q.to(device)

    def __call__(self, Z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Z V_s (T, s), V_s (d, s)): H_s(Z) is their product Z V_s V_sᵀ."""
        found = subspace_iteration(Z, self.rank, self.block) if self.method == "subspace" else None
        if found is None:
            self.fallbacks += self.method == "subspace"
            U, S, Vh = torch.linalg.svd(Z, full_matrices=False)
            scores, self.block = U[:, : self.rank] * S[: self.rank], Vh[: self.block.shape[1]].T
        else:
            scores, self.block, sweeps = found
            self.sweeps += sweeps
        return scores, self.block[:, : self.rank]
