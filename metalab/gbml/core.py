"""Gradient-based meta-learning over any buffer-free ``nn.Module``, vectorised over the tasks of a meta-batch.

Parameters travel as plain dicts ``{name: tensor}`` (see :func:`metalab.nets.param_dict`) and the
network is always run with ``torch.func.functional_call``.  One task's meta-objective is written once,
for a single task, and ``torch.func.vmap`` maps it over the meta-batch (``batch_mode="vmap"``); the
same per-task function run in a Python loop (``batch_mode="sequential"``) is the reference the
vectorised path is measured against.  For a :class:`metalab.nets.MLP` the vmap mode of MAML, FOMAML and
ANIL runs :mod:`metalab.gbml.batched` instead: the same meta-gradient from batched matrix products.

Methods (``METHODS``), for an inner loop of K gradient steps of size α on the support loss:

* ``maml``: every parameter adapts; the meta-gradient differentiates through the K steps
  (second order: Hessian-vector products of the support loss appear).
* ``fomaml``: the same inner loop, with the inner gradients treated as constants, so the
  meta-gradient is the query gradient at the adapted parameters.
* ``anil`` (alias ``maml_fz``): only the head adapts (by default the parameters of the last
  ``nn.Linear``; any subset can be named), second order through the head steps; the body is
  meta-learned through its features.
* ``reptile``: K first-order steps per task; the "meta-gradient" is ``θ − φ_K`` averaged over tasks,
  so a gradient step with it moves θ towards the adapted parameters (Nichol et al. 2018).

Inner losses are ``"mse"`` (regression, targets shaped like the output) or ``"ce"`` (classification,
integer labels).  ``l1 > 0`` adds ``l1 · Σ|w|`` over the head's weight matrices to the inner loss
(autograd's subgradient, ``sign(w)``), which is the L1-regularised MAML ablation of the sparse-recovery
lab.  Test-time adaptation (:mod:`metalab.gbml.adaptation`) never adds it.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap

from metalab.core.checks import check_choice, check_int, check_number
from metalab.core.results import BATCH_MODES, HypergradientWarning, all_finite, finish
from metalab.gbml import batched

METHODS = ("maml", "fomaml", "anil", "reptile")
ALIASES = {"maml_fz": "anil"}
LOSSES = ("mse", "ce")

Params = dict[str, torch.Tensor]
Pair = tuple[torch.Tensor, torch.Tensor]


@dataclass
class MetaGradient:
    """One meta-gradient evaluation on a meta-batch.

    ``grads``: ``{name: tensor}`` averaged over the tasks (zeros, and ``status="non_finite"``, when it
    came out NaN/inf; ``status="diverged"`` when MLSR's sparse recovery blew up and was stopped). ``query_loss``: the mean query loss at the adapted parameters;
    ``task_query_losses``: the same per task (B,). ``recovered_head``: methods that solve for a head
    (MLSR) put the per-task heads here.
    """

    method: str
    grads: dict[str, torch.Tensor]
    query_loss: float
    task_query_losses: torch.Tensor
    status: str = "ok"
    recovered_head: torch.Tensor | None = None


# ---------------------------------------------------------------------------------------------
# Checks


def check_model(model: Any) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model of type {type(model).__name__} is not allowed: a torch.nn.Module")
    if any(True for _ in model.buffers()):
        raise ValueError(
            "model has buffers (e.g. BatchNorm running statistics); use track_running_stats=False (see metalab.nets)"
        )
    return model


def check_param_dict(model: nn.Module, params: Any) -> Params:
    """Detached references to ``params``, which must hold exactly the model's parameter names."""
    names = [k for k, _ in model.named_parameters()]
    if not isinstance(params, Mapping) or set(params) != set(names):
        got = sorted(params) if isinstance(params, Mapping) else type(params).__name__
        raise ValueError(f"params={got!r} is not allowed: a dict with exactly the model's parameters {names}")
    out = {}
    for k in names:
        v = params[k]
        if not isinstance(v, torch.Tensor) or not v.is_floating_point():
            raise ValueError(f"params[{k!r}] is not allowed: a floating-point tensor")
        out[k] = v.detach()
    if not all_finite(list(out.values())):
        bad = next(k for k, v in out.items() if not all_finite([v]))
        raise ValueError(f"params[{bad!r}] contains non-finite values (NaN or inf)")
    return out


def check_inputs(name: str, x: Any, dtype: torch.dtype) -> torch.Tensor:
    """A finite floating tensor (tasks, samples, *input_shape), detached and cast to ``dtype``."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 3 or min(x.shape[:2]) < 1:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(
            f"{name} of shape/type {shape} is not allowed: a floating tensor (tasks >= 1, samples >= 1, *input_shape)"
        )
    if not all_finite([x]):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return x.detach().to(dtype)


#: per model, the output shape per sample found for each (input shape, dtype, parameter shapes)
_OUTPUT_SHAPES: weakref.WeakKeyDictionary[nn.Module, dict[tuple, tuple[int, ...]]] = weakref.WeakKeyDictionary()


def output_shape(model: nn.Module, params: Params, name: str, x: torch.Tensor) -> tuple[int, ...]:
    """The shape of the model's output for one sample of the inputs ``x`` (tasks, samples, *input_shape).

    A buffer-free module's output shape is a function of its input and parameter shapes, so one forward
    pass on one sample per such combination is remembered (a meta-training loop pays it once).  Raises
    ValueError naming ``name`` when the model cannot take inputs of that shape.
    """
    key = (tuple(x.shape[2:]), x.dtype, tuple((k, tuple(v.shape)) for k, v in params.items()))
    known = _OUTPUT_SHAPES.setdefault(model, {})
    if key not in known:
        try:
            with torch.no_grad():
                known[key] = tuple(functional_call(model, params, (x[0, :1],)).shape[1:])
        except RuntimeError as error:
            raise ValueError(
                f"{name} of shape {tuple(x.shape)} is not allowed: the model cannot take it ({error})"
            ) from None
    return known[key]


def check_targets(name: str, y: torch.Tensor, outputs: tuple[int, ...], loss: str) -> None:
    """Targets that fit a model whose output per sample has shape ``outputs``: for ``"mse"`` y (tasks,
    samples, *outputs) ((tasks, samples) for one output); for ``"ce"`` labels in 0..C-1 for C outputs.

    Raises ValueError naming ``name`` and both shapes (or the label range) otherwise.
    """
    if loss == "ce":
        if len(outputs) != 1:
            raise ValueError(
                f"loss='ce' is not allowed for this model: its output per sample has shape {outputs}, not (classes,)"
            )
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= outputs[0]:
            raise ValueError(
                f"{name} labels {low}..{high} are not allowed: integers in 0..{outputs[0] - 1} "
                f"(the model has {outputs[0]} outputs)"
            )
        return
    if tuple(y.shape[2:]) != outputs and not (y.ndim == 2 and outputs == (1,)):
        raise ValueError(
            f"{name} of shape {tuple(y.shape)} is not allowed: it must match the model's output, "
            f"{(*y.shape[:2], *outputs)} for these inputs"
        )


def check_pair(
    name: str,
    pair: Any,
    loss: str,
    dtype: torch.dtype,
    outputs: Callable[[str, torch.Tensor], tuple[int, ...]] | None = None,
) -> Pair:
    """``(x (B, n, ...), y)`` with y (B, n, out) float for "mse" ((B, n) is promoted) or (B, n) integer for
    "ce"; ``outputs(name, x)``, when given, is the model's output shape per sample, which y must fit
    (:func:`check_targets`)."""
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise ValueError(f"{name} is not allowed: a pair (x, y) of tensors")
    x, y = pair
    x = check_inputs(f"{name} x", x, dtype)
    if not isinstance(y, torch.Tensor) or tuple(y.shape[:2]) != tuple(x.shape[:2]):
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(
            f"{name} y of shape/type {shape} is not allowed: a tensor starting with (tasks, samples) = {tuple(x.shape[:2])}"
        )
    if loss == "ce":
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool or y.ndim != 2:
            raise ValueError(
                f"{name} y is not allowed for loss='ce': an integer tensor of class labels (tasks, samples)"
            )
    elif not y.is_floating_point():
        raise ValueError(
            f"{name} y of dtype {y.dtype} is not allowed for loss='mse': a real floating tensor (tasks, samples, out)"
        )
    elif not all_finite([y]):
        raise ValueError(f"{name} y contains non-finite values (NaN or inf)")
    if outputs is not None:
        check_targets(f"{name} y", y, outputs(f"{name} x", x), loss)
    if loss == "ce":
        return x, y.detach().long()
    return x, (y.unsqueeze(-1) if y.ndim == 2 else y).detach().to(dtype)


def check_batches(
    support: Any,
    query: Any,
    loss: str,
    dtype: torch.dtype,
    outputs: Callable[[str, torch.Tensor], tuple[int, ...]] | None = None,
) -> tuple[Pair, Pair]:
    """Both pairs checked by :func:`check_pair`, with the same tasks and input shape."""
    support = check_pair("support", support, loss, dtype, outputs)
    query = check_pair("query", query, loss, dtype, outputs)
    if support[0].shape[0] != query[0].shape[0] or support[0].shape[2:] != query[0].shape[2:]:
        raise ValueError(
            f"support x {tuple(support[0].shape)} and query x {tuple(query[0].shape)} disagree: "
            "the same number of tasks and the same input shape are required"
        )
    return support, query


def head_names(model: nn.Module, head: str | Sequence[str] | None = None) -> tuple[str, ...]:
    """The parameter names of the head: the last ``nn.Linear`` (``head=None``), a module prefix, or a list of names."""
    names = [k for k, _ in model.named_parameters()]
    if head is None:
        linear = [m for m, mod in model.named_modules() if isinstance(mod, nn.Linear)]
        if not linear:
            raise ValueError("head=None needs a model with an nn.Linear layer; name the head parameters instead")
        head = linear[-1]
    if isinstance(head, str):
        chosen = [k for k in names if k.startswith(head + ".") or k == head]
    else:
        chosen = [k for k in head if k in names] if all(isinstance(k, str) for k in head) else []
        if len(chosen) != len(list(head)):
            chosen = []
    if not chosen:
        raise ValueError(f"head={head!r} is not allowed: a module prefix or parameter names among {names}")
    return tuple(chosen)


def _trainable(model: nn.Module, trainable: str | Sequence[str] | None) -> tuple[str, ...]:
    """None or "all": every parameter; "head": the default head; else as :func:`head_names`."""
    if trainable is None or trainable == "all":
        return tuple(k for k, _ in model.named_parameters())
    return head_names(model, None if trainable == "head" else trainable)


def _method(method: str) -> str:
    method = ALIASES.get(method, method)
    return check_choice("method", method, (*METHODS, *ALIASES))


# ---------------------------------------------------------------------------------------------
# One task


def task_loss(pred: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Mean squared error (``"mse"``) or mean cross-entropy on integer labels (``"ce"``) over the samples.

    Raises ValueError when y does not fit the predictions (never broadcasts one against the other).
    """
    expected = tuple(pred.shape[:-1]) if loss == "ce" else tuple(pred.shape)
    if tuple(y.shape) != expected:
        raise ValueError(f"y of shape {tuple(y.shape)} is not allowed: the predictions need {expected}")
    if loss == "ce":
        return nn.functional.cross_entropy(pred, y)
    return (pred - y).square().mean()


def _inner_objective(model, loss, l1, l1_names, rest, fast, x, y):
    params = {**rest, **fast}
    value = task_loss(functional_call(model, params, (x,)), y, loss)
    if l1:
        value = value + l1 * sum(params[k].abs().sum() for k in l1_names)
    return value


def adapt(
    model: nn.Module,
    params: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int,
    lr: float,
    loss: str = "mse",
    trainable: str | Sequence[str] | None = None,
    l1: float = 0.0,
    create_graph: bool = False,
) -> Params:
    """``steps`` gradient steps ``φ ← φ − lr ∇φ L(φ)`` on one task's loss, updating only ``trainable``.

    Parameters
    ----------
    model, params
        The network and its parameters ``{name: tensor}``.
    x, y : Tensor
        One task's inputs (n, ...) and targets (n, out) or labels (n,); composes with
        ``torch.func.grad``/``vmap`` (see :func:`adapt_tasks` for a meta-batch).
    steps, lr
        The number and size of the steps.
    loss : {"mse", "ce"}
    trainable : None, "all", "head" or names
        What moves (the rest stays at ``params``).
    l1 : float
        Adds ``l1 · Σ|W_head|`` to the loss.
    create_graph : bool
        False treats each inner gradient as a constant (first order); True keeps the dependence, so an
        outer gradient is second order.

    Returns
    -------
    dict
        Every parameter, the trainable ones adapted.
    """
    names = _trainable(model, trainable)
    l1_names = tuple(k for k in head_names(model) if params[k].ndim >= 2) if l1 else ()
    return _adapt(model, loss, names, steps, lr, l1, l1_names, create_graph, dict(params), x, y)


def _adapt(model, loss, names, steps, lr, l1, l1_names, create_graph, params, x, y) -> Params:
    fast = {k: params[k] for k in names}
    rest = {k: v for k, v in params.items() if k not in fast}
    grad_fn = torch.func.grad(partial(_inner_objective, model, loss, l1, l1_names, rest), argnums=0)
    for _ in range(steps):
        g = grad_fn(fast, x, y)
        fast = {k: fast[k] - lr * (g[k] if create_graph else g[k].detach()) for k in fast}
    return {**rest, **fast}


def _unrolled_task(model, loss, names, steps, lr, l1, l1_names, second_order, params, xs, ys, xq, yq):
    adapted = _adapt(model, loss, names, steps, lr, l1, l1_names, second_order, params, xs, ys)
    return task_loss(functional_call(model, adapted, (xq,)), yq, loss)


def _reptile_task(model, loss, names, steps, lr, l1, l1_names, params, xs, ys, xq, yq):
    adapted = _adapt(model, loss, names, steps, lr, l1, l1_names, False, params, xs, ys)
    value = task_loss(functional_call(model, adapted, (xq,)), yq, loss)
    return {k: params[k] - adapted[k].detach() for k in params}, value.detach()


def gradient_of_mean(fn, params: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor, Any]:
    """``fn(leaves) -> (per-task losses (B,), aux)`` on fresh leaves of ``params``; the gradient of the mean loss.

    Parameters the losses do not reach get zero gradients.  Returns (grads, losses, aux).
    """
    with torch.enable_grad():
        leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}  # aliases, not copies
        losses, aux = fn(leaves)
        grads = torch.autograd.grad(losses.mean(), list(leaves.values()), allow_unused=True)
    return (
        {k: torch.zeros_like(v) if g is None else g for (k, v), g in zip(leaves.items(), grads, strict=True)},
        losses,
        aux,
    )


def make_result(
    method: str, grads: dict[str, torch.Tensor], task_losses: torch.Tensor, recovered_head=None, status: str = "ok"
) -> MetaGradient:
    """Wrap a meta-gradient; a non-finite one, or one whose query loss is not finite, is replaced by zeros
    and reported (``status="non_finite"`` and a HypergradientWarning).  ``status`` is the inner loop's own
    (e.g. ``"diverged"`` for a sparse recovery that blew up)."""
    loss = task_losses.detach().mean()
    if not bool(torch.isfinite(loss)):
        warnings.warn(
            HypergradientWarning(
                f"method {method!r} gave a non-finite query loss (the inner loop probably diverged: lower "
                "inner_lr or rescale the targets); its meta-gradient was replaced by zeros"
            ),
            stacklevel=3,
        )
        grads, status = {k: torch.zeros_like(g) for k, g in grads.items()}, "non_finite"
    checked = finish(method, grads, None, loss, 0.0)
    return MetaGradient(
        method=method,
        grads=checked.hypergrad,
        query_loss=checked.query_loss,
        task_query_losses=task_losses.detach(),
        status=checked.status if checked.status != "ok" else status,
        recovered_head=None if recovered_head is None else recovered_head.detach(),
    )


# ---------------------------------------------------------------------------------------------
# A meta-batch


def meta_gradient(
    method: str,
    model: nn.Module,
    params: Mapping[str, torch.Tensor],
    support: Pair,
    query: Pair,
    *,
    inner_steps: int = 1,
    inner_lr: float = 0.01,
    loss: str = "mse",
    head: str | Sequence[str] | None = None,
    l1: float = 0.0,
    batch_mode: str = "vmap",
) -> MetaGradient:
    """The meta-gradient of ``method`` on a meta-batch of B tasks.

    Parameters
    ----------
    method : str
        One of ``METHODS`` (or the alias ``"maml_fz"``).
    model, params
        A buffer-free network and its parameters ``{name: tensor}``.
    support, query : (x (B, n, ...), y)
        Targets (B, n, out) for ``loss="mse"`` ((B, n) is promoted), integer labels (B, n) for ``"ce"``.
    inner_steps, inner_lr
        K gradient steps of size α in the inner loop (K >= 1 for Reptile).
    loss : {"mse", "ce"}
    head : str or names, optional
        The head for ``"anil"`` and for the ``l1`` penalty (default: the last ``nn.Linear``).
    l1 : float
        Adds ``l1 · Σ|W_head|`` to the inner loss (the L1-regularised MAML ablation).
    batch_mode : {"vmap", "sequential"}
        Vectorise the per-task objective over the meta-batch (for a :class:`metalab.nets.MLP`, with
        :mod:`metalab.gbml.batched`), or loop over the tasks (the reference).

    Returns
    -------
    MetaGradient
        The meta-gradient averaged over the tasks (zeros and ``status="non_finite"`` when it was not
        finite) and the query losses.
    """
    name = ALIASES.get(_method(method), method)
    model = check_model(model)
    check_choice("loss", loss, LOSSES)
    check_choice("batch_mode", batch_mode, BATCH_MODES)
    inner_steps = check_int("inner_steps", inner_steps, 0 if name != "reptile" else 1)
    inner_lr = check_number("inner_lr", inner_lr)
    l1 = check_number("l1", l1, strict=False)
    params = check_param_dict(model, params)
    dtype = next(iter(params.values())).dtype
    (sx, sy), (qx, qy) = check_batches(support, query, loss, dtype, partial(output_shape, model, params))

    heads = head_names(model, head) if name == "anil" or l1 or head is not None else ()  # a named head is checked
    names = heads if name == "anil" else tuple(params)
    l1_names = tuple(k for k in heads if params[k].ndim >= 2) if l1 else ()
    common = (model, loss, names, inner_steps, inner_lr, l1, l1_names)
    B = sx.shape[0]
    if name == "reptile":
        task_fn = partial(_reptile_task, *common)
        if batch_mode == "vmap":
            directions, losses = vmap(task_fn, in_dims=(None, 0, 0, 0, 0))(params, sx, sy, qx, qy)
        else:
            outs = [task_fn(params, sx[t], sy[t], qx[t], qy[t]) for t in range(B)]
            directions = {k: torch.stack([d[k] for d, _ in outs]) for k in params}
            losses = torch.stack([v for _, v in outs])
        return make_result(name, {k: v.mean(0) for k, v in directions.items()}, losses)
    # the per-task forward (inner loop included) is vectorised; one backward pass covers the whole meta-batch
    second_order = name != "fomaml"
    task_fn = partial(_unrolled_task, *common, second_order)

    def task_losses(theta):
        if batch_mode == "vmap" and batched.fits(model):
            inner = {"steps": inner_steps, "lr": inner_lr, "loss": loss, "l1": l1, "l1_names": l1_names}
            return batched.unrolled_query_losses(
                model, theta, names, (sx, sy), (qx, qy), second_order=second_order, **inner
            ), None
        if batch_mode == "vmap":
            return vmap(task_fn, in_dims=(None, 0, 0, 0, 0))(theta, sx, sy, qx, qy), None
        return torch.stack([task_fn(theta, sx[t], sy[t], qx[t], qy[t]) for t in range(B)]), None

    grads, losses, _ = gradient_of_mean(task_losses, params)
    return make_result(name, grads, losses)
