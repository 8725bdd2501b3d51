"""Meta Subspace Pursuit (Zhang, Liu, Zhang, arXiv 2409.02708): the paper's story as one record stream.

Parts (select with ``Config.parts``):

* ``convergence``   error of every method per iteration on one instance (Meta-SP converges linearly
  to a noise floor);
* ``samples``       final subspace error against samples per task m (Meta-SP wins when m is small);
* ``rank``          Meta-SP with a mis-specified rank s-1, s, s+1;
* ``noise_floor``   Meta-SP's final ||Θ̂ - Θ*||_F as sigma, d, T and m vary one at a time, against the
  stated rate O(sigma sqrt(dT/m)) (log-log slopes 1, 1/2, 1/2, -1/2);
* ``air_quality``   few-shot PM2.5 prediction on held-out Beijing station-days (needs the data; the
  part is skipped with a warning when it is not found);
* ``time_to_target`` seconds each method needs to reach a target subspace error.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from metalab.plots import meta_sp as plots
from metalab.core import (
    Config,
    ConfigError,
    Record,
    Stopwatch,
    param,
    resolve_device,
    seed_everything,
)
from metalab.core.records import stream_units
from metalab.data import (
    LinearTasks,
    find_air_quality_dir,
    hps_tasks,
    load_air_quality_tasks,
)
from metalab.subspace import (
    METHODS,
    SubspaceResult,
    few_shot_mse,
    fit,
    iterate_meta_subspace_pursuit,
    sin_theta,
)

NAME = "meta_sp"
TITLE = "Meta Subspace Pursuit"
PARTS = ("convergence", "samples", "rank", "noise_floor", "air_quality", "time_to_target")
ALL_METHODS = ("meta_sp", "mom", "altmin_gd", "burer_monteiro", "nuclear_norm", "anil", "single_task", "oracle")
#: the stated noise-floor rate O(sigma sqrt(d T / m)) as log-log slopes per factor
EXPECTED_SLOPES = {"noise": 1.0, "d": 0.5, "n_tasks": 0.5, "n_samples": -0.5}


@dataclasses.dataclass(frozen=True)
class MetaSPConfig(Config):
    """Settings of the Meta-SP experiment; ``quick`` runs in seconds, ``paper`` at published scale."""

    d: int = param(20, ge=2, le=2000, help="feature dimension d")
    rank: int = param(3, ge=1, le=200, help="rank s of the shared subspace")
    n_tasks: int = param(100, ge=2, le=100_000, help="number of training tasks T")
    n_samples: int = param(10, ge=1, le=100_000, help="samples per task m")
    noise: float = param(0.1, ge=0.0, le=100.0, help="noise standard deviation sigma")
    step_size: float | None = param(
        None, gt=0.0, le=100.0, help="Meta-SP step size eta (None: 1/max_t λmax(X_tᵀX_t/m))"
    )
    max_iter: int = param(150, ge=1, le=100_000, help="iterations of the iterative methods")
    tol: float = param(1e-10, ge=0.0, le=1.0, help="relative-change stopping tolerance")
    init: str = param("zero", choices=("zero", "spectral"), help="Meta-SP initialisation")
    refit: str = param("none", choices=("none", "ls"), help="Meta-SP least-squares refit after thresholding")
    methods: tuple[str, ...] = param(ALL_METHODS, choices=tuple(METHODS), help="methods to compare")
    parts: tuple[str, ...] = param(PARTS, choices=PARTS, help="parts of the experiment to run")
    samples_grid: tuple[int, ...] = param(
        (5, 8, 12, 20), ge=1, le=100_000, help="samples per task m for the 'samples' part"
    )
    noise_grid: tuple[float, ...] = param(
        (0.05, 0.1, 0.2, 0.4), gt=0.0, le=100.0, help="sigma values for 'noise_floor'"
    )
    dim_grid: tuple[int, ...] = param((10, 20, 40), ge=2, le=2000, help="d values for 'noise_floor'")
    tasks_grid: tuple[int, ...] = param((50, 100, 200), ge=2, le=100_000, help="T values for 'noise_floor'")
    floor_samples_grid: tuple[int, ...] = param((10, 20, 40), ge=1, le=100_000, help="m values for 'noise_floor'")
    repeats: int = param(2, ge=1, le=1000, help="independent instances per grid point")
    eval_tasks: int = param(50, ge=1, le=100_000, help="new tasks for few-shot evaluation")
    eval_support: int = param(5, ge=1, le=100_000, help="support samples per new task")
    target_error: float = param(0.1, gt=0.0, le=1.0, help="sin-theta target for 'time_to_target'")
    aq_rank: int = param(3, ge=1, le=21, help="rank for the air-quality part")
    aq_max_tasks: int = param(400, ge=10, le=100_000, help="station-days used from the air-quality data")
    aq_support: int = param(6, ge=1, le=23, help="support hours per held-out station-day")
    aq_ridge: float = param(1.0, ge=0.0, le=1e6, help="ridge on every few-shot head fit of the air-quality part")
    data_path: str = param("", help="air-quality folder (empty: $METALAB_DATA)")
    device: str = param("cpu", choices=("auto", "cpu", "cuda"), help="torch device")
    seed: int = param(0, ge=0, le=2**31 - 1, help="random seed")

    presets = {
        "quick": {},
        "paper": {
            "d": 100,
            "rank": 5,
            "n_tasks": 400,
            "n_samples": 25,
            "max_iter": 500,
            "samples_grid": (5, 8, 10, 15, 20, 30, 40, 60),
            "noise_grid": (0.03, 0.1, 0.3, 1.0),
            "dim_grid": (25, 50, 100, 200),
            "tasks_grid": (100, 200, 400, 800),
            "floor_samples_grid": (25, 50, 100, 200),
            "repeats": 10,
            "eval_tasks": 200,
            "aq_max_tasks": 1210,
        },
    }

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


# --------------------------------------------------------------------------------------------
# fitting helpers (public: the benchmark and the notebook reuse them)


def _method_kwargs(method: str, config: MetaSPConfig, seed: int) -> dict[str, Any]:
    """The config's shared settings that ``method`` accepts (iteration budget, tolerance, seed)."""
    accepted = inspect.signature(METHODS[method]).parameters
    shared = {"max_iter": config.max_iter, "tol": config.tol, "seed": seed}
    kwargs = {k: v for k, v in shared.items() if k in accepted}
    if method == "meta_sp":
        kwargs.update(step_size=config.step_size, init=config.init, refit=config.refit)
    return kwargs


def make_instance(config: MetaSPConfig, seed: int, **overrides: Any) -> LinearTasks:
    """A seeded hard-parameter-sharing instance with the config's sizes, ``overrides`` applied."""
    settings = {
        "d": config.d,
        "rank": config.rank,
        "n_tasks": config.n_tasks,
        "n_samples": config.n_samples,
        "noise": config.noise,
        **overrides,
    }
    return hps_tasks(seed=seed, device=resolve_device(config.device), **settings)


def fit_method(method: str, tasks: LinearTasks, rank: int, config: MetaSPConfig, seed: int) -> SubspaceResult:
    """Fit ``method`` on ``tasks`` with the config's shared settings, tracking error to the true basis."""
    return fit(method, tasks.X, tasks.y, rank, true_basis=tasks.basis, **_method_kwargs(method, config, seed))


def _evaluation(result, tasks, config: MetaSPConfig, seed: int) -> dict[str, float]:
    """Subspace errors against the truth and few-shot MSE on new tasks from the same subspace."""
    new = tasks.new_tasks(config.eval_tasks, 2 * config.eval_support, seed=seed + 7919)
    k = config.eval_support
    return {
        "sin_theta": sin_theta(result.basis, tasks.basis),
        "sin_theta_fro": sin_theta(result.basis, tasks.basis, norm="fro"),
        "few_shot_mse": few_shot_mse(result.basis, new.X[:, :k], new.y[:, :k], new.X[:, k:], new.y[:, k:]),
        "seconds": result.seconds,
        "n_iter": result.n_iter,
    }


# --------------------------------------------------------------------------------------------
# the parts; each is a list of units, each unit a callable yielding records


def _convergence_units(config: MetaSPConfig) -> list[Callable[[], Iterator[Record]]]:
    tasks = make_instance(config, config.seed)
    fixed = {"n_samples": config.n_samples, "rank": config.rank}

    def stream_meta_sp() -> Iterator[Record]:
        steps = iterate_meta_subspace_pursuit(
            tasks.X, tasks.y, config.rank, true_basis=tasks.basis, **_method_kwargs("meta_sp", config, config.seed)
        )
        for state in steps:
            yield Record(
                "convergence",
                "meta_sp",
                state.iteration,
                {
                    **fixed,
                    "sin_theta": state.sin_theta,
                    "objective": state.objective,
                    "seconds": state.seconds,
                },
            )

    def replay(method: str) -> Callable[[], Iterator[Record]]:
        def unit() -> Iterator[Record]:
            result = fit_method(method, tasks, config.rank, config, config.seed)
            for row in result.history:
                yield Record(
                    "convergence",
                    method,
                    int(row["iteration"]),
                    {
                        **fixed,
                        "sin_theta": row["sin_theta"],
                        "objective": row["objective"],
                        "seconds": row["seconds"],
                    },
                )

        return unit

    return [stream_meta_sp if m == "meta_sp" else replay(m) for m in config.methods]


def _samples_units(config: MetaSPConfig) -> list[Callable[[], Iterator[Record]]]:
    def unit(m: int, repeat: int) -> Callable[[], Iterator[Record]]:
        def run_unit() -> Iterator[Record]:
            seed = config.seed + 1009 * repeat + m
            tasks = make_instance(config, seed, n_samples=m)
            for method in config.methods:
                result = fit_method(method, tasks, config.rank, config, seed)
                yield Record(
                    "samples",
                    method,
                    result.n_iter,
                    {
                        "n_samples": m,
                        "repeat": repeat,
                        **_evaluation(result, tasks, config, seed),
                    },
                )

        return run_unit

    return [unit(m, r) for m in config.samples_grid for r in range(config.repeats)]


def _rank_units(config: MetaSPConfig) -> list[Callable[[], Iterator[Record]]]:
    fitted_ranks = [
        s for s in (config.rank - 1, config.rank, config.rank + 1) if 1 <= s < min(config.d, config.n_tasks)
    ]

    def unit(repeat: int) -> Callable[[], Iterator[Record]]:
        def run_unit() -> Iterator[Record]:
            seed = config.seed + 1009 * repeat
            tasks = make_instance(config, seed)
            for fitted in fitted_ranks:
                result = fit_method("meta_sp", tasks, fitted, config, seed)
                yield Record(
                    "rank",
                    "meta_sp",
                    result.n_iter,
                    {
                        "n_samples": config.n_samples,
                        "rank": config.rank,
                        "fitted_rank": fitted,
                        "repeat": repeat,
                        **_evaluation(result, tasks, config, seed),
                    },
                )

        return run_unit

    return [unit(r) for r in range(config.repeats)]


def _noise_floor_units(config: MetaSPConfig) -> list[Callable[[], Iterator[Record]]]:
    grids = {
        "noise": config.noise_grid,
        "d": config.dim_grid,
        "n_tasks": config.tasks_grid,
        "n_samples": config.floor_samples_grid,
    }

    def unit(factor: str, value: float, repeat: int) -> Callable[[], Iterator[Record]]:
        def run_unit() -> Iterator[Record]:
            seed = config.seed + 1009 * repeat + 17 * len(factor) + int(value * 1000) % 997
            tasks = make_instance(config, seed, **{factor: value})
            result = fit_method("meta_sp", tasks, config.rank, config, seed)
            settings = {
                "noise": tasks.noise,
                "d": tasks.X.shape[2],
                "n_tasks": tasks.X.shape[0],
                "n_samples": tasks.X.shape[1],
            }
            yield Record(
                "noise_floor",
                "meta_sp",
                result.n_iter,
                {
                    "factor": factor,
                    "value": float(value),
                    "repeat": repeat,
                    **settings,
                    "coef_error_fro": float(torch.linalg.norm(result.coef - tasks.coef)),
                    "rate": settings["noise"] * math.sqrt(settings["d"] * settings["n_tasks"] / settings["n_samples"]),
                    "sin_theta": sin_theta(result.basis, tasks.basis),
                    "expected_slope": EXPECTED_SLOPES[factor],
                },
            )

        return run_unit

    return [unit(f, v, r) for f, grid in grids.items() for v in grid for r in range(config.repeats)]


def _air_quality_units(config: MetaSPConfig) -> list[Callable[[], Iterator[Record]]]:
    folder = find_air_quality_dir(config.data_path or None)
    if folder is None and config.data_path:
        raise FileNotFoundError(
            f"data_path={config.data_path!r} holds no Beijing air-quality files (PRSA_Data_*.csv.gz), "
            "neither in it nor in its beijing_air_quality/ folder; leave data_path empty to skip the 'air_quality' part"
        )
    if folder is None:
        warnings.warn(
            "air-quality data not found (set data_path or METALAB_DATA to the folder holding "
            "beijing_air_quality/); the 'air_quality' part is skipped",
            stacklevel=3,
        )
        return []

    def run_unit() -> Iterator[Record]:
        tasks = load_air_quality_tasks(folder, period="day", max_tasks=config.aq_max_tasks, seed=config.seed)
        train, test = tasks.split(test_fraction=0.25, seed=config.seed)
        k = config.aq_support
        test_x = [x for x in test.X if x.shape[0] > k]
        test_y = [y for x, y in zip(test.X, test.y) if x.shape[0] > k]
        support = ([x[:k] for x in test_x], [y[:k] for y in test_y])
        query = ([x[k:] for x in test_x], [y[k:] for y in test_y])
        common = {
            "rank": config.aq_rank,
            "n_train_tasks": len(train),
            "n_test_tasks": len(test_x),
            "n_features": len(tasks.feature_names),
            "support": k,
        }
        for method in [m for m in config.methods if m != "oracle"]:
            with Stopwatch() as watch:
                result = fit(method, train.X, train.y, config.aq_rank, **_method_kwargs(method, config, config.seed))
            mse = few_shot_mse(result.basis, *support, *query, ridge=config.aq_ridge)
            yield Record(
                "air_quality", method, result.n_iter, {**common, "few_shot_mse": mse, "seconds": watch.seconds}
            )
        identity = torch.eye(len(tasks.feature_names), dtype=torch.float64)
        for label, ridge in (("ridge", config.aq_ridge), ("zero", None)):
            mse = _per_task_baseline(identity, support, query, ridge)
            yield Record("air_quality", label, 0, {**common, "few_shot_mse": mse, "seconds": 0.0})

    return [run_unit]


def _per_task_baseline(identity, support, query, ridge: float | None) -> float:
    """Per-task ridge on all features (no shared subspace), or predicting zero (the standardised mean)."""
    if ridge is None:
        return float(np.mean([float(torch.mean(y**2)) for y in query[1]]))
    return few_shot_mse(identity, *support, *query, ridge=ridge)


def _time_to_target_units(config: MetaSPConfig) -> list[Callable[[], Iterator[Record]]]:
    def unit(repeat: int) -> Callable[[], Iterator[Record]]:
        def run_unit() -> Iterator[Record]:
            seed = config.seed + 1009 * repeat + 1
            tasks = make_instance(config, seed)
            for method in config.methods:
                result = fit_method(method, tasks, config.rank, config, seed)
                yield Record(
                    "time_to_target",
                    method,
                    result.n_iter,
                    {
                        "n_samples": config.n_samples,
                        "repeat": repeat,
                        "target_error": config.target_error,
                        **time_to_target(result, config.target_error),
                    },
                )

        return run_unit

    return [unit(r) for r in range(config.repeats)]


def time_to_target(result, target: float) -> dict[str, float]:
    """Seconds until the first iteration whose sin-theta is at most ``target`` (NaN if never reached)."""
    for row in result.history:
        if row.get("sin_theta") is not None and row["sin_theta"] <= target:
            return {
                "seconds_to_target": row["seconds"],
                "reached": 1.0,
                "final_sin_theta": result.history[-1]["sin_theta"],
            }
    final = result.history[-1].get("sin_theta", math.nan) if result.history else math.nan
    return {"seconds_to_target": math.nan, "reached": 0.0, "final_sin_theta": final}


_PART_UNITS = {
    "convergence": _convergence_units,
    "samples": _samples_units,
    "rank": _rank_units,
    "noise_floor": _noise_floor_units,
    "air_quality": _air_quality_units,
    "time_to_target": _time_to_target_units,
}


def run(config: MetaSPConfig | None = None) -> Iterator[Record]:
    """Stream the records of every selected part; each record carries the fraction of work done."""
    config = config or MetaSPConfig()
    seed_everything(config.seed)
    units = [unit for part in PARTS if part in config.parts for unit in _PART_UNITS[part](config)]
    yield from stream_units(units)


def noise_floor_slopes(frame) -> dict[str, float]:
    """Least-squares slope of log(coef_error_fro) against log(value) for each noise-floor factor."""
    rows = frame[frame["part"] == "noise_floor"]
    slopes = {}
    for factor, group in rows.groupby("factor"):
        means = group.groupby("value")["coef_error_fro"].mean()
        if len(means) >= 2:
            slopes[factor] = float(np.polyfit(np.log(means.index.to_numpy(float)), np.log(means.to_numpy()), 1)[0])
    return slopes


def figures(frame, config: MetaSPConfig | None = None) -> dict[str, Any]:
    """Every figure the records allow, keyed by part name."""
    return plots.meta_sp_figures(frame)
