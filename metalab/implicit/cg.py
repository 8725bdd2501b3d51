"""Conjugate gradient for ``A x = b`` given only ``u -> A u``, on tensors or parameter dicts.

``b`` may be a tensor or any pytree of tensors (dicts, tuples); ``hvp`` maps a pytree of the same
structure to another.  With ``batch_dims=1`` the leading dimension of every leaf indexes independent
systems (one per task) which are solved together: each gets its own step sizes, stopping test and
status, and a finished system is frozen while the others go on.

Failure is never silent.  A step with ``pᵀAp <= 0`` (or a non-finite value) stops that system with
status ``"nonpositive_curvature"``; a residual that grows beyond ``divergence_factor * ||b||`` or
turns non-finite stops it with ``"diverged"``.  Either way a :class:`CGWarning` is issued and the
returned solution is the iterate with the smallest residual seen (the start ``x0``, or zero, if no
step improved on it), so the caller always receives finite numbers.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

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


class CGWarning(RuntimeWarning):
    """Conjugate gradient met non-positive curvature or diverged; a fallback solution was returned."""


@dataclass
class CGResult:
    """Outcome of :func:`conjugate_gradient`.

    ``residual_norms`` is (n_iter + 1,) for one system or (n_iter + 1, B) for a batch: ``||r_k||`` of
    the recursively updated residual, entry 0 for the start.  ``status`` is the most severe of
    ``statuses`` (one per system) in the order diverged > nonpositive_curvature > max_iter >
    converged > zero_rhs.
    """

    solution: Any
    residual_norms: torch.Tensor
    n_iter: int
    converged: bool
    status: str
    statuses: tuple[str, ...]
    rhs_norm: torch.Tensor

    @property
    def failed(self) -> bool:
        return self.status in ("diverged", "nonpositive_curvature")

    @property
    def relative_residual(self) -> torch.Tensor:
        """Final ``||r|| / ||b||`` per system (0 where ``b = 0``)."""
        final = self.residual_norms[-1]
        return torch.where(self.rhs_norm > 0, final / self.rhs_norm.clamp_min(torch.finfo(final.dtype).tiny), 0.0)


def _dot(a: list[torch.Tensor], b: list[torch.Tensor], batch_dims: int) -> torch.Tensor:
    total = None
    for x, y in zip(a, b):
        term = (x * y).reshape(*x.shape[:batch_dims], -1).sum(-1)
        total = term if total is None else total + term
    return total


def _expand(scalar: torch.Tensor, leaf: torch.Tensor) -> torch.Tensor:
    """Reshape a per-system value (batch shape) to broadcast against ``leaf``."""
    return scalar.reshape(scalar.shape + (1,) * (leaf.ndim - scalar.ndim))


def _select(mask: torch.Tensor, new: list[torch.Tensor], old: list[torch.Tensor]) -> list[torch.Tensor]:
    return [torch.where(_expand(mask, n), n, o) for n, o in zip(new, old)]


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

    Stops a system when ``||r|| <= tol * ||b||`` (a zero residual always counts as converged), after
    ``max_iter`` steps, or on failure (see the module docstring).  ``b = 0`` gives ``x = 0`` with status
    ``"zero_rhs"`` without calling ``hvp``.  ``x0`` (same structure as ``b``) warm-starts the iteration.
    """
    max_iter = check_int("max_iter", max_iter, 0)
    tol = check_number("tol", tol, strict=False)
    batch_dims = check_int("batch_dims", batch_dims, 0)
    if batch_dims > 1:
        raise ValueError(f"batch_dims={batch_dims!r} is not allowed: 0 (one system) or 1 (a batch of systems)")
    divergence_factor = check_number("divergence_factor", divergence_factor, low=1.0)

    b_leaves, spec = tree_flatten(b)
    if not b_leaves or not all(isinstance(t, torch.Tensor) for t in b_leaves):
        raise ValueError("b must be a tensor or a non-empty dict/tuple of tensors")
    batch_shape = b_leaves[0].shape[:batch_dims]
    for leaf in b_leaves:
        if leaf.ndim < batch_dims or leaf.shape[:batch_dims] != batch_shape:
            raise ValueError(
                f"b has leaves with batch shapes {batch_shape} and {leaf.shape[:batch_dims]}; with batch_dims=1 all leaves need the same leading size"
            )
        if not bool(torch.isfinite(leaf).all()):
            raise ValueError("b contains non-finite values (NaN or inf)")
    b_leaves = [leaf.detach() for leaf in b_leaves]

    def apply(leaves: list[torch.Tensor]) -> list[torch.Tensor]:
        out, out_spec = tree_flatten(hvp(tree_unflatten(leaves, spec)))
        if out_spec != spec:
            raise ValueError("hvp returned a structure different from b's")
        return [o.detach() for o in out]

    b_norm = _dot(b_leaves, b_leaves, batch_dims).sqrt()
    zero_rhs = b_norm == 0
    if x0 is None:
        x = [torch.zeros_like(leaf) for leaf in b_leaves]
        r = [leaf.clone() for leaf in b_leaves]
    else:
        x_leaves, x_spec = tree_flatten(x0)
        if x_spec != spec or any(a.shape != c.shape for a, c in zip(x_leaves, b_leaves)):
            raise ValueError("x0 must have the same structure and shapes as b")
        x = [leaf.detach().clone() for leaf in x_leaves]
        if not all(bool(torch.isfinite(leaf).all()) for leaf in x):
            raise ValueError("x0 contains non-finite values (NaN or inf)")
        if bool(zero_rhs.all()):
            r = [torch.zeros_like(leaf) for leaf in b_leaves]
        else:
            r = [bb - ax for bb, ax in zip(b_leaves, apply(x))]
    zeros = [torch.zeros_like(leaf) for leaf in b_leaves]
    x = _select(zero_rhs, zeros, x)  # A x = 0 has the solution x = 0
    r = _select(zero_rhs, zeros, r)

    rs = _dot(r, r, batch_dims)
    res_norm = rs.sqrt()
    status = torch.full(batch_shape, _ACTIVE, dtype=torch.int64, device=b_norm.device)
    status = torch.where(zero_rhs, _ZERO_RHS, status)
    status = torch.where((status == _ACTIVE) & (res_norm <= tol * b_norm), _CONVERGED, status)
    p = [leaf.clone() for leaf in r]
    best_x = [leaf.clone() for leaf in x]
    best_norm = res_norm.clone()
    history = [res_norm.clone()]
    n_iter = 0

    for k in range(max_iter):
        active = status == _ACTIVE
        if not bool(active.any()):
            break
        Ap = apply(p)
        pAp = _dot(p, Ap, batch_dims)
        bad_curvature = active & ~(pAp > 0)  # also catches NaN
        status = torch.where(bad_curvature, _NONPOSITIVE, status)
        active = active & ~bad_curvature
        if not bool(active.any()):
            break
        n_iter = k + 1
        alpha = torch.where(active, rs / torch.where(active, pAp, torch.ones_like(pAp)), torch.zeros_like(rs))
        x = _select(active, [xi + _expand(alpha, pi) * pi for xi, pi in zip(x, p)], x)
        r = _select(active, [ri - _expand(alpha, api) * api for ri, api in zip(r, Ap)], r)
        rs_new = _dot(r, r, batch_dims)
        new_norm = rs_new.sqrt()
        blown = active & (~torch.isfinite(new_norm) | (new_norm > divergence_factor * b_norm))
        status = torch.where(blown, _DIVERGED, status)
        ok = active & ~blown
        res_norm = torch.where(ok, new_norm, res_norm)
        improved = ok & (new_norm < best_norm)
        best_x = _select(improved, x, best_x)
        best_norm = torch.where(improved, new_norm, best_norm)
        done = ok & (new_norm <= tol * b_norm)
        status = torch.where(done, _CONVERGED, status)
        going = ok & ~done
        beta = torch.where(going, rs_new / torch.where(going, rs, torch.ones_like(rs)), torch.zeros_like(rs))
        p = _select(going, [ri + _expand(beta, pi) * pi for ri, pi in zip(r, p)], p)
        rs = torch.where(going, rs_new, rs)
        history.append(res_norm.clone())

    status = torch.where(status == _ACTIVE, _MAX_ITER, status)
    failed = (status == _NONPOSITIVE) | (status == _DIVERGED)
    solution = _select(failed, best_x, x)
    codes = status.reshape(-1).tolist()
    statuses = tuple(_NAMES[c] for c in codes)
    worst = _NAMES[max(codes)]
    if warn and bool(failed.any()):
        n_failed = int(failed.sum())
        warnings.warn(
            CGWarning(
                f"conjugate gradient stopped with status {worst!r} in {n_failed} of {len(codes)} system(s) "
                f"after {n_iter} iteration(s) (is the operator positive definite? for a head Hessian use l2 > 0, for iMAML a larger prox); "
                "returning the iterate with the smallest residual for those systems"
            ),
            stacklevel=2,
        )
    return CGResult(
        solution=tree_unflatten(solution, spec),
        residual_norms=torch.stack(history).detach().to("cpu", torch.float64),
        n_iter=n_iter,
        converged=all(c in (_CONVERGED, _ZERO_RHS) for c in codes),
        status=worst,
        statuses=statuses,
        rhs_norm=b_norm.detach().to("cpu", torch.float64),
    )


def stack_results(results: list[CGResult]) -> CGResult:
    """Combine per-system results (``batch_dims=0``, or batches) into one batched result.

    Histories of different lengths are padded with each system's final residual norm.
    """
    if not results:
        raise ValueError("results is empty; expected at least one CGResult")
    columns = [r.residual_norms.reshape(r.residual_norms.shape[0], -1) for r in results]
    length = max(c.shape[0] for c in columns)
    padded = [torch.cat([c, c[-1:].expand(length - c.shape[0], -1)]) for c in columns]
    statuses = tuple(s for r in results for s in r.statuses)
    worst = max(statuses, key=lambda s: [k for k, v in _NAMES.items() if v == s][0])

    def cat_leaves(*leaves: torch.Tensor) -> torch.Tensor:
        return torch.cat([leaf if r.residual_norms.ndim > 1 else leaf.unsqueeze(0) for leaf, r in zip(leaves, results)])

    flat = [tree_flatten(r.solution) for r in results]
    spec = flat[0][1]
    solution = tree_unflatten([cat_leaves(*parts) for parts in zip(*(f[0] for f in flat))], spec)
    return CGResult(
        solution=solution,
        residual_norms=torch.cat(padded, dim=1),
        n_iter=max(r.n_iter for r in results),
        converged=all(r.converged for r in results),
        status=worst,
        statuses=statuses,
        rhs_norm=torch.cat([r.rhs_norm.reshape(-1) for r in results]),
    )
