"""Linear multi-task regression with hard parameter sharing (HPS).

Every task shares an s-dimensional subspace col(B) of R^d, B (d, s) with orthonormal columns:

    y_ti = x_tiᵀ B w_t + σ ε_ti,   x_ti ~ N(0, I_d),  w_t ~ N(0, I_s / s),  ε_ti ~ N(0, 1),

so θ_t = B w_t has E||θ_t||² = 1.  B is Q from the QR factorisation of a d × s Gaussian matrix.
All randomness comes from a local torch.Generator seeded with ``seed`` and is drawn on the CPU in
float64, so the same seed gives the same tasks on every device and in every dtype.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from metalab.core.checks import as_float_tensor, check_int, check_number, check_seed
from metalab.core.device import resolve_device
from metalab.core.seeding import generator

DTYPES = (torch.float32, torch.float64)


@dataclass
class LinearTasks:
    X: torch.Tensor  # (T, m, d)
    y: torch.Tensor  # (T, m)
    basis: torch.Tensor  # (d, s), orthonormal columns
    head: torch.Tensor  # (T, s)
    coef: torch.Tensor  # (T, d) = head @ basis.T
    noise: float  # σ

    def new_tasks(self, n_tasks: int, n_samples: int, seed: int) -> LinearTasks:
        """Fresh tasks (new heads, inputs and noise) from the same subspace, e.g. for few-shot evaluation."""
        return hps_tasks(
            self.basis.shape[0], self.basis.shape[1], n_tasks, n_samples, self.noise, seed,
            basis=self.basis, dtype=self.X.dtype, device=self.X.device,
        )  # fmt: skip


def hps_tasks(
    d: int,
    rank: int,
    n_tasks: int,
    n_samples: int,
    noise: float = 0.0,
    seed: int = 0,
    *,
    basis: Any = None,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> LinearTasks:
    """Sample T = ``n_tasks`` HPS regression tasks with m = ``n_samples`` samples each (see the module docstring).

    ``basis`` (d, rank) with orthonormal columns fixes the subspace instead of drawing it.
    """
    d = check_int("d", d, 1)
    rank = check_int("rank", rank, 1, d, hint=" (the subspace dimension s, at most d)")
    n_tasks = check_int("n_tasks", n_tasks, 1)
    n_samples = check_int("n_samples", n_samples, 1)
    noise = check_number("noise", noise, strict=False)
    seed = check_seed(seed)
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not allowed: torch.float32 or torch.float64")
    device = resolve_device(device)
    gen = generator(seed, "hps_tasks")
    if basis is None:
        B = torch.linalg.qr(torch.randn(d, rank, generator=gen, dtype=torch.float64)).Q
    else:
        B = as_float_tensor("basis", basis, torch.device("cpu"))
        if B.shape != (d, rank):
            raise ValueError(f"basis has shape {tuple(B.shape)}; expected (d, rank) = ({d}, {rank})")
        gap = (
            float(torch.linalg.matrix_norm(B.T @ B - torch.eye(rank, dtype=B.dtype), ord=2))
            if B.isfinite().all()
            else float("inf")
        )
        if gap > 1e-6:
            raise ValueError(
                f"basis does not have orthonormal columns (||BᵀB - I||₂ = {gap:.3g}); pass an orthonormal basis"
            )
    head = torch.randn(n_tasks, rank, generator=gen, dtype=torch.float64) / rank**0.5
    X = torch.randn(n_tasks, n_samples, d, generator=gen, dtype=torch.float64)
    coef = head @ B.T
    y = torch.einsum("tmd,td->tm", X, coef) + noise * torch.randn(
        n_tasks, n_samples, generator=gen, dtype=torch.float64
    )
    move = dict(dtype=dtype, device=device)
    return LinearTasks(X.to(**move), y.to(**move), B.to(**move), head.to(**move), coef.to(**move), noise)
