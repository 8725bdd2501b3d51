"""MAML's inner loop for :class:`metalab.nets.MLP` with the tasks' weights as a leading dimension.

The generic path (:mod:`metalab.gbml.core`) maps one task's objective over the meta-batch with
``torch.func.vmap``.  For a fully connected net the same computation is a handful of batched matrix
products: with per-task weights W (B, out, in) and biases b (B, out) a layer computes

    h_t ← σ(h_t W_tᵀ + b_t)   for every task t at once (``torch.baddbmm``),

and one ``torch.autograd.grad`` of Σ_t L_t with respect to each layer's pre-activations a_t = h_t W_tᵀ + b_t
(per task even while W is still shared) gives every task's inner gradient, ∇W_t = g_tᵀ h_t and
∇b_t = Σ_n g_t with g_t = ∂L_t/∂a_t.  The inner step is φ_t ← φ_t − α ∇L_t(φ_t); ``create_graph=True``
keeps ∇L_t differentiable (second order), False treats it as a constant (first order).

An adapted weight whose final change has rank r = steps × support size <= in·out / (in + out) (where
the two cost the same) is kept factored, W_t = W − G_tᵀ H_t with the steps' α g_t stacked in G_t and
their h_t in H_t, and applied as h W_tᵀ = h Wᵀ − (h H_tᵀ) G_t: two thin batched products instead of
forming B matrices (out, in); the other weights take dense steps.  The meta-gradient comes from one
backward pass of the mean query loss, as on the generic path, and equals it
(``tests/test_gbml_batched.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from metalab.nets import ACTIVATIONS, MLP

Params = dict[str, torch.Tensor]
Pair = tuple[torch.Tensor, torch.Tensor]
#: an adapted weight's low-rank change (H (B, r, in), G (B, r, out)): W_t = W − G_tᵀ H_t
Factors = tuple[torch.Tensor, torch.Tensor]

_ELEMENTWISE = tuple(ACTIVATIONS.values())


def fits(model: nn.Module) -> bool:
    """True for a :class:`metalab.nets.MLP` itself (a subclass may change ``forward``)."""
    return type(model) is MLP and all(isinstance(layer, (nn.Linear, *_ELEMENTWISE)) for layer in model)


def _linear(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, factors: Factors | None) -> torch.Tensor:
    """h W_tᵀ + b for inputs (B, n, in): W shared (out, in) or per task (B, out, in), minus G_tᵀ H_t when
    ``factors`` = (H (B, r, in), G (B, r, out)); b (out,) or (B, out)."""
    if bias.ndim == 2:
        bias = bias.unsqueeze(1)
    if weight.ndim == 3:
        out = torch.baddbmm(bias, h, weight.transpose(1, 2))
    else:
        out = nn.functional.linear(h, weight) + bias
    if factors is not None:
        H, G = factors
        out = out - torch.bmm(torch.bmm(h, H.transpose(1, 2)), G)
    return out


def _recorded_forward(
    model: MLP, params: Params, factors: dict[str, Factors], x: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """The outputs, and each linear layer's inputs h and pre-activations a = h W_tᵀ + b, in order."""
    h, inputs, pre_activations = x, [], []
    for name, layer in model.named_children():
        if isinstance(layer, nn.Linear):
            inputs.append(h)
            weight = f"{name}.weight"
            h = _linear(h, params[weight], params[f"{name}.bias"], factors.get(weight))
            pre_activations.append(h)
        else:
            h = layer(h)
    return h, inputs, pre_activations


def forward(model: MLP, params: Params, x: torch.Tensor) -> torch.Tensor:
    """The MLP on inputs x (B, n, in) with each weight shared (out, in) or per task (B, out, in)."""
    return _recorded_forward(model, params, {}, x)[0]


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

    The inner loss is L_t + l1 · Σ_{k in l1_names} |W_t,k| (``l1_names`` must be among ``names``; their
    steps are dense, the subgradient sign(W_t) is not low-rank).
    """
    (sx, sy), (qx, qy) = support, query
    linear = [name for name, layer in model.named_children() if isinstance(layer, nn.Linear)]
    chosen = [i for i, name in enumerate(linear) if {f"{name}.weight", f"{name}.bias"} & set(names)]
    rank = steps * sx.shape[1]
    factored = {
        k for k in names if k not in l1_names and params[k].ndim == 2 and factors_cheaper(rank, *params[k].shape)
    }
    fast, factors = {k: params[k] for k in names}, {}
    for _ in range(steps):
        current = {**params, **fast}
        out, inputs, pre_activations = _recorded_forward(model, current, factors, sx)
        total = task_losses(out, sy, loss).sum()
        grads = torch.autograd.grad(total, [pre_activations[i] for i in chosen], create_graph=second_order)
        for i, g in zip(chosen, grads, strict=True):
            weight, bias = f"{linear[i]}.weight", f"{linear[i]}.bias"
            if bias in names:
                fast[bias] = current[bias] - lr * g.sum(1)
            if weight not in names:
                continue
            h = inputs[i] if second_order else inputs[i].detach()
            if weight in factored:
                factors[weight] = _stack(factors.get(weight), (h, lr * g))
            elif weight in l1_names:  # the subgradient of l1 · |W_t|, sign(W_t), has zero derivative
                fast[weight] = _step(current[weight], h, g, lr) - lr * l1 * current[weight].detach().sign()
            else:
                fast[weight] = _step(current[weight], h, g, lr)
    return task_losses(_recorded_forward(model, {**params, **fast}, factors, qx)[0], qy, loss)


def _stack(factors: Factors | None, new: Factors) -> Factors:
    """The factors (H, G) of a weight with one more step's (h, α g) appended along the rank."""
    if factors is None:
        return new
    return torch.cat([factors[0], new[0]], 1), torch.cat([factors[1], new[1]], 1)


def factors_cheaper(rank: int, out_features: int, in_features: int) -> bool:
    """Whether a weight's change of rank r costs at most a dense weight per product: r (in + out) <= in · out."""
    return rank * (in_features + out_features) <= in_features * out_features


def _step(weight: torch.Tensor, h: torch.Tensor, g: torch.Tensor, lr: float) -> torch.Tensor:
    """W_t − lr g_tᵀ h_t as (B, out, in), in one fused product."""
    return torch.baddbmm(weight, g.transpose(1, 2), h, alpha=-lr)
