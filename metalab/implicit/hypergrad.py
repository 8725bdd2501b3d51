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

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call, vjp, vmap

from metalab.implicit import heads
from metalab.implicit.cg import CGResult, conjugate_gradient, stack_results
from metalab.implicit.common import (
    HypergradResult,
    Options,
    check_backbone,
    check_feature_dim,
    check_int,
    check_number,
    check_params,
    check_tasks,
    finish,
)
from metalab.nets import features


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


def head_solve(
    Zs: torch.Tensor,
    Ys: torch.Tensor,
    Zq: torch.Tensor,
    Yq: torch.Tensor,
    head0: dict[str, torch.Tensor],
    v0: dict[str, torch.Tensor] | None,
    opts: Options,
) -> HeadSolve:
    """K head steps on g and N CG steps on ∇²_φφ g v = ∇_φ f, on detached features (B, n, d)."""
    with torch.no_grad():
        head = heads.gradient_descent(head0, Zs, Ys, opts.l2, opts.inner_steps, opts.inner_lr)
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
        return HeadSolve(head, cg, heads.cross_entropy(scores, Yq), heads.accuracy(scores, Yq))


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

    ``options``: see :class:`~metalab.implicit.common.Options` (inner_steps, inner_lr, l2, cg_steps,
    cg_tol, batch_mode).  ``batch_mode="vmap"`` runs all tasks' backbones together (graph memory ×B);
    ``"sequential"`` loops over tasks with plain autograd (graph memory of one task).  With
    ``warm_start`` the inner loop and CG start from the previous call's per-task solutions (AID-BiO);
    the state object is updated in place.  ``head_hypergrad`` is None: the head initialisation is not
    meta-learned here.
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

    if opts.batch_mode == "vmap":

        def both(p: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            call = vmap(lambda x: functional_call(backbone, p, (x,)))
            return call(tasks.support_x), call(tasks.query_x)

        (Zs, Zq), pullback = vjp(both, params)
        check_feature_dim(Zs, head)
        Zs_d, Zq_d = Zs.detach(), Zq.detach()
        solve = head_solve(Zs_d, tasks.support_onehot, Zq_d, tasks.query_onehot, head0, v0, opts)
        cot = torch.func.grad(surrogate, argnums=(0, 1))(
            Zs_d, Zq_d, tasks.support_onehot, tasks.query_onehot, solve.head, solve.cg.solution
        )
        (total,) = pullback(cot)
        hypergrad = {k: g / n_tasks for k, g in total.items()}
        cg, adapted = solve.cg, solve.head
        losses, accs = solve.query_loss, solve.query_accuracy
    else:
        hypergrad = {k: torch.zeros_like(t) for k, t in params.items()}
        solves = []
        for t in range(n_tasks):
            leaves = {k: p.clone().requires_grad_(True) for k, p in params.items()}
            xs, ys, xq, yq = tasks.task(t)
            Zs = features(backbone, leaves, xs).unsqueeze(0)
            Zq = features(backbone, leaves, xq).unsqueeze(0)
            check_feature_dim(Zs, head)
            ys, yq = ys.unsqueeze(0), yq.unsqueeze(0)
            h0 = {k: v[t : t + 1] for k, v in head0.items()}
            w0 = None if v0 is None else {k: v[t : t + 1] for k, v in v0.items()}
            solve = head_solve(Zs.detach(), ys, Zq.detach(), yq, h0, w0, opts)
            value = surrogate(Zs, Zq, ys, yq, solve.head, solve.cg.solution)
            grads = torch.autograd.grad(value, list(leaves.values()), allow_unused=True)
            for (k, _), g in zip(leaves.items(), grads):
                if g is not None:
                    hypergrad[k] += g
            solves.append(solve)
            del value, grads, Zs, Zq, leaves
        hypergrad = {k: g / n_tasks for k, g in hypergrad.items()}
        cg = stack_results([s.cg for s in solves])
        adapted = {k: torch.cat([s.head[k] for s in solves]) for k in head}
        losses = torch.cat([s.query_loss for s in solves])
        accs = torch.cat([s.query_accuracy for s in solves])

    if warm_start is not None:
        warm_start.head = {k: v.detach().clone() for k, v in adapted.items()}
        warm_start.v = {k: v.detach().clone() for k, v in cg.solution.items()}
    return finish("implicit", hypergrad, None, losses.mean(), accs.mean(), cg=cg, adapted_head=adapted)


# ---------------------------------------------------------------------------------------------
# References


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
    ``∇²_θφ g · v`` as ``autograd.grad(∇_φ g, θ, grad_outputs=v)``.  ``batch_mode`` is ignored.
    """
    opts = Options(**options)
    backbone, params, head, tasks = prepare(backbone, params, head, support_x, support_y, query_x, query_y)
    hypergrad = {k: torch.zeros_like(t) for k, t in params.items()}
    results, adapted, losses, accs = [], [], [], []
    for t in range(tasks.n_tasks):
        xs, ys, xq, yq = tasks.support_x[t], tasks.support_y[t], tasks.query_x[t], tasks.query_y[t]
        phi = dict(head)
        for _ in range(opts.inner_steps):
            with torch.no_grad():
                Z = features(backbone, params, xs)
            leaves = {k: v.detach().requires_grad_(True) for k, v in phi.items()}
            value = _linear_ce(leaves, Z, ys) + _ridge(leaves, opts.l2)
            grads = torch.autograd.grad(value, list(leaves.values()))
            phi = {k: (leaves[k] - opts.inner_lr * g).detach() for k, g in zip(leaves, grads)}
        theta = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        phi_leaves = {k: v.detach().requires_grad_(True) for k, v in phi.items()}
        Zs, Zq = features(backbone, theta, xs), features(backbone, theta, xq)
        g = _linear_ce(phi_leaves, Zs, ys) + _ridge(phi_leaves, opts.l2)
        scores = F.linear(Zq, phi_leaves["weight"], phi_leaves["bias"])
        f = F.cross_entropy(scores, yq)
        phi_list, theta_list = list(phi_leaves.values()), list(theta.values())
        df = torch.autograd.grad(f, phi_list + theta_list, retain_graph=True, allow_unused=True)
        df_phi = dict(zip(phi_leaves, df[: len(phi_list)]))
        df_theta = [torch.zeros_like(p) if d is None else d for p, d in zip(theta_list, df[len(phi_list) :])]
        dg_phi = torch.autograd.grad(g, phi_list, create_graph=True)

        def hvp(u: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            out = torch.autograd.grad(dg_phi, phi_list, grad_outputs=[u[k] for k in phi_leaves], retain_graph=True)
            return dict(zip(phi_leaves, out))

        cg = conjugate_gradient(hvp, df_phi, max_iter=opts.cg_steps, tol=opts.cg_tol)
        mixed = torch.autograd.grad(
            dg_phi, theta_list, grad_outputs=[cg.solution[k] for k in phi_leaves], allow_unused=True
        )
        for (k, p), d, m in zip(theta.items(), df_theta, mixed):
            hypergrad[k] += d - (torch.zeros_like(p) if m is None else m)
        results.append(cg)
        adapted.append({k: v.detach() for k, v in phi.items()})
        losses.append(f.detach())
        accs.append((scores.argmax(-1) == yq).to(scores.dtype).mean())
    hypergrad = {k: g / tasks.n_tasks for k, g in hypergrad.items()}
    adapted_head = {k: torch.stack([a[k] for a in adapted]) for k in head}
    return finish(
        "implicit_unfused",
        hypergrad,
        None,
        torch.stack(losses).mean(),
        torch.stack(accs).mean(),
        cg=stack_results(results),
        adapted_head=adapted_head,
    )


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
    Needs ``l2 > 0`` so that H is invertible.
    """
    l2 = check_number("l2", l2)
    newton_steps = check_int("newton_steps", newton_steps, 1)
    backbone, params, head, tasks = prepare(backbone, params, head, support_x, support_y, query_x, query_y)
    C, d = head["weight"].shape

    def unflat(x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"weight": x[: C * d].reshape(C, d), "bias": x[C * d :]}

    x_init = torch.cat([head["weight"].reshape(-1), head["bias"]])
    hypergrad = {k: torch.zeros_like(t) for k, t in params.items()}
    adapted, losses, accs = [], [], []
    for t in range(tasks.n_tasks):
        xs, ys, xq, yq = tasks.support_x[t], tasks.support_y[t], tasks.query_x[t], tasks.query_y[t]

        def g_of(theta: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            h = unflat(x)
            return _linear_ce(h, features(backbone, theta, xs), ys) + _ridge(h, l2)

        def f_of(theta: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            return _linear_ce(unflat(x), features(backbone, theta, xq), yq)

        Zs = features(backbone, params, xs).detach()

        def g_x(x: torch.Tensor) -> torch.Tensor:
            h = unflat(x)
            return _linear_ce(h, Zs, ys) + _ridge(h, l2)

        x = x_init.clone()
        for _ in range(newton_steps):
            gr = torch.func.grad(g_x)(x)
            if float(gr.norm()) <= 1e-14 * max(1.0, float(x.norm())):
                break
            step = torch.linalg.solve(torch.func.hessian(g_x)(x), gr)
            value, rate, scale = float(g_x(x)), float(gr @ step), 1.0
            while scale > 1e-10 and float(g_x(x - scale * step)) > value - 0.25 * scale * rate:
                scale *= 0.5
            x = x - scale * step
        H = torch.func.hessian(g_x)(x)
        df_theta, df_x = torch.func.grad(f_of, argnums=(0, 1))(params, x)
        w = torch.linalg.solve(H, df_x)
        mixed = torch.func.jacrev(lambda th: torch.func.grad(g_of, argnums=1)(th, x))(params)
        for k in hypergrad:
            hypergrad[k] += df_theta[k] - torch.tensordot(w, mixed[k], dims=1)
        h = unflat(x)
        scores = F.linear(features(backbone, params, xq), h["weight"], h["bias"])
        adapted.append(h)
        losses.append(F.cross_entropy(scores, yq).detach())
        accs.append((scores.argmax(-1) == yq).to(scores.dtype).mean())
    hypergrad = {k: g / tasks.n_tasks for k, g in hypergrad.items()}
    adapted_head = {k: torch.stack([a[k] for a in adapted]) for k in head}
    return finish(
        "implicit_dense",
        hypergrad,
        None,
        torch.stack(losses).mean(),
        torch.stack(accs).mean(),
        adapted_head=adapted_head,
    )
