"""Property tests of honest numerics in metalab.sparse and metalab.gbml (issue 11): scaling, conditioning
and dtype axes; a diverging recovery is reported, never returned as NaN; targets that do not fit the
model, complex input and all-zero data get a clear answer or a ValueError naming the argument."""

from __future__ import annotations

import math
import re
import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metalab.core.results import HypergradientWarning
from metalab.gbml import adapt_tasks, adaptation_losses, fine_tune, meta_gradient
from metalab.nets import MLP, param_dict
from metalab.sparse import (
    fista,
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
    task_rip_estimates,
)
from metalab.subspace import DivergenceWarning

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
#: dtype -> the decades a scale factor may span there (squares of the data must stay in range)
DECADES = {torch.float64: 150, torch.float32: 15}
dtypes = st.sampled_from([torch.float32, torch.float64])


torch.set_num_threads(1)


def design(seed: int, n: int, p: int, dtype: torch.dtype, condition: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Φ (n, p) with singular values spread geometrically from 1 to 1/condition, and targets y (n,)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))[0][:, : min(n, p)]
    v = torch.linalg.qr(torch.randn(p, p, generator=g, dtype=torch.float64))[0][:, : min(n, p)]
    singular = torch.logspace(0, -torch.log10(torch.tensor(condition)).item(), min(n, p), dtype=torch.float64)
    Phi = (u * singular) @ v.T * n**0.5
    return Phi.to(dtype), torch.randn(n, generator=g, dtype=torch.float64).to(dtype)


def quietly(function, *args, **kwargs):
    """``function(*args, **kwargs)`` and the warnings it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = function(*args, **kwargs)
    return result, [w.category for w in caught]


def tolerance(dtype: torch.dtype) -> float:
    return 1e-9 if dtype == torch.float64 else 2e-3


# ---------------------------------------------------------------------------------------------
# ISTA / FISTA: scaling, conditioning, divergence


#: a recovery problem, a dtype, the decimal exponent of a scale factor and the algorithm
scaled_problems = given(
    seed=st.integers(0, 10_000),
    dtype=dtypes,
    exponent=st.integers(-150, 150),
    algorithm=st.sampled_from([ista, fista]),
)


@SETTINGS
@scaled_problems
def test_recovery_scales_with_its_targets(seed, dtype, exponent, algorithm):
    """(1/2n)||Φw − cy||² + cλ||w||₁ = c² times the problem at c = 1, so the iterates are c times theirs."""
    scale = 10.0 ** max(-DECADES[dtype], min(DECADES[dtype], exponent))
    Phi, y = design(seed, 12, 6, dtype)
    base, _ = quietly(algorithm, Phi, y, 0.05, steps=50)
    scaled, caught = quietly(algorithm, Phi, scale * y, 0.05 * scale, steps=50)
    assert scaled.status == "ok" and not caught
    assert torch.allclose(scaled.coef / scale, base.coef, rtol=tolerance(dtype), atol=tolerance(dtype))


@SETTINGS
@scaled_problems
def test_recovery_scales_with_its_features(seed, dtype, exponent, algorithm):
    """With η = 1/L the iterates on (cΦ, y, cλ) are 1/c times those on (Φ, y, λ)."""
    scale = 10.0 ** max(-DECADES[dtype] // 2, min(DECADES[dtype] // 2, exponent))
    Phi, y = design(seed, 12, 6, dtype)
    base, _ = quietly(algorithm, Phi, y, 0.05, steps=50)
    scaled, caught = quietly(algorithm, scale * Phi, y, 0.05 * scale, steps=50)
    assert scaled.status == "ok" and not caught
    assert torch.allclose(scaled.coef * scale, base.coef, rtol=tolerance(dtype) * 10, atol=tolerance(dtype) * 10)


@SETTINGS
@given(
    seed=st.integers(0, 10_000),
    dtype=dtypes,
    condition=st.sampled_from([1.0, 1e2, 1e4, 1e8]),
    lam=st.sampled_from([0.0, 1e-3, 0.1]),
    shape=st.sampled_from([(20, 8), (8, 20), (10, 10)]),
)
def test_ista_with_the_default_step_never_increases_the_objective(seed, dtype, condition, lam, shape):
    Phi, y = design(seed, *shape, dtype, condition)
    iterates, caught = quietly(lambda: list(iterate_recovery(Phi, y, lam, steps=60)))
    assert len(iterates) == 60 and not caught
    values = torch.stack([objective(Phi[None], y[None, :, None], it.coef[None, :, None], lam) for it in iterates])
    start = objective(Phi[None], y[None, :, None], torch.zeros(1, shape[1], 1, dtype=dtype), lam)
    slack = 1e-12 if dtype == torch.float64 else 1e-5
    assert bool((values[1:] <= values[:-1] + slack * start).all()) and bool(values[0] <= start * (1 + slack))
    accelerated, caught = quietly(fista, Phi, y, lam, steps=60)
    assert accelerated.status == "ok" and not caught and bool(torch.isfinite(accelerated.coef).all())


@SETTINGS
@given(
    seed=st.integers(0, 10_000),
    dtype=dtypes,
    factor=st.floats(2.5, 1e3),
    algorithm=st.sampled_from(["ista", "fista"]),
)
def test_a_step_above_the_stability_bound_is_reported_not_returned_as_nan(seed, dtype, factor, algorithm):
    Phi, y = design(seed, 12, 6, dtype)
    step = factor / float(lipschitz_constant(Phi))
    result, caught = quietly(sparse_recovery, Phi, y, 1e-3, algorithm=algorithm, step_size=step, steps=500)
    assert DivergenceWarning in caught
    assert result.status == "diverged" and result.steps < 500
    assert bool(torch.isfinite(result.coef).all()) and bool(torch.isfinite(result.objective).all())
    iterates, _ = quietly(lambda: list(iterate_recovery(Phi, y, 1e-3, algorithm=algorithm, step_size=step, steps=500)))
    assert len(iterates) == result.steps and bool(torch.isfinite(iterates[-1].coef).all())


def test_the_issue_example_diverges_with_a_warning_and_an_honest_status():
    Phi = torch.randn(20, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    w = torch.zeros(10, dtype=torch.float64)
    w[:3] = 1.0
    with pytest.warns(DivergenceWarning, match=r"ISTA diverged at iteration \d+ .* step size is [\d.]+ / L"):
        result = ista(Phi, Phi @ w, 1e-3, step_size=10)
    assert result.status == "diverged" and bool(torch.isfinite(result.coef).all())
    assert ista(Phi, Phi @ w, 1e-3).status == "ok"


# ---------------------------------------------------------------------------------------------
# targets that do not fit the model


def _tasks(x_shape, y_shape, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    return torch.randn(x_shape, generator=g, dtype=dtype), torch.randn(y_shape, generator=g, dtype=dtype)


ENTRY_POINTS = {
    "maml": lambda net, p, s, q: meta_gradient("maml", net, p, s, q),
    "fomaml": lambda net, p, s, q: meta_gradient("fomaml", net, p, s, q),
    "anil": lambda net, p, s, q: meta_gradient("anil", net, p, s, q),
    "reptile": lambda net, p, s, q: meta_gradient("reptile", net, p, s, q),
    "mlsr": lambda net, p, s, q: mlsr_gradient(net, p, s, q, steps=3),
    "fine_tune": lambda net, p, s, q: fine_tune(net, p, s, q[0], steps=2, lr=0.01),
    "adapt_tasks": lambda net, p, s, q: adapt_tasks(net, p, s, steps=2, lr=0.01),
    "adaptation_losses": lambda net, p, s, q: adaptation_losses(net, p, s, q, steps=2, lr=0.01),
    "recover_heads": lambda net, p, s, q: recover_heads(net, p, s, lam=0.01, steps=3),
    "recovery_predictions": lambda net, p, s, q: recovery_predictions(net, p, s, q[0], steps=2),
}
#: entry points that read the query targets
READS_QUERY = {"maml", "fomaml", "anil", "reptile", "mlsr", "adaptation_losses"}


@SETTINGS
@given(
    outputs=st.integers(1, 3),
    trailing=st.lists(st.integers(1, 4), max_size=2),
    which=st.sampled_from(["support", "query"]),
    entry=st.sampled_from(sorted(ENTRY_POINTS)),
)
def test_targets_that_do_not_fit_the_model_raise_naming_the_argument_and_both_shapes(outputs, trailing, which, entry):
    if which == "query" and entry not in READS_QUERY:
        which = "support"
    fits = tuple(trailing) == (outputs,) or (not trailing and outputs == 1)
    net = MLP([2, 6, outputs]).double()
    good = _tasks((4, 5, 2), (4, 5, outputs))
    bad = _tasks((4, 5, 2), (4, 5, *trailing))
    support, query = (bad, good) if which == "support" else (good, bad)
    if fits:
        ENTRY_POINTS[entry](net, param_dict(net), support, query)
        return
    message = (
        f"{which} y of shape {(4, 5, *trailing)} is not allowed: it must match the model's output, {(4, 5, outputs)}"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        ENTRY_POINTS[entry](net, param_dict(net), support, query)


def test_the_issue_example_of_a_broadcast_target_raises():
    net = MLP([3, 8, 1]).double()
    x, y = _tasks((4, 5, 3), (4, 5, 3))
    with pytest.raises(ValueError, match=re.escape("support y of shape (4, 5, 3) is not allowed")) as error:
        meta_gradient("maml", net, param_dict(net), (x, y), (x, y))
    assert "(4, 5, 1)" in str(error.value)


@SETTINGS
@given(
    label=st.integers(-3, 6),
    which=st.sampled_from(["support", "query"]),
    entry=st.sampled_from(["maml", "anil", "mlsr", "adaptation_losses"]),
)
def test_class_labels_outside_the_outputs_raise_naming_the_argument(label, which, entry):
    net = MLP([2, 6, 3]).double()
    x = torch.randn(2, 4, 2, dtype=torch.float64)
    good, bad = torch.zeros(2, 4, dtype=torch.long), torch.full((2, 4), label)
    support, query = ((x, bad), (x, good)) if which == "support" else ((x, good), (x, bad))
    call = {
        "maml": lambda: meta_gradient("maml", net, param_dict(net), support, query, loss="ce"),
        "anil": lambda: meta_gradient("anil", net, param_dict(net), support, query, loss="ce"),
        "mlsr": lambda: mlsr_gradient(net, param_dict(net), support, query, query_loss="ce", steps=2),
        "adaptation_losses": lambda: adaptation_losses(
            net, param_dict(net), support, query, steps=1, lr=0.1, loss="ce"
        ),
    }[entry]
    if 0 <= label <= 2:
        call()
        return
    with pytest.raises(
        ValueError, match=re.escape(f"{which} y labels {label}..{label} are not allowed: integers in 0..2")
    ):
        call()


# ---------------------------------------------------------------------------------------------
# complex input, all-zero data


@SETTINGS
@given(argument=st.sampled_from(["x", "y"]), entry=st.sampled_from(sorted(ENTRY_POINTS)))
def test_complex_data_is_refused_not_cast(argument, entry):
    net = MLP([2, 6, 1]).double()
    x, y = _tasks((3, 4, 2), (3, 4, 1))
    support = (x.to(torch.complex128), y) if argument == "x" else (x, y.to(torch.complex128))
    with pytest.raises(ValueError, match=f"support {argument}"):
        ENTRY_POINTS[entry](net, param_dict(net), support, (x, y))


@SETTINGS
@given(argument=st.sampled_from(["Phi", "y", "w0", "lam"]), algorithm=st.sampled_from(["ista", "fista"]))
def test_complex_recovery_input_is_refused_not_cast(argument, algorithm):
    Phi, y = design(0, 6, 4, torch.float64)
    values = {"Phi": Phi, "y": y, "w0": torch.zeros(4, dtype=torch.float64), "lam": torch.full((4,), 0.1)}
    values[argument] = values[argument].to(torch.complex128)
    with pytest.raises(ValueError, match=argument):
        sparse_recovery(values["Phi"], values["y"], values["lam"], algorithm=algorithm, w0=values["w0"])
    with pytest.raises(ValueError, match="complex"):
        soft_threshold(torch.ones(3, dtype=torch.complex64), 0.1)
    with pytest.raises(ValueError, match="complex"):
        lipschitz_constant(Phi.to(torch.complex128))


@SETTINGS
@given(
    zero=st.sampled_from(["x", "y", "both"]),
    dtype=dtypes,
    entry=st.sampled_from(sorted(ENTRY_POINTS)),
)
def test_all_zero_data_gives_finite_answers(zero, dtype, entry):
    net = MLP([2, 6, 1]).to(dtype)
    x, y = _tasks((3, 4, 2), (3, 4, 1), dtype)
    x = torch.zeros_like(x) if zero in ("x", "both") else x
    y = torch.zeros_like(y) if zero in ("y", "both") else y
    result, caught = quietly(ENTRY_POINTS[entry], net, param_dict(net), (x, y), (x, y))
    assert not caught
    values = (
        result.values() if isinstance(result, dict) else [getattr(result, "coef", getattr(result, "grads", result))]
    )
    values = [v for value in values for v in (value.values() if isinstance(value, dict) else [value])]
    assert all(bool(torch.isfinite(v).all()) for v in values)
    assert getattr(result, "status", "ok") == "ok"


@SETTINGS
@given(
    zero=st.sampled_from(["Phi", "y", "both"]),
    dtype=dtypes,
    algorithm=st.sampled_from(["ista", "fista"]),
    loss=st.sampled_from(["mse", "mae"]),
    lam=st.sampled_from([0.0, 0.1, 100.0]),
)
def test_all_zero_recovery_problems_have_the_right_answer(zero, dtype, algorithm, loss, lam):
    Phi, y = design(1, 8, 5, dtype)
    Phi = torch.zeros_like(Phi) if zero in ("Phi", "both") else Phi
    y = torch.zeros_like(y) if zero in ("y", "both") else y
    result, caught = quietly(sparse_recovery, Phi, y, lam, algorithm=algorithm, loss=loss, steps=20)
    assert result.status == "ok" and not caught
    assert bool((result.coef == 0).all())  # Φ = 0 or y = 0: w = 0 minimises, and the iteration starts there


# ---------------------------------------------------------------------------------------------
# meta-gradients at extreme scales: finite and ok, or reported


@SETTINGS
@given(
    exponent=st.integers(-150, 150),
    dtype=dtypes,
    method=st.sampled_from(["maml", "fomaml", "anil", "reptile", "mlsr"]),
)
def test_meta_gradients_at_any_target_scale_are_finite_or_reported(exponent, dtype, method):
    scale = 10.0 ** max(-DECADES[dtype], min(DECADES[dtype], exponent))
    net = MLP([1, 8, 1]).to(dtype)
    x, y = _tasks((3, 4, 1), (3, 4, 1), dtype)
    if method == "mlsr":
        result, caught = quietly(mlsr_gradient, net, param_dict(net), (x, scale * y), (x, scale * y), steps=3)
    else:
        result, caught = quietly(meta_gradient, method, net, param_dict(net), (x, scale * y), (x, scale * y))
    finite = all(bool(torch.isfinite(g).all()) for g in result.grads.values())
    assert finite  # a non-finite meta-gradient is replaced by zeros
    if result.status == "ok":
        assert not caught and math.isfinite(result.query_loss)
    else:
        assert result.status in ("non_finite", "diverged")
        assert {HypergradientWarning, DivergenceWarning} & set(caught)


@SETTINGS
@given(dtype=dtypes, shape=st.tuples(st.integers(1, 6), st.integers(1, 6)), k=st.integers(1, 4))
def test_the_diagnostics_of_all_zero_features_and_heads_are_clear(dtype, shape, k):
    zeros = torch.zeros(shape, dtype=dtype)
    assert head_sparsity(zeros[None]).mean_fraction == 1.0  # every weight of an all-zero head is zero
    with pytest.raises(ValueError, match="Phi has no column with norm above zero_tol"):
        rip_estimate(zeros, k)
    with pytest.raises(ValueError, match="Phi has no column with norm above zero_tol"):
        task_rip_estimates(zeros[None], k)
