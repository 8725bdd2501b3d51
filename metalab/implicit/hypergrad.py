"""Algorithm 1 of "Memory-Reduced Meta-Learning with Guaranteed Convergence" (arXiv 2412.12030).

Bilevel setting: backbone θ (upper level), linear head φ on the backbone's features (lower level),

    g(θ, φ) = CE(support; θ, φ) + (l2 / 2) ||φ||²,      f(θ, φ) = CE(query; θ, φ),

and the hypergradient at the K-step inner iterate φ_K is ``∇_θ f − ∇²_θφ g · v`` with ``v`` from N
conjugate-gradient steps on ``∇²_φφ g · v = ∇_φ f``.

:func:`implicit_hypergradient` computes it in *fused* form.  Per task the backbone runs once on the
support set and once on the query set, keeping one graph.  The K head steps and the N CG steps only
need the (detached) features, so they cost head-sized tensor algebra and add nothing to the graph.
Then a single backward pass through the backbone differentiates the surrogate

    L(θ) = f(Z_q(θ), φ_K) − ⟨∇_φ g(Z_s(θ), φ_K), v⟩        (φ_K, v held fixed),

whose gradient is exactly ``∇_θ f − ∇²_θφ g · v``.  Graph memory is therefore flat in K and N.

:func:`unfused_implicit_hypergradient` is the authors' two-pass structure (inner loop, then explicit
autograd second derivatives of ∇_φ g); :func:`dense_implicit_hypergradient` solves the inner problem
to optimality and applies the implicit-function theorem with explicit matrices.  Both are references.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

from metalab.core.checks import check_int, check_number
from metalab.core.results import HypergradientWarning, HypergradResult, finish
from metalab.implicit import heads
from metalab.implicit.cg import CGResult, conjugate_gradient, stack_results
from metalab.implicit.common import (
    Options,
    check_backbone,
    check_feature_dim,
    check_params,
    check_tasks,
)
from metalab.nets import features

#: the status of an implicit hypergradient whose inner problem was left far from its optimum
INNER_NOT_CONVERGED = "inner_not_converged"


def prepare(backbone: Any, params: Any, head: Any, support_x: Any, support_y: Any, query_x: Any, query_y: Any):
    """Validate the common arguments; returns (backbone, params, head, tasks)."""
    backbone = check_backbone(backbone)
    params, head = check_params(params, head)
    ref = head["weight"]
    tasks = check_tasks(support_x, support_y, query_x, query_y, ref.shape[0], ref.dtype, ref.device)
    return backbone, params, head, tasks


@dataclass
class WarmStart:
    """State carried between calls of :func:`implicit_hypergradient` (AID-BiO style warm starts).

    ``head``: each task slot's last adapted head (B, ...), used as the next inner-loop start instead of
    the given head; ``v``: the last CG solutions, used as the next CG start.  Empty means cold start.
    """

    head: dict[str, torch.Tensor] | None = None
    v: dict[str, torch.Tensor] | None = None

    def reset(self) -> None:
        self.head = None
        self.v = None

    def check(self, n_tasks: int, head: dict[str, torch.Tensor]) -> None:
        for name, state in (("head", self.head), ("v", self.v)):
            if state is None:
                continue
            want = {k: (n_tasks, *head[k].shape) for k in head}
            got = {k: tuple(t.shape) for k, t in state.items()}
            if got != want:
                raise ValueError(
                    f"warm_start.{name} holds shapes {got} but this call needs {want} "
                    "(the number of tasks or the head changed); call warm_start.reset()"
                )


@dataclass
class HeadSolve:
    head: dict[str, torch.Tensor]  # φ_K, (B, C, d) / (B, C)
    cg: CGResult  # v = cg.solution
    query_loss: torch.Tensor  # (B,)
    query_accuracy: torch.Tensor  # (B,)
    inner_residual: torch.Tensor  # (B,) ||∇_φ g(φ_K)|| / ||∇_φ g(φ_0)||


def head_solve(
    Zs: torch.Tensor,
    Ys: torch.Tensor,
    Zq: torch.Tensor,
    Yq: torch.Tensor,
    head0: dict[str, torch.Tensor],
    v0: dict[str, torch.Tensor] | None,
    opts: Options,
) -> HeadSolve:
    """The inner solve on g (:func:`~metalab.implicit.heads.minimise`) and N CG steps on
    ∇²_φφ g v = ∇_φ f, on detached features (B, n, d)."""
    inner = heads.minimise(head0, Zs, Ys, opts)
    head = inner.head
    with torch.no_grad():
        rhs = heads.grad(head, Zq, Yq, 0.0)
        if not all(bool(torch.isfinite(t).all()) for t in (*head.values(), *rhs.values())):
            # The inner loop diverged; CG would reject the non-finite right-hand side.  Zero v
            # keeps the surrogate defined and `finish` reports the non-finite hypergradient.
            zero = {k: torch.zeros_like(t) for k, t in rhs.items()}
            cg = conjugate_gradient(lambda u: u, zero, max_iter=0, batch_dims=1)
        else:
            cg = conjugate_gradient(
                heads.hessian_operator(head, Zs, opts.l2),
                rhs,
                max_iter=opts.cg_steps,
                tol=opts.cg_tol,
                x0=v0,
                batch_dims=1,
            )
        scores = heads.logits(head, Zq)
        return HeadSolve(head, cg, heads.cross_entropy(scores, Yq), heads.accuracy(scores, Yq), inner.residual)


def flag_unsolved_inner_problem(result: HypergradResult, inner_residual: torch.Tensor, limit: float) -> HypergradResult:
    """The safeguard: ``result`` with status ``INNER_NOT_CONVERGED`` and a :class:`HypergradientWarning`
    when some task's relative inner gradient norm ``||∇_φ g(φ_K)|| / ||∇_φ g(φ_0)||`` exceeds ``limit``.

    The implicit-function theorem gives the hypergradient at φ* only; far from it (a few small steps,
    or steps too long for the curvature) the estimate can point anywhere while every number is finite.
    """
    worst = float(inner_residual.max())
    if result.status != "ok" or not worst > limit:
        return result
    warnings.warn(
        HypergradientWarning(
            f"method {result.method!r}: the inner problem is not solved (||∇_φ g(φ_K)|| is {worst:.3g} of its "
            f"start, above max_inner_residual={limit:g}), so the implicit hypergradient is unreliable; raise "
            "inner_steps, use inner_solver='newton', or an inner_lr below 2/L for the features' curvature L"
        ),
        stacklevel=3,
    )
    return dataclasses.replace(result, status=INNER_NOT_CONVERGED)


def surrogate(
    Zs: torch.Tensor,
    Zq: torch.Tensor,
    Ys: torch.Tensor,
    Yq: torch.Tensor,
    head: dict[str, torch.Tensor],
    v: dict[str, torch.Tensor],
) -> torch.Tensor:
    """Σ_tasks f(Z_q, φ_K) − ⟨∇_φ g(Z_s, φ_K), v⟩; its θ-gradient is the hypergradient (the l2 part of
    ∇_φ g does not depend on the features and is left out)."""
    query = heads.cross_entropy(heads.logits(head, Zq), Yq)
    return (query - heads.inner(heads.grad(head, Zs, Ys, 0.0), v)).sum()


def implicit_hypergradient(
    backbone: torch.nn.Module,
    params: dict[str, torch.Tensor],
    head: dict[str, torch.Tensor],
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    query_x: torch.Tensor,
    query_y: torch.Tensor,
    *,
    warm_start: WarmStart | None = None,
    **options: Any,
) -> HypergradResult:
    """Algorithm 1, fused: the CG-based implicit hypergradient with one backbone graph per task.

    Parameters
    ----------
    backbone, params, head, support_x, support_y, query_x, query_y
        As in :func:`~metalab.implicit.registry.hypergradient`.
    warm_start : WarmStart, optional
        The inner loop and CG start from the previous call's per-task solutions (AID-BiO); the state
        object is updated in place.
    **options
        inner_steps K, inner_lr, l2, cg_steps N, cg_tol, batch_mode, inner_solver, inner_tol,
        max_inner_residual (see :class:`~metalab.implicit.common.Options`).  ``batch_mode="vmap"`` runs all tasks' backbones
        together (graph memory ×B); ``"sequential"`` loops over tasks with plain autograd (graph
        memory of one task).

    Returns
    -------
    HypergradResult
        ``∇_θ f − ∇²_θφ g · v`` averaged over the tasks, the CG solves and the adapted heads;
        ``head_hypergrad`` is None (the head initialisation is not meta-learned here).  Status
        ``"inner_not_converged"`` (with a :class:`HypergradientWarning`) when the inner solve left some
        task's relative gradient norm above ``max_inner_residual``.
    """
    opts = Options(**options)
    backbone, params, head, tasks = prepare(backbone, params, head, support_x, support_y, query_x, query_y)
    n_tasks = tasks.n_tasks
    if warm_start is not None:
        if not isinstance(warm_start, WarmStart):
            raise ValueError(f"warm_start of type {type(warm_start).__name__} is not allowed: None or a WarmStart")
        warm_start.check(n_tasks, head)
    head0 = warm_start.head if warm_start is not None and warm_start.head is not None else None
    if head0 is None:
        head0 = {k: t.expand(n_tasks, *t.shape) for k, t in head.items()}
    v0 = warm_start.v if warm_start is not None else None
    fused = _fused_vmap if opts.batch_mode == "vmap" else _fused_sequential
    hypergrad, solve = fused(backbone, params, head, tasks, head0, v0, opts)
    if warm_start is not None:
        warm_start.head = {k: v.detach().clone() for k, v in solve.head.items()}
        warm_start.v = {k: v.detach().clone() for k, v in solve.cg.solution.items()}
    result = finish(
        "implicit",
        hypergrad,
        None,
        solve.query_loss.mean(),
        solve.query_accuracy.mean(),
        cg=solve.cg,
        adapted_head=solve.head,
    )
    return flag_unsolved_inner_problem(result, solve.inner_residual, opts.max_inner_residual)


def _fused_vmap(backbone, params, head, tasks, head0, v0, opts: Options) -> tuple[dict[str, torch.Tensor], HeadSolve]:
    """Every task's backbone in one graph (graph memory ×B): (hypergradient, the head solves).

    The features are computed under autograd, vmapped over the tasks when there are several (with one,
    the plain call: vmap's batch-norm rule saves extra elementwise intermediates), and one backward pass
    of the surrogate per feature set (query, then support: the two graphs are disjoint) accumulates the
    hypergradient into the leaves' ``.grad`` in place, so the largest parameter's gradient is held twice,
    not three times (two partial sums and their total); the feature-sized cotangents are freed as each
    pass moves on (``torch.func.vjp`` on the features held 1.8x the sequential mode's peak at one task).
    """
    leaves = {k: p.detach().requires_grad_(True) for k, p in params.items()}
    if tasks.n_tasks == 1:
        features_of = lambda x: features(backbone, leaves, x[0]).unsqueeze(0)  # noqa: E731
    else:
        features_of = vmap(lambda x: functional_call(backbone, leaves, (x,)))
    with torch.enable_grad():
        Zs, Zq = features_of(tasks.support_x), features_of(tasks.query_x)
    check_feature_dim(Zs, head)
    Zs_d, Zq_d = Zs.detach(), Zq.detach()
    solve = head_solve(Zs_d, tasks.support_onehot, Zq_d, tasks.query_onehot, head0, v0, opts)
    for support, query in ((Zs_d, Zq), (Zs, Zq_d)):  # the query features' graph, then the support's
        with torch.enable_grad():
            value = surrogate(support, query, tasks.support_onehot, tasks.query_onehot, solve.head, solve.cg.solution)
        value.backward(inputs=list(leaves.values()))
    return {k: _or_zeros(leaf.grad, leaf).div_(tasks.n_tasks) for k, leaf in leaves.items()}, solve


def _fused_task(backbone, params, head, task, head0, v0, opts: Options) -> tuple[dict[str, torch.Tensor], HeadSolve]:
    """One task with plain autograd: the θ-gradient of its surrogate and its head solve (a batch of one)."""
    leaves = {k: p.clone().requires_grad_(True) for k, p in params.items()}
    xs, ys, xq, yq = task
    Zs = features(backbone, leaves, xs).unsqueeze(0)
    Zq = features(backbone, leaves, xq).unsqueeze(0)
    check_feature_dim(Zs, head)
    ys, yq = ys.unsqueeze(0), yq.unsqueeze(0)
    solve = head_solve(Zs.detach(), ys, Zq.detach(), yq, head0, v0, opts)
    value = surrogate(Zs, Zq, ys, yq, solve.head, solve.cg.solution)
    grads = torch.autograd.grad(value, list(leaves.values()), allow_unused=True)
    return {k: torch.zeros_like(p) if g is None else g for (k, p), g in zip(params.items(), grads, strict=True)}, solve


def _fused_sequential(backbone, params, head, tasks, head0, v0, opts: Options):
    """Task by task (graph memory of one task); the same outputs as :func:`_fused_vmap`."""
    hypergrad = {k: torch.zeros_like(t) for k, t in params.items()}
    solves = []
    for t in range(tasks.n_tasks):
        h0 = {k: v[t : t + 1] for k, v in head0.items()}
        w0 = None if v0 is None else {k: v[t : t + 1] for k, v in v0.items()}
        grads, solve = _fused_task(backbone, params, head, tasks.task(t), h0, w0, opts)
        for k, g in grads.items():
            hypergrad[k] += g
        solves.append(solve)
    solve = HeadSolve(
        head={k: torch.cat([s.head[k] for s in solves]) for k in head},
        cg=stack_results([s.cg for s in solves]),
        query_loss=torch.cat([s.query_loss for s in solves]),
        query_accuracy=torch.cat([s.query_accuracy for s in solves]),
        inner_residual=torch.cat([s.inner_residual for s in solves]),
    )
    return {k: g / tasks.n_tasks for k, g in hypergrad.items()}, solve


# ---------------------------------------------------------------------------------------------
# References


@dataclass
class _TaskHypergrad:
    """One task's share of a reference hypergradient (the references loop over tasks)."""

    hypergrad: dict[str, torch.Tensor]
    head: dict[str, torch.Tensor]
    query_loss: torch.Tensor
    query_accuracy: torch.Tensor
    cg: CGResult | None = None


def _mean_over_tasks(method: str, params, head, per_task: list[_TaskHypergrad]) -> HypergradResult:
    """The mean of the tasks' hypergradients, losses and accuracies, as ``method``'s result."""
    n = len(per_task)
    hypergrad = {k: sum(t.hypergrad[k] for t in per_task) / n for k in params}
    solves = [t.cg for t in per_task if t.cg is not None]
    return finish(
        method,
        hypergrad,
        None,
        torch.stack([t.query_loss for t in per_task]).mean(),
        torch.stack([t.query_accuracy for t in per_task]).mean(),
        cg=stack_results(solves) if solves else None,
        adapted_head={k: torch.stack([t.head[k] for t in per_task]) for k in head},
    )


def _or_zeros(gradient: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """An unused parameter's gradient (None) as zeros."""
    return torch.zeros_like(like) if gradient is None else gradient


def _linear_ce(head: dict[str, torch.Tensor], Z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(F.linear(Z, head["weight"], head["bias"]), y)


def _ridge(head: dict[str, torch.Tensor], l2: float) -> torch.Tensor:
    return 0.5 * l2 * sum(t.square().sum() for t in head.values())


def unfused_implicit_hypergradient(
    backbone: torch.nn.Module,
    params: dict[str, torch.Tensor],
    head: dict[str, torch.Tensor],
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    query_x: torch.Tensor,
    query_y: torch.Tensor,
    **options: Any,
) -> HypergradResult:
    """Algorithm 1 in the authors' two-pass structure (a reference; always task by task).

    Inner loop with autograd on features recomputed without graph at every step; then f and g with
    graph, ∇_φ g with ``create_graph``, CG with autograd Hessian-vector products, and the mixed term
    ``∇²_θφ g · v`` as ``autograd.grad(∇_φ g, θ, grad_outputs=v)``.

    Parameters
    ----------
    backbone, params, head, support_x, support_y, query_x, query_y, **options
        As in :func:`implicit_hypergradient` (``batch_mode`` is ignored).

    Returns
    -------
    HypergradResult
        The same hypergradient as :func:`implicit_hypergradient`, computed in two passes.
    """
    opts = Options(**options)
    backbone, params, head, tasks = prepare(backbone, params, head, support_x, support_y, query_x, query_y)
    per_task = [
        _unfused_task(
            backbone, params, head, opts, tasks.support_x[t], tasks.support_y[t], tasks.query_x[t], tasks.query_y[t]
        )
        for t in range(tasks.n_tasks)
    ]
    return _mean_over_tasks("implicit_unfused", params, head, per_task)


def _unfused_task(backbone, params, head, opts: Options, xs, ys, xq, yq) -> _TaskHypergrad:
    """One task of :func:`unfused_implicit_hypergradient`."""
    phi = dict(head)
    for _ in range(opts.inner_steps):
        with torch.no_grad():
            Z = features(backbone, params, xs)
        leaves = {k: v.detach().requires_grad_(True) for k, v in phi.items()}
        grads = torch.autograd.grad(_linear_ce(leaves, Z, ys) + _ridge(leaves, opts.l2), list(leaves.values()))
        phi = {k: (leaves[k] - opts.inner_lr * g).detach() for k, g in zip(leaves, grads, strict=True)}
    theta = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    phi_leaves = {k: v.detach().requires_grad_(True) for k, v in phi.items()}
    Zs, Zq = features(backbone, theta, xs), features(backbone, theta, xq)
    g = _linear_ce(phi_leaves, Zs, ys) + _ridge(phi_leaves, opts.l2)
    scores = F.linear(Zq, phi_leaves["weight"], phi_leaves["bias"])
    f = F.cross_entropy(scores, yq)
    phi_list, theta_list = list(phi_leaves.values()), list(theta.values())
    df = torch.autograd.grad(f, phi_list + theta_list, retain_graph=True, allow_unused=True)
    df_phi = dict(zip(phi_leaves, df[: len(phi_list)], strict=True))
    dg_phi = torch.autograd.grad(g, phi_list, create_graph=True)

    def hvp(u: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = torch.autograd.grad(dg_phi, phi_list, grad_outputs=[u[k] for k in phi_leaves], retain_graph=True)
        return dict(zip(phi_leaves, out, strict=True))

    cg = conjugate_gradient(hvp, df_phi, max_iter=opts.cg_steps, tol=opts.cg_tol)
    mixed = torch.autograd.grad(
        dg_phi, theta_list, grad_outputs=[cg.solution[k] for k in phi_leaves], allow_unused=True
    )
    hypergrad = {
        k: _or_zeros(d, p) - _or_zeros(m, p)
        for (k, p), d, m in zip(theta.items(), df[len(phi_list) :], mixed, strict=True)
    }
    accuracy = (scores.argmax(-1) == yq).to(scores.dtype).mean()
    return _TaskHypergrad(hypergrad, {k: v.detach() for k, v in phi.items()}, f.detach(), accuracy, cg)


def dense_implicit_hypergradient(
    backbone: torch.nn.Module,
    params: dict[str, torch.Tensor],
    head: dict[str, torch.Tensor],
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    query_x: torch.Tensor,
    query_y: torch.Tensor,
    *,
    l2: float,
    newton_steps: int = 50,
) -> HypergradResult:
    """The exact implicit-function-theorem hypergradient, for tiny problems (a test reference).

    Solves the inner problem to optimality φ* by damped Newton, forms the head Hessian and the mixed
    Jacobian ∂(∇_φ g)/∂θ as explicit matrices and returns ``∇_θ f − (∂∇_φ g/∂θ)ᵀ H⁻¹ ∇_φ f`` at φ*.

    Parameters
    ----------
    backbone, params, head, support_x, support_y, query_x, query_y
        As in :func:`~metalab.implicit.registry.hypergradient`.
    l2 : float
        The ridge strength, > 0 so that H is invertible.
    newton_steps : int
        At most this many Newton steps (>= 1).

    Returns
    -------
    HypergradResult
        The exact hypergradient averaged over the tasks, and φ* per task as ``adapted_head``.
    """
    l2 = check_number("l2", l2)
    newton_steps = check_int("newton_steps", newton_steps, 1)
    backbone, params, head, tasks = prepare(backbone, params, head, support_x, support_y, query_x, query_y)
    per_task = [
        _dense_task(backbone, params, head, l2, newton_steps, tasks.support_x[t], tasks.support_y[t],
                    tasks.query_x[t], tasks.query_y[t])
        for t in range(tasks.n_tasks)
    ]  # fmt: skip
    return _mean_over_tasks("implicit_dense", params, head, per_task)


def _hessian(objective: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``∇²objective(x)`` by reverse mode twice (``torch.func.hessian``'s forward mode makes torch load its
    jvp decompositions through the deprecated ``torch.jit.script``, a warning on every page that runs it)."""
    return torch.func.jacrev(torch.func.jacrev(objective))(x)


def _newton(objective: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, steps: int) -> torch.Tensor:
    """Damped Newton on a strongly convex ``objective`` of a vector, with an Armijo backtracking line search."""
    for _ in range(steps):
        gr = torch.func.grad(objective)(x)
        if float(gr.norm()) <= 1e-14 * max(1.0, float(x.norm())):
            break
        step = torch.linalg.solve(_hessian(objective, x), gr)
        value, rate, scale = float(objective(x)), float(gr @ step), 1.0
        while scale > 1e-10 and float(objective(x - scale * step)) > value - 0.25 * scale * rate:
            scale *= 0.5
        x = x - scale * step
    return x


def _dense_task(backbone, params, head, l2: float, newton_steps: int, xs, ys, xq, yq) -> _TaskHypergrad:
    """One task of :func:`dense_implicit_hypergradient`: ``∇_θ f − (∂∇_φ g/∂θ)ᵀ H⁻¹ ∇_φ f`` at φ*."""
    C, d = head["weight"].shape

    def unflat(x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"weight": x[: C * d].reshape(C, d), "bias": x[C * d :]}

    def g_of(theta: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        h = unflat(x)
        return _linear_ce(h, features(backbone, theta, xs), ys) + _ridge(h, l2)

    def f_of(theta: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return _linear_ce(unflat(x), features(backbone, theta, xq), yq)

    Zs = features(backbone, params, xs).detach()

    def g_x(x: torch.Tensor) -> torch.Tensor:
        h = unflat(x)
        return _linear_ce(h, Zs, ys) + _ridge(h, l2)

    x = _newton(g_x, torch.cat([head["weight"].reshape(-1), head["bias"]]), newton_steps)
    df_theta, df_x = torch.func.grad(f_of, argnums=(0, 1))(params, x)
    w = torch.linalg.solve(_hessian(g_x, x), df_x)
    mixed = torch.func.jacrev(lambda th: torch.func.grad(g_of, argnums=1)(th, x))(params)
    hypergrad = {k: df_theta[k] - torch.tensordot(w, mixed[k], dims=1) for k in params}
    h = unflat(x)
    scores = F.linear(features(backbone, params, xq), h["weight"], h["bias"])
    accuracy = (scores.argmax(-1) == yq).to(scores.dtype).mean()
    return _TaskHypergrad(hypergrad, h, F.cross_entropy(scores, yq).detach(), accuracy)
