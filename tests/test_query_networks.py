"""Query-Networks, the compressive model and meta-training: structure, gradients, sketches, learning, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from metalab.compressive import references
from metalab.compressive.datasets import dataset_family
from metalab.compressive.privacy import Gaussian, Laplace
from metalab.compressive.query import TASKS, CompressiveModel, make_task
from metalab.compressive.sketch import Sketch
from metalab.compressive.training import SketchNoise, evaluate, meta_train, predict, private_sketches

torch.set_num_threads(1)

SMALL = dict(sketch_hidden=(16,), width=32, blocks=1, device="cpu")


def _data(task_name, d=3, n=40, batch=4, seed=0):
    if task_name == "ridge":
        return dataset_family("linear", n=n, d=d).sample(batch, seed=seed)
    return dataset_family("mixtures", n=n, d=d, k=2).sample(batch, seed=seed)


@pytest.mark.parametrize("name", list(TASKS))
def test_gradients_reach_every_parameter_of_both_networks(name):
    task = make_task(name, 3, **({"k": 2} if name != "ridge" else {}))
    model = CompressiveModel(task, 8, **SMALL)
    data = _data(name)
    task.error(model(data.X, data.y), data.X.float(), None if data.y is None else data.y.float()).sum().backward()
    for part in (model.sketch_net, model.query_net):
        for pname, p in part.named_parameters():
            assert p.grad is not None and float(p.grad.abs().sum()) > 0, pname


def test_pca_components_are_orthonormal_eigenvectors_and_scored_against_svd():
    task = make_task("pca", 5, k=3)
    model = CompressiveModel(task, 12, **SMALL)
    X = dataset_family("low_rank", n=50, d=5, rank=2).sample(6, seed=1).X
    params = model(X)
    V = params["components"].double()
    assert V.shape == (6, 5, 3) and params["mean"].shape == (6, 5)
    assert torch.allclose(V.transpose(1, 2) @ V, torch.eye(3, dtype=torch.float64).expand(6, 3, 3), atol=1e-5)
    # They are the top eigenvectors of the symmetric part of the raw (d, d) output: S V = V diag(lambda_1..3).
    raw = model.query_net.body(model.pooled(X))[:, 5:].reshape(6, 5, 5).double()
    S = 0.5 * (raw + raw.transpose(1, 2))
    top = torch.linalg.eigvalsh(S).flip(-1)[:, :3]
    assert torch.allclose(S @ V, V * top.unsqueeze(1), atol=1e-4)
    # Exact PCA is the best rank-3 affine fit, so any prediction scores at least as badly.
    assert bool((task.error(params, X.float()).double() >= task.exact_error(X) * (1 - 1e-5)).all())


def test_autoencoder_hypernetwork_uses_the_reference_layout():
    task = make_task("autoencoder", 4, k=2, hidden=6)
    model = CompressiveModel(task, 10, **SMALL)
    X = _data("autoencoder", d=4).X
    params = model(X)
    shapes = references.autoencoder_shapes(4, 6, 2)
    assert task.n_outputs == sum(math.prod(s) for s in shapes.values())
    assert {name: tuple(p.shape[1:]) for name, p in params.items()} == shapes
    # The flat output is cut in layout order; weights are scaled by 1/sqrt(fan_in), biases kept.
    raw = model.query_net.body(model.pooled(X))
    assert torch.allclose(params["enc_w1"], raw[:, :24].reshape(4, 6, 4) / 2.0)
    assert torch.allclose(params["dec_b2"], raw[:, -4:])
    reconstruction = references.autoencoder_forward(X.float(), params)
    assert torch.allclose(task.error(params, X.float()), (X.float() - reconstruction).pow(2).sum(-1).mean(-1))


def test_each_task_draws_its_answer_in_the_data_space():
    X = dataset_family("low_rank", n=50, d=3, rank=1).sample(2, seed=1).X
    y = X.sum(-1)
    V, mean = references.pca(X, 1)
    pca = make_task("pca", 3, k=1)
    fitted = pca.fitted({"components": V, "mean": mean}, X)
    assert fitted.shape == X.shape
    torch.testing.assert_close(pca.error({"components": V, "mean": mean}, X), (X - fitted).pow(2).sum(-1).mean(-1))
    w, b = references.ridge(X, y, 0.0)
    torch.testing.assert_close(make_task("ridge", 3, lam=0.0).fitted({"w": w, "b": b}, X, y), y)
    centroids = X[:, :2]
    assert torch.equal(make_task("kmeans", 3, k=2).fitted({"centroids": centroids}, X), centroids)
    autoencoder = make_task("autoencoder", 3, k=1, hidden=4)
    params = autoencoder.parameters(torch.randn(2, autoencoder.n_outputs, dtype=torch.float64))
    torch.testing.assert_close(autoencoder.fitted(params, X), references.autoencoder_forward(X, params))


def test_model_sketch_merges_and_decodes_like_the_batched_path():
    task = make_task("ridge", 2)
    model = CompressiveModel(task, 6, **SMALL)
    data = dataset_family("linear", n=30, d=2).sample(1, seed=4)
    X, y = data.X[0], data.y[0]
    whole = model.sketch(X, y)
    parts = model.sketch(X[:11], y[:11]).merge(model.sketch(X[11:], y[11:]))
    assert isinstance(whole, Sketch) and parts.count == 30
    assert torch.allclose(parts.mean, whole.mean, atol=1e-12)
    # The Sketch-Network sees [x, y]: the sketch is the mean of phi over the joint rows.
    joint = torch.cat([X, y[:, None]], dim=1)
    assert torch.allclose(whole.mean, model.sketch_net.features(joint).mean(dim=0), atol=1e-12)
    assert torch.allclose(model.pooled(X, y).double(), whole.mean, atol=1e-5)
    answer = model.decode(parts)
    assert torch.allclose(answer["w"], model.fit(X, y)["w"], atol=1e-6)
    assert torch.allclose(answer["w"], model(X, y)["w"].detach(), atol=1e-5)
    # A sketch made before the weights changed no longer decodes.
    with torch.no_grad():
        model.sketch_net.body[0].bias.add_(0.1)
    with pytest.raises(ValueError, match="sketch has map_id="):
        model.decode(whole)


def test_private_sketches_follow_the_calibration_and_scale_with_sensitivity():
    model = CompressiveModel(make_task("kmeans", 2, k=2), 4, **SMALL)
    bound, n = model.sketch_net.bound, 50
    z = torch.zeros(20000, 4, dtype=torch.float64)
    noisy = private_sketches(z, bound, n, Laplace(2.0))
    b = bound.diameter_l1 / n / 2.0  # Laplace scale Delta_1 / epsilon
    assert abs(float(noisy.std()) / (math.sqrt(2.0) * b) - 1.0) < 0.03
    # Noise-aware training scales each grid point's unit noise by D / n: the calibration is homogeneous.
    for mechanism in SketchNoise("gaussian", (0.5, 4.0), levels=3).mechanisms():
        assert isinstance(mechanism, Gaussian)
        assert mechanism.noise_scale(0.37) == pytest.approx(0.37 * mechanism.noise_scale(1.0), rel=1e-9)


def test_meta_training_reduces_held_out_kmeans_error():
    family = dataset_family("mixtures", n=100, d=2, k=2, scales=(0.05, 0.1))
    larger = dataset_family("mixtures", n=200, d=2, k=2, scales=(0.05, 0.1))
    run = meta_train(
        "kmeans", family, held_out=larger, sketch_size=20, steps=250, batch=16, lr=3e-3, eval_every=250, eval_size=24, seed=0,
        device="cpu", sketch_hidden=(32,), width=64, blocks=1,
    )  # fmt: skip
    before = float(run.held_out_errors().median())
    progress = list(run)
    after = progress[-1].held_out
    assert len(progress) == 250 and progress[-1].held_out_errors.shape == (24,)
    assert run.held_out.X.shape == (24, 200, 2)  # evaluated on the larger held-out data sets
    assert after < before / 3, (before, after)
    # The same seed trains the same model.
    assert float(evaluate(run.model, run.held_out, reference=run.reference).median()) == pytest.approx(after)


def test_learned_ridge_beats_predicting_the_mean():
    family = dataset_family("linear", n=60, d=1, noise=0.05)
    run = meta_train("ridge", family, sketch_size=8, steps=200, batch=16, lr=1e-2, eval_size=32, seed=1, **SMALL)
    model = run.run()
    test = family.sample(32, seed=9, split="held_out")
    learned = model.task.error(predict(model, test), test.X, test.y)
    naive = references.ridge_loss(test.X, test.y, torch.zeros(32, 1, dtype=torch.float64), test.y.mean(dim=1), 1e-3)
    assert float(learned.median()) < 0.5 * float(naive.median())


def test_learned_pca_beats_a_fixed_direction():
    family = dataset_family("low_rank", n=60, d=2, rank=1, noise=0.01, scales=(0.15, 0.3))
    run = meta_train("pca", family, sketch_size=8, steps=300, batch=16, lr=1e-2, eval_size=32, seed=2, **SMALL)
    model = run.run()
    test = family.sample(32, seed=9, split="held_out")
    learned = model.task.error(predict(model, test), test.X)
    axis = torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    naive = references.pca_error(test.X, axis)  # a fixed direction through the exact data mean
    assert float(learned.median()) < 0.5 * float(naive.median())


def test_noise_aware_training_runs_and_strong_privacy_noise_raises_the_error():
    family = dataset_family("mixtures", n=50, d=2, k=2)
    run = meta_train(
        "kmeans", family, sketch_size=8, steps=3, batch=4, eval_every=3, eval_size=8, noise=SketchNoise(), **SMALL
    )
    assert all(math.isfinite(p.loss) for p in run)
    clean = evaluate(run.model, run.held_out, reference=run.reference)
    noisy = evaluate(run.model, run.held_out, reference=run.reference, noise=Laplace(1e-3))
    assert float(noisy.median()) > float(clean.median())


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: CompressiveModel(make_task("kmeans", 2), 0, **SMALL), "sketch_size=0 is not allowed"),
        (lambda: make_task("svm", 2), "task='svm' is not allowed"),
        (lambda: make_task("pca", 2, k=3), "k=3 is not allowed"),
        (lambda: make_task("ridge", 2, k=3), "options ['k'] are not allowed"),
        (
            lambda: CompressiveModel(make_task("kmeans", 2, k=5), 4, **SMALL).fit(torch.zeros(3, 2)),
            "k=5 is not allowed",
        ),
        (
            lambda: CompressiveModel(make_task("kmeans", 2), 4, **SMALL).fit(torch.tensor([[0.0, math.nan]] * 4)),
            "X contains non-finite values",
        ),
        (lambda: CompressiveModel(make_task("ridge", 2), 4, **SMALL).fit(torch.zeros(5, 2)), "y=None is not allowed"),
        (
            lambda: CompressiveModel(make_task("ridge", 2), 4, **SMALL).fit(torch.zeros(5, 2), torch.zeros(4)),
            "y has shape (4,), which is not allowed",
        ),
        (lambda: CompressiveModel(make_task("pca", 2), 4, **SMALL).decode(torch.zeros(5)), "sketch has shape (5,)"),
        (lambda: meta_train("kmeans", "mixtures", sketch_size=4), "family='mixtures' is not allowed"),
        (
            lambda: meta_train("ridge", dataset_family("mixtures", n=10, d=2), sketch_size=4, **SMALL),
            "family='mixtures' is not allowed for the ridge task",
        ),
        (
            lambda: meta_train(make_task("pca", 3), dataset_family("low_rank", n=10, d=2), sketch_size=4, **SMALL),
            "family has d=2, which is not allowed",
        ),
        (
            lambda: meta_train("kmeans", dataset_family("mixtures", n=10, d=2), sketch_size=4, steps=0, **SMALL),
            "steps=0 is not allowed",
        ),
        (lambda: SketchNoise("exponential"), "mechanism='exponential' is not allowed"),
        (lambda: SketchNoise(epsilon=(2.0, 1.0)), "epsilon=(2.0, 1.0) is not allowed"),
    ],
)
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert message in str(err.value)


@pytest.mark.parametrize("steps", [3, 5, 10, 19])
def test_a_few_steps_train_and_fewer_than_three_are_refused_by_name(steps):
    # the one-cycle schedule's warm-up used to be 10 % of the steps: under 20 steps torch divided by zero
    family = dataset_family("mixtures", n=20, d=2, k=2)
    run = meta_train("kmeans", family, sketch_size=4, steps=steps, batch=2, eval_every=steps, eval_size=2, **SMALL)
    assert [p.step for p in run][-1] == steps
    with pytest.raises(ValueError, match=r"steps=2 is not allowed"):
        meta_train("kmeans", family, sketch_size=4, steps=2, **SMALL)
