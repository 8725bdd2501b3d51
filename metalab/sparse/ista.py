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

A step size above the stability bound (η > 2/L for ISTA, η > 1/L can already be too much for FISTA's
momentum) makes the iterates grow geometrically.  The iteration watches for it: an iterate that is not
finite, or whose data term exceeds ``BLOW_UP`` times the larger of the objective at the start and the
data term at zero, stops the run with a :class:`~metalab.core.results.DivergenceWarning`; the result then
holds the last iterate within bounds with ``status="diverged"``, never NaN.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from metalab.core.checks import check_choice, check_int, check_number
from metalab.core.results import BLOW_UP, DivergenceWarning

RECOVERY_LOSSES = ("mse", "mae")
ALGORITHMS = ("ista", "fista")
#: the floating dtypes the recovery computes in (``eigvalsh`` has no half-precision kernel)
DTYPES = (torch.float32, torch.float64)


@dataclass
class RecoveryResult:
    """``coef``: the recovered w, shaped like ``w0`` (per task when Φ is batched); ``step_size``: η per
    task; ``objective``: the final objective per task; ``steps``: iterations run; ``status``: ``"ok"``, or
    ``"diverged"`` when the iteration blew up and was stopped (``coef`` is then the last iterate within bounds,
    ``steps`` the iterations before it, and a DivergenceWarning was issued)."""

    coef: torch.Tensor
    step_size: torch.Tensor
    objective: torch.Tensor
    steps: int
    status: str = "ok"


def soft_threshold(z: torch.Tensor, tau: float | torch.Tensor) -> torch.Tensor:
    """``sign(z) · max(|z| − τ, 0)``, the proximal map of ``τ ||·||₁``, for a real floating tensor z and
    τ >= 0 (a number or a broadcastable tensor)."""
    return _soft(check_real("z", z), check_penalty("tau", tau))


def _soft(z: torch.Tensor, tau: float | torch.Tensor) -> torch.Tensor:
    return torch.sign(z) * torch.clamp(z.abs() - tau, min=0)


def check_real(name: str, value: Any) -> torch.Tensor:
    """A real floating tensor (complex, integer and boolean tensors are refused, never cast)."""
    if not isinstance(value, torch.Tensor) or value.is_complex() or not value.is_floating_point():
        kind = value.dtype if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"{name} of type {kind} is not allowed: a real floating tensor (complex input is refused)")
    return value


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
    """L = λ_max(ΦᵀΦ)/n for a real Φ (..., n, p), per leading index (0 for an all-zero Φ)."""
    if check_real("Phi", Phi).ndim < 2 or min(Phi.shape[-2:]) < 1:
        raise ValueError(f"Phi of shape {tuple(Phi.shape)} is not allowed: a tensor (..., n >= 1, p >= 1)")
    n, p = Phi.shape[-2:]
    gram = Phi.transpose(-1, -2) @ Phi if p <= n else Phi @ Phi.transpose(-1, -2)
    return torch.linalg.eigvalsh(gram)[..., -1] / n


def _as_batch(Phi: Any, y: Any, w0: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, tuple[int, ...]]:
    """Φ → (B, n, p), y → (B, n, m), w0 → (B, p, m); also the shape of the coefficients to return."""
    if not isinstance(Phi, torch.Tensor) or Phi.dtype not in DTYPES or Phi.ndim not in (2, 3) or min(Phi.shape) < 1:
        shape = f"{tuple(Phi.shape)} {Phi.dtype}" if isinstance(Phi, torch.Tensor) else type(Phi).__name__
        raise ValueError(
            f"Phi of shape/type {shape} is not allowed: a float32 or float64 tensor (n, p) or (tasks, n, p) "
            "(complex input is refused)"
        )
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
    for name, t in (("y", y), ("w0", w0)):
        if t is not None and t.dtype != Phi.dtype:
            raise ValueError(f"{name} of dtype {t.dtype} is not allowed: the dtype of Phi ({Phi.dtype})")
    for name, t in (("Phi", Phi), ("y", y), ("w0", w0)):
        if t is not None and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return Phi_b, y_b, w0_b, out_shape


def objective(
    Phi: torch.Tensor, y: torch.Tensor, w: torch.Tensor, lam: float | torch.Tensor, loss: str = "mse"
) -> torch.Tensor:
    """The recovery objective per task (batched shapes: Φ (B, n, p), y (B, n, m), w (B, p, m)), real tensors."""
    for name, value in (("Phi", Phi), ("y", y), ("w", w)):
        check_real(name, value)
    return _data_term(Phi @ w - y, loss, Phi.shape[-2]) + (lam * w.abs()).sum((-1, -2))


def _data_term(residual: torch.Tensor, loss: str, n: int) -> torch.Tensor:
    """f per task from the residual Φw − y: ``(1/2n) ||r||²`` or ``(1/n) ||r||₁``."""
    data = residual.abs().sum((-1, -2)) if loss == "mae" else 0.5 * residual.square().sum((-1, -2))
    return data / n


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
    Nesterov point (FISTA); η_k = η, or η/√k for the absolute loss.

    One product with Φ per iteration: Φw of each iterate is kept, and FISTA's Φz is the same
    combination of Φw_k and Φw_{k-1} as z of w_k and w_{k-1}.  The first iterate that is not finite or
    whose data term blew up (see the module docstring) is not yielded: the stream ends there with a
    DivergenceWarning, so it ends early only on divergence.
    """
    Phi, y, loss, n = problem.Phi, problem.y, problem.loss, problem.Phi.shape[-2]
    eta = problem.eta[:, None, None]
    w = point = problem.w0
    fitted = fitted_point = Phi @ w
    with torch.no_grad():
        start = objective(Phi, y, w, problem.lam, loss).maximum(_data_term(y, loss, n))
        limit = BLOW_UP * start.clamp_min(torch.finfo(Phi.dtype).tiny)
    t = 1.0
    for k in range(problem.steps):
        size = eta / math.sqrt(k + 1) if loss == "mae" else eta
        residual = fitted_point - y
        gradient = Phi.transpose(-1, -2) @ (torch.sign(residual) if loss == "mae" else residual) / n
        w_next = _soft(point - size * gradient, size * problem.lam)
        fitted_next = Phi @ w_next
        unstable = _unstable(w_next, _data_term(fitted_next - y, loss, n), limit)
        if bool(unstable.any()):
            _warn_divergence(problem, k + 1, int(unstable.sum()))
            return
        if problem.algorithm == "fista":
            t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
            momentum = (t - 1.0) / t_next
            point = w_next + momentum * (w_next - w)
            fitted_point = fitted_next + momentum * (fitted_next - fitted)
            t = t_next
        else:
            point, fitted_point = w_next, fitted_next
        w, fitted = w_next, fitted_next
        yield w


def _unstable(w: torch.Tensor, data: torch.Tensor, limit: torch.Tensor) -> torch.Tensor:
    """Per task: the iterate is not finite, or its data term is NaN or above ``limit``."""
    with torch.no_grad():
        return ~torch.isfinite(w).flatten(1).all(-1) | ~(data <= limit)


def _warn_divergence(problem: _Problem, iteration: int, tasks: int) -> None:
    with torch.no_grad():
        ratio = float((problem.eta * lipschitz_constant(problem.Phi)).max())
    warnings.warn(
        f"{problem.algorithm.upper()} diverged at iteration {iteration} in {tasks} of {problem.Phi.shape[0]} "
        f"task(s): its step size is {ratio:.3g} / L (ISTA is stable below 2 / L), so the iterates grew "
        f"without bound; returning iteration {iteration - 1}, the last one within bounds, with status='diverged'. "
        "step_size=None uses 1 / L.",
        DivergenceWarning,
        stacklevel=4,
    )


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
        differentiable in Φ, y and w0 (as :func:`sparse_recovery`'s result).  A diverging iteration
        ends the stream early, with a DivergenceWarning, after the last iterate within bounds.
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
        The last iterate (see :func:`iterate_recovery` for every iterate), η and the objective per task;
        after a divergence (a DivergenceWarning) the last iterate within bounds, with ``status="diverged"``.

    Examples
    --------
    A step size far above 2/L diverges: the result says so instead of holding NaN.

    >>> import warnings
    >>> Phi = 2 * torch.eye(4, dtype=torch.float64)  # L = λ_max(ΦᵀΦ)/n = 1
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     result = sparse_recovery(Phi, torch.ones(4, dtype=torch.float64), 1e-3, step_size=10.0)
    >>> result.status, result.steps, bool(torch.isfinite(result.coef).all()), caught[0].category.__name__
    ('diverged', 5, True, 'DivergenceWarning')
    """
    problem = _problem(Phi, y, lam, algorithm, steps, step_size, w0, loss)
    w, done = problem.w0, 0
    for done, w in enumerate(_proximal_steps(problem), 1):  # noqa: B007 - the last iterate and its count
        pass
    return RecoveryResult(
        coef=w.reshape(problem.out_shape),
        step_size=problem.eta,
        objective=objective(problem.Phi, problem.y, w, problem.lam, loss),
        steps=done,
        status="ok" if done == problem.steps else "diverged",
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
