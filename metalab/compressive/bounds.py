"""Bounded sets for per-sample features, and the sample conversion every feature map shares.

Differential privacy needs to know how far one sample can move a sketch.  Every feature map here
maps each sample into a known bounded set and describes that set by a :class:`FeatureBound`: the
largest L1 and L2 distance between the features of two samples (the set's diameters).  Under the
replace-one neighbouring relation used throughout this package (two data sets of the same size
``n`` that differ in one sample; ``n`` itself is public), the sensitivity of the *mean* sketch is
the diameter divided by ``n``.

:func:`check_allocation` is the guard every constructor that allocates from a size argument runs first:
a size whose arrays would not fit in the memory the machine can give now is a ValueError naming it,
raised before anything is allocated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from metalab.core.checks import check_int
from metalab.core.cost import available_bytes, describe_bytes

# The largest sketch a feature map accepts unless told otherwise (``max_sketch_size=``).
MAX_SKETCH_SIZE = 1 << 20

NORMS = ("l1", "l2")


@dataclass(frozen=True)
class FeatureBound:
    """Diameters of the set every per-sample feature vector lies in.

    ``diameter_l1 = sup ||phi(x) - phi(x')||_1`` and ``diameter_l2`` likewise in L2, over all
    admissible samples ``x, x'``; ``description`` states the set (for example
    ``"||phi(x)||_inf <= 1"``).
    """

    diameter_l1: float
    diameter_l2: float
    description: str

    def diameter(self, norm: str) -> float:
        if norm not in NORMS:
            raise ValueError(f"norm={norm!r} is not allowed: one of " + ", ".join(map(repr, NORMS)))
        return self.diameter_l1 if norm == "l1" else self.diameter_l2


def box_bound(low: torch.Tensor, high: torch.Tensor, description: str) -> FeatureBound:
    """Features in the box ``low <= phi(x) <= high`` (coordinate-wise): diameters ``||high - low||_p``."""
    width = (high - low).to(torch.float64)
    return FeatureBound(float(width.abs().sum()), float(width.norm()), description)


def l2_ball_bound(radius: float, size: int, description: str) -> FeatureBound:
    """Features in the L2 ball of ``radius`` in ``R^size``: diameters ``2 r sqrt(size)`` (L1) and ``2 r`` (L2)."""
    return FeatureBound(2.0 * radius * math.sqrt(size), 2.0 * radius, description)


def concat_bound(bounds: list[FeatureBound]) -> FeatureBound:
    """The bound of concatenated features: L1 diameters add, L2 diameters add in quadrature."""
    return FeatureBound(
        sum(b.diameter_l1 for b in bounds),
        math.sqrt(sum(b.diameter_l2**2 for b in bounds)),
        "concatenation of: " + "; ".join(b.description for b in bounds),
    )


def check_sketch_size(value: Any, max_sketch_size: int, name: str = "sketch_size") -> int:
    """``1 <= value <= max_sketch_size``, else ValueError naming ``name``."""
    check_int("max_sketch_size", max_sketch_size, 1)
    return check_int(name, value, 1, max_sketch_size, hint=" (pass a larger max_sketch_size to allow more)")


def check_allocation(arguments: dict[str, Any], nbytes: float, what: str) -> None:
    """ValueError naming ``arguments`` when ``what`` (``nbytes`` bytes) exceeds the memory the operating
    system can give this process now; called before allocating, so an absurd size costs nothing."""
    available = available_bytes()
    if nbytes > available:
        named = " and ".join(f"{name}={value!r}" for name, value in arguments.items())
        verb = "is" if len(arguments) == 1 else "are"
        raise ValueError(
            f"{named} {verb} not allowed: {what} would need {describe_bytes(nbytes)}, more than the "
            f"{describe_bytes(available)} this machine can allocate now"
        )


def as_samples(samples: Any, input_dim: int, name: str = "samples") -> torch.Tensor:
    """Samples as a float64 CPU tensor ``(N, input_dim)``: from a tensor, array, list or DataFrame.

    Rejects (ValueError naming ``name``) other shapes, non-numeric columns and non-finite values.
    """
    if hasattr(samples, "to_numpy") and hasattr(samples, "columns"):  # a pandas DataFrame
        from pandas.api.types import is_bool_dtype, is_numeric_dtype

        bad = [c for c, dtype in samples.dtypes.items() if not (is_numeric_dtype(dtype) or is_bool_dtype(dtype))]
        if bad:
            raise ValueError(f"{name} has non-numeric column(s) {bad!r}: every column must be numeric")
        samples = samples.to_numpy(dtype=np.float64)
    if isinstance(samples, torch.Tensor):
        x = samples.detach().to(device="cpu", dtype=torch.float64)
    else:
        try:
            x = torch.from_numpy(np.array(samples, dtype=np.float64))  # a writable copy
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} is not allowed: a numeric (N, {input_dim}) array ({err})") from None
    if x.ndim != 2 or x.shape[1] != input_dim:
        raise ValueError(f"{name} has shape {tuple(x.shape)}, which is not allowed: (N, {input_dim})")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains non-finite values (NaN or inf), which are not allowed")
    return x
