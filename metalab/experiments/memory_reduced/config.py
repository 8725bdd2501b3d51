"""The settings of the memory-reduced meta-learning experiment: the data sets' fixed sizes and the config."""

from __future__ import annotations

import dataclasses

from metalab.core import Config, ConfigError, Control, param
from metalab.implicit import HYPERGRADIENTS
from metalab.implicit.baselines import check_imaml_prox, imaml_prox_rule
from metalab.implicit.heads import INNER_SOLVERS

PARTS = ("memory", "training", "cg", "final")
ALL_METHODS = ("implicit", "maml", "fomaml", "anil", "anil_recompute", "itd_bio", "imaml")
DATASETS = ("auto", "glyphs", "omniglot", "digits")
GLYPH_CLASSES = 1000
INSTANCES = 20  # images per class in the glyphs and in Omniglot
DIGIT_SPLIT = {"train": 5, "test": 5}
GLYPH_SPLIT = {"train": 0.8, "test": 0.2}
OMNIGLOT_SPLIT = {"train": 0.75, "test": 0.25}  # by alphabet
#: the methods of the ``paper`` preset: Algorithm 1 and the three baselines the paper compares it with
PAPER_METHODS = ("implicit", "maml", "anil", "itd_bio")

#: what the ``paper`` preset keeps of the published regime, what it scales down, and why
PAPER_SCALE = (
    "The published regime: Omniglot 5-way 1-shot (when its files are found, else the generated glyphs), "
    "Conv-4, K = 5 inner steps, N = 10 CG steps, Algorithm 1 against MAML, ANIL and ITD-BiO, graph memory "
    "for K up to 40; about 17 CPU minutes on one core (30 minutes of wall time on a shared 2-core machine). "
    "Scaled down: 1,200 meta-iterations of 8 tasks with "
    "32 channels instead of 60,000 iterations of 32 tasks with 64 channels (MAML's 1,200 iterations alone take "
    "15 minutes here), the 178 small-background training characters (with rotations) instead of 1,200, "
    "5-way 1-shot only (20-way and 5-shot would each double the run). Expect accuracies a few points below "
    "the published 98.7 %."
)


@dataclasses.dataclass(frozen=True)
class MemoryReducedConfig(Config):
    """Settings of the memory-reduced meta-learning experiment; ``quick`` runs in seconds, ``paper`` at published scale."""

    parts: tuple[str, ...] = param(PARTS, choices=PARTS, help="parts of the experiment to run", label="parts")
    methods: tuple[str, ...] = param(
        ALL_METHODS, choices=tuple(HYPERGRADIENTS), help="hypergradient methods to compare", label="methods"
    )
    dataset: str = param(
        "auto",
        choices=DATASETS,
        help="episodes from: auto (Omniglot when found, else glyphs), glyphs, omniglot, digits",
        label="data set",
    )
    data_path: str = param("", help="folder holding Omniglot (empty: $METALAB_DATA)", label="data folder")
    rotations: bool = param(
        True,
        help="Omniglot training classes also rotated by 90, 180 and 270 degrees, each a new class (test classes not)",
        label="rotated Omniglot training classes",
    )
    ways: int = param(5, ge=2, le=100, help="classes per episode (N-way)", label="ways N", control=Control(high=20))
    shots: tuple[int, ...] = param(
        (1, 5), choices=range(1, 20), help="support images per class; training and final run each", label="shots"
    )
    queries: int = param(5, ge=1, le=19, help="query images per class", label="queries per class")
    hidden: int = param(
        8,
        ge=1,
        le=256,
        help="Conv-4 channels (feature dimension at 28x28 input)",
        label="Conv-4 channels",
        control=Control(high=64),
    )
    image_size: int = param(28, ge=16, le=105, help="image side in pixels", label="image side")
    inner_steps: int = param(
        5,
        ge=0,
        le=1000,
        help="inner steps K for training and evaluation",
        label="inner steps K",
        control=Control(high=100),
    )
    inner_lr: float = param(
        0.2,
        gt=0.0,
        le=100.0,
        help="inner-loop step size",
        label="inner step size α",
        control=Control("number", low=0.001, high=10.0, step=0.05, format="%.3f"),
    )
    l2: float = param(
        0.01,
        ge=0.0,
        le=100.0,
        help="ridge lambda on the head inside the inner objective g (0: no strong convexity, CG fails)",
        label="ridge λ",
        control=Control("number", step=0.001, format="%g"),
    )
    cg_steps: int = param(
        10,
        ge=0,
        le=1000,
        help="conjugate-gradient steps N (implicit methods and iMAML)",
        label="CG steps N",
        control=Control(high=100),
    )
    inner_solver: str = param(
        "newton",
        choices=INNER_SOLVERS,
        help="Algorithm 1's inner solver: newton (at most K damped Newton steps) or gd (the paper's K steps of size α)",
        label="Algorithm 1 inner solver",
    )
    inner_tol: float = param(
        1e-4,
        ge=0.0,
        le=1.0,
        help="Algorithm 1's inner loop stops once ||∇g|| is this fraction of its start",
        label="inner tolerance",
        control=Control("number", step=1e-4, format="%g"),
    )
    max_inner_residual: float = param(
        0.1,
        ge=0.0,
        le=1e6,
        help="Algorithm 1's hypergradient is reported unreliable (inner_not_converged) above this ||∇g(φ_K)|| / ||∇g(φ_0)||",
        label="largest reliable inner residual",
        control=Control("number", step=0.01, format="%g"),
    )
    prox: float = param(
        1.0,
        gt=0.0,
        le=1e6,
        help="iMAML proximal strength",
        label="iMAML proximal strength",
        control=Control("number", low=0.01, high=1000.0, step=0.5),
    )
    meta_batch: int = param(
        2, ge=1, le=1024, help="tasks per meta-iteration", label="meta-batch size", control=Control(high=32)
    )
    meta_iterations: int = param(
        4, ge=1, le=1_000_000, help="meta-training iterations", label="meta-iterations", control=Control("number")
    )
    meta_lr: float = param(
        1e-3,
        gt=0.0,
        le=10.0,
        help="Adam learning rate of the meta-update",
        label="meta learning rate",
        control=Control("number", low=1e-5, high=1.0, step=1e-4, format="%.4f"),
    )
    batch_mode: str = param(
        "vmap",
        choices=("vmap", "sequential"),
        help="tasks of a meta-batch: vmap or a loop",
        label="tasks of a meta-batch",
    )
    eval_every: int = param(
        2,
        ge=1,
        le=1_000_000,
        help="meta-iterations between test evaluations",
        label="evaluate every",
        control=Control(high=50),
    )
    eval_episodes: int = param(
        5,
        ge=1,
        le=100_000,
        help="test episodes per evaluation during training",
        label="test episodes per evaluation",
        control=Control(high=100),
    )
    final_episodes: int = param(
        50,
        ge=2,
        le=1_000_000,
        help="test episodes of the final accuracy",
        label="final test episodes",
        control=Control(high=600),
    )
    k_grid: tuple[int, ...] = param(
        (1, 5, 10, 20), ge=0, le=1000, help="inner steps K for the memory part", label="K values of the memory bars"
    )
    memory_shots: int = param(
        1, ge=1, le=19, help="support images per class in the memory part", label="shots in the memory measurement"
    )
    memory_tasks: int = param(
        1,
        ge=1,
        le=64,
        help="tasks per measured meta-batch in the memory part",
        label="tasks per measured meta-batch",
        control=Control(high=8),
    )
    timing_repeats: int = param(
        1,
        ge=1,
        le=100,
        help="timed calls per memory measurement (the fastest counts)",
        label="timing repeats",
        control=Control(high=10),
    )
    measure_rss: bool = param(
        False, help="also measure peak RSS in a fresh subprocess per record (slow)", label="measure process memory"
    )
    threads: int = param(
        1, ge=0, le=256, help="torch threads while the experiment runs (0: leave as is)", label="threads"
    )
    cg_lams: tuple[float, ...] = param(
        (0.0, 1e-3, 1e-2, 1e-1), ge=0.0, le=100.0, help="lambdas of the CG residual sweep", label="λ of the CG plot"
    )
    cg_max_steps: int = param(
        40,
        ge=1,
        le=10_000,
        help="CG steps of the residual sweep",
        label="CG steps in the residual plot",
        control=Control(high=200),
    )
    cg_grid: tuple[int, ...] = param(
        (1, 2, 5, 10, 20),
        ge=0,
        le=10_000,
        help="N values of the hypergradient-error sweep",
        label="N of the error sweep",
    )
    error_k_grid: tuple[int, ...] = param(
        (1, 5, 10, 20, 40, 80, 160, 320),
        ge=0,
        le=100_000,
        help="K values of the hypergradient-error sweep",
        label="K of the error sweep",
    )
    cg_hidden: int = param(
        8,
        ge=1,
        le=64,
        help="Conv-4 channels of the small float64 problem of the cg part",
        label="channels of the CG problem",
    )
    error_l2: float = param(
        0.1,
        gt=0.0,
        le=100.0,
        help="lambda of the hypergradient-error sweep (the dense solve needs > 0)",
        label="λ of the error sweep",
    )
    device: str = param("auto", choices=("auto", "cpu", "cuda"), help="torch device", label="device")
    seed: int = param(0, ge=0, le=2**31 - 1, help="random seed", label="seed", control=Control("number"))

    presets = {
        "quick": {},
        "paper": {
            "methods": PAPER_METHODS,
            "shots": (1,),
            "hidden": 32,
            "meta_batch": 8,
            "meta_iterations": 1200,
            "eval_every": 100,
            "eval_episodes": 100,
            "final_episodes": 600,
            "k_grid": (1, 5, 10, 20, 40),
            "memory_tasks": 2,
            "timing_repeats": 3,
            "cg_max_steps": 60,
            "cg_grid": (1, 2, 5, 10, 20, 40),
            "error_k_grid": (1, 5, 10, 20, 40, 80, 160, 320, 640),
            "cg_hidden": 16,
        },
    }

    def check(self) -> None:
        for name, allowed in (
            ("parts", "at least one of " + ", ".join(PARTS)),
            ("methods", "at least one of " + ", ".join(HYPERGRADIENTS)),
            ("shots", "at least one shot count, e.g. 1,5"),
            ("k_grid", "at least one inner-step count K"),
        ):
            if not getattr(self, name):
                raise ConfigError(name, getattr(self, name), allowed)
        for name, most in (("shots", max(self.shots)), ("memory_shots", self.memory_shots)):
            if self.dataset != "digits" and most + self.queries > INSTANCES:
                raise ConfigError(
                    name,
                    most,
                    f"shots + queries <= {INSTANCES} (images per class); with queries={self.queries} at most "
                    f"{INSTANCES - self.queries} shots",
                )
        if "imaml" in self.methods:
            try:
                check_imaml_prox(self.prox, self.inner_lr)
            except ValueError as error:
                raise ConfigError("prox", self.prox, imaml_prox_rule(self.inner_lr)) from error
        limit = {"digits": DIGIT_SPLIT["test"], "glyphs": round(GLYPH_CLASSES * GLYPH_SPLIT["test"])}.get(self.dataset)
        if limit is not None and self.ways > limit:
            raise ConfigError(
                "ways", self.ways, f"at most {limit}, the number of test classes of dataset={self.dataset!r}"
            )


CONFIG = MemoryReducedConfig
