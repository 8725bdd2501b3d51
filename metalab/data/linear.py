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
from metalab.core.cost import check_allocation
from metalab.core.device import resolve_device
from metalab.core.seeding import generator

DTYPES = (torch.float32, torch.float64)


@dataclass
class LinearTasks:
    """Sampled HPS tasks and the truth behind them (made by :func:`hps_tasks`).

    Attributes
    ----------
    X : tensor (T, m, d)
        The inputs x_ti.
    y : tensor (T, m)
        The targets y_ti = x_tiᵀ θ_t + σ ε_ti.
    basis : tensor (d, s)
        B, orthonormal columns.
    head : tensor (T, s)
        The heads w_t.
    coef : tensor (T, d)
        θ_t = B w_t, i.e. ``head @ basis.T``.
    noise : float
        σ.
    """

    X: torch.Tensor
    y: torch.Tensor
    basis: torch.Tensor
    head: torch.Tensor
    coef: torch.Tensor
    noise: float

    def new_tasks(self, n_tasks: int, n_samples: int, seed: int) -> LinearTasks:
        """Fresh tasks (new heads, inputs and noise) from the same subspace, e.g. for few-shot evaluation.

        Parameters
        ----------
        n_tasks : int
            The number of new tasks (>= 1).
        n_samples : int
            Samples per new task (>= 1).
        seed : int
            Seeds the new heads, inputs and noise.

        Returns
        -------
        LinearTasks
            Tasks with this ``basis``, ``noise``, dtype and device.

        Examples
        --------
        >>> import torch
        >>> tasks = hps_tasks(d=10, rank=2, n_tasks=30, n_samples=20, seed=0)
        >>> new = tasks.new_tasks(n_tasks=5, n_samples=3, seed=1)
        >>> tuple(new.X.shape), torch.equal(new.basis, tasks.basis)
        ((5, 3, 10), True)
        """
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
    """Sample T = ``n_tasks`` HPS regression tasks with m = ``n_samples`` samples each (see the module docstring):

        y_ti = x_tiᵀ B w_t + σ ε_ti,   x_ti ~ N(0, I_d),  w_t ~ N(0, I_s / s),  ε_ti ~ N(0, 1).

    ``basis`` (d, rank) with orthonormal columns fixes the subspace instead of drawing it.

    Parameters
    ----------
    d : int
        The input dimension (>= 1).
    rank : int
        The subspace dimension s, in 1..d.
    n_tasks : int
        T (>= 1).
    n_samples : int
        m, samples per task (>= 1).
    noise : float
        σ (>= 0).
    seed : int
        Seeds every draw (on the CPU, in float64).
    basis : array (d, rank), optional
        A fixed B with orthonormal columns; None draws one.
    dtype : torch.float32 or torch.float64
        The dtype of the returned tensors.
    device : str or torch.device
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.

    Returns
    -------
    LinearTasks
        The inputs, targets, and the true basis, heads and coefficients.

    Raises
    ------
    ValueError
        When an argument is out of range, ``basis`` has the wrong shape or non-orthonormal columns, or
        CUDA is requested but absent.

    Examples
    --------
    >>> import torch
    >>> tasks = hps_tasks(d=10, rank=2, n_tasks=30, n_samples=20, seed=0)
    >>> tuple(tasks.X.shape), tuple(tasks.y.shape), tuple(tasks.basis.shape)
    ((30, 20, 10), (30, 20), (10, 2))
    >>> torch.allclose(tasks.y, torch.einsum("tmd,td->tm", tasks.X, tasks.coef))  # noise = 0
    True
    >>> torch.equal(hps_tasks(10, 2, 30, 20, seed=0).X, tasks.X)  # the seed fixes every draw
    True
    """
    d = check_int("d", d, 1)
    rank = check_int("rank", rank, 1, d, hint=" (the subspace dimension s, at most d)")
    n_tasks = check_int("n_tasks", n_tasks, 1)
    n_samples = check_int("n_samples", n_samples, 1)
    check_allocation(f"hps_tasks(n_tasks={n_tasks}, n_samples={n_samples}, d={d})", 16.0 * n_tasks * n_samples * d)
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
