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

After meta-training, :func:`recover_heads` runs the same inner loop on a meta-batch (the heads the
sparsity diagnostics read) and :func:`recovery_predictions` adapts the output layer at test time by
the recovery's own iteration, predicting on query points after every step.
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
    check_inputs,
    check_model,
    check_pair,
    check_param_dict,
    check_targets,
    gradient_of_mean,
    make_result,
    output_shape,
)
from metalab.sparse.ista import (
    ALGORITHMS,
    RECOVERY_LOSSES,
    RecoveryResult,
    check_penalty,
    iterate_recovery,
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


def head_matrix(params: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    """The output layer ``prefix`` as coefficients of the features ``[φ 1]``: ``w = [Wᵀ; bᵀ]`` (..., p + 1, m),
    so that ``[φ 1] w = φ Wᵀ + b`` is the layer's output (leading axes, e.g. one layer per task, are kept)."""
    weight, bias = params[prefix + ".weight"], params[prefix + ".bias"]
    return torch.cat([weight.transpose(-1, -2), bias.unsqueeze(-2)], dim=-2)


def head_layer(head: torch.Tensor, prefix: str) -> dict[str, torch.Tensor]:
    """The inverse of :func:`head_matrix`: ``{prefix.weight: W (..., m, p), prefix.bias: b (..., m)}``."""
    return {prefix + ".weight": head[..., :-1, :].transpose(-1, -2), prefix + ".bias": head[..., -1, :]}


def bias_free_penalty(head: torch.Tensor) -> torch.Tensor:
    """Per-row L1 weights (..., p + 1, 1) for heads ``[Wᵀ; bᵀ]``: 1 on the weights, 0 on the bias row."""
    penalty = torch.ones_like(head[..., :1]).detach()
    penalty[..., -1, :] = 0.0
    return penalty


def recovery_targets(y: torch.Tensor, outputs: int, query_loss: str, dtype: torch.dtype) -> torch.Tensor:
    """What the recovery regresses on: one-hot rows (B, n, outputs) of integer labels (B, n) for
    ``query_loss="ce"``, else the targets ``y`` (B, n, m) themselves.

    Raises ValueError (:func:`metalab.gbml.core.check_targets`) for labels outside 0..outputs-1 or
    targets whose width m is not ``outputs``.
    """
    check_targets("support y", y, (outputs,), query_loss)
    return nn.functional.one_hot(y, outputs).to(dtype) if query_loss == "ce" else y


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

    Parameters
    ----------
    model : nn.Module
        An ``nn.Sequential`` whose last module is the ``nn.Linear`` output layer (see :func:`split_body`).
    params : dict
        The model's parameters ``{name: tensor}``.
    support, query : (x (B, n, ...), y)
        Targets (B, n, m) ((B, n) when m = 1) for ``query_loss="mse"``, integer labels (B, n) for ``"ce"``.
    lam : float
        λ >= 0, the L1 strength on the output weights (the bias row is not penalised).
    steps, step_size, algorithm, loss
        The recovery: iterations, η (None: 1/L per task), ``"ista"`` | ``"fista"``, ``"mse"`` | ``"mae"``.
    query_loss : {"mse", "ce"}
        For ``"ce"`` the recovery regresses on one-hot targets and the outputs are read as logits.
    second_order : bool
        Differentiate through the unrolled recovery (default False: the recovered head is held fixed).
    head_init : {"learned", "zero"}
        The recovery starts from the network's own output layer or from zero.

    Returns
    -------
    MetaGradient
        Gradients averaged over the tasks, the mean query loss, and ``recovered_head`` ŵ per task
        (B, p + 1, m): output weights transposed, then the bias row.
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
    outputs = partial(output_shape, model, params)
    (sx, sy), (qx, qy) = check_batches(support, query, "ce" if query_loss == "ce" else "mse", dtype, outputs)
    sy = recovery_targets(sy, params[prefix + ".weight"].shape[0], query_loss, dtype)

    options = dict(algorithm=algorithm, steps=steps, step_size=step_size, loss=loss)
    grads, losses, (w_hat, status) = gradient_of_mean(
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
    return make_result("mlsr", grads, losses, recovered_head=w_hat, status=status)


def _mlsr_losses(body, prefix, leaves, *, sx, sy, qx, qy, lam, query_loss, second_order, head_init, options):
    """Per-task query losses (B,), differentiable in ``leaves``, with (the recovered heads (B, p + 1, m),
    the recovery's status)."""
    Phi_s, Phi_q = body_features(body, leaves, sx), body_features(body, leaves, qx)
    w0 = head_matrix(leaves, prefix)
    if head_init == "zero":
        w0 = torch.zeros_like(w0)
    penalty = bias_free_penalty(w0)  # the bias row is not penalised
    start = w0.expand(Phi_s.shape[0], *w0.shape)
    if second_order:
        recovery = sparse_recovery(Phi_s, sy, lam * penalty, w0=start, **options)
        w_hat = recovery.coef
    else:
        with torch.no_grad():
            recovery = sparse_recovery(Phi_s.detach(), sy, lam * penalty, w0=start.detach(), **options)
        w_hat = start + (recovery.coef - start).detach()  # identity path to a learned initialisation, as in FOMAML
    outputs = Phi_q @ w_hat
    if query_loss == "ce":
        losses = nn.functional.cross_entropy(outputs.transpose(1, 2), qy, reduction="none").mean(-1)
    else:
        losses = (outputs - qy).square().flatten(1).mean(-1)
    return losses, (w_hat, recovery.status)


# ---------------------------------------------------------------------------------------------
# The recovered heads and test-time adaptation of a meta-trained network


def _support_heads(model, params, support, query_loss, head_init):
    """Checked (body, params, support x, recovery targets, start heads (B, p + 1, m)) of one meta-batch."""
    model = check_model(model)
    body, prefix = split_body(model)
    check_choice("query_loss", query_loss, QUERY_LOSSES)
    check_choice("head_init", head_init, HEAD_INITS)
    params = check_param_dict(model, params)
    dtype = params[prefix + ".weight"].dtype
    sx, sy = check_pair(
        "support", support, "ce" if query_loss == "ce" else "mse", dtype, partial(output_shape, model, params)
    )
    y = recovery_targets(sy, params[prefix + ".weight"].shape[0], query_loss, dtype)
    w0 = head_matrix(params, prefix)
    w0 = torch.zeros_like(w0) if head_init == "zero" else w0
    return body, params, sx, y, w0.expand(sx.shape[0], *w0.shape).contiguous()


def recover_heads(
    model: nn.Module,
    params: dict[str, torch.Tensor],
    support: Pair,
    *,
    lam: float,
    steps: int,
    step_size: float | None = None,
    algorithm: str = "ista",
    loss: str = "mse",
    query_loss: str = "mse",
    head_init: str = "learned",
) -> RecoveryResult:
    """MLSR's inner loop on every task of a meta-batch, without a graph: the sparse heads it recovers.

    Parameters
    ----------
    model, params
        The network (see :func:`split_body`) and its parameters.
    support : (x (B, n, ...), y)
        Targets (B, n, m) for ``query_loss="mse"``, integer labels (B, n) for ``"ce"``.
    lam, steps, step_size, algorithm, loss
        The recovery, as for :func:`mlsr_gradient` (the bias row is never penalised).
    query_loss, head_init
        As for :func:`mlsr_gradient`.

    Returns
    -------
    RecoveryResult
        ``coef`` ŵ (B, p + 1, m) per task (output weights transposed, then the bias row), as
        :func:`mlsr_gradient`'s ``recovered_head``.
    """
    body, params, sx, y, w0 = _support_heads(model, params, support, query_loss, head_init)
    with torch.no_grad():
        Phi = body_features(body, params, sx)
        return sparse_recovery(
            Phi,
            y,
            lam * bias_free_penalty(w0),
            algorithm=algorithm,
            steps=steps,
            step_size=step_size,
            w0=w0,
            loss=loss,
        )


def recovery_predictions(
    model: nn.Module,
    params: dict[str, torch.Tensor],
    support: Pair,
    query_x: torch.Tensor,
    *,
    steps: int,
    lam: float = 0.0,
    step_size: float | None = None,
    algorithm: str = "ista",
    loss: str = "mse",
    query_loss: str = "mse",
    head_init: str = "learned",
) -> torch.Tensor:
    """Test-time adaptation of the output layer by the recovery's own iteration, predicting after each step.

    With ``lam=0`` (the default, the paper's test protocol: no L1 term at test time) ISTA's step is a
    gradient step of size η = 1/L on the recovery loss: ``w ← w − η [Φ 1]ᵀ([Φ 1] w − y) / n``.

    Parameters
    ----------
    model, params, support
        As for :func:`recover_heads`.
    query_x : Tensor
        Query inputs (B, n_query, ...).
    steps : int
        Recovery iterations (>= 0).
    lam, step_size, algorithm, loss, query_loss, head_init
        As for :func:`recover_heads`.

    Returns
    -------
    Tensor
        Predictions (steps + 1, B, n_query, m): index 0 from the starting head, index s after s iterations
        (logits for ``query_loss="ce"``), as :func:`metalab.gbml.fine_tune` returns them.  A recovery
        that diverges (a DivergenceWarning, e.g. for a ``step_size`` far above 1/L) keeps its last
        iterate within bounds for the remaining steps.
    """
    steps = check_int("steps", steps, 0)
    body, params, sx, y, w0 = _support_heads(model, params, support, query_loss, head_init)
    qx = check_inputs("query_x", query_x, w0.dtype)
    if qx.shape[0] != sx.shape[0] or qx.shape[2:] != sx.shape[2:]:
        raise ValueError(
            f"query_x {tuple(qx.shape)} does not match support x {tuple(sx.shape)} in tasks and input shape"
        )
    with torch.no_grad():
        Phi_s, Phi_q = body_features(body, params, sx), body_features(body, params, qx)
        heads = [w0]
        if steps:
            iterates = iterate_recovery(
                Phi_s,
                y,
                lam * bias_free_penalty(w0),
                algorithm=algorithm,
                steps=steps,
                step_size=step_size,
                w0=w0,
                loss=loss,
            )
            heads += [iterate.coef for iterate in iterates]
            heads += heads[-1:] * (steps + 1 - len(heads))  # after a divergence: the last iterate within bounds
        return torch.stack([Phi_q @ w for w in heads])
