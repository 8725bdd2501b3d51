"""ISTA/FISTA, the MLSR meta-gradient (first and second order) and the sparse-recovery diagnostics."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch

from metalab.core import generator
from metalab.data.sinusoid import SinusoidTasks
from metalab.gbml import MetaLearner
from metalab.nets import MLP, param_dict
from metalab.sparse import (
    bias_free_penalty,
    body_features,
    fista,
    head_layer,
    head_matrix,
    head_sparsity,
    ista,
    iterate_recovery,
    lipschitz_constant,
    mlsr_gradient,
    objective,
    recover_heads,
    recovery_predictions,
    rip_estimate,
    soft_threshold,
    sparse_recovery,
    split_body,
    task_rip_estimates,
)

torch.set_num_threads(1)
F64 = torch.float64


def _orthogonal_design(n=24, p=10, tasks=3, outputs=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(tasks, n, p, generator=g, dtype=F64))[0]
    Phi = Q * n**0.5  # ΦᵀΦ / n = I
    shape = (tasks, n) if outputs is None else (tasks, n, outputs)
    return Phi, 2 * torch.randn(shape, generator=g, dtype=F64)


def test_soft_threshold():
    z = torch.tensor([-3.0, -0.5, 0.0, 0.2, 2.0])
    assert torch.equal(soft_threshold(z, 1.0), torch.tensor([-2.0, 0.0, 0.0, 0.0, 1.0]))
    assert torch.equal(soft_threshold(z, torch.zeros(5)), z)
    with pytest.raises(ValueError, match="tau"):
        soft_threshold(z, -0.1)


@pytest.mark.parametrize("algorithm", [ista, fista])
@pytest.mark.parametrize("outputs", [None, 2])
def test_orthogonal_design_gives_closed_form(algorithm, outputs):
    Phi, y = _orthogonal_design(outputs=outputs)
    lam = 0.4
    moments = Phi.transpose(1, 2) @ (y if outputs else y.unsqueeze(-1)) / Phi.shape[1]
    want = soft_threshold(moments if outputs else moments.squeeze(-1), lam)
    result = algorithm(Phi, y, lam, steps=30)
    assert result.coef.shape == want.shape
    assert torch.allclose(result.coef, want, atol=1e-10)
    assert torch.allclose(result.step_size, torch.ones(3, dtype=F64))
    assert (want == 0).any() and (want != 0).any()  # the threshold is active on some coordinates, not all


def test_default_step_is_inverse_lipschitz():
    g = torch.Generator().manual_seed(1)
    for n, p in [(30, 8), (8, 30)]:
        Phi = torch.randn(2, n, p, generator=g, dtype=F64)
        L = torch.linalg.matrix_norm(Phi, ord=2) ** 2 / n
        assert torch.allclose(lipschitz_constant(Phi), L)
        assert torch.allclose(ista(Phi, torch.randn(2, n, dtype=F64, generator=g), 0.1, steps=1).step_size, 1 / L)


def test_fista_converges_faster_than_ista_when_ill_conditioned():
    g = torch.Generator().manual_seed(2)
    Phi = torch.randn(4, 60, 30, generator=g, dtype=F64) @ torch.diag(torch.logspace(0, -2, 30, dtype=F64))
    y = torch.randn(4, 60, generator=g, dtype=F64)
    best = fista(Phi, y, 0.01, steps=4000).objective
    for steps in (50, 200):
        gap_ista = ista(Phi, y, 0.01, steps=steps).objective - best
        gap_fista = fista(Phi, y, 0.01, steps=steps).objective - best
        assert bool((gap_fista < 0.2 * gap_ista).all())


@pytest.mark.parametrize("algorithm", ["ista", "fista"])
@pytest.mark.parametrize("loss", ["mse", "mae"])
def test_batched_equals_per_task(algorithm, loss):
    g = torch.Generator().manual_seed(3)
    Phi, y = torch.randn(3, 12, 20, generator=g, dtype=F64), torch.randn(3, 12, generator=g, dtype=F64)
    w0 = torch.randn(3, 20, generator=g, dtype=F64)
    batched = sparse_recovery(Phi, y, 0.05, algorithm=algorithm, steps=40, w0=w0, loss=loss)
    for t in range(3):
        single = sparse_recovery(Phi[t], y[t], 0.05, algorithm=algorithm, steps=40, w0=w0[t], loss=loss)
        assert torch.allclose(batched.coef[t], single.coef, atol=1e-12)


def test_absolute_loss_resists_sparse_outliers():
    g = torch.Generator().manual_seed(4)
    Phi = torch.randn(80, 10, generator=g, dtype=F64)
    w_true = torch.zeros(10, dtype=F64)
    w_true[:3] = torch.tensor([2.0, -1.5, 1.0], dtype=F64)
    y = Phi @ w_true
    y[:8] += 40.0  # a few grossly corrupted measurements
    mae = ista(Phi, y, 1e-3, steps=3000, loss="mae").coef
    mse = ista(Phi, y, 1e-3, steps=3000, loss="mse").coef
    assert (mae - w_true).norm() < 0.2 * (mse - w_true).norm()


def test_recovery_arguments_are_checked():
    Phi, y = _orthogonal_design()
    for kwargs, name in [
        (dict(lam=-0.1), "lam="),
        (dict(lam=float("nan")), "lam="),
        (dict(steps=0), "steps="),
        (dict(steps=-2), "steps="),
        (dict(step_size=-1.0), "step_size="),
        (dict(loss="huber"), "loss="),
        (dict(algorithm="admm"), "algorithm="),
    ]:
        with pytest.raises(ValueError, match=name):
            sparse_recovery(Phi, y, **{"lam": 0.1, **kwargs})
    with pytest.raises(ValueError, match="lam"):
        ista(Phi, y, -torch.ones(1, dtype=F64))
    with pytest.raises(ValueError, match="y has shape"):
        ista(Phi, y[:, :5], 0.1)
    with pytest.raises(ValueError, match="w0"):
        ista(Phi, y, 0.1, w0=torch.zeros(3, 11, dtype=F64))


# ---------------------------------------------------------------------------------------------
# MLSR


@pytest.mark.parametrize(("algorithm", "loss"), [("ista", "mse"), ("fista", "mse"), ("ista", "mae"), ("fista", "mae")])
def test_iterate_recovery_ends_at_sparse_recovery_and_decreases_the_objective(algorithm, loss):
    Phi, y = _orthogonal_design(outputs=2)
    Phi = Phi * torch.linspace(0.2, 3.0, Phi.shape[-1], dtype=F64)  # ill-conditioned, so the iterates move slowly
    lam = 0.05 * torch.ones(Phi.shape[-1], 1, dtype=F64)
    iterates = list(iterate_recovery(Phi, y, lam, algorithm=algorithm, steps=40, loss=loss))
    result = sparse_recovery(Phi, y, lam, algorithm=algorithm, steps=40, loss=loss)
    assert [it.iteration for it in iterates] == list(range(1, 41))
    assert iterates[-1].coef.shape == result.coef.shape == (3, Phi.shape[-1], 2)
    assert torch.allclose(iterates[-1].coef, result.coef, rtol=0, atol=0)  # the same arithmetic
    assert torch.allclose(iterates[0].step_size, result.step_size)
    if loss == "mse" and algorithm == "ista":  # ISTA with step 1/L never increases the objective
        values = torch.stack([objective(Phi, y, it.coef, lam) for it in iterates])
        assert bool((values[1:] <= values[:-1] + 1e-12).all())


def test_iterate_recovery_checks_its_arguments_before_the_first_iterate():
    Phi, y = _orthogonal_design()
    with pytest.raises(ValueError, match="steps=0 is not allowed"):
        iterate_recovery(Phi, y, 0.1, steps=0)
    with pytest.raises(ValueError, match="algorithm='cd' is not allowed"):
        iterate_recovery(Phi, y, 0.1, algorithm="cd")


def _mlsr_problem(sizes=(1, 12, 12, 1), tasks=3, shots=8, seed=0):
    torch.manual_seed(seed)
    model = MLP(list(sizes)).double()
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, tasks, shots, 1, generator=g, dtype=F64) * 10 - 5
    freq = 0.5 + 1.5 * torch.rand(tasks, 1, 1, generator=g, dtype=F64)
    return model, param_dict(model), (x[0], torch.sin(freq * x[0])), (x[1], torch.sin(freq * x[1]))


def test_mlsr_first_order_equals_gradient_with_detached_head():
    model, params, support, query = _mlsr_problem()
    result = mlsr_gradient(model, params, support, query, lam=0.02, steps=15)
    w_hat = result.recovered_head  # (B, p + 1, 1), a constant here
    theta = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    body, prefix = split_body(model)
    Phi_q = body_features(body, theta, query[0])
    W, b = theta[prefix + ".weight"], theta[prefix + ".bias"]
    w_st = torch.cat([W.T, b[None]])[None] + (w_hat - torch.cat([W.T, b[None]])[None]).detach()
    loss = ((Phi_q @ w_st - query[1]) ** 2).mean(dim=(1, 2)).mean()
    want = dict(zip(theta, torch.autograd.grad(loss, list(theta.values())), strict=True))
    assert result.query_loss == pytest.approx(float(loss.detach()))
    assert all(torch.allclose(result.grads[k], want[k], atol=1e-12) for k in want)
    # the head initialisation gets the query gradient at ŵ averaged over tasks (FOMAML-style)
    residual = (Phi_q @ w_hat - query[1]).detach()
    dw = (2 * Phi_q.detach().transpose(1, 2) @ residual / residual[0].numel()).mean(0)
    assert torch.allclose(result.grads[prefix + ".weight"], dw[:-1].T) and torch.allclose(
        result.grads[prefix + ".bias"], dw[-1]
    )
    second = mlsr_gradient(model, params, support, query, lam=0.02, steps=15, second_order=True)
    assert second.query_loss == pytest.approx(result.query_loss)
    assert not torch.allclose(second.grads["0.weight"], result.grads["0.weight"], atol=1e-6)


@pytest.mark.parametrize("options", [dict(step_size=0.05, algorithm="ista"), dict(step_size=None, algorithm="fista")])
def test_mlsr_second_order_matches_finite_differences(options):
    model, params, support, query = _mlsr_problem(sizes=(1, 4, 5, 1), tasks=2, shots=6, seed=1)
    kwargs = dict(lam=0.01, steps=6, second_order=True, **options)
    grads = mlsr_gradient(model, params, support, query, **kwargs).grads
    eps = 1e-6
    for name, value in params.items():
        fd = torch.zeros_like(value)
        for i in range(value.numel()):
            shifted = []
            for sign in (1, -1):
                moved = {k: v.clone() for k, v in params.items()}
                moved[name].view(-1)[i] += sign * eps
                shifted.append(mlsr_gradient(model, moved, support, query, **kwargs).query_loss)
            fd.view(-1)[i] = (shifted[0] - shifted[1]) / (2 * eps)
        assert torch.allclose(grads[name], fd, atol=1e-6, rtol=1e-4), name


def test_mlsr_heads_get_sparser_with_lambda_and_bias_is_free():
    model, params, support, query = _mlsr_problem(sizes=(1, 40, 40, 1))
    fractions = []
    for lam in (0.0, 0.05, 0.5):
        heads = mlsr_gradient(model, params, support, query, lam=lam, steps=100, head_init="zero").recovered_head
        fractions.append(head_sparsity(heads[:, :-1], tol=1e-9).mean_fraction)
        assert bool((heads[:, -1] != 0).all())  # the unpenalised bias row
    assert fractions[0] < fractions[1] < fractions[2]


def test_mlsr_errors_name_the_argument():
    model, params, support, query = _mlsr_problem()
    for kwargs, name in [
        (dict(lam=-1.0), "lam="),
        (dict(steps=0), "steps="),
        (dict(step_size=0.0), "step_size="),
        (dict(head_init="random"), "head_init="),
        (dict(query_loss="hinge"), "query_loss="),
    ]:
        with pytest.raises(ValueError, match=name):
            mlsr_gradient(model, params, support, query, **kwargs)
    with pytest.raises(ValueError, match="model"):
        mlsr_gradient(torch.nn.Linear(1, 1), {}, support, query)


def test_mlsr_meta_training_reduces_query_loss():
    torch.manual_seed(0)
    model = MLP([1, 40, 40, 1])
    tasks = SinusoidTasks.preset("mlsr")
    test = tasks.fixed_tasks(100, seed=2)
    g = generator(0, "train")
    learner = MetaLearner(model, mlsr_gradient, meta_lr=3e-3, lam=1e-3, steps=10)
    before = mlsr_gradient(model, learner.current_params(), test.support, test.query, lam=1e-3, steps=10).query_loss
    for _ in learner.fit(lambda i: (lambda b: (b.support, b.query))(tasks.sample(10, generator=g)), 150):
        pass
    after = mlsr_gradient(model, learner.current_params(), test.support, test.query, lam=1e-3, steps=10).query_loss
    assert learner.method == "mlsr_gradient"
    assert after < 0.7 * before


# ---------------------------------------------------------------------------------------------
# Diagnostics


def test_head_sparsity():
    heads = torch.tensor([[0.0, 1.0, 1e-8, -2.0], [0.0, 0.0, 0.0, 3.0]])
    result = head_sparsity(heads, tol=1e-6)
    assert torch.allclose(result.fraction, torch.tensor([0.5, 0.75]))
    assert result.mean_fraction == pytest.approx(0.625) and result.magnitudes.shape == (8,)
    with pytest.raises(ValueError, match="tol="):
        head_sparsity(heads, tol=-1.0)


def test_rip_estimate():
    g = torch.Generator().manual_seed(5)
    Q = torch.linalg.qr(torch.randn(20, 8, generator=g, dtype=F64))[0] * 3.0  # orthogonal columns, any length
    exact = rip_estimate(torch.cat([Q, torch.zeros(20, 2, dtype=F64)], 1), 4, trials=50)
    assert exact.coherence < 1e-12 and exact.delta < 1e-12 and exact.dead_columns == 2 and exact.live_columns == 8
    repeated = rip_estimate(torch.cat([Q, -2 * Q[:, :1]], 1), 9, trials=5)
    assert repeated.coherence == pytest.approx(1.0) and repeated.delta == pytest.approx(1.0)
    wide = torch.randn(200, 400, generator=g, dtype=F64)
    small, large = rip_estimate(wide, 3, trials=100), rip_estimate(wide, 30, trials=100)
    assert 0 < small.delta < large.delta < 1 and small.delta <= 2 * small.coherence + 1e-12
    same = rip_estimate(wide, 3, trials=100)
    assert same.delta == small.delta  # seeded
    with pytest.raises(ValueError, match="k="):
        rip_estimate(Q, 9)
    with pytest.raises(ValueError, match="trials="):
        rip_estimate(Q, 2, trials=0)


def test_recovered_head_fits_support_features():
    """With λ = 0 and many steps the recovered head is the least-squares fit on the support features."""
    model, params, support, query = _mlsr_problem(sizes=(1, 5, 4, 1), shots=12)
    heads = mlsr_gradient(model, params, support, query, lam=0.0, steps=5000, algorithm="fista").recovered_head
    body, _ = split_body(model)
    Phi = body_features(body, params, support[0])
    lstsq = torch.linalg.pinv(Phi) @ support[1]
    assert Phi.shape[-1] == 5  # four features and the ones column
    assert torch.allclose(Phi @ heads, Phi @ lstsq, atol=1e-3)


def test_head_matrix_and_head_layer_are_inverse_and_leave_the_bias_unpenalised():
    model, params, _, _ = _mlsr_problem()
    _, prefix = split_body(model)
    head = head_matrix(params, prefix)  # (p + 1, 1)
    assert head.shape == (13, 1) and torch.equal(head[-1], params[prefix + ".bias"])
    back = head_layer(head, prefix)
    assert all(torch.equal(back[k], params[k]) for k in back)
    per_task = head_matrix({k: v.expand(4, *v.shape) for k, v in params.items()}, prefix)
    assert per_task.shape == (4, 13, 1) and torch.equal(per_task[2], head)
    penalty = bias_free_penalty(per_task)
    assert (
        penalty.shape == (4, 13, 1) and float(penalty[:, -1].abs().sum()) == 0.0 and bool((penalty[:, :-1] == 1).all())
    )


def test_recover_heads_is_the_inner_loop_of_the_mlsr_gradient():
    model, params, support, query = _mlsr_problem()
    for options in ({"lam": 0.02, "steps": 15}, {"lam": 0.1, "steps": 5, "algorithm": "fista", "head_init": "zero"}):
        heads = recover_heads(model, params, support, **options)
        want = mlsr_gradient(model, params, support, query, **options).recovered_head
        assert torch.allclose(heads.coef, want, atol=1e-12)


def test_recovery_predictions_take_gradient_steps_of_size_one_over_l_without_the_l1_term():
    model, params, support, query = _mlsr_problem()
    preds = recovery_predictions(model, params, support, query[0], steps=3)
    assert preds.shape == (4, 3, 8, 1)
    body, prefix = split_body(model)
    Phi_s, Phi_q = body_features(body, params, support[0]), body_features(body, params, query[0])
    w = head_matrix(params, prefix).expand(3, -1, -1)
    assert torch.allclose(preds[0], Phi_q @ w)
    eta = 1.0 / lipschitz_constant(Phi_s)[:, None, None]
    w1 = w - eta * Phi_s.transpose(1, 2) @ (Phi_s @ w - support[1]) / Phi_s.shape[1]
    assert torch.allclose(preds[1], Phi_q @ w1, atol=1e-12)
    support_loss = [float((Phi_s @ h - support[1]).square().mean()) for h in [w, w1]]
    assert support_loss[1] < support_loss[0]  # a descent step on the support loss
    assert recovery_predictions(model, params, support, query[0], steps=0).shape == (1, 3, 8, 1)
    with pytest.raises(ValueError, match="query_x"):
        recovery_predictions(model, params, support, query[0][:2], steps=1)


def test_recovery_with_cross_entropy_regresses_on_one_hot_labels():
    torch.manual_seed(0)
    model = MLP([4, 6, 3]).double()
    params = param_dict(model)
    x = torch.randn(2, 9, 4, dtype=F64)
    labels = torch.arange(9).remainder(3).expand(2, -1)
    heads = recover_heads(model, params, (x, labels), lam=0.0, steps=3000, algorithm="fista", query_loss="ce")
    logits = recovery_predictions(model, params, (x, labels), x, steps=3000, query_loss="ce")[-1]
    assert heads.coef.shape == (2, 7, 3)
    assert bool((logits.argmax(-1) == labels).float().mean() > 0.7)  # a least-squares fit of one-hot rows
    with pytest.raises(ValueError, match=r"support y labels 1..3 are not allowed: integers in 0..2"):
        recover_heads(model, params, (x, labels + 1), lam=0.0, steps=1, query_loss="ce")


def test_task_rip_estimates_estimate_each_task_with_its_own_seed():
    g = torch.Generator().manual_seed(3)
    Phi = torch.randn(3, 12, 20, generator=g, dtype=F64)
    Phi[1, :, 2:] = 0.0  # two live columns: k is lowered to 2 for this task
    estimates = task_rip_estimates(Phi, 3, trials=20, seed=7)
    assert [e.k for e in estimates] == [3, 2, 3]
    assert estimates[2].delta == rip_estimate(Phi[2], 3, trials=20, seed=9).delta
    with pytest.raises(ValueError, match="Phi of shape"):
        task_rip_estimates(Phi[0], 3)


def test_the_examples_in_the_recovery_docstrings_run():
    module = importlib.import_module("metalab.sparse.ista")  # the package's `ista` is the function
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
