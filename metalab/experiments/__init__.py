"""The registry of experiments, one per paper; each is an :class:`~metalab.experiments.base.Experiment`
(paper metadata, config with ``quick`` and ``paper`` presets, parts, ``run`` and ``figures``)."""

from __future__ import annotations

import importlib

from metalab.experiments.base import Experiment

#: experiment name -> module path; modules are imported on first use
EXPERIMENTS = {
    "meta_sp": "metalab.experiments.meta_sp",
    "mlsr": "metalab.experiments.mlsr",
    "memory_reduced": "metalab.experiments.memory_reduced",
    "compressive": "metalab.experiments.compressive",
}


def get_experiment(name: str) -> Experiment:
    """The experiment called ``name``; unknown names raise ValueError listing the known ones."""
    if name not in EXPERIMENTS:
        raise ValueError(f"experiment={name!r} is not known: one of {', '.join(sorted(EXPERIMENTS))}")
    return importlib.import_module(EXPERIMENTS[name]).EXPERIMENT
