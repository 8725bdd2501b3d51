"""Data-set families for compressive meta-learning: shapes, bounds, recovered structure, splits, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metalab.compressive import references
from metalab.compressive.datasets import (
    FAMILIES,
    DataBatch,
    SklearnTables,
    dataset_family,
    gaussian_mixtures,
    linear_models,
    low_rank,
    standardise,
)

torch.set_num_threads(1)


def test_mixtures_are_bounded_seeded_and_clustered():
    X = gaussian_mixtures(6, 300, 2, 3, scales=(0.01, 0.02), seed=1)
    assert X.shape == (6, 300, 2) and X.dtype == torch.float64
    assert float(X.abs().max()) <= 1.0
    assert torch.equal(X, gaussian_mixtures(6, 300, 2, 3, scales=(0.01, 0.02), seed=1))
    assert not torch.equal(X, gaussian_mixtures(6, 300, 2, 3, scales=(0.01, 0.02), seed=2))
    # Three tight clusters: three centroids explain the data to the clusters' own variance (<= 2 * 0.02^2),
    # while one or two centroids leave a large error.
    _, sse3 = references.kmeans(X, 3)
    _, sse1 = references.kmeans(X, 1)
    assert float(sse3.max()) <= 2 * 0.02**2 * 1.2
    assert float((sse1 / sse3).min()) > 20


def test_low_rank_without_noise_lies_on_an_affine_subspace():
    X = low_rank(4, 80, 5, 2, noise=0.0, seed=3)
    assert float(X.abs().max()) <= 1.0
    for x in X:
        inside = x[x.abs().amax(dim=1) < 1.0]  # rows the box clamp did not touch
        s = torch.linalg.svdvals(inside - inside.mean(dim=0))
        assert float(s[2] / s[0]) < 1e-10 and float(s[1] / s[0]) > 1e-3


def test_linear_models_without_noise_are_exactly_linear():
    X, y = linear_models(3, 50, 4, noise=0.0, seed=0)
    assert X.shape == (3, 50, 4) and y.shape == (3, 50)
    w, b = references.ridge(X, y, 0.0)
    residual = (X @ w.unsqueeze(-1)).squeeze(-1) + b.unsqueeze(-1) - y
    assert float(residual.abs().max()) < 1e-10


def test_standardise_handles_constant_columns():
    x = torch.tensor([[1.0, 5.0, 0.0], [3.0, 5.0, 10.0], [5.0, 5.0, 20.0]])
    z = standardise(x, clip=1.0)
    assert torch.equal(z[:, 1], torch.zeros(3))
    assert torch.allclose(z[:, 0], torch.tensor([-1.2247, 0.0, 1.2247]).clamp(-1, 1), atol=1e-4)
    assert torch.allclose(z.mean(dim=0)[[0, 2]], torch.zeros(2), atol=1e-12)


def test_sklearn_tables_split_by_source_and_rows():
    family = dataset_family("sklearn", n=60, d=3, target=True, held_out_sources=("wine",))
    assert "wine" not in family.sources("train") and "wine" in family.sources("held_out")
    assert set(family.sources("train")) == {"digits", "iris", "breast_cancer", "diabetes"}
    for source in family.sources("train"):
        train_rows, held_rows = family._rows(source)
        assert len(np.intersect1d(train_rows, held_rows)) == 0 and len(held_rows) > 0
    batch = family.sample(8, seed=0)
    assert batch.X.shape == (8, 60, 3) and batch.y.shape == (8, 60)
    assert float(batch.X.abs().max()) <= 1.0 and float(batch.y.abs().max()) <= 1.0
    assert torch.equal(batch.X, family.sample(8, seed=0).X)
    assert not torch.equal(batch.X, family.sample(8, seed=0, split="held_out").X)
    # With four columns, iris (4 columns) can no longer give a target column: it drops out.
    assert "iris" not in dataset_family("sklearn", n=60, d=4, target=True).sources("train")


def test_families_by_name():
    assert set(FAMILIES) == {"mixtures", "low_rank", "linear", "sklearn"}
    mixtures = dataset_family("mixtures", n=40, d=2, k=4)
    batch = mixtures.sample(5, seed=0)
    assert isinstance(batch, DataBatch) and batch.y is None and batch.X.shape == (5, 40, 2)
    assert not torch.equal(batch.X, mixtures.sample(5, seed=0, split="held_out").X)
    linear = dataset_family("linear", n=30, d=3)
    assert linear.has_target and linear.sample(2).y.shape == (2, 30)
    assert not dataset_family("low_rank", n=30, d=3, rank=2).has_target
    assert batch[1:3].X.shape == (2, 40, 2)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: dataset_family("gaussians", n=10, d=2), "name='gaussians' is not allowed"),
        (lambda: dataset_family("mixtures", n=10, d=2, rank=3), "options ['rank'] are not allowed"),
        (lambda: dataset_family("mixtures", n=3, d=2, k=5), "k=5 is not allowed"),
        (lambda: gaussian_mixtures(2, 10, 2, 3, scales=(0.2, 0.1)), "scales=(0.2, 0.1) is not allowed"),
        (lambda: low_rank(2, 10, 3, 4), "rank=4 is not allowed"),
        (lambda: linear_models(0, 10, 3), "batch=0 is not allowed"),
        (lambda: dataset_family("linear", n=10, d=2, noise=-1.0), "noise=-1.0 is not allowed"),
        (lambda: SklearnTables(n=5000, d=2), "n=5000, d=2 is not allowed"),
        (lambda: SklearnTables(n=50, d=2, held_out_sources=("mnist",)), "held_out_sources='mnist' is not allowed"),
        (lambda: dataset_family("mixtures", n=10, d=2).sample(2, split="test"), "split='test' is not allowed"),
    ],
)
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert message in str(err.value)
