"""Memory-Reduced Meta-Learning with Guaranteed Convergence (arXiv 2412.12030): the paper's story as one stream.

The backbone θ (Conv-4) is the upper level, a linear head φ on its features the lower level.  The
paper's Algorithm 1 ("implicit" here, in fused form) estimates the hypergradient from the last inner
iterate φ_K and N conjugate-gradient steps, so its graph memory does not grow with the number of
inner steps K; MAML, ANIL written the authors' way (``anil_recompute``) and ITD-BiO backpropagate
through the K steps.

Parts (select with ``Config.parts``):

* ``memory``    per method and K: bytes autograd saves for backward during one hypergradient
  (``graph_mb``, exact, via saved-tensor hooks, measured task by task with
  ``batch_mode="sequential"`` because torch.func refuses to run under those hooks), seconds per
  task (the fastest of ``timing_repeats`` unmetered calls), the CUDA peak on GPU and, with
  ``measure_rss``, the peak RSS of a fresh subprocess;
* ``training``  test accuracy against meta-training wall clock (Adam on the backbone, and on the
  head initialisation for the methods that meta-learn one), for every ``shots`` setting;
* ``cg``        CG residual against N for several ridge strengths lambda (lambda = 0 with a singular
  head Hessian is recorded as a CG failure, not raised), and the hypergradient's error against the
  dense implicit-function-theorem solution as K and N grow (a small float64 problem);
* ``final``     test accuracy with 95% confidence intervals over many test episodes, and the
  Omniglot 20-way one-shot benchmark error next to the published errors (when its runs are found).

Training and final share the trained models within one ``run`` (final trains them if training did
not run).  ``seconds`` in the training records counts the hypergradient and the optimiser step only
(no episode sampling, no evaluation).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import types
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.func import functional_call
from torch.utils._pytree import tree_flatten, tree_map

from metalab.core import (
    Config,
    ConfigError,
    Record,
    SavedTensorMeter,
    Stopwatch,
    cuda_peak_bytes,
    param,
    peak_rss_in_subprocess,
    resolve_device,
    seed_everything,
)
from metalab.core.device import torch_threads
from metalab.core.records import stream_units
from metalab.data import (
    EpisodeSampler,
    digit_classes,
    evaluate_one_shot_runs,
    glyph_classes,
    load_omniglot,
    load_one_shot_runs,
    pixel_nearest_neighbour,
)
from metalab.data.image_folders import ImageClasses
from metalab.data.omniglot import PUBLISHED_ONE_SHOT_ERRORS, find_omniglot_dir, find_one_shot_runs
from metalab.implicit import (
    HYPERGRADIENTS,
    CGWarning,
    HypergradientWarning,
    dense_implicit_hypergradient,
    heads,
    hypergradient,
    implicit_hypergradient,
)
from metalab.implicit.baselines import check_imaml_prox
from metalab.nets import Conv4, features, init_head

NAME = "memory_reduced"
TITLE = "Memory-Reduced Meta-Learning"
PARTS = ("memory", "training", "cg", "final")
ALL_METHODS = ("implicit", "maml", "fomaml", "anil", "anil_recompute", "itd_bio", "imaml")
DATASETS = ("auto", "glyphs", "omniglot", "digits")
#: methods whose inner loop adapts only the head (on fixed backbone features)
HEAD_ONLY = ("implicit", "implicit_unfused", "anil", "anil_recompute", "itd_bio", "itd_bio_recompute")
#: methods that meta-learn the head initialisation too (their results carry ``head_hypergrad``)
LEARNS_HEAD = ("maml", "fomaml", "anil", "anil_recompute", "imaml")
GLYPH_CLASSES = 1000
INSTANCES = 20  # images per class in the glyphs and in Omniglot
DIGIT_SPLIT = {"train": 5, "test": 5}
GLYPH_SPLIT = {"train": 0.8, "test": 0.2}
OMNIGLOT_SPLIT = {"train": 0.75, "test": 0.25}  # by alphabet
ONE_SHOT_WAYS = 20
MB = 2**20


@dataclasses.dataclass(frozen=True)
class MemoryReducedConfig(Config):
    """Settings of the memory-reduced meta-learning experiment; ``quick`` runs in seconds, ``paper`` at published scale."""

    parts: tuple[str, ...] = param(PARTS, choices=PARTS, help="parts of the experiment to run")
    methods: tuple[str, ...] = param(
        ALL_METHODS, choices=tuple(HYPERGRADIENTS), help="hypergradient methods to compare"
    )
    dataset: str = param(
        "auto",
        choices=DATASETS,
        help="episodes from: auto (Omniglot when found, else glyphs), glyphs, omniglot, digits",
    )
    data_path: str = param("", help="folder holding Omniglot (empty: $METALAB_DATA)")
    ways: int = param(5, ge=2, le=100, help="classes per episode (N-way)")
    shots: tuple[int, ...] = param((1, 5), ge=1, le=19, help="support images per class; training and final run each")
    queries: int = param(5, ge=1, le=19, help="query images per class")
    hidden: int = param(8, ge=1, le=256, help="Conv-4 channels (feature dimension at 28x28 input)")
    image_size: int = param(28, ge=16, le=105, help="image side in pixels")
    inner_steps: int = param(5, ge=0, le=1000, help="inner steps K for training and evaluation")
    inner_lr: float = param(0.2, gt=0.0, le=100.0, help="inner-loop step size")
    l2: float = param(0.01, ge=0.0, le=100.0, help="ridge lambda on the head inside the inner objective g")
    cg_steps: int = param(10, ge=0, le=1000, help="conjugate-gradient steps N (implicit methods and iMAML)")
    prox: float = param(1.0, gt=0.0, le=1e6, help="iMAML proximal strength")
    meta_batch: int = param(2, ge=1, le=1024, help="tasks per meta-iteration")
    meta_iterations: int = param(4, ge=1, le=1_000_000, help="meta-training iterations")
    meta_lr: float = param(1e-3, gt=0.0, le=10.0, help="Adam learning rate of the meta-update")
    batch_mode: str = param("vmap", choices=("vmap", "sequential"), help="tasks of a meta-batch: vmap or a loop")
    eval_every: int = param(2, ge=1, le=1_000_000, help="meta-iterations between test evaluations")
    eval_episodes: int = param(5, ge=1, le=100_000, help="test episodes per evaluation during training")
    final_episodes: int = param(50, ge=2, le=1_000_000, help="test episodes of the final accuracy")
    k_grid: tuple[int, ...] = param((1, 5, 10, 20), ge=0, le=1000, help="inner steps K for the memory part")
    memory_shots: int = param(1, ge=1, le=19, help="support images per class in the memory part")
    memory_tasks: int = param(1, ge=1, le=64, help="tasks per measured meta-batch in the memory part")
    timing_repeats: int = param(1, ge=1, le=100, help="timed calls per memory measurement (the fastest counts)")
    measure_rss: bool = param(False, help="also measure peak RSS in a fresh subprocess per record (slow)")
    threads: int = param(1, ge=0, le=256, help="torch threads while the experiment runs (0: leave as is)")
    cg_lams: tuple[float, ...] = param(
        (0.0, 1e-3, 1e-2, 1e-1), ge=0.0, le=100.0, help="lambdas of the CG residual sweep"
    )
    cg_max_steps: int = param(40, ge=1, le=10_000, help="CG steps of the residual sweep")
    cg_grid: tuple[int, ...] = param(
        (1, 2, 5, 10, 20), ge=0, le=10_000, help="N values of the hypergradient-error sweep"
    )
    error_k_grid: tuple[int, ...] = param(
        (1, 5, 10, 20, 40, 80, 160, 320), ge=0, le=100_000, help="K values of the hypergradient-error sweep"
    )
    cg_hidden: int = param(8, ge=1, le=64, help="Conv-4 channels of the small float64 problem of the cg part")
    error_l2: float = param(
        0.1, gt=0.0, le=100.0, help="lambda of the hypergradient-error sweep (the dense solve needs > 0)"
    )
    device: str = param("auto", choices=("auto", "cpu", "cuda"), help="torch device")
    seed: int = param(0, ge=0, le=2**31 - 1, help="random seed")

    presets = {
        "quick": {},
        "paper": {
            "queries": 15,
            "hidden": 64,
            "inner_steps": 10,
            "cg_steps": 20,
            "meta_batch": 32,
            "meta_iterations": 2000,
            "eval_every": 100,
            "eval_episodes": 100,
            "final_episodes": 600,
            "k_grid": (1, 5, 10, 20, 40),
            "memory_shots": 5,
            "memory_tasks": 2,
            "timing_repeats": 5,
            "cg_max_steps": 60,
            "cg_grid": (1, 2, 5, 10, 20, 40),
            "error_k_grid": (1, 5, 10, 20, 40, 80, 160, 320, 640),
            "cg_hidden": 16,
        },
    }

    def check(self) -> None:
        if not self.parts:
            raise ConfigError("parts", self.parts, "at least one of " + ", ".join(PARTS))
        if not self.methods:
            raise ConfigError("methods", self.methods, "at least one of " + ", ".join(HYPERGRADIENTS))
        if not self.shots:
            raise ConfigError("shots", self.shots, "at least one shot count, e.g. 1,5")
        if not self.k_grid:
            raise ConfigError("k_grid", self.k_grid, "at least one inner-step count K")
        for name in ("shots", "memory_shots"):
            most = max(self.shots) if name == "shots" else self.memory_shots
            if self.dataset != "digits" and most + self.queries > INSTANCES:
                raise ConfigError(
                    name,
                    most,
                    f"shots + queries <= {INSTANCES} (images per class); with queries={self.queries} at most "
                    f"{INSTANCES - self.queries} shots",
                )
        if "imaml" in self.methods:
            check_imaml_prox(self.prox, self.inner_lr)
        limit = {"digits": DIGIT_SPLIT["test"], "glyphs": round(GLYPH_CLASSES * GLYPH_SPLIT["test"])}.get(self.dataset)
        if limit is not None and self.ways > limit:
            raise ConfigError(
                "ways", self.ways, f"at most {limit}, the number of test classes of dataset={self.dataset!r}"
            )


CONFIG = MemoryReducedConfig


# --------------------------------------------------------------------------------------------
# data and models


@dataclasses.dataclass
class Data:
    """The resolved data set: its name and class-disjoint train/test classes."""

    name: str
    train: ImageClasses
    test: ImageClasses


def load_data(config: MemoryReducedConfig) -> Data:
    """Train/test classes of ``config.dataset`` ("auto": Omniglot when found, else the generated glyphs).

    An explicit ``dataset="omniglot"`` that is not found raises FileNotFoundError.
    """
    path = config.data_path or None
    name = config.dataset
    if name == "auto":
        name = "omniglot" if find_omniglot_dir(path) is not None else "glyphs"
    if name == "omniglot":
        if find_omniglot_dir(path) is None:
            where = path or os.environ.get("METALAB_DATA") or "nowhere (data_path is empty and METALAB_DATA unset)"
            raise FileNotFoundError(
                f"dataset='omniglot' was asked for but no Omniglot zips or folders were found in {where}; "
                "set data_path (or METALAB_DATA) to the folder holding images_background*.zip, or use dataset='auto'"
            )
        classes = load_omniglot(path, image_size=config.image_size)
        parts = classes.split(OMNIGLOT_SPLIT, seed=config.seed, by="group")
    elif name == "digits":
        parts = digit_classes(config.image_size).split(DIGIT_SPLIT, seed=config.seed)
    else:
        classes = glyph_classes(GLYPH_CLASSES, INSTANCES, image_size=config.image_size, seed=config.seed)
        parts = classes.split(GLYPH_SPLIT, seed=config.seed)
    data = Data(name, parts["train"], parts["test"])
    available = min(len(data.train), len(data.test))
    if config.ways > available:
        raise ConfigError(
            "ways", config.ways, f"at most {available}, the classes in each split of dataset={name!r} ({data.train!r})"
        )
    return data


def sampler(config: MemoryReducedConfig, classes: ImageClasses, shots: int, stream: str) -> EpisodeSampler:
    return EpisodeSampler(
        classes, config.ways, shots, config.queries, image_size=config.image_size, seed=config.seed, stream=stream
    )


def make_model(config: MemoryReducedConfig, seed: int, hidden: int | None = None, dtype=torch.float32):
    """A seeded Conv-4 backbone, its parameters as a dict of leaf tensors, and a zero head, on the config's device."""
    device = resolve_device(config.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = Conv4(in_channels=1, hidden=hidden or config.hidden, image_size=config.image_size)
    backbone = backbone.to(device=device, dtype=dtype)
    params = {k: p.detach().clone().requires_grad_(True) for k, p in backbone.named_parameters()}
    head = init_head(backbone.feature_dim, config.ways, zero=True, dtype=dtype, device=device)
    return backbone, params, head


def options(config: MemoryReducedConfig, **changes: Any) -> dict[str, Any]:
    """The hypergradient options the config sets (``changes`` override them)."""
    opts = {
        "inner_steps": config.inner_steps,
        "inner_lr": config.inner_lr,
        "l2": config.l2,
        "cg_steps": config.cg_steps,
        "prox": config.prox,
        "batch_mode": config.batch_mode,
    }
    opts.update(changes)
    return opts


@contextlib.contextmanager
def quiet_numerics():
    """Hide CG and non-finite-hypergradient warnings: the records carry the statuses instead."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CGWarning)
        warnings.simplefilter("ignore", HypergradientWarning)
        yield


def time_method(method: str, backbone, params, head, batch, opts: dict[str, Any], *, threads: int = 1) -> float:
    """Seconds per task of one hypergradient call (task by task, as :func:`measure_method` runs it)."""
    opts = {**opts, "batch_mode": "sequential"}
    with torch_threads(threads), quiet_numerics(), Stopwatch() as watch:
        _call(method, backbone, params, head, batch, opts)
    return watch.seconds / int(batch.support_x.shape[0])


def _call(method: str, backbone, params, head, batch, opts: dict[str, Any]):
    return hypergradient(
        method, backbone, params, head, batch.support_x, batch.support_y, batch.query_x, batch.query_y, **opts
    )


# --------------------------------------------------------------------------------------------
# memory


def measure_method(
    method: str,
    backbone,
    params,
    head,
    batch,
    opts: dict[str, Any],
    *,
    repeats: int = 2,
    threads: int = 1,
    device: torch.device | None = None,
) -> dict[str, Any]:
    """Graph memory (exact), seconds per task (fastest of ``repeats``, NaN for 0) and, on CUDA, the peak allocation.

    The hypergradient runs task by task (``batch_mode="sequential"``) so the saved-tensor hooks see it.
    """
    opts = {**opts, "batch_mode": "sequential"}
    n_tasks = int(batch.support_x.shape[0])
    with torch_threads(threads), quiet_numerics():
        with SavedTensorMeter() as meter:
            result = _call(method, backbone, params, head, batch, opts)
        times = []
        for _ in range(repeats):
            with Stopwatch() as watch:
                _call(method, backbone, params, head, batch, opts)
            times.append(watch.seconds)
        cuda_mb = math.nan
        if device is not None and device.type == "cuda":
            peak, _ = cuda_peak_bytes(lambda: _call(method, backbone, params, head, batch, opts), device)
            cuda_mb = peak / MB
    return {
        "graph_bytes": int(meter.peak_bytes),
        "graph_mb": meter.peak_bytes / MB,
        "saved_total_mb": meter.total_bytes / MB,
        "seconds_per_task": min(times) / n_tasks if times else math.nan,
        "cuda_peak_mb": cuda_mb,
        "status": result.status,
    }


def rss_probe(spec: dict[str, Any], batch: dict[str, torch.Tensor], method: str | None) -> None:
    """Build the model of ``spec`` and run one hypergradient of ``method`` (None: nothing): for a subprocess."""
    torch.set_num_threads(max(1, spec.pop("threads", 1)))
    config = MemoryReducedConfig(**spec)
    backbone, params, head = make_model(config, config.seed)
    if method is None:
        return None
    episode = types.SimpleNamespace(**batch)
    with quiet_numerics():
        _call(method, backbone, params, head, episode, options(config, batch_mode="sequential"))
    return None


def _memory_units(config: MemoryReducedConfig, state: dict) -> list[Callable[[], Iterator[Record]]]:
    cache: dict[str, Any] = {}

    def setup():
        if not cache:
            data = _data(config, state)
            batch = sampler(config, data.train, config.memory_shots, "memory").sample_batch(config.memory_tasks)
            cache["data"] = data
            cache["batch"] = batch
            cache["device_batch"] = batch.to(resolve_device(config.device))
            cache["model"] = make_model(config, config.seed)
            if config.measure_rss:
                cache["rss_base"] = _rss(config, batch, None)
        return cache

    def unit(method: str, K: int) -> Callable[[], Iterator[Record]]:
        def run_unit() -> Iterator[Record]:
            ready = setup()
            backbone, params, head = ready["model"]
            device = resolve_device(config.device)
            values = measure_method(
                method,
                backbone,
                params,
                head,
                ready["device_batch"],
                options(config, inner_steps=K),
                repeats=config.timing_repeats,
                threads=config.threads,
                device=device,
            )
            rss = extra = math.nan
            if config.measure_rss:
                rss = _rss(config, ready["batch"], method, inner_steps=K) / MB
                extra = rss - ready["rss_base"] / MB
            yield Record(
                "memory",
                method,
                K,
                {
                    "inner_steps": K,
                    "cg_steps": config.cg_steps,
                    "ways": config.ways,
                    "shots": config.memory_shots,
                    "queries": config.queries,
                    "hidden": config.hidden,
                    "tasks": config.memory_tasks,
                    "dataset": ready["data"].name,
                    "device": str(device),
                    **values,
                    "rss_mb": rss,
                    "rss_extra_mb": extra,
                },
            )

        return run_unit

    return [unit(m, K) for m in config.methods for K in config.k_grid]


def _rss(config: MemoryReducedConfig, batch, method: str | None, **changes: Any) -> int:
    spec = {**config.to_dict(), **changes, "device": "cpu", "threads": config.threads}
    tensors = {k: getattr(batch, k).cpu() for k in ("support_x", "support_y", "query_x", "query_y")}
    peak, _ = peak_rss_in_subprocess(rss_probe, spec, tensors, method)
    return peak


# --------------------------------------------------------------------------------------------
# training and evaluation


EVAL_BUDGET = 400  # test episodes evaluated together (vmapped): EVAL_BUDGET // hidden, at least 1


def _episode_scores(method: str, backbone, theta, phi, xs, Ys, xq, Yq, config: MemoryReducedConfig) -> torch.Tensor:
    """Query accuracy of one episode after the method's own inner loop (K steps on the support set)."""
    K, lr, l2 = config.inner_steps, config.inner_lr, config.l2
    if method in HEAD_ONLY:
        Zs, Zq = functional_call(backbone, theta, (xs,)), functional_call(backbone, theta, (xq,))
        adapted = heads.gradient_descent(phi, Zs, Ys, l2, K, lr)
        return heads.accuracy(heads.logits(adapted, Zq), Yq)
    anchor = (theta, phi)

    def inner(net):
        value = heads.loss(net[1], functional_call(backbone, net[0], (xs,)), Ys, l2)
        if method == "imaml":
            pairs = zip(tree_flatten(net)[0], tree_flatten(anchor)[0])
            value = value + 0.5 * config.prox * sum((w - a).square().sum() for w, a in pairs)
        return value

    net = anchor
    for _ in range(K):
        g = torch.func.grad(inner)(net)
        net = tree_map(lambda w, gw: w - lr * gw, net, g)
    return heads.accuracy(heads.logits(net[1], functional_call(backbone, net[0], (xq,))), Yq)


def evaluate(method: str, backbone, params, head, test: EpisodeSampler, episodes: int, config) -> np.ndarray:
    """Query accuracies on test episodes ``0 .. episodes-1`` of ``test`` (the same episodes every call),
    after the method's own inner loop: the head alone for head-only methods, the whole network (with
    iMAML's proximal term) for the MAML family.  Episodes are vmapped in chunks (fewer for wider nets)."""
    device = head["weight"].device
    theta = {k: v.detach() for k, v in params.items()}
    phi = {k: v.detach() for k, v in head.items()}
    n_way = phi["weight"].shape[0]
    score = torch.func.vmap(
        lambda xs, Ys, xq, Yq: _episode_scores(method, backbone, theta, phi, xs, Ys, xq, Yq, config)
    )
    out = []
    with quiet_numerics():
        chunk = max(1, EVAL_BUDGET // max(config.hidden, 1))
        for start in range(0, episodes, chunk):
            batch = test.batch(start, min(chunk, episodes - start))
            xs, xq = batch.support_x.to(device, phi["weight"].dtype), batch.query_x.to(device, phi["weight"].dtype)
            Ys, Yq = (
                torch.nn.functional.one_hot(y.to(device), n_way).to(phi["weight"].dtype)
                for y in (batch.support_y, batch.query_y)
            )
            out.append(score(xs, Ys, xq, Yq).detach().cpu())
    return torch.cat(out).numpy().astype(np.float64)


@dataclasses.dataclass
class Trained:
    backbone: torch.nn.Module
    params: dict[str, torch.Tensor]
    head: dict[str, torch.Tensor]
    seconds: float
    dataset: str


def train(
    method: str, shots: int, config: MemoryReducedConfig, data: Data
) -> Iterator[tuple[int, dict[str, Any], Trained]]:
    """Meta-train ``method`` and yield (iteration, values, state) at iteration 0 and every ``eval_every``."""
    backbone, params, head = make_model(config, config.seed + 7919 * shots)
    learns_head = method in LEARNS_HEAD
    if learns_head:
        head = {k: v.clone().requires_grad_(True) for k, v in head.items()}
    optimiser = torch.optim.Adam([*params.values(), *(head.values() if learns_head else ())], lr=config.meta_lr)
    episodes = sampler(config, data.train, shots, f"train:{shots}")
    test = sampler(config, data.test, shots, f"test:{shots}")
    opts = options(config)
    seconds, losses, statuses = 0.0, [], set()
    state = Trained(backbone, params, head, 0.0, data.name)

    def values(it: int) -> dict[str, Any]:
        accuracy = evaluate(method, backbone, params, head, test, config.eval_episodes, config)
        return {
            "shots": shots,
            "ways": config.ways,
            "queries": config.queries,
            "inner_steps": config.inner_steps,
            "cg_steps": config.cg_steps,
            "dataset": data.name,
            "seconds": seconds,
            "train_query_loss": float(np.mean(losses)) if losses else math.nan,
            "test_accuracy": float(accuracy.mean()),
            "status": ",".join(sorted(statuses)) or "ok",
        }

    yield 0, values(0), state
    for it in range(1, config.meta_iterations + 1):
        batch = episodes.sample_batch(config.meta_batch)
        with quiet_numerics(), Stopwatch() as watch:
            result = _call(method, backbone, params, head, batch, opts)
            for k, p in params.items():
                p.grad = result.hypergrad[k]
            if learns_head and result.head_hypergrad is not None:
                for k, p in head.items():
                    p.grad = result.head_hypergrad[k]
            optimiser.step()
        seconds += watch.seconds
        losses.append(result.query_loss)
        if result.status != "ok":
            statuses.add(result.status)
        if it % config.eval_every == 0 or it == config.meta_iterations:
            state.seconds = seconds
            yield it, values(it), state
            losses, statuses = [], set()


def _training_units(config: MemoryReducedConfig, state: dict) -> list[Callable[[], Iterator[Record]]]:
    def unit(method: str, shots: int) -> Callable[[], Iterator[Record]]:
        def run_unit() -> Iterator[Record]:
            for it, values, trained in train(method, shots, config, _data(config, state)):
                state["trained"][(method, shots)] = trained
                yield Record("training", method, it, values)

        return run_unit

    return [unit(m, s) for s in config.shots for m in config.methods]


def _trained(config: MemoryReducedConfig, state: dict, method: str, shots: int) -> Trained:
    key = (method, shots)
    if key not in state["trained"]:
        for _, _, trained in train(method, shots, config.replace(eval_episodes=1), _data(config, state)):
            state["trained"][key] = trained
    return state["trained"][key]


# --------------------------------------------------------------------------------------------
# final accuracy and the Omniglot one-shot benchmark


def confidence_interval(accuracies: np.ndarray) -> float:
    """Half-width of the 95% normal interval of the mean: 1.96 std / sqrt(n) (std with n - 1)."""
    n = len(accuracies)
    return float(1.96 * np.std(accuracies, ddof=1) / math.sqrt(n)) if n > 1 else math.nan


def embed_predictor(backbone, params, config: MemoryReducedConfig, how: str) -> Callable:
    """A one-shot predictor: test image -> index of a training image, from the backbone's features.

    ``how="nearest"``: the training image with the most similar features (cosine); ``"head"``: a
    20-way head adapted by the inner loop on the 20 training images (one per class).
    """
    theta = {k: v.detach() for k, v in params.items()}
    device = next(iter(theta.values())).device

    def predict(train_images: torch.Tensor, test_images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            Zs = features(backbone, theta, train_images.to(device))
            Zq = features(backbone, theta, test_images.to(device))
            if how == "nearest":
                a = torch.nn.functional.normalize(Zs, dim=1)
                b = torch.nn.functional.normalize(Zq, dim=1)
                return (b @ a.T).argmax(1).cpu()
            n = Zs.shape[0]
            head = init_head(Zs.shape[1], n, zero=True, dtype=Zs.dtype, device=device)
            Y = torch.eye(n, dtype=Zs.dtype, device=device)
            head = heads.gradient_descent(head, Zs, Y, config.l2, max(config.inner_steps, 1), config.inner_lr)
            return heads.logits(head, Zq).argmax(1).cpu()

    return predict


def _final_units(config: MemoryReducedConfig, state: dict) -> list[Callable[[], Iterator[Record]]]:
    def unit(method: str, shots: int) -> Callable[[], Iterator[Record]]:
        def run_unit() -> Iterator[Record]:
            data = _data(config, state)
            trained = _trained(config, state, method, shots)
            test = sampler(config, data.test, shots, f"final:{shots}")
            accuracy = evaluate(
                method, trained.backbone, trained.params, trained.head, test, config.final_episodes, config
            )
            yield Record(
                "final",
                method,
                config.meta_iterations,
                {
                    "benchmark": "episodes",
                    "shots": shots,
                    "ways": config.ways,
                    "queries": config.queries,
                    "dataset": data.name,
                    "episodes": len(accuracy),
                    "accuracy": float(accuracy.mean()),
                    "ci95": confidence_interval(accuracy),
                    "train_seconds": trained.seconds,
                },
            )

        return run_unit

    units = [unit(m, s) for s in config.shots for m in config.methods]
    runs_path = find_one_shot_runs(config.data_path or None)
    if runs_path is None:
        return units
    one_shot = 1 if 1 in config.shots else min(config.shots)

    def benchmark() -> Iterator[Record]:
        runs = load_one_shot_runs(runs_path, image_size=config.image_size)
        common = {"benchmark": "omniglot_one_shot", "shots": 1, "ways": ONE_SHOT_WAYS, "trained_shots": one_shot}
        data_name = _data(config, state).name
        for method in config.methods:
            trained = _trained(config, state, method, one_shot)
            for how in ("nearest", "head"):
                result = evaluate_one_shot_runs(embed_predictor(trained.backbone, trained.params, config, how), runs)
                yield Record(
                    "final",
                    method,
                    config.meta_iterations,
                    {**common, "dataset": data_name, "predictor": how, "error_rate": result.error_rate},
                )
        pixels = evaluate_one_shot_runs(pixel_nearest_neighbour, runs)
        yield Record("final", "pixel_nearest", 0, {**common, "predictor": "pixels", "error_rate": pixels.error_rate})
        for name, error in PUBLISHED_ONE_SHOT_ERRORS.items():
            yield Record("final", name, 0, {**common, "predictor": "published", "error_rate": error})

    return [*units, benchmark]


# --------------------------------------------------------------------------------------------
# conjugate gradient and hypergradient error


def _flat(grads: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grads.values()])


def _cg_units(config: MemoryReducedConfig, state: dict) -> list[Callable[[], Iterator[Record]]]:
    cache: dict[str, Any] = {}
    shots = min(config.shots)

    def problem():
        if not cache:
            data = _data(config, state)
            cache["name"] = data.name
            cache["batch"] = sampler(config, data.train, shots, "cg").sample_batch(1)
            cache["model"] = make_model(config, config.seed + 1, hidden=config.cg_hidden, dtype=torch.float64)
        return cache

    def common(p) -> dict[str, Any]:
        head = p["model"][2]
        return {
            "shots": shots,
            "ways": config.ways,
            "support": config.ways * shots,
            "head_params": head["weight"].numel() + head["bias"].numel(),
            "dataset": p["name"],
        }

    def residual_unit(lam: float) -> Callable[[], Iterator[Record]]:
        def run_unit() -> Iterator[Record]:
            p = problem()
            backbone, params, head = p["model"]
            batch = p["batch"]
            with quiet_numerics():
                result = implicit_hypergradient(
                    backbone, params, head, batch.support_x, batch.support_y, batch.query_x, batch.query_y,
                    **options(config, l2=lam, cg_steps=config.cg_max_steps, batch_mode="sequential"), cg_tol=1e-12,
                )  # fmt: skip
            cg = result.cg
            norms = cg.residual_norms[:, 0]
            rhs = float(cg.rhs_norm[0])
            failed = cg.failed
            for step in range(cg.n_iter + 1):
                yield Record(
                    "cg",
                    "implicit",
                    step,
                    {
                        "sweep": "residual",
                        "lam": lam,
                        "cg_step": step,
                        "inner_steps": config.inner_steps,
                        "residual": float(norms[step]),
                        "relative_residual": float(norms[step]) / rhs if rhs > 0 else 0.0,
                        "status": cg.status,
                        "failed": failed,
                        **common(p),
                    },
                )

        return run_unit

    def error_unit() -> Iterator[Record]:
        p = problem()
        backbone, params, head = p["model"]
        b = p["batch"]
        lam = config.error_l2
        args = (backbone, params, head, b.support_x, b.support_y, b.query_x, b.query_y)
        dense = _flat(dense_implicit_hypergradient(*args, l2=lam).hypergrad)
        big_n = max(max(config.cg_grid), config.cg_max_steps)
        big_k = max(config.error_k_grid)
        sweeps = [("inner_steps", K, big_n) for K in config.error_k_grid]
        sweeps += [("cg_steps", big_k, N) for N in config.cg_grid]
        for sweep, K, N in sweeps:
            with quiet_numerics():
                result = implicit_hypergradient(
                    *args, **options(config, l2=lam, inner_steps=K, cg_steps=N, batch_mode="sequential"), cg_tol=1e-14
                )
            error = float((_flat(result.hypergrad) - dense).norm() / dense.norm())
            yield Record(
                "cg",
                "implicit",
                K if sweep == "inner_steps" else N,
                {
                    "sweep": sweep,
                    "lam": lam,
                    "inner_steps": K,
                    "cg_steps": N,
                    "hypergrad_error": error,
                    "status": result.cg.status,
                    "failed": result.cg.failed,
                    **common(p),
                },
            )

    return [*(residual_unit(lam) for lam in config.cg_lams), error_unit]


# --------------------------------------------------------------------------------------------


def _data(config: MemoryReducedConfig, state: dict) -> Data:
    if "data" not in state:
        state["data"] = load_data(config)
    return state["data"]


_PART_UNITS = {
    "memory": _memory_units,
    "training": _training_units,
    "cg": _cg_units,
    "final": _final_units,
}


def run(config: MemoryReducedConfig | None = None) -> Iterator[Record]:
    """Stream the records of every selected part; each record carries the fraction of work done."""
    config = config or MemoryReducedConfig()
    seed_everything(config.seed)
    state: dict[str, Any] = {"trained": {}}
    units = [unit for part in PARTS if part in config.parts for unit in _PART_UNITS[part](config, state)]
    with torch_threads(config.threads):
        yield from stream_units(units)


def memory_ratios(frame) -> dict[str, float]:
    """The paper's headline ratios from the memory records (NaN where a method or K is missing).

    ``implicit_vs_maml`` and ``implicit_vs_anil_recompute``: graph memory at K=20 (else the largest K
    measured); ``implicit_k_max_vs_k_min``: the implicit method's graph memory at the largest vs the
    smallest K >= 5 (else the smallest K); ``time_k_max_vs_k_min``: the same for its seconds per task.
    """
    rows = frame[frame["part"] == "memory"] if "part" in frame else frame
    table = rows.pivot_table(index="inner_steps", columns="method", values=["graph_mb", "seconds_per_task"])
    ks = sorted(table.index)
    nan = math.nan
    if not ks:
        return {}
    k_mid = 20 if 20 in ks else ks[-1]
    k_lo = min([k for k in ks if k >= 5], default=ks[0])
    k_hi = ks[-1]

    def get(column: str, method: str, k: int) -> float:
        try:
            return float(table.loc[k, (column, method)])
        except KeyError:
            return nan

    def ratio(a: float, b: float) -> float:
        return a / b if b and not math.isnan(b) else nan

    return {
        "implicit_vs_maml": ratio(get("graph_mb", "implicit", k_mid), get("graph_mb", "maml", k_mid)),
        "implicit_vs_anil_recompute": ratio(
            get("graph_mb", "implicit", k_mid), get("graph_mb", "anil_recompute", k_mid)
        ),
        "implicit_k_max_vs_k_min": ratio(get("graph_mb", "implicit", k_hi), get("graph_mb", "implicit", k_lo)),
        "time_k_max_vs_k_min": ratio(
            get("seconds_per_task", "implicit", k_hi), get("seconds_per_task", "implicit", k_lo)
        ),
    }


def figures(frame, config: MemoryReducedConfig | None = None) -> dict[str, Any]:
    """Every figure the records allow, keyed by part name."""
    from metalab.plots import memory_reduced as plots_memory

    return plots_memory.memory_reduced_figures(frame)
