"""One module per paper; each exposes NAME, TITLE, PARTS, CONFIG (a Config class with 'quick' and
'paper' presets), ``run(config) -> Iterator[Record]`` and ``figures(frame, config) -> {name: Figure}``."""

from __future__ import annotations

import importlib
from types import ModuleType

#: experiment name -> module path; modules are imported on first use
EXPERIMENTS = {
    "meta_sp": "metalab.experiments.meta_sp",
    "mlsr": "metalab.experiments.mlsr",
    "memory_reduced": "metalab.experiments.memory_reduced",
    "compressive": "metalab.experiments.compressive",
}


def get_experiment(name: str) -> ModuleType:
    """The experiment module called ``name``; unknown names raise ValueError listing the known ones."""
    if name not in EXPERIMENTS:
        raise ValueError(f"experiment={name!r} is not known: one of {', '.join(sorted(EXPERIMENTS))}")
    return importlib.import_module(EXPERIMENTS[name])
