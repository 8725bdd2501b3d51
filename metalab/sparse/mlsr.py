"""MLSR, meta-learning from sparse recovery (Lou, Zhao & Wang, NeurIPS 2021 MetaLearn workshop).

A reconstruction: the paper has no public code.  The network is a body φ_θ (every layer but the
last) and an output layer (weight W (m, p), bias b (m,)).  For each task the inner loop recovers a
sparse output layer on the body's support features Φ = φ_θ(X_s) by ISTA/FISTA on

    (1/2n) ||[Φ 1] w − y||² + λ ||W||₁      (or the absolute loss of the paper's equation (8)),

with the bias unpenalised, starting from the network's own output layer (``head_init="learned"``) or
from zero.  The outer loss is the query loss of ``[φ_θ(X_q) 1] ŵ``, averaged over the tasks.

``second_order=False`` (the default, following the paper's argument that the head's dependence on
θ is negligible when the features satisfy RIP) computes ŵ without a graph: the body gets the
gradient of the query loss with ŵ held fixed, and a learned head initialisation gets the query
gradient at ŵ (as FOMAML does).  ``second_order=True`` differentiates through the unrolled
iterations (and through the default step size 1/L) instead.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
from torch import nn
from torch.func import functional_call, vmap

from metalab.core.checks import check_choice, check_int, check_number
from metalab.gbml.core import (
    MetaGradient,
    Pair,
    check_batches,
    check_model,
    check_param_dict,
    gradient_of_mean,
    make_result,
)
from metalab.sparse.ista import (
    ALGORITHMS,
    RECOVERY_LOSSES,
    check_penalty,
    sparse_recovery,
)

HEAD_INITS = ("learned", "zero")
QUERY_LOSSES = ("mse", "ce")


def split_body(model: nn.Module) -> tuple[nn.Sequential, str]:
    """(body, head prefix) of an ``nn.Sequential`` whose last module is an ``nn.Linear`` (e.g. metalab.nets.MLP).

    The body keeps the model's parameter names, so the model's parameter dict serves both.
    """
    modules = list(model._modules.items()) if isinstance(model, nn.Sequential) else []
    if not modules or not isinstance(modules[-1][1], nn.Linear) or len(modules) < 2:
        raise ValueError(
            f"model of type {type(model).__name__} is not allowed: an nn.Sequential of at least two modules "
            "whose last module is an nn.Linear output layer (e.g. metalab.nets.MLP)"
        )
    return nn.Sequential(OrderedDict(modules[:-1])), modules[-1][0]


def body_features(body: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``[φ_θ(x) 1]`` for a meta-batch x (B, n, ...) -> (B, n, p + 1); ``params`` may hold the head too."""
    own = {k: params[k] for k, _ in body.named_parameters()}
    Z = vmap(lambda xi: functional_call(body, own, (xi,)))(x)
    return torch.cat([Z, torch.ones_like(Z[..., :1])], dim=-1)


def mlsr_gradient(
    model: nn.Module,
    params: dict[str, torch.Tensor],
    support: Pair,
    query: Pair,
    *,
    lam: float = 0.01,
    steps: int = 10,
    step_size: float | None = None,
    algorithm: str = "ista",
    loss: str = "mse",
    query_loss: str = "mse",
    second_order: bool = False,
    head_init: str = "learned",
) -> MetaGradient:
    """The MLSR meta-gradient on a meta-batch (no Python loop over tasks).

    ``lam`` >= 0: L1 strength on the output weights; ``steps``, ``step_size`` (None: 1/L per task),
    ``algorithm`` ("ista" | "fista") and ``loss`` ("mse" | "mae") configure the recovery.
    ``query_loss``: "mse" for regression targets (B, n, m) ((B, n) when m = 1); "ce" for integer labels,
    in which case the recovery regresses on one-hot targets and the outputs are read as logits.
    The result's ``recovered_head`` is ŵ per task, (B, p + 1, m): output weights transposed, then the bias row.
    """
    model = check_model(model)
    body, prefix = split_body(model)
    lam = check_penalty("lam", lam)
    steps = check_int("steps", steps, 1)
    if step_size is not None:
        step_size = check_number("step_size", step_size, hint=", or None for 1/L")
    check_choice("algorithm", algorithm, ALGORITHMS)
    check_choice("loss", loss, RECOVERY_LOSSES)
    check_choice("query_loss", query_loss, QUERY_LOSSES)
    check_choice("head_init", head_init, HEAD_INITS)
    if not isinstance(second_order, bool):
        raise ValueError(f"second_order={second_order!r} is not allowed: True or False")
    params = check_param_dict(model, params)
    dtype = params[prefix + ".weight"].dtype
    (sx, sy), (qx, qy) = check_batches(support, query, "ce" if query_loss == "ce" else "mse", dtype)
    n_out = params[prefix + ".weight"].shape[0]
    if query_loss == "ce":
        sy = nn.functional.one_hot(sy, n_out).to(dtype) if int(sy.max()) < n_out and int(sy.min()) >= 0 else None
        if sy is None:
            raise ValueError(
                f"support labels are not allowed: integers in 0..{n_out - 1} (the output layer has {n_out} units)"
            )
    elif sy.shape[-1] != n_out:
        raise ValueError(f"support y has {sy.shape[-1]} outputs per sample but the output layer has {n_out}")

    options = dict(algorithm=algorithm, steps=steps, step_size=step_size, loss=loss)
    grads, losses, w_hat = gradient_of_mean(
        partial(
            _mlsr_losses,
            body,
            prefix,
            sx=sx,
            sy=sy,
            qx=qx,
            qy=qy,
            lam=lam,
            query_loss=query_loss,
            second_order=second_order,
            head_init=head_init,
            options=options,
        ),
        params,
    )
    return make_result("mlsr", grads, losses, recovered_head=w_hat)


def _mlsr_losses(body, prefix, leaves, *, sx, sy, qx, qy, lam, query_loss, second_order, head_init, options):
    """Per-task query losses (B,) and the recovered heads (B, p + 1, m), differentiable in ``leaves``."""
    Phi_s, Phi_q = body_features(body, leaves, sx), body_features(body, leaves, qx)
    W, b = leaves[prefix + ".weight"], leaves[prefix + ".bias"]
    w0 = torch.cat([W.transpose(0, 1), b.unsqueeze(0)], dim=0)
    if head_init == "zero":
        w0 = torch.zeros_like(w0)
    penalty = torch.ones_like(w0[:, :1]).detach()
    penalty[-1] = 0.0  # the bias row is not penalised
    start = w0.expand(Phi_s.shape[0], *w0.shape)
    if second_order:
        w_hat = sparse_recovery(Phi_s, sy, lam * penalty, w0=start, **options).coef
    else:
        with torch.no_grad():
            w_hat = sparse_recovery(Phi_s.detach(), sy, lam * penalty, w0=start.detach(), **options).coef
        w_hat = start + (w_hat - start).detach()  # identity path to a learned initialisation, as in FOMAML
    outputs = Phi_q @ w_hat
    if query_loss == "ce":
        return nn.functional.cross_entropy(outputs.transpose(1, 2), qy, reduction="none").mean(-1), w_hat
    return (outputs - qy).square().flatten(1).mean(-1), w_hat
