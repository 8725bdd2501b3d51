"""What each part of the compressive experiment computes: its units of work and the records they yield.

Every unit runs with the config's torch thread count.  A unit's ``weight`` is its cost in meta-training
steps: the steps of every model it is the first to need (see :meth:`CompressiveContext.claim`) plus an
estimate of its own work (``*_COST`` below: rounded from the quick preset on one thread, where one
meta-training step takes 10-20 ms).  Only the training units report progress within themselves.

Private sketches here are *simulated* releases: their noise is seeded by ``config.seed`` so that a run
is reproducible, which no real release may be (:func:`_simulated`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import TypeVar

import torch

from metalab.compressive import references
from metalab.compressive.distributed import sketch_rows
from metalab.compressive.privacy import Gaussian, Laplace, SeededNoiseWarning
from metalab.compressive.randomized import RandomizedLearner
from metalab.compressive.sketch import Sketch, merge_sketches
from metalab.compressive.streams import sketch_stream
from metalab.compressive.training import evaluate, predict
from metalab.core import Record
from metalab.core.device import torch_threads
from metalab.core.records import Unit
from metalab.core.timing import Stopwatch
from metalab.experiments.compressive.config import CompressiveConfig, family_of, held_out, mechanism_of, task_of
from metalab.experiments.compressive.context import CompressiveContext, HeldOut, ModelKey

#: training records between two held-out evaluations: one every this many steps
TRAINING_RECORD_EVERY = 10
#: one evaluation of both methods on the held-out data sets (k-means' CL-OMPR, the autoencoder's references)
EVALUATION_COST = 50.0
#: sketching and exact k-means in 'decoding', per sample
DECODING_COST_PER_SAMPLE = 1.5e-3
#: 'throughput' (starting a local Dask cluster dominates)
THROUGHPUT_COST = 1000.0


Answer = TypeVar("Answer")


def _simulated(release: Callable[..., Answer], *args, **kwargs) -> Answer:
    """``release(*args, **kwargs)`` with privacy noise seeded by the config: the experiment measures what a
    release costs in accuracy, reproducibly, so the library's :class:`SeededNoiseWarning` (seeded noise
    is no private release) is expected here and silenced, for this call only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SeededNoiseWarning)
        return release(*args, **kwargs)


def _unit(config: CompressiveConfig, work: Callable[[], Iterable[Record]], weight: float) -> Unit:
    """``work`` as a :class:`Unit` that runs with ``config.threads`` torch threads."""

    def threaded() -> Iterator[Record]:
        with torch_threads(config.threads):
            yield from work()

    return Unit(threaded, weight)


def _cost(config: CompressiveConfig, context: CompressiveContext, keys: Iterable[ModelKey], evaluation: float) -> float:
    """A unit's weight: ``steps`` for every model in ``keys`` that it trains, plus ``evaluation``."""
    return evaluation + sum(config.steps for key in keys if context.claim(key))


def summary(errors: torch.Tensor) -> dict[str, float]:
    """Median and quartiles of relative errors over the held-out data sets."""
    q = torch.quantile(errors.to(torch.float64), torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    return {"relative_error": float(q[1]), "q25": float(q[0]), "q75": float(q[2])}


def random_relative_errors(
    config: CompressiveConfig, task: str, sketch_size: int, scored: HeldOut, noise: Laplace | Gaussian | None = None
) -> torch.Tensor:
    """Error / exact error of the randomized learner of ``task`` at ``sketch_size`` on every held-out data set
    (from sketches released by ``noise`` when given)."""
    learner = RandomizedLearner(task_of(config, task), sketch_size, seed=config.seed)
    data = scored.data
    params = _simulated(learner.predict, data.X, data.y, noise=noise, noise_seed=config.seed)
    return learner.error(params, data.X, data.y) / scored.exact_errors


# ---------------------------------------------------------------------------------------------
# training: the meta-training curve, step by step


def _training_records(context: CompressiveContext, key: ModelKey) -> Iterator[Record]:
    for progress in context.train(key):
        if progress.held_out is None and progress.step % TRAINING_RECORD_EVERY:
            continue
        values = {
            "task": key.task,
            "sketch_size": key.sketch_size,
            "iteration": progress.step,
            "loss": progress.loss,
            "held_out": math.nan if progress.held_out is None else progress.held_out,
            "seconds": progress.seconds,
        }
        yield Record("training", "learned", progress.step, values, progress=progress.fraction)


def training_units(config: CompressiveConfig, context: CompressiveContext) -> list[Unit]:
    """The models of the 'example' part (noise-aware ones when ``example_epsilon`` is set), with their curves."""
    keys = [ModelKey(task, config.sketch_size, config.example_epsilon is not None) for task in config.tasks]
    return [_unit(config, partial(_training_records, context, key), _cost(config, context, [key], 1.0)) for key in keys]


# ---------------------------------------------------------------------------------------------
# sketch_size and privacy: relative errors over the held-out data sets


def _sketch_size_records(config: CompressiveConfig, context: CompressiveContext, task: str, m: int) -> Iterator[Record]:
    scored = context.scored(task)
    learned = evaluate(context.model(task, m), scored.data, reference=scored.exact_errors, seed=config.seed)
    random = random_relative_errors(config, task, m, scored)
    base = {"task": task, "sketch_size": m}
    yield Record("sketch_size", "learned", m, {**base, **summary(learned)})
    yield Record("sketch_size", "random", m, {**base, **summary(random)})
    yield Record("sketch_size", "exact", m, {**base, "relative_error": 1.0, "q25": 1.0, "q75": 1.0})


def sketch_size_units(config: CompressiveConfig, context: CompressiveContext) -> list[Unit]:
    grid = [(task, m) for task in config.tasks for m in config.sketch_sizes]
    return [
        _unit(
            config,
            partial(_sketch_size_records, config, context, task, m),
            _cost(config, context, [ModelKey(task, m)], EVALUATION_COST),
        )
        for task, m in grid
    ]


def _privacy_records(config: CompressiveConfig, context: CompressiveContext, task: str) -> Iterator[Record]:
    scored = context.scored(task)
    m = config.sketch_size
    model = context.model(task, m, private=True)
    for epsilon in config.epsilons:
        noise = mechanism_of(config, epsilon)
        learned = _simulated(
            evaluate, model, scored.data, reference=scored.exact_errors, noise=noise, noise_seed=config.seed
        )
        random = random_relative_errors(config, task, m, scored, noise)
        base = {"task": task, "sketch_size": m, "epsilon": epsilon, "mechanism": config.mechanism}
        yield Record("privacy", "learned", epsilon, {**base, **summary(learned)})
        yield Record("privacy", "random", epsilon, {**base, **summary(random)})


def privacy_units(config: CompressiveConfig, context: CompressiveContext) -> list[Unit]:
    cost = EVALUATION_COST * len(config.epsilons)
    return [
        _unit(
            config,
            partial(_privacy_records, config, context, task),
            _cost(config, context, [ModelKey(task, config.sketch_size, True)], cost),
        )
        for task in config.tasks
    ]


# ---------------------------------------------------------------------------------------------
# decoding: seconds to sketch and to decode k-means against n


def _kmeans_answers(config: CompressiveConfig, context: CompressiveContext, X: torch.Tensor) -> dict:
    """Each method's centroids on ``X (n, d)`` with its seconds to sketch and to decode (exact: to fit)."""
    m = config.sketch_size
    model = context.model("kmeans", m)
    learner = RandomizedLearner(task_of(config, "kmeans"), m, seed=config.seed)
    with Stopwatch() as learned_sketch:
        z_learned = model.sketch(X)
    with Stopwatch() as learned_decode:
        learned = model.decode(z_learned)["centroids"]
    with Stopwatch() as random_sketch:
        z_random = learner.pooled(X[None])
    with Stopwatch() as random_decode:
        random = learner.decode(z_random)["centroids"][0]
    with Stopwatch() as exact_fit:
        exact, _ = references.kmeans(X, config.clusters, seed=config.seed)
    return {
        "learned": (learned.to(X), learned_sketch.seconds, learned_decode.seconds),
        "random": (random, random_sketch.seconds, random_decode.seconds),
        "exact": (exact, 0.0, exact_fit.seconds),
    }


def _decoding_records(config: CompressiveConfig, context: CompressiveContext, n: int) -> Iterator[Record]:
    X = family_of(config, "kmeans", n).sample(1, seed=config.seed + 2, split="held_out").X[0]
    answers = _kmeans_answers(config, context, X)
    exact_sse = float(references.kmeans_sse(X, answers["exact"][0]))
    for method, (centroids, sketch_seconds, decode_seconds) in answers.items():
        values = {
            "task": "kmeans",
            "n": n,
            "sketch_size": config.sketch_size,
            "sketch_seconds": sketch_seconds,
            "decode_seconds": decode_seconds,
            "relative_error": float(references.kmeans_sse(X, centroids)) / exact_sse,
        }
        yield Record("decoding", method, n, values)


def decoding_units(config: CompressiveConfig, context: CompressiveContext) -> list[Unit]:
    """k-means on one mixture of n points per size: sketch and decode times of each method, and its SSE."""
    if "kmeans" not in config.tasks:
        warnings.warn("part 'decoding' times k-means: add 'kmeans' to tasks to run it", stacklevel=3)
        return []
    key = ModelKey("kmeans", config.sketch_size)
    return [
        _unit(
            config,
            partial(_decoding_records, config, context, n),
            _cost(config, context, [key], 1.0 + DECODING_COST_PER_SAMPLE * n),
        )
        for n in config.decode_sizes
    ]


# ---------------------------------------------------------------------------------------------
# merge and throughput: the sketch as a data structure


def _feature_maps(
    config: CompressiveConfig, context: CompressiveContext, task: str, X: torch.Tensor, y: torch.Tensor | None
) -> dict:
    """``method -> (feature map, the rows it reads)`` for the learned and the random sketch of ``task``."""
    model = context.model(task, config.sketch_size)
    learner = RandomizedLearner(task_of(config, task), config.sketch_size, seed=config.seed)
    y = y if model.task.needs_target else None
    return {"learned": (model.sketch_net, model.task.rows(X, y)), "random": (learner.feature_map, learner.rows(X, y))}


def _merge_records(config: CompressiveConfig, context: CompressiveContext, task: str) -> Iterator[Record]:
    data = held_out(config, task)[:1]
    X, y = data.X[0], None if data.y is None else data.y[0]
    for method, (feature_map, rows) in _feature_maps(config, context, task, X, y).items():
        whole = Sketch.of(feature_map, rows)
        parts = torch.tensor_split(rows, config.workers)
        merged = merge_sketches([Sketch.of(feature_map, part) for part in parts])
        streamed = sketch_stream(feature_map, iter(parts))
        values = {
            "task": task,
            "sketch_size": config.sketch_size,
            "workers": config.workers,
            "count": merged.count,
            "merge_difference": merged.distance(whole),
            "stream_difference": streamed.distance(whole),
            "remove_difference": merged.remove(parts[-1]).distance(Sketch.of(feature_map, torch.cat(parts[:-1]))),
        }
        yield Record("merge", method, 0, values)


def merge_units(config: CompressiveConfig, context: CompressiveContext) -> list[Unit]:
    """Split one held-out data set across ``workers``: merged sketch == one-pass sketch == streamed sketch."""
    return [
        _unit(
            config,
            partial(_merge_records, config, context, task),
            _cost(config, context, [ModelKey(task, config.sketch_size)], 1.0),
        )
        for task in config.tasks
    ]


def _throughput_records(config: CompressiveConfig, context: CompressiveContext) -> Iterator[Record]:
    task, n = config.tasks[0], config.throughput_rows
    g = torch.Generator().manual_seed(config.seed)
    X = 2.0 * torch.rand(n, config.d, generator=g, dtype=torch.float64) - 1.0
    y = 2.0 * torch.rand(n, generator=g, dtype=torch.float64) - 1.0
    schedulers = dict.fromkeys(("single", config.scheduler))
    for method, (feature_map, rows) in _feature_maps(config, context, task, X, y).items():
        for scheduler in schedulers:
            try:
                with Stopwatch() as watch:
                    sketch_rows(feature_map, rows, scheduler)
            except ImportError as missing:
                warnings.warn(f"{missing}: 'throughput' ran in one process only", stacklevel=2)
                continue
            values = {
                "task": task,
                "sketch_size": config.sketch_size,
                "scheduler": scheduler,
                "rows": n,
                "seconds": watch.seconds,
                "rows_per_second": n / watch.seconds,
            }
            yield Record("throughput", method, 0, values)


def throughput_units(config: CompressiveConfig, context: CompressiveContext) -> list[Unit]:
    """Rows per second of sketching, one process against Dask, for the learned and a random map."""
    key = ModelKey(config.tasks[0], config.sketch_size)
    return [
        _unit(config, partial(_throughput_records, config, context), _cost(config, context, [key], THROUGHPUT_COST))
    ]


# ---------------------------------------------------------------------------------------------
# example: one held-out data set and every method's answer over it


def _in_plane(task: str, fitted: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """Points of the example's drawing: ridge's (target, prediction) pairs, else the first two coordinates."""
    return torch.stack([y, fitted], dim=-1) if task == "ridge" else fitted[..., :2]


def _example_records(config: CompressiveConfig, context: CompressiveContext, task: str) -> Iterator[Record]:
    data = held_out(config, task)[:1]
    X, y = data.X[0], None if data.y is None else data.y[0]
    private = config.example_epsilon is not None
    noise = mechanism_of(config, config.example_epsilon) if private else None
    model = context.model(task, config.sketch_size, private)
    learner = RandomizedLearner(model.task, config.sketch_size, seed=config.seed)
    answers = {
        "learned": _simulated(predict, model, data, noise=noise, noise_seed=config.seed),
        "random": _simulated(learner.predict, data.X, data.y, noise=noise, noise_seed=config.seed),
    }
    answers = {method: {name: p[0] for name, p in params.items()} for method, params in answers.items()}
    answers["exact"] = model.task.exact(X, y, seed=config.seed)
    scorers = {"learned": model.task, "random": learner, "exact": model.task}
    errors = {method: float(scorers[method].error(params, X, y)) for method, params in answers.items()}
    base = {"task": task, "sketch_size": config.sketch_size, "epsilon": config.example_epsilon or math.inf}
    # the data drawn as a perfect answer would be: predictions equal to the targets, reconstructions to the samples
    points = {"data": (_in_plane(task, y if task == "ridge" else X, y), math.nan)}
    for method, params in answers.items():
        points[method] = (_in_plane(task, scorers[method].fitted(params, X, y), y), errors[method] / errors["exact"])
    for method, (xy, relative) in points.items():
        for i, (a, b) in enumerate(xy.tolist()):
            yield Record("example", method, i, {**base, "point": i, "x": a, "y": b, "relative_error": relative})


def example_units(config: CompressiveConfig, context: CompressiveContext) -> list[Unit]:
    """One held-out data set per task and every method's answer on it, as 2-D points."""
    private = config.example_epsilon is not None
    return [
        _unit(
            config,
            partial(_example_records, config, context, task),
            _cost(config, context, [ModelKey(task, config.sketch_size, private)], 1.0),
        )
        for task in config.tasks
    ]
