"""Conjugate gradient for ``A x = b`` given only ``u -> A u``, on tensors or parameter dicts.

``b`` may be a tensor or any pytree of tensors (dicts, tuples); ``hvp`` maps a pytree of the same
structure to another.  With ``batch_dims=1`` the leading dimension of every leaf indexes independent
systems (one per task) which are solved together: each gets its own step sizes, stopping test and
status, and a finished system is frozen while the others go on.

One CG iteration of a system still active, with residual ``r = b − A x`` and direction ``p``::

    α = rᵀr / pᵀAp,   x ← x + α p,   r ← r − α A p,   β = r'ᵀr' / rᵀr,   p ← r' + β p

:func:`conjugate_gradient` is three steps: the checks of its inputs (:func:`_system`, then the start,
:func:`_start`), the loop of iterations (:func:`_iterate`), and the decision of each system's status
and of the solution returned (:func:`_conclude`).

The status does not depend on the scale of the system.  ``b`` is divided by a power of two ``2^e``
near ``max |b|`` and ``A`` by one near ``max |A p_0|`` (exact changes of units), so that every norm and
inner product the iteration forms stays near 1: solving ``c A x = c' b`` gives the same statuses, the
same relative residuals ``||r|| / ||b||`` and the same iterations for any ``c, c'`` from 1e-150 to
1e150 in float64, where the squares of unscaled norms would overflow or underflow.

Failure is never silent.  A step with ``pᵀAp <= 0`` (or a non-finite value) stops that system with
status ``"nonpositive_curvature"``; a residual that grows beyond ``divergence_factor * ||b||`` or
turns non-finite stops it with ``"diverged"``.  Either way a :class:`CGWarning` is issued and the
returned solution is the iterate with the smallest residual seen (the start ``x0``, or zero, if no
step improved on it), so the caller always receives finite numbers.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._pytree import TreeSpec, tree_flatten, tree_unflatten

from metalab.core.checks import check_int, check_number

STATUSES = ("converged", "max_iter", "diverged", "nonpositive_curvature", "zero_rhs")

# Codes ordered by severity: the batch status is the most severe one.
_ACTIVE, _ZERO_RHS, _CONVERGED, _MAX_ITER, _NONPOSITIVE, _DIVERGED = range(6)
_NAMES = {
    _ZERO_RHS: "zero_rhs",
    _CONVERGED: "converged",
    _MAX_ITER: "max_iter",
    _NONPOSITIVE: "nonpositive_curvature",
    _DIVERGED: "diverged",
}
_CODES = {name: code for code, name in _NAMES.items()}

Leaves = list[torch.Tensor]


class CGWarning(RuntimeWarning):
    """Conjugate gradient met non-positive curvature or diverged; a fallback solution was returned."""


@dataclass
class CGResult:
    """Outcome of :func:`conjugate_gradient`.

    ``residual_norms`` is (n_iter + 1,) for one system or (n_iter + 1, B) for a batch: ``||r_k||`` of
    the recursively updated residual, entry 0 for the start; ``relative_norms`` the same divided by
    ``||b||`` (computed in normalised units, so it is finite even where ``||b||`` is not representable).
    ``status`` is the most severe of ``statuses`` (one per system) in the order diverged >
    nonpositive_curvature > max_iter > converged > zero_rhs.
    """

    solution: Any
    residual_norms: torch.Tensor
    n_iter: int
    converged: bool
    status: str
    statuses: tuple[str, ...]
    rhs_norm: torch.Tensor
    relative_norms: torch.Tensor

    @property
    def failed(self) -> bool:
        return self.status in ("diverged", "nonpositive_curvature")

    @property
    def relative_residual(self) -> torch.Tensor:
        """Final ``||r|| / ||b||`` per system (0 where ``b = 0``)."""
        return self.relative_norms[-1]


def _dot(a: Leaves, b: Leaves, batch_dims: int) -> torch.Tensor:
    """``aᵀb`` per system (summed over every leaf and every non-batch dimension)."""
    total = None
    for x, y in zip(a, b, strict=True):
        term = (x * y).reshape(*x.shape[:batch_dims], -1).sum(-1)
        total = term if total is None else total + term
    return total


def _expand(scalar: torch.Tensor, leaf: torch.Tensor) -> torch.Tensor:
    """Reshape a per-system value (batch shape) to broadcast against ``leaf``."""
    return scalar.reshape(scalar.shape + (1,) * (leaf.ndim - scalar.ndim))


def _select(mask: torch.Tensor, new: Leaves, old: Leaves) -> Leaves:
    """Per system: ``new`` where ``mask``, else ``old``."""
    return [torch.where(_expand(mask, n), n, o) for n, o in zip(new, old, strict=True)]


def _axpy(alpha: torch.Tensor, x: Leaves, y: Leaves) -> Leaves:
    """``y + α x`` leaf by leaf, with one ``α`` per system."""
    return [yi + _expand(alpha, xi) * xi for xi, yi in zip(x, y, strict=True)]


def _safe_ratio(numerator: torch.Tensor, denominator: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """``numerator / denominator`` where ``where`` holds, 0 elsewhere (no division by an unused value)."""
    quotient = numerator / torch.where(where, denominator, torch.ones_like(denominator))
    return torch.where(where, quotient, torch.zeros_like(numerator))


# ---------------------------------------------------------------------------------------------
# 1. the inputs


def _power_of_two(magnitude: torch.Tensor) -> torch.Tensor:
    """Per system, the power of two ``2^e`` with ``magnitude ∈ [2^(e-1), 2^e)``: dividing by it is exact
    and brings the magnitude into [0.5, 1).  1 where the magnitude is zero or not finite; ``e`` is
    clamped so that ``2^e`` and ``2^-e`` are both representable in the dtype."""
    finfo = torch.finfo(magnitude.dtype)
    usable = torch.isfinite(magnitude) & (magnitude > 0)
    _, exponent = torch.frexp(torch.where(usable, magnitude, torch.ones_like(magnitude)))
    exponent = exponent.clamp(round(math.log2(finfo.tiny)), math.floor(math.log2(finfo.max)))
    return torch.ldexp(torch.ones_like(magnitude), exponent)


def _max_abs(leaves: Leaves, batch_dims: int) -> torch.Tensor:
    """``max |u|`` per system over every leaf (never overflows, unlike a sum of squares)."""
    return torch.stack([leaf.abs().reshape(*leaf.shape[:batch_dims], -1).amax(-1) for leaf in leaves]).amax(0)


def _scale(leaves: Leaves, factor: torch.Tensor) -> Leaves:
    """Every leaf times its system's ``factor``."""
    return [leaf * _expand(factor, leaf) for leaf in leaves]


@dataclass(frozen=True)
class _System:
    """A checked problem, solved in normalised units: ``b = b_scale · b̃`` with ``max |b̃| ∈ [0.5, 1)``
    per system (``b_scale`` a power of two, so the change of units is exact), the operator on leaves,
    the warm start ``x̃0 = x0 / b_scale`` and the stopping rules, which compare ``‖r̃‖`` with ``‖b̃‖``."""

    b: Leaves
    b_scale: torch.Tensor
    spec: TreeSpec
    apply: Callable[[Leaves], Leaves]
    b_norm: torch.Tensor
    x0: Leaves | None
    batch_dims: int
    tol: float
    divergence_factor: float


def _rhs_leaves(b: Any, batch_dims: int) -> tuple[Leaves, TreeSpec]:
    """``b``'s leaves (detached) and structure; every leaf a finite tensor with the same batch shape."""
    leaves, spec = tree_flatten(b)
    if not leaves or not all(isinstance(t, torch.Tensor) for t in leaves):
        raise ValueError("b must be a tensor or a non-empty dict/tuple of tensors")
    batch_shape = leaves[0].shape[:batch_dims]
    for leaf in leaves:
        if leaf.ndim < batch_dims or leaf.shape[:batch_dims] != batch_shape:
            raise ValueError(
                f"b has leaves with batch shapes {batch_shape} and {leaf.shape[:batch_dims]}; "
                "with batch_dims=1 all leaves need the same leading size"
            )
        if not bool(torch.isfinite(leaf).all()):
            raise ValueError("b contains non-finite values (NaN or inf)")
    return [leaf.detach() for leaf in leaves], spec


def _operator(hvp: Callable[[Any], Any], spec: TreeSpec) -> Callable[[Leaves], Leaves]:
    """``hvp`` on flat leaves, checking that it keeps ``b``'s structure."""

    def apply(leaves: Leaves) -> Leaves:
        out, out_spec = tree_flatten(hvp(tree_unflatten(leaves, spec)))
        if out_spec != spec:
            raise ValueError("hvp returned a structure different from b's")
        return [o.detach() for o in out]

    return apply


def _warm_start(x0: Any, b: Leaves, spec: TreeSpec) -> Leaves | None:
    """The checked warm start's leaves (None without one)."""
    if x0 is None:
        return None
    x_leaves, x_spec = tree_flatten(x0)
    if x_spec != spec or any(a.shape != c.shape for a, c in zip(x_leaves, b, strict=True)):
        raise ValueError("x0 must have the same structure and shapes as b")
    x = [leaf.detach().clone() for leaf in x_leaves]
    if not all(bool(torch.isfinite(leaf).all()) for leaf in x):
        raise ValueError("x0 contains non-finite values (NaN or inf)")
    return x


def _system(hvp: Callable[[Any], Any], b: Any, x0: Any, tol: Any, batch_dims: Any, divergence_factor: Any) -> _System:
    tol = check_number("tol", tol, strict=False)
    batch_dims = check_int("batch_dims", batch_dims, 0)
    if batch_dims > 1:
        raise ValueError(f"batch_dims={batch_dims!r} is not allowed: 0 (one system) or 1 (a batch of systems)")
    divergence_factor = check_number("divergence_factor", divergence_factor, low=1.0)
    leaves, spec = _rhs_leaves(b, batch_dims)
    x0_leaves = _warm_start(x0, leaves, spec)
    b_scale = _power_of_two(_max_abs(leaves, batch_dims))
    unit = 1.0 / b_scale  # exact: a power of two
    b_leaves = _scale(leaves, unit)
    b_norm = _dot(b_leaves, b_leaves, batch_dims).sqrt()
    if x0_leaves is not None:  # b = 0 gives x = 0 whatever the warm start
        x0_leaves = _select(b_norm == 0, [torch.zeros_like(x) for x in x0_leaves], _scale(x0_leaves, unit))
    apply = _operator(hvp, spec)
    return _System(b_leaves, b_scale, spec, apply, b_norm, x0_leaves, batch_dims, tol, divergence_factor)


@dataclass
class _State:
    """The iteration's state.  CG runs on ``Ã d = r̃0`` for the correction ``d`` to the warm start,
    ``x̃ = x̃0 + d / op_scale``, where ``Ã = A / op_scale`` and ``op_scale`` (a power of two per system)
    is fixed by the first product ``A p``, so that every quantity the iteration forms stays near 1
    whatever the scales of ``A`` and ``b``.  Besides: residual, direction, ``r̃ᵀr̃`` and ``‖r̃‖`` per
    system, each system's status code, the best correction so far, the residual history and the
    iterations done."""

    x: Leaves
    r: Leaves
    p: Leaves
    rs: torch.Tensor
    res_norm: torch.Tensor
    status: torch.Tensor
    best_x: Leaves
    best_norm: torch.Tensor
    history: list[torch.Tensor]
    op_scale: torch.Tensor | None = None
    n_iter: int = 0


def _start(system: _System) -> _State:
    """The state before the first iteration: ``r̃0 = b̃ − A x̃0``, zero correction; ``b = 0`` gives
    ``x = 0`` (status zero_rhs)."""
    zero_rhs = system.b_norm == 0
    r = [leaf.clone() for leaf in system.b]
    if system.x0 is not None and not bool(zero_rhs.all()):
        r = [bb - ax for bb, ax in zip(system.b, system.apply(system.x0), strict=True)]
    zeros = [torch.zeros_like(leaf) for leaf in system.b]
    r = _select(zero_rhs, zeros, r)
    rs = _dot(r, r, system.batch_dims)
    res_norm = rs.sqrt()
    status = torch.full(system.b_norm.shape, _ACTIVE, dtype=torch.int64, device=system.b_norm.device)
    status = torch.where(zero_rhs, _ZERO_RHS, status)
    status = torch.where((status == _ACTIVE) & (res_norm <= system.tol * system.b_norm), _CONVERGED, status)
    return _State(
        zeros, r, [leaf.clone() for leaf in r], rs, res_norm, status, [z.clone() for z in zeros], res_norm.clone(),
        [res_norm.clone()],
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# 2. the loop


def _scaled_product(system: _System, state: _State) -> Leaves:
    """``Ã p = A p / op_scale``; the first call fixes ``op_scale`` from ``max |A p|``."""
    Ap = system.apply(state.p)
    if state.op_scale is None:
        state.op_scale = _power_of_two(_max_abs(Ap, system.batch_dims))
    return _scale(Ap, 1.0 / state.op_scale)


def _step(system: _System, state: _State) -> bool:
    """One CG iteration of every active system, in place; False when no system was left to step."""
    active = state.status == _ACTIVE
    if not bool(active.any()):
        return False
    Ap = _scaled_product(system, state)
    pAp = _dot(state.p, Ap, system.batch_dims)
    bad_curvature = active & ~(pAp > 0)  # also catches NaN
    state.status = torch.where(bad_curvature, _NONPOSITIVE, state.status)
    active = active & ~bad_curvature
    if not bool(active.any()):
        return False
    state.n_iter += 1
    alpha = _safe_ratio(state.rs, pAp, active)
    state.x = _select(active, _axpy(alpha, state.p, state.x), state.x)
    state.r = _select(active, _axpy(-alpha, Ap, state.r), state.r)
    rs_new = _dot(state.r, state.r, system.batch_dims)
    new_norm = rs_new.sqrt()
    blown = active & (~torch.isfinite(new_norm) | (new_norm > system.divergence_factor * system.b_norm))
    state.status = torch.where(blown, _DIVERGED, state.status)
    ok = active & ~blown
    state.res_norm = torch.where(ok, new_norm, state.res_norm)
    improved = ok & (new_norm < state.best_norm)
    state.best_x = _select(improved, state.x, state.best_x)
    state.best_norm = torch.where(improved, new_norm, state.best_norm)
    done = ok & (new_norm <= system.tol * system.b_norm)
    state.status = torch.where(done, _CONVERGED, state.status)
    going = ok & ~done
    beta = _safe_ratio(rs_new, state.rs, going)
    state.p = _select(going, _axpy(beta, state.p, state.r), state.p)
    state.rs = torch.where(going, rs_new, state.rs)
    state.history.append(state.res_norm.clone())
    return True


def _iterate(system: _System, state: _State, max_iter: int) -> _State:
    """Up to ``max_iter`` iterations, stopping early once every system has stopped."""
    for _ in range(max_iter):
        if not _step(system, state):
            break
    return state


# ---------------------------------------------------------------------------------------------
# 3. the status decision


def _solution(system: _System, state: _State, correction: Leaves) -> Leaves:
    """``x = b_scale · (x̃0 + d / op_scale)`` in the caller's units."""
    op_scale = state.op_scale if state.op_scale is not None else torch.ones_like(system.b_scale)
    x = _scale(correction, 1.0 / op_scale)
    if system.x0 is not None:
        x = [x0 + d for x0, d in zip(system.x0, x, strict=True)]
    return _scale(x, system.b_scale)


def _conclude(system: _System, state: _State, warn: bool) -> CGResult:
    """Systems still active ran out of iterations (max_iter); failed ones return their best iterate."""
    status = torch.where(state.status == _ACTIVE, _MAX_ITER, state.status)
    failed = (status == _NONPOSITIVE) | (status == _DIVERGED)
    solution = _solution(system, state, _select(failed, state.best_x, state.x))
    codes = status.reshape(-1).tolist()
    worst = _NAMES[max(codes)]
    if warn and bool(failed.any()):
        warnings.warn(
            CGWarning(
                f"conjugate gradient stopped with status {worst!r} in {int(failed.sum())} of {len(codes)} system(s) "
                f"after {state.n_iter} iteration(s) (is the operator positive definite? for a head Hessian use "
                "l2 > 0, for iMAML a larger prox); returning the iterate with the smallest residual for those systems"
            ),
            stacklevel=3,
        )
    norms = torch.stack(state.history).detach().to("cpu", torch.float64)
    b_norm = system.b_norm.detach().to("cpu", torch.float64)
    b_scale = system.b_scale.detach().to("cpu", torch.float64)
    return CGResult(
        solution=tree_unflatten(solution, system.spec),
        residual_norms=norms * b_scale,
        n_iter=state.n_iter,
        converged=all(c in (_CONVERGED, _ZERO_RHS) for c in codes),
        status=worst,
        statuses=tuple(_NAMES[c] for c in codes),
        rhs_norm=b_norm * b_scale,
        relative_norms=torch.where(b_norm > 0, norms / torch.where(b_norm > 0, b_norm, 1.0), 0.0),
    )


def conjugate_gradient(
    hvp: Callable[[Any], Any],
    b: Any,
    *,
    max_iter: int,
    tol: float = 1e-10,
    x0: Any = None,
    batch_dims: int = 0,
    divergence_factor: float = 1e4,
    warn: bool = True,
) -> CGResult:
    """Solve ``A x = b`` for symmetric positive definite ``A`` given as ``hvp(u) = A u``.

    Parameters
    ----------
    hvp : callable
        ``u -> A u`` on pytrees with ``b``'s structure.
    b : tensor or pytree of tensors
        The right-hand side; finite.  ``b = 0`` gives ``x = 0`` with status ``"zero_rhs"``.
    max_iter : int
        At most this many iterations (>= 0).
    tol : float
        A system stops when ``||r|| <= tol * ||b||`` (a zero residual always counts as converged).
    x0 : like ``b``, optional
        Warm start (default zero).
    batch_dims : int
        0: one system; 1: the leading dimension of every leaf indexes independent systems.
    divergence_factor : float
        A residual above ``divergence_factor * ||b||`` (> 1) stops the system as ``"diverged"``.
    warn : bool
        Issue a :class:`CGWarning` when a system fails.

    Returns
    -------
    CGResult
        The solution (the best iterate for failed systems), residual history, iterations and statuses.
    """
    max_iter = check_int("max_iter", max_iter, 0)
    system = _system(hvp, b, x0, tol, batch_dims, divergence_factor)
    state = _iterate(system, _start(system), max_iter)
    return _conclude(system, state, warn)


def stack_results(results: list[CGResult]) -> CGResult:
    """Combine per-system results (``batch_dims=0``, or batches) into one batched result.

    Parameters
    ----------
    results : list of CGResult
        Solves of systems with the same structure (one per task, say).

    Returns
    -------
    CGResult
        The solutions stacked along a new (or the existing) batch dimension; histories of different
        lengths padded with each system's final residual norm; the most severe status.
    """
    if not results:
        raise ValueError("results is empty; expected at least one CGResult")
    length = max(r.n_iter for r in results) + 1

    def padded(histories: list[torch.Tensor]) -> torch.Tensor:
        columns = [h.reshape(h.shape[0], -1) for h in histories]
        return torch.cat([torch.cat([c, c[-1:].expand(length - c.shape[0], -1)]) for c in columns], dim=1)

    statuses = tuple(s for r in results for s in r.statuses)

    def cat_leaves(*leaves: torch.Tensor) -> torch.Tensor:
        batched = (
            leaf if r.residual_norms.ndim > 1 else leaf.unsqueeze(0) for leaf, r in zip(leaves, results, strict=True)
        )
        return torch.cat(list(batched))

    flat = [tree_flatten(r.solution) for r in results]
    solution = tree_unflatten([cat_leaves(*parts) for parts in zip(*(f[0] for f in flat), strict=True)], flat[0][1])
    return CGResult(
        solution=solution,
        residual_norms=padded([r.residual_norms for r in results]),
        n_iter=max(r.n_iter for r in results),
        converged=all(r.converged for r in results),
        status=max(statuses, key=_CODES.__getitem__),
        statuses=statuses,
        rhs_norm=torch.cat([r.rhs_norm.reshape(-1) for r in results]),
        relative_norms=padded([r.relative_norms for r in results]),
    )
