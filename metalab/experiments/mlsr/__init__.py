"""Meta-learning from sparse recovery (Lou, Zhao & Wang, NeurIPS 2021 MetaLearn workshop) as one record stream.

MLSR meta-trains a body φ_θ so that a sparse output layer recovered per task by ISTA/FISTA on
``(1/2n)||[Φ 1]w − y||² + λ||W||₁`` (Φ = φ_θ(support)) does well on the task's query points; the
baselines are MAML (every parameter adapts), MAML-FZ (= ANIL: only the output layer adapts, by plain
gradient steps) and the randomly initialised network.  The paper has no public code: MLSR is a
reconstruction (see :mod:`metalab.sparse.mlsr`).

Parts (select with ``Config.parts``; ``EXPERIMENT.parts`` declares each one's x column, which ``step``
repeats, and the value columns every record carries): ``training`` (query loss per meta-iteration of
the models of ``Config.task``, streamed while they train; the run's other models train without records),
``sinusoid`` (Figure 3), ``published`` (MAML beside Finn et al. 2017, Table 2, with ``comparable``
saying whether the run used that protocol), ``fits`` (Figure 2; x is the input x, the support points
are rows of method ``"support"`` with ``adapt_steps`` -1), ``digits`` (Figure 5: digit pairs with a
random label order per task, from disjoint train / test halves of scikit-learn's 8x8 digits),
``diagnostics`` (per hidden width: head sparsity, head magnitudes and the restricted isometry of the
support features, rows of ``kind`` sparsity / histogram / rip) and ``rl`` (Figure 6, with
:mod:`metalab.rl`; x is the meta-iteration of the policy a row describes: 1..N for the
``meta_iteration`` rows, the last one for the ``adaptation`` and navigation ``trajectory`` rows of the
final policy; ``random`` is the untrained policy adapted like MAML; the environments step on the CPU).

Choices where the paper is silent or loose (each is a config field):

* Test-time adaptation never adds the L1 term (the paper's Section 3.1).  With ``test_adapt="as_trained"``
  (default) each method adapts what its inner loop trained, the way it trained it: MAML and the
  random network every parameter by gradient steps of size ``inner_lr``; MAML-FZ the output layer
  by the same steps; MLSR the output layer by the recovery's own iteration with λ = 0, i.e. gradient
  steps of size 1/L on the recovery loss ("tune the meta-network in the same way as the inner-loop
  routine", Section 4.2).  ``test_adapt="all"`` adapts every parameter of every method by the same
  gradient steps, so the differences come from the initialisation alone.
* MLSR runs ``ista_steps`` recovery iterations during meta-training; ``None`` (default) uses the
  inner-step count of the panel (1 or 5), so "meta-trained with K inner steps" means K updates for
  every method.
* The sinusoid distribution is MAML's (``sinusoid="maml"``: A ∈ [0.1, 5], phase ∈ [0, π], f = 1),
  the one the published numbers refer to; ``sinusoid="mlsr"`` is the paper's frequency variant
  (f ∈ [0.5, 2]).  Test tasks are scored on ``eval_query`` points each (the expectation is the same
  as MAML's K query points, with less noise).
* The paper preset meta-trains for MAML's 70,000 iterations (measured here at 20,000: MAML's 5-shot
  MSE 0.85 / 0.45 / 0.38 ± 0.07 / 0.05 / 0.04 after 1 / 5 / 10 steps against the published
  0.67 / 0.38 / 0.35).  The quick preset meta-trains for 250 iterations with Adam at 3e-3 instead of
  1e-3 so that a few seconds of training already separate the meta-learned initialisations from
  the random one.  Digits: one meta-training run per method instead of the paper's 100 repetitions;
  MLSR recovers the digit heads with ``digit_ista_steps`` = 10 iterations (one iteration on the
  nearly collinear sigmoid features barely moves the head), and every method adapts all its
  parameters at test time (``digit_test_adapt="all"``: "the advantage ... completely comes from the
  initialization", Section 4.2).
* RL (a reconstruction: the paper gives no RL details beyond its half-cheetah set-up): MAML's inner
  step (one vanilla policy-gradient step, α = 0.1) and MLSR's head recovery are those of
  :mod:`metalab.rl.meta`; the meta-update is Adam on the post-adaptation REINFORCE surrogate, not
  MAML's TRPO.  λ defaults to :data:`metalab.rl.DEFAULT_LAM` per method.  The quick preset uses a
  horizon of 20 steps and 40 meta-iterations; the paper preset uses MAML's navigation set-up
  (horizon 100, 20 tasks x 20 trajectories, 500 meta-iterations, 40 evaluation trajectories).
* Every part computes with ``threads`` = 1 torch CPU thread by default: the networks are small, and on
  the 2-core machine the default view of the dashboard took 106 s with torch's two threads (each
  kernel too small to share, and the second thread fighting other work for the core) against 7 s with
  one.  Runs are reproducible for a given thread count.
"""

from __future__ import annotations

from typing import Any

from metalab.experiments.base import DriftSlice, Experiment, Paper, Part
from metalab.experiments.mlsr.config import (
    ALL_METHODS,
    CONFIG,
    DEFAULT_METHODS,
    PAPER_SCALE,
    PARTS,
    PUBLISHED,
    PUBLISHED_PROTOCOL,
    RL_METHODS,
    RL_RULES,
    TASKS,
    MLSRConfig,
)
from metalab.experiments.mlsr.cost import estimate
from metalab.experiments.mlsr.models import (
    MLSRContext,
    ModelSpec,
    Trained,
    adapt_predictions,
    in_threads,
    make_learner,
    make_net,
    make_sampler,
    model_spec,
    recovered_heads,
    sinusoid_tasks,
)
from metalab.experiments.mlsr.navigation import make_rl_learner, rl_units
from metalab.experiments.mlsr.supervised import (
    diagnostics_units,
    digits_units,
    fits_units,
    published_units,
    sinusoid_units,
    training_units,
)
from metalab.plots import mlsr as plots

__all__ = [
    "ALL_METHODS",
    "CONFIG",
    "DEFAULT_METHODS",
    "EXPERIMENT",
    "NAME",
    "PAPER",
    "PAPER_SCALE",
    "PARTS",
    "PUBLISHED",
    "PUBLISHED_PROTOCOL",
    "RL_METHODS",
    "RL_RULES",
    "TASKS",
    "TITLE",
    "MLSRConfig",
    "MLSRContext",
    "ModelSpec",
    "Trained",
    "adapt_predictions",
    "drift_slice",
    "figures",
    "make_learner",
    "make_net",
    "make_rl_learner",
    "make_sampler",
    "model_spec",
    "published_table",
    "recovered_heads",
    "run",
    "sinusoid_tasks",
]

PAPER = Paper(
    title="Meta-learning from sparse recovery",
    authors="Lou, Zhao & Wang",
    venue="NeurIPS Workshop on Meta-Learning (MetaLearn)",
    year=2021,
    arxiv="",
    question="If each task only needs a sparse output layer on top of shared features, can a network be "
    "meta-trained so that the layer recovered per task from a few samples by L1-regularised sparse recovery "
    "does well, with a meta-gradient that ignores how the recovered layer depends on the features?",
    claims=(
        "On few-shot sinusoid regression a network meta-trained by MLSR adapts better than a random "
        "initialisation and at least as well as MAML, meta-trained with one or with five inner steps (Figure 3).",
        "On digit-pair classification MLSR's initialisation adapts as fast as MAML's without giving up the "
        "accuracy a random initialisation reaches after long training (Figure 5).",
        "The recovered output layers are sparse, and the wider the body, the closer its support features come "
        "to the restricted isometry property that bounds the neglected second-order term (Theorem 1).",
        "In meta-reinforcement learning MLSR, adapting only the policy's output layer, reaches returns "
        "comparable to MAML and L1-regularised MAML (Figure 6).",
    ),
    lab="Meta-train MLSR against MAML, MAML-FZ (ANIL), MAML with an L1 inner loop and a random initialisation "
    "on sinusoids, digit pairs and 2-D navigation; watch the heads' sparsity and the features' restricted isometry.",
)
NAME = "mlsr"
TITLE = PAPER.title


def published_table(frame) -> Any:
    """Our MAML MSE beside the published numbers (rows: adaptation steps)."""
    rows = frame[frame["part"] == "published"]
    return rows[["adapt_steps", "published_mse", "mse", "ci95", "ratio", "comparable"]].set_index("adapt_steps")


def drift_slice(config: MLSRConfig) -> DriftSlice:
    """What the drift test re-runs of a stored run (a few seconds): the first model of the training part
    for its first 1,000 meta-iterations, whose query-loss records begin like the stored ones; training on
    another CPU drifts in the last digits, hence the 1e-3 tolerance."""
    return DriftSlice(config.replace(meta_iterations=1000), ("training/0",), prefix=True, rtol=1e-3, atol=1e-6)


def figures(frame) -> dict[str, Any]:
    """Every figure the records allow, keyed by part name."""
    return plots.mlsr_figures(frame)


_TRAINED = ("train_inner_steps", "adapt_steps")
_DIAGNOSTICS = ("kind", "task", "width", "train_inner_steps", "lam")
_FITS = ("task_index", "adapt_steps", "train_inner_steps", "x", "y_true", "y_pred", "amplitude", "phase", "frequency")

EXPERIMENT = Experiment(
    name=NAME,
    paper=PAPER,
    config=MLSRConfig,
    parts=(
        Part(
            "training",
            "iteration",
            ("task", "iteration", "train_inner_steps", "width", "query_loss", "seconds", "status"),
            in_threads(training_units),
            "meta-training query loss against meta-iteration",
            volatile=("seconds",),
        ),
        Part(
            "sinusoid",
            "adapt_steps",
            (*_TRAINED, "mse", "ci95", "eval_shots", "eval_tasks", "adapt_rule", "train_seconds"),
            in_threads(sinusoid_units),
            "MSE on test sinusoids against test-time steps, per inner-step count of meta-training (Figure 3)",
            volatile=("train_seconds",),
        ),
        Part(
            "published",
            "adapt_steps",
            (
                *_TRAINED,
                "published_mse",
                "mse",
                "ci95",
                "ratio",
                "meta_iterations",
                "published_iterations",
                "comparable",
            ),
            in_threads(published_units),
            "MAML's MSE after 1 / 5 / 10 steps beside Finn et al. 2017, Table 2",
        ),
        Part(
            "fits",
            "x",
            _FITS,
            in_threads(fits_units),
            "fitted test sinusoids before and after test-time adaptation (Figure 2)",
        ),
        Part(
            "digits",
            "adapt_steps",
            (*_TRAINED, "accuracy", "ci95", "term", "eval_tasks", "adapt_rule", "train_seconds"),
            in_threads(digits_units),
            "accuracy on test digit pairs against adaptation steps, short and long term (Figure 5)",
            volatile=("train_seconds",),
        ),
        Part(
            "diagnostics",
            "width",
            _DIAGNOSTICS,
            in_threads(diagnostics_units),
            "head sparsity, head magnitudes and restricted isometry of the support features against width",
        ),
        Part(
            "rl",
            "iteration",
            ("kind", "env", "lam", "iteration", "train_seconds"),
            in_threads(rl_units),
            "meta-RL: returns per meta-iteration, after test-time adaptation, and navigation paths (Figure 6)",
            volatile=("train_seconds",),
        ),
    ),
    figures=plots.mlsr_figures,
    context=MLSRContext,
    estimate=estimate,
    paper_scale=PAPER_SCALE,
    drift_slice=drift_slice,
)
run = EXPERIMENT.run
