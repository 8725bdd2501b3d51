"""Gradient-based meta-learning: MAML, FOMAML, ANIL / MAML-FZ, multi-step inner loops, Reptile (:mod:`.core`),
test-time adaptation (:mod:`.adaptation`) and the meta-learner (:mod:`.learner`)."""

from metalab.gbml.adaptation import adapt_tasks, adaptation_losses, fine_tune
from metalab.gbml.core import (
    ALIASES,
    LOSSES,
    METHODS,
    MetaGradient,
    adapt,
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
    "adapt_tasks",
    "adaptation_losses",
    "fine_tune",
    "head_names",
    "meta_gradient",
    "task_loss",
]
