"""Decoders of randomized sketches against the exact references: CKM against Lloyd, compressive PCA against
the SVD, compressive ridge against the closed form; the pieces (atom gradients, NNLS, measurement
operators) against autograd, scipy and the feature maps; and the argument errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import nnls

from metalab.compressive import (
    Laplace,
    ProjectedSecondMoments,
    RandomFourierFeatures,
    RandomizedLearner,
    RandomQuadraticFeatures,
    SeededNoiseWarning,
    dataset_family,
    make_task,
    median_scale,
)
from metalab.compressive.ckm import MEDIAN_FACTOR, _DiracSketches, _nnls, ckm, rff_sketch_for_kmeans
from metalab.compressive.decoders import (
    _QuadraticMeasurements,
    append_ones,
    compressive_pca,
    compressive_ridge,
    second_moment,
)
from metalab.compressive.references import kmeans, kmeans_sse, pca, ridge

torch.set_num_threads(1)
CPU = torch.device("cpu")


def gaussian(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def mixture(k: int, d: int, n: int, seed: int, std: float = 0.05) -> torch.Tensor:
    """``n`` points from ``k`` Gaussian clusters in [-0.8, 0.8]^d whose centres are at least 0.5 apart."""
    g = torch.Generator().manual_seed(seed)
    while True:
        centres = torch.rand(k, d, generator=g, dtype=torch.float64) * 1.6 - 0.8
        if torch.pdist(centres).min() > 0.5:
            break
    labels = torch.randint(k, (n,), generator=g)
    return centres[labels] + std * torch.randn(n, d, generator=g, dtype=torch.float64)


def sin_theta(A: torch.Tensor, B: torch.Tensor) -> float:
    """Largest principal angle's sine between the spans of orthonormal ``A`` and ``B``."""
    return float(torch.linalg.matrix_norm(A - B @ (B.T @ A), ord=2))


# ---------------------------------------------------------------------------------------------
# Compressive k-means


def test_ckm_on_two_2d_mixtures_at_once_is_within_1_3_of_lloyd():
    k, d = 3, 2
    data = [mixture(k, d, 4000, seed) for seed in (0, 1)]
    fmap = rff_sketch_for_kmeans(data[0], 10 * k * d, seed=3)  # one map for the batch: the first set's scale
    sketches = torch.stack([fmap.sketch(X).mean for X in data])
    C, weights = ckm(sketches, fmap, k, bounds=(-1.0, 1.0), seed=0, device="cpu")
    assert C.shape == (2, k, d) and weights.shape == (2, k)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(2, dtype=torch.float64))
    for b, X in enumerate(data):
        ratio = float(kmeans_sse(X, C[b]) / kmeans(X, k)[1])
        assert ratio < 1.3, ratio  # measured 1.011 and 1.075


def test_ckm_on_a_5d_mixture_is_within_1_3_of_lloyd():
    k, d = 5, 5
    X = mixture(k, d, 4000, seed=2)
    fmap = rff_sketch_for_kmeans(X, 10 * k * d, seed=2)
    C, weights = ckm(fmap.sketch(X), None, k, bounds=(X.min(0).values, X.max(0).values), seed=2, device="cpu")
    ratio = float(kmeans_sse(X, C) / kmeans(X, k)[1])
    assert ratio < 1.3, ratio  # measured 1.002
    assert float(weights.min()) > 0.1  # balanced clusters: weights near 1/5


def test_ckm_at_the_benchmark_setting_keeps_lloyds_sse():
    # benchmarks/compressive.py's setting (d = 10, k = 5, m = 10 k d) on the experiment's mixtures:
    # the float32 sketch and the faster decoder must keep the SSE of full-data k-means
    k, d = 5, 10
    X = dataset_family("mixtures", n=20_000, d=d, k=k).sample(1, seed=3, split="held_out").X[0]
    fmap = rff_sketch_for_kmeans(X, 10 * k * d)
    C, _ = ckm(fmap.sketch(X), None, k, bounds=(-1.0, 1.0), seed=3, device="cpu")
    ratio = float(kmeans_sse(X, C) / kmeans(X, k)[1])
    assert ratio < 1.05, ratio  # measured 1.002 (1.001-1.003 over 8 held-out sets)


def test_ckm_recovers_an_exact_mixture_of_diracs():
    centres = torch.tensor([[-0.6, 0.5], [0.5, 0.4], [0.0, -0.6]], dtype=torch.float64)
    counts = torch.tensor([50, 30, 20])
    X = centres.repeat_interleave(counts, dim=0)
    fmap = RandomFourierFeatures(2, 30, scale=3.0, seed=1)
    C, weights = ckm(fmap.sketch(X), fmap, 3, bounds=(-1.0, 1.0), seed=1, device="cpu")
    order = torch.cdist(C, centres).argmin(dim=1)
    assert sorted(order.tolist()) == [0, 1, 2]
    assert float((C - centres[order]).norm(dim=1).max()) < 1e-3
    torch.testing.assert_close(weights, counts[order].to(torch.float64) / 100, atol=1e-3, rtol=0)


def test_atom_gradients_match_autograd():
    fmap = RandomFourierFeatures(3, 20, scale=2.0, seed=4)
    atoms = _DiracSketches(fmap, CPU)
    C, residual = gaussian(2, 5, 3, seed=5), gaussian(2, 40, seed=6)
    # the map runs cos and sin in float32 (measured gap 1e-7), the atoms in float64
    torch.testing.assert_close(atoms(C[0]), fmap.features(C[0]), atol=1e-6, rtol=0.0)
    c = C.clone().requires_grad_(True)
    value, grad = atoms.correlation(C, residual)
    (atoms(c) * residual.unsqueeze(1)).sum().backward()
    torch.testing.assert_close(grad, c.grad)
    torch.testing.assert_close(value, (atoms(C) * residual.unsqueeze(1)).sum(-1))
    alpha, z = torch.rand(2, 5, dtype=torch.float64), gaussian(2, 40, seed=7)
    a, c = alpha.clone().requires_grad_(True), C.clone().requires_grad_(True)
    (z - atoms.mixture(a, c)).pow(2).sum().backward()
    g_alpha, g_c = atoms.misfit_gradients(z, alpha, C)
    torch.testing.assert_close(g_alpha, a.grad)
    torch.testing.assert_close(g_c, c.grad)


def test_batched_nnls_matches_scipy():
    A = gaussian(4, 30, 6, seed=8)
    A[1, :, 3] = A[1, :, 2] + 1e-3 * A[1, :, 3]  # two nearly parallel atoms
    b = gaussian(4, 30, seed=9)
    x = _nnls(A.transpose(1, 2) @ A, (A.transpose(1, 2) @ b.unsqueeze(-1)).squeeze(-1), iterations=3000)
    for i in range(4):
        reference, _ = nnls(A[i].numpy(), b[i].numpy())
        # Same objective value (the minimiser itself is ill-determined for the near-parallel pair).
        ours = float((A[i] @ x[i] - b[i]).norm())
        assert ours == pytest.approx(np.linalg.norm(A[i].numpy() @ reference - b[i].numpy()), rel=1e-6)
        assert float(x[i].min()) >= 0.0


def test_rff_sketch_for_kmeans_scale():
    X = gaussian(300, 3, seed=10)
    fmap = rff_sketch_for_kmeans(X, 40, seed=1)
    assert (fmap.input_dim, fmap.sketch_size) == (3, 40)
    assert fmap.scale == pytest.approx(MEDIAN_FACTOR * median_scale(X, 300, seed=1))
    fixed = rff_sketch_for_kmeans(3, 40, scale=2.5, seed=1)
    assert fixed.scale == 2.5 and fixed.frequencies.shape == (20, 3)


# ---------------------------------------------------------------------------------------------
# Compressive PCA and ridge


@pytest.mark.parametrize(
    "make",
    [lambda D: RandomQuadraticFeatures(D, 11, 5.0, seed=1), lambda D: ProjectedSecondMoments(D, 4, 5.0, seed=2)],
    ids=["quadratic", "second-moments"],
)
def test_measurement_operator_equals_the_feature_map(make):
    fmap = make(6)
    meas = _QuadraticMeasurements(fmap, CPU)
    x = gaussian(7, 6, seed=11)
    torch.testing.assert_close(meas(x.unsqueeze(-1) * x.unsqueeze(-2)), fmap.features(x))
    torch.testing.assert_close(meas.of_factor(x.unsqueeze(-1)), fmap.features(x))
    M = gaussian(6, 6, seed=12)
    M = M + M.T
    theta = M[meas.rows, meas.cols] / meas.basis_scale
    torch.testing.assert_close(meas.matrix(theta), M)
    torch.testing.assert_close(meas.design() @ theta, meas(M))


def low_rank(n: int, d: int, r: int, seed: int, noise: float = 0.0) -> torch.Tensor:
    X = gaussian(n, r, seed=seed) @ gaussian(r, d, seed=seed + 1) * 0.3 + 0.3 * gaussian(d, seed=seed + 2)
    return X + noise * gaussian(n, d, seed=seed + 3)


def test_compressive_pca_is_exact_with_d_d_plus_1_over_2_measurements():
    d, k = 8, 2
    X = low_rank(500, d, 3, seed=13, noise=0.02)
    # Uncentred: the top eigenvectors of E[x x^T].
    fmap = RandomQuadraticFeatures(d, d * (d + 1) // 2, 10.0, seed=3)
    V, mean = compressive_pca(fmap.sketch(X), fmap, k, device="cpu")
    exact = torch.linalg.eigh(X.T @ X / len(X)).eigenvectors.flip(-1)[:, :k]
    assert sin_theta(exact, V) < 1e-6
    torch.testing.assert_close(V.T @ V, torch.eye(k, dtype=torch.float64))
    assert float(mean.abs().max()) == 0.0
    # Centred, from the rows [x, 1]: the principal directions and the mean.
    D = d + 1
    for fmap in (
        RandomQuadraticFeatures(D, D * (D + 1) // 2, 10.0, seed=4),
        ProjectedSecondMoments(D, D, 10.0, seed=5),
    ):
        V, mean = compressive_pca(fmap.sketch(append_ones(X)), fmap, k, augmented=True, device="cpu")
        exact, exact_mean = pca(X, k)
        assert sin_theta(exact, V) < 1e-6
        torch.testing.assert_close(mean, exact_mean)


def test_low_rank_recovery_needs_fewer_measurements():
    d, r = 16, 2
    X = low_rank(400, d, r, seed=14) - 0.3 * gaussian(d, seed=16)  # exactly rank 2, no mean
    m = 3 * d * r  # 96 < d (d + 1) / 2 = 136
    fmap = RandomQuadraticFeatures(d, m, 10.0, seed=6)
    V, _ = compressive_pca(fmap.sketch(X), fmap, r, device="cpu")
    assert sin_theta(pca(X, r)[0], V) < 1e-5
    # Least squares from the same few measurements does not find it.
    V_ls, _ = compressive_pca(fmap.sketch(X), fmap, r, method="lstsq", device="cpu")
    assert sin_theta(pca(X, r)[0], V_ls) > 0.1


def test_second_moment_is_exact_and_batched():
    X = [gaussian(100, 4, seed=17), 2.0 + gaussian(100, 4, seed=18)]
    fmap = RandomQuadraticFeatures(4, 10, 20.0, seed=7)
    M = second_moment(torch.stack([fmap.sketch(x).mean for x in X]), fmap, device="cpu")
    for b, x in enumerate(X):
        torch.testing.assert_close(M[b], x.T @ x / len(x))


@pytest.mark.parametrize("kind", ["quadratic", "second-moments"])
def test_compressive_ridge_equals_closed_form_ridge(kind):
    n, d, lam = 300, 4, 0.05
    X = gaussian(n, d, seed=19) + 0.5
    y = X @ torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=torch.float64) + 0.7 + 0.1 * gaussian(n, seed=20)
    D = d + 2
    if kind == "quadratic":
        fmap = RandomQuadraticFeatures(D, D * (D + 1) // 2, 20.0, seed=8)
    else:
        fmap = ProjectedSecondMoments(D, D, 20.0, seed=9)
    w, b = compressive_ridge(fmap.sketch(append_ones(X, y)), fmap, lam, device="cpu")
    w_exact, b_exact = ridge(X, y, lam)
    torch.testing.assert_close(w, w_exact, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(b, b_exact, rtol=1e-8, atol=1e-10)


def test_append_ones_rows():
    X, y = gaussian(5, 2, seed=21), gaussian(5, seed=22)
    rows = append_ones(X, y)
    torch.testing.assert_close(rows, torch.cat([X, y[:, None], torch.ones(5, 1, dtype=torch.float64)], dim=1))
    assert append_ones(torch.stack([X, X])).shape == (2, 5, 3)


@pytest.mark.parametrize("name", ["pca", "autoencoder"])
def test_randomized_learner_reconstructs_like_exact_pca_and_reads_private_sketches(name):
    data = dataset_family("low_rank", n=300, d=3, rank=1).sample(2, seed=0)
    learner = RandomizedLearner(make_task(name, 3, k=1), 10)  # [x, 1]: D (D + 1) / 2 = 10 measurements suffice
    V, mean = pca(data.X, 1)
    projected = mean[:, None] + (data.X - mean[:, None]) @ V @ V.transpose(1, 2)
    clean = learner.predict(data.X)
    torch.testing.assert_close(learner.fitted(clean, data.X), projected, rtol=1e-6, atol=1e-6)
    # released by the Laplace mechanism at a small budget: another answer, worse, the same for the same seed
    with pytest.warns(SeededNoiseWarning):
        private = learner.predict(data.X, noise=Laplace(0.5), noise_seed=3)
        again = learner.predict(data.X, noise=Laplace(0.5), noise_seed=3)
    assert torch.equal(private["components"], again["components"])
    assert bool((learner.error(private, data.X) > 1.01 * learner.error(clean, data.X)).all())


def test_randomized_ridge_predicts_each_sample():
    data = dataset_family("linear", n=200, d=2).sample(1, seed=1)
    learner = RandomizedLearner(make_task("ridge", 2, lam=0.0), 10)
    params = learner.predict(data.X, data.y)
    w, b = ridge(data.X, data.y, 0.0)
    expected = (data.X @ w[..., None]).squeeze(-1) + b[:, None]
    torch.testing.assert_close(learner.fitted(params, data.X, data.y), expected, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Bad input


def rff() -> RandomFourierFeatures:
    return RandomFourierFeatures(2, 10, seed=0)


def quad(D: int = 4) -> RandomQuadraticFeatures:
    return RandomQuadraticFeatures(D, 10, 5.0, seed=0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ckm(torch.zeros(20), rff(), 0, bounds=(-1, 1)), "k=0 is not allowed"),
        (lambda: ckm(torch.zeros(12), rff(), 2, bounds=(-1, 1)), r"sketch has shape \(12,\)"),
        (lambda: ckm(torch.full((20,), float("nan")), rff(), 2, bounds=(-1, 1)), "sketch contains non-finite"),
        (lambda: ckm(torch.zeros(20), quad(), 2, bounds=(-1, 1)), "feature_map=.* is not allowed: a RandomFourier"),
        (lambda: ckm(torch.zeros(20), rff(), 2, bounds=(1, -1)), "bounds is not allowed"),
        (lambda: ckm(torch.zeros(20), rff(), 2, bounds=(-1, 0, 1)), r"bounds=\(-1, 0, 1\) is not allowed: a pair"),
        (lambda: ckm(torch.zeros(20), rff(), 2, bounds=(-1, torch.ones(3))), r"bounds\[1\] has shape \(3,\)"),
        (
            lambda: ckm(rff().sketch(torch.zeros(3, 2)), RandomFourierFeatures(2, 10, seed=1), 2, bounds=(-1, 1)),
            "not the map that made this sketch",
        ),
        (lambda: rff_sketch_for_kmeans(gaussian(10, 2, seed=0), 21), "sketch_size=21 is not allowed"),
        (lambda: rff_sketch_for_kmeans(2, 20), "scale='median' is not allowed with a dimension"),
        (lambda: rff_sketch_for_kmeans(2, 20, scale=-1.0), "scale=-1.0 is not allowed"),
        (lambda: compressive_pca(torch.zeros(10), quad(), 5), "k=5 is not allowed"),
        (lambda: compressive_pca(torch.zeros(10), quad(), 4, augmented=True), "k=4 is not allowed"),
        (lambda: compressive_pca(torch.zeros(10), quad(), 1, method="svd"), "method='svd' is not allowed"),
        (lambda: compressive_pca(torch.zeros(20), rff(), 1), "feature_map=.* is not allowed"),
        (lambda: compressive_ridge(torch.zeros(10), quad(2), 0.1), "input_dim=2, which is not allowed"),
        (lambda: compressive_ridge(torch.zeros(10), quad(), -0.1), "lam=-0.1 is not allowed"),
        (lambda: second_moment(torch.zeros(10), quad(), method="psd", rank=5), "rank=5 is not allowed"),
        (lambda: append_ones(gaussian(5, 2, seed=0), gaussian(4, seed=0)), r"y has shape \(4,\)"),
    ],
)
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
