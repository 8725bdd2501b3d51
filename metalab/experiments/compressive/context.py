"""What the parts of one compressive run share: the meta-trained models and the held-out data sets with
the exact reference's error on each, each computed once, on first use."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import NamedTuple

import torch

from metalab.compressive.datasets import DataBatch
from metalab.compressive.query import CompressiveModel
from metalab.compressive.training import MetaTraining, SketchNoise, TrainingProgress, meta_train
from metalab.experiments.compressive.config import CompressiveConfig, family_of, held_out, held_out_family, task_of


class ModelKey(NamedTuple):
    """Which learned model: its task, its sketch size m, and whether it was meta-trained on private sketches."""

    task: str
    sketch_size: int
    private: bool = False


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """The held-out data sets of a task and the exact reference's error on each, ``(B,)``."""

    data: DataBatch
    exact_errors: torch.Tensor


def training_run(config: CompressiveConfig, key: ModelKey) -> MetaTraining:
    """The (not yet started) meta-training of ``key``'s model with the config's settings.

    A private model sees sketches released at budgets across ``config.private_epsilons``."""
    noise = SketchNoise(config.mechanism, config.private_epsilons, config.delta) if key.private else None
    return meta_train(
        task_of(config, key.task),
        family_of(config, key.task),
        held_out=held_out_family(config, key.task),
        sketch_size=key.sketch_size,
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


@dataclasses.dataclass
class CompressiveContext:
    """The state of one run: models by :class:`ModelKey`, held-out data by task, and which unit trains
    which model (the first unit that needs a model trains it, and its weight says so)."""

    config: CompressiveConfig
    models: dict[ModelKey, CompressiveModel] = dataclasses.field(default_factory=dict)
    held_out: dict[str, HeldOut] = dataclasses.field(default_factory=dict)
    planned: set[ModelKey] = dataclasses.field(default_factory=set)
    #: per task, the exact errors on the data sets every training run of the task monitors (the same sets
    #: for every sketch size: the exact autoencoder alone is 2,000 Adam steps per set, so it runs once)
    monitored: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)

    def claim(self, key: ModelKey) -> bool:
        """True for the first unit (in run order) that asks for ``key``'s model: that unit trains it."""
        first = key not in self.planned
        self.planned.add(key)
        return first

    def train(self, key: ModelKey) -> Iterator[TrainingProgress]:
        """Meta-train ``key``'s model, one progress report per step, and keep it (nothing when it exists).

        A private model sees sketches released at budgets across ``config.private_epsilons``."""
        if key in self.models:
            return
        run = training_run(self.config, key)
        run.reference = self.monitored.get(key.task)
        yield from run
        self.models[key] = run.model
        if run.reference is not None:
            self.monitored[key.task] = run.reference

    def model(self, task: str, sketch_size: int, private: bool = False) -> CompressiveModel:
        """The meta-trained model of ``task`` at ``sketch_size`` (trained now if no unit trained it before)."""
        key = ModelKey(task, sketch_size, private)
        for _ in self.train(key):
            pass
        return self.models[key]

    def scored(self, task: str) -> HeldOut:
        """The held-out data sets of ``task`` and the exact reference's error on each."""
        if task not in self.held_out:
            data = held_out(self.config, task)
            exact = task_of(self.config, task).exact_error(data.X, data.y, seed=self.config.seed)
            self.held_out[task] = HeldOut(data, exact)
        return self.held_out[task]
