"""Meta-SP and the linear baselines: recovery, convergence, metrics, ANIL's meta-gradient, validation."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from metalab.core.results import AssumptionWarning
from metalab.data import hps_tasks
from metalab.subspace import (
    METHODS,
    DivergenceWarning,
    MetaSPStep,
    SubspaceResult,
    TaskTensors,
    anil_meta_loss,
    coef_error,
    few_shot_mse,
    fit,
    fit_heads,
    iterate_meta_subspace_pursuit,
    meta_subspace_pursuit,
    method_of_moments,
    oracle,
    sin_theta,
)
from metalab.subspace.linalg import RankProjection, subspace_iteration


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These problems are tiny: intra-op threads only add overhead (a lot of it on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def final_sin(result: SubspaceResult) -> float:
    return result.history[-1]["sin_theta"]


@pytest.fixture(scope="module")
def noiseless():
    """Well-posed few-shot instance: d=20, s=3, T=100, m=20, no noise."""
    return hps_tasks(20, 3, 100, 20, noise=0.0, seed=0)


@pytest.fixture(scope="module")
def easy():
    """Many samples per task, a little noise: every method should find the subspace."""
    return hps_tasks(10, 2, 80, 80, noise=0.05, seed=0)


# ---------------------------------------------------------------------------------------------
# Meta-SP


@pytest.mark.parametrize("init", ["zero", "spectral"])
@pytest.mark.parametrize("refit", ["none", "ls"])
def test_meta_sp_recovers_noiseless_subspace_exactly(noiseless, init, refit):
    result = meta_subspace_pursuit(noiseless.X, noiseless.y, 3, init=init, refit=refit, true_basis=noiseless.basis)
    assert result.method == "meta_sp" and result.converged
    assert final_sin(result) < 1e-6
    assert sin_theta(result.basis, noiseless.basis) < 1e-6
    assert coef_error(result.coef, noiseless.coef) < 1e-6
    assert result.basis.shape == (20, 3) and result.coef.shape == (100, 20)


def test_meta_sp_converges_linearly_without_noise(noiseless):
    history = meta_subspace_pursuit(noiseless.X, noiseless.y, 3, true_basis=noiseless.basis).history
    sines = [h["sin_theta"] for h in history]
    assert sines[20] < 0.2 * sines[1]
    # geometric decay: every 50 iterations the error shrinks by a large factor
    assert all(sines[k + 50] < 0.3 * sines[k] for k in (50, 100, 150, 200))
    assert [h["iteration"] for h in history] == list(range(len(history)))
    assert all(b["seconds"] >= a["seconds"] for a, b in zip(history, history[1:], strict=False))  # consecutive pairs


def test_meta_sp_plateaus_at_a_noise_floor():
    data = hps_tasks(20, 3, 100, 20, noise=0.3, seed=0)
    result = meta_subspace_pursuit(data.X, data.y, 3, true_basis=data.basis)
    tail = [h["sin_theta"] for h in result.history[100:]]
    assert result.converged
    assert 0.01 < min(tail) and max(tail) < 1.01 * min(tail) and max(tail) < 0.2
    assert result.history[-1]["objective"] > 0.5 * 0.3**2 * 0.5  # cannot fit below (a fraction of) the noise


def test_meta_sp_beats_method_of_moments_with_few_samples():
    data = hps_tasks(20, 3, 200, 6, noise=0.1, seed=0)
    meta = final_sin(meta_subspace_pursuit(data.X, data.y, 3, true_basis=data.basis))
    mom = final_sin(method_of_moments(data.X, data.y, 3, true_basis=data.basis))
    assert meta < 0.1 and mom > 4 * meta


def test_iterate_streams_the_same_run(noiseless):
    steps = list(iterate_meta_subspace_pursuit(noiseless.X, noiseless.y, 3, max_iter=30, true_basis=noiseless.basis))
    assert all(isinstance(step, MetaSPStep) for step in steps)
    assert [step.iteration for step in steps] == list(range(31))
    result = meta_subspace_pursuit(noiseless.X, noiseless.y, 3, max_iter=30, true_basis=noiseless.basis)
    assert not result.converged and result.n_iter == 30
    assert torch.equal(steps[-1].basis, result.basis)
    assert [s.sin_theta for s in steps] == [h["sin_theta"] for h in result.history]
    assert all(s.sin_theta is None for s in iterate_meta_subspace_pursuit(noiseless.X, noiseless.y, 3, max_iter=2))


def test_iterate_checks_arguments_before_the_first_step(noiseless):
    with pytest.raises(ValueError, match="rank=0"):
        iterate_meta_subspace_pursuit(noiseless.X, noiseless.y, 0)  # no next() needed


def test_divergence_is_reported_not_silent(noiseless):
    with pytest.warns(DivergenceWarning, match="meta_sp diverged"):
        result = meta_subspace_pursuit(noiseless.X, noiseless.y, 3, step_size=50.0)
    assert not result.converged and result.n_iter < 500
    assert torch.isfinite(result.basis).all() and torch.isfinite(result.coef).all()
    assert all(math.isfinite(h["objective"]) for h in result.history)


def test_lists_of_equal_tasks_match_the_padded_tensor(noiseless):
    X_list, y_list = list(noiseless.X), [y.numpy() for y in noiseless.y]
    padded = meta_subspace_pursuit(noiseless.X, noiseless.y, 3, max_iter=40)
    listed = meta_subspace_pursuit(X_list, y_list, 3, max_iter=40)
    torch.testing.assert_close(listed.coef, padded.coef, rtol=1e-10, atol=1e-12)
    assert sin_theta(listed.basis, padded.basis) < 1e-10


def test_unequal_task_sizes():
    data = hps_tasks(12, 2, 60, 30, noise=0.0, seed=3)
    sizes = [8 + (t * 7) % 23 for t in range(60)]  # 8..30 samples
    X_list = [data.X[t, :m] for t, m in enumerate(sizes)]
    y_list = [data.y[t, :m] for t, m in enumerate(sizes)]
    for method in ("meta_sp", "altmin", "altmin_gd"):
        result = fit(method, X_list, y_list, 2, true_basis=data.basis)
        assert final_sin(result) < 1e-6, method
    # the list form divides each task by its own m_t; the same rows zero-padded into one tensor count as
    # m = 30 samples each, which weights the tasks differently
    X_pad = torch.zeros(60, 30, 12, dtype=torch.float64)
    y_pad = torch.zeros(60, 30, dtype=torch.float64)
    for t, m in enumerate(sizes):
        X_pad[t, :m], y_pad[t, :m] = X_list[t], y_list[t]
    listed = meta_subspace_pursuit(X_list, y_list, 2, max_iter=5)
    padded = meta_subspace_pursuit(X_pad, y_pad, 2, max_iter=5)
    assert not torch.allclose(listed.coef, padded.coef)


# ---------------------------------------------------------------------------------------------
# The rank-s projection: subspace iteration against the thin SVD

SPECTRA = {  # s = 3 leading singular values, then the tail (block size k = 6 for s = 3)
    "gap": [10.0, 8.0, 6.0] + [1.0 * 0.8**i for i in range(27)],
    "close": [10.0, 8.0, 6.0] + [6.0 / 1.001] + [1.0 * 0.8**i for i in range(26)],  # sigma_3/sigma_4 = 1.001
    "flat": [10.0, 8.0, 6.0] + [6.0 / (1 + 1e-4 * i) for i in range(1, 27)],  # flat across the block and beyond
}


def _with_spectrum(singular_values, n_rows=60, n_cols=40, seed=0):
    gen = torch.Generator().manual_seed(seed)
    left = torch.linalg.qr(torch.randn(n_rows, len(singular_values), generator=gen, dtype=torch.float64)).Q
    right = torch.linalg.qr(torch.randn(n_cols, len(singular_values), generator=gen, dtype=torch.float64)).Q
    return (left * torch.tensor(singular_values, dtype=torch.float64)) @ right.T


def _thin_svd_projection(Z, rank):
    U, S, Vh = torch.linalg.svd(Z, full_matrices=False)
    return (U[:, :rank] * S[:rank]) @ Vh[:rank], Vh[:rank].T


@pytest.mark.parametrize("spectrum", ["gap", "close"])
def test_subspace_iteration_matches_the_thin_svd(spectrum):
    Z = _with_spectrum(SPECTRA[spectrum])
    exact, exact_basis = _thin_svd_projection(Z, 3)
    cold = torch.linalg.qr(torch.randn(40, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)).Q
    found = subspace_iteration(Z, 3, cold, max_sweeps=200)
    assert found is not None
    scores, block, sweeps = found
    torch.testing.assert_close(scores @ block[:, :3].T, exact, rtol=0, atol=1e-9 * float(torch.linalg.norm(Z)))
    assert sin_theta(block[:, :3], exact_basis) < 1e-9
    # warm-started from the block of a nearby matrix, it needs fewer sweeps than from the cold start
    nearby = Z + 1e-3 * _with_spectrum([1.0] * 30, seed=2)
    warm = subspace_iteration(nearby, 3, block)
    assert warm is not None and warm[2] < sweeps
    torch.testing.assert_close(warm[0] @ warm[1][:, :3].T, _thin_svd_projection(nearby, 3)[0], rtol=0, atol=1e-8)


def test_subspace_iteration_reports_a_flat_spectrum_and_the_projection_falls_back_to_the_svd():
    Z = _with_spectrum(SPECTRA["flat"])
    cold = torch.linalg.qr(torch.randn(40, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)).Q
    assert subspace_iteration(Z, 3, cold) is None  # sigma_3 .. sigma_7 within 1e-3: no Ritz gap to converge on
    projection = RankProjection(3, (60, 40), "subspace", dtype=torch.float64, device=torch.device("cpu"))
    scores, basis = projection(Z)
    exact, exact_basis = _thin_svd_projection(Z, 3)
    assert projection.fallbacks == 1
    torch.testing.assert_close(scores @ basis.T, exact, rtol=0, atol=1e-12)
    assert sin_theta(basis, exact_basis) < 1e-10
    with pytest.raises(ValueError, match="method='qr' is not allowed: one of 'subspace', 'svd'"):
        RankProjection(3, (60, 40), "qr", dtype=torch.float64, device=torch.device("cpu"))


@pytest.mark.parametrize("noise", [0.0, 0.3])
@pytest.mark.parametrize("refit", ["none", "ls"])
def test_meta_sp_with_subspace_iteration_follows_the_svd_iterates(noise, refit):
    data = hps_tasks(30, 3, 200, 10, noise=noise, seed=1)
    runs = {
        projection: meta_subspace_pursuit(data.X, data.y, 3, refit=refit, max_iter=150, projection=projection)
        for projection in ("svd", "subspace")
    }
    fast, exact = runs["subspace"], runs["svd"]
    assert fast.n_iter == exact.n_iter
    assert coef_error(fast.coef, exact.coef) < 1e-9
    assert sin_theta(fast.basis, exact.basis) < 1e-9
    objectives = [[h["objective"] for h in run.history] for run in (fast, exact)]
    np.testing.assert_allclose(*objectives, rtol=1e-9)


# ---------------------------------------------------------------------------------------------
# Baselines in their easy regime (thresholds about 3x the errors measured on these seeds)

EASY_THRESHOLDS = {
    # measured: 0.0030 for meta_sp, altmin_gd, altmin, burer_monteiro; 0.0034 single_task; 0.0066 nuclear
    # norm; 0.023 / 0.018 ANIL / first-order ANIL (300 outer steps); 0 for the oracle
    "meta_sp": 0.01,
    "altmin_gd": 0.01,
    "altmin": 0.01,
    "burer_monteiro": 0.01,
    "nuclear_norm": 0.02,
    "anil": 0.07,
    "anil_fo": 0.07,
    "single_task": 0.01,
    "oracle": 1e-12,
}
EASY_OPTIONS = {"burer_monteiro": {"max_iter": 200}, "anil": {"max_iter": 300}, "anil_fo": {"max_iter": 300}}


@pytest.mark.parametrize("method", list(EASY_THRESHOLDS))
def test_baseline_recovers_subspace_in_easy_regime(easy, method):
    result = fit(method, easy.X, easy.y, 2, true_basis=easy.basis, **EASY_OPTIONS.get(method, {}))
    assert result.method == method
    assert final_sin(result) < EASY_THRESHOLDS[method]
    assert result.coef.shape == (80, 10) and torch.isfinite(result.coef).all()


def test_method_of_moments_in_its_easy_regime():
    data = hps_tasks(10, 2, 200, 200, noise=0.05, seed=0)  # measured 0.060 (0.075, 0.083 on seeds 1, 2)
    result = method_of_moments(data.X, data.y, 2, true_basis=data.basis)
    assert final_sin(result) < 0.2 and result.converged and result.n_iter == 0


def test_method_of_moments_says_when_its_isotropy_assumption_fails():
    data = hps_tasks(10, 2, 200, 50, noise=0.05, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # isotropic Gaussian inputs: no warning
        assert method_of_moments(data.X, data.y, 2).converged
    # one input coordinate 30 times larger: E[y² x xᵀ] is no longer (|θ|² + σ²) I + 2 θθᵀ
    scale = torch.ones(10, dtype=data.X.dtype)
    scale[0] = 30.0
    with pytest.warns(AssumptionWarning, match=r"mom assumes isotropic inputs .* condition number 9\d\d"):
        skewed = method_of_moments(data.X * scale, data.y, 2, true_basis=data.basis)
    assert not skewed.converged
    # every task a copy of one task with m < d: the pooled second moment is singular
    copies = data.X[:1, :5].expand(200, 5, 10), data.y[:1, :5].expand(200, 5)
    with pytest.warns(AssumptionWarning, match="condition number"):
        assert not method_of_moments(*copies, 2).converged


def test_registry_and_fit_dispatch(easy):
    assert set(METHODS) == {
        "meta_sp", "mom", "altmin_gd", "altmin", "burer_monteiro", "nuclear_norm", "anil", "anil_fo",
        "single_task", "oracle",
    }  # fmt: skip
    assert fit("anil_fo", easy.X, easy.y, 2, max_iter=3).method == "anil_fo"
    with pytest.raises(ValueError, match="method='svd' is not allowed: one of 'meta_sp'"):
        fit("svd", easy.X, easy.y, 2)


def test_altmin_random_init_and_exact_flag(easy):
    result = fit("altmin_gd", easy.X, easy.y, 2, init="random", seed=4, true_basis=easy.basis)
    assert final_sin(result) < 0.01
    with pytest.raises(ValueError, match="exact='yes'"):
        fit("altmin_gd", easy.X, easy.y, 2, exact="yes")


# ---------------------------------------------------------------------------------------------
# Metrics


def test_sin_theta_for_planes_at_known_angles():
    a, b = 0.3, 0.7
    e = torch.eye(4, dtype=torch.float64)
    plane = torch.stack([e[0], e[1]], 1)
    tilted = torch.stack([math.cos(a) * e[0] + math.sin(a) * e[2], math.cos(b) * e[1] + math.sin(b) * e[3]], 1)
    assert sin_theta(plane, tilted) == pytest.approx(math.sin(b), abs=1e-12)
    assert sin_theta(plane, tilted, norm="fro") == pytest.approx(math.hypot(math.sin(a), math.sin(b)), abs=1e-12)
    # inputs are orthonormalised: scaled and mixed columns span the same plane
    mixed = tilted @ torch.tensor([[3.0, 1.0], [0.0, 2.0]], dtype=torch.float64)
    assert sin_theta(plane.numpy() * 5, mixed) == pytest.approx(math.sin(b), abs=1e-12)
    # different widths: a line inside the plane, and a plane sticking out of a line
    assert sin_theta(plane, e[:, :1]) == pytest.approx(0.0, abs=1e-15)
    assert sin_theta(e[:, :1], plane) == pytest.approx(1.0)
    assert sin_theta(e[:, :1], torch.stack([e[0], e[3]], 1), norm="fro") == pytest.approx(1.0)


def test_sin_theta_spectral_and_frobenius_bounds():
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        A, B = (
            torch.randn(8, 3, generator=gen, dtype=torch.float64),
            torch.randn(8, 3, generator=gen, dtype=torch.float64),
        )
        spectral, fro = sin_theta(A, B), sin_theta(A, B, norm="fro")
        assert spectral <= fro + 1e-12 <= math.sqrt(3) * spectral + 2e-12
        assert sin_theta(A, B) == pytest.approx(sin_theta(B, A), abs=1e-12)  # equal widths: symmetric


def test_coef_error_fit_heads_and_few_shot_mse(noiseless):
    assert coef_error(noiseless.coef * 1.1, noiseless.coef) == pytest.approx(0.1)
    assert coef_error(noiseless.coef, noiseless.coef, relative=False) == 0.0
    heads = fit_heads(noiseless.basis, noiseless.X, noiseless.y)
    torch.testing.assert_close(heads, noiseless.head, rtol=0, atol=1e-10)
    fresh = noiseless.new_tasks(30, 10, seed=1)
    support = (fresh.X[:, :5], fresh.y[:, :5])
    query = (fresh.X[:, 5:], fresh.y[:, 5:])
    assert few_shot_mse(noiseless.basis, *support, *query) < 1e-20
    wrong = torch.linalg.qr(torch.randn(20, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)).Q
    assert few_shot_mse(wrong, *support, *query) > 0.1
    assert few_shot_mse(noiseless.basis, *support, *query, ridge=10.0) > 0.1  # heavy ridge shrinks the heads


def test_oracle_uses_the_true_basis_and_requires_it(noiseless):
    result = oracle(noiseless.X, noiseless.y, 3, true_basis=noiseless.basis)
    assert final_sin(result) < 1e-12 and coef_error(result.coef, noiseless.coef) < 1e-10
    with pytest.raises(ValueError, match="true_basis=None is not allowed"):
        oracle(noiseless.X, noiseless.y, 3, true_basis=None)


# ---------------------------------------------------------------------------------------------
# ANIL's meta-gradient


def _tiny_anil_problem():
    gen = torch.Generator().manual_seed(0)
    rand = lambda *shape: torch.randn(*shape, generator=gen, dtype=torch.float64)  # noqa: E731
    support = TaskTensors(rand(3, 4, 5), rand(3, 4), torch.full((3,), 4.0, dtype=torch.float64))
    query = TaskTensors(rand(3, 4, 5), rand(3, 4), torch.full((3,), 4.0, dtype=torch.float64))
    return rand(5, 2), rand(2), support, query


def _meta_gradient(B, head, support, query, second_order):
    B, head = B.clone().requires_grad_(), head.clone().requires_grad_()
    loss, _ = anil_meta_loss(B, head, support, query, inner_lr=0.3, inner_steps=2, second_order=second_order)
    return torch.autograd.grad(loss, (B, head))


def test_anil_second_order_gradient_matches_finite_differences():
    B, head, support, query = _tiny_anil_problem()
    grad_B, grad_head = _meta_gradient(B, head, support, query, second_order=True)

    def loss_at(B_, head_):
        return float(anil_meta_loss(B_, head_, support, query, inner_lr=0.3, inner_steps=2, second_order=True)[0])

    eps = 1e-6
    numeric_B = torch.zeros_like(B)
    for i in range(B.shape[0]):
        for j in range(B.shape[1]):
            step = torch.zeros_like(B)
            step[i, j] = eps
            numeric_B[i, j] = (loss_at(B + step, head) - loss_at(B - step, head)) / (2 * eps)
    numeric_head = torch.tensor(
        [
            (loss_at(B, head + eps * e) - loss_at(B, head - eps * e)) / (2 * eps)
            for e in torch.eye(2, dtype=torch.float64)
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(grad_B, numeric_B, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(grad_head, numeric_head, rtol=1e-6, atol=1e-8)

    first_B, first_head = _meta_gradient(B, head, support, query, second_order=False)
    assert torch.linalg.norm(first_B - grad_B) > 1e-2 * torch.linalg.norm(grad_B)
    assert torch.linalg.norm(first_head - grad_head) > 1e-2 * torch.linalg.norm(grad_head)


# ---------------------------------------------------------------------------------------------
# Validation


def test_validation_messages_name_the_argument(noiseless):
    X, y = noiseless.X, noiseless.y
    cases = [
        (lambda: meta_subspace_pursuit(X[0], y, 3), r"X has shape \(20, 20\); expected \(T, m, d\)"),
        (lambda: meta_subspace_pursuit(X, y[:, :5], 3), r"y has shape \(100, 5\); expected \(T, m\) = \(100, 20\)"),
        (
            lambda: meta_subspace_pursuit(X, y, 20),
            r"rank=20 is not allowed: an integer in 1\.\.min\(T, d\)-1 = 1\.\.19",
        ),
        (lambda: meta_subspace_pursuit(X, y, 0), r"rank=0 is not allowed"),
        (lambda: meta_subspace_pursuit(X, y, 2.5), r"rank=2.5 is not allowed"),
        (lambda: meta_subspace_pursuit(X, y, 3, step_size=-1.0), r"step_size=-1.0 is not allowed"),
        (lambda: meta_subspace_pursuit(X, y, 3, step_size=0), r"step_size=0 is not allowed"),
        (lambda: meta_subspace_pursuit(X, y, 3, max_iter=0), r"max_iter=0 is not allowed"),
        (lambda: meta_subspace_pursuit(X, y, 3, init="svd"), r"init='svd' is not allowed: one of 'zero', 'spectral'"),
        (lambda: meta_subspace_pursuit(X, y, 3, refit="lasso"), r"refit='lasso' is not allowed: one of 'none', 'ls'"),
        (lambda: meta_subspace_pursuit(X, y, 3, projection="qr"), r"projection='qr' is not allowed: one of 'subspace'"),
        (lambda: meta_subspace_pursuit(X, y, 3, true_basis=torch.eye(5)), r"true_basis has shape \(5, 5\)"),
        (lambda: fit("altmin_gd", X, y, 3, init="spectral"), r"init='spectral' is not allowed: one of 'mom', 'random'"),
        (lambda: fit("nuclear_norm", X, y, 3, lam=-0.1), r"lam=-0.1 is not allowed"),
        (lambda: fit("anil", X, y, 3, support_fraction=1.0), r"support_fraction=1.0 is not allowed"),
        (lambda: fit("anil", X, y, 3, inner_steps=0), r"inner_steps=0 is not allowed"),
        (lambda: fit("anil", X[:, :1], y[:, :1], 3), r"ANIL needs at least 2 per task"),
        (lambda: fit("burer_monteiro", X, y, 3, seed=-1), r"seed=-1 is not allowed"),
        (lambda: fit("single_task", X, y, 3, ridge=-1), r"ridge=-1 is not allowed"),
        (lambda: sin_theta(torch.eye(3), torch.eye(4)[:, :2]), r"basis_true has shape \(4, 2\)"),
        (lambda: sin_theta(torch.eye(3), torch.eye(3), norm="nuclear"), r"norm='nuclear' is not allowed"),
        (lambda: coef_error(torch.ones(2, 3), torch.ones(3, 2)), r"coef_hat has shape \(2, 3\)"),
        (lambda: coef_error(torch.ones(2, 3), torch.zeros(2, 3)), r"coef_true is all zeros"),
        (lambda: meta_subspace_pursuit([X[0], X[1][:, :4]], [y[0], y[1]], 1), r"X\[1\] has shape \(20, 4\)"),
        (lambda: meta_subspace_pursuit([X[0], X[1]], [y[0], y[1][:3]], 1), r"y\[1\] has shape \(3,\)"),
        (lambda: meta_subspace_pursuit([X[0], X[1]], [y[0]], 1), r"y is a list of 1 arrays; expected a list of 2"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_data_is_rejected(noiseless, bad):
    X, y = noiseless.X.clone(), noiseless.y.clone()
    X[3, 2, 1] = bad
    with pytest.raises(ValueError, match=r"X contains non-finite values \(NaN or inf\)"):
        fit("mom", X, noiseless.y, 3)
    y[0, 0] = bad
    with pytest.raises(ValueError, match=r"y contains non-finite values \(NaN or inf\)"):
        fit("meta_sp", noiseless.X, y, 3)


def test_numpy_inputs_are_accepted(easy):
    result = meta_subspace_pursuit(np.asarray(easy.X), np.asarray(easy.y), 2, true_basis=np.asarray(easy.basis))
    assert result.basis.device.type == "cpu" and result.basis.dtype == torch.float64
    assert final_sin(result) < 0.01


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_smoke():
    data = hps_tasks(12, 2, 40, 30, noise=0.0, seed=0, device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DivergenceWarning)
        for method in METHODS:
            options = {"max_iter": 20} if method in ("anil", "anil_fo", "burer_monteiro") else {}
            result = fit(method, data.X, data.y, 2, true_basis=data.basis, **options)
            assert result.basis.device.type == "cuda" and result.coef.device.type == "cuda", method
    cpu = meta_subspace_pursuit(data.X.cpu(), data.y.cpu(), 2, max_iter=30)
    gpu = meta_subspace_pursuit(data.X, data.y, 2, max_iter=30)
    assert sin_theta(gpu.basis.cpu(), cpu.basis) < 1e-8
    assert final_sin(meta_subspace_pursuit(data.X, data.y, 2, true_basis=data.basis)) < 1e-6


def test_streamed_seconds_exclude_the_consumers_time():
    import time

    tasks = hps_tasks(20, 3, 100, 10, 0.1, seed=0)
    seconds, slept = [], 0.0
    started = time.perf_counter()
    for step in iterate_meta_subspace_pursuit(tasks.X, tasks.y, 3, max_iter=20, true_basis=tasks.basis):
        nap = time.perf_counter()
        time.sleep(0.05)  # a slow consumer, e.g. a dashboard redrawing between steps
        slept += time.perf_counter() - nap
        seconds.append(step.seconds)
    wall = time.perf_counter() - started
    assert seconds == sorted(seconds)
    # Whatever the machine's speed, the method's clock must miss (almost) all of the consumer's naps.
    assert seconds[-1] < wall - 0.9 * slept, (seconds[-1], wall, slept)
