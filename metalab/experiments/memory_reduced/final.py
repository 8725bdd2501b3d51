"""The ``final`` part: test accuracy with 95% confidence intervals over many test episodes, and the
Omniglot 20-way one-shot benchmark error next to the published errors (when its runs are found)."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator

import numpy as np

from metalab.core import Record, Unit
from metalab.data import evaluate_one_shot_runs, load_one_shot_runs, pixel_nearest_neighbour
from metalab.data.omniglot import PUBLISHED_ONE_SHOT_ERRORS, find_one_shot_runs
from metalab.experiments.memory_reduced.config import MemoryReducedConfig
from metalab.experiments.memory_reduced.context import RunContext, sampler, threaded_unit
from metalab.experiments.memory_reduced.training import evaluate, trained_network, training_weight
from metalab.implicit.evaluation import ONE_SHOT_PREDICTORS, one_shot_predictor

ONE_SHOT_WAYS = 20
ONE_SHOT_RUNS = 20


def confidence_interval(accuracies: np.ndarray) -> float:
    """Half-width of the 95% normal interval of the mean: 1.96 std / sqrt(n) (std with n - 1)."""
    n = len(accuracies)
    return float(1.96 * np.std(accuracies, ddof=1) / math.sqrt(n)) if n > 1 else math.nan


def final_units(config: MemoryReducedConfig, context: RunContext) -> list[Unit]:
    """One unit per (shots, method), and the one-shot benchmark when Omniglot's runs are found."""
    untrained = 0.0 if "training" in config.parts else training_weight(config, 1)

    def final_accuracy(method: str, shots: int) -> Iterator[Record]:
        trained = trained_network(config, context, method, shots)
        test = sampler(config, context.data.test, shots, f"final:{shots}")
        accuracy = evaluate(method, trained, test, config.final_episodes, config)
        mean = float(accuracy.mean())
        values = {
            "benchmark": "episodes",
            "shots": shots,
            "ways": config.ways,
            "queries": config.queries,
            "dataset": context.data.name,
            "episodes": len(accuracy),
            "accuracy": mean,
            "error_rate": 1 - mean,
            "ci95": confidence_interval(accuracy),
            "train_seconds": trained.seconds,
        }
        yield Record("final", method, 0, values)

    weight = untrained + config.final_episodes * (config.inner_steps + 1)
    units = [
        threaded_unit(config, functools.partial(final_accuracy, method, shots), weight)
        for shots in config.shots
        for method in config.methods
    ]
    runs_path = find_one_shot_runs(config.data_path or None)
    if runs_path is None:
        return units
    benchmark = functools.partial(one_shot_benchmark, config, context, runs_path)
    predictions = len(config.methods) * len(ONE_SHOT_PREDICTORS) * ONE_SHOT_RUNS * ONE_SHOT_WAYS
    return [*units, threaded_unit(config, benchmark, predictions * (config.inner_steps + 1))]


def one_shot_benchmark(config: MemoryReducedConfig, context: RunContext, runs_path) -> Iterator[Record]:
    """Error rates on Omniglot's 20 one-shot runs: each method's backbone (trained on the 1-shot episodes,
    else the fewest shots) with both predictors, pixel nearest neighbour, and the published errors."""
    runs = load_one_shot_runs(runs_path, image_size=config.image_size)
    trained_shots = 1 if 1 in config.shots else min(config.shots)
    common = {"benchmark": "omniglot_one_shot", "shots": 1, "ways": ONE_SHOT_WAYS, "trained_shots": trained_shots}

    def record(method: str, predictor: str, error_rate: float, **extra) -> Record:
        values = {**common, **extra, "predictor": predictor, "error_rate": error_rate, "accuracy": 1 - error_rate}
        return Record("final", method, 0, values)

    for method in config.methods:
        trained = trained_network(config, context, method, trained_shots)
        for how in ONE_SHOT_PREDICTORS:
            predict = one_shot_predictor(
                trained.backbone,
                trained.params,
                how,
                l2=config.l2,
                inner_steps=config.inner_steps,
                inner_lr=config.inner_lr,
            )
            error_rate = evaluate_one_shot_runs(predict, runs).error_rate
            yield record(method, how, error_rate, dataset=context.data.name, train_seconds=trained.seconds)
    pixels = evaluate_one_shot_runs(pixel_nearest_neighbour, runs).error_rate
    yield record("pixel_nearest", "pixels", pixels, train_seconds=0.0)
    for name, error in PUBLISHED_ONE_SHOT_ERRORS.items():
        yield record(name, "published", error, train_seconds=math.nan)
