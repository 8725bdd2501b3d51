"""Numeric claims checked with a tolerance, and a runtime pinned so that re-runs on one machine repeat.

A notebook states numbers ("Meta-SP's error settles near 0.043"). Comparing the printed digits as text
fails on another CPU, whose vector kernels and thread count move the last digit. :func:`check` asserts
the claim instead,

    |value - expected| <= max(rel * |expected|, abs)        (element-wise for arrays),

and prints one line with the *expected* value and the tolerance, never the measured digits, so the line
is the same on every machine where the claim holds. A claim that fails raises ``AssertionError`` with
both numbers. :func:`check_less` does the same for an ordering (``smaller < larger``).

:func:`pin_runtime` removes what varies between runs on one machine: the torch thread count, the global
seeds, and kernels torch offers in a deterministic version.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from metalab.core.seeding import seed_everything

#: environment variable that overrides the thread count pin_runtime sets (e.g. to try a run at 2 threads)
THREADS_VARIABLE = "METALAB_THREADS"


def _tolerance_text(rel: float | None, abs: float | None) -> str:
    parts = []
    if rel is not None:
        parts.append(f"rel {rel * 100:g}%" if rel >= 1e-3 else f"rel {rel:g}")
    if abs is not None:
        parts.append(f"abs {abs:g}")
    return ", ".join(parts)


def _plain(label):
    """A table label as Python writes it (``('pca', 10)``, not ``('pca', np.int64(10))``)."""
    if isinstance(label, tuple):
        return tuple(_plain(part) for part in label)
    return label.item() if isinstance(label, np.generic) else label


def _where(value, index: tuple[int, ...]):
    """The row (and column) labels of ``index`` when ``value`` is a pandas table, else the position."""
    if isinstance(value, pd.DataFrame):
        return _plain((value.index[index[0]], value.columns[index[1]]))
    if isinstance(value, pd.Series):
        return _plain(value.index[index[0]])
    return index


def check(name: str, value, expected, *, rel: float | None = None, abs: float | None = None) -> None:
    """Assert ``|value - expected| <= max(rel·|expected|, abs)`` and print ``✓ name ≈ expected (tolerance)``.

    ``value`` and ``expected`` are numbers or array-likes of one shape (then every element must pass, and
    the line says how many were compared). NaN matches only NaN. At least one of ``rel``/``abs`` is
    required: every claim states how close is close enough.
    """
    if rel is None and abs is None:
        raise ValueError(f"check({name!r}): give rel= or abs=, the tolerance the claim allows")
    if (rel is not None and rel < 0) or (abs is not None and abs < 0):
        raise ValueError(f"check({name!r}): rel={rel!r} and abs={abs!r} must be >= 0")
    measured = np.asarray(value, dtype=float)
    wanted = np.asarray(expected, dtype=float)
    if measured.shape != wanted.shape:
        raise AssertionError(f"✗ {name}: measured shape {measured.shape}, expected shape {wanted.shape}")
    bound = np.maximum(np.abs(wanted) * (rel or 0.0), abs or 0.0)
    both_nan = np.isnan(measured) & np.isnan(wanted)
    ok = both_nan | (np.abs(measured - wanted) <= bound)
    tolerance = _tolerance_text(rel, abs)
    if wanted.ndim == 0:
        if not ok:
            raise AssertionError(f"✗ {name}: measured {measured.item():.6g}, expected {wanted.item():g} ({tolerance})")
        print(f"✓ {name} ≈ {wanted.item():g} ({tolerance})")
        return
    if not ok.all():
        bad = [
            f"at {_where(value, index)}: measured {measured[index]:.6g}, expected {wanted[index]:g}"
            for index in map(tuple, np.argwhere(~ok).tolist())
        ]
        raise AssertionError(f"✗ {name} ({tolerance}), {len(bad)} of {ok.size} values off: " + "; ".join(bad))
    print(f"✓ {name}: {ok.size} values as expected ({tolerance})")


def check_less(name: str, smaller, larger) -> None:
    """Assert ``smaller < larger`` (element-wise for arrays) and print ``✓ name``.

    ``name`` states the ordering in words (e.g. "Meta-SP below a third of ANIL at m = 5"); the measured
    numbers appear only in the ``AssertionError`` when it fails.
    """
    low = np.asarray(smaller, dtype=float)
    high = np.asarray(larger, dtype=float)
    holds = low < high
    if not np.all(holds):
        raise AssertionError(
            f"✗ {name}: {np.array2string(low, precision=6)} is not below {np.array2string(high, precision=6)}"
        )
    print(f"✓ {name}")


def _unchecked(*args, **kwargs) -> None:
    """Check nothing: the numbers a text quotes belong to another preset."""


def checks(active: bool = True) -> tuple[Callable[..., None], Callable[..., None]]:
    """``(check, check_less)``, or two functions that check nothing when ``active`` is False.

    A notebook whose text quotes the quick preset's numbers checks them only there:
    ``check, check_less = checks(active=PRESET == "quick")``.
    """
    return (check, check_less) if active else (_unchecked, _unchecked)


def pin_runtime(threads: int | None = None, seed: int = 0) -> int:
    """Pin what makes runs differ on one machine; returns the torch thread count set.

    ``threads`` defaults to ``$METALAB_THREADS``, else 1 (the labs' networks are small, and one thread
    is both the fastest and free of the reduction order that several threads pick). Also seeds Python,
    NumPy and torch with ``seed`` and asks torch for its deterministic kernels where it has them (a
    warning, not an error, where it has none).
    """
    if threads is None:
        threads = int(os.environ.get(THREADS_VARIABLE, "1"))
    if threads < 1:
        raise ValueError(f"threads={threads!r} is not allowed: an integer >= 1")
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    seed_everything(seed)
    return threads
