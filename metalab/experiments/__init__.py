"""The registry of experiments, one per paper; each is an :class:`~metalab.experiments.base.Experiment`
(paper metadata, config with ``quick`` and ``paper`` presets, parts, ``run`` and ``figures``)."""

from __future__ import annotations

import importlib
import types

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
    module = importlib.import_module(EXPERIMENTS[name])
    if hasattr(module, "EXPERIMENT"):
        return module.EXPERIMENT
    return _Legacy(module)  # TRANSITION: until every module declares EXPERIMENT


class _Legacy:  # TRANSITION
    def __init__(self, module: types.ModuleType):
        self.name, self.config, self.part_names = module.NAME, module.CONFIG, module.PARTS
        self.paper = types.SimpleNamespace(title=module.TITLE)
        self.run = module.run
        self.figures = lambda frame: module.figures(frame, None)
