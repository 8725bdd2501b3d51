"""Compressive Meta-Learning (Mas Montserrat et al., arXiv 2508.11090): the paper's story as one record stream.

A Sketch-Network and a Query-Network are meta-trained end to end over a family of data sets
(:mod:`metalab.compressive.training`) and compared with randomized compressive learning at the same
sketch size m (:mod:`metalab.compressive.randomized`), every error divided by the exact reference's
on the full data (SVD PCA, closed-form ridge, k-means++ with Lloyd, an Adam-trained autoencoder).

Parts (select with ``Config.parts``):

* ``training``    the meta-training curve of the learned model of every task at ``sketch_size`` (trained
  on noisy sketches when ``example_epsilon`` is set);
* ``sketch_size`` relative error of learned and random sketches against m (the paper's Figures 3 and 4);
* ``privacy``     relative error against the privacy budget epsilon, both sketches released by the
  Laplace or Gaussian mechanism (the learned model meta-trained on noisy sketches);
* ``decoding``    seconds to sketch and to decode against the data set size n, for k-means: the
  sketch methods' decoding is flat in n, the exact method's time grows;
* ``merge``       a data set split across workers, sketched per worker and merged, against its
  one-pass sketch; and the same data streamed in chunks;
* ``throughput``  rows per second of sketching in one process and on a local Dask cluster;
* ``example``     one held-out data set and every method's answer, as 2-D points to draw over it
  (from sketches released at ``example_epsilon`` when set).

Evaluation records carry ``task``, ``method`` (``learned``, ``random``, ``exact``), ``sketch_size``
and ``relative_error`` (the median over the held-out data sets; quartiles alongside).
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch

from metalab.compressive import references
from metalab.compressive.datasets import DataBatch, DatasetFamily, dataset_family
from metalab.compressive.privacy import Gaussian, Laplace
from metalab.compressive.query import TASKS, CompressiveModel, Params, Task, make_task
from metalab.compressive.randomized import RandomizedLearner
from metalab.compressive.sketch import Sketch, merge_sketches
from metalab.compressive.streams import sketch_stream
from metalab.compressive.training import SketchNoise, evaluate, meta_train, private_sketches
from metalab.core import Config, ConfigError, Record, param, seed_everything
from metalab.core.device import torch_threads
from metalab.core.records import stream_units

NAME = "compressive"
TITLE = "Compressive Meta-Learning"
PARTS = ("training", "sketch_size", "privacy", "decoding", "merge", "throughput", "example")
FAMILIES = ("generated", "sklearn")
#: the generated family each task is meta-trained on (``family="generated"``)
GENERATED = {"kmeans": "mixtures", "pca": "low_rank", "autoencoder": "low_rank", "ridge": "linear"}
SCHEDULERS = ("single", "threads", "local")


@dataclasses.dataclass(frozen=True)
class CompressiveConfig(Config):
    """Settings of the compressive experiment; ``quick`` runs in a few minutes on 2 cores, ``paper`` longer."""

    tasks: tuple[str, ...] = param(tuple(TASKS), choices=tuple(TASKS), help="tasks to learn from sketches")
    parts: tuple[str, ...] = param(PARTS, choices=PARTS, help="parts of the experiment to run")
    family: str = param("generated", choices=FAMILIES, help="data sets: generated families or scikit-learn tables")
    d: int = param(2, ge=1, le=64, help="features per sample d")
    clusters: int = param(3, ge=1, le=32, help="k-means clusters k")
    components: int = param(1, ge=1, le=32, help="PCA components and autoencoder bottleneck")
    n_samples: int = param(100, ge=2, le=1_000_000, help="samples per data set n in meta-training")
    held_out_samples: int | None = param(
        250, ge=2, le=1_000_000, help="samples per held-out data set (None: n_samples)"
    )
    cluster_scales: tuple[float, ...] = param(
        (0.08, 0.3), gt=0.0, le=1.0, help="range of the mixtures' cluster standard deviations (k-means)"
    )
    low_rank_noise: float = param(0.1, ge=0.0, le=1.0, help="noise of the low-rank data sets (PCA, autoencoder)")
    sketch_size: int = param(60, ge=2, le=4096, help="sketch size m (training, privacy, decoding, merge)")
    sketch_sizes: tuple[int, ...] = param((10, 20, 40, 60), ge=2, le=4096, help="sketch sizes of 'sketch_size'")
    steps: int = param(600, ge=1, le=1_000_000, help="meta-training steps per model")
    batch: int = param(32, ge=1, le=4096, help="data sets per meta-training step")
    lr: float = param(2e-3, gt=0.0, le=1.0, help="peak Adam learning rate of meta-training")
    width: int = param(256, ge=4, le=8192, help="Query-Network width")
    blocks: int = param(2, ge=0, le=16, help="Query-Network residual blocks")
    sketch_hidden: tuple[int, ...] = param((64, 64), ge=1, le=8192, help="Sketch-Network hidden widths")
    eval_sets: int = param(32, ge=1, le=100_000, help="held-out data sets per evaluation")
    eval_every: int = param(50, ge=1, le=1_000_000, help="training steps between held-out evaluations")
    ridge_lam: float = param(1e-3, ge=0.0, le=100.0, help="ridge penalty lambda")
    ae_hidden: int = param(16, ge=1, le=1024, help="autoencoder hidden width")
    reference_steps: int = param(500, ge=1, le=100_000, help="Adam steps of the exact (full-data) autoencoder")
    mechanism: str = param("laplace", choices=("laplace", "gaussian"), help="privacy mechanism on the sketch")
    epsilons: tuple[float, ...] = param((0.5, 1.0, 2.0, 5.0, 20.0), gt=0.0, le=1e6, help="privacy budgets of 'privacy'")
    delta: float = param(1e-5, gt=0.0, le=0.5, help="delta of the Gaussian mechanism")
    decode_sizes: tuple[int, ...] = param(
        (10_000, 100_000, 1_000_000), ge=10, le=100_000_000, help="data set sizes n of 'decoding'"
    )
    workers: int = param(4, ge=2, le=256, help="workers a data set is split across in 'merge'")
    throughput_rows: int = param(200_000, ge=100, le=100_000_000, help="rows sketched in 'throughput'")
    scheduler: str = param("local", choices=SCHEDULERS, help="Dask scheduler of 'throughput' (single: no Dask)")
    example_epsilon: float | None = param(
        None, gt=0.0, le=1e6, help="privacy budget of the sketches in 'example' (None: no noise)"
    )
    seed: int = param(0, ge=0, le=2**31 - 1, help="random seed")
    device: str = param("auto", choices=("auto", "cpu", "cuda"), help="torch device of meta-training")
    threads: int | None = param(None, ge=1, le=256, help="torch CPU threads during the run (None: leave as is)")

    presets = {
        "quick": {
            "steps": 600,
            "sketch_sizes": (10, 60),
            "eval_sets": 24,
            "epsilons": (1.0, 5.0, 50.0),
            "decode_sizes": (1_000, 10_000, 100_000),
            "throughput_rows": 100_000,
            "reference_steps": 300,
        },
        "paper": {
            "steps": 6000,
            "sketch_hidden": (128, 128),
            "width": 512,
            "blocks": 4,
            "sketch_sizes": (10, 20, 40, 60, 100, 200),
            "eval_sets": 200,
            "epsilons": (0.1, 0.5, 1.0, 2.0, 5.0, 20.0, 100.0),
            "throughput_rows": 2_000_000,
            "reference_steps": 2000,
        },
    }

    def check(self) -> None:
        if not self.parts:
            raise ConfigError("parts", self.parts, "at least one of " + ", ".join(PARTS))
        if not self.tasks:
            raise ConfigError("tasks", self.tasks, "at least one of " + ", ".join(TASKS))
        if len(self.cluster_scales) != 2 or self.cluster_scales[0] > self.cluster_scales[1]:
            raise ConfigError("cluster_scales", self.cluster_scales, "two numbers (low, high) with low <= high")
        if "kmeans" in self.tasks:
            smallest = min(self.n_samples, self.held_out_samples or self.n_samples)
            if self.clusters > smallest:
                raise ConfigError("clusters", self.clusters, f"at most the samples per data set ({smallest})")
            odd = [m for m in (self.sketch_size, *self.sketch_sizes) if m % 2]
            if odd:
                raise ConfigError(
                    "sketch_sizes" if odd[0] != self.sketch_size else "sketch_size",
                    odd[0],
                    "even sizes for k-means (its random Fourier sketch holds cos and sin pairs)",
                )
        if self.components > self.d and {"pca", "autoencoder"} & set(self.tasks):
            raise ConfigError("components", self.components, f"at most d={self.d}")


CONFIG = CompressiveConfig


# ---------------------------------------------------------------------------------------------
# building blocks


def task_of(config: CompressiveConfig, name: str) -> Task:
    """The :class:`Task` called ``name`` with the config's sizes."""
    options = {
        "pca": {"k": config.components},
        "autoencoder": {"k": config.components, "hidden": config.ae_hidden, "reference_steps": config.reference_steps},
        "kmeans": {"k": config.clusters},
        "ridge": {"lam": config.ridge_lam},
    }[name]
    return make_task(name, config.d, **options)


def family_of(config: CompressiveConfig, name: str, n: int | None = None) -> DatasetFamily:
    """The data-set family task ``name`` is trained on (``n`` samples per data set; default ``n_samples``)."""
    n = config.n_samples if n is None else n
    if config.family == "sklearn":
        return dataset_family("sklearn", n=n, d=config.d, target=name == "ridge")
    options = {
        "mixtures": {"k": config.clusters, "scales": tuple(config.cluster_scales)},
        "low_rank": {"rank": config.components, "noise": config.low_rank_noise},
        "linear": {},
    }
    family = GENERATED[name]
    return dataset_family(family, n=n, d=config.d, **options[family])


def held_out_family(config: CompressiveConfig, name: str) -> DatasetFamily:
    """The family of the held-out data sets: the training family with ``held_out_samples`` samples each."""
    return family_of(config, name, config.held_out_samples or config.n_samples)


def held_out(config: CompressiveConfig, name: str) -> DataBatch:
    """The held-out data sets every method of task ``name`` is scored on (never trained on)."""
    return held_out_family(config, name).sample(config.eval_sets, seed=config.seed + 1, split="held_out")


def mechanism_of(config: CompressiveConfig, epsilon: float) -> Laplace | Gaussian:
    return Laplace(epsilon) if config.mechanism == "laplace" else Gaussian(epsilon, config.delta)


def train_units(
    config: CompressiveConfig,
    state: dict,
    name: str,
    sketch_size: int,
    *,
    private: bool = False,
    part: str | None = None,
) -> Iterator[Record]:
    """Meta-train (once per task, size and privacy) and keep the model in ``state``; stream the curve when ``part``."""
    key = (name, sketch_size, private)
    if key in state["models"]:
        return
    noise = None
    if private:
        low, high = min(config.epsilons), max(config.epsilons)
        if config.example_epsilon is not None and "privacy" not in config.parts:
            low = high = config.example_epsilon
        noise = SketchNoise(config.mechanism, (low, high), config.delta)
    run = meta_train(
        task_of(config, name),
        family_of(config, name),
        held_out=held_out_family(config, name),
        sketch_size=sketch_size,
        steps=config.steps,
        batch=config.batch,
        lr=config.lr,
        noise=noise,
        eval_every=config.eval_every,
        eval_size=config.eval_sets,
        seed=config.seed,
        device=config.device,
        sketch_hidden=config.sketch_hidden,
        width=config.width,
        blocks=config.blocks,
    )
    for progress in run:
        if part is not None and (progress.held_out is not None or progress.step % 10 == 0):
            yield Record(
                part,
                "learned",
                progress.step,
                {
                    "task": name,
                    "sketch_size": sketch_size,
                    "loss": progress.loss,
                    "held_out": math.nan if progress.held_out is None else progress.held_out,
                    "seconds": progress.seconds,
                },
            )
    state["models"][key] = run.model


def model(
    config: CompressiveConfig, state: dict, name: str, sketch_size: int, private: bool = False
) -> CompressiveModel:
    for _ in train_units(config, state, name, sketch_size, private=private):
        pass
    return state["models"][(name, sketch_size, private)]


def summary(errors: torch.Tensor) -> dict[str, float]:
    """Median and quartiles of relative errors over the held-out data sets."""
    q = torch.quantile(errors.to(torch.float64), torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    return {"relative_error": float(q[1]), "q25": float(q[0]), "q75": float(q[2])}


def exact_errors(config: CompressiveConfig, state: dict, name: str) -> tuple[DataBatch, torch.Tensor]:
    """Held-out data sets of task ``name`` and the exact reference's error on each (computed once)."""
    if name not in state["held_out"]:
        data = held_out(config, name)
        state["held_out"][name] = (data, task_of(config, name).exact_error(data.X, data.y, seed=config.seed))
    return state["held_out"][name]


def random_errors(
    config: CompressiveConfig, name: str, sketch_size: int, data: DataBatch, noise: Laplace | Gaussian | None = None
) -> torch.Tensor:
    """Errors (not relative) of the randomized learner of task ``name`` at ``sketch_size`` on ``data``."""
    learner = RandomizedLearner(task_of(config, name), sketch_size, seed=config.seed)
    z = learner.pooled(data.X, data.y)
    if noise is not None:
        z = private_sketches(z, learner.feature_map.bound, data.X.shape[-2], noise, seed=config.seed)
    return learner.error(learner.decode(z), data.X, data.y)


# ---------------------------------------------------------------------------------------------
# parts


def _training_units(config: CompressiveConfig, state: dict) -> list[Callable[[], Iterator[Record]]]:
    """The models of the 'example' part (private ones when ``example_epsilon`` is set), with their curves."""
    private = config.example_epsilon is not None
    return [
        (lambda name=name: train_units(config, state, name, config.sketch_size, private=private, part="training"))
        for name in config.tasks
    ]


def _sketch_size_units(config: CompressiveConfig, state: dict) -> list[Callable[[], Iterator[Record]]]:
    def unit(name: str, m: int) -> Iterator[Record]:
        data, reference = exact_errors(config, state, name)
        learned = evaluate(model(config, state, name, m), data, reference=reference, seed=config.seed)
        random = random_errors(config, name, m, data) / reference
        base = {"task": name, "sketch_size": m}
        yield Record("sketch_size", "learned", m, {**base, **summary(learned)})
        yield Record("sketch_size", "random", m, {**base, **summary(random)})
        yield Record("sketch_size", "exact", m, {**base, "relative_error": 1.0, "q25": 1.0, "q75": 1.0})

    return [(lambda name=name, m=m: unit(name, m)) for name in config.tasks for m in config.sketch_sizes]


def _privacy_units(config: CompressiveConfig, state: dict) -> list[Callable[[], Iterator[Record]]]:
    def unit(name: str) -> Iterator[Record]:
        data, reference = exact_errors(config, state, name)
        m = config.sketch_size
        learned_model = model(config, state, name, m, private=True)
        for epsilon in config.epsilons:
            noise = mechanism_of(config, epsilon)
            learned = evaluate(learned_model, data, reference=reference, noise=noise, seed=config.seed)
            random = random_errors(config, name, m, data, noise) / reference
            base = {"task": name, "sketch_size": m, "epsilon": epsilon, "mechanism": config.mechanism}
            yield Record("privacy", "learned", m, {**base, **summary(learned)})
            yield Record("privacy", "random", m, {**base, **summary(random)})

    return [(lambda name=name: unit(name)) for name in config.tasks]


def _timed(function: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def _decoding_units(config: CompressiveConfig, state: dict) -> list[Callable[[], Iterator[Record]]]:
    """k-means on one mixture of n points per size: sketch and decode times of each method, and its SSE."""
    if "kmeans" not in config.tasks:
        warnings.warn("part 'decoding' times k-means: add 'kmeans' to tasks to run it", stacklevel=3)
        return []

    def unit(n: int) -> Iterator[Record]:
        m = config.sketch_size
        learned_model = model(config, state, "kmeans", m)
        learner = RandomizedLearner(task_of(config, "kmeans"), m, seed=config.seed)
        X = family_of(config, "kmeans", n).sample(1, seed=config.seed + 2, split="held_out").X[0]
        k = config.clusters
        z_learned, learned_sketch = _timed(lambda: learned_model.sketch(X))
        centroids, learned_decode = _timed(lambda: learned_model.decode(z_learned)["centroids"])
        z_random, random_sketch = _timed(lambda: learner.pooled(X[None]))
        random_params, random_decode = _timed(lambda: learner.decode(z_random))
        (exact_centroids, _), exact_seconds = _timed(lambda: references.kmeans(X, k, seed=config.seed))
        answers = {
            "learned": (centroids.to(X), learned_sketch, learned_decode),
            "random": (random_params["centroids"][0], random_sketch, random_decode),
            "exact": (exact_centroids, 0.0, exact_seconds),
        }
        exact_sse = float(references.kmeans_sse(X, exact_centroids))
        for method, (C, sketch_seconds, decode_seconds) in answers.items():
            sse = float(references.kmeans_sse(X, C))
            yield Record(
                "decoding",
                method,
                n,
                {
                    "task": "kmeans",
                    "n": n,
                    "sketch_size": m,
                    "sketch_seconds": sketch_seconds,
                    "decode_seconds": decode_seconds,
                    "relative_error": sse / exact_sse,
                },
            )

    return [(lambda n=n: unit(n)) for n in config.decode_sizes]


def _difference(a: Sketch, b: Sketch) -> float:
    return float((a.mean - b.mean).abs().max())


def _merge_units(config: CompressiveConfig, state: dict) -> list[Callable[[], Iterator[Record]]]:
    """Split one held-out data set across ``workers``: merged sketch == one-pass sketch == streamed sketch."""

    def unit(name: str) -> Iterator[Record]:
        m = config.sketch_size
        learned_model = model(config, state, name, m)
        learner = RandomizedLearner(task_of(config, name), m, seed=config.seed)
        data = held_out(config, name)[:1]
        X, y = data.X[0], None if data.y is None else data.y[0]
        rows = {
            "learned": (learned_model.sketch_net, learned_model.task.rows(X, y)),
            "random": (learner.feature_map, learner.rows(X, y)),
        }
        for method, (feature_map, samples) in rows.items():
            whole = Sketch.of(feature_map, samples)
            parts = torch.tensor_split(samples, config.workers)
            merged = merge_sketches([Sketch.of(feature_map, part) for part in parts])
            streamed = sketch_stream(feature_map, iter(parts))
            removed = merged.remove(parts[-1])
            rest = Sketch.of(feature_map, torch.cat(parts[:-1]))
            yield Record(
                "merge",
                method,
                config.workers,
                {
                    "task": name,
                    "sketch_size": m,
                    "workers": config.workers,
                    "count": merged.count,
                    "merge_difference": _difference(merged, whole),
                    "stream_difference": _difference(streamed, whole),
                    "remove_difference": _difference(removed, rest),
                },
            )

    return [(lambda name=name: unit(name)) for name in config.tasks]


def _throughput_units(config: CompressiveConfig, state: dict) -> list[Callable[[], Iterator[Record]]]:
    """Rows per second of sketching, one process against Dask, for the learned and a random map."""

    def unit() -> Iterator[Record]:
        name = config.tasks[0]
        m = config.sketch_size
        learned_model = model(config, state, name, m)
        learner = RandomizedLearner(task_of(config, name), m, seed=config.seed)
        g = torch.Generator().manual_seed(config.seed)
        X = 2.0 * torch.rand(config.throughput_rows, config.d, generator=g, dtype=torch.float64) - 1.0
        y = 2.0 * torch.rand(config.throughput_rows, generator=g, dtype=torch.float64) - 1.0
        y = y if learned_model.task.needs_target else None
        learned_rows, random_rows = learned_model.task.rows(X, y), learner.rows(X, y)
        maps = {"learned": (learned_model.sketch_net, learned_rows), "random": (learner.feature_map, random_rows)}
        schedulers = ["single"] if config.scheduler == "single" else ["single", config.scheduler]
        for method, (feature_map, rows) in maps.items():
            for scheduler in schedulers:
                seconds = _sketch_seconds(feature_map, rows, scheduler)
                if seconds is None:
                    continue
                yield Record(
                    "throughput",
                    method,
                    config.throughput_rows,
                    {
                        "task": name,
                        "sketch_size": m,
                        "scheduler": scheduler,
                        "rows": config.throughput_rows,
                        "seconds": seconds,
                        "rows_per_second": config.throughput_rows / seconds,
                    },
                )

    return [unit]


def _sketch_seconds(feature_map, rows: torch.Tensor, scheduler: str) -> float | None:
    """Seconds to sketch ``rows`` in this process, or on Dask (None, with a warning, when Dask is missing)."""
    if scheduler == "single":
        return _timed(lambda: Sketch.of(feature_map, rows))[1]
    try:
        import dask.array as da

        from metalab.compressive.distributed import sketch_dask
    except ImportError:
        warnings.warn(
            "Dask is not installed (pip install metalab[scale]): 'throughput' ran in one process only", stacklevel=2
        )
        return None
    chunks = da.from_array(rows.numpy(), chunks=(max(1, rows.shape[0] // 8), rows.shape[1]))
    return _timed(lambda: sketch_dask(feature_map, chunks, client=scheduler))[1]


def _points(name: str, params: Params, X: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """An answer as 2-D points to draw over the data: centroids, PCA / autoencoder reconstructions of
    the data, or ridge's (y, prediction) pairs."""
    if name == "kmeans":
        return params["centroids"][..., :2]
    if name == "ridge":
        return torch.stack([y, X @ params["w"] + params["b"]], dim=-1)
    if "components" in params:  # PCA, and the random learner's linear autoencoder
        V, mu = params["components"], params["mean"]
        return (mu + (X - mu) @ V @ V.T)[..., :2]
    return references.autoencoder_forward(X, params)[..., :2]


def _example_units(config: CompressiveConfig, state: dict) -> list[Callable[[], Iterator[Record]]]:
    """One held-out data set per task and every method's answer on it, as 2-D points."""

    def unit(name: str) -> Iterator[Record]:
        m = config.sketch_size
        data = held_out(config, name)[:1]
        X, y = data.X[0], None if data.y is None else data.y[0]
        task = task_of(config, name)
        private = config.example_epsilon is not None
        learned_model = model(config, state, name, m, private=private)
        learner = RandomizedLearner(task, m, seed=config.seed)
        z_learned = learned_model.pooled(data.X, data.y).to(torch.float64)
        z_random = learner.pooled(data.X, data.y)
        if private:
            noise = mechanism_of(config, config.example_epsilon)
            n = X.shape[0]
            z_learned = private_sketches(z_learned, learned_model.sketch_net.bound, n, noise, seed=config.seed)
            z_random = private_sketches(z_random, learner.feature_map.bound, n, noise, seed=config.seed)
        answers = {
            "learned": {k: v[0].to(X) for k, v in learned_model.decode(z_learned).items()},
            "random": {k: v[0] for k, v in learner.decode(z_random).items()},
            "exact": task.exact(X, y, seed=config.seed),
        }
        errors = {
            "learned": float(task.error(answers["learned"], X, y)),
            "random": float(learner.error(answers["random"], X, y)),
            "exact": float(task.error(answers["exact"], X, y)),
        }
        base = {"task": name, "sketch_size": m, "epsilon": config.example_epsilon or math.inf}
        data_points = torch.stack([y, y], dim=-1) if name == "ridge" else X[:, :2]
        for i, (a, b) in enumerate(data_points.tolist()):
            yield Record("example", "data", i, {**base, "x": a, "y": b, "relative_error": math.nan})
        for method, params in answers.items():
            points = _points(name, params, X, y)
            relative = errors[method] / errors["exact"]
            for i, (a, b) in enumerate(points.tolist()):
                yield Record("example", method, i, {**base, "x": a, "y": b, "relative_error": relative})

    return [(lambda name=name: unit(name)) for name in config.tasks]


_PART_UNITS = {
    "training": _training_units,
    "sketch_size": _sketch_size_units,
    "privacy": _privacy_units,
    "decoding": _decoding_units,
    "merge": _merge_units,
    "throughput": _throughput_units,
    "example": _example_units,
}


def run(config: CompressiveConfig | None = None) -> Iterator[Record]:
    """Stream the records of every selected part; each record carries the fraction of work done."""
    config = config or CompressiveConfig()
    seed_everything(config.seed)
    state: dict[str, Any] = {"models": {}, "held_out": {}}
    units = [unit for part in PARTS if part in config.parts for unit in _PART_UNITS[part](config, state)]
    with torch_threads(config.threads):
        yield from stream_units(units)


def ratios(frame) -> dict[str, float]:
    """Headline numbers: median learned / random relative error at the largest sketch size, per task."""
    rows = frame[frame["part"] == "sketch_size"]
    out = {}
    for task, group in rows.groupby("task"):
        largest = group[group["sketch_size"] == group["sketch_size"].max()].set_index("method")["relative_error"]
        if {"learned", "random"} <= set(largest.index):
            out[f"{task}_learned_vs_random"] = float(largest["learned"] / largest["random"])
    return out


def figures(frame, config: CompressiveConfig | None = None) -> dict[str, Any]:
    """Every figure the records allow, keyed by part name."""
    from metalab.plots import compressive as plots_compressive

    return plots_compressive.compressive_figures(frame)
