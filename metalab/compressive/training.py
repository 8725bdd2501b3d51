"""End-to-end meta-training of a Sketch-Network and a Query-Network over a family of data sets.

One step draws ``B`` data sets ``D_1..D_B`` from the family, sketches each
(``z_b = (1/n) sum_i phi(x_bi)``), decodes ``theta_b = psi(z_b)`` and descends on

    objective = (1/B) sum_b log L(theta_b; D_b)        (``objective="log"``, the default)
    objective = (1/B) sum_b L(theta_b; D_b)             (``objective="mean"``)

with Adam, gradients clipped to norm 1, and a one-cycle learning rate (10 % warm-up from ``lr / 25``,
at least 2 steps, then cosine decay to ``lr / 2500``; at least ``MIN_STEPS`` steps).  The log
objective equals the mean log *relative* error up to a constant (the exact reference's error does
not depend on the networks), so data sets with small errors (tight clusters, little noise) weigh
as much as the others.

``noise=SketchNoise(...)`` trains on private sketches: each ``z_b`` gets the noise of a
differential-privacy mechanism calibrated to the sketch's sensitivity ``D / n`` at an ``epsilon``
drawn per data set, so the Query-Network learns to read noisy sketches.

:func:`meta_train` returns a :class:`MetaTraining`: iterating it trains in the shared loop
(:func:`metalab.core.loop.meta_training`: it stops on a non-finite loss), yielding one
:class:`TrainingProgress` per step (with the held-out relative error every ``eval_every`` steps);
``.model`` is the model being trained; its ``state_dict()`` (networks, Adam, schedule, random streams,
steps done) and ``load_state_dict(state)`` let a stopped run continue exactly where it stopped.
:func:`evaluate` scores a model on a batch of data sets
relative to the exact references.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from metalab.compressive.bounds import FeatureBound
from metalab.compressive.datasets import DataBatch, DatasetFamily
from metalab.compressive.privacy import (
    MECHANISMS,
    Gaussian,
    Laplace,
    check_delta,
    mean_sensitivity,
    noise_generator,
)
from metalab.compressive.query import CompressiveModel, Params, Task, make_task
from metalab.core.checks import check_choice, check_int, check_number, check_seed
from metalab.core.loop import Iteration, meta_training
from metalab.core.seeding import generator

OBJECTIVES = ("log", "mean")

#: the share of the steps that warms the learning rate up (at least 2 steps), and the fewest steps
#: a one-cycle schedule takes (a warm-up and a decay)
WARM_UP = 0.1
MIN_STEPS = 3

# Floor under the loss inside the log objective (a perfect fit would otherwise give -inf).
_LOG_FLOOR = 1e-12


def _noise(z: torch.Tensor, scale: torch.Tensor, mechanism: Laplace | Gaussian, g: torch.Generator) -> torch.Tensor:
    """``z + scale_b * e`` with ``e`` the mechanism's unit noise (Laplace(0, 1) or N(0, 1)), per data set ``b``."""
    unit = mechanism.sample(tuple(z.shape), 1.0, g).to(device=z.device, dtype=z.dtype)
    return z + scale.to(device=z.device, dtype=z.dtype).unsqueeze(-1) * unit


def private_sketches(
    z: torch.Tensor, bound: FeatureBound, n: int, mechanism: Laplace | Gaussian, *, seed: int | None = None
) -> torch.Tensor:
    """Sketch means ``z (B, m)`` of ``n`` samples each, released by ``mechanism`` (noise calibrated to ``D / n``).

    The batched form of :meth:`~metalab.compressive.sketch.Sketch.with_noise` (same calibration, same
    rules): fresh noise from the operating system for ``seed=None``; a seed gives reproducible noise
    and a :class:`~metalab.compressive.privacy.SeededNoiseWarning` (not a private release); sketches
    that are not finite are refused.
    """
    if not isinstance(mechanism, (Laplace, Gaussian)):
        raise ValueError(f"mechanism={mechanism!r} is not allowed: a Gaussian(...) or Laplace(...) mechanism")
    if not bool(torch.isfinite(z).all()):
        raise ValueError("z contains non-finite values (NaN or inf), which are not allowed in a release")
    scale = mechanism.noise_scale(mean_sensitivity(bound, n, mechanism.norm))
    return _noise(z, torch.full(z.shape[:-1], scale), mechanism, noise_generator(seed))


@dataclass(frozen=True)
class SketchNoise:
    """Noise-aware training: each sketch gets a ``mechanism`` release at ``epsilon`` drawn per data set.

    ``epsilon`` is drawn log-uniformly from ``levels`` grid points spanning ``epsilon = (low,
    high)`` (the noise scale of each point is computed once; it is proportional to the
    sensitivity ``D / n``).  ``delta`` applies to the Gaussian mechanism (analytic calibration).
    """

    mechanism: str = "laplace"
    epsilon: tuple[float, float] = (0.5, 20.0)
    delta: float = 1e-5
    levels: int = 32

    def __post_init__(self):
        check_choice("mechanism", self.mechanism, MECHANISMS)
        ok = isinstance(self.epsilon, (tuple, list)) and len(self.epsilon) == 2
        if not ok or check_number("epsilon", self.epsilon[0]) > check_number("epsilon", self.epsilon[1]):
            raise ValueError(f"epsilon={self.epsilon!r} is not allowed: a pair (low, high) with 0 < low <= high")
        check_delta(self.delta)
        check_int("levels", self.levels, 1)

    def mechanisms(self) -> list[Laplace | Gaussian]:
        low, high = self.epsilon
        grid = [low * (high / low) ** (i / max(self.levels - 1, 1)) for i in range(self.levels)]
        if self.mechanism == "laplace":
            return [Laplace(eps) for eps in grid]
        return [Gaussian(eps, self.delta) for eps in grid]


def _noisy_training_sketches(
    z: torch.Tensor, bound: FeatureBound, n: int, mechanisms: list[Laplace | Gaussian], unit_scales: torch.Tensor, g
) -> torch.Tensor:
    """``z (B, m)`` with each row released at a randomly drawn grid ``epsilon`` (scale = unit scale * ``D / n``)."""
    picks = torch.randint(len(mechanisms), (z.shape[0],), generator=g)
    sensitivity = mean_sensitivity(bound, n, mechanisms[0].norm)
    return _noise(z, unit_scales[picks] * sensitivity, mechanisms[0], g)


# ---------------------------------------------------------------------------------------------
# Evaluation


def _on_cpu(params: Params) -> Params:
    return {name: p.detach().to(device="cpu", dtype=torch.float64) for name, p in params.items()}


def predict(
    model: CompressiveModel,
    data: DataBatch,
    *,
    noise: Laplace | Gaussian | None = None,
    noise_seed: int | None = None,
) -> Params:
    """The model's parameters ``psi(z)`` for every data set of ``data`` (float64, CPU), from its sketch mean
    ``z`` or, with ``noise``, from the sketch released by that mechanism (:func:`private_sketches`, with
    ``noise_seed`` as its seed)."""
    with torch.no_grad():
        z = model.pooled(data.X, data.y)
        if noise is not None:
            z = private_sketches(z, model.sketch_net.bound, data.X.shape[-2], noise, seed=noise_seed)
        return _on_cpu(model.query_net(z))


def evaluate(
    model: CompressiveModel,
    data: DataBatch,
    *,
    reference: torch.Tensor | None = None,
    noise: Laplace | Gaussian | None = None,
    noise_seed: int | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Relative errors ``L(psi(z(D)); D) / L(exact(D); D)`` for every data set ``D`` of ``data``.

    Parameters
    ----------
    model : CompressiveModel
        The Sketch- and Query-Network to score.
    data : DataBatch
        ``B`` data sets.
    reference : tensor, optional
        ``(B,)``: the exact errors computed before (``model.task.exact_error``); default: computed here.
    noise : Laplace or Gaussian, optional
        Score answers decoded from sketches released by this mechanism (:func:`private_sketches`).
    noise_seed : int, optional
        Seeds that noise (None: fresh from the operating system, as a release; a seed makes the
        score reproducible and raises a ``SeededNoiseWarning``).
    seed : int
        Seeds the exact references.

    Returns
    -------
    tensor
        ``(B,)`` float64: 1 is as good as the exact method on the full data.
    """
    x = data.X.to(device="cpu", dtype=torch.float64)
    y = None if data.y is None else data.y.to(device="cpu", dtype=torch.float64)
    errors = model.task.error(predict(model, data, noise=noise, noise_seed=noise_seed), x, y)
    if reference is None:
        reference = model.task.exact_error(x, y, seed=seed)
    return errors / reference.to(errors)


# ---------------------------------------------------------------------------------------------
# Training


@dataclass(frozen=True)
class TrainingProgress:
    """One training step: ``loss`` is the batch's mean task error; ``seconds`` the training time so far
    (sampling and steps, evaluations excluded); ``held_out`` the median relative error on the held-out
    data sets (``held_out_errors``, all of them), present every ``eval_every`` steps; ``status`` is
    ``"non_finite"`` on the last step of a run whose loss diverged."""

    step: int
    steps: int
    loss: float
    objective: float
    lr: float
    seconds: float
    held_out: float | None = None
    held_out_errors: torch.Tensor | None = None
    status: str = "ok"

    @property
    def fraction(self) -> float:
        """The fraction of the run's steps done, ``step / steps``."""
        return self.step / self.steps

    @classmethod
    def of(cls, row: Iteration, done: int = 0, seconds: float = 0.0) -> TrainingProgress:
        """The progress report of one row of :func:`~metalab.core.loop.meta_training`, in a run resumed
        after ``done`` steps that had taken ``seconds``."""
        errors = row.evaluation
        return cls(
            step=done + row.iteration,
            steps=done + row.iterations,
            loss=row.loss,
            objective=row.stats["objective"],
            lr=row.stats["lr"],
            seconds=seconds + row.elapsed,
            held_out=None if errors is None else float(errors.median()),
            held_out_errors=errors,
            status=row.status,
        )


def _check_compatible(task: Task, family: DatasetFamily) -> None:
    """Reject a family whose data sets the task cannot score (other ``d``, no targets, too few samples)."""
    if task.d != family.d:
        raise ValueError(f"family has d={family.d}, which is not allowed: the task was built for d={task.d}")
    if task.needs_target and not family.has_target:
        raise ValueError(f"family={family.name!r} is not allowed for the {task.name} task: it has no targets y")
    task.check_samples(family.n)


class MetaTraining:
    """A meta-training run: iterate it to train (one :class:`TrainingProgress` per step); ``model`` is trained in place."""

    def __init__(
        self,
        model: CompressiveModel,
        family: DatasetFamily,
        *,
        held_out: DatasetFamily,
        steps: int,
        batch: int,
        lr: float,
        noise: SketchNoise | None,
        objective: str,
        eval_every: int,
        eval_size: int,
        seed: int,
    ):
        _check_compatible(model.task, family)
        _check_compatible(model.task, held_out)
        self.model, self.family = model, family
        self.steps = check_int("steps", steps, MIN_STEPS, hint=" (the one-cycle schedule warms up and decays)")
        self.batch = check_int("batch", batch, 1)
        self.lr = check_number("lr", lr)
        if noise is not None and not isinstance(noise, SketchNoise):
            raise ValueError(f"noise={noise!r} is not allowed: None or a SketchNoise(...)")
        self.noise = noise
        self.objective = check_choice("objective", objective, OBJECTIVES)
        self.eval_every = check_int("eval_every", eval_every, 1)
        self.seed = check_seed(seed)
        self.held_out = held_out.sample(check_int("eval_size", eval_size, 1), seed=self.seed, split="held_out")
        self.reference: torch.Tensor | None = None
        self.history: list[TrainingProgress] = []
        self.optimizer = torch.optim.Adam(model.parameters(), lr=self.lr)
        self.schedule = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer,
            max_lr=self.lr,
            total_steps=self.steps,
            pct_start=max(WARM_UP, 2.0 / self.steps),  # torch divides by zero on a warm-up under 2 steps
            final_div_factor=1e2,
        )
        self.data_stream = generator(self.seed, "meta-train-data")
        self.noise_stream = generator(self.seed, "meta-train-noise")
        self.done, self.seconds = 0, 0.0

    def state_dict(self) -> dict[str, Any]:
        """What a stopped run needs to go on as if it had not stopped: the networks, Adam's moments, the
        schedule, both random streams, the steps done and their seconds."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "data_stream": self.data_stream.get_state(),
            "noise_stream": self.noise_stream.get_state(),
            "done": self.done,
            "seconds": self.seconds,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict` of a run with the same settings (the next iteration resumes there)."""
        if not 0 <= int(state["done"]) <= self.steps:
            raise ValueError(
                f"the state is at step {state['done']}, which is not allowed: this run has {self.steps} steps"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.data_stream.set_state(state["data_stream"])
        self.noise_stream.set_state(state["noise_stream"])
        self.done, self.seconds = int(state["done"]), float(state["seconds"])

    def held_out_errors(self) -> torch.Tensor:
        """Relative errors of the model now on the held-out data sets (exact references computed once)."""
        if self.reference is None:
            x, y = self.held_out.X, self.held_out.y
            self.reference = self.model.task.exact_error(x, y, seed=self.seed)
        return evaluate(self.model, self.held_out, reference=self.reference, seed=self.seed)

    def _step(self):
        """``step(data) -> stats``: one Adam step on the objective over a batch of data sets (the loop's ``step``)."""
        model, task, optimizer = self.model, self.model.task, self.optimizer
        if self.noise is not None:
            mechanisms = self.noise.mechanisms()
            unit_scales = torch.tensor([m.noise_scale(1.0) for m in mechanisms], dtype=torch.float64)

        def step(data: DataBatch) -> Mapping[str, float]:
            z = model.pooled(data.X, data.y)
            if self.noise is not None:
                z = _noisy_training_sketches(
                    z, model.sketch_net.bound, self.family.n, mechanisms, unit_scales, self.noise_stream
                )
            errors = task.error(model.query_net(z), data.X, data.y)
            objective = errors.clamp(min=_LOG_FLOOR).log().mean() if self.objective == "log" else errors.mean()
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            self.schedule.step()
            return {"loss": float(errors.detach().mean()), "objective": float(objective.detach()), "lr": lr}

        return step

    def __iter__(self) -> Iterator[TrainingProgress]:
        """Train from the step reached (0, or where :meth:`load_state_dict` left off) to ``steps``."""
        if self.done == self.steps:
            return
        model, done, seconds = self.model, self.done, self.seconds
        rows = meta_training(
            self._step(),
            self.steps - done,
            sample=lambda i: self.family.sample(self.batch, seed=self.data_stream).to(model.device, model.dtype),
            evaluate=lambda i: self.held_out_errors(),
            evaluate_every=self.eval_every,
        )
        for row in rows:
            progress = TrainingProgress.of(row, done, seconds)
            self.done, self.seconds = progress.step, progress.seconds
            self.history.append(progress)
            yield progress

    def run(self) -> CompressiveModel:
        """Train to the end and return the model."""
        for _ in self:
            pass
        return self.model


def meta_train(
    task: Task | str,
    family: DatasetFamily,
    *,
    sketch_size: int,
    held_out: DatasetFamily | None = None,
    steps: int = 2000,
    batch: int = 32,
    lr: float = 2e-3,
    noise: SketchNoise | None = None,
    objective: str = "log",
    eval_every: int = 100,
    eval_size: int = 64,
    seed: int = 0,
    device: str | torch.device = "auto",
    **model_options: Any,
) -> MetaTraining:
    """Meta-train a :class:`~metalab.compressive.query.CompressiveModel` for ``task`` on data sets from ``family``.

    Parameters
    ----------
    task : Task or str
        The task, or its name (built for ``family.d`` with its default options).
    family : DatasetFamily
        The data sets of training (:func:`~metalab.compressive.datasets.dataset_family`).
    sketch_size : int
        m, the length of the sketch.
    held_out : DatasetFamily, optional
        Where the held-out data sets come from (its ``"held_out"`` split; default ``family``): for
        example the same mixtures with more samples, so that training steps stay cheap while
        evaluation uses full-size data sets.
    steps, batch, lr : int, int, float
        Adam steps, data sets per step and the peak of the one-cycle learning rate.
    noise : SketchNoise, optional
        Train on privately released sketches.
    objective : str
        ``"log"`` (mean log error) or ``"mean"`` (mean error) over the batch.
    eval_every, eval_size : int
        Steps between held-out evaluations, and held-out data sets.
    seed : int
        Seeds the networks, the data stream and the noise.
    device : str or torch.device
        Where the networks train (``"auto"``: CUDA when present).
    **model_options
        Sizes of the networks: ``sketch_hidden``, ``width``, ``blocks``.

    Returns
    -------
    MetaTraining
        The run: nothing trains until it is iterated (one :class:`TrainingProgress` per step) or
        ``.run()``; ``.model`` is the model it trains.
    """
    held_out = family if held_out is None else held_out
    for name, value in (("family", family), ("held_out", held_out)):
        if not isinstance(value, DatasetFamily):
            raise ValueError(f"{name}={value!r} is not allowed: a DatasetFamily (see dataset_family)")
    task = make_task(task, family.d) if isinstance(task, str) else task
    model = CompressiveModel(task, sketch_size, seed=seed, device=device, **model_options)
    return MetaTraining(
        model,
        family,
        held_out=held_out,
        steps=steps,
        batch=batch,
        lr=lr,
        noise=noise,
        objective=objective,
        eval_every=eval_every,
        eval_size=eval_size,
        seed=seed,
    )
