"""Differential privacy for mean sketches: sensitivity, the Laplace and Gaussian mechanisms, accounting.

**Neighbouring relation: replace-one** (bounded DP).  Two data sets are neighbours when they have
the same size ``n`` and differ in exactly one sample; ``n`` is treated as public.  If every
per-sample feature lies in a set of Lp diameter ``D_p`` (:class:`~metalab.compressive.bounds.FeatureBound`),
replacing one sample moves the mean sketch by at most

    Delta_p = D_p / n          (for example D_2 = 2 sqrt(m) for tanh features, so Delta_2 = 2 sqrt(m) / n).

Mechanisms (noise added to every coordinate of the mean, independently):

* Laplace, scale ``b = Delta_1 / epsilon``: ``(epsilon, 0)``-DP.
* Gaussian, ``sigma`` calibrated to ``Delta_2``:
    - ``"analytic"`` (Balle & Wang, ICML 2018, Theorem 8): the mechanism is ``(epsilon, delta)``-DP
      exactly when ``Phi(Delta/(2 sigma) - epsilon sigma/Delta) - e^epsilon Phi(-Delta/(2 sigma) -
      epsilon sigma/Delta) <= delta``; the smallest such ``sigma`` is found by bisection (any
      ``epsilon > 0``);
    - ``"classical"`` (Dwork & Roth, Theorem A.1): ``sigma = Delta sqrt(2 ln(1.25/delta)) / epsilon``,
      valid only for ``epsilon < 1`` and never smaller than the analytic one.

:func:`gaussian_delta` / :func:`gaussian_epsilon` / :func:`laplace_epsilon` report the privacy of a
given noise level; :func:`calibrate` and :func:`privacy_of` are the two directions in one place.

**The noise of a release is fresh.**  Noise drawn from a known seed is the same on every call: two
releases subtract to the exact sketch, and anyone who knows the seed recovers it from one.  So
:func:`noise_generator` draws from the operating system's entropy unless a seed is given, and a given
seed (a reproducible experiment, which simulates releases rather than making them) raises a
:class:`SeededNoiseWarning` saying the result is not private.
"""

from __future__ import annotations

import math
import secrets
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.special import log_ndtr, ndtr

from metalab.compressive.bounds import FeatureBound
from metalab.core.checks import check_choice, check_int, check_number, check_seed
from metalab.core.seeding import generator

NEIGHBOURING = "replace-one"
CALIBRATIONS = ("analytic", "classical")
MECHANISMS = ("laplace", "gaussian")

# Bisection stops when the bracket's relative width is below this (or after 400 halvings).
_REL_TOL = 1e-13


class SeededNoiseWarning(UserWarning):
    """Privacy noise drawn from a seed the caller chose: reproducible, and therefore not private."""


def noise_generator(seed: int | None, stream: str = "dp-noise") -> torch.Generator:
    """The generator of a release's noise: seeded from the operating system's entropy for ``seed=None``
    (a real release), else from ``seed`` with a :class:`SeededNoiseWarning` (a reproducible simulation)."""
    if seed is None:
        return generator(secrets.randbits(63), stream)
    seed = check_seed(seed)
    warnings.warn(
        f"privacy noise drawn from seed={seed!r}: reproducible, and not private (whoever knows the seed "
        "subtracts the noise); pass seed=None to release",
        SeededNoiseWarning,
        stacklevel=3,
    )
    return generator(seed, stream)


def check_epsilon(epsilon: Any) -> float:
    return check_number("epsilon", epsilon)


def check_delta(delta: Any) -> float:
    return check_number("delta", delta, low=0.0, high=1.0)


def mean_sensitivity(bound: FeatureBound, count: int, norm: str) -> float:
    """``Delta_p = D_p / n``: how far replacing one of ``count`` samples can move the mean sketch (``norm`` l1/l2)."""
    n = check_int("count", count, 1, hint=" (a sketch of no samples has no defined sensitivity)")
    return bound.diameter(norm) / n


def laplace_scale(epsilon: float, sensitivity: float) -> float:
    """Laplace scale ``b = Delta_1 / epsilon`` for ``(epsilon, 0)``-DP."""
    return check_number("sensitivity", sensitivity) / check_epsilon(epsilon)


def laplace_epsilon(scale: float, sensitivity: float) -> float:
    """The ``epsilon`` of Laplace noise of scale ``b``: ``Delta_1 / b``."""
    return check_number("sensitivity", sensitivity) / check_number("scale", scale)


def classical_gaussian_sigma(epsilon: float, delta: float, sensitivity: float) -> float:
    """``sigma = Delta_2 sqrt(2 ln(1.25/delta)) / epsilon`` (Dwork & Roth; only for ``epsilon < 1``)."""
    eps = check_number(
        "epsilon", epsilon, high=1.0, hint=" (the classical Gaussian bound needs epsilon < 1; use 'analytic')"
    )
    return check_number("sensitivity", sensitivity) * math.sqrt(2.0 * math.log(1.25 / check_delta(delta))) / eps


def _gaussian_delta(sigma: float, epsilon: float, sensitivity: float) -> float:
    a = sensitivity / (2.0 * sigma) - epsilon * sigma / sensitivity
    b = -sensitivity / (2.0 * sigma) - epsilon * sigma / sensitivity
    # e^eps * Phi(b) in logs: e^eps alone overflows for large epsilon while Phi(b) underflows.
    return float(max(ndtr(a) - np.exp(epsilon + log_ndtr(b)), 0.0))


def gaussian_delta(sigma: float, epsilon: float, sensitivity: float) -> float:
    """The smallest ``delta`` for which Gaussian noise ``sigma`` on a query of L2 sensitivity ``Delta`` is ``(epsilon, delta)``-DP."""
    return _gaussian_delta(
        check_number("sigma", sigma),
        check_number("epsilon", epsilon, strict=False),
        check_number("sensitivity", sensitivity),
    )


def _bisect_decreasing(f, target: float, lo: float, hi: float) -> float:
    """For ``f`` decreasing on (0, inf): the smallest x (to ``_REL_TOL``) with ``f(x) <= target``; returns the feasible end."""
    while f(lo) <= target:
        lo /= 2.0
        if lo < 1e-300:
            return lo
    while f(hi) > target:
        hi *= 2.0
        if hi > 1e300:
            raise ArithmeticError("no noise level in range meets the privacy target")
    for _ in range(400):
        if hi - lo <= _REL_TOL * hi:
            break
        mid = math.sqrt(lo * hi) if hi / lo > 4.0 else 0.5 * (lo + hi)
        if f(mid) <= target:
            hi = mid
        else:
            lo = mid
    return hi


def analytic_gaussian_sigma(epsilon: float, delta: float, sensitivity: float) -> float:
    """The smallest ``sigma`` (to a relative 1e-13, rounded up) making the Gaussian mechanism ``(epsilon, delta)``-DP.

    Balle & Wang's exact condition, solved by bisection on ``sigma``; the returned value always
    satisfies it (``gaussian_delta(sigma, epsilon, Delta) <= delta``).
    """
    eps, dlt, sens = check_epsilon(epsilon), check_delta(delta), check_number("sensitivity", sensitivity)
    return _bisect_decreasing(lambda s: _gaussian_delta(s, eps, sens), dlt, sens * 1e-3, sens)


def gaussian_epsilon(sigma: float, delta: float, sensitivity: float) -> float:
    """The smallest ``epsilon`` for which Gaussian noise ``sigma`` is ``(epsilon, delta)``-DP (0 when delta allows it)."""
    sig, dlt, sens = check_number("sigma", sigma), check_delta(delta), check_number("sensitivity", sensitivity)
    if _gaussian_delta(sig, 0.0, sens) <= dlt:
        return 0.0
    return _bisect_decreasing(lambda e: _gaussian_delta(sig, e, sens), dlt, 1e-3, 1.0)


@dataclass(frozen=True)
class Laplace:
    """Laplace mechanism: pure ``(epsilon, 0)``-DP, noise calibrated to the L1 sensitivity."""

    epsilon: float

    norm = "l1"
    delta = 0.0

    def __post_init__(self):
        check_epsilon(self.epsilon)

    def noise_scale(self, sensitivity: float) -> float:
        return laplace_scale(self.epsilon, sensitivity)

    def sample(self, shape: tuple[int, ...], scale: float, generator: torch.Generator) -> torch.Tensor:
        # The difference of two Exp(1) draws is Laplace(0, 1).
        e = torch.empty((2, *shape), dtype=torch.float64).exponential_(generator=generator)
        return scale * (e[0] - e[1])


@dataclass(frozen=True)
class Gaussian:
    """Gaussian mechanism: ``(epsilon, delta)``-DP, noise calibrated to the L2 sensitivity."""

    epsilon: float
    delta: float
    calibration: str = "analytic"

    norm = "l2"

    def __post_init__(self):
        check_epsilon(self.epsilon)
        check_delta(self.delta)
        check_choice("calibration", self.calibration, CALIBRATIONS)
        if self.calibration == "classical":
            classical_gaussian_sigma(self.epsilon, self.delta, 1.0)  # rejects epsilon >= 1 now, not later

    def noise_scale(self, sensitivity: float) -> float:
        return calibrate("gaussian", sensitivity, self.epsilon, self.delta, self.calibration)

    def sample(self, shape: tuple[int, ...], scale: float, generator: torch.Generator) -> torch.Tensor:
        return scale * torch.randn(shape, generator=generator, dtype=torch.float64)


def calibrate(
    mechanism: str, sensitivity: float, epsilon: float, delta: float = 0.0, calibration: str = "analytic"
) -> float:
    """Noise level for a privacy target: the Laplace scale ``b = Delta_1 / epsilon``, or the Gaussian ``sigma``.

    Parameters
    ----------
    mechanism : str
        ``"laplace"`` or ``"gaussian"``.
    sensitivity : float
        ``Delta``: the l1 (Laplace) or l2 (Gaussian) sensitivity of the released value.
    epsilon, delta : float
        The privacy target (``delta`` for the Gaussian mechanism only).
    calibration : str
        Gaussian only: ``"analytic"`` (Balle & Wang 2018, the smallest sigma) or ``"classical"``
        (``sigma = Delta sqrt(2 ln(1.25 / delta)) / epsilon``, epsilon < 1).

    Returns
    -------
    float
        The noise scale ``b`` or ``sigma``.
    """
    if check_choice("mechanism", mechanism, MECHANISMS) == "laplace":
        return laplace_scale(epsilon, sensitivity)
    if check_choice("calibration", calibration, CALIBRATIONS) == "classical":
        return classical_gaussian_sigma(epsilon, delta, sensitivity)
    return analytic_gaussian_sigma(epsilon, delta, sensitivity)


def privacy_of(mechanism: str, noise_scale: float, sensitivity: float, delta: float = 0.0) -> tuple[float, float]:
    """The privacy a noise level gives: the inverse of :func:`calibrate`.

    Parameters
    ----------
    mechanism : str
        ``"laplace"`` or ``"gaussian"``.
    noise_scale : float
        The Laplace scale ``b`` or the Gaussian ``sigma``.
    sensitivity : float
        ``Delta`` of the released value.
    delta : float
        Gaussian only: the ``delta`` at which epsilon is read.

    Returns
    -------
    tuple[float, float]
        ``(Delta / b, 0)`` for Laplace; for Gaussian the smallest epsilon at ``delta``, and ``delta``.
    """
    if check_choice("mechanism", mechanism, MECHANISMS) == "laplace":
        return laplace_epsilon(noise_scale, sensitivity), 0.0
    return gaussian_epsilon(noise_scale, delta, sensitivity), check_delta(delta)


@dataclass(frozen=True)
class PrivacyGuarantee:
    """What a noisy sketch guarantees about each contributing data set (replace-one neighbours).

    ``noise_std`` is the per-coordinate standard deviation of the noise now in the mean.
    ``noise_scale`` (Laplace ``b`` or Gaussian ``sigma``) and ``sensitivity`` (``Delta`` in the
    mechanism's norm) describe the release; they are ``None`` after merging several releases.
    ``seeded``: the noise (of some part) came from a seed the caller chose, so the guarantee holds only
    against those who do not know it: a reproducible experiment, not a private release.
    """

    epsilon: float
    delta: float
    mechanism: str  # "laplace", "gaussian (analytic)", "gaussian (classical)", or several joined by " + "
    noise_std: float
    noise_scale: float | None
    sensitivity: float | None
    neighbouring: str = NEIGHBOURING
    seeded: bool = False
