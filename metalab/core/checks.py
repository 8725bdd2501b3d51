"""Argument checks shared by every public entry point.

Each returns the value converted (``int``/``float``) or raises ``ValueError`` in the project's one
phrasing: ``name=value is not allowed: what is allowed``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def check_int(name: str, value: Any, low: int, high: int | None = None, hint: str = "") -> int:
    """An integer in ``low..high`` (``high=None``: no upper bound), else ValueError naming ``name``."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    ok = ok and value >= low and (high is None or value <= high)
    if not ok:
        allowed = f"an integer >= {low}" if high is None else f"an integer in {low}..{high}"
        raise ValueError(f"{name}={value!r} is not allowed: {allowed}{hint}")
    return int(value)


def check_number(
    name: str, value: Any, *, low: float = 0.0, strict: bool = True, high: float | None = None, hint: str = ""
) -> float:
    """A finite real number > low (>= low when ``strict=False``, and < high when given)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if strict else value >= low) and (high is None or value < high)
    if not ok:
        bounds = f"{'>' if strict else '>='} {low}" + (f" and < {high}" if high is not None else "")
        raise ValueError(f"{name}={value!r} is not allowed: a finite number {bounds}{hint}")
    return float(value)


def check_seed(seed: Any) -> int:
    """A seed: an integer in 0..2**63-1."""
    return check_int("seed", seed, 0, 2**63 - 1)


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """``value`` if it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not allowed: one of " + ", ".join(map(repr, choices)))
    return value


def as_float_tensor(name: str, value: Any, device: torch.device | None) -> torch.Tensor:
    """A float64 tensor from a tensor (keeping its device unless ``device`` is given) or an array."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
    else:
        try:
            tensor = torch.as_tensor(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError):
            raise ValueError(
                f"{name} of type {type(value).__name__} is not allowed: a tensor or array of numbers"
            ) from None
    if tensor.is_complex() or tensor.dtype == torch.bool:
        raise ValueError(f"{name} has dtype {tensor.dtype}; expected real numbers")
    return tensor.to(device=device if device is not None else tensor.device, dtype=torch.float64)
