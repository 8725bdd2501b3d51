"""Meta-learning from sparse recovery (Lou, Zhao & Wang, NeurIPS 2021 MetaLearn workshop) as one record stream.

MLSR meta-trains a body φ_θ so that a sparse output layer recovered per task by ISTA/FISTA on
``(1/2n)||[Φ 1]w − y||² + λ||W||₁`` (Φ = φ_θ(support)) does well on the task's query points; the
baselines are MAML (every parameter adapts), MAML-FZ (= ANIL: only the output layer adapts, by plain
gradient steps) and the randomly initialised network.  The paper has no public code: MLSR is a
reconstruction (see :mod:`metalab.sparse.mlsr`).

Parts (select with ``Config.parts``):

* ``training``    meta-training query loss against meta-iteration (columns ``task``,
  ``train_inner_steps``, ``width``, ``query_loss``), streamed while every model of the run trains;
  selected alone, it trains the models of ``Config.task``.
* ``sinusoid``    MSE on fixed test sinusoids against test-time adaptation steps 0..``adapt_steps``
  for every method, meta-trained with each inner-step count of ``inner_steps`` (Figure 3); columns
  ``method``, ``adapt_steps``, ``mse``, ``ci95`` (1.96 std/√tasks), ``train_inner_steps``.
* ``published``   MAML's MSE after 1 / 5 / 10 steps beside the published 5-shot numbers of Finn et
  al. 2017, Table 2 (``PUBLISHED``), with ``comparable`` saying whether the run used that protocol
  (``sinusoid="maml"``, ``shots=10``, ``eval_shots=5``, meta-trained with one inner step).
* ``fits``        predictions on ``n_fits`` fixed test sinusoids before adaptation and after 1 and
  ``adapt_steps`` steps (Figure 2): rows with ``x``, ``y_true``, ``y_pred`` per method and
  ``adapt_steps``; the support points are rows of method ``"support"``.
* ``digits``      accuracy on digit-pair tasks (random label order per task, scikit-learn's 8x8
  digits, images split into disjoint train / test halves) against adaptation steps 0..``long_steps``
  (Figure 5: the first ``adapt_steps`` are the short-term panel).
* ``diagnostics`` for bodies meta-trained at every width of ``widths``: the sparsity of the heads
  (MLSR's recovered heads against MAML-FZ's adapted heads, rows ``kind="sparsity"``), a histogram of
  head magnitudes (``kind="histogram"``) and the restricted-isometry diagnostic of the support
  features (coherence and a sampled δ_k, for MLSR-trained and randomly initialised bodies,
  ``kind="rip"``).

* ``rl``          meta-reinforcement learning (Figure 6) with :mod:`metalab.rl` on ``rl_env`` (2-D
  navigation by default; half-cheetah direction with the ``rl`` extra) for the methods of
  ``rl_methods``: rows ``kind="meta_iteration"`` (mean return of the meta-batch before and after the
  inner loop, per meta-iteration, streamed while training), ``kind="adaptation"`` (mean return on
  ``rl_eval_tasks`` fixed tasks after 0..``rl_adapt_steps`` test-time steps, as MAML's Table 4) and,
  for 2-D navigation, ``kind="trajectory"`` (positions ``x``, ``y`` at time ``t`` of ``rl_paths_shown``
  trajectories towards each of the first ``rl_goals_shown`` goals, before adaptation and after 1 and
  ``rl_adapt_steps`` steps).  ``random`` is the untrained policy adapted like MAML.  The environments
  step on the CPU, so this part ignores ``device``.

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
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from metalab.core import (
    Config,
    ConfigError,
    Record,
    param,
    resolve_device,
    seed_everything,
)
from metalab.core.records import stream_units
from metalab.core.seeding import generator
from metalab.data import DigitPairs, SinusoidTasks
from metalab.gbml import MetaLearner, adapt, fine_tune
from metalab.nets import MLP, param_dict
from metalab.rl import DEFAULT_LAM, ENVS, INSTALL_HINT, MetaRL, evaluate, meta_train, require_mujoco
from metalab.sparse import (
    body_features,
    head_sparsity,
    lipschitz_constant,
    mlsr_gradient,
    rip_estimate,
    sparse_recovery,
    split_body,
)

NAME = "mlsr"
TITLE = "Meta-learning from sparse recovery (MLSR)"
PARTS = ("training", "sinusoid", "published", "fits", "digits", "diagnostics", "rl")
ALL_METHODS = ("mlsr", "maml", "maml_fz", "random", "maml_l1")
DEFAULT_METHODS = ("mlsr", "maml", "maml_fz", "random")
TASKS = ("sinusoid", "digits")
RL_METHODS = ("mlsr", "maml", "maml_l1", "random")
#: the experiment's RL method names -> the inner rules of metalab.rl ("random" adapts like MAML)
RL_RULES = {"mlsr": "mlsr", "maml": "maml", "maml_l1": "l1_maml", "random": "maml"}
#: Finn et al. 2017, Table 2: 5-shot sinusoid MSE after 1 / 5 / 10 gradient steps (models trained with K = 10)
PUBLISHED = {
    "maml": {1: 0.67, 5: 0.38, 10: 0.35},
    "pretrain_all_tasks": {1: 2.41, 5: 2.23, 10: 2.19},
    "multitask_reg_to_mean": {1: 2.91, 5: 2.72, 10: 2.71},
    "multitask_no_reg": {1: 4.19, 5: 3.85, 10: 3.69},
    "multitask_l2_reg": {1: 7.18, 5: 5.69, 10: 5.60},
}
#: the protocol of the published numbers
PUBLISHED_PROTOCOL = {"sinusoid": "maml", "shots": 10, "eval_shots": 5, "train_inner_steps": 1}
DIGIT_CLASS_SPLIT = 0.5  # fraction of each digit's images used for meta-training; the rest are test images
SPARSITY_TOL = 1e-6  # |w| below this counts as zero (soft-thresholding gives exact zeros)


@dataclasses.dataclass(frozen=True)
class MLSRConfig(Config):
    """Settings of the MLSR experiment; ``quick`` runs in well under a minute on 2 cores, ``paper`` at published scale."""

    methods: tuple[str, ...] = param(DEFAULT_METHODS, choices=ALL_METHODS, help="methods to compare")
    parts: tuple[str, ...] = param(
        ("training", "sinusoid", "published", "fits", "digits", "diagnostics", "rl"),
        choices=PARTS,
        help="parts of the experiment to run",
    )
    task: str = param("sinusoid", choices=TASKS, help="task family of the 'training' part when it runs alone")
    sinusoid: str = param("maml", choices=("maml", "mlsr"), help="sinusoid distribution (MAML's or the paper's)")
    lam: float = param(0.1, ge=0.0, le=100.0, help="L1 strength λ of MLSR's recovery (and of maml_l1)")
    inner_steps: tuple[int, ...] = param((1, 5), ge=1, le=50, help="inner steps during meta-training (one panel each)")
    ista_steps: int | None = param(
        None, ge=1, le=1000, help="MLSR recovery iterations in meta-training (None: the panel's inner steps)"
    )
    algorithm: str = param("ista", choices=("ista", "fista"), help="MLSR's recovery algorithm")
    loss: str = param("mse", choices=("mse", "mae"), help="MLSR's recovery loss (mae: the paper's Eq. 8)")
    head_init: str = param("learned", choices=("learned", "zero"), help="MLSR's recovery starts from")
    shots: int = param(10, ge=1, le=1000, help="support points per sinusoid task in meta-training (K)")
    query_shots: int = param(10, ge=1, le=1000, help="query points per sinusoid task in meta-training")
    eval_shots: int = param(5, ge=1, le=1000, help="support points per test sinusoid")
    eval_query: int = param(100, ge=1, le=10_000, help="query points per test sinusoid")
    hidden: int = param(40, ge=1, le=4096, help="hidden width of the 1-h-h-1 sinusoid network")
    meta_iterations: int = param(250, ge=1, le=1_000_000, help="meta-training iterations")
    meta_batch: int = param(25, ge=1, le=10_000, help="tasks per meta-batch")
    meta_lr: float = param(1e-3, gt=0.0, le=10.0, help="Adam learning rate of the meta-update")
    inner_lr: float = param(0.01, gt=0.0, le=10.0, help="inner / test-time gradient step α (sinusoid)")
    test_adapt: str = param("as_trained", choices=("as_trained", "all"), help="what adapts at test time (sinusoid)")
    adapt_steps: int = param(10, ge=1, le=1000, help="test-time adaptation steps (sinusoid, fits, short term)")
    eval_tasks: int = param(100, ge=1, le=100_000, help="fixed test tasks (sinusoid and digits)")
    n_fits: int = param(3, ge=1, le=20, help="test sinusoids drawn in the 'fits' part")
    fit_points: int = param(50, ge=2, le=1000, help="points on each fitted curve")
    digits: tuple[int, ...] = param(tuple(range(10)), ge=0, le=9, help="digits the pair tasks are drawn from")
    digit_shots: int = param(5, ge=1, le=1000, help="support images per class of a digit-pair task")
    digit_query: int = param(15, ge=1, le=1000, help="query images per class of a digit-pair task")
    digit_hidden: tuple[int, ...] = param((100, 20), ge=1, le=4096, help="hidden sizes of the digit network")
    digit_iterations: int = param(200, ge=1, le=1_000_000, help="meta-training iterations on digit pairs")
    digit_inner_lr: float = param(0.5, gt=0.0, le=100.0, help="inner / test-time gradient step on digit pairs")
    digit_ista_steps: int = param(10, ge=1, le=1000, help="MLSR recovery iterations in meta-training on digit pairs")
    digit_test_adapt: str = param("all", choices=("as_trained", "all"), help="what adapts at test time (digits)")
    long_steps: int = param(100, ge=1, le=10_000, help="adaptation steps of the long-term digits panel")
    widths: tuple[int, ...] = param((20, 40, 80, 160), ge=2, le=4096, help="hidden widths for 'diagnostics'")
    diag_iterations: int = param(100, ge=1, le=1_000_000, help="meta-training iterations per width in 'diagnostics'")
    rip_k: int = param(3, ge=1, le=64, help="sparsity level k of the sampled RIP constant δ_k")
    rl_methods: tuple[str, ...] = param(("mlsr", "maml", "maml_l1"), choices=RL_METHODS, help="methods of 'rl'")
    rl_env: str = param("navigation2d", choices=tuple(ENVS), help="environment of 'rl'")
    rl_lam: float | None = param(
        None, ge=0.0, le=100.0, help="L1 strength λ of MLSR / L1-MAML in 'rl' (None: metalab.rl.DEFAULT_LAM)"
    )
    rl_iterations: int = param(40, ge=1, le=100_000, help="meta-iterations in 'rl'")
    rl_meta_batch: int = param(10, ge=1, le=1000, help="tasks per meta-batch in 'rl'")
    rl_trajectories: int = param(20, ge=1, le=1000, help="trajectories per task and inner step in 'rl'")
    rl_horizon: int = param(20, ge=1, le=1000, help="steps per episode in 'rl'")
    rl_hidden: tuple[int, ...] = param((100, 100), ge=1, le=4096, help="hidden sizes of the policy's mean network")
    rl_inner_steps: int = param(1, ge=1, le=10, help="inner policy-gradient steps during meta-training in 'rl'")
    rl_inner_lr: float = param(0.1, gt=0.0, le=10.0, help="inner / test-time policy-gradient step α in 'rl'")
    rl_meta_lr: float = param(3e-3, gt=0.0, le=10.0, help="Adam learning rate of the meta-update in 'rl'")
    rl_adapt_steps: int = param(3, ge=1, le=20, help="test-time adaptation steps in 'rl'")
    rl_eval_tasks: int = param(10, ge=1, le=1000, help="fixed evaluation tasks in 'rl'")
    rl_eval_trajectories: int = param(20, ge=1, le=1000, help="trajectories per evaluation task and step in 'rl'")
    rl_goals_shown: int = param(3, ge=1, le=20, help="evaluation goals whose trajectories are recorded (navigation)")
    rl_paths_shown: int = param(2, ge=1, le=100, help="trajectories recorded per goal and adaptation step")
    log_every: int = param(10, ge=1, le=100_000, help="meta-iterations per 'training' record")
    device: str = param("cpu", choices=("auto", "cpu", "cuda"), help="torch device")
    seed: int = param(0, ge=0, le=2**31 - 1, help="random seed")

    presets = {
        "quick": {"meta_lr": 3e-3},
        "paper": {
            "meta_iterations": 70_000,
            "eval_tasks": 600,
            "digit_iterations": 5_000,
            "digit_query": 50,
            "diag_iterations": 5_000,
            "log_every": 100,
            "rl_iterations": 500,
            "rl_meta_batch": 20,
            "rl_horizon": 100,
            "rl_eval_tasks": 40,
            "rl_eval_trajectories": 40,
        },
    }

    def check(self) -> None:
        if not self.methods:
            raise ConfigError("methods", self.methods, "at least one of " + ", ".join(ALL_METHODS))
        if not self.parts:
            raise ConfigError("parts", self.parts, "at least one of " + ", ".join(PARTS))
        if not self.inner_steps:
            raise ConfigError("inner_steps", self.inner_steps, "at least one inner-step count >= 1")
        if len(set(self.digits)) != len(self.digits):
            raise ConfigError("digits", self.digits, "distinct digits (a pair task needs two different digits)")
        if len(self.digits) < 2:
            raise ConfigError("digits", self.digits, "at least two different digits in 0..9")
        if (
            "digits" in self.parts
            or ("training" in self.parts and self.task == "digits")
            or ("diagnostics" in self.parts and self.task == "digits")
        ):
            smallest = min(_digit_class_sizes()[d] for d in self.digits)
            need = self.digit_shots + self.digit_query
            if need > smallest:
                raise ConfigError(
                    "digit_shots",
                    self.digit_shots,
                    f"digit_shots + digit_query <= {smallest} (the test images of the smallest class "
                    f"among digits {self.digits}); got {self.digit_shots} + {self.digit_query}",
                )
        if "diagnostics" in self.parts and self.rip_k > self._diag_samples():
            raise ConfigError(
                "rip_k", self.rip_k, f"an integer <= {self._diag_samples()} (the support samples per task)"
            )
        if not self.digit_hidden:
            raise ConfigError("digit_hidden", self.digit_hidden, "at least one hidden size")
        if "rl" in self.parts:
            self._check_rl()

    def _check_rl(self) -> None:
        if not self.rl_methods:
            raise ConfigError("rl_methods", self.rl_methods, "at least one of " + ", ".join(RL_METHODS))
        if not self.rl_hidden:
            raise ConfigError("rl_hidden", self.rl_hidden, "at least one hidden size")
        if self.rl_goals_shown > self.rl_eval_tasks:
            raise ConfigError(
                "rl_goals_shown", self.rl_goals_shown, f"an integer <= rl_eval_tasks={self.rl_eval_tasks}"
            )
        if self.rl_paths_shown > self.rl_eval_trajectories:
            raise ConfigError(
                "rl_paths_shown", self.rl_paths_shown, f"an integer <= rl_eval_trajectories={self.rl_eval_trajectories}"
            )
        if self.rl_env == "halfcheetah_dir":
            try:
                require_mujoco()
            except ImportError:
                raise ConfigError(
                    "rl_env",
                    self.rl_env,
                    f"'navigation2d' (halfcheetah_dir needs gymnasium and MuJoCo: {INSTALL_HINT})",
                ) from None

    def _diag_samples(self) -> int:
        return 2 * self.digit_shots if self.task == "digits" else self.shots


CONFIG = MLSRConfig


@functools.lru_cache(maxsize=1)
def _digit_split() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's digits split per class into meta-train and test images (deterministic)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images, labels = data.images, data.target
    train, test = [], []
    for d in range(10):
        idx = np.flatnonzero(labels == d)
        cut = int(round(DIGIT_CLASS_SPLIT * idx.size))
        train.append(idx[:cut])
        test.append(idx[cut:])
    tr, te = np.concatenate(train), np.concatenate(test)
    return (images[tr], labels[tr]), (images[te], labels[te])


@functools.lru_cache(maxsize=1)
def _digit_class_sizes() -> dict[int, int]:
    (_, tr_labels), (_, te_labels) = _digit_split()
    return {d: int(min((tr_labels == d).sum(), (te_labels == d).sum())) for d in range(10)}


def digit_pools(digits: tuple[int, ...]) -> tuple[DigitPairs, DigitPairs]:
    """(meta-train pool, test pool) of digit-pair tasks over ``digits``, from disjoint images."""
    pools = []
    for images, labels in _digit_split():
        keep = np.isin(labels, digits)
        pools.append(DigitPairs(images[keep], labels[keep], flatten=True, scale=1.0 / 16.0))
    return pools[0], pools[1]


# --------------------------------------------------------------------------------------------
# networks, task samplers, meta-training (public: the benchmark and the notebook reuse them)


def make_net(config: MLSRConfig, task: str, width: int | None = None) -> MLP:
    """The task's network with seeded initial weights: 1-w-w-1 ReLU (sinusoid) or 64-h…-2 sigmoid (digits).

    ``width`` overrides the last hidden size (``hidden`` for sinusoid, ``digit_hidden[-1]`` for digits).
    Every method starts from the same weights for a given (task, width, seed).
    """
    if task == "sinusoid":
        w = config.hidden if width is None else width
        sizes, activation = [1, w, w, 1], "relu"
    else:
        hidden = list(config.digit_hidden)
        if width is not None:
            hidden[-1] = width
        sizes, activation = [64, *hidden, 2], "sigmoid"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(generator(config.seed, f"mlsr-init-{task}-{sizes}").initial_seed()) % 2**31)
        net = MLP(sizes, activation=activation)
    return net.to(resolve_device(config.device))


def sinusoid_tasks(config: MLSRConfig) -> SinusoidTasks:
    return SinusoidTasks.preset(config.sinusoid, shots=config.shots)


def make_sampler(config: MLSRConfig, task: str) -> Callable[[int], tuple[tuple, tuple]]:
    """``sample(i) -> (support, query)`` meta-batches from a seeded stream shared by every method."""
    device = resolve_device(config.device)
    if task == "sinusoid":
        tasks = sinusoid_tasks(config)
        g = generator(config.seed, "mlsr-sinusoid-train")

        def sample(_: int):
            b = tasks.sample(config.meta_batch, config.shots, config.query_shots, generator=g)
            return (b.support_x.to(device), b.support_y.to(device)), (b.query_x.to(device), b.query_y.to(device))

        return sample
    train_pool, _ = digit_pools(config.digits)
    g = generator(config.seed, "mlsr-digits-train")

    def sample_digits(_: int):
        b = train_pool.sample(config.meta_batch, config.digit_shots, config.digit_query, generator=g)
        return (b.support_x.to(device), b.support_y.to(device)), (b.query_x.to(device), b.query_y.to(device))

    return sample_digits


def _task_loss(task: str) -> str:
    return "mse" if task == "sinusoid" else "ce"


def _inner_lr(config: MLSRConfig, task: str) -> float:
    return config.inner_lr if task == "sinusoid" else config.digit_inner_lr


def _recovery_steps(config: MLSRConfig, task: str, inner_steps: int) -> int:
    if task == "digits":
        return config.digit_ista_steps
    return config.ista_steps or inner_steps


def _test_adapt(config: MLSRConfig, task: str) -> str:
    return config.test_adapt if task == "sinusoid" else config.digit_test_adapt


def make_learner(config: MLSRConfig, task: str, method: str, inner_steps: int, net: nn.Module) -> MetaLearner:
    """The meta-learner of ``method`` (not "random") with the config's settings."""
    loss, lr = _task_loss(task), _inner_lr(config, task)
    if method == "mlsr":
        return MetaLearner(
            net,
            mlsr_gradient,
            meta_lr=config.meta_lr,
            lam=config.lam,
            steps=_recovery_steps(config, task, inner_steps),
            algorithm=config.algorithm,
            loss=config.loss,
            query_loss=loss,
            head_init=config.head_init,
        )
    name = {"maml_fz": "anil", "maml_l1": "maml"}.get(method, method)
    l1 = config.lam if method == "maml_l1" else 0.0
    return MetaLearner(net, name, meta_lr=config.meta_lr, inner_steps=inner_steps, inner_lr=lr, loss=loss, l1=l1)


@dataclasses.dataclass
class Trained:
    """A meta-trained (or random) network: ``net`` (structure), ``params`` and the training settings."""

    task: str
    method: str
    train_inner_steps: int
    width: int
    net: nn.Module
    params: dict[str, torch.Tensor]
    seconds: float = 0.0


def train_model(
    config: MLSRConfig, task: str, method: str, inner_steps: int, width: int | None, iterations: int
) -> Iterator[dict[str, Any] | Trained]:
    """Meta-train; yields each iteration's stats, then the :class:`Trained` result (last)."""
    net = make_net(config, task, width)
    width = net[-1].in_features
    if method == "random":
        yield Trained(task, method, inner_steps, width, net, param_dict(net))
        return
    learner = make_learner(config, task, method, inner_steps, net)
    seconds = 0.0
    for stats in learner.fit(make_sampler(config, task), iterations):
        seconds += stats["seconds"]
        yield stats
    yield Trained(task, method, inner_steps, width, net, learner.current_params(), seconds)


class _Models:
    """The run's trained models, keyed by (task, method, inner steps, width); training emits 'training' records."""

    def __init__(self, config: MLSRConfig):
        self.config = config
        self.cache: dict[tuple, Trained] = {}

    def get(self, task: str, method: str, inner_steps: int, width: int | None = None, iterations: int | None = None):
        """Yield 'training' records (when that part is selected) while training; return the Trained model."""
        config = self.config
        if iterations is None:
            iterations = config.meta_iterations if task == "sinusoid" else config.digit_iterations
        base = config.hidden if task == "sinusoid" else config.digit_hidden[-1]
        width = base if width is None else width
        # a model at the base width is the same model whichever part asks for it
        key = (task, method, inner_steps, width, iterations if width != base else None)
        if key in self.cache:
            return self.cache[key]
        emit = "training" in config.parts
        window: list[float] = []
        result = None
        for item in train_model(config, task, method, inner_steps, width, iterations):
            if isinstance(item, Trained):
                result = item
                break
            window.append(item["query_loss"])
            i = item["iteration"]
            if emit and (i % config.log_every == 0 or i == iterations or i == 1):
                yield Record(
                    "training",
                    method,
                    i,
                    {
                        "task": task,
                        "train_inner_steps": inner_steps,
                        "width": width,
                        "query_loss": float(np.mean(window)),
                        "seconds": item["seconds"],
                    },
                )
                window = []
        self.cache[key] = result
        return result


# --------------------------------------------------------------------------------------------
# test-time adaptation


def adapt_predictions(
    config: MLSRConfig, model: Trained, support: tuple, query_x: torch.Tensor, steps: int
) -> torch.Tensor:
    """Predictions (steps + 1, B, n_query, out) before and after each test-time step, never with an L1 term.

    See the module docstring (``test_adapt``) for what adapts for each method.
    """
    task, method = model.task, model.method
    loss, lr = _task_loss(task), _inner_lr(config, task)
    if _test_adapt(config, task) == "all" or method in ("maml", "maml_l1", "random"):
        return fine_tune(model.net, model.params, support, query_x, steps=steps, lr=lr, loss=loss, trainable="all")
    if method == "maml_fz":
        return fine_tune(model.net, model.params, support, query_x, steps=steps, lr=lr, loss=loss, trainable="head")
    # MLSR: the recovery's iteration with λ = 0 on the output layer (gradient steps of size 1/L)
    body, prefix = split_body(model.net)
    sx, sy = support
    with torch.no_grad():
        Phi_s = body_features(body, model.params, sx)
        Phi_q = body_features(body, model.params, query_x)
        W, b = model.params[prefix + ".weight"], model.params[prefix + ".bias"]
        w = torch.cat([W.T, b[None]], 0).expand(sx.shape[0], -1, -1).clone()
        if config.head_init == "zero":
            w = torch.zeros_like(w)
        y = nn.functional.one_hot(sy, W.shape[0]).to(w.dtype) if loss == "ce" else sy.reshape(*sy.shape[:2], -1)
        eta = (1.0 / lipschitz_constant(Phi_s).clamp_min(torch.finfo(Phi_s.dtype).tiny))[:, None, None]
        n = Phi_s.shape[1]
        preds = [Phi_q @ w]
        for k in range(steps):
            residual = Phi_s @ w - y
            size = eta / math.sqrt(k + 1) if config.loss == "mae" else eta
            residual = torch.sign(residual) if config.loss == "mae" else residual
            w = w - size * (Phi_s.transpose(1, 2) @ residual) / n
            preds.append(Phi_q @ w)
    return torch.stack(preds)


def recovered_heads(config: MLSRConfig, model: Trained, support: tuple) -> torch.Tensor:
    """The output-layer weights (B, p, out) each method's inner loop produces on ``support`` (bias left out).

    MLSR: the L1 recovery (as in meta-training); MAML-FZ / MAML / random: ``inner_steps`` gradient
    steps on the output layer (MAML's own inner loop would move the body too; only its head is read).
    """
    task, loss, lr = model.task, _task_loss(model.task), _inner_lr(config, model.task)
    body, prefix = split_body(model.net)
    sx, sy = support
    if model.method == "mlsr":
        with torch.no_grad():
            Phi = body_features(body, model.params, sx)
            W, b = model.params[prefix + ".weight"], model.params[prefix + ".bias"]
            w0 = torch.cat([W.T, b[None]], 0).expand(sx.shape[0], -1, -1)
            w0 = torch.zeros_like(w0) if config.head_init == "zero" else w0
            y = nn.functional.one_hot(sy, W.shape[0]).to(w0.dtype) if loss == "ce" else sy
            penalty = torch.ones_like(w0[0, :, :1])
            penalty[-1] = 0.0
            result = sparse_recovery(
                Phi,
                y,
                config.lam * penalty,
                algorithm=config.algorithm,
                steps=_recovery_steps(config, task, model.train_inner_steps),
                w0=w0.contiguous(),
                loss=config.loss,
            )
        return result.coef[:, :-1]
    adapted = torch.func.vmap(
        lambda x, y: adapt(
            model.net, model.params, x, y, steps=model.train_inner_steps, lr=lr, loss=loss, trainable="head"
        )[prefix + ".weight"]
    )(sx, sy)
    return adapted.detach().transpose(1, 2)


# --------------------------------------------------------------------------------------------
# the parts; each is a list of units, each unit a callable yielding records


def _eval_sinusoids(config: MLSRConfig):
    tasks = sinusoid_tasks(config)
    batch = tasks.fixed_tasks(config.eval_tasks, config.eval_shots, config.eval_query, seed=config.seed)
    device = resolve_device(config.device)
    return batch, (batch.support_x.to(device), batch.support_y.to(device)), batch.query_x.to(device)


def _ci95(values: torch.Tensor) -> float:
    n = values.numel()
    return float(1.96 * values.std(unbiased=True) / math.sqrt(n)) if n > 1 else math.nan


def _adapt_rule(config: MLSRConfig, method: str, task: str = "sinusoid") -> str:
    if _test_adapt(config, task) == "all" or method in ("maml", "maml_l1", "random"):
        return "all_params_gd"
    return "head_gd" if method == "maml_fz" else "head_recovery_lam0"


def _sinusoid_units(config: MLSRConfig, models: _Models, state: dict) -> list[Callable[[], Iterator[Record]]]:
    def unit(method: str, inner: int) -> Callable[[], Iterator[Record]]:
        def run_unit() -> Iterator[Record]:
            model = yield from models.get("sinusoid", method, inner)
            batch, support, qx = _eval_sinusoids(config)
            with torch.no_grad():
                preds = adapt_predictions(config, model, support, qx, config.adapt_steps)
            qy = batch.query_y.to(preds.device)
            mse = (preds - qy).square().flatten(2).mean(-1)  # (steps + 1, B)
            for s in range(config.adapt_steps + 1):
                row = {
                    "train_inner_steps": inner,
                    "adapt_steps": s,
                    "mse": float(mse[s].mean()),
                    "ci95": _ci95(mse[s]),
                    "eval_shots": config.eval_shots,
                    "eval_tasks": config.eval_tasks,
                    "adapt_rule": _adapt_rule(config, method),
                    "train_seconds": model.seconds,
                }
                state.setdefault("sinusoid", {})[(method, inner, s)] = row
                yield Record("sinusoid", method, s, row)

        return run_unit

    return [unit(m, k) for k in config.inner_steps for m in config.methods]


def _published_units(config: MLSRConfig, models: _Models, state: dict) -> list[Callable[[], Iterator[Record]]]:
    if "maml" not in config.methods:
        return []
    inner = 1 if 1 in config.inner_steps else config.inner_steps[0]
    comparable = (
        all(getattr(config, k) == v for k, v in PUBLISHED_PROTOCOL.items() if k != "train_inner_steps")
        and inner == PUBLISHED_PROTOCOL["train_inner_steps"]
    )

    def run_unit() -> Iterator[Record]:
        rows = state.get("sinusoid", {})
        if ("maml", inner, 1) not in rows:
            model = yield from models.get("sinusoid", "maml", inner)
            batch, support, qx = _eval_sinusoids(config)
            with torch.no_grad():
                preds = adapt_predictions(config, model, support, qx, max(10, config.adapt_steps))
            mse = (preds - batch.query_y.to(preds.device)).square().flatten(2).mean(-1)
            rows = {("maml", inner, s): {"mse": float(mse[s].mean()), "ci95": _ci95(mse[s])} for s in (1, 5, 10)}
        for s, published in PUBLISHED["maml"].items():
            ours = rows.get(("maml", inner, s), {"mse": math.nan, "ci95": math.nan})
            yield Record(
                "published",
                "maml",
                s,
                {
                    "adapt_steps": s,
                    "published_mse": published,
                    "mse": ours["mse"],
                    "ci95": ours["ci95"],
                    "ratio": ours["mse"] / published,
                    "train_inner_steps": inner,
                    "meta_iterations": config.meta_iterations,
                    "published_iterations": 70_000,
                    "comparable": bool(comparable),
                },
            )

    return [run_unit]


def _fits_units(config: MLSRConfig, models: _Models, state: dict) -> list[Callable[[], Iterator[Record]]]:
    inner = config.inner_steps[0]
    device = resolve_device(config.device)
    tasks = sinusoid_tasks(config)
    fixed = tasks.fixed_tasks(config.n_fits, config.eval_shots, 1, seed=config.seed + 104_729)
    lo, hi = tasks.x_range
    grid = torch.linspace(lo, hi, config.fit_points, dtype=fixed.support_x.dtype)
    truth = fixed.curve(grid)  # (B, n)
    steps_shown = sorted({0, 1, config.adapt_steps})

    def support_unit() -> Iterator[Record]:
        for t in range(config.n_fits):
            for j in range(config.eval_shots):
                yield Record(
                    "fits",
                    "support",
                    -1,
                    {
                        "task_index": t,
                        "adapt_steps": -1,
                        "train_inner_steps": inner,
                        "x": float(fixed.support_x[t, j, 0]),
                        "y_true": float(fixed.support_y[t, j, 0]),
                        "y_pred": math.nan,
                        "amplitude": float(fixed.amplitude[t]),
                        "phase": float(fixed.phase[t]),
                        "frequency": float(fixed.frequency[t]),
                    },
                )

    def unit(method: str) -> Callable[[], Iterator[Record]]:
        def run_unit() -> Iterator[Record]:
            model = yield from models.get("sinusoid", method, inner)
            qx = grid.reshape(1, -1, 1).expand(config.n_fits, -1, -1).to(device)
            support = (fixed.support_x.to(device), fixed.support_y.to(device))
            with torch.no_grad():
                preds = adapt_predictions(config, model, support, qx, config.adapt_steps).cpu()
            for s in steps_shown:
                for t in range(config.n_fits):
                    for j in range(config.fit_points):
                        yield Record(
                            "fits",
                            method,
                            s,
                            {
                                "task_index": t,
                                "adapt_steps": s,
                                "train_inner_steps": inner,
                                "x": float(grid[j]),
                                "y_true": float(truth[t, j]),
                                "y_pred": float(preds[s, t, j, 0]),
                                "amplitude": float(fixed.amplitude[t]),
                                "phase": float(fixed.phase[t]),
                                "frequency": float(fixed.frequency[t]),
                            },
                        )

        return run_unit

    return [support_unit] + [unit(m) for m in config.methods]


def _digits_units(config: MLSRConfig, models: _Models, state: dict) -> list[Callable[[], Iterator[Record]]]:
    inner = config.inner_steps[0]
    device = resolve_device(config.device)

    def unit(method: str) -> Callable[[], Iterator[Record]]:
        def run_unit() -> Iterator[Record]:
            model = yield from models.get("digits", method, inner)
            _, test_pool = digit_pools(config.digits)
            batch = test_pool.sample(
                config.eval_tasks,
                config.digit_shots,
                config.digit_query,
                generator=generator(config.seed, "mlsr-digits-test"),
            )
            support = (batch.support_x.to(device), batch.support_y.to(device))
            qx, qy = batch.query_x.to(device), batch.query_y.to(device)
            with torch.no_grad():
                logits = adapt_predictions(config, model, support, qx, config.long_steps)
            accuracy = (logits.argmax(-1) == qy).to(torch.float64).mean(-1)  # (steps + 1, B)
            for s in range(config.long_steps + 1):
                yield Record(
                    "digits",
                    method,
                    s,
                    {
                        "train_inner_steps": inner,
                        "adapt_steps": s,
                        "accuracy": float(accuracy[s].mean()),
                        "ci95": _ci95(accuracy[s]),
                        "term": "short" if s <= config.adapt_steps else "long",
                        "eval_tasks": config.eval_tasks,
                        "adapt_rule": _adapt_rule(config, method, "digits"),
                        "train_seconds": model.seconds,
                    },
                )

        return run_unit

    return [unit(m) for m in config.methods]


def _diag_eval(config: MLSRConfig, task: str, n_tasks: int):
    device = resolve_device(config.device)
    if task == "sinusoid":
        batch = sinusoid_tasks(config).fixed_tasks(n_tasks, config.shots, 1, seed=config.seed + 7_919)
        return batch.support_x.to(device), batch.support_y.to(device)
    _, test_pool = digit_pools(config.digits)
    batch = test_pool.sample(n_tasks, config.digit_shots, 1, generator=generator(config.seed, "mlsr-digits-diag"))
    return batch.support_x.to(device), batch.support_y.to(device)


HIST_BINS = np.concatenate([[0.0], np.logspace(-4, 1, 21)])


def _diagnostics_units(config: MLSRConfig, models: _Models, state: dict) -> list[Callable[[], Iterator[Record]]]:
    task, inner = config.task, config.inner_steps[0]
    base = config.hidden if task == "sinusoid" else config.digit_hidden[-1]
    n_tasks = min(config.eval_tasks, 50)
    methods = [m for m in ("mlsr", "maml_fz", "random") if m in config.methods]

    def unit(width: int) -> Callable[[], Iterator[Record]]:
        def run_unit() -> Iterator[Record]:
            support = _diag_eval(config, task, n_tasks)
            for method in methods:
                iterations = None if width == base else config.diag_iterations
                model = yield from models.get(task, method, inner, width, iterations)
                common = {"kind": "", "task": task, "width": width, "train_inner_steps": inner, "lam": config.lam}
                heads = recovered_heads(config, model, support)
                sparsity = head_sparsity(heads, tol=SPARSITY_TOL)
                nonzero = (heads.abs() >= SPARSITY_TOL).flatten(1).sum(-1).to(torch.float64)
                yield Record(
                    "diagnostics",
                    method,
                    width,
                    {
                        **common,
                        "kind": "sparsity",
                        "sparsity": sparsity.mean_fraction,
                        "nonzero_mean": float(nonzero.mean()),
                        "head_size": int(heads[0].numel()),
                    },
                )
                counts, _ = np.histogram(sparsity.magnitudes.cpu().numpy(), bins=HIST_BINS)
                for lo, hi, c in zip(HIST_BINS[:-1], HIST_BINS[1:], counts):
                    yield Record(
                        "diagnostics",
                        method,
                        width,
                        {**common, "kind": "histogram", "bin_low": float(lo), "bin_high": float(hi), "count": int(c)},
                    )
                if method in ("mlsr", "random"):
                    body, _ = split_body(model.net)
                    with torch.no_grad():
                        Phi = body_features(body, model.params, support[0])[..., :-1].to(torch.float64)
                    estimates = [
                        rip_estimate(
                            Phi[t],
                            min(config.rip_k, max(1, int((Phi[t].norm(dim=0) > 1e-12).sum()))),
                            trials=100,
                            seed=config.seed + t,
                        )
                        for t in range(min(n_tasks, 20))
                    ]
                    yield Record(
                        "diagnostics",
                        method,
                        width,
                        {
                            **common,
                            "kind": "rip",
                            "coherence": float(np.mean([e.coherence for e in estimates])),
                            "delta_k": float(np.mean([e.delta for e in estimates])),
                            "rip_k": config.rip_k,
                            "live_columns": float(np.mean([e.live_columns for e in estimates])),
                            "dead_columns": float(np.mean([e.dead_columns for e in estimates])),
                        },
                    )

        return run_unit

    return [unit(w) for w in config.widths]


def _training_units(config: MLSRConfig, models: _Models, state: dict) -> list[Callable[[], Iterator[Record]]]:
    def unit(method: str, inner: int) -> Callable[[], Iterator[Record]]:
        def run_unit() -> Iterator[Record]:
            yield from models.get(config.task, method, inner)

        return run_unit

    return [unit(m, k) for k in config.inner_steps for m in config.methods if m != "random"]


def make_rl_learner(config: MLSRConfig, method: str) -> MetaRL:
    """The meta-RL learner of ``method`` (in ``RL_METHODS``) with the config's 'rl' settings."""
    rule = RL_RULES[method]
    lam = 0.0 if rule == "maml" else (DEFAULT_LAM[rule] if config.rl_lam is None else config.rl_lam)
    return MetaRL(
        config.rl_env,
        method=rule,
        lam=lam,
        meta_batch=config.rl_meta_batch,
        trajectories=config.rl_trajectories,
        horizon=config.rl_horizon,
        inner_steps=config.rl_inner_steps,
        inner_lr=config.rl_inner_lr,
        meta_lr=config.rl_meta_lr,
        hidden=config.rl_hidden,
        seed=config.seed,
    )


def _trajectory_rows(config: MLSRConfig, evaluation, steps_shown: list[int]) -> Iterator[dict[str, Any]]:
    """Positions of the recorded trajectories; the frozen positions after an episode ends are left out."""
    for s in steps_shown:
        for g in range(config.rl_goals_shown):
            goal = evaluation.tasks[g]
            for path in range(config.rl_paths_shown):
                points = evaluation.positions[s, g, path]  # (H + 1, 2)
                running = evaluation.mask[s, g, path]  # (H,): 1 while the episode runs
                last = int(running.sum())  # the position after the last running step
                for t in range(last + 1):
                    yield {
                        "adapt_steps": s,
                        "goal_index": g,
                        "goal_x": float(goal[0]),
                        "goal_y": float(goal[1]),
                        "path": path,
                        "t": t,
                        "x": float(points[t, 0]),
                        "y": float(points[t, 1]),
                    }


def _rl_units(config: MLSRConfig, models: _Models, state: dict) -> list[Callable[[], Iterator[Record]]]:
    steps_shown = sorted({0, 1, config.rl_adapt_steps})

    def unit(method: str) -> Callable[[], Iterator[Record]]:
        def run_unit() -> Iterator[Record]:
            learner = make_rl_learner(config, method)
            common = {"env": config.rl_env, "lam": learner.rule.lam}
            seconds = 0.0
            iterations = meta_train(learner, config.rl_iterations) if method != "random" else ()
            for stats in iterations:
                seconds += stats["seconds"]
                yield Record(
                    "rl",
                    method,
                    stats["iteration"],
                    {
                        "kind": "meta_iteration",
                        **common,
                        "return_before": stats["return_before"],
                        "return_after": stats["return_after"],
                        "surrogate": stats["surrogate"],
                        "grad_norm": stats["grad_norm"],
                        "status": stats["status"],
                        "seconds": stats["seconds"],
                    },
                )
            tasks = learner.env.sample_tasks(config.rl_eval_tasks, generator(config.seed, "mlsr-rl-eval-tasks"))
            evaluation = evaluate(
                learner, tasks, steps=config.rl_adapt_steps, trajectories=config.rl_eval_trajectories, seed=config.seed
            )
            for s in range(config.rl_adapt_steps + 1):
                yield Record(
                    "rl",
                    method,
                    s,
                    {
                        "kind": "adaptation",
                        **common,
                        "adapt_steps": s,
                        "mean_return": float(evaluation.returns[s].mean()),
                        "ci95": _ci95(evaluation.returns[s]),
                        "eval_tasks": config.rl_eval_tasks,
                        "train_seconds": seconds,
                    },
                )
            if config.rl_env == "navigation2d":
                for row in _trajectory_rows(config, evaluation, steps_shown):
                    yield Record("rl", method, row["adapt_steps"], {"kind": "trajectory", **common, **row})

        return run_unit

    return [unit(m) for m in config.rl_methods]


_PART_UNITS = {
    "training": _training_units,
    "sinusoid": _sinusoid_units,
    "published": _published_units,
    "fits": _fits_units,
    "digits": _digits_units,
    "diagnostics": _diagnostics_units,
    "rl": _rl_units,
}


def run(config: MLSRConfig | None = None) -> Iterator[Record]:
    """Stream the records of every selected part; each record carries the fraction of work done."""
    config = config or MLSRConfig()
    seed_everything(config.seed)
    models, state = _Models(config), {}
    units = [unit for part in PARTS if part in config.parts for unit in _PART_UNITS[part](config, models, state)]
    yield from stream_units(units)


def published_table(frame) -> Any:
    """Our MAML MSE beside the published numbers (rows: adaptation steps)."""
    rows = frame[frame["part"] == "published"]
    return rows[["adapt_steps", "published_mse", "mse", "ci95", "ratio", "comparable"]].set_index("adapt_steps")


def figures(frame, config: MLSRConfig | None = None) -> dict[str, Any]:
    """Every figure the records allow, keyed by part name."""
    from metalab.plots import mlsr as plots_mlsr

    return plots_mlsr.mlsr_figures(frame)
