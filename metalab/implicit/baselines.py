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

from metalab.core.results import HypergradResult, finish
from metalab.implicit import heads
from metalab.implicit.cg import CGResult, conjugate_gradient, stack_results
from metalab.implicit.common import Options, check_feature_dim
from metalab.implicit.hypergrad import prepare

Tree = Any
#: the whole network as a pytree: (backbone parameters, head)
Network = tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]
#: ``grad_fn(objective, tree, create_graph) -> gradient tree``
GradFn = Callable[[Callable[[Tree], torch.Tensor], Tree, bool], Tree]


def imaml_prox_rule(inner_lr: float) -> str:
    """What iMAML allows for ``prox`` at step size ``inner_lr``, in words (error messages quote it)."""
    return f"< 2 / inner_lr = {2 / inner_lr:g} for iMAML: at inner_lr·prox >= 2 its proximal inner loop diverges"


def check_imaml_prox(prox: float, inner_lr: float) -> None:
    """iMAML's inner step w ← w − inner_lr·(∇g + prox·(w − θ)) multiplies w − θ by (1 − inner_lr·prox)
    through the proximal term alone, so the inner loop diverges unless inner_lr·prox < 2.

    Raises
    ------
    ValueError
        Naming ``prox`` and the bound 2 / inner_lr when inner_lr·prox >= 2.
    """
    if inner_lr * prox >= 2:
        raise ValueError(f"prox={prox!r} is not allowed: {imaml_prox_rule(inner_lr)}")


# ---------------------------------------------------------------------------------------------
# Gradients of an objective of a pytree, and gradient descent with them


def _grad_autograd(fn: Callable[[Tree], torch.Tensor], tree: Tree, create_graph: bool) -> Tree:
    """Plain autograd; ``tree``'s leaves must require grad."""
    leaves, spec = tree_flatten(tree)
    grads = torch.autograd.grad(fn(tree), leaves, create_graph=create_graph)
    return tree_unflatten(list(grads), spec)


def _grad_detached(fn: Callable[[Tree], torch.Tensor], tree: Tree, create_graph: bool) -> Tree:
    """Plain autograd at a detached copy of ``tree``: the gradient's value, no graph back to ``tree``."""
    return _grad_autograd(fn, tree_map(lambda w: w.detach().requires_grad_(True), tree), False)


def _grad_func(fn: Callable[[Tree], torch.Tensor], tree: Tree, create_graph: bool) -> Tree:
    """torch.func (works under vmap); detached unless ``create_graph``."""
    grads = torch.func.grad(fn)(tree)
    return grads if create_graph else tree_map(torch.Tensor.detach, grads)


def descend(
    objective: Callable[[Tree], torch.Tensor], tree: Tree, steps: int, lr: float, grad_fn: GradFn, create_graph: bool
) -> Tree:
    """``steps`` gradient steps ``w ← w − lr ∇objective(w)`` on a pytree; differentiable through the
    steps when ``create_graph``."""
    for _ in range(steps):
        g = grad_fn(objective, tree, create_graph)
        tree = tree_map(lambda w, gw: w - lr * gw, tree, g)
    return tree


def _features(backbone: torch.nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor, head: dict) -> torch.Tensor:
    Z = functional_call(backbone, params, (x,))
    check_feature_dim(Z, head)
    return Z


def network_loss(backbone: torch.nn.Module, net: Network, x: torch.Tensor, Y: torch.Tensor, l2: float) -> torch.Tensor:
    """``g(net) = CE(x; θ, φ) + (l2/2)||φ||²`` of the whole network ``net = (θ, φ)`` on one task."""
    return heads.loss(net[1], _features(backbone, net[0], x, net[1]), Y, l2)


def _proximal_loss(backbone, anchor: Network, prox: float, l2: float, net: Network, x, Y) -> torch.Tensor:
    """``g(net) + (prox/2)||net − anchor||²`` (iMAML's inner objective)."""
    pairs = zip(tree_flatten(net)[0], tree_flatten(anchor)[0], strict=True)
    return network_loss(backbone, net, x, Y, l2) + 0.5 * prox * sum((w - a).square().sum() for w, a in pairs)


def adapt_network(
    backbone: torch.nn.Module,
    net: Network,
    x: torch.Tensor,
    Y: torch.Tensor,
    opts: Options,
    *,
    proximal: bool = False,
    grad_fn: GradFn = _grad_func,
    create_graph: bool = False,
) -> Network:
    """The whole network's inner loop on one task: K steps on g from ``net`` (MAML), or on g plus
    iMAML's proximal term (prox/2)||w − net||² anchored at the start when ``proximal``.

    Parameters
    ----------
    backbone : nn.Module
        The backbone, called functionally with ``net[0]``.
    net : (dict, dict)
        The start (θ, φ): backbone parameters and head.
    x, Y : tensor
        One task's support inputs (n, ...) and one-hot labels (n, C).
    opts : Options
        ``inner_steps`` K, ``inner_lr``, ``l2`` and (with ``proximal``) ``prox``.
    proximal : bool
        Add iMAML's proximal term.
    grad_fn, create_graph
        How gradients are taken (torch.func by default, so it runs under vmap) and whether the steps
        stay differentiable.

    Returns
    -------
    (dict, dict)
        The adapted network.
    """
    if proximal:
        objective = partial(_proximal_loss, backbone, net, opts.prox, opts.l2, x=x, Y=Y)
    else:
        objective = lambda n: network_loss(backbone, n, x, Y, opts.l2)  # noqa: E731
    return descend(objective, net, opts.inner_steps, opts.inner_lr, grad_fn, create_graph)


def _query_result(scores: torch.Tensor, Y: torch.Tensor, adapted_head: dict[str, torch.Tensor]):
    loss = heads.cross_entropy(scores, Y)
    return loss, (loss.detach(), heads.accuracy(scores, Y).detach(), {k: v.detach() for k, v in adapted_head.items()})


# ---------------------------------------------------------------------------------------------
# Per-task outer losses: (params, head, xs, ys, xq, yq) -> (query loss, (loss, accuracy, adapted head))


def _maml_task(grad_fn, first_order, backbone, opts, params, head, xs, ys, xq, yq):
    net = adapt_network(backbone, (params, head), xs, ys, opts, grad_fn=grad_fn, create_graph=not first_order)
    return _query_result(heads.logits(net[1], _features(backbone, net[0], xq, net[1])), yq, net[1])


def _head_unroll_task(recompute, backbone, opts, params, head, xs, ys, xq, yq):
    Zs = None if recompute else _features(backbone, params, xs, head)
    phi = head
    for _ in range(opts.inner_steps):
        Z = _features(backbone, params, xs, head) if recompute else Zs
        g = heads.grad(phi, Z, ys, opts.l2)
        phi = {k: phi[k] - opts.inner_lr * g[k] for k in phi}
    return _query_result(heads.logits(phi, _features(backbone, params, xq, head)), yq, phi)


def _unrolled_vmap(task_fn, wrt_head: bool, params, head, tasks):
    """Every task's gradient at once with torch.func; returns (hypergrad, head_grad, losses, accs, adapted)."""
    argnums = (0, 1) if wrt_head else 0
    batched = vmap(torch.func.grad(task_fn, argnums=argnums, has_aux=True), in_dims=(None, None, 0, 0, 0, 0))
    grads, (losses, accs, adapted) = batched(
        params, head, tasks.support_x, tasks.support_onehot, tasks.query_x, tasks.query_onehot
    )
    g_params, g_head = grads if wrt_head else (grads, None)
    head_grad = None if g_head is None else {k: v.mean(0) for k, v in g_head.items()}
    return {k: v.mean(0) for k, v in g_params.items()}, head_grad, losses, accs, adapted


def _unrolled_sequential(task_fn, wrt_head: bool, params, head, tasks):
    """The same, task by task with plain autograd (graph memory of one task)."""
    hypergrad = {k: torch.zeros_like(v) for k, v in params.items()}
    head_grad = {k: torch.zeros_like(v) for k, v in head.items()} if wrt_head else None
    losses, accs, adapted = [], [], []
    for t in range(tasks.n_tasks):
        p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        h = {k: v.clone().requires_grad_(wrt_head) for k, v in head.items()}
        loss, (value, accuracy, phi) = task_fn(p, h, *tasks.task(t))
        targets = {**{("p", k): v for k, v in p.items()}, **({("h", k): v for k, v in h.items()} if wrt_head else {})}
        grads = torch.autograd.grad(loss, list(targets.values()), allow_unused=True)
        for (kind, k), g in zip(targets, grads, strict=True):
            if g is not None:
                (hypergrad if kind == "p" else head_grad)[k] += g
        losses.append(value)
        accs.append(accuracy)
        adapted.append(phi)
        del loss, grads, p, h
    B = tasks.n_tasks
    head_grad = None if head_grad is None else {k: v / B for k, v in head_grad.items()}
    stacked = {k: torch.stack([a[k] for a in adapted]) for k in head}
    return {k: v / B for k, v in hypergrad.items()}, head_grad, torch.stack(losses), torch.stack(accs), stacked


def _run_unrolled(
    method: str, make_task, wrt_head: bool, backbone, params, head, sx, sy, qx, qy, options
) -> HypergradResult:
    opts = Options(**options)
    backbone, params, head, tasks = prepare(backbone, params, head, sx, sy, qx, qy)
    if opts.batch_mode == "vmap":
        run = partial(_unrolled_vmap, make_task(_grad_func, backbone, opts))
    else:
        run = partial(_unrolled_sequential, make_task(_grad_autograd, backbone, opts))
    hypergrad, head_grad, losses, accs, adapted = run(wrt_head, params, head, tasks)
    return finish(method, hypergrad, head_grad, losses.mean(), accs.mean(), adapted_head=adapted)


def _maml_maker(first_order: bool):
    return lambda grad_fn, backbone, opts: partial(_maml_task, grad_fn, first_order, backbone, opts)


def _unroll_maker(recompute: bool):
    return lambda grad_fn, backbone, opts: partial(_head_unroll_task, recompute, backbone, opts)


#: (task maker, meta-learns the head) of every unrolled method
_UNROLLED = {
    "maml": (_maml_maker(False), True),
    "fomaml": (_maml_maker(True), True),
    "anil": (_unroll_maker(False), True),
    "anil_recompute": (_unroll_maker(True), True),
    "itd_bio": (_unroll_maker(False), False),
    "itd_bio_recompute": (_unroll_maker(True), False),
}


def _unrolled(method: str, backbone, params, head, support_x, support_y, query_x, query_y, options) -> HypergradResult:
    make_task, wrt_head = _UNROLLED[method]
    return _run_unrolled(
        method, make_task, wrt_head, backbone, params, head, support_x, support_y, query_x, query_y, options
    )


def maml(backbone, params, head, support_x, support_y, query_x, query_y, **options: Any) -> HypergradResult:
    """Second-order MAML on the whole network (backbone and head both adapt and are meta-learned).

    Parameters
    ----------
    backbone, params, head, support_x, support_y, query_x, query_y, **options
        As in :func:`~metalab.implicit.registry.hypergradient` (reads inner_steps, inner_lr, l2, batch_mode).

    Returns
    -------
    HypergradResult
        The backbone's meta-gradient and the head initialisation's, averaged over the tasks, and the adapted heads.
    """
    return _unrolled("maml", backbone, params, head, support_x, support_y, query_x, query_y, options)


def fomaml(backbone, params, head, support_x, support_y, query_x, query_y, **options: Any) -> HypergradResult:
    """First-order MAML: the query gradient at the adapted weights.

    Parameters
    ----------
    backbone, params, head, support_x, support_y, query_x, query_y, **options
        As in :func:`~metalab.implicit.registry.hypergradient` (reads inner_steps, inner_lr, l2, batch_mode).

    Returns
    -------
    HypergradResult
        The backbone's meta-gradient and the head initialisation's, averaged over the tasks, and the adapted heads.
    """
    return _unrolled("fomaml", backbone, params, head, support_x, support_y, query_x, query_y, options)


def anil(backbone, params, head, support_x, support_y, query_x, query_y, **options: Any) -> HypergradResult:
    """ANIL with the backbone features computed once per task.

    Parameters
    ----------
    backbone, params, head, support_x, support_y, query_x, query_y, **options
        As in :func:`~metalab.implicit.registry.hypergradient` (reads inner_steps, inner_lr, l2, batch_mode).

    Returns
    -------
    HypergradResult
        The backbone's meta-gradient and the head initialisation's, averaged over the tasks, and the adapted heads.
    """
    return _unrolled("anil", backbone, params, head, support_x, support_y, query_x, query_y, options)


def anil_recompute(backbone, params, head, support_x, support_y, query_x, query_y, **options: Any) -> HypergradResult:
    """ANIL recomputing the support features with graph at every inner step (the authors' baseline).

    Parameters
    ----------
    backbone, params, head, support_x, support_y, query_x, query_y, **options
        As in :func:`~metalab.implicit.registry.hypergradient` (reads inner_steps, inner_lr, l2, batch_mode).

    Returns
    -------
    HypergradResult
        The backbone's meta-gradient and the head initialisation's, averaged over the tasks, and the adapted heads.
    """
    return _unrolled("anil_recompute", backbone, params, head, support_x, support_y, query_x, query_y, options)


def itd_bio(backbone, params, head, support_x, support_y, query_x, query_y, **options: Any) -> HypergradResult:
    """ITD-BiO: backpropagation through K head steps on once-computed features; backbone only.

    Parameters
    ----------
    backbone, params, head, support_x, support_y, query_x, query_y, **options
        As in :func:`~metalab.implicit.registry.hypergradient` (reads inner_steps, inner_lr, l2, batch_mode).

    Returns
    -------
    HypergradResult
        The backbone's meta-gradient, averaged over the tasks, and the adapted heads.
    """
    return _unrolled("itd_bio", backbone, params, head, support_x, support_y, query_x, query_y, options)


def itd_bio_recompute(
    backbone, params, head, support_x, support_y, query_x, query_y, **options: Any
) -> HypergradResult:
    """ITD-BiO with features recomputed with graph at every inner step (the authors' baseline).

    Parameters
    ----------
    backbone, params, head, support_x, support_y, query_x, query_y, **options
        As in :func:`~metalab.implicit.registry.hypergradient` (reads inner_steps, inner_lr, l2, batch_mode).

    Returns
    -------
    HypergradResult
        The backbone's meta-gradient, averaged over the tasks, and the adapted heads.
    """
    return _unrolled("itd_bio_recompute", backbone, params, head, support_x, support_y, query_x, query_y, options)


# ---------------------------------------------------------------------------------------------
# iMAML: K proximal steps, then CG on (I + ∇²g / prox) v = ∇f(w_K)


def _outer(backbone, net: Network, xq, yq):
    scores = heads.logits(net[1], _features(backbone, net[0], xq, net[1]))
    loss = heads.cross_entropy(scores, yq)
    return loss, (loss.detach(), heads.accuracy(scores, yq).detach())


def _solve_imaml(operator, rhs: Tree, opts: Options, batch_dims: int) -> CGResult:
    """CG on the iMAML system; a non-finite right-hand side (a diverged inner loop) is passed through
    unsolved, for :func:`~metalab.core.results.finish` to report."""
    if all(bool(torch.isfinite(t).all()) for t in tree_flatten(rhs)[0]):
        return conjugate_gradient(operator, rhs, max_iter=opts.cg_steps, tol=opts.cg_tol, batch_dims=batch_dims)
    cg = conjugate_gradient(lambda u: u, tree_map(torch.zeros_like, rhs), max_iter=0, batch_dims=batch_dims)
    cg.solution = rhs
    return cg


def _imaml_vmap(backbone, anchor: Network, tasks, opts: Options):
    """All tasks at once: (CG result over the batch, query losses, accuracies, adapted heads)."""
    adapt = lambda xs, ys: adapt_network(backbone, anchor, xs, ys, opts, proximal=True, create_graph=True)  # noqa: E731
    net_k = vmap(adapt)(tasks.support_x, tasks.support_onehot)
    outer = partial(_outer, backbone)
    rhs, (losses, accs) = vmap(torch.func.grad(outer, has_aux=True))(net_k, tasks.query_x, tasks.query_onehot)
    inner_grad = torch.func.grad(partial(network_loss, backbone), argnums=0)

    def task_hvp(net, u, xs, ys):
        return torch.func.jvp(lambda n: inner_grad(n, xs, ys, opts.l2), (net,), (u,))[1]

    def operator(u):
        hu = vmap(task_hvp)(net_k, u, tasks.support_x, tasks.support_onehot)
        return tree_map(lambda a, b: a + b / opts.prox, u, hu)

    return _solve_imaml(operator, rhs, opts, batch_dims=1), losses, accs, net_k[1]


def _imaml_one_task(backbone, anchor: Network, opts: Options, xs, ys, xq, yq):
    """One task with plain autograd: (CG result, query loss, accuracy, adapted head)."""
    net = adapt_network(backbone, anchor, xs, ys, opts, proximal=True, grad_fn=_grad_detached)
    leaves = tree_map(lambda w: w.detach().requires_grad_(True), net)
    flat, spec = tree_flatten(leaves)
    q_loss, (_, q_acc) = _outer(backbone, leaves, xq, yq)
    rhs = tree_unflatten(list(torch.autograd.grad(q_loss, flat)), spec)
    dg = torch.autograd.grad(network_loss(backbone, leaves, xs, ys, opts.l2), flat, create_graph=True)

    def operator(u):
        u_flat = tree_flatten(u)[0]
        hu = torch.autograd.grad(dg, flat, grad_outputs=u_flat, retain_graph=True)
        return tree_unflatten([a + b / opts.prox for a, b in zip(u_flat, hu, strict=True)], spec)

    cg = _solve_imaml(operator, rhs, opts, batch_dims=0)
    return cg, q_loss.detach(), q_acc, {k: v.detach() for k, v in net[1].items()}


def _imaml_sequential(backbone, anchor: Network, tasks, opts: Options):
    """Task by task (graph memory of one task); the same outputs as :func:`_imaml_vmap`."""
    solved = [_imaml_one_task(backbone, anchor, opts, *tasks.task(t)) for t in range(tasks.n_tasks)]
    adapted = {k: torch.stack([s[3][k] for s in solved]) for k in anchor[1]}
    losses, accs = torch.stack([s[1] for s in solved]), torch.stack([s[2] for s in solved])
    return stack_results([s[0] for s in solved]), losses, accs, adapted


def imaml(backbone, params, head, support_x, support_y, query_x, query_y, **options: Any) -> HypergradResult:
    """iMAML: K steps on g + (prox/2)||w − θ||² from w = θ, then N CG steps on (I + ∇²g/prox) v = ∇f(w_K).

    Parameters
    ----------
    backbone, params, head
        The network (a buffer-free module, its parameters as a dict) and the head dict.
    support_x, support_y, query_x, query_y : tensor
        The meta-batch: inputs (B, n, ...) and integer labels (B, n).
    **options
        See :class:`~metalab.implicit.common.Options`; ``inner_lr·prox`` must be below 2.

    Returns
    -------
    HypergradResult
        The meta-gradient v for the backbone (``hypergrad``) and the head (``head_hypergrad``),
        averaged over the tasks, with the CG result(s) in ``cg``.
    """
    opts = Options(**options)
    check_imaml_prox(opts.prox, opts.inner_lr)
    backbone, params, head, tasks = prepare(backbone, params, head, support_x, support_y, query_x, query_y)
    solve = _imaml_vmap if opts.batch_mode == "vmap" else _imaml_sequential
    cg, losses, accs, adapted = solve(backbone, (params, head), tasks, opts)
    v_params, v_head = cg.solution
    hypergrad = {k: v.mean(0) for k, v in v_params.items()}
    head_grad = {k: v.mean(0) for k, v in v_head.items()}
    return finish("imaml", hypergrad, head_grad, losses.mean(), accs.mean(), cg=cg, adapted_head=adapted)
