"""The settings of the MLSR experiment: methods, task families, meta-training and evaluation sizes, the 'rl'
part; ``quick`` runs in well under a minute on 2 cores, ``paper`` at the published scale."""

from __future__ import annotations

import dataclasses

from metalab.core import Config, ConfigError, Control, param
from metalab.data import digit_split_sizes
from metalab.rl import ENVS, INSTALL_HINT, require_mujoco

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


#: what the ``paper`` preset keeps of the published regime, what it scales down, and why
PAPER_SCALE = (
    "The published regimes: MAML's sinusoid setting (1-40-40-1 ReLU, 10 shots, 70,000 meta-iterations, 600 "
    "test tasks scored 5-shot after 1, 5 and 10 steps) for MAML, MLSR and MAML-FZ meta-trained with 1 and 5 "
    "inner steps; digit pairs; 2-D navigation with MAML's horizon of 100 steps, 20 tasks x 20 trajectories and "
    "500 meta-iterations; about 33 CPU minutes on one core (46 minutes of wall time on a shared 2-core "
    "machine). Scaled down: one meta-training run per method instead of the MLSR paper's 100 "
    "repetitions on the digit pairs (5,000 meta-iterations), 40 navigation test goals, and the navigation "
    "meta-update is Adam on the REINFORCE surrogate instead of MAML's TRPO."
)


@dataclasses.dataclass(frozen=True)
class MLSRConfig(Config):
    """Settings of the MLSR experiment; ``quick`` runs in well under a minute on 2 cores, ``paper`` at published scale."""

    methods: tuple[str, ...] = param(
        DEFAULT_METHODS,
        choices=ALL_METHODS,
        label="methods",
        help="methods to compare: mlsr (MLSR), maml (MAML), maml_fz (MAML-FZ = ANIL), random (random "
        "initialisation), maml_l1 (MAML with an L1 term in its inner loop)",
    )
    parts: tuple[str, ...] = param(
        ("training", "sinusoid", "published", "fits", "digits", "diagnostics", "rl"),
        choices=PARTS,
        help="parts of the experiment to run",
    )
    task: str = param("sinusoid", choices=TASKS, help="task family of the 'training' curves and of 'diagnostics'")
    sinusoid: str = param(
        "maml",
        choices=("maml", "mlsr"),
        label="sinusoid distribution",
        help="MAML's (amplitude 0.1-5, phase 0-π) or the paper's (also frequency 0.5-2)",
    )
    lam: float = param(
        0.1,
        ge=0.0,
        le=100.0,
        label="λ (L1 strength)",
        control=Control(widget="number", step=0.01, format="%.4f"),
        help="L1 strength λ of MLSR's recovery (and of maml_l1)",
    )
    inner_steps: tuple[int, ...] = param(
        (1, 5),
        ge=1,
        le=50,
        label="inner steps",
        help="inner steps during meta-training; several, comma-separated (e.g. 1, 5), train one model each",
    )
    ista_steps: int | None = param(
        None, ge=1, le=1000, help="MLSR recovery iterations in meta-training (None: the panel's inner steps)"
    )
    algorithm: str = param(
        "ista", choices=("ista", "fista"), label="recovery algorithm", help="MLSR's recovery algorithm"
    )
    loss: str = param(
        "mse", choices=("mse", "mae"), label="recovery loss", help="MLSR's recovery loss (mae: the paper's Eq. 8)"
    )
    head_init: str = param("learned", choices=("learned", "zero"), help="MLSR's recovery starts from")
    shots: int = param(
        10,
        ge=1,
        le=1000,
        label="shots K",
        control=Control(high=50),
        help="support points per sinusoid task in meta-training (K)",
    )
    query_shots: int = param(10, ge=1, le=1000, help="query points per sinusoid task in meta-training")
    eval_shots: int = param(5, ge=1, le=1000, help="support points per test sinusoid")
    eval_query: int = param(100, ge=1, le=10_000, help="query points per test sinusoid")
    hidden: int = param(
        40,
        ge=1,
        le=4096,
        label="hidden width",
        control=Control(low=5, high=200, step=5),
        help="hidden width of the 1-h-h-1 sinusoid network",
    )
    meta_iterations: int = param(
        250,
        ge=1,
        le=1_000_000,
        label="meta-iterations",
        control=Control(low=10, high=2000, step=10),
        help="meta-training iterations",
    )
    meta_batch: int = param(25, ge=1, le=10_000, help="tasks per meta-batch")
    meta_lr: float = param(1e-3, gt=0.0, le=10.0, help="Adam learning rate of the meta-update")
    inner_lr: float = param(0.01, gt=0.0, le=10.0, help="inner / test-time gradient step α (sinusoid)")
    test_adapt: str = param("as_trained", choices=("as_trained", "all"), help="what adapts at test time (sinusoid)")
    adapt_steps: int = param(10, ge=1, le=1000, help="test-time adaptation steps (sinusoid, fits, short term)")
    eval_tasks: int = param(100, ge=1, le=100_000, help="fixed test tasks (sinusoid and digits)")
    n_fits: int = param(3, ge=1, le=20, help="test sinusoids drawn in the 'fits' part")
    fit_points: int = param(50, ge=2, le=1000, help="points on each fitted curve")
    digits: tuple[int, ...] = param(
        tuple(range(10)), choices=tuple(range(10)), label="digits", help="digits the pair tasks are drawn from"
    )
    digit_shots: int = param(
        5,
        ge=1,
        le=1000,
        label="shots per class",
        control=Control(high=100),
        help="support images per class of a digit-pair task",
    )
    digit_query: int = param(15, ge=1, le=1000, help="query images per class of a digit-pair task")
    digit_hidden: tuple[int, ...] = param(
        (100, 20), ge=1, le=4096, label="hidden width", help="hidden sizes of the digit network (64-h...-2)"
    )
    digit_iterations: int = param(
        200,
        ge=1,
        le=1_000_000,
        label="meta-iterations",
        control=Control(low=10, high=2000, step=10),
        help="meta-training iterations on digit pairs",
    )
    digit_inner_lr: float = param(0.5, gt=0.0, le=100.0, help="inner / test-time gradient step on digit pairs")
    digit_ista_steps: int = param(10, ge=1, le=1000, help="MLSR recovery iterations in meta-training on digit pairs")
    digit_test_adapt: str = param("all", choices=("as_trained", "all"), help="what adapts at test time (digits)")
    long_steps: int = param(100, ge=1, le=10_000, help="adaptation steps of the long-term digits panel")
    widths: tuple[int, ...] = param((20, 40, 80, 160), ge=2, le=4096, help="hidden widths for 'diagnostics'")
    diag_iterations: int = param(100, ge=1, le=1_000_000, help="meta-training iterations per width in 'diagnostics'")
    rip_k: int = param(3, ge=1, le=64, help="sparsity level k of the sampled RIP constant δ_k")
    rl_methods: tuple[str, ...] = param(
        ("mlsr", "maml", "maml_l1"), choices=RL_METHODS, label="methods", help="methods of 'rl'"
    )
    rl_env: str = param("navigation2d", choices=tuple(ENVS), help="environment of 'rl'")
    rl_lam: float | None = param(
        None,
        ge=0.0,
        le=100.0,
        label="λ (L1 strength)",
        control=Control(widget="number", step=0.001, format="%.4f"),
        help="L1 strength λ of MLSR / L1-MAML in 'rl' (None: metalab.rl.DEFAULT_LAM)",
    )
    rl_iterations: int = param(
        40, ge=1, le=100_000, label="meta-iterations", control=Control(high=300), help="meta-iterations in 'rl'"
    )
    rl_meta_batch: int = param(10, ge=1, le=1000, help="tasks per meta-batch in 'rl'")
    rl_trajectories: int = param(
        20,
        ge=1,
        le=1000,
        label="trajectories per task",
        control=Control(low=2, high=100),
        help="trajectories per task and inner step in 'rl'",
    )
    rl_horizon: int = param(20, ge=1, le=1000, help="steps per episode in 'rl'")
    rl_hidden: tuple[int, ...] = param(
        (100, 100), ge=1, le=4096, label="hidden width", help="hidden sizes of the policy's mean network (2-h...-2)"
    )
    rl_inner_steps: int = param(
        1,
        ge=1,
        le=10,
        label="inner steps",
        control=Control(high=5),
        help="inner policy-gradient steps during meta-training in 'rl'",
    )
    rl_inner_lr: float = param(0.1, gt=0.0, le=10.0, help="inner / test-time policy-gradient step α in 'rl'")
    rl_meta_lr: float = param(3e-3, gt=0.0, le=10.0, help="Adam learning rate of the meta-update in 'rl'")
    rl_adapt_steps: int = param(3, ge=1, le=20, help="test-time adaptation steps in 'rl'")
    rl_eval_tasks: int = param(10, ge=1, le=1000, help="fixed evaluation tasks in 'rl'")
    rl_eval_trajectories: int = param(20, ge=1, le=1000, help="trajectories per evaluation task and step in 'rl'")
    rl_goals_shown: int = param(3, ge=1, le=20, help="evaluation goals whose trajectories are recorded (navigation)")
    rl_paths_shown: int = param(2, ge=1, le=100, help="trajectories recorded per goal and adaptation step")
    log_every: int = param(10, ge=1, le=100_000, help="meta-iterations per 'training' record")
    device: str = param("cpu", choices=("auto", "cpu", "cuda"), help="torch device")
    threads: int = param(
        1, ge=0, le=256, help="torch CPU threads while the run computes (0: torch's own setting; one is fastest here)"
    )
    seed: int = param(0, ge=0, le=2**31 - 1, label="seed", control=Control(widget="number", step=1), help="random seed")

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
            smallest = min(digit_split_sizes(DIGIT_CLASS_SPLIT)[d] for d in self.digits)
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
