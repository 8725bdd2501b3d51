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


def _linear(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """h Wᵀ + b for inputs (B, n, in), with W shared (out, in) or per task (B, out, in), b (out,) or (B, out)."""
    if bias.ndim == 2:
        bias = bias.unsqueeze(1)
    if weight.ndim == 3:
        return torch.baddbmm(bias, h, weight.transpose(1, 2))
    return nn.functional.linear(h, weight) + bias


def _recorded_forward(
    model: MLP, params: Params, x: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """The outputs, and each linear layer's inputs h and pre-activations a = h Wᵀ + b, in order."""
    h, inputs, pre_activations = x, [], []
    for name, layer in model.named_children():
        if isinstance(layer, nn.Linear):
            inputs.append(h)
            h = _linear(h, params[f"{name}.weight"], params[f"{name}.bias"])
            pre_activations.append(h)
        else:
            h = layer(h)
    return h, inputs, pre_activations


def forward(model: MLP, params: Params, x: torch.Tensor) -> torch.Tensor:
    """The MLP on inputs x (B, n, in) with each weight shared (out, in) or per task (B, out, in)."""
    return _recorded_forward(model, params, x)[0]


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
    linear = [name for name, layer in model.named_children() if isinstance(layer, nn.Linear)]
    fast = {k: params[k] for k in names}
    for _ in range(steps):
        current = {**params, **fast}
        gradients = _inner_gradients(model, current, linear, names, sx, sy, loss, second_order)
        for k in l1_names:  # the subgradient of l1 · |W|, sign(W), has zero derivative
            gradients[k] = gradients[k] + l1 * current[k].detach().sign()
        fast = {k: current[k] - lr * g for k, g in gradients.items()}
    return task_losses(forward(model, {**params, **fast}, qx), qy, loss)


def _inner_gradients(model, params, linear, names, x, y, loss, second_order) -> Params:
    """Every task's gradient ∇L_t(φ_t) for the parameters ``names`` (B, *shape).

    Autograd gives ∂(Σ_t L_t)/∂a for each layer's pre-activations a (B, n, out), which are per task
    even where the weights are still shared (those products stay single matrix products); each task's
    weight gradient is then ∇W_t = g_tᵀ h_t (one batched product) and its bias gradient ∇b_t = Σ_n g_t.
    """
    out, inputs, pre_activations = _recorded_forward(model, params, x)
    chosen = [i for i, name in enumerate(linear) if {f"{name}.weight", f"{name}.bias"} & set(names)]
    total = task_losses(out, y, loss).sum()
    grads = torch.autograd.grad(total, [pre_activations[i] for i in chosen], create_graph=second_order)
    gradients = {}
    for i, g in zip(chosen, grads, strict=True):
        weight, bias = f"{linear[i]}.weight", f"{linear[i]}.bias"
        if weight in names:
            h = inputs[i] if second_order else inputs[i].detach()
            gradients[weight] = torch.bmm(g.transpose(1, 2), h)
        if bias in names:
            gradients[bias] = g.sum(1)
    return gradients
