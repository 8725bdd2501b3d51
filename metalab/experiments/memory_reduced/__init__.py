"""Memory-Reduced Meta-Learning with Guaranteed Convergence (arXiv 2412.12030): the paper's story as one stream.

The backbone θ (Conv-4) is the upper level, a linear head φ on its features the lower level.  The
paper's Algorithm 1 ("implicit" here, in fused form) estimates the hypergradient from the last inner
iterate φ_K and N conjugate-gradient steps, so its graph memory does not grow with the number of
inner steps K; MAML, ANIL written the authors' way (``anil_recompute``) and ITD-BiO backpropagate
through the K steps.  The algorithms live in :mod:`metalab.implicit`; this package only orchestrates.

The implicit-function theorem gives the hypergradient at the inner optimum φ*.  The paper's inner loop
(K gradient steps of size α on the head) leaves Omniglot's heads far from it at K = 5 (the gradient
norm at 0.6 of its start: α = 0.2 is above 2/L for the features' curvature L ≈ 20), and Algorithm 1
then diverges; so the config's default inner solver is damped Newton (``inner_solver="newton"``, at
most K steps, stopped at ``inner_tol``), ``"gd"`` the paper's loop.  A hypergradient whose inner
gradient norm stays above ``max_inner_residual`` of its start is recorded as ``inner_not_converged``.
Omniglot training classes are augmented with their 90/180/270-degree rotations (``rotations``).  Only
the small background sets are available here (242 characters, about 180 for training against the
1,200 of the papers' split), so expect accuracies a few points below published Omniglot numbers.

Parts (select with ``Config.parts``):

* ``memory``    per method and K (the x-axis): bytes autograd saves for backward during one
  hypergradient (``graph_mb``, exact, measured task by task because torch.func refuses to run under
  saved-tensor hooks), seconds per task (the fastest of ``timing_repeats`` unmetered calls), the CUDA
  peak on GPU and, with ``measure_rss``, the peak RSS of a fresh subprocess;
* ``training``  test accuracy against meta-training wall clock (Adam on the backbone, and on the
  head initialisation for the methods that meta-learn one), for every ``shots`` setting; x-axis: the
  meta-iteration, ``seconds`` the loop's sampling and steps (no evaluation);
* ``cg``        CG residual against the step for several ridge strengths λ, and the hypergradient's
  error against the dense implicit-function-theorem solution as K and N grow (a small float64
  problem); x-axis: ``steps``, the count its sweep varies;
* ``final``     test accuracy with 95% confidence intervals over many test episodes, and the Omniglot
  20-way one-shot benchmark error next to the published errors (when its runs are found); no x-axis.

Training and final share the trained models within one run through the :class:`RunContext` (final
trains them if training did not run).
"""

from __future__ import annotations

from typing import Any

from metalab.experiments.base import DriftSlice, Experiment, Paper, Part
from metalab.experiments.memory_reduced.cg import cg_units
from metalab.experiments.memory_reduced.config import (
    ALL_METHODS,
    CONFIG,
    DATASETS,
    PAPER_SCALE,
    PARTS,
    MemoryReducedConfig,
)
from metalab.experiments.memory_reduced.context import (
    Data,
    RunContext,
    load_data,
    make_context,
    make_model,
    options,
    sampler,
)
from metalab.experiments.memory_reduced.cost import estimate
from metalab.experiments.memory_reduced.final import confidence_interval, final_units
from metalab.experiments.memory_reduced.memory import memory_ratios, memory_units
from metalab.experiments.memory_reduced.training import train, training_units
from metalab.plots import memory_reduced as plots

__all__ = [
    "ALL_METHODS",
    "CONFIG",
    "DATASETS",
    "EXPERIMENT",
    "NAME",
    "PAPER",
    "PAPER_SCALE",
    "PARTS",
    "TITLE",
    "Data",
    "MemoryReducedConfig",
    "RunContext",
    "confidence_interval",
    "drift_slice",
    "figures",
    "load_data",
    "make_model",
    "memory_ratios",
    "options",
    "run",
    "sampler",
    "train",
]

PAPER = Paper(
    title="Memory-Reduced Meta-Learning with Guaranteed Convergence",
    authors="Yang, Ma & Yu",
    venue="AAAI",
    year=2025,
    arxiv="2412.12030",
    question="Can a meta-learner's hypergradient be estimated from the last inner iterate alone, so that its "
    "memory does not grow with the number of inner steps K, without losing accuracy?",
    claims=(
        "Algorithm 1 (K head steps, then N conjugate-gradient steps on ∇²_φφ g · v = ∇_φ f and one mixed "
        "second-derivative product) keeps graph memory flat in K, while MAML, ANIL and ITD-BiO, which "
        "backpropagate through the K steps, grow with K.",
        "Its memory is at least 50% below that of MAML and of ANIL as the authors wrote it (the backbone "
        "re-run with graph at every inner step).",
        "After meta-training its test accuracy matches that of the baselines.",
        "With a strongly convex lower level (ridge λ > 0) its estimate converges to the implicit-function-"
        "theorem hypergradient as K and N grow; at λ = 0 the head Hessian is singular and CG fails.",
    ),
    lab="Graph memory and time per task against inner steps K for Algorithm 1, MAML, ANIL, ITD-BiO and iMAML; "
    "meta-training curves, final accuracy with 95% intervals, and the CG residual and hypergradient error.",
)
NAME = "memory_reduced"
TITLE = PAPER.title


def drift_slice(config: MemoryReducedConfig) -> DriftSlice:
    """What the drift test re-runs of a stored run (under a minute): Algorithm 1's first 100 meta-iterations
    (its test accuracy at 0 and 100), its graph memory at every K, and the CG sweeps.  Test accuracy is a
    mean over 100 x 25 query predictions that a last-digit difference on another CPU can flip, hence an
    absolute tolerance of 0.01 (25 predictions)."""
    memory = tuple(f"memory/{i}" for i in range(len(config.k_grid)))
    cg = tuple(f"cg/{i}" for i in range(len(config.cg_lams) + 1))
    return DriftSlice(
        config.replace(meta_iterations=100), ("training/0", *memory, *cg), prefix=True, rtol=1e-3, atol=0.01
    )


def figures(frame) -> dict[str, Any]:
    """Every figure the records allow, keyed by part name."""
    return plots.memory_reduced_figures(frame)


_MEMORY = (
    "inner_steps",
    "cg_steps",
    "ways",
    "shots",
    "queries",
    "hidden",
    "tasks",
    "timing_repeats",
    "dataset",
    "device",
)
_MEASURED = ("graph_bytes", "graph_mb", "saved_total_mb", "seconds_per_task", "cuda_peak_mb", "status")
_RSS = ("rss_mb", "rss_extra_mb")
_TRAINING = ("iteration", "shots", "ways", "queries", "inner_steps", "cg_steps", "dataset")
_CG = ("sweep", "steps", "lam", "cg_step", "inner_steps", "cg_steps", "residual", "relative_residual")

EXPERIMENT = Experiment(
    name=NAME,
    paper=PAPER,
    config=MemoryReducedConfig,
    parts=(
        Part(
            "memory",
            "inner_steps",
            (*_MEMORY, *_MEASURED, *_RSS),
            memory_units,
            "graph memory and time per task of one hypergradient against the inner steps K",
            volatile=("saved_total_mb", "seconds_per_task", "cuda_peak_mb", *_RSS),
        ),
        Part(
            "training",
            "iteration",
            (*_TRAINING, "seconds", "train_query_loss", "test_accuracy", "status"),
            training_units,
            "test accuracy against meta-training wall clock",
            volatile=("seconds",),
        ),
        Part(
            "cg",
            "steps",
            (*_CG, "hypergrad_error", "status", "failed", "shots", "ways", "support", "head_params", "dataset"),
            cg_units,
            "CG residual per ridge λ, and the hypergradient error against the dense solution as K and N grow",
        ),
        Part(
            "final",
            None,
            ("benchmark", "shots", "ways", "accuracy", "error_rate", "train_seconds"),
            final_units,
            "final test accuracy with 95% intervals, and the Omniglot one-shot benchmark when its runs are found",
            volatile=("train_seconds",),
        ),
    ),
    figures=figures,
    context=make_context,
    estimate=estimate,
    paper_scale=PAPER_SCALE,
    drift_slice=drift_slice,
)
run = EXPERIMENT.run
