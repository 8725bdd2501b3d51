"""What the parts of one run share: the data set, the model factory, the hypergradient options and the
models the training part meta-trains (the final part reuses them)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from typing import Any

import torch

from metalab.core import ConfigError, Record, Unit, resolve_device
from metalab.core.device import torch_threads
from metalab.data import EpisodeSampler, ImageClasses, digit_classes, glyph_classes, load_omniglot
from metalab.data.omniglot import find_omniglot_dir
from metalab.experiments.memory_reduced.config import (
    DIGIT_SPLIT,
    GLYPH_CLASSES,
    GLYPH_SPLIT,
    INSTANCES,
    OMNIGLOT_SPLIT,
    MemoryReducedConfig,
)
from metalab.nets import seeded_conv4


@dataclasses.dataclass
class Data:
    """The resolved data set: its name and class-disjoint train/test classes."""

    name: str
    train: ImageClasses
    test: ImageClasses


def _omniglot_classes(config: MemoryReducedConfig) -> dict[str, ImageClasses]:
    path = config.data_path or None
    if find_omniglot_dir(path) is None:
        where = path or os.environ.get("METALAB_DATA") or "nowhere (data_path is empty and METALAB_DATA unset)"
        raise FileNotFoundError(
            f"dataset='omniglot' was asked for but no Omniglot zips or folders were found in {where}; "
            "set data_path (or METALAB_DATA) to the folder holding images_background*.zip, or use dataset='auto'"
        )
    return load_omniglot(path, image_size=config.image_size).split(OMNIGLOT_SPLIT, seed=config.seed, by="group")


def load_data(config: MemoryReducedConfig) -> Data:
    """Train/test classes of ``config.dataset`` ("auto": Omniglot when found, else the generated glyphs).

    An explicit ``dataset="omniglot"`` that is not found raises FileNotFoundError.
    """
    name = config.dataset
    if name == "auto":
        name = "omniglot" if find_omniglot_dir(config.data_path or None) is not None else "glyphs"
    if name == "omniglot":
        parts = _omniglot_classes(config)
    elif name == "digits":
        parts = digit_classes(config.image_size).split(DIGIT_SPLIT, seed=config.seed)
    else:
        classes = glyph_classes(GLYPH_CLASSES, INSTANCES, image_size=config.image_size, seed=config.seed)
        parts = classes.split(GLYPH_SPLIT, seed=config.seed)
    data = Data(name, parts["train"], parts["test"])
    available = min(len(data.train), len(data.test))
    if config.ways > available:
        raise ConfigError(
            "ways", config.ways, f"at most {available}, the classes in each split of dataset={name!r} ({data.train!r})"
        )
    return data


def sampler(
    config: MemoryReducedConfig, classes: ImageClasses, shots: int, stream: str, *, rotations: bool = False
) -> EpisodeSampler:
    """The config's ``ways``-way ``shots``-shot episodes over ``classes``, from the named random stream;
    ``rotations``: every class also rotated by 90, 180 and 270 degrees as three new classes."""
    return EpisodeSampler(
        classes,
        config.ways,
        shots,
        config.queries,
        image_size=config.image_size,
        rotations=rotations,
        seed=config.seed,
        stream=stream,
    )


def training_sampler(config: MemoryReducedConfig, data: Data, shots: int) -> EpisodeSampler:
    """Meta-training episodes: Omniglot's training classes with their rotations when ``config.rotations``
    (the papers' augmentation), the other data sets as they are."""
    rotate = config.rotations and data.name == "omniglot"
    return sampler(config, data.train, shots, f"train:{shots}", rotations=rotate)


def model_spec(config: MemoryReducedConfig, seed: int, hidden: int | None = None) -> dict[str, Any]:
    """The keyword arguments of :func:`metalab.nets.seeded_conv4` for the config's network."""
    return {"n_classes": config.ways, "hidden": hidden or config.hidden, "image_size": config.image_size, "seed": seed}


def make_model(config: MemoryReducedConfig, seed: int, hidden: int | None = None, dtype=torch.float32):
    """A seeded Conv-4 backbone, its parameters as a dict of leaf tensors, and a zero head, on the config's device."""
    device = resolve_device(config.device)
    return seeded_conv4(**model_spec(config, seed, hidden), dtype=dtype, device=device)


def options(config: MemoryReducedConfig, **changes: Any) -> dict[str, Any]:
    """The hypergradient options the config sets (``changes`` override them)."""
    opts = {
        "inner_steps": config.inner_steps,
        "inner_lr": config.inner_lr,
        "l2": config.l2,
        "cg_steps": config.cg_steps,
        "prox": config.prox,
        "batch_mode": config.batch_mode,
        "inner_solver": config.inner_solver,
        "inner_tol": config.inner_tol,
        "max_inner_residual": config.max_inner_residual,
    }
    opts.update(changes)
    return opts


def threaded_unit(config: MemoryReducedConfig, work: Callable[[], Iterator[Record]], weight: float) -> Unit:
    """A unit whose work runs on the config's torch threads."""

    def run_on_threads() -> Iterator[Record]:
        with torch_threads(config.threads):
            yield from work()

    return Unit(run_on_threads, weight)


@dataclasses.dataclass
class Trained:
    """A meta-trained network: backbone module, its parameters, the head (initialisation) and the
    seconds its meta-training steps took."""

    backbone: torch.nn.Module
    params: dict[str, torch.Tensor]
    head: dict[str, torch.Tensor]
    seconds: float


@dataclasses.dataclass
class RunContext:
    """The state the parts of one run share: the data set, and the meta-trained networks by (method,
    shots), filled by the training part (or by the final part, which trains what it does not find)."""

    data: Data
    trained: dict[tuple[str, int], Trained] = dataclasses.field(default_factory=dict)


def make_context(config: MemoryReducedConfig) -> RunContext:
    """Load the data set once for the whole run."""
    return RunContext(load_data(config))
