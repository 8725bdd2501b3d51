"""Exact references: k-means++/Lloyd against scikit-learn, PCA against numpy's SVD, ridge against a dense
solve, the autoencoder's layout, batching and training, and the argument errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.datasets import load_iris, load_wine, make_blobs
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

from metalab.compressive.references import (
    autoencoder,
    autoencoder_error,
    autoencoder_forward,
    autoencoder_shapes,
    kmeans,
    kmeans_sse,
    pca,
    pca_error,
    pca_reconstruction,
    ridge,
    ridge_loss,
    ridge_prediction,
)

torch.set_num_threads(1)


def gaussian(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---------------------------------------------------------------------------------------------
# k-means


@pytest.mark.parametrize(
    ("name", "k"),
    [("blobs", 6), ("uniform", 3), ("uniform", 8), ("iris", 3), ("wine", 3)],
)
def test_kmeans_matches_sklearn_sse_within_one_percent(name, k):
    data = {
        "blobs": lambda: make_blobs(2000, 5, centers=6, random_state=0)[0],
        "uniform": lambda: np.random.default_rng(0).uniform(size=(1500, 3)),
        "iris": lambda: StandardScaler().fit_transform(load_iris().data),
        "wine": lambda: StandardScaler().fit_transform(load_wine().data),
    }[name]()
    C, sse = kmeans(data, k, seed=1)
    reference = KMeans(k, n_init=5, random_state=0).fit(data).inertia_ / len(data)
    assert C.shape == (k, data.shape[1])
    assert float(sse) <= 1.01 * reference
    torch.testing.assert_close(sse, kmeans_sse(data, C))


def test_lloyd_returns_a_fixed_point_and_recovers_separated_centres():
    centres = torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]], dtype=torch.float64)
    X = centres.repeat(200, 1) + 0.1 * gaussian(600, 2, seed=0)
    C, _ = kmeans(X, 3, tol=0.0)
    labels = torch.cdist(X, C).argmin(dim=1)
    for j in range(3):  # each centroid is the mean of its points
        torch.testing.assert_close(C[j], X[labels == j].mean(dim=0))
    order = torch.cdist(C, centres).argmin(dim=1)
    assert sorted(order.tolist()) == [0, 1, 2]
    assert float((C - centres[order]).norm(dim=1).max()) < 0.05


def test_kmeans_on_a_batch_answers_per_data_set():
    X = torch.stack([gaussian(300, 3, seed=1), 3.0 + 2.0 * gaussian(300, 3, seed=2)])
    C, sse = kmeans(X, 4)
    assert C.shape == (2, 4, 3) and sse.shape == (2,)
    torch.testing.assert_close(sse, kmeans_sse(X, C))
    for b in range(2):  # as good as the data set's own run (restarts differ, so within a few percent)
        assert float(sse[b]) <= 1.03 * float(kmeans(X[b], 4)[1])


def test_kmeans_sse_is_the_mean_squared_distance_to_the_nearest_centroid():
    X, C = gaussian(50, 3, seed=3), gaussian(4, 3, seed=4)
    brute = np.mean([min(float(((x - c) ** 2).sum()) for c in C) for x in X])
    assert float(kmeans_sse(X, C)) == pytest.approx(brute, rel=1e-12)
    # B centroid sets scored on one data set.
    batch = torch.stack([C, C + 1.0])
    torch.testing.assert_close(kmeans_sse(X, batch), torch.stack([kmeans_sse(X, C), kmeans_sse(X, C + 1.0)]))


def test_kmeans_with_duplicate_points_and_k_equal_to_n():
    X = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    C, sse = kmeans(X, 3)
    assert float(sse) == 0.0
    assert torch.isfinite(C).all()


# ---------------------------------------------------------------------------------------------
# PCA


def test_pca_matches_numpy_svd_and_its_error_is_the_discarded_variance():
    X = gaussian(400, 6, seed=5) @ gaussian(6, 6, seed=6) + 2.0
    V, mean = pca(X, 2)
    Xc = X.numpy() - X.numpy().mean(axis=0)
    _, s, vt = np.linalg.svd(Xc, full_matrices=False)
    torch.testing.assert_close(V.T @ V, torch.eye(2, dtype=torch.float64))
    np.testing.assert_allclose(np.abs(vt[:2] @ V.numpy()), np.eye(2), atol=1e-10)
    np.testing.assert_allclose(mean.numpy(), X.numpy().mean(axis=0))
    discarded = (s[2:] ** 2).sum() / len(X)
    assert float(pca_error(X, V, mean)) == pytest.approx(discarded, rel=1e-10)
    assert float(pca_error(X, V)) == pytest.approx(discarded, rel=1e-10)  # mean=None: the data's own
    # Any basis of the same span gives the same error; a worse subspace a larger one.
    mixed = V @ torch.tensor([[2.0, 1.0], [0.5, -3.0]], dtype=torch.float64)
    assert float(pca_error(X, mixed, mean)) == pytest.approx(discarded, rel=1e-10)
    assert float(pca_error(X, torch.from_numpy(vt[3:5].T), mean)) > 1.5 * discarded


def test_pca_on_a_batch_equals_each_data_set_and_error_is_differentiable():
    X = torch.stack([gaussian(100, 4, seed=7), gaussian(100, 4, seed=8) * torch.tensor([3.0, 1.0, 0.5, 0.1])])
    V, mean = pca(X, 2)
    for b in range(2):
        Vb, mb = pca(X[b], 2)
        torch.testing.assert_close(V[b], Vb)
        torch.testing.assert_close(mean[b], mb)
    W = V.clone().requires_grad_(True)
    pca_error(X, W, mean).sum().backward()
    # At the optimum the error is stationary in the basis.
    assert float(W.grad.abs().max()) < 1e-10


def test_pca_reconstruction_is_the_projection_pca_error_measures():
    X = torch.stack([gaussian(80, 4, seed=9), gaussian(80, 4, seed=10) * torch.tensor([2.0, 1.0, 0.3, 0.1])])
    V, mean = pca(X, 2)
    fitted = pca_reconstruction(X, V, mean)
    torch.testing.assert_close(pca_error(X, V, mean), (X - fitted).pow(2).sum(-1).mean(-1))
    torch.testing.assert_close(pca_reconstruction(fitted, V, mean), fitted)  # a projection: twice is once
    # any basis of the same span reconstructs the same points
    torch.testing.assert_close(pca_reconstruction(X, 3.0 * V, mean), fitted)


# ---------------------------------------------------------------------------------------------
# Ridge


def test_ridge_matches_a_dense_solve_and_sklearn():
    n, d, lam = 120, 5, 0.3
    X, noise = gaussian(n, d, seed=9) + 1.0, gaussian(n, seed=10)
    y = X @ torch.arange(1.0, d + 1, dtype=torch.float64) - 2.0 + 0.5 * noise
    w, b = ridge(X, y, lam)
    # Normal equations of (1/n)||[X 1] theta - y||^2 + lam ||w||^2 with the intercept unpenalised.
    A = np.hstack([X.numpy(), np.ones((n, 1))])
    penalty = np.diag([lam * n] * d + [0.0])
    theta = np.linalg.solve(A.T @ A + penalty, A.T @ y.numpy())
    np.testing.assert_allclose(w.numpy(), theta[:d], rtol=1e-10)
    assert float(b) == pytest.approx(theta[d], rel=1e-10)
    reference = Ridge(alpha=lam * n).fit(X.numpy(), y.numpy())
    np.testing.assert_allclose(w.numpy(), reference.coef_, rtol=1e-8)
    # The loss is stationary at the solution.
    wg, bg = w.clone().requires_grad_(True), b.clone().requires_grad_(True)
    ridge_loss(X, y, wg, bg, lam).backward()
    assert float(wg.grad.abs().max()) < 1e-10 and abs(float(bg.grad)) < 1e-10


def test_ridge_on_a_batch_and_least_squares_at_lam_zero():
    X = torch.stack([gaussian(60, 3, seed=11), gaussian(60, 3, seed=12)])
    y = torch.stack([X[0] @ torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64) + 4.0, X[1].sum(dim=1)])
    w, b = ridge(X, y, 0.0)
    torch.testing.assert_close(w, torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]], dtype=torch.float64))
    torch.testing.assert_close(b, torch.tensor([4.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(ridge_loss(X, y, w, b, 0.0), torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(ridge_prediction(X, w, b), y)
    torch.testing.assert_close(ridge_prediction(X[1], w[1], b[1]), y[1])


# ---------------------------------------------------------------------------------------------
# Autoencoder


def test_autoencoder_layout_and_batched_forward():
    shapes = autoencoder_shapes(5, 8, 2)
    assert shapes == {
        "enc_w1": (8, 5),
        "enc_b1": (8,),
        "enc_w2": (2, 8),
        "enc_b2": (2,),
        "dec_w1": (8, 2),
        "dec_b1": (8,),
        "dec_w2": (5, 8),
        "dec_b2": (5,),
    }
    params = {name: gaussian(3, *shape, seed=i) for i, (name, shape) in enumerate(shapes.items())}
    X = gaussian(3, 10, 5, seed=20)
    batched = autoencoder_forward(X, params)
    for b in range(3):
        one = {name: p[b] for name, p in params.items()}
        x = X[b]
        code = torch.tanh(x @ one["enc_w1"].T + one["enc_b1"]) @ one["enc_w2"].T + one["enc_b2"]
        by_hand = torch.tanh(code @ one["dec_w1"].T + one["dec_b1"]) @ one["dec_w2"].T + one["dec_b2"]
        torch.testing.assert_close(batched[b], by_hand)
        assert float(autoencoder_error(x, one)) == pytest.approx(float((x - by_hand).pow(2).sum(1).mean()))
    torch.testing.assert_close(autoencoder_error(X, params), ((X - batched) ** 2).sum(-1).mean(-1))


def test_autoencoder_training_approaches_the_pca_floor_on_low_rank_data():
    X = gaussian(300, 2, seed=21) @ gaussian(2, 5, seed=22) * 0.5 + 0.05 * gaussian(300, 5, seed=23)
    V, mean = pca(X, 2)
    floor = float(pca_error(X, V, mean))
    # Two data sets trained as one batch, each its own autoencoder (the second has 1/4 the error scale).
    both = torch.stack([X, 0.5 * X])
    params = autoencoder(both, hidden=16, bottleneck=2, steps=400, lr=3e-2, seed=0)
    assert {name: tuple(p.shape[1:]) for name, p in params.items()} == autoencoder_shapes(5, 16, 2)
    errors = autoencoder_error(both, params) / torch.tensor([floor, 0.25 * floor], dtype=torch.float64)
    start = float(X.pow(2).sum(1).mean())  # the error of reconstructing zero
    assert floor < 0.01 * start
    assert float(errors.max()) < 2.0


# ---------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: kmeans(gaussian(5, 2, seed=0), 6), "k=6 is not allowed"),
        (lambda: kmeans(gaussian(5, 2, seed=0), 0), "k=0 is not allowed"),
        (lambda: kmeans(torch.tensor([[0.0, float("nan")]]), 1), "X contains non-finite"),
        (lambda: kmeans(gaussian(5, seed=0), 1), r"X has shape \(5,\)"),
        (lambda: kmeans(gaussian(5, 2, seed=0), 2, restarts=0), "restarts=0 is not allowed"),
        (lambda: kmeans_sse(gaussian(5, 2, seed=0), gaussian(2, 3, seed=0)), r"C has shape \(2, 3\)"),
        (lambda: pca(gaussian(5, 3, seed=0), 4), "k=4 is not allowed"),
        (lambda: pca(gaussian(2, 3, seed=0), 3), "k=3 is not allowed"),
        (lambda: pca_error(gaussian(5, 3, seed=0), gaussian(2, 1, seed=0)), "components has shape"),
        (lambda: ridge(gaussian(5, 3, seed=0), gaussian(4, seed=0), 0.1), r"y has shape \(4,\)"),
        (lambda: ridge(gaussian(5, 3, seed=0), gaussian(5, seed=0), -1.0), "lam=-1.0 is not allowed"),
        (lambda: autoencoder(gaussian(5, 3, seed=0), 0, 2), "hidden=0 is not allowed"),
        (lambda: autoencoder_error(gaussian(5, 3, seed=0), {"enc_w1": torch.zeros(2, 3)}), "params is not allowed"),
    ],
)
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
