"""CG, the fused implicit hypergradient (Algorithm 1) and its baselines."""

from __future__ import annotations

import math
import types
import warnings

import pytest
import torch
import torch.nn.functional as F

from metalab.core import ConfigError, SavedTensorMeter
from metalab.core.results import HypergradientWarning, all_finite
from metalab.implicit import (
    HYPERGRADIENTS,
    CGWarning,
    WarmStart,
    conjugate_gradient,
    dense_implicit_hypergradient,
    hypergradient,
    implicit_hypergradient,
    maml,
    unfused_implicit_hypergradient,
)
from metalab.implicit.evaluation import adapted_accuracy, one_shot_predictor
from metalab.implicit.measure import measure_method, time_method
from metalab.nets import MLP, Conv4, features, init_head, param_dict

D64 = torch.float64


def spd(n: int, seed: int, cond: float = 100.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=D64))
    return Q @ torch.diag(torch.logspace(0, -torch.log10(torch.tensor(cond)).item(), n, dtype=D64)) @ Q.T


def flat(grads: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([v.reshape(-1) for v in grads.values()])


def tiny_problem(seed: int = 0, n_tasks: int = 2, n_way: int = 3, n_support: int = 6, n_query: int = 5, width: int = 4):
    """A float64 MLP backbone (6 -> 8 -> width, tanh) with a linear head and random tasks."""
    torch.manual_seed(seed)
    net = MLP([6, 8, width], activation="tanh", activate_last=True).to(D64)
    g = torch.Generator().manual_seed(seed + 1)
    head = init_head(width, n_way, dtype=D64, generator=g)
    sx = torch.randn(n_tasks, n_support, 6, dtype=D64, generator=g)
    sy = torch.randint(0, n_way, (n_tasks, n_support), generator=g)
    qx = torch.randn(n_tasks, n_query, 6, dtype=D64, generator=g)
    qy = torch.randint(0, n_way, (n_tasks, n_query), generator=g)
    return net, param_dict(net), head, sx, sy, qx, qy


# ---------------------------------------------------------------------------------------------
# Conjugate gradient


def test_cg_solves_spd_system_like_dense_solve():
    A = spd(12, 0)
    b = torch.randn(12, dtype=D64, generator=torch.Generator().manual_seed(1))
    result = conjugate_gradient(lambda u: A @ u, b, max_iter=100, tol=1e-12)
    assert result.status == "converged" and result.converged
    torch.testing.assert_close(result.solution, torch.linalg.solve(A, b), rtol=1e-8, atol=1e-10)
    assert result.residual_norms.shape == (result.n_iter + 1,)
    assert float(result.residual_norms[-1]) <= 1e-12 * float(b.norm())


def test_cg_on_parameter_dicts_and_batches():
    A1, A2 = spd(6, 2), spd(4, 3)
    g = torch.Generator().manual_seed(4)
    b = {"w": torch.randn(6, dtype=D64, generator=g), "c": torch.randn(2, 2, dtype=D64, generator=g)}

    def hvp(u):
        return {"w": A1 @ u["w"], "c": (A2 @ u["c"].reshape(4)).reshape(2, 2)}

    result = conjugate_gradient(hvp, b, max_iter=50, tol=1e-12)
    assert result.status == "converged"
    torch.testing.assert_close(result.solution["w"], torch.linalg.solve(A1, b["w"]))
    torch.testing.assert_close(result.solution["c"].reshape(4), torch.linalg.solve(A2, b["c"].reshape(4)))

    # a batch of independent systems: each matches its own dense solve
    As = torch.stack([spd(5, s) for s in range(3)])
    bs = torch.randn(3, 5, dtype=D64, generator=g)
    bs[1] = 0.0
    batched = conjugate_gradient(lambda u: torch.einsum("bij,bj->bi", As, u), bs, max_iter=50, tol=1e-12, batch_dims=1)
    assert batched.statuses == ("converged", "zero_rhs", "converged")
    assert batched.residual_norms.shape == (batched.n_iter + 1, 3)
    torch.testing.assert_close(batched.solution, torch.linalg.solve(As, bs.unsqueeze(-1)).squeeze(-1))


def test_cg_warm_start_and_zero_rhs():
    A = spd(8, 5)
    b = torch.randn(8, dtype=D64, generator=torch.Generator().manual_seed(6))
    exact = torch.linalg.solve(A, b)
    warm = conjugate_gradient(lambda u: A @ u, b, max_iter=100, tol=1e-8, x0=exact + 1e-10)
    assert warm.n_iter <= 1 and warm.status == "converged"

    calls = []
    zero = conjugate_gradient(
        lambda u: calls.append(1) or A @ u, {"a": torch.zeros(3)}, max_iter=10, x0={"a": torch.ones(3)}
    )
    assert zero.status == "zero_rhs" and zero.converged and not calls
    assert torch.equal(zero.solution["a"], torch.zeros(3))


def test_cg_detects_nonpositive_curvature_with_warning():
    Q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=D64, generator=torch.Generator().manual_seed(7)))
    A = Q @ torch.diag(torch.tensor([3.0, 2.0, 1.0, -1.0, -2.0, -3.0], dtype=D64)) @ Q.T
    b = torch.ones(6, dtype=D64)
    with pytest.warns(CGWarning, match="nonpositive_curvature"):
        result = conjugate_gradient(lambda u: A @ u, b, max_iter=50)
    assert result.status == "nonpositive_curvature" and not result.converged and result.failed
    assert torch.isfinite(result.solution).all()
    # the fallback is the iterate with the smallest residual: never worse than the start (zero)
    assert float((b - A @ result.solution).norm()) <= float(b.norm()) + 1e-12


def test_cg_detects_divergence_with_warning():
    g = torch.Generator().manual_seed(8)
    S = torch.randn(10, 10, dtype=D64, generator=g)
    A = torch.eye(10, dtype=D64) + 50 * (S - S.T)  # pᵀAp = ||p||² > 0, but not symmetric: CG blows up
    b = torch.randn(10, dtype=D64, generator=g)
    with pytest.warns(CGWarning, match="diverged"):
        result = conjugate_gradient(lambda u: A @ u, b, max_iter=200)
    assert result.status == "diverged"
    assert torch.isfinite(result.solution).all() and torch.isfinite(result.residual_norms).all()


def test_cg_stops_at_max_iter_like_the_textbook_iteration():
    """Three steps of x ← x + αp, r ← r − αAp, p ← r + βp from zero, written out plainly, give the same
    iterate and residuals; the status is max_iter (neither converged nor failed)."""
    A = spd(10, 11, cond=1e4)
    b = torch.randn(10, dtype=D64, generator=torch.Generator().manual_seed(12))
    x, r = torch.zeros_like(b), b.clone()
    p, rs, norms = r.clone(), r @ r, [float(b.norm())]
    for _ in range(3):
        Ap = A @ p
        alpha = rs / (p @ Ap)
        x, r = x + alpha * p, r - alpha * Ap
        rs, rs_old = r @ r, rs
        p = r + (rs / rs_old) * p
        norms.append(float(rs.sqrt()))
    result = conjugate_gradient(lambda u: A @ u, b, max_iter=3, tol=1e-14)
    assert result.status == "max_iter" and result.statuses == ("max_iter",) and result.n_iter == 3
    assert not result.converged and not result.failed
    torch.testing.assert_close(result.solution, x, rtol=1e-12, atol=0)
    torch.testing.assert_close(result.residual_norms, torch.tensor(norms, dtype=D64), rtol=1e-12, atol=0)


def test_cg_reports_a_non_finite_operator_as_nonpositive_curvature_and_keeps_the_start():
    b = torch.ones(4, dtype=D64)
    with pytest.warns(CGWarning, match="'nonpositive_curvature' in 1 of 1"):
        result = conjugate_gradient(lambda u: u * float("nan"), b, max_iter=5, x0=torch.full((4,), 0.5, dtype=D64))
    assert result.status == "nonpositive_curvature" and result.n_iter == 0
    torch.testing.assert_close(result.solution, torch.full((4,), 0.5, dtype=D64))


def test_cg_batch_keeps_one_status_per_system_and_reports_the_worst():
    """converged, max_iter and nonpositive_curvature side by side: each system stops on its own, the
    batch status is the most severe, and the warning counts only the failed system."""
    well = torch.diag(torch.tensor([1.0, 1.0, 1.0], dtype=D64))  # converges in one step
    slow = torch.diag(torch.tensor([1.0, 10.0, 100.0], dtype=D64))  # needs three
    indefinite = torch.diag(torch.tensor([1.0, -1.0, 2.0], dtype=D64))
    As = torch.stack([well, slow, indefinite])
    bs = torch.ones(3, 3, dtype=D64)
    with pytest.warns(CGWarning, match="in 1 of 3 system"):
        result = conjugate_gradient(lambda u: torch.einsum("bij,bj->bi", As, u), bs, max_iter=2, batch_dims=1)
    assert result.statuses == ("converged", "max_iter", "nonpositive_curvature")
    assert result.status == "nonpositive_curvature" and result.failed and not result.converged
    torch.testing.assert_close(result.solution[0], torch.ones(3, dtype=D64))
    # the converged system was frozen after its step: its residual history stays at zero
    assert float(result.residual_norms[-1, 0]) == 0.0 and result.residual_norms.shape == (3, 3)
    assert torch.isfinite(result.solution).all()


def test_cg_rejects_bad_arguments():
    with pytest.raises(ValueError, match="max_iter"):
        conjugate_gradient(lambda u: u, torch.ones(2), max_iter=-1)
    with pytest.raises(ValueError, match="tol"):
        conjugate_gradient(lambda u: u, torch.ones(2), max_iter=3, tol=-1.0)
    with pytest.raises(ValueError, match="non-finite"):
        conjugate_gradient(lambda u: u, torch.tensor([1.0, float("nan")]), max_iter=3)


# ---------------------------------------------------------------------------------------------
# Algorithm 1


@pytest.mark.parametrize(("K", "N"), [(0, 0), (1, 1), (4, 3), (12, 8)])
def test_fused_equals_unfused_two_pass(K, N):
    net, params, head, sx, sy, qx, qy = tiny_problem()
    opts = dict(inner_steps=K, cg_steps=N, l2=0.05, inner_lr=0.4)
    reference = flat(unfused_implicit_hypergradient(net, params, head, sx, sy, qx, qy, **opts).hypergrad)
    for mode in ("vmap", "sequential"):
        fused = implicit_hypergradient(net, params, head, sx, sy, qx, qy, batch_mode=mode, **opts)
        torch.testing.assert_close(flat(fused.hypergrad), reference, rtol=1e-10, atol=1e-12)
    # the comparison discriminates: other N gives another hypergradient
    other = implicit_hypergradient(net, params, head, sx, sy, qx, qy, **{**opts, "cg_steps": N + 1})
    if N < 8:
        assert (flat(other.hypergrad) - reference).norm() > 1e-8 * reference.norm()


def test_fused_approaches_dense_ift_as_k_and_n_grow():
    net, params, head, sx, sy, qx, qy = tiny_problem(seed=3)
    dense = flat(dense_implicit_hypergradient(net, params, head, sx, sy, qx, qy, l2=0.1).hypergrad)
    errors = []
    for K, N in [(2, 1), (20, 4), (100, 10), (600, 30)]:
        fused = implicit_hypergradient(
            net, params, head, sx, sy, qx, qy, inner_steps=K, cg_steps=N, l2=0.1, inner_lr=0.5
        )
        errors.append(float((flat(fused.hypergrad) - dense).norm() / dense.norm()))
    assert all(a > b for a, b in zip(errors[:-1], errors[1:], strict=True)), errors
    assert errors[-1] < 1e-8 and errors[0] > 1e-2


def test_warm_start_reuses_heads_and_cg_solutions():
    net, params, head, sx, sy, qx, qy = tiny_problem(seed=4)
    state = WarmStart()
    opts = dict(inner_steps=30, cg_steps=50, cg_tol=1e-8, l2=0.1, inner_lr=0.5)
    first = implicit_hypergradient(net, params, head, sx, sy, qx, qy, warm_start=state, **opts)
    assert state.head["weight"].shape == (2, *head["weight"].shape)
    second = implicit_hypergradient(net, params, head, sx, sy, qx, qy, warm_start=state, **opts)
    assert second.cg.n_iter < first.cg.n_iter
    cold = implicit_hypergradient(net, params, head, sx, sy, qx, qy, **{**opts, "inner_steps": 60})
    # warm start = 30 more steps from the first call's heads = 60 steps from the start
    torch.testing.assert_close(second.adapted_head["weight"], cold.adapted_head["weight"])
    with pytest.raises(ValueError, match="warm_start"):
        implicit_hypergradient(net, params, head, sx[:1], sy[:1], qx[:1], qy[:1], warm_start=state, **opts)


def test_singular_head_hessian_without_l2_is_reported_not_nan():
    # 16 features x 5 classes = 85 head parameters, 3 support samples: the head Hessian is singular
    net, params, head, sx, sy, qx, qy = tiny_problem(seed=0, n_way=5, n_support=3, n_query=10, width=16)
    with pytest.warns(CGWarning):
        result = implicit_hypergradient(
            net, params, head, sx, sy, qx, qy, inner_steps=10, cg_steps=50, l2=0.0, inner_lr=0.5
        )
    assert result.status == "cg_fallback"
    assert set(result.cg.statuses) <= {"diverged", "nonpositive_curvature"}
    assert all(torch.isfinite(v).all() for v in result.hypergrad.values())
    assert all(torch.isfinite(v).all() for v in result.cg.solution.values())


@pytest.mark.parametrize("method", ["implicit", "maml", "imaml"])
def test_exploding_inner_loop_gives_zeros_and_a_warning(method):
    net, params, head, sx, sy, qx, qy = tiny_problem()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CGWarning)
        with pytest.warns(HypergradientWarning, match="non-finite"):
            result = hypergradient(
                method, net, params, head, sx, sy, qx, qy, inner_steps=5, inner_lr=1e300, l2=0.1, prox=1e-300
            )  # prox: iMAML refuses inner_lr·prox >= 2 up front; the loss itself must explode here
    assert result.status == "non_finite"
    assert all(torch.count_nonzero(v) == 0 for v in result.hypergrad.values())


# ---------------------------------------------------------------------------------------------
# Baselines


def test_maml_matches_finite_difference_of_unrolled_query_loss():
    net, params, head, sx, sy, qx, qy = tiny_problem(seed=5, n_tasks=1)
    K, lr, l2 = 3, 0.3, 0.05

    def unrolled_query_loss(p, h):
        w = {
            **{"b." + k: v.detach().clone().requires_grad_(True) for k, v in p.items()},
            **{"h." + k: v.detach().clone().requires_grad_(True) for k, v in h.items()},
        }
        for _ in range(K):
            z = features(net, {k[2:]: v for k, v in w.items() if k.startswith("b.")}, sx[0])
            loss = F.cross_entropy(F.linear(z, w["h.weight"], w["h.bias"]), sy[0])
            loss = loss + 0.5 * l2 * (w["h.weight"].square().sum() + w["h.bias"].square().sum())
            grads = torch.autograd.grad(loss, list(w.values()))
            w = {k: (v - lr * g).detach().requires_grad_(True) for (k, v), g in zip(w.items(), grads, strict=True)}
        z = features(net, {k[2:]: v for k, v in w.items() if k.startswith("b.")}, qx[0])
        return float(F.cross_entropy(F.linear(z, w["h.weight"], w["h.bias"]), qy[0]).detach())

    result = maml(net, params, head, sx, sy, qx, qy, inner_steps=K, inner_lr=lr, l2=l2)
    g = torch.Generator().manual_seed(9)
    for _ in range(2):
        dp = {k: torch.randn(v.shape, dtype=D64, generator=g) for k, v in params.items()}
        dh = {k: torch.randn(v.shape, dtype=D64, generator=g) for k, v in head.items()}
        eps = 1e-5
        plus = unrolled_query_loss(
            {k: params[k] + eps * dp[k] for k in params}, {k: head[k] + eps * dh[k] for k in head}
        )
        minus = unrolled_query_loss(
            {k: params[k] - eps * dp[k] for k in params}, {k: head[k] - eps * dh[k] for k in head}
        )
        numeric = (plus - minus) / (2 * eps)
        analytic = float(flat(result.hypergrad) @ flat(dp) + flat(result.head_hypergrad) @ flat(dh))
        assert abs(numeric - analytic) <= 1e-7 * max(1.0, abs(analytic))
    assert result.query_loss == pytest.approx(unrolled_query_loss(params, head), rel=1e-12)


@pytest.mark.parametrize("method", sorted(HYPERGRADIENTS))
def test_vmapped_batch_equals_per_task_loop(method):
    net, params, head, sx, sy, qx, qy = tiny_problem(seed=6, n_tasks=3)
    opts = dict(inner_steps=3, cg_steps=6, l2=0.2, inner_lr=0.3, prox=5.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CGWarning)
        batched = hypergradient(method, net, params, head, sx, sy, qx, qy, **opts)
        singles = [
            hypergradient(
                method,
                net,
                params,
                head,
                sx[t : t + 1],
                sy[t : t + 1],
                qx[t : t + 1],
                qy[t : t + 1],
                batch_mode="sequential",
                **opts,
            )
            for t in range(3)
        ]
    mean = torch.stack([flat(r.hypergrad) for r in singles]).mean(0)
    torch.testing.assert_close(flat(batched.hypergrad), mean, rtol=1e-9, atol=1e-12)
    if batched.head_hypergrad is not None:
        head_mean = torch.stack([flat(r.head_hypergrad) for r in singles]).mean(0)
        torch.testing.assert_close(flat(batched.head_hypergrad), head_mean, rtol=1e-9, atol=1e-12)
    assert batched.query_loss == pytest.approx(sum(r.query_loss for r in singles) / 3, rel=1e-10)
    assert batched.query_accuracy == pytest.approx(sum(r.query_accuracy for r in singles) / 3)
    assert flat(batched.hypergrad).norm() > 0


def test_vmapped_batch_equals_sequential_on_conv4():
    torch.manual_seed(0)
    net = Conv4(in_channels=1, hidden=4, image_size=16).to(D64)
    params = param_dict(net)
    head = init_head(net.feature_dim, 3, dtype=D64, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    sx, qx = torch.rand(2, 3, 1, 16, 16, dtype=D64, generator=g), torch.rand(2, 4, 1, 16, 16, dtype=D64, generator=g)
    sy, qy = torch.randint(0, 3, (2, 3), generator=g), torch.randint(0, 3, (2, 4), generator=g)
    opts = dict(inner_steps=2, cg_steps=4, l2=0.1, inner_lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CGWarning)  # iMAML's full-network Hessian is indefinite here
        for method in HYPERGRADIENTS:
            batched = hypergradient(method, net, params, head, sx, sy, qx, qy, **opts)
            looped = hypergradient(method, net, params, head, sx, sy, qx, qy, batch_mode="sequential", **opts)
            torch.testing.assert_close(flat(batched.hypergrad), flat(looped.hypergrad), rtol=1e-9, atol=1e-12)
    graph = {}
    for mode in ("vmap", "sequential"):  # Algorithm 1 runs one task without vmap, so the meter sees its graph
        with SavedTensorMeter() as meter:
            one = implicit_hypergradient(net, params, head, sx[:1], sy[:1], qx[:1], qy[:1], batch_mode=mode, **opts)
        graph[mode] = (flat(one.hypergrad), meter.peak_bytes)
    torch.testing.assert_close(graph["vmap"][0], graph["sequential"][0], rtol=1e-9, atol=1e-12)
    assert 0 < graph["vmap"][1] <= graph["sequential"][1]


def test_first_order_and_head_only_methods_differ_from_second_order():
    net, params, head, sx, sy, qx, qy = tiny_problem(seed=7)
    opts = dict(inner_steps=3, l2=0.1, inner_lr=0.3)
    results = {
        m: hypergradient(m, net, params, head, sx, sy, qx, qy, **opts) for m in ("maml", "fomaml", "anil", "itd_bio")
    }
    assert (flat(results["maml"].hypergrad) - flat(results["fomaml"].hypergrad)).norm() > 1e-6
    torch.testing.assert_close(flat(results["anil"].hypergrad), flat(results["itd_bio"].hypergrad))
    assert results["itd_bio"].head_hypergrad is None and results["anil"].head_hypergrad is not None


def test_graph_memory_flat_in_k_for_fused_and_growing_for_unrolled():
    torch.manual_seed(0)
    net = Conv4(in_channels=1, hidden=8, image_size=28)
    params = param_dict(net)
    head = init_head(net.feature_dim, 5, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    sx, qx = torch.rand(1, 5, 1, 28, 28, generator=g), torch.rand(1, 10, 1, 28, 28, generator=g)
    sy, qy = torch.arange(5)[None], torch.arange(5).repeat(2)[None]

    def graph_bytes(method, K):
        with SavedTensorMeter() as meter:
            hypergradient(
                method, net, params, head, sx, sy, qx, qy, inner_steps=K, cg_steps=10, l2=0.01, batch_mode="sequential"
            )
        return meter.peak_bytes

    fused = [graph_bytes("implicit", K) for K in (5, 40)]
    assert fused[0] > 0 and abs(fused[1] - fused[0]) <= 0.1 * fused[0]
    for method in ("maml", "anil_recompute"):
        small, large = graph_bytes(method, 5), graph_bytes(method, 40)
        assert large > 2 * small, (method, small, large)
        assert small > fused[0]


# ---------------------------------------------------------------------------------------------
# Argument checks


def test_imaml_refuses_a_proximal_strength_its_inner_loop_cannot_follow():
    net, params, head, sx, sy, qx, qy = tiny_problem()
    with pytest.raises(
        ValueError,
        match=r"prox=4.0 is not allowed: < 2 / inner_lr = 4 for iMAML: at inner_lr·prox >= 2 its proximal inner loop diverges",
    ) as error:
        hypergradient("imaml", net, params, head, sx, sy, qx, qy, inner_steps=2, inner_lr=0.5, prox=4.0)
    assert not isinstance(error.value, ConfigError)  # the library knows no experiment settings
    result = hypergradient("imaml", net, params, head, sx, sy, qx, qy, inner_steps=2, inner_lr=0.5, prox=3.9)
    assert all(bool(torch.isfinite(g).all()) for g in result.hypergrad.values())


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("inner_steps", -1),
        ("cg_steps", -2),
        ("l2", -0.1),
        ("inner_lr", 0.0),
        ("inner_lr", -1.0),
        ("prox", 0.0),
        ("cg_tol", -1.0),
        ("batch_mode", "threads"),
        ("inner_steps", 2.5),
    ],
)
@pytest.mark.parametrize("method", ["implicit", "maml", "imaml"])
def test_bad_options_raise_value_error_naming_them(method, option, value):
    net, params, head, sx, sy, qx, qy = tiny_problem()
    with pytest.raises(ValueError, match=f"{option}="):
        hypergradient(method, net, params, head, sx, sy, qx, qy, **{option: value})


def test_bad_method_data_and_options_are_rejected():
    net, params, head, sx, sy, qx, qy = tiny_problem()
    with pytest.raises(ValueError, match="method="):
        hypergradient("reptile", net, params, head, sx, sy, qx, qy)
    with pytest.raises(ValueError, match="warm_start"):
        hypergradient("maml", net, params, head, sx, sy, qx, qy, warm_start=WarmStart())
    with pytest.raises(ValueError, match="support_y"):
        hypergradient("implicit", net, params, head, sx, sy + 5, qx, qy)
    with pytest.raises(ValueError, match="query_x"):
        hypergradient("implicit", net, params, head, sx, sy, qx[:1], qy)
    bad = sx.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="support_x"):
        hypergradient("anil", net, params, head, bad, sy, qx, qy)
    with pytest.raises(ValueError, match="head"):
        hypergradient("implicit", net, params, {"weight": head["weight"]}, sx, sy, qx, qy)
    with pytest.raises(ValueError, match="features"):
        hypergradient("implicit", net, params, init_head(7, 3, dtype=D64), sx, sy, qx, qy)
    with pytest.raises(ValueError, match="l2"):
        dense_implicit_hypergradient(net, params, head, sx, sy, qx, qy, l2=0.0)


# ---------------------------------------------------------------------------------------------
# Evaluation and measurement


@pytest.mark.parametrize("method", ["implicit", "anil", "maml", "imaml"])
def test_adapted_accuracy_uses_the_inner_loop_the_method_trains_with(method):
    """The mean query accuracy after each method's own inner loop equals the one its hypergradient reports."""
    net, params, head, sx, sy, qx, qy = tiny_problem(seed=8, n_tasks=3, n_query=12)
    opts = dict(inner_steps=4, inner_lr=0.4, l2=0.1, prox=2.0, cg_steps=3)
    accuracies = adapted_accuracy(method, net, params, head, sx, sy, qx, qy, **opts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CGWarning)
        reported = hypergradient(method, net, params, head, sx, sy, qx, qy, **opts).query_accuracy
    assert accuracies.shape == (3,) and bool(((accuracies >= 0) & (accuracies <= 1)).all())
    assert float(accuracies.mean()) == pytest.approx(reported, abs=1e-12)
    with pytest.raises(ValueError, match="method="):
        adapted_accuracy("protonet", net, params, head, sx, sy, qx, qy)


def test_one_shot_predictor_finds_the_same_image_and_refuses_unknown_predictors():
    torch.manual_seed(0)
    net = Conv4(in_channels=1, hidden=4, image_size=16)
    images = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    for how in ("nearest", "head"):
        predict = one_shot_predictor(net, param_dict(net), how, l2=1e-4, inner_steps=400, inner_lr=2.0)
        assert predict(images, images).tolist() == list(range(6)), how
    with pytest.raises(ValueError, match="how='pixels' is not allowed"):
        one_shot_predictor(net, param_dict(net), "pixels", l2=0.01, inner_steps=1, inner_lr=1.0)


def test_measure_method_reports_graph_memory_time_and_status():
    net = Conv4(in_channels=1, hidden=4, image_size=16).to(D64)
    head = init_head(net.feature_dim, 3, dtype=D64)
    g = torch.Generator().manual_seed(3)
    batch = types.SimpleNamespace(
        support_x=torch.rand(2, 3, 1, 16, 16, dtype=D64, generator=g), support_y=torch.arange(3).repeat(2, 1),
        query_x=torch.rand(2, 3, 1, 16, 16, dtype=D64, generator=g), query_y=torch.arange(3).repeat(2, 1),
    )  # fmt: skip
    opts = dict(inner_steps=3, cg_steps=2, l2=0.1, batch_mode="vmap")  # measured task by task all the same
    values = measure_method("maml", net, param_dict(net), head, batch, opts, repeats=2)
    assert values["graph_bytes"] > 0 and values["graph_mb"] == pytest.approx(values["graph_bytes"] / 2**20)
    assert values["saved_total_mb"] >= values["graph_mb"] and values["seconds_per_task"] > 0
    assert math.isnan(values["cuda_peak_mb"]) and values["status"] == "ok"
    assert math.isnan(measure_method("maml", net, param_dict(net), head, batch, opts, repeats=0)["seconds_per_task"])
    assert time_method("implicit", net, param_dict(net), head, batch, opts) > 0


def test_all_finite_sees_nan_and_inf_in_any_tensor_and_ignores_empty_ones():
    finite = [torch.ones(3), torch.zeros(0), torch.tensor([1e300], dtype=D64)]
    assert all_finite(finite) and all_finite([]) and all_finite([torch.full((4,), 3e38)])  # a sum overflows
    for bad in (float("nan"), float("inf"), -float("inf")):
        assert not all_finite([*finite, torch.tensor([[0.0, bad]])])
