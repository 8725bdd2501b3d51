"""Gradient-based meta-learning: vectorised meta-gradients against a plain per-task autograd loop."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from metalab.core import generator
from metalab.core.loop import meta_training
from metalab.core.results import HypergradientWarning
from metalab.data.sinusoid import SinusoidTasks
from metalab.gbml import (
    MetaGradient,
    MetaLearner,
    adapt,
    adapt_tasks,
    adaptation_losses,
    fine_tune,
    head_names,
    meta_gradient,
)
from metalab.nets import MLP, param_dict

torch.set_num_threads(1)


def _problem(loss="mse", tasks=4, shots=5):
    torch.manual_seed(0)
    if loss == "ce":
        model = MLP([4, 10, 10, 3]).double()
        sx, qx = torch.randn(tasks, shots, 4, dtype=torch.float64), torch.randn(tasks, shots, 4, dtype=torch.float64)
        sy, qy = torch.randint(0, 3, (tasks, shots)), torch.randint(0, 3, (tasks, shots))
    else:
        model = MLP([1, 12, 12, 1]).double()
        sx, qx = (torch.rand(2, tasks, shots, 1, dtype=torch.float64) * 10 - 5).unbind(0)
        sy, qy = torch.sin(sx) * 2, torch.sin(qx) * 2
    return model, param_dict(model), (sx, sy), (qx, qy)


def _loss(pred, y, loss):
    return torch.nn.functional.cross_entropy(pred, y) if loss == "ce" else ((pred - y) ** 2).mean()


def reference(model, params, support, query, *, steps, lr, first_order=False, head=None, l1=0.0, loss="mse"):
    """Per task: clone the parameters, take the inner steps with autograd.grad, differentiate the query loss."""
    total = {k: torch.zeros_like(v) for k, v in params.items()}
    B = support[0].shape[0]
    for t in range(B):
        theta = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        fast = dict(theta)
        names = list(theta) if head is None else list(head)
        for _ in range(steps):
            inner = _loss(functional_call(model, fast, (support[0][t],)), support[1][t], loss)
            if l1:
                inner = inner + l1 * fast["4.weight"].abs().sum()
            grads = torch.autograd.grad(inner, [fast[k] for k in names], create_graph=not first_order)
            fast = {**fast, **{k: fast[k] - lr * g for k, g in zip(names, grads, strict=True)}}
        outer = _loss(functional_call(model, fast, (query[0][t],)), query[1][t], loss)
        for k, g in zip(theta, torch.autograd.grad(outer, list(theta.values())), strict=True):
            total[k] += g / B
    return total


def _close(a, b):
    return all(torch.allclose(a[k], b[k], atol=1e-10, rtol=1e-8) for k in b)


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("method", ["maml", "fomaml", "anil"])
def test_vmapped_meta_gradient_equals_per_task_loop(method, steps):
    model, params, support, query = _problem()
    head = ("4.weight", "4.bias") if method == "anil" else None
    got = meta_gradient(method, model, params, support, query, inner_steps=steps, inner_lr=0.1)
    want = reference(model, params, support, query, steps=steps, lr=0.1, first_order=method == "fomaml", head=head)
    assert got.status == "ok" and _close(got.grads, want)
    seq = meta_gradient(method, model, params, support, query, inner_steps=steps, inner_lr=0.1, batch_mode="sequential")
    assert _close(seq.grads, got.grads) and seq.query_loss == pytest.approx(got.query_loss)


def test_second_order_terms_matter_and_cross_entropy_matches():
    model, params, support, query = _problem()
    maml = meta_gradient("maml", model, params, support, query, inner_steps=2, inner_lr=0.1).grads
    fomaml = meta_gradient("fomaml", model, params, support, query, inner_steps=2, inner_lr=0.1).grads
    assert max(float((maml[k] - fomaml[k]).abs().max()) for k in maml) > 1e-4
    model, params, support, query = _problem("ce")
    got = meta_gradient("maml", model, params, support, query, inner_steps=2, inner_lr=0.5, loss="ce")
    assert _close(got.grads, reference(model, params, support, query, steps=2, lr=0.5, loss="ce"))


def test_l1_regularised_maml_matches_reference():
    model, params, support, query = _problem()
    got = meta_gradient("maml", model, params, support, query, inner_steps=2, inner_lr=0.1, l1=0.05).grads
    assert _close(got, reference(model, params, support, query, steps=2, lr=0.1, l1=0.05))
    plain = meta_gradient("maml", model, params, support, query, inner_steps=2, inner_lr=0.1).grads
    assert not _close(got, plain)


def test_reptile_moves_towards_adapted_parameters():
    model, params, support, query = _problem()
    one = meta_gradient("reptile", model, params, support, query, inner_steps=1, inner_lr=0.1).grads
    # one step: θ − φ = α ∇L_support(θ), averaged over tasks
    support_grad = {k: torch.zeros_like(v) for k, v in params.items()}
    for t in range(4):
        theta = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        value = _loss(functional_call(model, theta, (support[0][t],)), support[1][t], "mse")
        for k, g in zip(theta, torch.autograd.grad(value, list(theta.values())), strict=True):
            support_grad[k] += 0.1 * g / 4
    assert _close(one, support_grad)
    three = meta_gradient("reptile", model, params, support, query, inner_steps=3, inner_lr=0.1).grads
    adapted = [adapt(model, params, support[0][t], support[1][t], steps=3, lr=0.1) for t in range(4)]
    mean_phi = {k: torch.stack([a[k] for a in adapted]).mean(0) for k in params}
    assert _close({k: params[k] - three[k] for k in params}, mean_phi)


def test_fine_tune_predictions_per_step():
    model, params, support, query = _problem()
    preds = fine_tune(model, params, support, query[0], steps=2, lr=0.1, trainable="head")
    assert preds.shape == (3, 4, 5, 1)
    assert torch.allclose(preds[0], functional_call(model, params, (query[0],)))
    phi = adapt(model, params, support[0][1], support[1][1], steps=2, lr=0.1, trainable="head")
    assert torch.allclose(preds[2, 1], functional_call(model, phi, (query[0][1],)))
    assert {k for k in params if not torch.equal(phi[k], params[k])} == set(head_names(model))
    losses = adaptation_losses(model, params, support, support, steps=2, lr=0.01)  # evaluated on the support set
    assert losses.shape == (3, 4) and bool((losses[2] < losses[1]).all() and (losses[1] < losses[0]).all())


def test_bad_arguments_name_themselves():
    model, params, support, query = _problem()
    cases = [
        (dict(method="nope"), "method="),
        (dict(inner_lr=-0.1), "inner_lr="),
        (dict(inner_steps=-1), "inner_steps="),
        (dict(method="reptile", inner_steps=0), "inner_steps="),
        (dict(loss="l2"), "loss="),
        (dict(batch_mode="loop"), "batch_mode="),
        (dict(l1=-1.0), "l1="),
        (dict(head="missing"), "head="),
    ]
    for overrides, text in cases:
        kwargs = dict(method="maml", inner_steps=1, inner_lr=0.1) | overrides
        with pytest.raises(ValueError, match=text):
            meta_gradient(kwargs.pop("method"), model, params, support, query, **kwargs)
    with pytest.raises(ValueError, match="params="):
        meta_gradient("maml", model, {"0.weight": params["0.weight"]}, support, query)
    with pytest.raises(ValueError, match="query"):
        meta_gradient("maml", model, params, support, (query[0][:2], query[1][:2]))
    with pytest.raises(ValueError, match="steps="):
        fine_tune(model, params, support, query[0], steps=-1, lr=0.1)


def test_divergence_is_reported_not_returned_as_nan():
    model, params, support, query = _problem()
    with pytest.warns(HypergradientWarning):
        result = meta_gradient("maml", model, params, support, query, inner_steps=8, inner_lr=1e6)
    assert result.status == "non_finite" and all(bool((g == 0).all()) for g in result.grads.values())


def test_short_sinusoid_meta_training_beats_random_init():
    torch.manual_seed(0)
    model = MLP([1, 40, 40, 1])
    init = param_dict(model)
    tasks = SinusoidTasks.preset("maml")
    test = tasks.fixed_tasks(200, 10, 10, seed=1)
    g = generator(0, "train")

    def sample(_):
        batch = tasks.sample(10, generator=g)
        return batch.support, batch.query

    learner = MetaLearner(model, "maml", meta_lr=3e-3, inner_steps=1, inner_lr=0.01)
    stats = list(learner.fit(sample, 300))
    assert [s["iteration"] for s in stats] == list(range(1, 301)) and all(s["status"] == "ok" for s in stats)
    random = adaptation_losses(model, init, test.support, test.query, steps=10, lr=0.01).mean(1)
    meta = adaptation_losses(model, learner.current_params(), test.support, test.query, steps=10, lr=0.01).mean(1)
    # measured: random ≈ 3.8-4.0 at every step; meta-trained ≈ 1.6 / 1.2 / 1.0 after 1 / 5 / 10 steps
    assert float(meta[1]) < 0.6 * float(random[1])
    assert float(meta[10]) < 0.4 * float(random[10])
    assert float(meta[10]) < float(meta[0])


# ---------------------------------------------------------------------------------------------
# The shared meta-training loop


def test_meta_training_loop_counts_evaluates_every_k_and_reports_the_fraction():
    batches, evaluated = [], []

    def step(batch):
        batches.append(batch)
        return {"loss": 1.0 / batch, "status": "ok"}

    rows = list(
        meta_training(step, 7, sample=lambda i: i, evaluate=lambda i: evaluated.append(i) or i, evaluate_every=3)
    )
    assert [r.iteration for r in rows] == list(range(1, 8)) and batches == list(range(1, 8))
    assert evaluated == [3, 6, 7] and [r.evaluation for r in rows] == [None, None, 3, None, None, 6, 7]
    assert [r.fraction for r in rows] == pytest.approx([i / 7 for i in range(1, 8)])
    assert rows[-1].elapsed == pytest.approx(sum(r.seconds for r in rows))
    assert rows[1].as_dict()["loss"] == pytest.approx(0.5) and rows[1].as_dict()["status"] == "ok"


def test_meta_training_loop_stops_with_an_honest_status_on_a_non_finite_loss():
    losses = iter([2.0, 1.0, float("nan"), 0.5])
    rows = list(meta_training(lambda _: {"loss": next(losses)}, 4, evaluate=lambda i: i, evaluate_every=1))
    assert [r.status for r in rows] == ["ok", "ok", "non_finite"]
    assert rows[-1].fraction == pytest.approx(0.75) and rows[-1].evaluation is None  # a diverged model is not evaluated
    with pytest.raises(ValueError, match="iterations=0 is not allowed"):
        meta_training(lambda _: {"loss": 0.0}, 0)


def test_meta_learner_stops_when_the_query_loss_diverges():
    model, params, support, query = _problem()
    losses = iter([1.0, 2.0, float("inf"), 1.0])

    def diverging(model, params, support, query):  # a meta-gradient method whose third query loss overflows
        grads = {k: torch.ones_like(v) for k, v in params.items()}
        return MetaGradient("diverging", grads, next(losses), torch.zeros(support[0].shape[0]))

    learner = MetaLearner(model, diverging, params=params)
    stats = list(learner.fit(lambda _: (support, query), 4))
    assert [s["iteration"] for s in stats] == [1, 2, 3] and [s["status"] for s in stats] == ["ok", "ok", "non_finite"]
    assert stats[-1]["fraction"] == pytest.approx(0.75)


def test_adapt_tasks_is_adapt_on_every_task():
    model, params, support, _ = _problem()
    for loss, trainable in (("mse", "head"), ("mse", "all")):
        batched = adapt_tasks(model, params, support, steps=3, lr=0.05, loss=loss, trainable=trainable)
        for t in range(support[0].shape[0]):
            one = adapt(model, params, support[0][t], support[1][t], steps=3, lr=0.05, loss=loss, trainable=trainable)
            assert all(torch.allclose(batched[k][t], one[k], atol=1e-12) for k in one)
    frozen = adapt_tasks(model, params, support, steps=3, lr=0.05, trainable="head")
    assert torch.equal(frozen["0.weight"][1], params["0.weight"])  # the body does not move
