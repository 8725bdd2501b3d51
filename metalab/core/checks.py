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
    """An integer in ``low..high`` (``high=None``: no upper bound), else ValueError naming ``name``.

    Parameters
    ----------
    name : str
        The argument's name, for the message.
    value : Any
        The value to check; a bool is not an integer here.
    low, high : int
        The inclusive bounds (``high=None``: none).
    hint : str
        Text appended to the message.

    Returns
    -------
    int
        ``value`` as an ``int``.

    Raises
    ------
    ValueError
        When ``value`` is not an integer in range.

    Examples
    --------
    >>> check_int("n_tasks", 30, 1)
    30
    >>> check_int("rank", 12, 1, 10, hint=" (at most d)")
    Traceback (most recent call last):
        ...
    ValueError: rank=12 is not allowed: an integer in 1..10 (at most d)
    """
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    ok = ok and value >= low and (high is None or value <= high)
    if not ok:
        allowed = f"an integer >= {low}" if high is None else f"an integer in {low}..{high}"
        raise ValueError(f"{name}={value!r} is not allowed: {allowed}{hint}")
    return int(value)


def check_number(
    name: str, value: Any, *, low: float = 0.0, strict: bool = True, high: float | None = None, hint: str = ""
) -> float:
    """A finite real number > low (>= low when ``strict=False``, and < high when given).

    Parameters
    ----------
    name : str
        The argument's name, for the message.
    value : Any
        The value to check; a bool is not a number here.
    low : float
        The lower bound.
    strict : bool
        Exclude ``low`` itself.
    high : float, optional
        The exclusive upper bound.
    hint : str
        Text appended to the message.

    Returns
    -------
    float
        ``value`` as a ``float``.

    Raises
    ------
    ValueError
        When ``value`` is not a finite real number in range.

    Examples
    --------
    >>> check_number("noise", 0, strict=False)
    0.0
    >>> check_number("step_size", float("inf"))
    Traceback (most recent call last):
        ...
    ValueError: step_size=inf is not allowed: a finite number > 0.0
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if strict else value >= low) and (high is None or value < high)
    if not ok:
        bounds = f"{'>' if strict else '>='} {low}" + (f" and < {high}" if high is not None else "")
        raise ValueError(f"{name}={value!r} is not allowed: a finite number {bounds}{hint}")
    return float(value)


def check_seed(seed: Any) -> int:
    """A seed: an integer in 0..2**63-1.

    Returns
    -------
    int
        ``seed`` as an ``int``.

    Raises
    ------
    ValueError
        When ``seed`` is not an integer in range.

    Examples
    --------
    >>> check_seed(7)
    7
    >>> check_seed(-1)
    Traceback (most recent call last):
        ...
    ValueError: seed=-1 is not allowed: an integer in 0..9223372036854775807
    """
    return check_int("seed", seed, 0, 2**63 - 1)


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """``value`` if it is one of ``choices``.

    Raises
    ------
    ValueError
        When it is not; the message lists the choices.

    Examples
    --------
    >>> check_choice("init", "zero", ("zero", "spectral"))
    'zero'
    >>> check_choice("init", "ones", ("zero", "spectral"))
    Traceback (most recent call last):
        ...
    ValueError: init='ones' is not allowed: one of 'zero', 'spectral'
    """
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not allowed: one of " + ", ".join(map(repr, choices)))
    return value


def as_float_tensor(name: str, value: Any, device: torch.device | None) -> torch.Tensor:
    """A float64 tensor from a tensor (keeping its device unless ``device`` is given) or an array.

    Parameters
    ----------
    name : str
        The argument's name, for the message.
    value : tensor, array or nested sequence of numbers
        The data; a tensor is detached.
    device : torch.device or None
        Where the result lives; None keeps a tensor's device (arrays go to the CPU).

    Returns
    -------
    torch.Tensor
        ``value`` in float64.

    Raises
    ------
    ValueError
        When ``value`` is not numeric, or is complex or boolean.

    Examples
    --------
    >>> tensor = as_float_tensor("X", [[1, 2], [3, 4]], None)
    >>> tensor.dtype, tuple(tensor.shape)
    (torch.float64, (2, 2))
    >>> as_float_tensor("X", [["a"]], None)
    Traceback (most recent call last):
        ...
    ValueError: X of type list is not allowed: a tensor or array of numbers
    """
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
    else:
        if np.iscomplexobj(value):  # before the cast, which would drop the imaginary part silently
            raise ValueError(f"{name} holds complex numbers; expected real numbers")
        try:
            tensor = torch.as_tensor(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError):
            raise ValueError(
                f"{name} of type {type(value).__name__} is not allowed: a tensor or array of numbers"
            ) from None
    if tensor.is_complex() or tensor.dtype == torch.bool:
        raise ValueError(f"{name} has dtype {tensor.dtype}; expected real numbers")
    return tensor.to(device=device if device is not None else tensor.device, dtype=torch.float64)
