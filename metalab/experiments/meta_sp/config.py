"""The settings of the Meta-SP experiment: sizes, methods, grids; ``quick`` runs in seconds, ``paper``
at the published scale."""

from __future__ import annotations

import dataclasses

from metalab.core import Config, ConfigError, Control, param
from metalab.subspace import METHODS

PARTS = ("convergence", "samples", "rank", "noise_floor", "air_quality", "time_to_target")
ALL_METHODS = ("meta_sp", "mom", "altmin_gd", "burer_monteiro", "nuclear_norm", "anil", "single_task", "oracle")
#: the stated noise-floor rate O(sigma sqrt(d T / m)) as log-log slopes per factor
EXPECTED_SLOPES = {"noise": 1.0, "d": 0.5, "n_tasks": 0.5, "n_samples": -0.5}


#: what the ``paper`` preset keeps of the published regime, what it scales down, and why
PAPER_SCALE = (
    "The published regime: d = 100, s = 5, T = 400, 10 repeats per grid point, the phase transition in m, "
    "1,210 air-quality tasks; about 12 CPU minutes on one core. Scaled down: m from 6 to 30 (the "
    "transition lies between 8 and 15, and at m = 5 every method but the oracle fails); Burer-Monteiro left out "
    "(10 s a fit, and at m = 8 no better than MoM). The baselines get 500 iterations and Meta-SP 1,500: with the "
    "step 1/max λmax Meta-SP still improves after 1,000 iterations at m = 8, while ANIL's 500 Adam steps already "
    "cost about 2.7 times Meta-SP's 1,500 (measured over the samples part)."
)
PAPER_PRESET = {
    "d": 100,
    "rank": 5,
    "n_tasks": 400,
    "n_samples": 25,
    "max_iter": 1500,
    "baseline_iter": 500,
    "tol": 1e-6,
    "methods": ("meta_sp", "mom", "altmin_gd", "nuclear_norm", "anil", "single_task", "oracle"),
    "samples_grid": (6, 8, 10, 12, 15, 20, 30),
    "noise_grid": (0.03, 0.1, 0.3, 1.0),
    "dim_grid": (25, 50, 100, 200),
    "tasks_grid": (100, 200, 400, 800),
    "floor_samples_grid": (25, 50, 100, 200),
    "repeats": 10,
    "eval_tasks": 200,
    "eval_support": 10,  # above s + 1: with s = 5 support points an unregularised head fit interpolates the noise
    "aq_max_tasks": 1210,
}


@dataclasses.dataclass(frozen=True)
class MetaSPConfig(Config):
    """Settings of the Meta-SP experiment; ``quick`` runs in seconds, ``paper`` at published scale."""

    d: int = param(20, ge=2, le=2000, label="dimension d", control=Control(high=200), help="feature dimension d")
    rank: int = param(3, ge=1, le=200, label="rank s", control=Control(high=20), help="rank s of the shared subspace")
    n_tasks: int = param(
        100, ge=2, le=100_000, label="tasks T", control=Control(high=1000), help="number of training tasks T"
    )
    n_samples: int = param(
        10, ge=1, le=100_000, label="samples per task m", control=Control(high=100), help="samples per task m"
    )
    noise: float = param(
        0.1, ge=0.0, le=100.0, label="noise σ", control=Control(high=2.0, step=0.01), help="noise standard deviation σ"
    )
    step_size: float | None = param(
        None,
        gt=0.0,
        le=100.0,
        label="step size η",
        control=Control(widget="number", low=0.001, step=0.05, format="%.3f"),
        help="Meta-SP step size η (None: 1/max_t λmax(X_tᵀX_t/m))",
    )
    max_iter: int = param(
        150,
        ge=1,
        le=100_000,
        label="iterations",
        control=Control(high=1000),
        help="iterations of Meta-SP (and of the iterative baselines unless baseline_iter is set)",
    )
    baseline_iter: int | None = param(
        None,
        ge=1,
        le=100_000,
        help="iterations of the iterative baselines (ANIL, AltMinGD, Burer-Monteiro, nuclear norm); None: max_iter",
    )
    tol: float = param(1e-10, ge=0.0, le=1.0, help="relative-change stopping tolerance")
    init: str = param("zero", choices=("zero", "spectral"), label="initialisation", help="Meta-SP initialisation")
    refit: str = param(
        "none", choices=("none", "ls"), label="refit after thresholding", help="Meta-SP least-squares refit"
    )
    methods: tuple[str, ...] = param(
        ALL_METHODS, choices=tuple(METHODS), label="methods to compare", help="methods to compare"
    )
    parts: tuple[str, ...] = param(PARTS, choices=PARTS, help="parts of the experiment to run")
    samples_grid: tuple[int, ...] = param(
        (5, 8, 12, 20), ge=1, le=100_000, label="samples grid", help="samples per task m for the 'samples' part"
    )
    noise_grid: tuple[float, ...] = param(
        (0.05, 0.1, 0.2, 0.4), gt=0.0, le=100.0, help="sigma values for 'noise_floor'"
    )
    dim_grid: tuple[int, ...] = param((10, 20, 40), ge=2, le=2000, help="d values for 'noise_floor'")
    tasks_grid: tuple[int, ...] = param((50, 100, 200), ge=2, le=100_000, help="T values for 'noise_floor'")
    floor_samples_grid: tuple[int, ...] = param((10, 20, 40), ge=1, le=100_000, help="m values for 'noise_floor'")
    repeats: int = param(
        2, ge=1, le=1000, label="repeats", control=Control(high=5), help="independent instances per grid point"
    )
    eval_tasks: int = param(50, ge=1, le=100_000, help="new tasks for few-shot evaluation")
    eval_support: int = param(5, ge=1, le=100_000, help="support samples per new task")
    target_error: float = param(0.1, gt=0.0, le=1.0, help="sin-theta target for 'time_to_target'")
    aq_rank: int = param(3, ge=1, le=21, help="rank for the air-quality part")
    aq_max_tasks: int = param(400, ge=10, le=100_000, help="station-days used from the air-quality data")
    aq_support: int = param(6, ge=1, le=23, help="support hours per held-out station-day")
    aq_ridge: float = param(1.0, ge=0.0, le=1e6, help="ridge on every few-shot head fit of the air-quality part")
    data_path: str = param("", help="air-quality folder (empty: $METALAB_DATA)")
    device: str = param("cpu", choices=("auto", "cpu", "cuda"), help="torch device")
    seed: int = param(0, ge=0, le=2**31 - 1, label="seed", control=Control(widget="number"), help="random seed")

    presets = {
        "quick": {},
        "paper": PAPER_PRESET,
    }

    def iterations(self, method: str) -> int:
        """The iteration budget of ``method``: ``max_iter`` for Meta-SP, ``baseline_iter`` (if set) for the rest."""
        return self.max_iter if method == "meta_sp" or self.baseline_iter is None else self.baseline_iter

    def check(self) -> None:
        limit = min(self.n_tasks, self.d) - 1
        if not 1 <= self.rank <= limit:
            raise ConfigError("rank", self.rank, f"an integer in 1..min(n_tasks, d)-1 = 1..{limit}")
        if not self.methods:
            raise ConfigError("methods", self.methods, "at least one of " + ", ".join(METHODS))
        if not self.parts:
            raise ConfigError("parts", self.parts, "at least one of " + ", ".join(PARTS))
        smallest_d = min(self.dim_grid)
        if "noise_floor" in self.parts and self.rank >= min(smallest_d, min(self.tasks_grid)):
            raise ConfigError("dim_grid", self.dim_grid, f"every d and T above rank={self.rank}")


CONFIG = MetaSPConfig
