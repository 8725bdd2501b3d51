"""Test-time adaptation: plain gradient steps on each task's support set (no regulariser), predicting on
its query points after every step, vectorised over the tasks of a meta-batch like :mod:`metalab.gbml.core`.

The sparse-recovery paper adapts at test time without the L1 term of its inner loop; every function here
adapts ``trainable`` parameters by ``φ ← φ − lr ∇φ L_support(φ)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial

import torch
from torch import nn
from torch.func import functional_call, vmap

from metalab.core.checks import check_choice, check_int, check_number
from metalab.gbml.core import (
    LOSSES,
    Pair,
    Params,
    _adapt,
    _trainable,
    check_inputs,
    check_model,
    check_pair,
    check_param_dict,
    output_shape,
)


def _fine_tune_task(model, loss, names, steps, lr, params, xs, ys, xq):
    preds = [functional_call(model, params, (xq,))]
    for _ in range(steps):
        params = _adapt(model, loss, names, 1, lr, 0.0, (), False, params, xs, ys)
        preds.append(functional_call(model, params, (xq,)))
    return torch.stack(preds)


def fine_tune(
    model: nn.Module,
    params: Mapping[str, torch.Tensor],
    support: Pair,
    query_x: torch.Tensor,
    *,
    steps: int,
    lr: float,
    loss: str = "mse",
    trainable: str | Sequence[str] | None = None,
) -> torch.Tensor:
    """Adapt to every task of ``support`` by plain gradient steps and predict on ``query_x`` after each.

    Parameters
    ----------
    model, params
        The network and its parameters.
    support : (x (B, n, ...), y)
        The tasks' support sets.
    query_x : Tensor
        Query inputs (B, n_query, ...).
    steps, lr
        Test-time gradient steps and their size.
    loss : {"mse", "ce"}
    trainable : None, "all", "head" or names
        Every parameter (as MAML), the head (as ANIL / MAML-FZ) or the named ones.

    Returns
    -------
    Tensor
        Predictions (steps + 1, B, n_query, out): index 0 before adaptation, index s after s steps.
        No regulariser is added (the sparse-recovery paper adapts at test time without one).
    """
    model = check_model(model)
    check_choice("loss", loss, LOSSES)
    steps = check_int("steps", steps, 0)
    lr = check_number("lr", lr)
    params = check_param_dict(model, params)
    dtype = next(iter(params.values())).dtype
    sx, sy = check_pair("support", support, loss, dtype, partial(output_shape, model, params))
    qx = check_inputs("query_x", query_x, dtype)
    if qx.shape[0] != sx.shape[0] or qx.shape[2:] != sx.shape[2:]:
        raise ValueError(
            f"query_x {tuple(qx.shape)} does not match support x {tuple(sx.shape)} in tasks and input shape"
        )
    names = _trainable(model, trainable)
    task_fn = partial(_fine_tune_task, model, loss, names, steps, lr)
    with torch.no_grad():
        return vmap(task_fn, in_dims=(None, 0, 0, 0), out_dims=1)(params, sx, sy, qx)


def adapt_tasks(
    model: nn.Module,
    params: Mapping[str, torch.Tensor],
    support: Pair,
    *,
    steps: int,
    lr: float,
    loss: str = "mse",
    trainable: str | Sequence[str] | None = None,
) -> Params:
    """:func:`adapt` on every task of a meta-batch at once (vmap), without a graph.

    Parameters
    ----------
    model, params
        The network and its (shared) parameters.
    support : (x (B, n, ...), y)
        Targets (B, n, out) for ``loss="mse"``, integer labels (B, n) for ``"ce"``.
    steps, lr, loss, trainable
        As for :func:`fine_tune` (no regulariser).

    Returns
    -------
    dict
        The adapted parameters per task: ``{name: (B, *shape)}``.
    """
    model = check_model(model)
    check_choice("loss", loss, LOSSES)
    steps = check_int("steps", steps, 0)
    lr = check_number("lr", lr)
    params = check_param_dict(model, params)
    dtype = next(iter(params.values())).dtype
    sx, sy = check_pair("support", support, loss, dtype, partial(output_shape, model, params))
    names = _trainable(model, trainable)
    task_fn = partial(_adapt, model, loss, names, steps, lr, 0.0, (), False)
    with torch.no_grad():
        return vmap(task_fn, in_dims=(None, 0, 0))(params, sx, sy)


def adaptation_losses(
    model: nn.Module,
    params: Mapping[str, torch.Tensor],
    support: Pair,
    query: Pair,
    *,
    steps: int,
    lr: float,
    loss: str = "mse",
    trainable: str | Sequence[str] | None = None,
) -> torch.Tensor:
    """Query loss per adaptation step and task from :func:`fine_tune`'s predictions.

    Parameters
    ----------
    model, params, support, steps, lr, loss, trainable
        As for :func:`fine_tune`.
    query : (x (B, n_query, ...), y)
        The query sets.

    Returns
    -------
    Tensor
        (steps + 1, B): mean squared error or cross-entropy after 0..steps steps.
    """
    preds = fine_tune(model, params, support, query[0], steps=steps, lr=lr, loss=loss, trainable=trainable)
    qy = check_pair("query", query, loss, preds.dtype, lambda name, x: tuple(preds.shape[3:]))[1]
    if loss == "ce":
        return vmap(vmap(nn.functional.cross_entropy))(preds, qy.expand(preds.shape[0], *qy.shape))
    return (preds - qy).square().flatten(2).mean(-1)
