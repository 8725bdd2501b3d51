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
"""

from __future__ import annotations

import torch

Head = dict[str, torch.Tensor]


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
