"""Property tests: invalid ranks and shapes always raise naming the argument; valid runs give orthonormal bases."""

from __future__ import annotations

import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metalab.data import hps_tasks
from metalab.subspace import fit, sin_theta

FAST_OPTIONS = {
    "meta_sp": {"max_iter": 20},
    "mom": {},
    "altmin_gd": {"max_iter": 10},
    "altmin": {"max_iter": 5},
    "burer_monteiro": {"max_iter": 5},
    "nuclear_norm": {"max_iter": 10},
    "anil": {"max_iter": 3},
    "anil_fo": {"max_iter": 3},
    "single_task": {},
}
SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


sizes = st.tuples(st.integers(1, 6), st.integers(2, 5), st.integers(1, 6))  # T, m, d


@SETTINGS
@given(shape=sizes, rank=st.integers(-3, 10), method=st.sampled_from(sorted(FAST_OPTIONS)))
def test_rank_outside_range_always_raises(shape, rank, method):
    T, m, d = shape
    if 1 <= rank <= min(T, d) - 1:
        return
    X, y = torch.randn(T, m, d, dtype=torch.float64), torch.randn(T, m, dtype=torch.float64)
    allowed = f"1..{min(T, d) - 1}" if min(T, d) >= 2 else "none"
    with pytest.raises(
        ValueError, match=re.escape(f"rank={rank} is not allowed: an integer in 1..min(T, d)-1 = {allowed}")
    ):
        fit(method, X, y, rank, **FAST_OPTIONS[method])


@SETTINGS
@given(
    x_shape=st.lists(st.integers(1, 4), min_size=0, max_size=5),
    y_shape=st.lists(st.integers(1, 4), min_size=0, max_size=4),
    method=st.sampled_from(sorted(FAST_OPTIONS)),
)
def test_wrong_shapes_always_raise_naming_the_argument(x_shape, y_shape, method):
    valid = len(x_shape) == 3 and y_shape == x_shape[:2]
    if valid:
        return
    X, y = torch.randn(tuple(x_shape), dtype=torch.float64), torch.randn(tuple(y_shape), dtype=torch.float64)
    name, shape = ("X", x_shape) if len(x_shape) != 3 else ("y", y_shape)
    with pytest.raises(ValueError, match="^" + re.escape(f"{name} has shape {tuple(shape)}; expected")):
        fit(method, X, y, 1, **FAST_OPTIONS[method])


@SETTINGS
@given(
    d=st.integers(3, 8),
    T=st.integers(3, 12),
    m=st.integers(2, 10),
    noise=st.sampled_from([0.0, 0.1, 1.0]),
    seed=st.integers(0, 1000),
    method=st.sampled_from(sorted(FAST_OPTIONS)),
    data=st.data(),
)
def test_valid_instances_give_orthonormal_bases(d, T, m, noise, seed, method, data):
    rank = data.draw(st.integers(1, min(T, d) - 1), label="rank")
    tasks = hps_tasks(d, rank, T, m, noise=noise, seed=seed)
    result = fit(method, tasks.X, tasks.y, rank, true_basis=tasks.basis, **FAST_OPTIONS[method])
    B = result.basis
    assert B.shape == (d, rank)
    torch.testing.assert_close(B.T @ B, torch.eye(rank, dtype=torch.float64), rtol=0, atol=1e-8)
    assert 0.0 <= sin_theta(B, tasks.basis) <= 1.0
    assert all(0.0 <= h["sin_theta"] <= 1.0 for h in result.history)
    assert result.coef.shape == (T, d) and torch.isfinite(result.coef).all()


# --------------------------------------------------------------------------------------------
# honest numerics: scaling, zero data, complex input, a learning rate that makes ANIL ascend

SCALE_TASKS = hps_tasks(d=10, rank=2, n_tasks=30, n_samples=20, noise=0.0, seed=0)
SCALE_INVARIANT = ("meta_sp", "mom", "altmin_gd", "single_task")  # their default steps scale with the data


@SETTINGS
@given(method=st.sampled_from(SCALE_INVARIANT), exponent=st.integers(-300, 300), target=st.booleans())
def test_a_common_scale_gives_the_same_subspace_or_a_clear_error(method, exponent, target):
    """Scaling X (or y) by 10^k leaves the subspace unchanged: the result is the same, or, where squares
    would leave float64's range, a ValueError says to rescale; never a silent wrong answer."""
    import warnings

    factor = 10.0**exponent
    X, y = (SCALE_TASKS.X, SCALE_TASKS.y * factor) if target else (SCALE_TASKS.X * factor, SCALE_TASKS.y)
    base = fit(method, SCALE_TASKS.X, SCALE_TASKS.y, 2, **FAST_OPTIONS[method])
    name = "y" if target else "X"
    if factor == 0.0 or not 1e-100 <= float((y if target else X).abs().max()) <= 1e100:
        with pytest.raises(
            ValueError, match=rf"{name} (is all zeros|contains non-finite|has largest magnitude .* rescale {name})"
        ):
            fit(method, X, y, 2, **FAST_OPTIONS[method])
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divergence, no overflow
        scaled = fit(method, X, y, 2, **FAST_OPTIONS[method])
    assert scaled.converged == base.converged
    assert sin_theta(scaled.basis, base.basis) < 1e-6


@pytest.mark.parametrize("method", sorted(FAST_OPTIONS))
def test_all_zero_data_is_a_clear_error_for_every_method(method):
    for X, y, name in ((SCALE_TASKS.X * 0, SCALE_TASKS.y, "X"), (SCALE_TASKS.X, SCALE_TASKS.y * 0, "y")):
        with pytest.raises(ValueError, match=rf"{name} is all zeros"):
            fit(method, X, y, 2, **FAST_OPTIONS[method])


def test_complex_input_is_refused_not_cast():
    with pytest.raises(ValueError, match="X holds complex numbers"):
        fit("meta_sp", SCALE_TASKS.X.numpy() + 1j, SCALE_TASKS.y.numpy(), 2)
    with pytest.raises(ValueError, match="expected real numbers"):
        fit("meta_sp", SCALE_TASKS.X.to(torch.complex128), SCALE_TASKS.y, 2)


def test_an_ascending_anil_is_not_reported_converged():
    from metalab.subspace import DivergenceWarning

    with pytest.warns(DivergenceWarning, match="did not descend"):
        result = fit("anil", SCALE_TASKS.X, SCALE_TASKS.y, 2, inner_lr=1e6, max_iter=50)
    assert not result.converged


# --------------------------------------------------------------------------------------------
# the rank-s projection by subspace iteration is the best rank-s approximation


@SETTINGS
@given(
    T=st.integers(2, 40),
    d=st.integers(2, 40),
    decay=st.sampled_from([1.0, 0.9, 0.5]),
    seed=st.integers(0, 1000),
    data=st.data(),
)
def test_subspace_projection_is_the_best_rank_s_approximation(T, d, decay, seed, data):
    """For any matrix, cold and then warm-started on a perturbed copy: ||Z - H̃_s(Z)||_F equals the
    Eckart-Young optimum (σ_{s+1}² + ...)^(1/2), and with a relative gap σ_s - σ_{s+1} > 1e-3 σ_1 the
    subspace is the thin SVD's."""
    from metalab.subspace.linalg import RankProjection

    rank = data.draw(st.integers(1, min(T, d) - 1), label="rank")
    gen = torch.Generator().manual_seed(seed)
    n = min(T, d)
    spectrum = torch.tensor([decay**i for i in range(n)], dtype=torch.float64)
    left = torch.linalg.qr(torch.randn(T, n, generator=gen, dtype=torch.float64)).Q
    right = torch.linalg.qr(torch.randn(d, n, generator=gen, dtype=torch.float64)).Q
    first = (left * spectrum) @ right.T
    projection = RankProjection(rank, (T, d), "subspace", dtype=torch.float64, device=torch.device("cpu"))
    for Z in (first, first + 1e-3 * torch.randn(T, d, generator=gen, dtype=torch.float64)):
        scores, basis = projection(Z)
        singular = torch.linalg.svdvals(Z)
        optimum = float(singular[rank:].square().sum().sqrt())
        assert float(torch.linalg.norm(Z - scores @ basis.T)) <= optimum * (1 + 1e-9) + 1e-12
        torch.testing.assert_close(basis.T @ basis, torch.eye(rank, dtype=torch.float64), rtol=0, atol=1e-10)
        if rank < n and singular[rank - 1] - singular[rank] > 1e-3 * singular[0]:
            exact = torch.linalg.svd(Z, full_matrices=False).Vh[:rank].T
            assert sin_theta(basis, exact) < 1e-6
