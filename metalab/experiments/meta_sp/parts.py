"""The parts of the Meta-SP experiment, each a list of units of work yielding records, and the fitting
helpers they share (public: the benchmark and the notebook reuse them)."""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from metalab.core import Record, Stopwatch, Unit, resolve_device
from metalab.data import LinearTasks, find_air_quality_dir, hps_tasks, load_air_quality_tasks
from metalab.experiments.meta_sp.config import EXPECTED_SLOPES, MetaSPConfig
from metalab.experiments.meta_sp.cost import fit_cost
from metalab.subspace import METHODS, SubspaceResult, few_shot_mse, fit, iterate_meta_subspace_pursuit, sin_theta

# --------------------------------------------------------------------------------------------
# fitting helpers


def _method_kwargs(method: str, config: MetaSPConfig, seed: int) -> dict[str, Any]:
    """The config's shared settings that ``method`` accepts (iteration budget, tolerance, seed)."""
    accepted = inspect.signature(METHODS[method]).parameters
    shared = {"max_iter": config.iterations(method), "tol": config.tol, "seed": seed}
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


def _seconds(config: MetaSPConfig, methods, **size: int) -> float:
    """The estimated seconds of fitting ``methods`` on one instance of the config's sizes, ``size`` (T, m,
    d) changed: a unit's weight, its share of the progress bar and of the time left."""
    shape = {"T": config.n_tasks, "m": config.n_samples, "d": config.d, "s": config.rank, **size}
    seconds = sum(fit_cost(method, **shape, max_iter=config.iterations(method)).seconds for method in methods)
    return max(seconds, 1e-6)  # the oracle's is 0


# --------------------------------------------------------------------------------------------
# the parts; each builds a list of units of work, each yielding records


def convergence_units(config: MetaSPConfig, context: None) -> list[Unit]:
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
                    "iteration": state.iteration,
                    "sin_theta": state.sin_theta,
                    "objective": state.objective,
                    "seconds": state.seconds,
                },
                progress=state.iteration / config.max_iter,
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
                        "iteration": int(row["iteration"]),
                        "sin_theta": row["sin_theta"],
                        "objective": row["objective"],
                        "seconds": row["seconds"],
                    },
                )

        return unit

    return [Unit(stream_meta_sp if m == "meta_sp" else replay(m), weight=_seconds(config, [m])) for m in config.methods]


def samples_units(config: MetaSPConfig, context: None) -> list[Unit]:
    def unit(m: int, repeat: int) -> Callable[[], Iterator[Record]]:
        def run_unit() -> Iterator[Record]:
            seed = config.seed + 1009 * repeat + m
            tasks = make_instance(config, seed, n_samples=m)
            for method in config.methods:
                result = fit_method(method, tasks, config.rank, config, seed)
                yield Record(
                    "samples",
                    method,
                    m,
                    {
                        "n_samples": m,
                        "repeat": repeat,
                        **_evaluation(result, tasks, config, seed),
                    },
                )

        return run_unit

    weights = {m: _seconds(config, config.methods, m=m) for m in config.samples_grid}
    return [Unit(unit(m, r), weight=weights[m]) for m in config.samples_grid for r in range(config.repeats)]


def rank_units(config: MetaSPConfig, context: None) -> list[Unit]:
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
                    fitted,
                    {
                        "n_samples": config.n_samples,
                        "rank": config.rank,
                        "fitted_rank": fitted,
                        "repeat": repeat,
                        **_evaluation(result, tasks, config, seed),
                    },
                )

        return run_unit

    weight = _seconds(config, ["meta_sp"] * len(fitted_ranks))
    return [Unit(unit(r), weight=weight) for r in range(config.repeats)]


def noise_floor_units(config: MetaSPConfig, context: None) -> list[Unit]:
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
                float(value),
                {
                    "factor": factor,
                    "value": float(value),
                    "repeat": repeat,
                    "n_iter": result.n_iter,
                    **settings,
                    "coef_error_fro": float(torch.linalg.norm(result.coef - tasks.coef)),
                    "rate": settings["noise"] * math.sqrt(settings["d"] * settings["n_tasks"] / settings["n_samples"]),
                    "sin_theta": sin_theta(result.basis, tasks.basis),
                    "expected_slope": EXPECTED_SLOPES[factor],
                },
            )

        return run_unit

    sizes = {"noise": None, "d": "d", "n_tasks": "T", "n_samples": "m"}

    def weight(factor: str, value: float) -> float:
        return _seconds(config, ["meta_sp"], **({sizes[factor]: int(value)} if sizes[factor] else {}))

    return [
        Unit(unit(f, v, r), weight=weight(f, v))
        for f, grid in grids.items()
        for v in grid
        for r in range(config.repeats)
    ]


def air_quality_units(config: MetaSPConfig, context: None) -> list[Unit]:
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
    methods = [m for m in config.methods if m != "oracle"]  # the truth is unknown

    def run_unit() -> Iterator[Record]:
        tasks = load_air_quality_tasks(folder, period="day", max_tasks=config.aq_max_tasks, seed=config.seed)
        train, test = tasks.split(test_fraction=0.25, seed=config.seed)
        k = config.aq_support
        test_x = [x for x in test.X if x.shape[0] > k]
        test_y = [y for x, y in zip(test.X, test.y, strict=True) if x.shape[0] > k]
        support = ([x[:k] for x in test_x], [y[:k] for y in test_y])
        query = ([x[k:] for x in test_x], [y[k:] for y in test_y])
        common = {
            "rank": config.aq_rank,
            "n_train_tasks": len(train),
            "n_test_tasks": len(test_x),
            "n_features": len(tasks.feature_names),
            "support": k,
        }
        for method in methods:
            with Stopwatch() as watch:
                result = fit(method, train.X, train.y, config.aq_rank, **_method_kwargs(method, config, config.seed))
            mse = few_shot_mse(result.basis, *support, *query, ridge=config.aq_ridge)
            yield Record(
                "air_quality",
                method,
                0,
                {**common, "n_iter": result.n_iter, "few_shot_mse": mse, "seconds": watch.seconds},
            )
        identity = torch.eye(len(tasks.feature_names), dtype=torch.float64)
        for label, ridge in (("ridge", config.aq_ridge), ("zero", None)):
            mse = _per_task_baseline(identity, support, query, ridge)
            yield Record("air_quality", label, 0, {**common, "n_iter": 0, "few_shot_mse": mse, "seconds": 0.0})

    return [Unit(run_unit, weight=_seconds(config, methods, T=config.aq_max_tasks, m=24, d=21))]


def _per_task_baseline(identity, support, query, ridge: float | None) -> float:
    """Per-task ridge on all features (no shared subspace), or predicting zero (the standardised mean)."""
    if ridge is None:
        return float(np.mean([float(torch.mean(y**2)) for y in query[1]]))
    return few_shot_mse(identity, *support, *query, ridge=ridge)


def time_to_target_units(config: MetaSPConfig, context: None) -> list[Unit]:
    def unit(repeat: int) -> Callable[[], Iterator[Record]]:
        def run_unit() -> Iterator[Record]:
            seed = config.seed + 1009 * repeat + 1
            tasks = make_instance(config, seed)
            for method in config.methods:
                result = fit_method(method, tasks, config.rank, config, seed)
                yield Record(
                    "time_to_target",
                    method,
                    0,
                    {
                        "n_iter": result.n_iter,
                        "n_samples": config.n_samples,
                        "repeat": repeat,
                        "target_error": config.target_error,
                        **time_to_target(result, config.target_error),
                    },
                )

        return run_unit

    return [Unit(unit(r), weight=_seconds(config, config.methods)) for r in range(config.repeats)]


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


def noise_floor_slopes(frame) -> dict[str, float]:
    """Least-squares slope of log(coef_error_fro) against log(value) for each noise-floor factor."""
    rows = frame[frame["part"] == "noise_floor"]
    slopes = {}
    for factor, group in rows.groupby("factor"):
        means = group.groupby("value")["coef_error_fro"].mean()
        if len(means) >= 2:
            slopes[factor] = float(np.polyfit(np.log(means.index.to_numpy(float)), np.log(means.to_numpy()), 1)[0])
    return slopes
