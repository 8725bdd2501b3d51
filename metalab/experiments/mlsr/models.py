"""The MLSR experiment's models: seeded networks, meta-batch samplers and learners, the run's context that
trains each model once and shares it between parts, and the test-time adaptation of every method.

Public names (the notebook and the benchmark reuse them): :func:`make_net`, :func:`sinusoid_tasks`,
:func:`make_sampler`, :func:`make_learner`, :func:`model_spec`, :class:`Trained`, :class:`MLSRContext`,
:func:`adapt_predictions`, :func:`recovered_heads`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any

import torch
from torch import nn

from metalab.core import Record, Unit, resolve_device
from metalab.core.device import torch_threads
from metalab.core.seeding import generator
from metalab.data import SinusoidTasks, digit_pair_pools
from metalab.experiments.mlsr.config import DIGIT_CLASS_SPLIT, MLSRConfig
from metalab.gbml import MetaLearner, adapt_tasks, fine_tune
from metalab.nets import MLP, param_dict
from metalab.sparse import mlsr_gradient, recover_heads, recovery_predictions, split_body

# --------------------------------------------------------------------------------------------
# networks, task samplers, learners


def network_sizes(config: MLSRConfig, task: str, width: int | None = None) -> tuple[list[int], str]:
    """(layer sizes, activation) of the task's network: 1-w-w-1 ReLU (sinusoid) or 64-h…-2 sigmoid (digits);
    ``width`` overrides the last hidden size (``hidden`` for sinusoid, ``digit_hidden[-1]`` for digits)."""
    if task == "sinusoid":
        w = config.hidden if width is None else width
        return [1, w, w, 1], "relu"
    hidden = list(config.digit_hidden)
    if width is not None:
        hidden[-1] = width
    return [64, *hidden, 2], "sigmoid"


def make_net(config: MLSRConfig, task: str, width: int | None = None) -> MLP:
    """The task's network (:func:`network_sizes`) with seeded initial weights.

    Parameters
    ----------
    config : MLSRConfig
    task : {"sinusoid", "digits"}
    width : int, optional
        Overrides the last hidden size (``hidden`` for sinusoid, ``digit_hidden[-1]`` for digits).

    Returns
    -------
    MLP
        On the config's device; every method starts from the same weights for a given (task, width, seed).
    """
    sizes, activation = network_sizes(config, task, width)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(generator(config.seed, f"mlsr-init-{task}-{sizes}").initial_seed()) % 2**31)
        net = MLP(sizes, activation=activation)
    return net.to(resolve_device(config.device))


def sinusoid_tasks(config: MLSRConfig) -> SinusoidTasks:
    """The config's sinusoid distribution (MAML's or the paper's) with ``shots`` support points per task."""
    return SinusoidTasks.preset(config.sinusoid, shots=config.shots)


def digit_pools(config: MLSRConfig):
    """(meta-training pool, test pool) of digit-pair tasks over the config's digits, from disjoint images."""
    return digit_pair_pools(config.digits, DIGIT_CLASS_SPLIT)


def make_sampler(config: MLSRConfig, task: str) -> Callable[[int], tuple[tuple, tuple]]:
    """``sample(i) -> (support, query)`` meta-batches from a seeded stream shared by every method."""
    device = resolve_device(config.device)
    if task == "sinusoid":
        tasks, g = sinusoid_tasks(config), generator(config.seed, "mlsr-sinusoid-train")
        draw = lambda: tasks.sample(config.meta_batch, config.shots, config.query_shots, generator=g)
    else:
        pool, g = digit_pools(config)[0], generator(config.seed, "mlsr-digits-train")
        draw = lambda: pool.sample(config.meta_batch, config.digit_shots, config.digit_query, generator=g)

    def sample(_: int):
        b = draw()
        return (b.support_x.to(device), b.support_y.to(device)), (b.query_x.to(device), b.query_y.to(device))

    return sample


def task_loss(task: str) -> str:
    """The task family's loss: squared error on sinusoids, cross-entropy on digit pairs."""
    return "mse" if task == "sinusoid" else "ce"


def inner_lr(config: MLSRConfig, task: str) -> float:
    return config.inner_lr if task == "sinusoid" else config.digit_inner_lr


def recovery_steps(config: MLSRConfig, task: str, inner_steps: int) -> int:
    """MLSR's recovery iterations in meta-training: ``digit_ista_steps``, or ``ista_steps`` (default the panel's K)."""
    if task == "digits":
        return config.digit_ista_steps
    return config.ista_steps or inner_steps


def make_learner(config: MLSRConfig, task: str, method: str, inner_steps: int, net: nn.Module) -> MetaLearner:
    """The meta-learner of ``method`` (not "random") with the config's settings."""
    loss, lr = task_loss(task), inner_lr(config, task)
    if method == "mlsr":
        return MetaLearner(
            net,
            mlsr_gradient,
            meta_lr=config.meta_lr,
            lam=config.lam,
            steps=recovery_steps(config, task, inner_steps),
            algorithm=config.algorithm,
            loss=config.loss,
            query_loss=loss,
            head_init=config.head_init,
        )
    name = {"maml_fz": "anil", "maml_l1": "maml"}.get(method, method)
    l1 = config.lam if method == "maml_l1" else 0.0
    return MetaLearner(net, name, meta_lr=config.meta_lr, inner_steps=inner_steps, inner_lr=lr, loss=loss, l1=l1)


# --------------------------------------------------------------------------------------------
# the run's models, trained once each


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Which model: task family, method, inner steps in meta-training, last hidden width, meta-iterations."""

    task: str
    method: str
    inner_steps: int
    width: int
    iterations: int

    @property
    def trains(self) -> bool:
        """Whether the model is meta-trained (the random network is not)."""
        return self.method != "random"


def model_spec(
    config: MLSRConfig,
    task: str,
    method: str,
    inner_steps: int,
    width: int | None = None,
    iterations: int | None = None,
) -> ModelSpec:
    """The model's spec; a model at the task's base width is trained for the task's iterations whichever part
    asks for it (``iterations`` applies to other widths only), so every part shares it."""
    base = config.hidden if task == "sinusoid" else config.digit_hidden[-1]
    default = config.meta_iterations if task == "sinusoid" else config.digit_iterations
    width = base if width is None else width
    iterations = default if iterations is None or width == base else iterations
    return ModelSpec(task, method, inner_steps, width, iterations)


def training_specs(config: MLSRConfig) -> list[ModelSpec]:
    """The models whose meta-training the 'training' part records: every trained method of ``config.task``
    with each inner-step count (other models a run trains, e.g. other widths, train without records)."""
    return [model_spec(config, config.task, m, k) for k in config.inner_steps for m in config.methods if m != "random"]


@dataclasses.dataclass
class Trained:
    """A meta-trained (or random) network: its ``spec``, ``net`` (structure), ``params``, training seconds
    and the status of its last meta-iteration."""

    spec: ModelSpec
    net: nn.Module
    params: dict[str, torch.Tensor]
    seconds: float = 0.0
    status: str = "ok"


@dataclasses.dataclass
class MLSRContext:
    """What the parts of one run share: the trained models and memoised evaluations.

    Each model (and evaluation) is computed by the first unit that needs it; :meth:`claim`, called while
    the units are built in run order, tells a unit whether that is its work, so its weight counts it.
    """

    config: MLSRConfig
    models: dict[ModelSpec, Trained] = dataclasses.field(default_factory=dict)
    evaluations: dict[Any, Any] = dataclasses.field(default_factory=dict)
    claimed: set = dataclasses.field(default_factory=set)

    def claim(self, key: Any) -> bool:
        """True the first time ``key`` (a spec, an evaluation) is claimed: the claiming unit computes it."""
        first = key not in self.claimed
        self.claimed.add(key)
        return first

    def train(self, spec: ModelSpec, start: float = 0.0, end: float = 1.0) -> Iterator[Record]:
        """Meta-train ``spec`` unless it is already in :attr:`models`.  While training one of the
        :func:`training_specs` (when the 'training' part is selected), yield a 'training' record every
        ``log_every`` iterations whose ``progress`` runs from ``start`` to ``end`` (the share of the
        calling unit the training fills)."""
        if spec in self.models:
            return
        config = self.config
        net = make_net(config, spec.task, spec.width)
        if not spec.trains:
            self.models[spec] = Trained(spec, net, param_dict(net))
            return
        learner = make_learner(config, spec.task, spec.method, spec.inner_steps, net)
        emit = "training" in config.parts and spec in training_specs(config)
        window, seconds, status = [], 0.0, "ok"
        for stats in learner.fit(make_sampler(config, spec.task), spec.iterations):
            window.append(stats["query_loss"])
            seconds, status = seconds + stats["seconds"], stats["status"]
            i = stats["iteration"]
            if emit and (i % config.log_every == 0 or i == spec.iterations or i == 1 or status != "ok"):
                values = {
                    "task": spec.task,
                    "iteration": i,
                    "train_inner_steps": spec.inner_steps,
                    "width": spec.width,
                    "query_loss": float(sum(window) / len(window)),
                    "seconds": stats["seconds"],
                    "status": status,
                }
                yield Record("training", spec.method, i, values, progress=start + stats["fraction"] * (end - start))
                window = []
        self.models[spec] = Trained(spec, net, learner.current_params(), seconds, status)

    def unit(self, specs: Iterable[ModelSpec], evaluation: float, work: Callable[[], Iterator[Record]]) -> Unit:
        """A unit that trains the ``specs`` it claims, then runs ``work`` (which reads :attr:`models`).

        Its weight is the meta-iterations it trains plus ``evaluation`` (the cost of ``work`` in
        meta-iterations, see :func:`evaluation_cost`), at least 1; training fills its progress in that
        proportion.
        """
        specs = list(specs)
        mine = [spec.trains and self.claim(spec) for spec in specs]
        weight = max(sum(spec.iterations for spec, own in zip(specs, mine, strict=True) if own) + evaluation, 1.0)

        def run() -> Iterator[Record]:
            start = 0.0
            for spec, own in zip(specs, mine, strict=True):
                end = start + (spec.iterations / weight if own else 0.0)
                yield from self.train(spec, start, end)
                start = end
            yield from work()

        return Unit(run, weight)


def in_threads(units: Callable[[MLSRConfig, Any], list[Unit]]) -> Callable[[MLSRConfig, Any], list[Unit]]:
    """A part's ``units`` whose work runs with ``config.threads`` torch CPU threads (the networks are small:
    on a 2-core machine one thread is several times faster than two, and leaves the other core free)."""

    def threaded(config: MLSRConfig, context: Any) -> list[Unit]:
        return [Unit(partial(_threaded, config.threads, unit.work), unit.weight) for unit in units(config, context)]

    return threaded


def _threaded(threads: int, work: Callable[[], Iterable[Record]]) -> Iterator[Record]:
    with torch_threads(threads):
        yield from work()


def evaluation_cost(tasks: int, steps: int, batch: int) -> float:
    """An evaluation's cost in meta-iterations: adapting ``tasks`` tasks for ``steps`` steps is about
    ``tasks · steps / batch`` meta-iterations of ``batch`` tasks (at least 1)."""
    return max(tasks * max(steps, 1) / batch, 1.0)


# --------------------------------------------------------------------------------------------
# test-time adaptation


def adapt_rule(config: MLSRConfig, method: str, task: str = "sinusoid") -> str:
    """What adapts at test time: ``all_params_gd``, ``head_gd`` (MAML-FZ) or ``head_recovery_lam0`` (MLSR)."""
    setting = config.test_adapt if task == "sinusoid" else config.digit_test_adapt
    if setting == "all" or method in ("maml", "maml_l1", "random"):
        return "all_params_gd"
    return "head_gd" if method == "maml_fz" else "head_recovery_lam0"


def adapt_predictions(
    config: MLSRConfig, model: Trained, support: tuple, query_x: torch.Tensor, steps: int
) -> torch.Tensor:
    """Test-time adaptation of a trained model by its method's rule (:func:`adapt_rule`), never with an L1 term.

    Gradient steps of size α on every parameter (``all_params_gd``) or on the output layer
    (``head_gd``, :func:`metalab.gbml.fine_tune`); MLSR's output layer by the recovery's own iteration
    with λ = 0 (``head_recovery_lam0``, :func:`metalab.sparse.recovery_predictions`).

    Parameters
    ----------
    config, model
        The run's settings and the trained model.
    support : (x (B, n, ...), y)
        The test tasks' support sets.
    query_x : Tensor
        Query inputs (B, n_query, ...).
    steps : int
        Test-time steps.

    Returns
    -------
    Tensor
        Predictions (steps + 1, B, n_query, out) before and after each step (logits for digit pairs).
    """
    task, rule = model.spec.task, adapt_rule(config, model.spec.method, model.spec.task)
    loss, lr = task_loss(task), inner_lr(config, task)
    if rule == "head_recovery_lam0":
        return recovery_predictions(
            model.net,
            model.params,
            support,
            query_x,
            steps=steps,
            loss=config.loss,
            query_loss=loss,
            head_init=config.head_init,
        )
    trainable = "all" if rule == "all_params_gd" else "head"
    return fine_tune(model.net, model.params, support, query_x, steps=steps, lr=lr, loss=loss, trainable=trainable)


def recovered_heads(config: MLSRConfig, model: Trained, support: tuple) -> torch.Tensor:
    """The output-layer weights (B, p, out) each method's inner loop produces on ``support`` (bias left out).

    MLSR: the L1 recovery (as in meta-training); MAML-FZ / MAML / random: ``inner_steps`` gradient
    steps on the output layer (MAML's own inner loop would move the body too; only its head is read).
    """
    spec = model.spec
    if spec.method == "mlsr":
        result = recover_heads(
            model.net,
            model.params,
            support,
            lam=config.lam,
            steps=recovery_steps(config, spec.task, spec.inner_steps),
            algorithm=config.algorithm,
            loss=config.loss,
            query_loss=task_loss(spec.task),
            head_init=config.head_init,
        )
        return result.coef[:, :-1]
    _, prefix = split_body(model.net)
    adapted = adapt_tasks(
        model.net,
        model.params,
        support,
        steps=spec.inner_steps,
        lr=inner_lr(config, spec.task),
        loss=task_loss(spec.task),
        trainable="head",
    )
    return adapted[prefix + ".weight"].transpose(1, 2)


def ci95(values: torch.Tensor) -> float:
    """Half-width of the 95 % normal interval of the mean: 1.96 std / √n (std with n − 1; NaN for n = 1)."""
    n = values.numel()
    return float(1.96 * values.std(unbiased=True) / math.sqrt(n)) if n > 1 else math.nan
