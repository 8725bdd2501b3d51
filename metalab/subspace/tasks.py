"""Multi-task regression data in one padded tensor form, and the argument checks every method shares.

Task ``t`` has ``m_t`` samples ``X_t`` (m_t, d) and ``y_t`` (m_t,).  All tasks are stored zero-padded to
``X`` (T, M, d) and ``y`` (T, M) with ``counts[t] = m_t``: task t's samples fill m_t of the M rows
(the first m_t after conversion) and its other rows are zero.  A zero row adds nothing to ``X_tᵀX_t``,
``X_tᵀy_t`` or to a residual ``X_t θ - y_t``, so every batched formula below is exact for unequal
``m_t`` as long as per-task sums are divided by ``m_t`` rather than by ``M``.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from metalab.core.checks import as_float_tensor, check_number
from metalab.core.cost import check_allocation
from metalab.subspace.linalg import orthonormal_columns

DTYPE = torch.float64


@dataclass(frozen=True)
class TaskTensors:
    """Zero-padded tasks: ``X`` (T, M, d), ``y`` (T, M), ``counts`` (T,) holding m_t (float64).

    Build one with :func:`as_task_tensors`.

    Examples
    --------
    F(0) = (1/2T) Σ_t ||y_t||²/m_t, the padded rows adding nothing:

    >>> import torch
    >>> data = as_task_tensors([[[1, 0], [0, 1], [1, 1]], [[2, 2]]], [[1, 2, 3], [4]])
    >>> round(float(data.loss(torch.zeros(2, 2, dtype=torch.float64))), 4)  # (14/3 + 16/1) / 4
    5.1667
    """

    X: torch.Tensor
    y: torch.Tensor
    counts: torch.Tensor

    @property
    def n_tasks(self) -> int:
        return self.X.shape[0]

    @property
    def dim(self) -> int:
        return self.X.shape[2]

    @property
    def device(self) -> torch.device:
        return self.X.device

    def residual(self, coef: torch.Tensor) -> torch.Tensor:
        """r_t = X_t θ_t - y_t for every task, (T, M); zero on padded rows."""
        return torch.einsum("tmd,td->tm", self.X, coef) - self.y

    def loss(self, coef: torch.Tensor) -> torch.Tensor:
        """F(Θ) = (1/2T) Σ_t (1/m_t) ||X_t θ_t - y_t||²."""
        return self.loss_from_residual(self.residual(coef))

    def loss_from_residual(self, residual: torch.Tensor) -> torch.Tensor:
        """F(Θ) = (1/2T) Σ_t (1/m_t) ||r_t||² from the residuals r = residual(Θ), (T, M)."""
        return 0.5 * (residual.square().sum(1) / self.counts).mean()

    def task_gradients(self, coef: torch.Tensor) -> torch.Tensor:
        """Rows g_t = (1/m_t) X_tᵀ(X_t θ_t - y_t), (T, d): each task's own gradient (T times ∇F)."""
        return self.gradients_from_residual(self.residual(coef))

    def gradients_from_residual(self, residual: torch.Tensor) -> torch.Tensor:
        """Rows g_t = (1/m_t) r_tᵀ X_t, (T, d), from the residuals r = residual(Θ), (T, M).  Written as a
        batch of (1, M) @ (M, d) products: einsum("tmd,tm->td") and X_tᵀ r_t both take a transposed-X
        path that measured 10-20x slower on the CPU."""
        return (residual[:, None, :] @ self.X)[:, 0] / self.counts[:, None]

    def moments(self) -> torch.Tensor:
        """Rows X_tᵀ y_t / m_t, (T, d)."""
        return torch.einsum("tmd,tm->td", self.X, self.y) / self.counts[:, None]

    def grams(self) -> torch.Tensor:
        """S_t = X_tᵀ X_t / m_t, (T, d, d)."""
        return torch.einsum("tma,tmb->tab", self.X, self.X) / self.counts[:, None, None]

    def smoothness(self) -> float:
        """L = max_t λ_max(X_tᵀ X_t / m_t) = max_t ||X_t||₂² / m_t."""
        return float((torch.linalg.matrix_norm(self.X, ord=2).square() / self.counts).max())

    def fit_heads(self, basis: torch.Tensor, ridge: float = 0.0) -> torch.Tensor:
        """Per-task heads on projected features Z_t = X_t B, (T, s).

        ridge = 0: the minimum-norm least-squares solution w_t = Z_t⁺ y_t (also when m_t < s);
        ridge > 0: w_t = (Z_tᵀZ_t/m_t + ridge·I)⁻¹ Z_tᵀy_t/m_t.
        """
        Z = self.X @ basis
        if ridge == 0:
            return (torch.linalg.pinv(Z) @ self.y[:, :, None])[:, :, 0]
        gram = Z.transpose(1, 2) @ Z / self.counts[:, None, None]
        gram = gram + ridge * torch.eye(basis.shape[1], dtype=gram.dtype, device=gram.device)
        rhs = torch.einsum("tms,tm->ts", Z, self.y) / self.counts[:, None]
        return torch.linalg.solve(gram, rhs)


# ---------------------------------------------------------------------------------------------
# Converting and checking task data


def _check_finite(name: str, tensor: torch.Tensor) -> None:
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")


def _padded_from_lists(X: Sequence, y: Sequence) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n_tasks = len(X)
    if n_tasks == 0:
        raise ValueError("X is an empty list; expected T >= 1 arrays of shape (m_t, d)")
    if isinstance(y, (torch.Tensor, np.ndarray)) or len(y) != n_tasks:
        got = f"a list of {len(y)} arrays" if isinstance(y, (list, tuple)) else f"of type {type(y).__name__}"
        raise ValueError(f"y is {got}; expected a list of {n_tasks} arrays (one per task in X)")
    first = X[0]
    device = first.device if isinstance(first, torch.Tensor) else torch.device("cpu")
    xs = [as_float_tensor(f"X[{t}]", x, device) for t, x in enumerate(X)]
    dim = xs[0].shape[-1] if xs[0].ndim == 2 else None
    for t, x in enumerate(xs):
        if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1 or x.shape[1] != dim:
            expected = f"(m_t, d) with d = {dim}" if dim else "(m_t, d) with m_t >= 1 and d >= 1"
            raise ValueError(f"X[{t}] has shape {tuple(x.shape)}; expected {expected}")
    ys = [as_float_tensor(f"y[{t}]", v, device) for t, v in enumerate(y)]
    for t, (x, v) in enumerate(zip(xs, ys, strict=True)):
        if tuple(v.shape) != (x.shape[0],):
            raise ValueError(f"y[{t}] has shape {tuple(v.shape)}; expected ({x.shape[0]},) to match X[{t}]")
    counts = torch.tensor([x.shape[0] for x in xs], dtype=DTYPE, device=device)
    longest = int(counts.max())
    check_allocation(
        f"padding {n_tasks} tasks to their longest ({longest} samples, d={dim})", 8.0 * n_tasks * longest * (dim + 1)
    )
    X_pad = torch.zeros(n_tasks, longest, dim, dtype=DTYPE, device=device)
    y_pad = torch.zeros(n_tasks, longest, dtype=DTYPE, device=device)
    for t, (x, v) in enumerate(zip(xs, ys, strict=True)):  # one copy per task at conversion time, not in a hot path
        X_pad[t, : x.shape[0]] = x
        y_pad[t, : x.shape[0]] = v
    return X_pad, y_pad, counts


def as_task_tensors(X: Any, y: Any) -> TaskTensors:
    """Validate task data and return it zero-padded with per-task counts.

    ``X`` is (T, m, d) and ``y`` is (T, m) (tensors keep their device, arrays go to the CPU), or ``X`` is
    a list of T arrays (m_t, d) and ``y`` a list of T arrays (m_t,).  Values must be finite.

    Parameters
    ----------
    X : tensor or array (T, m, d), or a list of T arrays (m_t, d)
        The tasks' inputs.
    y : tensor or array (T, m), or a list of T arrays (m_t,)
        The tasks' targets, in the same form as ``X``.

    Returns
    -------
    TaskTensors
        ``X`` (T, M, d) and ``y`` (T, M) in float64, M = max_t m_t, zero-padded, with ``counts`` m_t.

    Raises
    ------
    ValueError
        When a shape does not match, a value is not finite, or one of ``X``, ``y`` is a list and the other not.

    Examples
    --------
    Two tasks in R^2 with 3 and 1 samples:

    >>> data = as_task_tensors([[[1, 0], [0, 1], [1, 1]], [[2, 2]]], [[1, 2, 3], [4]])
    >>> tuple(data.X.shape), data.counts.tolist()
    ((2, 3, 2), [3.0, 1.0])
    >>> data.y.tolist()
    [[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]]
    >>> as_task_tensors([[[1, 0]]], [[1, 2]])
    Traceback (most recent call last):
        ...
    ValueError: y[0] has shape (2,); expected (1,) to match X[0]
    """
    if isinstance(X, (list, tuple)):
        X_pad, y_pad, counts = _padded_from_lists(X, y)
    else:
        X_pad = as_float_tensor("X", X, None)
        if X_pad.ndim != 3 or min(X_pad.shape) < 1:
            raise ValueError(
                f"X has shape {tuple(X_pad.shape)}; expected (T, m, d) = (tasks, samples per task, features) "
                "with every size >= 1, or a list of T arrays of shape (m_t, d)"
            )
        if isinstance(y, (list, tuple)):
            raise ValueError("y is a list but X is a single array; pass both as lists or both as arrays")
        y_pad = as_float_tensor("y", y, X_pad.device)
        if y_pad.shape != X_pad.shape[:2]:
            raise ValueError(f"y has shape {tuple(y_pad.shape)}; expected (T, m) = {tuple(X_pad.shape[:2])} to match X")
        counts = torch.full((X_pad.shape[0],), float(X_pad.shape[1]), dtype=DTYPE, device=X_pad.device)
    _check_finite("X", X_pad)
    _check_finite("y", y_pad)
    _check_scale("X", X_pad)
    _check_scale("y", y_pad)
    return TaskTensors(X_pad, y_pad, counts)


#: the largest and smallest magnitude (the largest |entry|) task data may have: the methods form squares
#: and products of squares (X_tᵀX_t, its eigenvalues, Θ's singular values), which overflow or underflow
#: float64 (about 1e±308) outside this range
SCALE_LIMITS = (1e-100, 1e100)


def _check_scale(name: str, tensor: torch.Tensor) -> None:
    """All-zero data carries no information about the subspace; data whose magnitude leaves
    ``SCALE_LIMITS`` would overflow or underflow inside the methods.  Both raise ValueError."""
    largest = float(tensor.abs().max())
    if largest == 0.0:
        raise ValueError(f"{name} is all zeros: it carries no information about the shared subspace")
    low, high = SCALE_LIMITS
    if not low <= largest <= high:
        raise ValueError(
            f"{name} has largest magnitude {largest:.3g}, outside {low:g}..{high:g}: squares of it over- or "
            f"underflow float64; rescale {name} (a common factor does not change the subspace)"
        )


# ---------------------------------------------------------------------------------------------
# Task-specific checks (scalar checks live in metalab.core.checks)


def check_rank(rank: Any, data: TaskTensors) -> int:
    """rank s in 1..min(T, d)-1: a proper subspace, and fewer directions than tasks."""
    top = min(data.n_tasks, data.dim) - 1
    if isinstance(rank, numbers.Integral) and not isinstance(rank, bool) and 1 <= rank <= top:
        return int(rank)
    allowed = f"1..{top}" if top >= 1 else f"none, since T = {data.n_tasks} and d = {data.dim} (need both >= 2)"
    raise ValueError(f"rank={rank!r} is not allowed: an integer in 1..min(T, d)-1 = {allowed}")


def check_basis(name: str, basis: Any, dim: int, device: torch.device, orthonormalize: bool = True) -> torch.Tensor:
    """A finite (d, s) matrix with 1 <= s <= d; by default replaced by orthonormal columns spanning the same space."""
    tensor = as_float_tensor(name, basis, device)
    if tensor.ndim != 2 or tensor.shape[0] != dim or not 1 <= tensor.shape[1] <= dim:
        raise ValueError(f"{name} has shape {tuple(tensor.shape)}; expected (d, s) = ({dim}, s) with 1 <= s <= {dim}")
    _check_finite(name, tensor)
    return orthonormal_columns(tensor) if orthonormalize else tensor


def check_true_basis(true_basis: Any, data: TaskTensors) -> torch.Tensor | None:
    """None, or the true basis as an orthonormal (d, s) tensor on the data's device."""
    return None if true_basis is None else check_basis("true_basis", true_basis, data.dim, data.device)


def check_step_size(step_size: Any, default: str) -> float | None:
    """None (use ``default``, described in the message) or a finite number > 0."""
    if step_size is None:
        return None
    return check_number("step_size", step_size, hint=f", or None for the default {default}")
