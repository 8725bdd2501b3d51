"""Small SVD helpers shared by the subspace methods."""

from __future__ import annotations

import torch


def orthonormal_columns(B: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis (d, s) of the column space of B (d, s): the left singular vectors of B."""
    return torch.linalg.svd(B, full_matrices=False).U


def top_right_singular_vectors(Z: torch.Tensor, s: int) -> torch.Tensor:
    """The top-s right singular vectors of Z (T, d), as the columns of a (d, s) matrix."""
    return torch.linalg.svd(Z, full_matrices=False).Vh[:s].T
