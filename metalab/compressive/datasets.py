"""Families of data sets for meta-training compressive learners, drawn as batches.

A family draws ``B`` data sets of ``n`` samples in ``d`` dimensions at once: ``X (B, n, d)`` and,
for regression families, targets ``y (B, n)``.  Every sample lies in the box ``[-1, 1]^d`` (and
every target in ``[-1, 1]`` for the real tables), so a network meta-trained on one batch sees
inputs of the same range on the next.

Generated families (each data set has its own random parameters):

* ``gaussian_mixtures``: ``k`` isotropic Gaussian clusters, centres uniform in ``[-spread, spread]^d``,
  per-cluster standard deviations log-uniform in ``scales``, weights ``w_j`` proportional to
  ``U(1/2, 3/2)``; samples clamped into the box.
* ``low_rank``: ``x = mu + U S z + noise * e`` with ``U (d, rank)`` orthonormal, singular values
  ``S`` uniform in ``scales``, ``z, e ~ N(0, I)``, ``mu ~ U(-0.2, 0.2)^d``; clamped into the box.
* ``linear_models``: ``x ~ U(-1, 1)^d``, ``y = w^T x + b + noise * e`` with ``w ~ N(0, I/d)``,
  ``b ~ U(-0.25, 0.25)``, ``e ~ N(0, 1)``.

Real tables (:class:`SklearnTables`): the five tables scikit-learn ships with its code (digits,
iris, wine, breast cancer, diabetes).  A data set is ``n`` random rows and ``d`` random
non-constant columns of one table (plus one more column as the target), standardised per data set
(a column constant on those rows becomes 0), divided by ``clip`` and clamped into ``[-1, 1]``.
Evaluation never sees what training saw: whole tables are held out (``held_out_sources``), and a
fraction of the rows of every other table too (``held_out_rows``); ``split="held_out"`` draws from
both.

:func:`dataset_family` builds a family by name (:data:`FAMILIES`); each family's ``sample(batch,
seed, split)`` returns a :class:`DataBatch`.  For the generated families the ``"held_out"`` split
is a separate random stream, so its data sets are never among those trained on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import torch

from metalab.compressive.bounds import check_allocation
from metalab.core.checks import check_choice, check_int, check_number, check_seed
from metalab.core.seeding import generator

SPLITS = ("train", "held_out")
#: float64 arrays of a draw's size a generator holds at once (noise, gathered centres, the result)
DRAW_COPIES = 4
SKLEARN_SOURCES = ("digits", "iris", "wine", "breast_cancer", "diabetes")

Seed = int | torch.Generator


def _rng(seed: Seed, stream: str) -> torch.Generator:
    """``seed`` itself when it is a generator (the caller owns the stream), else ``generator(seed, stream)``."""
    return seed if isinstance(seed, torch.Generator) else generator(check_seed(seed), stream)


def _check_range(name: str, value: Any) -> tuple[float, float]:
    ok = isinstance(value, (tuple, list)) and len(value) == 2
    low, high = (value[0], value[1]) if ok else (None, None)
    try:
        check_number(name, low)
        check_number(name, high, low=low, strict=False)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{name}={value!r} is not allowed: a pair (low, high) of finite numbers with 0 < low <= high")
    return float(low), float(high)


def _sizes(batch: int, n: int, d: int) -> tuple[int, int, int]:
    """The checked sizes of a draw, refused before allocating when its arrays would not fit in memory."""
    sizes = check_int("batch", batch, 1), check_int("n", n, 1), check_int("d", d, 1)
    check_allocation(
        {"batch": batch, "n": n, "d": d},
        DRAW_COPIES * 8.0 * math.prod(sizes),
        f"drawing {batch} data sets of {n} samples in {d} dimensions",
    )
    return sizes


def gaussian_mixtures(
    batch: int,
    n: int,
    d: int,
    k: int,
    *,
    scales: tuple[float, float] = (0.03, 0.15),
    spread: float = 0.8,
    seed: Seed = 0,
) -> torch.Tensor:
    """``B`` mixtures of ``k`` Gaussian clusters (see the module docstring): ``X (B, n, d)`` float64 in ``[-1, 1]``."""
    batch, n, d = _sizes(batch, n, d)
    k = check_int("k", k, 1, n, hint=f" (at most the number of samples, n={n})")
    low, high = _check_range("scales", scales)
    spread = check_number("spread", spread, high=1.0)
    g = _rng(seed, "mixtures")
    centres = spread * (2.0 * torch.rand(batch, k, d, generator=g, dtype=torch.float64) - 1.0)
    weights = 0.5 + torch.rand(batch, k, generator=g, dtype=torch.float64)
    log_scale = math.log(low) + math.log(high / low) * torch.rand(batch, k, generator=g, dtype=torch.float64)
    labels = torch.multinomial(weights, n, replacement=True, generator=g)  # (B, n)
    noise = torch.randn(batch, n, d, generator=g, dtype=torch.float64)
    x = (
        centres.gather(1, labels.unsqueeze(-1).expand(batch, n, d))
        + log_scale.exp().gather(1, labels)[..., None] * noise
    )
    return x.clamp(-1.0, 1.0)


def low_rank(
    batch: int,
    n: int,
    d: int,
    rank: int,
    noise: float = 0.02,
    *,
    scales: tuple[float, float] = (0.05, 0.3),
    seed: Seed = 0,
) -> torch.Tensor:
    """``B`` data sets near a random ``rank``-dimensional affine subspace: ``X (B, n, d)`` float64 in ``[-1, 1]``."""
    batch, n, d = _sizes(batch, n, d)
    rank = check_int("rank", rank, 1, d, hint=f" (at most the dimension, d={d})")
    noise = check_number("noise", noise, strict=False)
    low, high = _check_range("scales", scales)
    g = _rng(seed, "low-rank")
    basis = torch.linalg.qr(torch.randn(batch, d, rank, generator=g, dtype=torch.float64)).Q
    singular = low + (high - low) * torch.rand(batch, rank, generator=g, dtype=torch.float64)
    mean = 0.2 * (2.0 * torch.rand(batch, 1, d, generator=g, dtype=torch.float64) - 1.0)
    z = torch.randn(batch, n, rank, generator=g, dtype=torch.float64) * singular.unsqueeze(1)
    e = torch.randn(batch, n, d, generator=g, dtype=torch.float64)
    return (mean + z @ basis.transpose(1, 2) + noise * e).clamp(-1.0, 1.0)


def linear_models(
    batch: int, n: int, d: int, noise: float = 0.1, *, seed: Seed = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``B`` random linear regression data sets: ``X (B, n, d)`` uniform in ``[-1, 1]^d`` and ``y (B, n)``."""
    batch, n, d = _sizes(batch, n, d)
    noise = check_number("noise", noise, strict=False)
    g = _rng(seed, "linear")
    x = 2.0 * torch.rand(batch, n, d, generator=g, dtype=torch.float64) - 1.0
    w = torch.randn(batch, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    b = 0.25 * (2.0 * torch.rand(batch, 1, generator=g, dtype=torch.float64) - 1.0)
    e = torch.randn(batch, n, generator=g, dtype=torch.float64)
    return x, (x @ w.unsqueeze(-1)).squeeze(-1) + b + noise * e


# ---------------------------------------------------------------------------------------------
# Real tables


@cache
def _table(source: str) -> np.ndarray:
    """The feature matrix of one scikit-learn table, float64, without its columns constant over all rows."""
    from sklearn import datasets

    data = getattr(datasets, f"load_{source}")().data.astype(np.float64)
    return data[:, data.std(axis=0) > 0]


def standardise(x: torch.Tensor, clip: float) -> torch.Tensor:
    """Columns of ``(..., n, d)`` centred, divided by their standard deviation (1 if it is 0), by ``clip``, clamped to ``[-1, 1]``."""
    mean = x.mean(dim=-2, keepdim=True)
    std = x.std(dim=-2, unbiased=False, keepdim=True)
    z = (x - mean) / torch.where(std > 1e-12 * (1.0 + mean.abs()), std, 1.0)
    return (z / clip).clamp(-1.0, 1.0)


# ---------------------------------------------------------------------------------------------
# Families


@dataclass(frozen=True)
class DataBatch:
    """A batch of data sets: ``X (B, n, d)`` and, for regression families, ``y (B, n)`` (else ``None``)."""

    X: torch.Tensor
    y: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return self.X.shape[0]

    def to(self, device: torch.device | str, dtype: torch.dtype) -> DataBatch:
        y = None if self.y is None else self.y.to(device=device, dtype=dtype)
        return DataBatch(self.X.to(device=device, dtype=dtype), y)

    def __getitem__(self, index: Any) -> DataBatch:
        """The data sets ``index`` picks (a slice or index tensor), still as a batch."""
        return DataBatch(self.X[index], None if self.y is None else self.y[index])


class DatasetFamily:
    """A distribution over data sets: ``name``, ``n``, ``d``, ``has_target`` and ``sample(batch, seed, split)``."""

    name: str
    n: int
    d: int
    has_target: bool = False

    def sample(self, batch: int, seed: Seed = 0, split: str = "train") -> DataBatch:
        """``batch`` data sets (float64, CPU) from ``split`` (``"train"`` or ``"held_out"``)."""
        split = check_choice("split", split, SPLITS)
        return self._sample(batch, _rng(seed, f"{self.name}:{split}"), split)

    def _sample(self, batch: int, g: torch.Generator, split: str) -> DataBatch:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True)
class Mixtures(DatasetFamily):
    """Gaussian mixtures (:func:`gaussian_mixtures`) with ``k`` clusters."""

    n: int
    d: int
    k: int = 3
    scales: tuple[float, float] = (0.03, 0.15)
    spread: float = 0.8
    name = "mixtures"

    def __post_init__(self):
        gaussian_mixtures(1, self.n, self.d, self.k, scales=self.scales, spread=self.spread)

    def _sample(self, batch: int, g: torch.Generator, split: str) -> DataBatch:
        return DataBatch(
            gaussian_mixtures(batch, self.n, self.d, self.k, scales=self.scales, spread=self.spread, seed=g)
        )


@dataclass(frozen=True)
class LowRank(DatasetFamily):
    """Low rank plus noise (:func:`low_rank`)."""

    n: int
    d: int
    rank: int = 1
    noise: float = 0.02
    scales: tuple[float, float] = (0.05, 0.3)
    name = "low_rank"

    def __post_init__(self):
        low_rank(1, self.n, self.d, self.rank, self.noise, scales=self.scales)

    def _sample(self, batch: int, g: torch.Generator, split: str) -> DataBatch:
        return DataBatch(low_rank(batch, self.n, self.d, self.rank, self.noise, scales=self.scales, seed=g))


@dataclass(frozen=True)
class LinearModels(DatasetFamily):
    """Random linear models with noise (:func:`linear_models`); ``y`` is the target."""

    n: int
    d: int
    noise: float = 0.1
    name = "linear"
    has_target = True

    def __post_init__(self):
        linear_models(1, self.n, self.d, self.noise)

    def _sample(self, batch: int, g: torch.Generator, split: str) -> DataBatch:
        return DataBatch(*linear_models(batch, self.n, self.d, self.noise, seed=g))


@dataclass(frozen=True)
class SklearnTables(DatasetFamily):
    """Random row and column subsets of scikit-learn's bundled tables (see the module docstring).

    ``target=True`` adds one more random column of the same table as ``y`` (for ridge regression).
    ``split_seed`` fixes which rows of each table are held out.  A table takes part only if it has
    at least ``d`` (+1 with a target) non-constant columns and ``n`` rows in the split.
    """

    n: int
    d: int
    target: bool = False
    held_out_sources: tuple[str, ...] = ("wine",)
    held_out_rows: float = 0.25
    clip: float = 3.0
    split_seed: int = 0
    name = "sklearn"

    def __post_init__(self):
        check_int("n", self.n, 2)
        check_int("d", self.d, 1)
        for source in self.held_out_sources:
            check_choice("held_out_sources", source, SKLEARN_SOURCES)
        check_number("held_out_rows", self.held_out_rows, high=1.0)
        check_number("clip", self.clip)
        check_seed(self.split_seed)
        for split in SPLITS:
            if not self._pools(split):
                raise ValueError(
                    f"n={self.n}, d={self.d} is not allowed: no table has {self._columns} non-constant columns and "
                    f"{self.n} rows in the {split!r} split (fewer rows, columns, or other held_out_sources)"
                )

    @property
    def has_target(self) -> bool:  # type: ignore[override]
        return self.target

    @property
    def _columns(self) -> int:
        return self.d + int(self.target)

    def _rows(self, source: str) -> tuple[np.ndarray, np.ndarray]:
        """Row indices of ``source`` for training and held out (a fixed permutation by ``split_seed``)."""
        rows = _table(source).shape[0]
        order = torch.randperm(rows, generator=generator(self.split_seed, f"sklearn-rows:{source}")).numpy()
        cut = int(round(rows * (1.0 - self.held_out_rows)))
        return order[:cut], order[cut:]

    def _pools(self, split: str) -> list[tuple[str, np.ndarray]]:
        """The (table, row indices) a data set of ``split`` may be drawn from."""
        pools = []
        for source in SKLEARN_SOURCES:
            if _table(source).shape[1] < self._columns:
                continue
            train_rows, held_rows = self._rows(source)
            if split == "train":
                rows = None if source in self.held_out_sources else train_rows
            else:
                rows = np.arange(_table(source).shape[0]) if source in self.held_out_sources else held_rows
            if rows is not None and len(rows) >= self.n:
                pools.append((source, rows))
        return pools

    def sources(self, split: str = "train") -> tuple[str, ...]:
        """The tables data sets of ``split`` are drawn from."""
        return tuple(source for source, _ in self._pools(check_choice("split", split, SPLITS)))

    def _sample(self, batch: int, g: torch.Generator, split: str) -> DataBatch:
        batch, _, _ = _sizes(batch, self.n, self._columns)
        pools = self._pools(split)
        picks = []
        for source_index in torch.randint(len(pools), (batch,), generator=g).tolist():
            source, rows = pools[source_index]
            table = _table(source)
            chosen_rows = rows[torch.randperm(len(rows), generator=g)[: self.n].numpy()]
            columns = torch.randperm(table.shape[1], generator=g)[: self._columns].numpy()
            picks.append(torch.from_numpy(table[np.ix_(chosen_rows, columns)]))
        data = standardise(torch.stack(picks), self.clip)
        if self.target:
            return DataBatch(data[..., :-1], data[..., -1])
        return DataBatch(data)


FAMILIES: dict[str, type[DatasetFamily]] = {
    "mixtures": Mixtures,
    "low_rank": LowRank,
    "linear": LinearModels,
    "sklearn": SklearnTables,
}


def dataset_family(name: str, *, n: int, d: int, **options: Any) -> DatasetFamily:
    """The family called ``name`` with ``n`` samples of ``d`` features per data set.

    Parameters
    ----------
    name : str
        One of :data:`FAMILIES`: ``mixtures``, ``low_rank``, ``linear``, ``sklearn``.
    n, d : int
        Samples per data set and features per sample.
    **options
        The family's own settings: ``k``/``scales``/``spread`` (mixtures), ``rank``/``noise``/``scales``
        (low_rank), ``noise`` (linear), ``target``/``held_out_sources``/``held_out_rows``/``clip``/``split_seed``
        (sklearn).

    Returns
    -------
    DatasetFamily
        ``family.sample(batch, seed, split)`` draws a :class:`DataBatch` of data sets.
    """
    family = FAMILIES[check_choice("name", name, tuple(FAMILIES))]
    allowed = set(family.__dataclass_fields__) - {"n", "d"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"options {unknown} are not allowed for family {name!r}: one of {sorted(allowed)}")
    return family(n=n, d=d, **options)
