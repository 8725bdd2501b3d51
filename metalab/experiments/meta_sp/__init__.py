"""Meta Subspace Pursuit (Zhang, Liu, Zhang, arXiv 2409.02708): the paper's story as one record stream.

Parts (select with ``Config.parts``):

* ``convergence``   error of every method per iteration on one instance (Meta-SP converges linearly
  to a noise floor);
* ``samples``       final subspace error against samples per task m (Meta-SP wins when m is small);
* ``rank``          Meta-SP with a mis-specified rank s-1, s, s+1;
* ``noise_floor``   Meta-SP's final ||Θ̂ - Θ*||_F as sigma, d, T and m vary one at a time, against the
  stated rate O(sigma sqrt(dT/m)) (log-log slopes 1, 1/2, 1/2, -1/2);
* ``air_quality``   few-shot PM2.5 prediction on held-out Beijing station-days (needs the data; the
  part is skipped with a warning when it is not found);
* ``time_to_target`` seconds each method needs to reach a target subspace error.
"""

from typing import Any

from metalab.experiments.base import DriftSlice, Experiment, Paper, Part
from metalab.experiments.meta_sp.claims import claim_table
from metalab.experiments.meta_sp.config import (
    ALL_METHODS,
    CONFIG,
    EXPECTED_SLOPES,
    PAPER_SCALE,
    PARTS,
    MetaSPConfig,
)
from metalab.experiments.meta_sp.cost import estimate
from metalab.experiments.meta_sp.parts import (
    air_quality_units,
    convergence_units,
    fit_method,
    make_instance,
    noise_floor_slopes,
    noise_floor_units,
    rank_units,
    samples_units,
    time_to_target,
    time_to_target_units,
)
from metalab.plots import meta_sp as plots

__all__ = [
    "ALL_METHODS",
    "CONFIG",
    "EXPECTED_SLOPES",
    "EXPERIMENT",
    "PAPER",
    "PAPER_SCALE",
    "PARTS",
    "MetaSPConfig",
    "claim_table",
    "drift_slice",
    "figures",
    "fit_method",
    "make_instance",
    "noise_floor_slopes",
    "run",
    "time_to_target",
]

PAPER = Paper(
    title="Meta Subspace Pursuit",
    authors="Zhang, Liu & Zhang",
    venue="arXiv preprint",
    year=2024,
    arxiv="2409.02708",
    question="Tasks share an unknown low-dimensional subspace, but each has fewer samples than dimensions. "
    "How fast, and how well, can the subspace be recovered across tasks?",
    claims=(
        "Meta-SP (a gradient step on every task, then a rank-s hard thresholding of the stacked coefficients) "
        "converges linearly to a noise floor.",
        "The floor scales as O(σ √(dT/m)) in the noise σ, the dimension d, the tasks T and the samples per task m.",
        "With few samples per task (m small) Meta-SP recovers the subspace where the method of moments, "
        "alternating minimisation and ANIL do not.",
    ),
    lab="Convergence of Meta-SP against MoM, AltMinGD, Burer-Monteiro, nuclear norm, ANIL, single-task and "
    "oracle baselines; error against samples per task.",
)
NAME = "meta_sp"
TITLE = PAPER.title


def figures(frame) -> dict[str, Any]:
    """Every figure the records allow, keyed by part name."""
    return plots.meta_sp_figures(frame)


def drift_slice(config: MetaSPConfig) -> DriftSlice:
    """The units the drift test re-runs from a stored run (about 30 s on one core): every method at the
    smallest m of the samples grid, Meta-SP's convergence trace, and the first noise-floor point."""
    return DriftSlice(config, ("samples/0", "convergence/0", "noise_floor/0"))


_EVALUATION = ("sin_theta", "sin_theta_fro", "few_shot_mse", "seconds", "n_iter")

EXPERIMENT = Experiment(
    name=NAME,
    paper=PAPER,
    config=MetaSPConfig,
    parts=(
        Part(
            "convergence",
            "iteration",
            ("iteration", "n_samples", "rank", "sin_theta", "objective", "seconds"),
            convergence_units,
            "error of every method per iteration on one instance",
            volatile=("seconds",),
        ),
        Part(
            "samples",
            "n_samples",
            ("n_samples", "repeat", *_EVALUATION),
            samples_units,
            "final subspace error against samples per task m",
            volatile=("seconds",),
        ),
        Part(
            "rank",
            "fitted_rank",
            ("fitted_rank", "rank", "n_samples", "repeat", *_EVALUATION),
            rank_units,
            "Meta-SP with a mis-specified rank s-1, s, s+1",
            volatile=("seconds",),
        ),
        Part(
            "noise_floor",
            "value",
            ("factor", "value", "repeat", "noise", "d", "n_tasks", "n_samples", "coef_error_fro", "rate"),
            noise_floor_units,
            "Meta-SP's final error as sigma, d, T and m vary one at a time, against the stated rate",
        ),
        Part(
            "air_quality",
            None,
            ("rank", "n_train_tasks", "n_test_tasks", "support", "few_shot_mse", "seconds", "n_iter"),
            air_quality_units,
            "few-shot PM2.5 prediction on held-out Beijing station-days",
            volatile=("seconds",),
        ),
        Part(
            "time_to_target",
            None,
            ("n_samples", "repeat", "target_error", "seconds_to_target", "reached", "final_sin_theta"),
            time_to_target_units,
            "seconds each method needs to reach the target subspace error",
            volatile=("seconds_to_target",),
        ),
    ),
    figures=figures,
    estimate=estimate,
    paper_scale=PAPER_SCALE,
    drift_slice=drift_slice,
)
run = EXPERIMENT.run
