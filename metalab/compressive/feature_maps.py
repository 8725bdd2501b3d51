"""Per-sample feature maps with bounded output: the learned Sketch-Network and randomized baselines.

A feature map ``phi: R^d -> R^m`` turns each sample into ``m`` numbers; the sketch of a data set is
their mean (see :mod:`metalab.compressive.sketch`).  Every map here has a *known bounded output
set*, recorded in ``bound`` (:class:`~metalab.compressive.bounds.FeatureBound`), which is what
makes the differential-privacy sensitivity of the sketch well defined:

=============================  =====================================  ==================  ==================
map                            bounded set                            L1 diameter         L2 diameter
=============================  =====================================  ==================  ==================
SketchNetwork, "tanh"          ``||phi(x)||_inf <= 1``                ``2 m``             ``2 sqrt(m)``
SketchNetwork, "clip"          ``||phi(x)||_2 <= C``                  ``2 C sqrt(m)``     ``2 C``
RandomFourierFeatures          each (cos, sin) pair on a circle of    ``2 sqrt(2) c F``   ``2 c sqrt(F)``
                               radius ``c`` (``F = m / 2``)
RandomQuadraticFeatures        ``0 <= phi_j <= ||a_j||^2 R^2``        ``sum_j ||a_j||^2 R^2``  ``||(||a_j||^2 R^2)_j||_2``
ProjectedSecondMoments         ``(Ax)(Ax)^T``, ``||x||_2 <= R``       box (see class)     ``min(box, sqrt(2) ||A||^2 R^2)``
ClippedIdentity                ``low <= phi(x) <= high``              ``||high-low||_1``  ``||high-low||_2``
=============================  =====================================  ==================  ==================

(Fourier features run cos and sin in float32, so their ``c`` above is ``c (1 + 2^-22)``: see the class.)

Each map also has a ``fingerprint()``: a hash of its kind, sizes and parameters, so that sketches
made by different maps (or by one network before and after training) are never merged.

The bound must hold for *every* finite input, however large, or one extreme record would turn the
features into NaN and a private release would reveal that such a record is present.  Maps whose
arithmetic could overflow therefore clip each input coordinate first (the Sketch-Network at
``INPUT_LIMIT``, random Fourier features where their phases would overflow); clipping, unlike
rejecting, keeps a release's behaviour the same whatever one record holds.  Constructors check the
size of what they allocate against the memory available (:func:`~metalab.compressive.bounds.check_allocation`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from metalab.compressive.bounds import (
    MAX_SKETCH_SIZE,
    FeatureBound,
    as_samples,
    box_bound,
    check_allocation,
    check_sketch_size,
    concat_bound,
    l2_ball_bound,
)
from metalab.core.checks import check_choice, check_int, check_number, check_seed
from metalab.core.seeding import generator
from metalab.nets import MLP

OUTPUTS = ("tanh", "clip")
#: the Sketch-Network clips every input coordinate to [-INPUT_LIMIT, INPUT_LIMIT] before it runs in
#: float32 (largest number 3.4e38): a million times the [-1, 1] box the data-set families draw from,
#: so no real sample changes, while no finite record can overflow the network into NaN features
INPUT_LIMIT = 1e6
#: relative slack on the radius of a (cos, sin) pair computed in float32 (each within 2^-24 of the truth)
FLOAT32_TRIG_SLACK = 2.0**-22


def _hash(parts: Iterable[Any]) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            t = part.detach().to("cpu").contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        else:
            h.update(repr(part).encode())
        h.update(b"|")
    return h.hexdigest()[:32]


class FeatureMap:
    """Interface: ``input_dim``, ``sketch_size``, ``bound``, ``features(samples)``, ``fingerprint()``.

    Subclasses implement ``_features(x)`` on a validated float64 ``(N, input_dim)`` tensor and
    ``_fingerprint_parts()``.
    """

    input_dim: int
    sketch_size: int
    bound: FeatureBound

    def features(self, samples: Any) -> torch.Tensor:
        """Per-sample features ``(N, sketch_size)`` in float64 (no gradient) of validated samples."""
        return self._features(as_samples(samples, self.input_dim)).to(device="cpu", dtype=torch.float64)

    def fingerprint(self) -> str:
        """A short hash identifying this map's kind, sizes and current parameters."""
        return _hash([type(self).__name__, self.input_dim, self.sketch_size, *self._fingerprint_parts()])

    def sketch(self, samples: Any):
        """The :class:`~metalab.compressive.sketch.Sketch` of ``samples`` under this map."""
        from metalab.compressive.sketch import Sketch

        return Sketch.of(self, samples)

    def _features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def _feature_sum(self, x: torch.Tensor) -> torch.Tensor:
        """``sum_i phi(x_i)`` over the rows of a validated block ``x``, float64 ``(m,)`` (what a sketch adds)."""
        return self._features(x).to(device="cpu", dtype=torch.float64).sum(dim=0)

    def _fingerprint_parts(self) -> list[Any]:  # pragma: no cover - interface
        raise NotImplementedError


def _check_radius_rows(x: torch.Tensor, radius: float, clip: bool) -> torch.Tensor:
    """Rows scaled into the L2 ball of ``radius`` (``clip=True``), or ValueError for a row outside."""
    norms = x.norm(dim=-1, keepdim=True)
    if clip:
        return x * (radius / norms.clamp(min=radius))
    worst = float(norms.max()) if norms.numel() else 0.0
    if worst > radius:
        raise ValueError(
            f"samples has a row of L2 norm {worst:.6g}, which is not allowed: at most input_radius={radius!r}"
            " (or pass clip_inputs=True)"
        )
    return x


# ---------------------------------------------------------------------------------------------
# The learned map


class SketchNetwork(nn.Module, FeatureMap):
    """Sketch-Network: an MLP ``R^d -> R^m`` followed by a bounding output layer.

    ``output="tanh"``: ``phi(x) = tanh(MLP(x))``, so ``||phi(x)||_inf <= 1``.
    ``output="clip"``: ``phi(x) = h * min(1, C / ||h||_2)`` with ``h = MLP(x)``, so ``||phi(x)||_2 <= C``
    (``C = clip_norm``; up to one rounding error).

    ``forward`` is differentiable and works on ``(..., N, d)``; :meth:`pool` averages over the sample
    axis (a batch of tasks gives a batch of sketches), for meta-training.  ``features``/``sketch``
    are the float64, no-gradient path used to build :class:`~metalab.compressive.sketch.Sketch`.
    ``seed`` fixes the initial weights (without touching the global generator).

    Every input coordinate is clipped to ``[-INPUT_LIMIT, INPUT_LIMIT]`` before the cast to the
    network's dtype (float32): a finite record of ``|x| >= 3.4e38`` would otherwise become ``inf``,
    and ``inf - inf`` inside the network NaN features, a NaN sketch and a NaN private release that
    tells everyone such a record is there.  Clipping rather than rejecting, because a rejection stops
    the release, which is itself a signal; the bounding output layer keeps the sensitivity as it is.
    """

    def __init__(
        self,
        input_dim: int,
        sketch_size: int,
        hidden: Sequence[int] = (64, 64),
        *,
        activation: str = "relu",
        output: str = "tanh",
        clip_norm: float = 1.0,
        seed: int | None = None,
        max_sketch_size: int = MAX_SKETCH_SIZE,
    ):
        nn.Module.__init__(self)
        self.input_dim = check_int("input_dim", input_dim, 1)
        self.sketch_size = check_sketch_size(sketch_size, max_sketch_size)
        self.output = check_choice("output", output, OUTPUTS)
        self.clip_norm = check_number("clip_norm", clip_norm)
        self.hidden = tuple(check_int(f"hidden[{i}]", width, 1) for i, width in enumerate(hidden))
        widths = [self.input_dim, *self.hidden, self.sketch_size]
        weights = sum((a + 1) * b for a, b in zip(widths[:-1], widths[1:], strict=True))
        check_allocation(
            {"input_dim": self.input_dim, "hidden": self.hidden, "sketch_size": self.sketch_size},
            weights * torch.get_default_dtype().itemsize,
            f"the Sketch-Network's {weights:,} weights",
        )
        if seed is None:
            self.body = MLP([self.input_dim, *self.hidden, self.sketch_size], activation)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(check_seed(seed))
                self.body = MLP([self.input_dim, *self.hidden, self.sketch_size], activation)
        m = self.sketch_size
        if self.output == "tanh":
            self.bound = FeatureBound(2.0 * m, 2.0 * math.sqrt(m), "||phi(x)||_inf <= 1 (tanh output)")
        else:
            self.bound = l2_ball_bound(self.clip_norm, m, f"||phi(x)||_2 <= {self.clip_norm:g} (norm clipping)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._bounded(self.body(x.clamp(-INPUT_LIMIT, INPUT_LIMIT)))

    def _bounded(self, h: torch.Tensor) -> torch.Tensor:
        if self.output == "tanh":
            return torch.tanh(h)
        # Dividing by max(||h||, C) scales only rows longer than C, and has no 0/0 at h = 0.
        return h * (self.clip_norm / h.norm(dim=-1, keepdim=True).clamp(min=self.clip_norm))

    def pool(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mean of ``forward(x)`` over the sample axis ``-2``; ``mask`` (``(..., N)``) keeps only some samples."""
        phi = self(x)
        if mask is None:
            return phi.mean(dim=-2)
        w = mask.to(phi.dtype).unsqueeze(-1)
        return (phi * w).sum(dim=-2) / w.sum(dim=-2).clamp(min=1.0)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        p = next(self.parameters())
        with torch.inference_mode():
            # Clipped before the cast (see the class).  tanh runs in the network's dtype as
            # tanh(h) = 2 sigmoid(2h) - 1 (within 1.2e-7 of torch.tanh; measured 1.7x faster for the
            # whole sketch, torch's float32 tanh being slow on CPU): sigmoid's rounded values lie in
            # [0, 1], so the features lie in [-1, 1] and the bound holds exactly.  Norm clipping runs
            # in float64, so its bound holds to float64 rounding, not float32's.
            h = self.body(x.clamp(-INPUT_LIMIT, INPUT_LIMIT).to(device=p.device, dtype=p.dtype))
            if self.output == "tanh":
                return torch.sigmoid(h.mul_(2.0)).mul_(2.0).sub_(1.0).to(torch.float64)
            return self._bounded(h.to(torch.float64))

    def _fingerprint_parts(self) -> list[Any]:
        return [self.hidden, self.output, self.clip_norm, *(t for _, t in sorted(self.state_dict().items()))]


# ---------------------------------------------------------------------------------------------
# Randomized baselines


def _gaussian_matrix(
    given: Any, name: str, rows: tuple[str, int], cols: int, scale: float, seed: int, stream: str
) -> torch.Tensor:
    """``given`` checked to be ``(rows, cols)``, or a fresh matrix of i.i.d. ``N(0, scale^2)`` entries."""
    rows_name, n_rows = rows
    if given is None:
        check_allocation(
            {"input_dim": cols, rows_name: n_rows}, 8.0 * n_rows * cols, f"the ({rows_name}, input_dim) matrix {name}"
        )
        g = generator(check_seed(seed), stream)
        return scale * torch.randn(n_rows, cols, generator=g, dtype=torch.float64)
    matrix = as_samples(given, cols, name)
    if matrix.shape[0] != n_rows:
        raise ValueError(f"{name} has {matrix.shape[0]} rows, which is not allowed: {rows_name}={n_rows}")
    return matrix


class RandomFourierFeatures(FeatureMap):
    """Random Fourier features ``phi(x) = c [cos(Wx), sin(Wx)]`` (sketch size ``m = 2F``).

    Frequencies ``W`` (``F x d``) have i.i.d. ``N(0, scale^2)`` entries, so
    ``phi(x) . phi(y) = c^2 sum_j cos(w_j^T (x - y))`` approximates ``F c^2 exp(-scale^2 ||x-y||^2 / 2)``
    (with the default ``c = 1/sqrt(F)``, the Gaussian kernel itself).  The (cos, sin) pairs are the
    real form of ``exp(i w^T x)``.  ``frequencies=`` gives ``W`` explicitly (``scale`` is then ignored).

    The phases ``t = Wx`` are computed in float64 and rounded once to float32, where cos and sin
    run (their cost dominates a sketch, and float32's is a third of float64's); each feature is then
    within ``|t| 2^-24`` of the float64 one (``1e-6`` for phases up to 20), far below a sketch's
    sampling error ``1 / sqrt(n)``.  float32 cos and sin are each within one unit in the last place
    (``2^-24``) of the truth, so a pair's radius is ``c`` within ``sqrt(2) 2^-24``: the bound is
    that of the circle of radius ``c (1 + 2^-22)``, which holds for every input.
    Input coordinates are clipped to ``input_limit = 0.5 max_float32 / (d max|W|)``, so that every
    phase ``|w^T x| <= 0.5 max_float32`` stays finite (``cos(inf)`` is NaN): the map is defined and
    bounded on every finite input, and no data comes near the limit (its phases would carry no
    information long before).
    """

    def __init__(
        self,
        input_dim: int,
        n_frequencies: int,
        scale: float = 1.0,
        *,
        seed: int = 0,
        frequencies: torch.Tensor | None = None,
        c_norm: float | None = None,
        max_sketch_size: int = MAX_SKETCH_SIZE,
    ):
        self.input_dim = check_int("input_dim", input_dim, 1)
        self.sketch_size = check_sketch_size(2 * check_int("n_frequencies", n_frequencies, 1), max_sketch_size)
        self.n_frequencies = n_frequencies
        self.scale = check_number("scale", scale)
        self.frequencies = _gaussian_matrix(
            frequencies, "frequencies", ("n_frequencies", n_frequencies), input_dim, self.scale, seed, "rff"
        )
        self.c_norm = 1.0 / math.sqrt(n_frequencies) if c_norm is None else check_number("c_norm", c_norm)
        largest = max(float(self.frequencies.abs().max()), 1.0)
        self.input_limit = 0.5 * torch.finfo(torch.float32).max / (self.input_dim * largest)
        c, F = self.c_norm, n_frequencies
        # One pair moves by at most 2r in L2 (antipodal points) and 2 sqrt(2) r in L1, r its radius.
        r = c * (1.0 + FLOAT32_TRIG_SLACK)
        self.bound = FeatureBound(
            2.0 * math.sqrt(2.0) * r * F,
            2.0 * r * math.sqrt(F),
            f"each (cos, sin) pair within radius c (1 + 2^-22), c={c:.6g} (float32 cos and sin); ||phi(x)||_2 ~ c sqrt(F)",
        )

    def _phases(self, x: torch.Tensor) -> torch.Tensor:
        """``Wx`` in float64, rounded to float32.  float64 phases do not depend on how the rows are
        batched (float32 matrix products do, by an ulp, which the cosine would turn into 1e-6), so
        merged and whole sketches agree to float64 rounding."""
        return (x.clamp(-self.input_limit, self.input_limit) @ self.frequencies.T).to(torch.float32)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        t = self._phases(x)
        return torch.cat([torch.cos(t), torch.sin(t)], dim=-1).to(torch.float64).mul_(self.c_norm)

    def _feature_sum(self, x: torch.Tensor) -> torch.Tensor:
        """``c [sum_i cos(W x_i), sum_i sin(W x_i)]``: the sums of the two halves, without the ``(N, m)`` features
        (1.3x faster than summing them)."""
        t = self._phases(x)
        return torch.cat([torch.cos(t).double().sum(dim=0), torch.sin(t).double().sum(dim=0)]).mul_(self.c_norm)

    def _fingerprint_parts(self) -> list[Any]:
        return [self.c_norm, self.frequencies]


class RandomQuadraticFeatures(FeatureMap):
    """Random rank-one measurements of the second moment: ``phi_j(x) = (a_j^T x)^2``.

    The sketch is ``z_j = a_j^T C a_j`` with ``C = (1/n) sum_i x_i x_i^T`` (uncentred second moment):
    the classical compressive-PCA sketch; :meth:`measure` applies the same operator to any matrix.
    Projections ``a_j`` have i.i.d. ``N(0, 1/d)`` entries (or are given by ``projections=``, ``(m, d)``).
    Samples are scaled into the L2 ball of ``input_radius`` R (``clip_inputs=False``: rejected
    instead), so ``0 <= phi_j(x) <= ||a_j||^2 R^2``.  For compressive ridge regression, sketch the
    joint vectors ``[x, y]``.
    """

    def __init__(
        self,
        input_dim: int,
        sketch_size: int,
        input_radius: float = 1.0,
        *,
        seed: int = 0,
        projections: torch.Tensor | None = None,
        clip_inputs: bool = True,
        max_sketch_size: int = MAX_SKETCH_SIZE,
    ):
        self.input_dim = check_int("input_dim", input_dim, 1)
        self.sketch_size = check_sketch_size(sketch_size, max_sketch_size)
        self.input_radius = check_number("input_radius", input_radius)
        self.clip_inputs = bool(clip_inputs)
        self.projections = _gaussian_matrix(
            projections, "projections", ("sketch_size", sketch_size), input_dim, input_dim**-0.5, seed, "quadratic"
        )
        high = self.projections.pow(2).sum(dim=1) * self.input_radius**2
        self.bound = box_bound(
            torch.zeros_like(high), high, f"0 <= phi_j(x) <= ||a_j||^2 R^2 with ||x||_2 <= R={self.input_radius:g}"
        )

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        x = _check_radius_rows(x, self.input_radius, self.clip_inputs)
        return (x @ self.projections.T).pow(2)

    def measure(self, moment: torch.Tensor) -> torch.Tensor:
        """``(a_j^T M a_j)_j`` for a ``(..., d, d)`` matrix M: the sketch of data with second moment M."""
        a = self.projections.to(moment.dtype)
        return torch.einsum("jd,...de,je->...j", a, moment, a)

    def _fingerprint_parts(self) -> list[Any]:
        return [self.input_radius, self.clip_inputs, self.projections]


class ProjectedSecondMoments(FeatureMap):
    """Second moments of a random projection: the upper triangle of ``(Ax)(Ax)^T``, ``A`` being ``p x d``.

    Off-diagonal entries are multiplied by ``sqrt(2)``, so ``phi(x) . phi(y) = <(Ax)(Ax)^T, (Ay)(Ay)^T>_F``
    and the sketch is an isometric vectorisation of ``A C A^T`` (``C`` the uncentred second moment);
    ``m = p (p + 1) / 2``.  ``A`` has i.i.d. ``N(0, 1/d)`` entries (or ``projection=``).  Samples are
    scaled into the L2 ball of ``input_radius`` R.  Bound: with ``r_i = ||A_i|| R``, diagonal entries in
    ``[0, r_i^2]`` and off-diagonal ones in ``[-sqrt(2) r_i r_k, sqrt(2) r_i r_k]``; in L2 also
    ``sqrt(2) ||A||_op^2 R^2`` (two rank-one PSD matrices of Frobenius norm at most s differ by at most
    ``sqrt(2) s``), whichever is smaller.
    """

    def __init__(
        self,
        input_dim: int,
        proj_dim: int,
        input_radius: float = 1.0,
        *,
        seed: int = 0,
        projection: torch.Tensor | None = None,
        clip_inputs: bool = True,
        max_sketch_size: int = MAX_SKETCH_SIZE,
    ):
        self.input_dim = check_int("input_dim", input_dim, 1)
        p = check_int("proj_dim", proj_dim, 1)
        self.sketch_size = check_sketch_size(p * (p + 1) // 2, max_sketch_size, name="proj_dim*(proj_dim+1)/2")
        self.proj_dim = p
        self.input_radius = check_number("input_radius", input_radius)
        self.clip_inputs = bool(clip_inputs)
        self.projection = _gaussian_matrix(
            projection, "projection", ("proj_dim", p), input_dim, input_dim**-0.5, seed, "second-moments"
        )
        self._rows, self._cols = torch.triu_indices(p, p)
        self._weights = torch.full(self._rows.shape, math.sqrt(2.0), dtype=torch.float64)
        self._weights[self._rows == self._cols] = 1.0
        r = self.projection.norm(dim=1) * self.input_radius
        high = self._weights * r[self._rows] * r[self._cols]
        low = torch.where(self._rows == self._cols, torch.zeros_like(high), -high)
        box = box_bound(low, high, "")
        op = float(torch.linalg.matrix_norm(self.projection, ord=2)) ** 2 * self.input_radius**2
        self.bound = FeatureBound(
            box.diameter_l1,
            min(box.diameter_l2, math.sqrt(2.0) * op),
            f"upper triangle of (Ax)(Ax)^T (off-diagonal x sqrt(2)) with ||x||_2 <= R={self.input_radius:g}",
        )

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        y = _check_radius_rows(x, self.input_radius, self.clip_inputs) @ self.projection.T
        return self._weights * y[:, self._rows] * y[:, self._cols]

    def _fingerprint_parts(self) -> list[Any]:
        return [self.input_radius, self.clip_inputs, self.projection]


class ClippedIdentity(FeatureMap):
    """``phi(x) = clamp(x, low, high)``: the first-moment (mean) sketch of data in a box."""

    def __init__(self, input_dim: int, low: float = -1.0, high: float = 1.0, *, max_sketch_size: int = MAX_SKETCH_SIZE):
        self.input_dim = check_int("input_dim", input_dim, 1)
        self.sketch_size = check_sketch_size(input_dim, max_sketch_size, name="input_dim")
        self.low = check_number("low", low, low=-math.inf)
        self.high = check_number("high", high, low=self.low, hint=f" (above low={self.low!r})")
        ones = torch.ones(input_dim, dtype=torch.float64)
        self.bound = box_bound(self.low * ones, self.high * ones, f"{self.low:g} <= phi_j(x) <= {self.high:g}")

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(self.low, self.high)

    def _fingerprint_parts(self) -> list[Any]:
        return [self.low, self.high]


class ConcatFeatures(FeatureMap):
    """Several maps of the same input side by side (e.g. first and second moments for centred PCA)."""

    def __init__(self, maps: Sequence[FeatureMap], *, max_sketch_size: int = MAX_SKETCH_SIZE):
        self.maps = list(maps)
        if not self.maps or not all(isinstance(f, FeatureMap) for f in self.maps):
            raise ValueError(f"maps={maps!r} is not allowed: a non-empty sequence of feature maps")
        dims = {f.input_dim for f in self.maps}
        if len(dims) != 1:
            raise ValueError(f"maps have input dimensions {sorted(dims)}, which is not allowed: one common input_dim")
        self.input_dim = dims.pop()
        self.sketch_size = check_sketch_size(sum(f.sketch_size for f in self.maps), max_sketch_size)
        self.bound = concat_bound([f.bound for f in self.maps])

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([f._features(x).to(device="cpu", dtype=torch.float64) for f in self.maps], dim=-1)

    def _fingerprint_parts(self) -> list[Any]:
        return [f.fingerprint() for f in self.maps]


def median_scale(samples: Any, k: int = 500, *, seed: int = 0) -> float:
    """Frequency scale ``1 / median ||x - y||`` over ``k`` randomly chosen samples (median heuristic).

    ``k`` larger than the number of samples is a ValueError; all-equal samples are too.
    """
    shape = tuple(getattr(samples, "shape", np.shape(samples)))
    if len(shape) != 2:
        raise ValueError(f"samples has shape {shape}, which is not allowed: (N, d)")
    x = as_samples(samples, shape[1])
    n = x.shape[0]
    k = check_int("k", k, 2, n, hint=f" (at most the number of samples, {n})")
    idx = torch.randperm(n, generator=generator(check_seed(seed), "median-scale"))[:k]
    d = torch.pdist(x[idx])
    med = float(d.median())
    if med <= 0.0:
        raise ValueError("samples are (mostly) identical: the median pairwise distance is 0, so no scale follows")
    return 1.0 / med
