"""Sinusoid regression tasks: the MAML protocol and the sparse-recovery paper's frequency variant.

A task is ``y = A · sin(f · x − phase)`` with A, phase, f drawn uniformly from their ranges and the
inputs x uniform on ``x_range``.  Presets:

* ``"maml"`` (Finn et al. 2017): A ∈ [0.1, 5], phase ∈ [0, π], f = 1, x ∈ [−5, 5], K = 10 shots.
* ``"mlsr"`` (Lou et al. 2021): the frequency varies, f ∈ [0.5, 2], with 20 samples per task.  The
  paper states only the frequency range; amplitude and phase keep the MAML ranges here (set them to
  (1, 1) and (0, 0) for frequency-only tasks).

Each task has ``shots`` support and ``query_shots`` query points, drawn independently; tensors are
(tasks, samples, 1).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import torch

from metalab.core.checks import check_choice, check_int, check_seed
from metalab.core.seeding import generator as seeded_generator

PRESETS: dict[str, dict[str, Any]] = {
    "maml": dict(amplitude=(0.1, 5.0), phase=(0.0, math.pi), frequency=(1.0, 1.0), x_range=(-5.0, 5.0), shots=10),
    "mlsr": dict(amplitude=(0.1, 5.0), phase=(0.0, math.pi), frequency=(0.5, 2.0), x_range=(-5.0, 5.0), shots=20),
}


@dataclass(frozen=True)
class SinusoidBatch:
    """A meta-batch: ``support_x``/``support_y`` (B, K, 1), ``query_x``/``query_y`` (B, Q, 1) and the task
    parameters ``amplitude``, ``phase``, ``frequency`` (B,)."""

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    amplitude: torch.Tensor
    phase: torch.Tensor
    frequency: torch.Tensor

    @property
    def support(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.support_x, self.support_y

    @property
    def query(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.query_x, self.query_y

    @property
    def n_tasks(self) -> int:
        return self.support_x.shape[0]

    def curve(self, x: torch.Tensor) -> torch.Tensor:
        """Every task's true function on the points ``x`` (n,) -> (B, n)."""
        x = torch.as_tensor(x, dtype=self.amplitude.dtype).reshape(1, -1)
        return self.amplitude[:, None] * torch.sin(self.frequency[:, None] * x - self.phase[:, None])


def _check_range(name: str, value: Any) -> tuple[float, float]:
    ok = isinstance(value, (tuple, list)) and len(value) == 2
    ok = ok and all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    if not ok or value[0] > value[1]:
        raise ValueError(f"{name}={value!r} is not allowed: a pair (low, high) of finite numbers with low <= high")
    return float(value[0]), float(value[1])


class SinusoidTasks:
    """The task distribution; ``sample`` draws a meta-batch, ``fixed_tasks`` a reproducible test set."""

    def __init__(
        self,
        *,
        amplitude: tuple[float, float] = (0.1, 5.0),
        phase: tuple[float, float] = (0.0, math.pi),
        frequency: tuple[float, float] = (1.0, 1.0),
        x_range: tuple[float, float] = (-5.0, 5.0),
        shots: int = 10,
        dtype: torch.dtype = torch.float32,
    ):
        self.amplitude = _check_range("amplitude", amplitude)
        self.phase = _check_range("phase", phase)
        self.frequency = _check_range("frequency", frequency)
        self.x_range = _check_range("x_range", x_range)
        self.shots = check_int("shots", shots, 1)
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype={dtype!r} is not allowed: torch.float32 or torch.float64")
        self.dtype = dtype

    @classmethod
    def preset(cls, name: str = "maml", **overrides: Any) -> SinusoidTasks:
        """The ``"maml"`` or ``"mlsr"`` protocol (see the module docstring), with any field overridden."""
        check_choice("preset", name, tuple(PRESETS))
        return cls(**{**PRESETS[name], **overrides})

    def _uniform(self, bounds: tuple[float, float], shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
        low, high = bounds
        return low + (high - low) * torch.rand(shape, generator=g, dtype=self.dtype)

    def sample(
        self,
        n_tasks: int,
        shots: int | None = None,
        query_shots: int | None = None,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> SinusoidBatch:
        """Draw a meta-batch: per task y = A sin(f x − φ) at uniform x, A, φ, f from the distribution's ranges.

        Parameters
        ----------
        n_tasks : int
            B, the number of tasks.
        shots, query_shots : int, optional
            Support points per task (default: the distribution's) and query points (default: ``shots``).
        generator : torch.Generator, optional
            The random stream; None uses a fresh one seeded with ``seed`` (default 0).

        Returns
        -------
        SinusoidBatch
            Support (B, shots, 1) and query (B, query_shots, 1) points and each task's A, φ, f.
        """
        n_tasks = check_int("n_tasks", n_tasks, 1)
        shots = self.shots if shots is None else check_int("shots", shots, 1)
        query_shots = shots if query_shots is None else check_int("query_shots", query_shots, 1)
        if generator is None:
            generator = seeded_generator(check_seed(0 if seed is None else seed), "sinusoid")
        elif not isinstance(generator, torch.Generator):
            raise ValueError(f"generator of type {type(generator).__name__} is not allowed: a torch.Generator or None")
        amplitude = self._uniform(self.amplitude, (n_tasks,), generator)
        phase = self._uniform(self.phase, (n_tasks,), generator)
        frequency = self._uniform(self.frequency, (n_tasks,), generator)
        x = self._uniform(self.x_range, (n_tasks, shots + query_shots, 1), generator)
        y = amplitude[:, None, None] * torch.sin(frequency[:, None, None] * x - phase[:, None, None])
        return SinusoidBatch(x[:, :shots], y[:, :shots], x[:, shots:], y[:, shots:], amplitude, phase, frequency)

    def fixed_tasks(
        self, n_tasks: int = 600, shots: int | None = None, query_shots: int | None = None, *, seed: int = 0
    ) -> SinusoidBatch:
        """A test set that depends only on ``seed`` (a stream separate from training draws).

        Parameters
        ----------
        n_tasks, shots, query_shots
            As for :meth:`sample`.
        seed : int
            The test set's seed.

        Returns
        -------
        SinusoidBatch
        """
        g = seeded_generator(check_seed(seed), "sinusoid-test")
        return self.sample(n_tasks, shots, query_shots, generator=g)
