"""The ``training`` part: meta-train every method (Adam on the backbone, and on the head initialisation
for the methods that meta-learn one) in the shared loop :func:`metalab.core.loop.meta_training`, with
test accuracy against meta-training wall clock, for every ``shots`` setting."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from metalab.core import Record, Unit
from metalab.core.loop import NON_FINITE, meta_training
from metalab.data import EpisodeSampler
from metalab.experiments.memory_reduced.config import MemoryReducedConfig
from metalab.experiments.memory_reduced.context import (
    Data,
    RunContext,
    Trained,
    make_model,
    options,
    sampler,
    threaded_unit,
    training_sampler,
)
from metalab.implicit import hypergradient, quiet_numerics
from metalab.implicit.evaluation import adapted_accuracy
from metalab.implicit.registry import LEARNS_HEAD

EVAL_BUDGET = 400  # test episodes evaluated together (vmapped): EVAL_BUDGET // hidden, at least 1


def evaluate(
    method: str, trained: Trained, test: EpisodeSampler, episodes: int, config: MemoryReducedConfig
) -> np.ndarray:
    """Query accuracies on test episodes ``0 .. episodes-1`` of ``test`` (the same episodes every call)
    after the method's own inner loop (:func:`metalab.implicit.evaluation.adapted_accuracy`), in
    vmapped chunks of ``EVAL_BUDGET // hidden`` episodes."""
    chunk = max(1, EVAL_BUDGET // max(config.hidden, 1))
    accuracies = []
    for start in range(0, episodes, chunk):
        batch = test.batch(start, min(chunk, episodes - start))
        tensors = (batch.support_x, batch.support_y, batch.query_x, batch.query_y)
        accuracy = adapted_accuracy(method, trained.backbone, trained.params, trained.head, *tensors, **options(config))
        accuracies.append(accuracy.cpu())
    return torch.cat(accuracies).numpy().astype(np.float64)


def train(
    method: str, shots: int, config: MemoryReducedConfig, data: Data, eval_episodes: int | None = None
) -> Iterator[tuple[int, dict[str, Any], Trained]]:
    """Meta-train ``method`` on ``shots``-shot episodes; yield (iteration, record values, the network)
    before the first step, every ``eval_every`` iterations and after the last (or a non-finite loss,
    which stops the loop).  ``seconds`` counts the loop's sampling and steps, not the evaluations."""
    backbone, params, head = make_model(config, config.seed + 7919 * shots)
    learns_head = method in LEARNS_HEAD
    if learns_head:
        head = {k: v.clone().requires_grad_(True) for k, v in head.items()}
    optimiser = torch.optim.Adam([*params.values(), *(head.values() if learns_head else ())], lr=config.meta_lr)
    episodes = training_sampler(config, data, shots)
    test = sampler(config, data.test, shots, f"test:{shots}")
    opts = options(config)
    trained = Trained(backbone, params, head, 0.0)

    def step(batch) -> dict[str, Any]:
        with quiet_numerics():
            result = hypergradient(
                method, backbone, params, head, batch.support_x, batch.support_y, batch.query_x, batch.query_y, **opts
            )
        for k, p in params.items():
            p.grad = result.hypergrad[k]
        if learns_head and result.head_hypergrad is not None:
            for k, p in head.items():
                p.grad = result.head_hypergrad[k]
        optimiser.step()
        return {"loss": result.query_loss, "status": result.status}

    def accuracy(iteration: int) -> float:
        return float(evaluate(method, trained, test, eval_episodes or config.eval_episodes, config).mean())

    def values(iteration: int, test_accuracy: float, losses: list[float], statuses: set[str]) -> dict[str, Any]:
        return {
            "iteration": iteration,
            "shots": shots,
            "ways": config.ways,
            "queries": config.queries,
            "inner_steps": config.inner_steps,
            "cg_steps": config.cg_steps,
            "dataset": data.name,
            "seconds": trained.seconds,
            "train_query_loss": float(np.mean(losses)) if losses else math.nan,
            "test_accuracy": test_accuracy,
            "status": ",".join(sorted(statuses)) or "ok",
        }

    yield 0, values(0, accuracy(0), [], set()), trained
    losses, statuses = [], set()
    rows = meta_training(
        step,
        config.meta_iterations,
        sample=lambda i: episodes.sample_batch(config.meta_batch),
        evaluate=accuracy,
        evaluate_every=config.eval_every,
    )
    for row in rows:
        trained.seconds = row.elapsed
        losses.append(row.loss)
        statuses |= {row.status} - {"ok"}
        if row.evaluation is not None or row.status == NON_FINITE:
            evaluation = row.evaluation if row.evaluation is not None else accuracy(row.iteration)
            yield row.iteration, values(row.iteration, evaluation, losses, statuses), trained
            losses, statuses = [], set()


def training_weight(config: MemoryReducedConfig, eval_episodes: int) -> float:
    """The cost of one :func:`train`, in inner-step units: its meta-steps and its evaluations."""
    steps = config.meta_iterations * config.meta_batch * (config.inner_steps + config.cg_steps + 2)
    evaluations = (config.meta_iterations // config.eval_every + 2) * eval_episodes * (config.inner_steps + 1)
    return steps + evaluations


def training_units(config: MemoryReducedConfig, context: RunContext) -> list[Unit]:
    """One unit per (shots, method); its records report the fraction of the meta-iterations done."""

    def run_training(method: str, shots: int) -> Iterator[Record]:
        for iteration, values, trained in train(method, shots, config, context.data):
            context.trained[(method, shots)] = trained
            yield Record("training", method, iteration, values, progress=iteration / config.meta_iterations)

    weight = training_weight(config, config.eval_episodes)
    return [
        threaded_unit(config, functools.partial(run_training, method, shots), weight)
        for shots in config.shots
        for method in config.methods
    ]


def trained_network(config: MemoryReducedConfig, context: RunContext, method: str, shots: int) -> Trained:
    """The network the training part trained for (method, shots); trained now (with one test episode per
    evaluation) when the training part did not run."""
    key = (method, shots)
    if key not in context.trained:
        for _, _, trained in train(method, shots, config, context.data, eval_episodes=1):
            context.trained[key] = trained
    return context.trained[key]
