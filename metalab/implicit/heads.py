"""Closed-form calculus of a linear softmax head on fixed features.

A head is ``{"weight": (..., C, d), "bias": (..., C)}`` and features are ``Z`` (..., n, d); any
leading dimensions (one per task) broadcast, so the same code serves one task, a batch of tasks and
the inside of ``torch.func.vmap``.  Labels enter as one-hot rows ``Y`` (..., n, C).

The lower-level objective is ``g(φ) = CE(Z φ) + (l2 / 2) ||φ||²`` (mean cross-entropy over the n
samples; the penalty covers weight and bias).  With ``P = softmax(Z Wᵀ + b)`` and ``E = (P - Y) / n``:

* ``∇_W g = Eᵀ Z + l2 W`` and ``∇_b g = Σ_i E_i + l2 b``;
* for a direction ``(U, c)``, ``S = Z Uᵀ + c`` and ``D = P ⊙ (S - ⟨P, S⟩)`` give the Hessian-vector
  product ``(Dᵀ Z / n + l2 U,  Σ_i D_i / n + l2 c)``.

Everything is plain differentiable tensor algebra, so autograd (or torch.func) can differentiate
these expressions again with respect to ``Z``, which is how the backbone enters the hypergradient.

:func:`minimise` solves the inner problem for the implicit hypergradient, which assumes ``φ_K ≈ φ*``:
plain gradient steps (the paper's inner loop) or damped Newton, stopped on the gradient norm relative to
its start, and reports that relative norm so a caller can tell whether ``φ_K`` is near ``φ*``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from metalab.implicit.cg import conjugate_gradient

if TYPE_CHECKING:
    from metalab.implicit.common import Options

Head = dict[str, torch.Tensor]

#: inner solvers of :func:`minimise`
INNER_SOLVERS = ("gd", "newton")
#: Armijo's sufficient-decrease fraction and the most halvings of a Newton step
ARMIJO, HALVINGS = 0.25, 30


def logits(head: Head, Z: torch.Tensor) -> torch.Tensor:
    return Z @ head["weight"].transpose(-1, -2) + head["bias"].unsqueeze(-2)


def cross_entropy(scores: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the sample axis: shape (...)."""
    return -(Y * torch.log_softmax(scores, dim=-1)).sum(-1).mean(-1)


def accuracy(scores: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    return (scores.argmax(-1) == Y.argmax(-1)).to(scores.dtype).mean(-1)


def squared_norm(head: Head) -> torch.Tensor:
    return head["weight"].square().sum((-1, -2)) + head["bias"].square().sum(-1)


def loss(head: Head, Z: torch.Tensor, Y: torch.Tensor, l2: float) -> torch.Tensor:
    """``g(φ)`` per task: shape (...)."""
    value = cross_entropy(logits(head, Z), Y)
    return value + 0.5 * l2 * squared_norm(head) if l2 else value


def grad(head: Head, Z: torch.Tensor, Y: torch.Tensor, l2: float) -> Head:
    """``∇_φ g`` per task."""
    E = (torch.softmax(logits(head, Z), dim=-1) - Y) / Z.shape[-2]
    g_w = E.transpose(-1, -2) @ Z
    g_b = E.sum(-2)
    if l2:
        g_w = g_w + l2 * head["weight"]
        g_b = g_b + l2 * head["bias"]
    return {"weight": g_w, "bias": g_b}


def hessian_operator(head: Head, Z: torch.Tensor, l2: float):
    """``u -> ∇²_φφ g · u`` at ``head`` (the softmax is computed once and reused)."""
    P = torch.softmax(logits(head, Z), dim=-1)
    n = Z.shape[-2]

    def apply(u: Head) -> Head:
        S = logits(u, Z)
        D = P * (S - (P * S).sum(-1, keepdim=True))
        h_w = D.transpose(-1, -2) @ Z / n
        h_b = D.sum(-2) / n
        if l2:
            h_w = h_w + l2 * u["weight"]
            h_b = h_b + l2 * u["bias"]
        return {"weight": h_w, "bias": h_b}

    return apply


def gradient_descent(head: Head, Z: torch.Tensor, Y: torch.Tensor, l2: float, steps: int, lr: float) -> Head:
    """``steps`` plain gradient steps on ``g``; differentiable when its inputs carry a graph."""
    for _ in range(steps):
        g = grad(head, Z, Y, l2)
        head = {k: head[k] - lr * g[k] for k in ("weight", "bias")}
    return head


def inner(a: Head, b: Head) -> torch.Tensor:
    """``⟨a, b⟩`` per task: shape (...)."""
    return (a["weight"] * b["weight"]).sum((-1, -2)) + (a["bias"] * b["bias"]).sum(-1)


def norm(a: Head) -> torch.Tensor:
    """``||a||`` per task: shape (...)."""
    return inner(a, a).sqrt()


def curvature_bound(Z: torch.Tensor, l2: float) -> torch.Tensor:
    """An upper bound on the largest eigenvalue of ``∇²_φφ g`` per task, ``L = mean_i (||z_i||² + 1) / 2 + l2``.

    Each sample contributes ``(diag p − p pᵀ) ⊗ z̃ z̃ᵀ`` with ``z̃ = (z, 1)``, and ``diag p − p pᵀ`` has
    eigenvalues at most 1/2; gradient descent on ``g`` is stable for steps below ``2 / L``.
    """
    return 0.5 * (Z.square().sum(-1) + 1.0).mean(-1) + l2


@dataclass
class InnerSolution:
    """The inner solver's result: ``head`` φ_K and ``residual`` ``||∇g(φ_K)|| / ||∇g(φ_0)||`` per task
    (0 where the start was already stationary)."""

    head: Head
    residual: torch.Tensor


def _per_task(scale: torch.Tensor, leaf: torch.Tensor) -> torch.Tensor:
    """``scale`` (one entry per task) shaped to broadcast against a head leaf."""
    return scale.reshape(*scale.shape, *([1] * (leaf.ndim - scale.ndim)))


def _newton_step(head: Head, Z: torch.Tensor, Y: torch.Tensor, l2: float, gradient: Head, cg_steps: int) -> Head:
    """One damped Newton step per task: ``d`` from ``cg_steps`` CG steps on ``∇²g d = ∇g``, then ``φ − t d``
    with ``t`` halved from 1 until Armijo's ``g(φ − t d) <= g(φ) − ARMIJO t ⟨∇g, d⟩`` holds."""
    batch_dims = gradient["bias"].ndim - 1
    solve = conjugate_gradient(
        hessian_operator(head, Z, l2), gradient, max_iter=cg_steps, tol=1e-6, batch_dims=batch_dims, warn=False
    )
    direction = solve.solution
    value, slope = loss(head, Z, Y, l2), inner(gradient, direction)
    t = torch.ones_like(value)
    for _ in range(HALVINGS):
        trial = {k: head[k] - _per_task(t, head[k]) * direction[k] for k in head}
        accepted = loss(trial, Z, Y, l2) <= value - ARMIJO * t * slope
        if bool(accepted.all()):
            break
        t = torch.where(accepted, t, 0.5 * t)
    return trial


def minimise(head: Head, Z: torch.Tensor, Y: torch.Tensor, opts: Options) -> InnerSolution:
    """At most ``opts.inner_steps`` iterations of ``opts.inner_solver`` on ``g`` (ridge ``opts.l2``) from
    ``head`` (no graph), stopping once every task's ``||∇g(φ)|| <= opts.inner_tol · ||∇g(φ_0)||``.

    ``"gd"``: ``φ ← φ − inner_lr ∇g(φ)``, the paper's inner loop.  ``"newton"``: damped Newton steps
    (:func:`_newton_step`, ``opts.cg_steps`` CG steps per direction).  A task that has met the
    tolerance keeps its head.
    """
    l2 = opts.l2
    with torch.no_grad():
        gradient = grad(head, Z, Y, l2)
        start = norm(gradient)
        for _ in range(opts.inner_steps):
            active = norm(gradient) > opts.inner_tol * start
            if not bool(active.any()):
                break
            if opts.inner_solver == "gd":
                moved = {k: head[k] - opts.inner_lr * gradient[k] for k in head}
            else:
                moved = _newton_step(head, Z, Y, l2, gradient, opts.cg_steps)
            head = {k: torch.where(_per_task(active, head[k]), moved[k], head[k]) for k in head}
            gradient = grad(head, Z, Y, l2)
        residual = torch.where(start > 0, norm(gradient) / start.clamp_min(torch.finfo(start.dtype).tiny), 0.0)
    return InnerSolution(head, residual)
