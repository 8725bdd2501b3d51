"""Gradient-based meta-learning: MAML, FOMAML, ANIL / MAML-FZ, multi-step inner loops, Reptile."""

from metalab.gbml.core import (
    ALIASES,
    LOSSES,
    METHODS,
    MetaGradient,
    adapt,
    adaptation_losses,
    fine_tune,
    head_names,
    meta_gradient,
    task_loss,
)
from metalab.gbml.learner import MetaLearner

__all__ = [
    "ALIASES",
    "LOSSES",
    "METHODS",
    "MetaGradient",
    "MetaLearner",
    "adapt",
    "adaptation_losses",
    "fine_tune",
    "head_names",
    "meta_gradient",
    "task_loss",
]
