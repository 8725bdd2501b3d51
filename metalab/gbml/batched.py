"""MAML's inner loop for :class:`metalab.nets.MLP` with the tasks' weights as a leading dimension.

The generic path (:mod:`metalab.gbml.core`) maps one task's objective over the meta-batch with
``torch.func.vmap``.  For a fully connected net the same computation is a handful of batched matrix
products: with per-task weights W (B, out, in) and biases b (B, out) a layer computes

    h_t ← σ(h_t W_tᵀ + b_t)   for every task t at once (``torch.baddbmm``),

and one ``torch.autograd.grad`` of Σ_t L_t gives every task's inner gradient, because task t's loss
depends only on its own copy of the weights: ∂(Σ_s L_s)/∂φ_t = ∇L_t(φ_t).  The inner step is
φ_t ← φ_t − α ∇L_t(φ_t); ``create_graph=True`` keeps ∇L_t differentiable (second order), False treats
it as a constant (first order).  The meta-gradient comes from one backward pass of the mean query
loss, as on the generic path, and equals it (``tests/test_gbml_batched.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from metalab.nets import ACTIVATIONS, MLP

Params = dict[str, torch.Tensor]
Pair = tuple[torch.Tensor, torch.Tensor]

_ELEMENTWISE = tuple(ACTIVATIONS.values())


def fits(model: nn.Module) -> bool:
    """True for a :class:`metalab.nets.MLP` itself (a subclass may change ``forward``)."""
    return type(model) is MLP and all(isinstance(layer, (nn.Linear, *_ELEMENTWISE)) for layer in model)


def forward(model: MLP, params: Params, x: torch.Tensor) -> torch.Tensor:
    """The MLP on inputs x (B, n, in) with each weight shared (out, in) or per task (B, out, in)."""
    h = x
    for name, layer in model.named_children():
        if not isinstance(layer, nn.Linear):
            h = layer(h)
            continue
        weight, bias = params[f"{name}.weight"], params[f"{name}.bias"]
        if weight.ndim == 3:
            h = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
        else:
            h = nn.functional.linear(h, weight, bias)
    return h


def task_losses(pred: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Each task's mean squared error or mean cross-entropy over its samples: (B,)."""
    if loss == "ce":
        per_sample = nn.functional.cross_entropy(pred.flatten(0, 1), y.flatten(), reduction="none")
        return per_sample.view(y.shape).mean(1)
    return (pred - y).square().flatten(1).mean(1)


def unrolled_query_losses(
    model: MLP,
    params: Params,
    names: tuple[str, ...],
    support: Pair,
    query: Pair,
    *,
    steps: int,
    lr: float,
    loss: str,
    second_order: bool,
    l1: float = 0.0,
    l1_names: tuple[str, ...] = (),
) -> torch.Tensor:
    """Every task's query loss after ``steps`` inner steps on ``names`` (B,), differentiable in ``params``.

    The inner loss is L_t + l1 · Σ_{k in l1_names} |W_t,k| (``l1_names`` must be among ``names``).
    """
    (sx, sy), (qx, qy) = support, query
    n_tasks = sx.shape[0]
    fast = {k: params[k].expand(n_tasks, *params[k].shape) for k in names}
    for _ in range(steps):
        inner = task_losses(forward(model, {**params, **fast}, sx), sy, loss).sum()
        if l1:
            inner = inner + l1 * sum(fast[k].abs().sum() for k in l1_names)
        grads = torch.autograd.grad(inner, list(fast.values()), create_graph=second_order)
        fast = {k: w - lr * g for (k, w), g in zip(fast.items(), grads, strict=True)}
    return task_losses(forward(model, {**params, **fast}, qx), qy, loss)
