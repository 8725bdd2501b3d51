"""Algorithm 1's inner solver and its safeguard: the head problem solved to its optimum, a hypergradient
left far from it reported as unreliable, and a short meta-training that learns at the default settings."""

from __future__ import annotations

import warnings

import pytest
import torch

from metalab.core.results import HypergradientWarning
from metalab.experiments.memory_reduced import MemoryReducedConfig
from metalab.experiments.memory_reduced.context import load_data
from metalab.experiments.memory_reduced.training import train
from metalab.implicit import dense_implicit_hypergradient, heads, hypergradient
from metalab.implicit.common import Options
from metalab.implicit.hypergrad import INNER_NOT_CONVERGED
from metalab.nets import seeded_conv4


def float64_problem(tasks: int = 2, ways: int = 3, shots: int = 2, seed: int = 0):
    """A tiny Conv-4 problem in float64: (backbone, params, head, xs, ys, xq, yq)."""
    backbone, params, head = seeded_conv4(ways, hidden=3, image_size=16, seed=seed, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    xs = torch.rand(tasks, ways * shots, 1, 16, 16, generator=g, dtype=torch.float64)
    xq = torch.rand(tasks, ways * 2, 1, 16, 16, generator=g, dtype=torch.float64)
    ys = torch.arange(ways).repeat_interleave(shots).expand(tasks, -1)
    yq = torch.arange(ways).repeat_interleave(2).expand(tasks, -1)
    return backbone, params, head, xs, ys, xq, yq


def random_head_problem(tasks: int = 3, n: int = 6, d: int = 4, ways: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    Z = 3 * torch.randn(tasks, n, d, generator=g, dtype=torch.float64)
    Y = torch.nn.functional.one_hot(torch.randint(0, ways, (tasks, n), generator=g), ways).to(torch.float64)
    head = {
        "weight": torch.zeros(tasks, ways, d, dtype=torch.float64),
        "bias": torch.zeros(tasks, ways, dtype=torch.float64),
    }
    return head, Z, Y


def dense_hessian(head, Z, Y, l2: float) -> torch.Tensor:
    """∇²g of one task as a matrix, by autograd on the flat (weight, bias) vector."""
    C, d = head["weight"].shape

    def g(x: torch.Tensor) -> torch.Tensor:
        return heads.loss({"weight": x[: C * d].reshape(C, d), "bias": x[C * d :]}, Z, Y, l2)

    return torch.autograd.functional.hessian(g, torch.cat([head["weight"].reshape(-1), head["bias"]]))


def test_the_curvature_bound_is_above_the_largest_eigenvalue_of_the_head_hessian():
    head, Z, Y = random_head_problem()
    bound = heads.curvature_bound(Z, 0.1)
    for t in range(Z.shape[0]):
        for at in ({k: v[t] for k, v in head.items()}, {k: torch.randn_like(v[t]) for k, v in head.items()}):
            assert torch.linalg.eigvalsh(dense_hessian(at, Z[t], Y[t], 0.1)).max() <= bound[t]


def test_newton_reaches_the_optimum_in_a_few_steps_where_the_papers_gradient_steps_do_not():
    head, Z, Y = random_head_problem()
    newton = heads.minimise(head, Z, Y, Options(inner_solver="newton", inner_steps=15, l2=0.01, cg_steps=30))
    assert newton.residual.max() < 1e-8
    for t in range(Z.shape[0]):  # φ* from a dense Newton solve: the stationary point itself
        torch.testing.assert_close(
            {k: v[t] for k, v in newton.head.items()},
            dense_optimum(Z[t], Y[t], 0.01),
            rtol=1e-6,
            atol=1e-8,
        )
    safe_step = 1.0 / heads.curvature_bound(Z, 0.01).max().item()
    steps = heads.minimise(head, Z, Y, Options(inner_solver="gd", inner_steps=15, inner_lr=safe_step, l2=0.01))
    assert steps.residual.min() > 0.1
    options = Options(inner_solver="newton", inner_steps=15, l2=0.01, cg_steps=30, inner_tol=1e-3)
    stopped = heads.minimise(head, Z, Y, options)
    assert (stopped.residual <= 1e-3).all() and (stopped.residual > newton.residual).any()


def dense_optimum(Z: torch.Tensor, Y: torch.Tensor, l2: float) -> dict[str, torch.Tensor]:
    """φ* of one task by full Newton steps with the dense Hessian (from zero; converges on this problem)."""
    C, d = Y.shape[-1], Z.shape[-1]
    x = torch.zeros(C * (d + 1), dtype=Z.dtype)
    for _ in range(30):
        at = {"weight": x[: C * d].reshape(C, d), "bias": x[C * d :]}
        gradient = heads.grad(at, Z, Y, l2)
        x = x - torch.linalg.solve(
            dense_hessian(at, Z, Y, l2), torch.cat([gradient["weight"].reshape(-1), gradient["bias"]])
        )
    return {"weight": x[: C * d].reshape(C, d), "bias": x[C * d :]}


def test_implicit_hypergradient_with_the_newton_inner_solver_matches_the_dense_solve():
    problem = float64_problem()
    dense = dense_implicit_hypergradient(*problem, l2=0.05)
    options = dict(inner_solver="newton", inner_steps=20, l2=0.05, cg_steps=60, cg_tol=1e-14, inner_tol=0.0)
    for batch_mode in ("vmap", "sequential"):
        result = hypergradient("implicit", *problem, batch_mode=batch_mode, **options)
        assert result.status == "ok"
        for k, exact in dense.hypergrad.items():
            torch.testing.assert_close(result.hypergrad[k], exact, rtol=1e-7, atol=1e-10)


def test_an_unsolved_inner_problem_gives_the_unreliable_status_and_a_warning():
    problem = float64_problem()
    with pytest.warns(HypergradientWarning, match="inner problem is not solved"):
        result = hypergradient("implicit", *problem, inner_steps=1, inner_lr=1e-3, l2=0.01, cg_steps=10)
    assert result.status == INNER_NOT_CONVERGED
    assert all(bool(torch.isfinite(g).all()) for g in result.hypergrad.values())  # finite, yet not trusted
    with warnings.catch_warnings():
        warnings.simplefilter("error", HypergradientWarning)
        solved = hypergradient("implicit", *problem, inner_steps=10, inner_solver="newton", l2=0.01, cg_steps=10)
    assert solved.status == "ok"


def test_an_unreliable_training_run_says_so_in_its_records():
    config = MemoryReducedConfig(
        dataset="glyphs", hidden=4, queries=3, shots=(1,), inner_solver="gd", inner_steps=1, inner_lr=1e-3,
        meta_iterations=2, eval_every=2, eval_episodes=2,
    )  # fmt: skip
    rows = [values for _, values, _ in train("implicit", 1, config, load_data(config))]
    assert rows[-1]["status"] == INNER_NOT_CONVERGED


def test_a_short_glyph_training_of_algorithm_1_at_the_default_settings_learns():
    """The defaults (Newton inner solver, K=5, λ=0.01, N=10, Adam 1e-3) with 30 meta-iterations of 4 tasks
    lift 5-way 1-shot accuracy on 40 fixed test episodes of glyphs from 0.47 to 0.73 (chance: 0.2)."""
    config = MemoryReducedConfig(
        dataset="glyphs", hidden=8, image_size=16, shots=(1,), meta_batch=4, meta_iterations=30, eval_every=30,
        eval_episodes=40,
    )  # fmt: skip
    rows = [values for _, values, _ in train("implicit", 1, config, load_data(config))]
    first, last = rows[0], rows[-1]
    assert last["iteration"] == 30 and last["status"] == "ok"
    assert last["test_accuracy"] >= 0.6 and last["test_accuracy"] >= first["test_accuracy"] + 0.15, (first, last)
