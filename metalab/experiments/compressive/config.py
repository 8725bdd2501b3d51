"""The compressive experiment's settings, and the library objects they name (tasks, data-set families,
privacy mechanisms)."""

from __future__ import annotations

import dataclasses

from metalab.compressive.datasets import DataBatch, DatasetFamily, dataset_family
from metalab.compressive.privacy import Gaussian, Laplace
from metalab.compressive.query import TASKS, Task, make_task
from metalab.core import Config, ConfigError, Control, param

PARTS = ("training", "sketch_size", "privacy", "decoding", "merge", "throughput", "example")
FAMILIES = ("generated", "sklearn")
#: the generated family each task is meta-trained on (``family="generated"``)
GENERATED = {"kmeans": "mixtures", "pca": "low_rank", "autoencoder": "low_rank", "ridge": "linear"}
SCHEDULERS = ("single", "threads", "local")


#: what the ``paper`` preset keeps of the published regime, what it scales down, and why
PAPER_SCALE = (
    "The regime where a learned sketch can beat a random one: d = 10, so a random quadratic sketch is exact only "
    "from m = D(D+1)/2 = 66 (PCA, autoencoder) or 78 (ridge) entries, and k-means with k = 5 up to m = 10kd = 500; "
    "sketch sizes 10 to 500, 200 held-out data sets per score, Laplace noise at six budgets. Scaled down: 2,000 "
    "meta-training steps of 32 data sets with a 128-wide Query-Network per model (the held-out error levels off "
    "by step 1,000 at m = 20): 24 models, about 12 CPU minutes on one core (23 minutes of wall time on a shared "
    "2-core machine); scikit-learn's tables are the stored models' (metalab.pretrained), not this run's."
)


@dataclasses.dataclass(frozen=True)
class CompressiveConfig(Config):
    """Settings of the compressive experiment; ``quick`` runs in a few minutes on 2 cores, ``paper`` longer."""

    tasks: tuple[str, ...] = param(
        tuple(TASKS),
        choices=tuple(TASKS),
        label="task",
        control=Control(widget="select"),  # the dashboard runs one task at a time
        help="what the Query-Network predicts from the sketch",
    )
    parts: tuple[str, ...] = param(PARTS, choices=PARTS, help="parts of the experiment to run")
    family: str = param(
        "generated", choices=FAMILIES, label="data sets", help="data sets: generated families or scikit-learn tables"
    )
    d: int = param(2, ge=1, le=64, label="features d", control=Control(high=16), help="features per sample d")
    clusters: int = param(3, ge=1, le=32, label="clusters k", control=Control(high=10), help="k-means clusters k")
    components: int = param(
        1, ge=1, le=32, label="components", control=Control(high=8), help="PCA components and autoencoder bottleneck"
    )
    n_samples: int = param(
        100,
        ge=2,
        le=1_000_000,
        label="samples per data set n",
        control=Control(low=50, high=5000, step=50),
        help="samples per data set n in meta-training",
    )
    held_out_samples: int | None = param(
        250,
        ge=2,
        le=1_000_000,
        label="held-out samples per data set",
        help="samples per held-out data set (None: n_samples)",
    )
    cluster_scales: tuple[float, ...] = param(
        (0.08, 0.3), gt=0.0, le=1.0, help="range of the mixtures' cluster standard deviations (k-means)"
    )
    low_rank_noise: float = param(0.1, ge=0.0, le=1.0, help="noise of the low-rank data sets (PCA, autoencoder)")
    sketch_size: int = param(
        60,
        ge=2,
        le=4096,
        label="sketch size m",
        control=Control(high=200, step=2),
        help="sketch size m (training, privacy, decoding, merge)",
    )
    sketch_sizes: tuple[int, ...] = param(
        (10, 20, 40, 60), ge=2, le=4096, label="sketch sizes", help="sketch sizes of 'sketch_size'"
    )
    steps: int = param(
        600,
        ge=3,
        le=1_000_000,
        label="meta-training steps",
        control=Control(low=50, high=3000, step=50),
        help="meta-training steps per model",
    )
    batch: int = param(32, ge=1, le=4096, label="data sets per step", help="data sets per meta-training step")
    lr: float = param(2e-3, gt=0.0, le=1.0, help="peak Adam learning rate of meta-training")
    width: int = param(256, ge=4, le=8192, help="Query-Network width")
    blocks: int = param(2, ge=0, le=16, help="Query-Network residual blocks")
    sketch_hidden: tuple[int, ...] = param(
        (64, 64), ge=1, le=8192, label="Sketch-Network hidden widths", help="Sketch-Network hidden widths"
    )
    eval_sets: int = param(32, ge=1, le=100_000, label="held-out data sets", help="held-out data sets per evaluation")
    eval_every: int = param(50, ge=1, le=1_000_000, help="training steps between held-out evaluations")
    ridge_lam: float = param(1e-3, ge=0.0, le=100.0, help="ridge penalty lambda")
    ae_hidden: int = param(16, ge=1, le=1024, help="autoencoder hidden width")
    reference_steps: int = param(500, ge=1, le=100_000, help="Adam steps of the exact (full-data) autoencoder")
    mechanism: str = param("laplace", choices=("laplace", "gaussian"), help="privacy mechanism on the sketch")
    epsilons: tuple[float, ...] = param((0.5, 1.0, 2.0, 5.0, 20.0), gt=0.0, le=1e6, help="privacy budgets of 'privacy'")
    delta: float = param(1e-5, gt=0.0, le=0.5, help="delta of the Gaussian mechanism")
    decode_sizes: tuple[int, ...] = param(
        (10_000, 100_000, 1_000_000),
        ge=10,
        le=100_000_000,
        label="data set sizes n of 'decoding'",
        help="data set sizes n of 'decoding'",
    )
    workers: int = param(4, ge=2, le=256, help="workers a data set is split across in 'merge'")
    throughput_rows: int = param(
        200_000, ge=100, le=100_000_000, label="rows sketched in 'throughput'", help="rows sketched in 'throughput'"
    )
    scheduler: str = param("local", choices=SCHEDULERS, help="Dask scheduler of 'throughput' (single: no Dask)")
    example_epsilon: float | None = param(
        None,
        gt=0.0,
        le=1e6,
        label="privacy budget ε",
        control=Control(widget="number", low=0.1, high=1000.0, step=0.5, format="%.1f"),
        help="privacy budget of the sketches in 'example' (None: no noise); smaller ε: stronger privacy, more "
        "noise (replace-one neighbours)",
    )
    seed: int = param(0, ge=0, le=2**31 - 1, label="seed", control=Control(widget="number"), help="random seed")
    device: str = param("auto", choices=("auto", "cpu", "cuda"), help="torch device of meta-training")
    threads: int | None = param(
        1,
        ge=1,
        le=256,
        label="CPU threads",
        help="torch CPU threads during the run (None: leave as is); one by default: these networks are small, and "
        "a meta-training step took 5-10 times longer on two threads than on one on a shared 2-core machine",
    )

    presets = {
        "quick": {
            "steps": 600,
            "sketch_sizes": (10, 60),
            "eval_sets": 24,
            "epsilons": (1.0, 5.0, 50.0),
            "decode_sizes": (1_000, 10_000, 100_000),
            "throughput_rows": 100_000,
            "reference_steps": 300,
        },
        "paper": {
            "d": 10,
            "clusters": 5,
            "components": 2,
            "width": 128,
            "sketch_size": 20,
            "sketch_sizes": (10, 20, 40, 100, 500),
            "steps": 2000,
            "eval_sets": 200,
            "eval_every": 500,
            "epsilons": (0.5, 1.0, 2.0, 5.0, 20.0, 100.0),
            "throughput_rows": 1_000_000,
            "reference_steps": 2000,
        },
    }

    def check(self) -> None:
        if not self.parts:
            raise ConfigError("parts", self.parts, "at least one of " + ", ".join(PARTS))
        if not self.tasks:
            raise ConfigError("tasks", self.tasks, "at least one of " + ", ".join(TASKS))
        if len(self.cluster_scales) != 2 or self.cluster_scales[0] > self.cluster_scales[1]:
            raise ConfigError("cluster_scales", self.cluster_scales, "two numbers (low, high) with low <= high")
        if "kmeans" in self.tasks:
            self._check_kmeans()
        if self.components > self.d and {"pca", "autoencoder"} & set(self.tasks):
            raise ConfigError("components", self.components, f"at most d={self.d}")

    def _check_kmeans(self) -> None:
        smallest = min(self.n_samples, self.held_out_samples or self.n_samples)
        if self.clusters > smallest:
            raise ConfigError("clusters", self.clusters, f"at most the samples per data set ({smallest})")
        odd = [m for m in (self.sketch_size, *self.sketch_sizes) if m % 2]
        if odd:
            raise ConfigError(
                "sketch_sizes" if odd[0] != self.sketch_size else "sketch_size",
                odd[0],
                "even sizes for k-means (its random Fourier sketch holds cos and sin pairs)",
            )

    @property
    def private_epsilons(self) -> tuple[float, float]:
        """The budgets ``(low, high)`` a noise-aware model is meta-trained across: the privacy part's range,
        or ``example_epsilon`` alone when only the example releases private sketches."""
        if self.example_epsilon is not None and "privacy" not in self.parts:
            return self.example_epsilon, self.example_epsilon
        return min(self.epsilons), max(self.epsilons)


def task_of(config: CompressiveConfig, name: str) -> Task:
    """The :class:`Task` called ``name`` with the config's sizes."""
    options = {
        "pca": {"k": config.components},
        "autoencoder": {"k": config.components, "hidden": config.ae_hidden, "reference_steps": config.reference_steps},
        "kmeans": {"k": config.clusters},
        "ridge": {"lam": config.ridge_lam},
    }[name]
    return make_task(name, config.d, **options)


def family_of(config: CompressiveConfig, name: str, n: int | None = None) -> DatasetFamily:
    """The data-set family task ``name`` is trained on (``n`` samples per data set; default ``n_samples``)."""
    n = config.n_samples if n is None else n
    if config.family == "sklearn":
        return dataset_family("sklearn", n=n, d=config.d, target=name == "ridge")
    options = {
        "mixtures": {"k": config.clusters, "scales": tuple(config.cluster_scales)},
        "low_rank": {"rank": config.components, "noise": config.low_rank_noise},
        "linear": {},
    }
    family = GENERATED[name]
    return dataset_family(family, n=n, d=config.d, **options[family])


def held_out_family(config: CompressiveConfig, name: str) -> DatasetFamily:
    """The family of the held-out data sets: the training family with ``held_out_samples`` samples each."""
    return family_of(config, name, config.held_out_samples or config.n_samples)


def held_out(config: CompressiveConfig, name: str) -> DataBatch:
    """The held-out data sets every method of task ``name`` is scored on (never trained on)."""
    return held_out_family(config, name).sample(config.eval_sets, seed=config.seed + 1, split="held_out")


def mechanism_of(config: CompressiveConfig, epsilon: float) -> Laplace | Gaussian:
    """The privacy mechanism the config names, at budget ``epsilon``."""
    return Laplace(epsilon) if config.mechanism == "laplace" else Gaussian(epsilon, config.delta)
