"""Sparse recovery by proximal gradient: ISTA and FISTA, batched over tasks.

For features Φ (n, p) and targets y (n,) or (n, m) the problem is

    min_w  f(w) + Σ λ_j |w_j|,   f(w) = (1/2n) ||Φw − y||²   (loss="mse")
                                  f(w) = (1/n)  ||Φw − y||₁   (loss="mae", the robust variant)

ISTA repeats ``w ← soft(w − η ∇f(w), η λ)``; FISTA evaluates the gradient at an extrapolated point
with Nesterov's momentum sequence t_{k+1} = (1 + √(1 + 4t_k²)) / 2, which improves the rate from
O(1/k) to O(1/k²).  The default step is η = 1/L with L = λ_max(ΦᵀΦ)/n, the Lipschitz constant of ∇f
for the squared loss (computed exactly with ``eigvalsh`` on the smaller of ΦᵀΦ and ΦΦᵀ, and
differentiable, so an unrolled recovery differentiates through it).  The absolute loss is not smooth:
its steps use a subgradient with the diminishing size η/√(k+1).

Everything is plain tensor algebra with a leading task axis, so the same call serves one task, a
meta-batch of tasks (Φ (B, n, p)), and autograd through the unrolled iterations (soft-thresholding is
piecewise linear).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from metalab.core.checks import check_choice, check_int, check_number

RECOVERY_LOSSES = ("mse", "mae")
ALGORITHMS = ("ista", "fista")


@dataclass
class RecoveryResult:
    """``coef``: the recovered w, shaped like ``w0`` (per task when Φ is batched); ``step_size``: η per
    task; ``objective``: the final objective per task; ``steps``: iterations run."""

    coef: torch.Tensor
    step_size: torch.Tensor
    objective: torch.Tensor
    steps: int


def soft_threshold(z: torch.Tensor, tau: float | torch.Tensor) -> torch.Tensor:
    """``sign(z) · max(|z| − τ, 0)``, the proximal map of ``τ ||·||₁``; τ >= 0 (a number or a broadcastable tensor)."""
    return _soft(z, check_penalty("tau", tau))


def _soft(z: torch.Tensor, tau: float | torch.Tensor) -> torch.Tensor:
    return torch.sign(z) * torch.clamp(z.abs() - tau, min=0)


def check_penalty(name: str, value: Any) -> float | torch.Tensor:
    """A finite number >= 0, or a tensor of them (per-coordinate strengths)."""
    if isinstance(value, torch.Tensor):
        if (
            value.is_complex()
            or not value.is_floating_point()
            or not bool(torch.isfinite(value).all())
            or bool((value < 0).any())
        ):
            raise ValueError(f"{name} is not allowed: a finite number >= 0 or a tensor of finite numbers >= 0")
        return value
    return check_number(name, value, strict=False, hint=", or a tensor of such numbers")


def lipschitz_constant(Phi: torch.Tensor) -> torch.Tensor:
    """L = λ_max(ΦᵀΦ)/n for Φ (..., n, p), per leading index."""
    n, p = Phi.shape[-2:]
    gram = Phi.transpose(-1, -2) @ Phi if p <= n else Phi @ Phi.transpose(-1, -2)
    return torch.linalg.eigvalsh(gram)[..., -1] / n


def _as_batch(Phi: Any, y: Any, w0: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, tuple[int, ...]]:
    """Φ → (B, n, p), y → (B, n, m), w0 → (B, p, m); also the shape of the coefficients to return."""
    if not isinstance(Phi, torch.Tensor) or not Phi.is_floating_point() or Phi.ndim not in (2, 3) or min(Phi.shape) < 1:
        shape = tuple(Phi.shape) if isinstance(Phi, torch.Tensor) else type(Phi).__name__
        raise ValueError(f"Phi of shape/type {shape} is not allowed: a floating tensor (n, p) or (tasks, n, p)")
    batched = Phi.ndim == 3
    Phi_b = Phi if batched else Phi.unsqueeze(0)
    B, n, p = Phi_b.shape
    if not isinstance(y, torch.Tensor) or not y.is_floating_point() or y.ndim - batched not in (1, 2):
        raise ValueError(
            "y is not allowed: a floating tensor (n,) or (n, m), with a leading task axis when Phi has one"
        )
    vector = y.ndim - batched == 1
    y_b = (y if batched else y.unsqueeze(0)).unsqueeze(-1) if vector else (y if batched else y.unsqueeze(0))
    if tuple(y_b.shape[:2]) != (B, n):
        raise ValueError(
            f"y has shape {tuple(y.shape)}; expected it to start with {tuple(Phi.shape[:-1])} to match Phi"
        )
    out_shape = (*((B,) if batched else ()), p, *(() if vector else (y_b.shape[-1],)))
    w0_b = None
    if w0 is not None:
        if not isinstance(w0, torch.Tensor) or tuple(w0.shape) != out_shape:
            got = tuple(w0.shape) if isinstance(w0, torch.Tensor) else type(w0).__name__
            raise ValueError(f"w0 of shape/type {got} is not allowed: None or a tensor of shape {out_shape}")
        w0_b = w0.reshape(B, p, y_b.shape[-1])
    for name, t in (("Phi", Phi), ("y", y), ("w0", w0)):
        if t is not None and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return Phi_b, y_b, w0_b, out_shape


def _data_grad(Phi: torch.Tensor, y: torch.Tensor, w: torch.Tensor, loss: str) -> torch.Tensor:
    residual = Phi @ w - y
    if loss == "mae":
        residual = torch.sign(residual)
    return Phi.transpose(-1, -2) @ residual / Phi.shape[-2]


def objective(
    Phi: torch.Tensor, y: torch.Tensor, w: torch.Tensor, lam: float | torch.Tensor, loss: str = "mse"
) -> torch.Tensor:
    """The recovery objective per task (batched shapes: Φ (B, n, p), y (B, n, m), w (B, p, m))."""
    residual = Phi @ w - y
    data = residual.abs().sum((-1, -2)) if loss == "mae" else 0.5 * residual.square().sum((-1, -2))
    return data / Phi.shape[-2] + (lam * w.abs()).sum((-1, -2))


@dataclass(frozen=True)
class RecoveryIterate:
    """One ISTA/FISTA iteration: ``iteration`` k (1-based), the iterate w_k as ``coef`` (shaped like the
    result's), and ``step_size`` η per task."""

    iteration: int
    coef: torch.Tensor
    step_size: torch.Tensor


@dataclass(frozen=True)
class _Problem:
    """A checked recovery problem in batched shapes: Φ (B, n, p), y (B, n, m), the start w0 (B, p, m)."""

    Phi: torch.Tensor
    y: torch.Tensor
    w0: torch.Tensor
    lam: float | torch.Tensor
    eta: torch.Tensor
    algorithm: str
    steps: int
    loss: str
    out_shape: tuple[int, ...]


def _problem(Phi, y, lam, algorithm, steps, step_size, w0, loss) -> _Problem:
    check_choice("algorithm", algorithm, ALGORITHMS)
    check_choice("loss", loss, RECOVERY_LOSSES)
    lam = check_penalty("lam", lam)
    steps = check_int("steps", steps, 1)
    Phi_b, y_b, w0_b, out_shape = _as_batch(Phi, y, w0)
    if step_size is None:
        eta = 1.0 / lipschitz_constant(Phi_b).clamp_min(torch.finfo(Phi_b.dtype).tiny)
    else:
        eta = torch.full(
            (Phi_b.shape[0],), check_number("step_size", step_size), dtype=Phi_b.dtype, device=Phi_b.device
        )
    if w0_b is None:
        w0_b = torch.zeros(Phi_b.shape[0], Phi_b.shape[-1], y_b.shape[-1], dtype=Phi_b.dtype, device=Phi_b.device)
    return _Problem(Phi_b, y_b, w0_b, lam, eta, algorithm, steps, loss, out_shape)


def _proximal_steps(problem: _Problem) -> Iterator[torch.Tensor]:
    """The iterates w_1..w_K (batched) of ``w ← soft(z − η_k ∇f(z), η_k λ)``, z = w (ISTA) or the
    Nesterov point (FISTA); η_k = η, or η/√k for the absolute loss."""
    eta = problem.eta[:, None, None]
    w = point = problem.w0
    t = 1.0
    for k in range(problem.steps):
        size = eta / math.sqrt(k + 1) if problem.loss == "mae" else eta
        z = point - size * _data_grad(problem.Phi, problem.y, point, problem.loss)
        w_next = _soft(z, size * problem.lam)
        if problem.algorithm == "fista":
            t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
            point = w_next + ((t - 1.0) / t_next) * (w_next - w)
            t = t_next
        else:
            point = w_next
        w = w_next
        yield w


def iterate_recovery(
    Phi: torch.Tensor,
    y: torch.Tensor,
    lam: float | torch.Tensor,
    *,
    algorithm: str = "ista",
    steps: int = 100,
    step_size: float | None = None,
    w0: torch.Tensor | None = None,
    loss: str = "mse",
) -> Iterator[RecoveryIterate]:
    """Run ISTA or FISTA lazily: one :class:`RecoveryIterate` per iteration, w_1 .. w_steps.

    Parameters
    ----------
    Phi, y, lam, algorithm, steps, step_size, w0, loss
        As for :func:`sparse_recovery`; checked at call time, before the first iterate is asked for.

    Returns
    -------
    Iterator[RecoveryIterate]
        ``steps`` iterates; the last one's ``coef`` is :func:`sparse_recovery`'s.  The iterates are
        differentiable in Φ, y and w0 (as :func:`sparse_recovery`'s result).
    """
    problem = _problem(Phi, y, lam, algorithm, steps, step_size, w0, loss)
    return (
        RecoveryIterate(k, w.reshape(problem.out_shape), problem.eta) for k, w in enumerate(_proximal_steps(problem), 1)
    )


def sparse_recovery(
    Phi: torch.Tensor,
    y: torch.Tensor,
    lam: float | torch.Tensor,
    *,
    algorithm: str = "ista",
    steps: int = 100,
    step_size: float | None = None,
    w0: torch.Tensor | None = None,
    loss: str = "mse",
) -> RecoveryResult:
    """Run ISTA or FISTA (``algorithm``) for ``steps`` iterations from ``w0`` (default zeros).

    Parameters
    ----------
    Phi : Tensor
        Features (n, p) or (B, n, p).
    y : Tensor
        Targets (n,), (n, m), (B, n) or (B, n, m).
    lam : float or Tensor
        λ >= 0: a number, or a tensor broadcastable to the (B, p, m) coefficients (e.g. zero on an
        unpenalised bias row).
    algorithm : {"ista", "fista"}
    steps : int
        Iterations (>= 1).
    step_size : float, optional
        None for 1/L per task (see the module docstring), or a fixed η > 0.
    w0 : Tensor, optional
        The start, shaped like the result's ``coef``: (p,), (p, m), (B, p) or (B, p, m).
    loss : {"mse", "mae"}

    Returns
    -------
    RecoveryResult
        The last iterate (see :func:`iterate_recovery` for every iterate), η and the objective per task.
    """
    problem = _problem(Phi, y, lam, algorithm, steps, step_size, w0, loss)
    w = deque(_proximal_steps(problem), maxlen=1)[0]  # the last iterate
    return RecoveryResult(
        coef=w.reshape(problem.out_shape),
        step_size=problem.eta,
        objective=objective(problem.Phi, problem.y, w, problem.lam, loss),
        steps=problem.steps,
    )


def ista(
    Phi, y, lam, *, steps: int = 100, step_size: float | None = None, w0=None, loss: str = "mse"
) -> RecoveryResult:
    """ISTA (proximal gradient); see :func:`sparse_recovery` for shapes and options."""
    return sparse_recovery(Phi, y, lam, algorithm="ista", steps=steps, step_size=step_size, w0=w0, loss=loss)


def fista(
    Phi, y, lam, *, steps: int = 100, step_size: float | None = None, w0=None, loss: str = "mse"
) -> RecoveryResult:
    """FISTA (proximal gradient with Nesterov momentum); see :func:`sparse_recovery`."""
    return sparse_recovery(Phi, y, lam, algorithm="fista", steps=steps, step_size=step_size, w0=w0, loss=loss)
