"""The sketch: the mean of bounded per-sample features, with its count, mergeable and updatable.

A :class:`Sketch` keeps the *sum* of the features (float64) and the count ``n``; ``mean`` is their
ratio.  Keeping the sum makes merging and add/remove exact whenever the sums are (for example
features that are multiples of a power of two), and otherwise equal to the one-pass sketch up to
float64 rounding of the summation order.

* ``a.merge(b, ...)``: the sketch of the union of disjoint data sets (a count-weighted mean).
* ``s.add(samples)`` / ``s.remove(samples)``: update with samples in or out (``remove`` trusts the
  caller that the samples were in; it refuses to remove more samples than the sketch holds).
* ``s.with_noise(Gaussian(eps, delta))`` / ``s.with_noise(Laplace(eps))``: a differentially private
  copy (replace-one neighbours, see :mod:`metalab.compressive.privacy`).

Every sketch carries ``map_id``, the fingerprint of the feature map that made it, and refuses to
merge or update with a different map (a different kind, size, or the same network after its weights
changed): combining such sketches would give a number that means nothing.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import torch

from metalab.compressive.bounds import FeatureBound, as_samples
from metalab.compressive.feature_maps import FeatureMap
from metalab.compressive.privacy import Gaussian, Laplace, PrivacyGuarantee, mean_sensitivity, noise_generator
from metalab.core.cost import MB
from metalab.core.device import torch_threads

#: float64 features computed at once: a block that stays in a core's cache.  Measured (d = 10,
#: m = 500, one thread): 1024-row blocks (4 MB) sketch 1.4x (Fourier) to 2.3x (Sketch-Network)
#: faster than 4096 rows and 5-8x faster than 16384, whose features spill to main memory.
BLOCK_BYTES = 4 * MB


def block_rows(sketch_size: int) -> int:
    """Rows per feature block: ``BLOCK_BYTES / (8 m)``, at least 16."""
    return max(16, BLOCK_BYTES // (8 * sketch_size))


def _block_sums(feature_map: FeatureMap, blocks: list[torch.Tensor]) -> torch.Tensor:
    """``sum_i phi(x_i)`` over the rows of every block (float64 ``(m,)``)."""
    total = torch.zeros(feature_map.sketch_size, dtype=torch.float64)
    for block in blocks:
        total += feature_map._feature_sum(block)
    return total


def feature_sum(feature_map: FeatureMap, samples: Any) -> tuple[torch.Tensor, int]:
    """``(sum_i phi(x_i), N)`` over the rows of ``samples``, :func:`block_rows` rows at a time (float64).

    The samples are validated once; each block's features are summed in float64, so the sum does
    not depend on how the rows are split into blocks (beyond float64 rounding of the order).  With
    ``torch.get_num_threads()`` T > 1, T Python threads each sum a contiguous share of the blocks
    with one torch thread (torch releases the GIL in its kernels): a block is too small for torch's
    own threads to pay (measured 12x slower with 2 of them than with 1 on a loaded 2-core machine,
    each operation waiting for both), while whole shares run independently.
    """
    x = as_samples(samples, feature_map.input_dim)
    blocks = list(x.split(block_rows(feature_map.sketch_size)))
    workers = min(torch.get_num_threads(), len(blocks))
    if workers <= 1:
        return _block_sums(feature_map, blocks), x.shape[0]
    share = math.ceil(len(blocks) / workers)
    shares = [blocks[i : i + share] for i in range(0, len(blocks), share)]
    with torch_threads(1), ThreadPoolExecutor(len(shares)) as pool:
        totals = list(pool.map(partial(_block_sums, feature_map), shares))
    return torch.stack(totals).sum(dim=0), x.shape[0]


@dataclass(frozen=True, eq=False)
class Sketch:
    """Sum of per-sample features ``total`` (``(m,)`` float64) over ``count`` samples of one feature map."""

    total: torch.Tensor
    count: int
    map_id: str
    bound: FeatureBound
    privacy: PrivacyGuarantee | None = None
    feature_map: FeatureMap | None = field(default=None, repr=False)

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def empty(cls, feature_map: FeatureMap) -> Sketch:
        """The sketch of no samples (a starting point for :meth:`add`; it has no mean)."""
        if not isinstance(feature_map, FeatureMap):
            raise ValueError(f"feature_map={feature_map!r} is not allowed: a metalab.compressive FeatureMap")
        total = torch.zeros(feature_map.sketch_size, dtype=torch.float64)
        return cls(total, 0, feature_map.fingerprint(), feature_map.bound, None, feature_map)

    @classmethod
    def of(cls, feature_map: FeatureMap, samples: Any) -> Sketch:
        """The sketch of ``samples`` (``(N, d)``: tensor, array or DataFrame) under ``feature_map``."""
        return cls.empty(feature_map).add(samples)

    # -- reading -----------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return int(self.total.shape[0])

    @property
    def mean(self) -> torch.Tensor:
        """The sketch proper: ``(1/n) sum_i phi(x_i)`` (plus the noise, for a private sketch)."""
        if self.count == 0:
            raise ValueError("count=0 is not allowed: a sketch of no samples has no mean")
        return self.total / self.count

    @property
    def private(self) -> bool:
        return self.privacy is not None

    def distance(self, other: Sketch) -> float:
        """``max_j |mean_j - other.mean_j|``: how far apart two sketches of the same map are (l-infinity)."""
        self._check_compatible(other)
        return float((self.mean - other.mean).abs().max())

    # -- combining ---------------------------------------------------------------------------

    def _check_compatible(self, other: Any, name: str = "other") -> None:
        if not isinstance(other, Sketch):
            raise ValueError(f"{name}={other!r} is not allowed: a Sketch")
        if other.size != self.size:
            raise ValueError(
                f"{name} has sketch size {other.size}, which is not allowed: merging needs the same size ({self.size})"
            )
        if other.map_id != self.map_id:
            raise ValueError(
                f"{name} has map_id={other.map_id!r}, which is not allowed: sketches must come from the same "
                f"feature map (map_id={self.map_id!r})"
            )

    def merge(self, *others: Sketch) -> Sketch:
        """The sketch of the union of the (disjoint) data sets: sums and counts add.

        Private sketches merge only with private ones; the result protects every part's data with
        the weakest part's ``(epsilon, delta)`` (parallel composition over disjoint data).
        """
        for i, other in enumerate(others):
            self._check_compatible(other, f"others[{i}]")
        parts = (self, *others)
        flags = {s.private for s in parts}
        if len(flags) > 1:
            raise ValueError(
                "merging private and non-private sketches is not allowed: the result would protect only part of "
                "the data (add noise to every part first)"
            )
        total = torch.stack([s.total for s in parts]).sum(dim=0)
        count = sum(s.count for s in parts)
        privacy = None
        if self.private and count > 0:
            guarantees = [s.privacy for s in parts]
            std = math.sqrt(sum((s.count * s.privacy.noise_std) ** 2 for s in parts)) / count
            privacy = PrivacyGuarantee(
                epsilon=max(g.epsilon for g in guarantees),
                delta=max(g.delta for g in guarantees),
                mechanism=" + ".join(sorted({g.mechanism for g in guarantees})),
                noise_std=std,
                noise_scale=None if others else self.privacy.noise_scale,
                sensitivity=None if others else self.privacy.sensitivity,
                seeded=any(g.seeded for g in guarantees),
            )
        return replace(self, total=total, count=count, privacy=privacy)

    def _resolve_map(self, feature_map: FeatureMap | None) -> FeatureMap:
        fmap = self.feature_map if feature_map is None else feature_map
        if fmap is None:
            raise ValueError(
                "feature_map=None is not allowed here: this sketch holds no map; pass the one that made it"
            )
        if not isinstance(fmap, FeatureMap) or fmap.fingerprint() != self.map_id:
            raise ValueError(
                "feature_map is not allowed: it is not the map that made this sketch (different kind, size or "
                f"parameters; the sketch's map_id is {self.map_id!r})"
            )
        return fmap

    def add(self, samples: Any, feature_map: FeatureMap | None = None) -> Sketch:
        """The sketch with ``samples`` added (the stored map, or ``feature_map`` with the same fingerprint)."""
        if self.private:
            raise ValueError("adding samples to a private sketch is not allowed: the new samples would be unprotected")
        fmap = self._resolve_map(feature_map)
        total, k = feature_sum(fmap, samples)
        return replace(self, total=self.total + total, count=self.count + k, feature_map=fmap)

    def remove(self, samples: Any, feature_map: FeatureMap | None = None) -> Sketch:
        """The sketch with ``samples`` (which the caller says were added before) taken out.

        Removing more samples than the sketch holds is a ValueError.  On a private sketch the noise
        stays in the sum, so the noise on the mean grows by ``n / (n - k)``.
        """
        fmap = self._resolve_map(feature_map)
        total, k = feature_sum(fmap, samples)
        if k > self.count:
            raise ValueError(
                f"samples has {k} rows, which is not allowed: the sketch holds only count={self.count} samples"
            )
        count = self.count - k
        privacy = self.privacy
        if privacy is not None:
            std = privacy.noise_std * self.count / count if count else math.inf
            privacy = replace(privacy, noise_std=std)
        return replace(self, total=self.total - total, count=count, privacy=privacy, feature_map=fmap)

    # -- privacy -----------------------------------------------------------------------------

    def sensitivity(self, norm: str) -> float:
        """``Delta_p = D_p / n``: the largest change of ``mean`` when one sample is replaced (``norm`` l1/l2)."""
        return mean_sensitivity(self.bound, self.count, norm)

    def with_noise(self, mechanism: Gaussian | Laplace, *, seed: int | None = None) -> Sketch:
        """A private copy: noise calibrated to this sketch's sensitivity added to every coordinate of the mean.

        ``seed=None`` draws fresh randomness from the operating system, as a real release must (noise
        from a known seed can be subtracted); a seed makes a reproducible experiment, not a release: it
        raises a :class:`~metalab.compressive.privacy.SeededNoiseWarning` and the result's
        ``privacy.seeded`` is True.  A sum that is not finite is refused: its NaN would be released as
        it is and show that some record broke the features.
        """
        if not isinstance(mechanism, (Gaussian, Laplace)):
            raise ValueError(f"mechanism={mechanism!r} is not allowed: a Gaussian(...) or Laplace(...) mechanism")
        if self.private:
            raise ValueError(
                "adding noise to a sketch that is already private is not allowed: noise the raw sketch once"
            )
        if not bool(torch.isfinite(self.total).all()):
            raise ValueError(
                "a sketch whose sum is not finite (NaN or inf) is not allowed in a release: its features left "
                "their bound, which the release would reveal"
            )
        sens = self.sensitivity(mechanism.norm)
        scale = mechanism.noise_scale(sens)
        noise = mechanism.sample((self.size,), scale, noise_generator(seed))
        if isinstance(mechanism, Laplace):
            name, std = "laplace", math.sqrt(2.0) * scale
        else:
            name, std = f"gaussian ({mechanism.calibration})", scale
        privacy = PrivacyGuarantee(
            epsilon=mechanism.epsilon,
            delta=mechanism.delta,
            mechanism=name,
            noise_std=std,
            noise_scale=scale,
            sensitivity=sens,
            seeded=seed is not None,
        )
        return replace(self, total=self.total + self.count * noise, privacy=privacy)


def merge_sketches(sketches: list[Sketch]) -> Sketch:
    """Merge a non-empty list of sketches (see :meth:`Sketch.merge`)."""
    sketches = list(sketches)
    if not sketches:
        raise ValueError("sketches=[] is not allowed: at least one sketch")
    if not isinstance(sketches[0], Sketch):
        raise ValueError(f"sketches[0]={sketches[0]!r} is not allowed: a Sketch")
    return sketches[0].merge(*sketches[1:])
