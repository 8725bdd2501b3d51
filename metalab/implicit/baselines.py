"""Baseline hypergradients with the interface of :func:`~metalab.implicit.hypergrad.implicit_hypergradient`.

All share g = support CE + (l2/2)||head||² as the inner objective and f = query CE as the outer one.

* ``maml``: the whole network adapts from θ for K steps; second order through the unrolled steps.
* ``fomaml``: the same inner loop, with the Hessian terms dropped (∇f at the adapted weights).
* ``anil``: only the head adapts; backbone features computed once per task, the K head steps
  differentiated (second order); meta-gradients for the backbone and the head initialisation.
* ``anil_recompute``: ANIL as the paper's authors coded it: the support features are recomputed
  with graph at every inner step, so the graph (memory) grows with K through the backbone.
* ``itd_bio`` / ``itd_bio_recompute``: iterative differentiation through the K head steps (Ji et al.
  2021); the head initialisation is fixed, only the backbone gets a hypergradient.
* ``imaml``: proximal inner problem g + (prox/2)||w − θ||² on the whole network, K gradient steps,
  then CG on ``(I + ∇²g / prox) v = ∇f`` (Rajeswaran et al. 2019); the meta-gradient is v.

``batch_mode="vmap"`` vectorises the per-task computation over tasks with torch.func (graph memory
×B); ``"sequential"`` runs the same per-task computation with plain autograd one task at a time
(memory of one task, and measurable with saved-tensor hooks, which torch.func does not support).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch.func import functional_call, vmap
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

from metalab.core import ConfigError
from metalab.implicit import heads
from metalab.implicit.cg import conjugate_gradient, stack_results
from metalab.implicit.common import HypergradResult, Options, check_feature_dim, finish
from metalab.implicit.hypergrad import prepare


def check_imaml_prox(prox: float, inner_lr: float) -> None:
    """iMAML's inner step w ← w − inner_lr·(∇g + prox·(w − θ)) multiplies w − θ by (1 − inner_lr·prox)
    through the proximal term alone, so the inner loop diverges unless inner_lr·prox < 2."""
    if inner_lr * prox >= 2:
        raise ConfigError(
            "prox",
            prox,
            f"< 2 / inner_lr = {2 / inner_lr:g} for iMAML: at inner_lr·prox >= 2 its proximal inner loop diverges",
        )


Tree = Any


def _grad_autograd(fn: Callable[[Tree], torch.Tensor], tree: Tree, create_graph: bool) -> Tree:
    leaves, spec = tree_flatten(tree)
    grads = torch.autograd.grad(fn(tree), leaves, create_graph=create_graph)
    return tree_unflatten(list(grads), spec)


def _grad_func(fn: Callable[[Tree], torch.Tensor], tree: Tree, create_graph: bool) -> Tree:
    grads = torch.func.grad(fn)(tree)
    return grads if create_graph else tree_map(torch.Tensor.detach, grads)


def _features(backbone: torch.nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor, head: dict) -> torch.Tensor:
    Z = functional_call(backbone, params, (x,))
    check_feature_dim(Z, head)
    return Z


# ---------------------------------------------------------------------------------------------
# Per-task outer losses: (params, head, xs, ys, xq, yq) -> (query loss, (loss, accuracy, adapted head))


def _maml_task(grad_fn, first_order, backbone, opts, params, head, xs, ys, xq, yq):
    def inner(net):
        return heads.loss(net[1], _features(backbone, net[0], xs, net[1]), ys, opts.l2)

    net = (params, head)
    for _ in range(opts.inner_steps):
        g = grad_fn(inner, net, not first_order)
        net = tree_map(lambda w, gw: w - opts.inner_lr * gw, net, g)
    scores = heads.logits(net[1], _features(backbone, net[0], xq, net[1]))
    loss = heads.cross_entropy(scores, yq)
    return loss, (loss.detach(), heads.accuracy(scores, yq).detach(), {k: v.detach() for k, v in net[1].items()})


def _head_unroll_task(recompute, backbone, opts, params, head, xs, ys, xq, yq):
    Zs = None if recompute else _features(backbone, params, xs, head)
    phi = head
    for _ in range(opts.inner_steps):
        Z = _features(backbone, params, xs, head) if recompute else Zs
        g = heads.grad(phi, Z, ys, opts.l2)
        phi = {k: phi[k] - opts.inner_lr * g[k] for k in phi}
    scores = heads.logits(phi, _features(backbone, params, xq, head))
    loss = heads.cross_entropy(scores, yq)
    return loss, (loss.detach(), heads.accuracy(scores, yq).detach(), {k: v.detach() for k, v in phi.items()})


def _run_unrolled(
    method: str, make_task, wrt_head: bool, backbone, params, head, sx, sy, qx, qy, options
) -> HypergradResult:
    opts = Options(**options)
    backbone, params, head, tasks = prepare(backbone, params, head, sx, sy, qx, qy)
    B = tasks.n_tasks
    if opts.batch_mode == "vmap":
        task_fn = make_task(_grad_func, backbone, opts)
        argnums = (0, 1) if wrt_head else 0
        batched = vmap(torch.func.grad(task_fn, argnums=argnums, has_aux=True), in_dims=(None, None, 0, 0, 0, 0))
        grads, (losses, accs, adapted) = batched(
            params, head, tasks.support_x, tasks.support_onehot, tasks.query_x, tasks.query_onehot
        )
        g_params, g_head = grads if wrt_head else (grads, None)
        hypergrad = {k: v.mean(0) for k, v in g_params.items()}
        head_grad = None if g_head is None else {k: v.mean(0) for k, v in g_head.items()}
    else:
        task_fn = make_task(_grad_autograd, backbone, opts)
        hypergrad = {k: torch.zeros_like(v) for k, v in params.items()}
        head_grad = {k: torch.zeros_like(v) for k, v in head.items()} if wrt_head else None
        loss_list, acc_list, adapted_list = [], [], []
        for t in range(B):
            p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
            h = {k: v.clone().requires_grad_(wrt_head) for k, v in head.items()}
            loss, (lv, acc, phi) = task_fn(p, h, *tasks.task(t))
            targets = list(p.values()) + (list(h.values()) if wrt_head else [])
            grads = torch.autograd.grad(loss, targets, allow_unused=True)
            names = [("p", k) for k in p] + ([("h", k) for k in h] if wrt_head else [])
            for (kind, k), g in zip(names, grads):
                if g is not None:
                    (hypergrad if kind == "p" else head_grad)[k] += g
            loss_list.append(lv)
            acc_list.append(acc)
            adapted_list.append(phi)
            del loss, grads, p, h
        hypergrad = {k: v / B for k, v in hypergrad.items()}
        if head_grad is not None:
            head_grad = {k: v / B for k, v in head_grad.items()}
        losses, accs = torch.stack(loss_list), torch.stack(acc_list)
        adapted = {k: torch.stack([a[k] for a in adapted_list]) for k in head}
    return finish(method, hypergrad, head_grad, losses.mean(), accs.mean(), adapted_head=adapted)


def _maml_maker(first_order: bool):
    return lambda grad_fn, backbone, opts: partial(_maml_task, grad_fn, first_order, backbone, opts)


def _unroll_maker(recompute: bool):
    return lambda grad_fn, backbone, opts: partial(_head_unroll_task, recompute, backbone, opts)


def maml(backbone, params, head, support_x, support_y, query_x, query_y, **options: Any) -> HypergradResult:
    """Second-order MAML on the whole network (backbone and head both adapt and are meta-learned)."""
    return _run_unrolled(
        "maml", _maml_maker(False), True, backbone, params, head, support_x, support_y, query_x, query_y, options
    )


def fomaml(backbone, params, head, support_x, support_y, query_x, query_y, **options: Any) -> HypergradResult:
    """First-order MAML: the query gradient at the adapted weights."""
    return _run_unrolled(
        "fomaml", _maml_maker(True), True, backbone, params, head, support_x, support_y, query_x, query_y, options
    )


def anil(backbone, params, head, support_x, support_y, query_x, query_y, **options: Any) -> HypergradResult:
    """ANIL with the backbone features computed once per task."""
    return _run_unrolled(
        "anil", _unroll_maker(False), True, backbone, params, head, support_x, support_y, query_x, query_y, options
    )


def anil_recompute(backbone, params, head, support_x, support_y, query_x, query_y, **options: Any) -> HypergradResult:
    """ANIL recomputing the support features with graph at every inner step (the authors' baseline)."""
    return _run_unrolled(
        "anil_recompute",
        _unroll_maker(True),
        True,
        backbone,
        params,
        head,
        support_x,
        support_y,
        query_x,
        query_y,
        options,
    )


def itd_bio(backbone, params, head, support_x, support_y, query_x, query_y, **options: Any) -> HypergradResult:
    """ITD-BiO: backpropagation through K head steps on once-computed features; backbone only."""
    return _run_unrolled(
        "itd_bio", _unroll_maker(False), False, backbone, params, head, support_x, support_y, query_x, query_y, options
    )


def itd_bio_recompute(
    backbone, params, head, support_x, support_y, query_x, query_y, **options: Any
) -> HypergradResult:
    """ITD-BiO with features recomputed with graph at every inner step (the authors' baseline)."""
    return _run_unrolled(
        "itd_bio_recompute",
        _unroll_maker(True),
        False,
        backbone,
        params,
        head,
        support_x,
        support_y,
        query_x,
        query_y,
        options,
    )


# ---------------------------------------------------------------------------------------------
# iMAML


def imaml(backbone, params, head, support_x, support_y, query_x, query_y, **options: Any) -> HypergradResult:
    """iMAML: K steps on g + (prox/2)||w − θ||² from w = θ, then N CG steps on (I + ∇²g/prox) v = ∇f(w_K).

    The meta-gradient v covers the backbone (``hypergrad``) and the head (``head_hypergrad``).
    """
    opts = Options(**options)
    check_imaml_prox(opts.prox, opts.inner_lr)
    backbone, params, head, tasks = prepare(backbone, params, head, support_x, support_y, query_x, query_y)
    B = tasks.n_tasks
    anchor = (params, head)

    def inner(net, xs, ys):
        return heads.loss(net[1], _features(backbone, net[0], xs, net[1]), ys, opts.l2)

    def outer(net, xq, yq):
        scores = heads.logits(net[1], _features(backbone, net[0], xq, net[1]))
        loss = heads.cross_entropy(scores, yq)
        return loss, (loss.detach(), heads.accuracy(scores, yq).detach())

    def proximal(net, xs, ys):
        distance = sum((w - a).square().sum() for w, a in zip(tree_flatten(net)[0], tree_flatten(anchor)[0]))
        return inner(net, xs, ys) + 0.5 * opts.prox * distance

    if opts.batch_mode == "vmap":

        def adapt(xs, ys):
            net = anchor
            for _ in range(opts.inner_steps):
                g = torch.func.grad(proximal)(net, xs, ys)
                net = tree_map(lambda w, gw: w - opts.inner_lr * gw, net, g)
            return net

        net_k = vmap(adapt)(tasks.support_x, tasks.support_onehot)
        rhs, (losses, accs) = vmap(torch.func.grad(outer, has_aux=True))(net_k, tasks.query_x, tasks.query_onehot)

        def task_hvp(net, u, xs, ys):
            return torch.func.jvp(lambda n: torch.func.grad(inner)(n, xs, ys), (net,), (u,))[1]

        def operator(u):
            hu = vmap(task_hvp)(net_k, u, tasks.support_x, tasks.support_onehot)
            return tree_map(lambda a, b: a + b / opts.prox, u, hu)

        if all(bool(torch.isfinite(t).all()) for t in tree_flatten(rhs)[0]):
            cg = conjugate_gradient(operator, rhs, max_iter=opts.cg_steps, tol=opts.cg_tol, batch_dims=1)
        else:
            cg = conjugate_gradient(lambda u: u, tree_map(torch.zeros_like, rhs), max_iter=0, batch_dims=1)
            cg.solution = rhs  # non-finite: `finish` reports it
        v_params, v_head = cg.solution
        adapted = net_k[1]
    else:
        results, loss_list, acc_list, adapted_list = [], [], [], []
        for t in range(B):
            xs, ys, xq, yq = tasks.task(t)
            net = anchor
            for _ in range(opts.inner_steps):
                leaves = tree_map(lambda w: w.detach().requires_grad_(True), net)
                g = _grad_autograd(lambda n: proximal(n, xs, ys), leaves, False)
                net = tree_map(lambda w, gw: (w - opts.inner_lr * gw).detach(), leaves, g)
            leaves = tree_map(lambda w: w.detach().requires_grad_(True), net)
            flat, spec = tree_flatten(leaves)
            q_loss, (_, q_acc) = outer(leaves, xq, yq)
            rhs = tree_unflatten(list(torch.autograd.grad(q_loss, flat)), spec)
            dg = torch.autograd.grad(inner(leaves, xs, ys), flat, create_graph=True)

            def operator(u):
                u_flat = tree_flatten(u)[0]
                hu = torch.autograd.grad(dg, flat, grad_outputs=u_flat, retain_graph=True)
                return tree_unflatten([a + b / opts.prox for a, b in zip(u_flat, hu)], spec)

            if all(bool(torch.isfinite(t).all()) for t in tree_flatten(rhs)[0]):
                cg = conjugate_gradient(operator, rhs, max_iter=opts.cg_steps, tol=opts.cg_tol)
            else:
                cg = conjugate_gradient(lambda u: u, tree_map(torch.zeros_like, rhs), max_iter=0)
                cg.solution = rhs
            results.append(cg)
            loss_list.append(q_loss.detach())
            acc_list.append(q_acc)
            adapted_list.append({k: v.detach() for k, v in net[1].items()})
            del dg, leaves, flat
        cg = stack_results(results)
        v_params, v_head = cg.solution
        losses, accs = torch.stack(loss_list), torch.stack(acc_list)
        adapted = {k: torch.stack([a[k] for a in adapted_list]) for k in head}
    hypergrad = {k: v.mean(0) for k, v in v_params.items()}
    head_grad = {k: v.mean(0) for k, v in v_head.items()}
    return finish("imaml", hypergrad, head_grad, losses.mean(), accs.mean(), cg=cg, adapted_head=adapted)
