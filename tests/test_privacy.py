"""Differential privacy: sensitivity on adversarial neighbours, Gaussian/Laplace calibration, accounting, and
releases that keep their promise (fresh noise, bounded features for every finite record)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from metalab.compressive import (
    ClippedIdentity,
    CompressiveModel,
    Gaussian,
    Laplace,
    ProjectedSecondMoments,
    RandomFourierFeatures,
    RandomizedLearner,
    RandomQuadraticFeatures,
    SeededNoiseWarning,
    SketchNetwork,
    analytic_gaussian_sigma,
    calibrate,
    classical_gaussian_sigma,
    dataset_family,
    gaussian_delta,
    gaussian_epsilon,
    laplace_epsilon,
    laplace_scale,
    make_task,
    mean_sensitivity,
    predict,
    privacy_of,
    private_sketches,
)

# ---------------------------------------------------------------------------------------------
# Sensitivity on adversarial neighbouring data sets (replace-one)


def observed_changes(fmap, base: torch.Tensor, x_in: torch.Tensor, x_out: torch.Tensor):
    """Sketch of ``base`` with its first row set to x_in, against the same with x_out: the L1 and L2 change."""
    a, b = base.clone(), base.clone()
    a[0], b[0] = x_in, x_out
    sa, sb = fmap.sketch(a), fmap.sketch(b)
    diff = sa.mean - sb.mean
    return sa, float(diff.abs().sum()), float(diff.norm())


def linear_net(output: str, m: int, **kwargs) -> SketchNetwork:
    return SketchNetwork(m, m, hidden=(), output=output, seed=0, **kwargs)


def preimage(net: SketchNetwork, target: torch.Tensor) -> torch.Tensor:
    """An input whose pre-activation (one linear layer) is ``target``."""
    w, b = net.body[0].weight.double(), net.body[0].bias.double()
    return torch.linalg.solve(w, target - b)


def worst_case(fmap):
    """(x_in, x_out): two samples at opposite extremes of the map's bounded set (L2 and L1 worst cases coincide here)."""
    if isinstance(fmap, SketchNetwork) and fmap.output == "tanh":
        signs = torch.tensor([1.0, -1.0] * (fmap.sketch_size // 2), dtype=torch.float64)
        return preimage(fmap, 30 * signs), preimage(fmap, -30 * signs)  # tanh(+-30) = +-1 in float64
    if isinstance(fmap, SketchNetwork):
        u = torch.ones(fmap.sketch_size, dtype=torch.float64) / math.sqrt(fmap.sketch_size)
        return preimage(fmap, 10 * fmap.clip_norm * u), preimage(fmap, -10 * fmap.clip_norm * u)
    if isinstance(fmap, RandomFourierFeatures):
        # Frequencies (8j + 1) w0: at w0 x = 3pi/4 and w0 x' = -pi/4 every pair sits at angles 3pi/4 and -pi/4,
        # antipodal (L2 change 2c) and in the L1 worst case (2 sqrt(2) c).
        w0 = float(fmap.frequencies[0, 0])
        return torch.tensor([0.75 * math.pi / w0]), torch.tensor([-0.25 * math.pi / w0])
    if isinstance(fmap, RandomQuadraticFeatures):
        a = fmap.projections[0]
        return fmap.input_radius * a / a.norm(), torch.zeros_like(a)
    if isinstance(fmap, ProjectedSecondMoments):  # orthonormal rows: two orthogonal directions of largest gain
        return fmap.input_radius * fmap.projection[0], fmap.input_radius * fmap.projection[1]
    raise AssertionError(fmap)


ADVERSARIAL_MAPS = {
    "tanh-net": lambda: linear_net("tanh", 6),
    "clip-net": lambda: linear_net("clip", 5, clip_norm=1.5),
    "rff-resonant": lambda: RandomFourierFeatures(
        1, 7, frequencies=torch.tensor([[0.3 * (8 * j + 1)] for j in range(7)]), c_norm=0.4
    ),
    "quadratic-parallel": lambda: RandomQuadraticFeatures(
        3,
        4,
        input_radius=2.0,
        projections=torch.tensor([[1.0, 2.0, -1.0]]) * torch.tensor([[1.0], [-0.5], [2.0], [0.3]]),
    ),
    "second-moments-orthonormal": lambda: ProjectedSecondMoments(4, 2, input_radius=1.5, projection=torch.eye(4)[:2]),
}


@pytest.mark.parametrize("name", list(ADVERSARIAL_MAPS))
def test_worst_case_neighbours_reach_the_derived_sensitivity(name):
    fmap = ADVERSARIAL_MAPS[name]()
    n = 40
    base = torch.randn(n, fmap.input_dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x_in, x_out = worst_case(fmap)
    s, l1, l2 = observed_changes(fmap, base, x_in, x_out)
    d1, d2 = s.sensitivity("l1"), s.sensitivity("l2")
    assert d1 == pytest.approx(fmap.bound.diameter_l1 / n) and d2 == pytest.approx(fmap.bound.diameter_l2 / n)
    # reached to 1e-6: Fourier features allow 2^-22 for their float32 cos and sin
    assert l2 <= d2 * (1 + 1e-12) and l2 >= d2 * (1 - 1e-6), (l2, d2)
    if name != "second-moments-orthonormal":  # its L1 bound is a box bound, not reached by rank-one pairs
        assert l1 <= d1 * (1 + 1e-12) and l1 >= d1 * (1 - 1e-6), (l1, d1)
    else:
        assert l1 <= d1 * (1 + 1e-12)


def test_sensitivity_formulas_for_the_learned_map():
    n, m = 250, 16
    tanh = SketchNetwork(3, m, hidden=(8,), seed=0).sketch(torch.zeros(n, 3))
    assert tanh.sensitivity("l1") == pytest.approx(2 * m / n) and tanh.sensitivity("l2") == pytest.approx(2 * 4 / n)
    clip = SketchNetwork(3, m, hidden=(8,), output="clip", clip_norm=3.0, seed=0).sketch(torch.zeros(n, 3))
    assert clip.sensitivity("l2") == pytest.approx(2 * 3.0 / n) and clip.sensitivity("l1") == pytest.approx(
        2 * 3 * 4 / n
    )
    with pytest.raises(ValueError, match=r"count=0"):
        mean_sensitivity(tanh.bound, 0, "l2")
    with pytest.raises(ValueError, match=r"norm='linf'"):
        tanh.sensitivity("linf")


@pytest.mark.parametrize(
    "name", ["tanh-net", "clip-net", "rff-resonant", "quadratic-parallel", "second-moments-orthonormal"]
)
def test_random_neighbours_never_exceed_the_sensitivity(name):
    fmap = ADVERSARIAL_MAPS[name]()
    g = torch.Generator().manual_seed(1)
    n, d = 30, fmap.input_dim
    base = torch.randn(n, d, generator=g, dtype=torch.float64)
    candidates = 8 * torch.randn(200, d, generator=g, dtype=torch.float64)
    phi = fmap.features(candidates)
    # The worst pair among many random candidates: the largest feature distance, divided by n.
    l2_pairs, l1_pairs = torch.cdist(phi, phi), torch.cdist(phi, phi, p=1)
    assert float(l2_pairs.max()) / n <= fmap.bound.diameter_l2 / n * (1 + 1e-12)
    assert float(l1_pairs.max()) / n <= fmap.bound.diameter_l1 / n * (1 + 1e-12)
    i, j = divmod(int(l2_pairs.argmax()), 200)
    s, _, l2 = observed_changes(fmap, base, candidates[i], candidates[j])
    assert l2 == pytest.approx(float(l2_pairs.max()) / n, rel=1e-9)


# ---------------------------------------------------------------------------------------------
# Gaussian calibration


def hockey_stick_delta(sigma: float, epsilon: float, sensitivity: float) -> float:
    """delta(epsilon) of N(0, s^2) against N(Delta, s^2) by numerical integration: int (p - e^eps q)_+ ."""
    cut = sensitivity / 2 - epsilon * sigma**2 / sensitivity  # p > e^eps q exactly left of this point
    p, q = stats.norm(0, sigma), stats.norm(sensitivity, sigma)
    value, _ = integrate.quad(
        lambda x: p.pdf(x) - math.exp(epsilon) * q.pdf(x), cut - 40 * sigma, cut, epsabs=1e-14, epsrel=1e-10, limit=200
    )
    return value


GRID = [
    (eps, delta, sens) for eps in (0.05, 0.3, 1.0, 3.0, 12.0) for delta in (1e-3, 1e-6, 1e-10) for sens in (0.02, 1.0)
]


@pytest.mark.parametrize("epsilon,delta,sensitivity", GRID)
def test_analytic_sigma_is_the_smallest_meeting_the_exact_condition(epsilon, delta, sensitivity):
    sigma = analytic_gaussian_sigma(epsilon, delta, sensitivity)
    achieved = gaussian_delta(sigma, epsilon, sensitivity)
    assert achieved <= delta
    assert achieved >= delta * (1 - 1e-6)  # tight: the condition is met with (almost) equality
    assert gaussian_delta(sigma * (1 - 1e-9), epsilon, sensitivity) > delta * (1 - 1e-5)
    # The closed-form condition agrees with an independent integral of the privacy-loss tail.
    assert hockey_stick_delta(sigma, epsilon, sensitivity) == pytest.approx(achieved, rel=1e-6)
    # sigma is linear in the sensitivity.
    assert analytic_gaussian_sigma(epsilon, delta, 1.0) * sensitivity == pytest.approx(sigma, rel=1e-10)


def test_reference_values_and_the_classical_bound():
    # (epsilon, delta) = (1, 1e-5), Delta = 1: analytic 3.7306 against classical's sqrt(2 ln 125000) = 4.8448 (at epsilon -> 1).
    assert analytic_gaussian_sigma(1.0, 1e-5, 1.0) == pytest.approx(3.730631634816, rel=1e-9)
    assert classical_gaussian_sigma(0.5, 1e-5, 1.0) == pytest.approx(2 * math.sqrt(2 * math.log(1.25e5)), rel=1e-14)
    for eps in (0.01, 0.1, 0.5, 0.9, 0.999):
        for delta in (1e-2, 1e-5, 1e-9):
            classical = classical_gaussian_sigma(eps, delta, 2.0)
            analytic = analytic_gaussian_sigma(eps, delta, 2.0)
            assert classical > analytic
            assert gaussian_delta(classical, eps, 2.0) <= delta  # the classical bound is valid, only loose
    # Far from epsilon -> 0 the classical bound wastes noise: about 30% at (0.9, 1e-5).
    assert classical_gaussian_sigma(0.9, 1e-5, 1.0) / analytic_gaussian_sigma(0.9, 1e-5, 1.0) > 1.25
    with pytest.raises(ValueError, match=r"epsilon=1.0"):
        classical_gaussian_sigma(1.0, 1e-5, 1.0)
    with pytest.raises(ValueError, match=r"epsilon=2.0"):
        Gaussian(2.0, 1e-5, calibration="classical")


def test_epsilon_delta_reporting_round_trip():
    for eps in (0.05, 0.7, 4.0, 30.0):
        for delta in (1e-4, 1e-8):
            sigma = calibrate("gaussian", 0.3, eps, delta)
            assert gaussian_epsilon(sigma, delta, 0.3) == pytest.approx(eps, rel=1e-8)
            assert privacy_of("gaussian", sigma, 0.3, delta) == pytest.approx((eps, delta), rel=1e-8)
    # A delta so large that no epsilon is needed.
    assert gaussian_epsilon(10.0, 0.5, 1.0) == 0.0
    # Laplace: scale = Delta / epsilon, and back.
    assert laplace_scale(0.5, 0.2) == pytest.approx(0.4)
    assert calibrate("laplace", 0.2, 0.5) == pytest.approx(0.4)
    assert laplace_epsilon(0.4, 0.2) == pytest.approx(0.5)
    assert privacy_of("laplace", 0.4, 0.2) == (pytest.approx(0.5), 0.0)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: analytic_gaussian_sigma(0.0, 1e-5, 1.0), r"epsilon=0.0"),
        (lambda: analytic_gaussian_sigma(-1.0, 1e-5, 1.0), r"epsilon=-1.0"),
        (lambda: analytic_gaussian_sigma(float("nan"), 1e-5, 1.0), r"epsilon=nan"),
        (lambda: analytic_gaussian_sigma(1.0, 0.0, 1.0), r"delta=0.0"),
        (lambda: analytic_gaussian_sigma(1.0, 1.0, 1.0), r"delta=1.0"),
        (lambda: analytic_gaussian_sigma(1.0, 1.5, 1.0), r"delta=1.5"),
        (lambda: analytic_gaussian_sigma(1.0, 1e-5, 0.0), r"sensitivity=0.0"),
        (lambda: Laplace(0.0), r"epsilon=0.0"),
        (lambda: Gaussian(1.0, 0.0), r"delta=0.0"),
        (lambda: Gaussian(1.0, 1e-5, calibration="rdp"), r"calibration='rdp'"),
        (lambda: gaussian_delta(-2.0, 1.0, 1.0), r"sigma=-2.0"),
        (lambda: laplace_epsilon(0.0, 1.0), r"scale=0.0"),
        (lambda: calibrate("exponential", 1.0, 1.0), r"mechanism='exponential'"),
    ],
)
def test_invalid_privacy_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------------------------------------
# Noisy sketches


@pytest.mark.filterwarnings("ignore::metalab.compressive.SeededNoiseWarning")  # seeds on purpose: reproducible draws
def test_with_noise_adds_calibrated_noise():
    n, m = 400, 64
    net = SketchNetwork(2, m, hidden=(8,), seed=0)
    s = net.sketch(torch.randn(n, 2, generator=torch.Generator().manual_seed(0)))
    assert s.sensitivity("l2") == pytest.approx(2 * math.sqrt(m) / n)

    mech = Gaussian(0.8, 1e-6)
    noisy = [s.with_noise(mech, seed=k) for k in range(60)]
    sigma = analytic_gaussian_sigma(0.8, 1e-6, 2 * math.sqrt(m) / n)
    p = noisy[0].privacy
    assert (p.epsilon, p.delta, p.neighbouring, p.mechanism) == (0.8, 1e-6, "replace-one", "gaussian (analytic)")
    assert p.noise_scale == pytest.approx(sigma) and p.noise_std == pytest.approx(sigma)
    assert not s.private and noisy[0].private and noisy[0].count == n
    noise = torch.stack([t.mean - s.mean for t in noisy]).flatten().numpy()
    assert np.std(noise) == pytest.approx(sigma, rel=0.06)
    assert stats.kstest(noise / sigma, "norm").pvalue > 1e-3

    lap = [s.with_noise(Laplace(2.0), seed=k) for k in range(60)]
    b = (2 * m / n) / 2.0
    assert lap[0].privacy.noise_scale == pytest.approx(b) and lap[0].privacy.delta == 0.0
    noise = torch.stack([t.mean - s.mean for t in lap]).flatten().numpy()
    assert np.mean(np.abs(noise)) == pytest.approx(b, rel=0.06)
    assert stats.kstest(noise / b, "laplace").pvalue > 1e-3

    # Reproducible with a seed; fresh randomness without one.
    assert torch.equal(s.with_noise(mech, seed=3).mean, s.with_noise(mech, seed=3).mean)
    assert not torch.equal(s.with_noise(mech).mean, s.with_noise(mech).mean)
    # Noise on the mean shrinks like 1/n at a fixed privacy level.
    big = net.sketch(torch.zeros(4 * n, 2))
    assert big.with_noise(mech, seed=0).privacy.noise_std == pytest.approx(sigma / 4, rel=1e-9)
    with pytest.raises(ValueError, match=r"mechanism="):
        s.with_noise("gaussian")


# ---------------------------------------------------------------------------------------------
# Releases that keep their promise


def gaussian_rows(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_releases_draw_fresh_noise_unless_seeded_and_a_seed_says_it_is_not_private():
    net = SketchNetwork(2, 16, hidden=(8,), seed=0)
    sketch = net.sketch(torch.zeros(50, 2))
    z = torch.zeros(3, 16, dtype=torch.float64)
    # two releases of the same sketch never share their noise (subtracting them would give the sketch)
    assert not torch.equal(
        private_sketches(z, net.bound, 50, Laplace(1.0)), private_sketches(z, net.bound, 50, Laplace(1.0))
    )
    fresh = sketch.with_noise(Laplace(1.0))
    assert not fresh.privacy.seeded and not torch.equal(fresh.mean, sketch.with_noise(Laplace(1.0)).mean)
    # the learned and the random answers decoded from released sketches differ from call to call too
    model = CompressiveModel(make_task("kmeans", 2, k=2), 8, sketch_hidden=(8,), width=16, blocks=0, device="cpu")
    data = dataset_family("mixtures", n=40, d=2, k=2).sample(2, seed=0)
    first, second = (predict(model, data, noise=Laplace(1.0))["centroids"] for _ in range(2))
    assert not torch.equal(first, second)
    learner = RandomizedLearner(make_task("pca", 2, k=1), 6)
    first, second = (learner.predict(data.X, noise=Laplace(1.0))["components"] for _ in range(2))
    assert not torch.equal(first, second)
    # a seed reproduces the noise, and says the result is no private release
    with pytest.warns(SeededNoiseWarning, match="not private"):
        seeded = sketch.with_noise(Laplace(1.0), seed=3)
    with pytest.warns(SeededNoiseWarning):
        assert torch.equal(seeded.mean, sketch.with_noise(Laplace(1.0), seed=3).mean)
    assert seeded.privacy.seeded and seeded.merge(fresh).privacy.seeded and not fresh.merge(fresh).privacy.seeded
    with pytest.warns(SeededNoiseWarning):
        assert torch.equal(
            private_sketches(z, net.bound, 50, Laplace(1.0), seed=4),
            private_sketches(z, net.bound, 50, Laplace(1.0), seed=4),
        )


@pytest.mark.parametrize(
    "fmap",
    [
        SketchNetwork(2, 8, hidden=(16, 16), seed=0),
        SketchNetwork(2, 8, output="clip", seed=1),
        RandomFourierFeatures(2, 4),
    ],
    ids=["sketch-network-tanh", "sketch-network-clip", "random-fourier"],
)
@pytest.mark.parametrize("size", [1e39, 1e200, 1.7e308])
def test_one_extreme_finite_record_leaves_the_features_in_their_bound(fmap, size):
    # NaN features, then a NaN release, would tell everyone that such a record is in the data
    base = gaussian_rows(100, 2, 0)
    extreme = base.clone()
    extreme[0] = torch.tensor([size, -size], dtype=torch.float64)
    features = fmap.features(extreme)
    assert bool(torch.isfinite(features).all())
    _, l1, l2 = observed_changes(fmap, base, extreme[0], base[0])
    assert l1 <= fmap.bound.diameter_l1 / 100 * (1 + 1e-9) and l2 <= fmap.bound.diameter_l2 / 100 * (1 + 1e-9)
    release = fmap.sketch(extreme).with_noise(Laplace(1.0))
    assert bool(torch.isfinite(release.mean).all())


def test_a_sketch_that_is_not_finite_is_never_released():
    sketch = ClippedIdentity(2).sketch(torch.zeros(10, 2))
    broken = dataclasses.replace(sketch, total=torch.tensor([0.0, float("nan")], dtype=torch.float64))
    with pytest.raises(ValueError, match="not finite"):
        broken.with_noise(Laplace(1.0))
    with pytest.raises(ValueError, match="non-finite"):
        private_sketches(torch.tensor([[float("inf"), 0.0]]), sketch.bound, 10, Laplace(1.0))
