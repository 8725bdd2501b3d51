"""Query-Networks: from a sketch to a model's parameters, for PCA, ridge regression, k-means and autoencoders.

Compressive meta-learning pairs a Sketch-Network ``phi`` (per sample, bounded, mean-pooled into
``z = (1/n) sum_i phi(x_i)``) with a Query-Network ``psi`` that reads only ``z`` and outputs the
parameters ``theta = psi(z)`` of a task.  Both are trained end to end over a distribution of data
sets ``D`` on ``E_D[ L(psi(z(D)); D) ]`` (:mod:`metalab.compressive.training`).  A :class:`Task` fixes
what ``psi`` outputs and the loss ``L``, both reused from :mod:`metalab.compressive.references`:

=============  ==========================================  ===============================================
task           ``psi(z)``                                  loss ``L`` (mean over the ``n`` samples)
=============  ==========================================  ===============================================
``pca``        ``mean (d,)``, ``components (d, k)``:       ``||x - mu - V V^T (x - mu)||^2``
               ``V`` = top-``k`` eigenvectors of the
               symmetric part ``S`` of a raw ``(d, d)``
               output (orthonormal columns)
``ridge``      ``w (d,)``, ``b``; ``phi`` sees ``[x, y]``  ``(y - w^T x - b)^2 + lam ||w||^2``
``kmeans``     ``centroids (k, d)``                        ``min_j ||x - c_j||^2`` (no matching needed)
``autoencoder`` every weight of ``d -> hidden -> k ->       ``||x - f(x)||^2`` through the predicted AE
               hidden -> d`` (a hypernetwork; layout of
               :func:`~metalab.compressive.references.autoencoder_shapes`)
=============  ==========================================  ===============================================

Each task's ``exact_error`` is the same loss of the exact reference fitted on the full data (SVD
PCA, closed-form ridge, k-means++ with Lloyd and restarts, an Adam-trained autoencoder), so
``error / exact_error`` is the relative error every experiment reports.

:class:`CompressiveModel` joins a :class:`~metalab.compressive.feature_maps.SketchNetwork` and a
:class:`QueryNetwork`: ``model(X, y)`` is the differentiable batched path used for training,
``model.sketch(X, y)`` gives a mergeable :class:`~metalab.compressive.sketch.Sketch`, and
``model.decode(sketch)`` answers from a sketch (or a sketch mean) alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from metalab.compressive import references
from metalab.compressive.bounds import MAX_SKETCH_SIZE, as_samples, check_allocation
from metalab.compressive.feature_maps import SketchNetwork
from metalab.compressive.sketch import Sketch
from metalab.core.checks import check_choice, check_int, check_number, check_seed
from metalab.core.device import resolve_device
from metalab.core.seeding import generator

Params = dict[str, torch.Tensor]


# ---------------------------------------------------------------------------------------------
# Tasks


class Task:
    """What a Query-Network predicts and how it is scored, for data sets of ``d`` features.

    ``parameters(out)`` turns the network's flat output ``(..., n_outputs)`` into named parameters;
    ``error(params, X, y)`` is the differentiable loss per data set (``X (B, n, d)`` -> ``(B,)``);
    ``exact(X, y)`` the exact reference's parameters fitted on the full data, and ``exact_error(X, y)``
    their loss; ``fitted(params, X, y)`` what the parameters say in the data's coordinates (each
    sample's reconstruction or prediction; k-means: the centroids themselves).
    """

    name: str
    d: int
    needs_target = False

    @property
    def sketch_input_dim(self) -> int:
        """Width of the rows the Sketch-Network reads (``d``, or ``d + 1`` for ``[x, y]``)."""
        return self.d

    @property
    def n_outputs(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def rows(self, X: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """The rows the Sketch-Network reads: ``X`` itself."""
        return X

    def parameters(self, out: torch.Tensor) -> Params:  # pragma: no cover - interface
        raise NotImplementedError

    def error(self, params: Params, X: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def exact(self, X: torch.Tensor, y: torch.Tensor | None = None, *, seed: int = 0) -> Params:  # pragma: no cover
        raise NotImplementedError

    def fitted(
        self, params: Params, X: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def exact_error(self, X: torch.Tensor, y: torch.Tensor | None = None, *, seed: int = 0) -> torch.Tensor:
        """The loss of the exact reference fitted on the full data (:meth:`exact`), per data set."""
        return self.error(self.exact(X, y, seed=seed), X, y)

    def check_samples(self, n: int) -> None:
        """Reject data sets too small for the task (k-means needs ``k <= n``)."""


@dataclass(frozen=True)
class PCATask(Task):
    """``k`` principal directions and the centre: ``psi(z) -> (mean (d,), components (d, k))``.

    The directions are the top-``k`` eigenvectors of ``S = (A + A^T) / 2`` for the network's raw
    ``(d, d)`` output ``A``, so they are orthonormal by construction.  A subspace read off a
    predicted symmetric matrix depends continuously on the sketch; orthonormalising a raw ``(d, k)``
    output (QR) cannot: data sets whose principal axis turns by half a circle bring ``V`` back as
    ``-V``, so a continuous network must cross a point where its raw output degenerates.
    """

    d: int
    k: int = 1
    name = "pca"

    def __post_init__(self):
        check_int("d", self.d, 1)
        check_int("k", self.k, 1, self.d, hint=f" (at most the dimension, d={self.d})")

    @property
    def n_outputs(self) -> int:
        return self.d + self.d * self.d

    def parameters(self, out: torch.Tensor) -> Params:
        raw = out[..., self.d :].unflatten(-1, (self.d, self.d))
        eigenvectors = torch.linalg.eigh(0.5 * (raw + raw.transpose(-1, -2))).eigenvectors  # ascending eigenvalues
        return {"mean": out[..., : self.d], "components": eigenvectors[..., -self.k :].flip(-1)}

    def error(self, params: Params, X: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return references.pca_error(X, params["components"], params["mean"])

    def fitted(self, params: Params, X: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Each sample projected on the predicted principal subspace, ``(..., n, d)``."""
        return references.pca_reconstruction(X, params["components"], params["mean"])

    def exact(self, X: torch.Tensor, y: torch.Tensor | None = None, *, seed: int = 0) -> Params:
        components, mean = references.pca(X, self.k)
        return {"mean": mean, "components": components}


@dataclass(frozen=True)
class RidgeTask(Task):
    """Ridge regression ``psi(z) -> (w (d,), b)`` from the sketch of the joint rows ``[x, y]``."""

    d: int
    lam: float = 1e-3
    name = "ridge"
    needs_target = True

    def __post_init__(self):
        check_int("d", self.d, 1)
        check_number("lam", self.lam, strict=False)

    @property
    def sketch_input_dim(self) -> int:
        return self.d + 1

    @property
    def n_outputs(self) -> int:
        return self.d + 1

    def rows(self, X: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """``[x, y]``: the Sketch-Network sees inputs and target jointly."""
        return torch.cat([X, y.unsqueeze(-1)], dim=-1)

    def parameters(self, out: torch.Tensor) -> Params:
        return {"w": out[..., : self.d], "b": out[..., self.d]}

    def error(self, params: Params, X: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return references.ridge_loss(X, y, params["w"], params["b"], self.lam)

    def fitted(self, params: Params, X: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The prediction ``w^T x + b`` of every sample, ``(..., n)``."""
        return references.ridge_prediction(X, params["w"], params["b"])

    def exact(self, X: torch.Tensor, y: torch.Tensor | None = None, *, seed: int = 0) -> Params:
        w, b = references.ridge(X, y, self.lam)
        return {"w": w, "b": b}


@dataclass(frozen=True)
class KMeansTask(Task):
    """``k`` centroids ``psi(z) -> (k, d)``; the reference is k-means++ with Lloyd, best of ``restarts``."""

    d: int
    k: int = 3
    restarts: int = 5
    name = "kmeans"

    def __post_init__(self):
        check_int("d", self.d, 1)
        check_int("k", self.k, 1)
        check_int("restarts", self.restarts, 1)

    @property
    def n_outputs(self) -> int:
        return self.k * self.d

    def parameters(self, out: torch.Tensor) -> Params:
        return {"centroids": out.unflatten(-1, (self.k, self.d))}

    def error(self, params: Params, X: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return references.kmeans_sse(X, params["centroids"])

    def fitted(self, params: Params, X: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The centroids, ``(..., k, d)``."""
        return params["centroids"]

    def exact(self, X: torch.Tensor, y: torch.Tensor | None = None, *, seed: int = 0) -> Params:
        return {"centroids": references.kmeans(X, self.k, restarts=self.restarts, seed=seed)[0]}

    def check_samples(self, n: int) -> None:
        check_int("k", self.k, 1, n, hint=f" (at most the number of samples, {n})")


@dataclass(frozen=True)
class AutoencoderTask(Task):
    """A hypernetwork: ``psi(z)`` is every weight of the autoencoder ``d -> hidden -> k -> hidden -> d``.

    Weight outputs are multiplied by ``1/sqrt(fan_in)``, so an untrained ``psi`` (outputs of order
    one) predicts an autoencoder with the usual initial scale.  The reference is the same
    architecture trained on the full data for ``reference_steps`` Adam steps.
    """

    d: int
    k: int = 1
    hidden: int = 16
    reference_steps: int = 2000
    name = "autoencoder"

    def __post_init__(self):
        check_int("d", self.d, 1)
        check_int("k", self.k, 1)
        check_int("hidden", self.hidden, 1)
        check_int("reference_steps", self.reference_steps, 1)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return references.autoencoder_shapes(self.d, self.hidden, self.k)

    @property
    def n_outputs(self) -> int:
        return sum(math.prod(shape) for shape in self.shapes.values())

    def parameters(self, out: torch.Tensor) -> Params:
        params, start = {}, 0
        for name, shape in self.shapes.items():
            piece = out[..., start : start + math.prod(shape)].unflatten(-1, shape)
            params[name] = piece / math.sqrt(shape[1]) if len(shape) == 2 else piece
            start += math.prod(shape)
        return params

    def error(self, params: Params, X: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return references.autoencoder_error(X, params)

    def fitted(self, params: Params, X: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Every sample's reconstruction through the autoencoder, ``(..., n, d)``."""
        return references.autoencoder_forward(X, params)

    def exact(self, X: torch.Tensor, y: torch.Tensor | None = None, *, seed: int = 0) -> Params:
        return references.autoencoder(X, self.hidden, self.k, steps=self.reference_steps, seed=seed)


TASKS: dict[str, type[Task]] = {
    "pca": PCATask,
    "ridge": RidgeTask,
    "kmeans": KMeansTask,
    "autoencoder": AutoencoderTask,
}


def make_task(name: str, d: int, **options: Any) -> Task:
    """The task called ``name`` on ``d`` features.

    Parameters
    ----------
    name : str
        One of :data:`TASKS`: ``pca``, ``ridge``, ``kmeans``, ``autoencoder``.
    d : int
        Features per sample.
    **options
        The task's fields: ``k`` (pca, kmeans, autoencoder), ``lam`` (ridge), ``restarts`` (kmeans),
        ``hidden`` and ``reference_steps`` (autoencoder).

    Returns
    -------
    Task
        What a Query-Network predicts for the task and how it is scored.
    """
    task = TASKS[check_choice("task", name, tuple(TASKS))]
    allowed = set(task.__dataclass_fields__) - {"d"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"options {unknown} are not allowed for task {name!r}: one of {sorted(allowed)}")
    return task(d=d, **options)


# ---------------------------------------------------------------------------------------------
# Networks


def _seeded(seed: int, stream: str, build):
    """``build()`` with torch's global generator seeded from ``(seed, stream)`` and restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(generator(check_seed(seed), stream).initial_seed())
        return build()


class ResidualBlock(nn.Module):
    """``h + W2 relu(W1 relu(h))`` (pre-activation residual block of constant width)."""

    def __init__(self, width: int):
        super().__init__()
        self.inner = nn.Linear(width, width)
        self.outer = nn.Linear(width, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.outer(torch.relu(self.inner(torch.relu(h))))


class QueryNetwork(nn.Module):
    """``psi``: sketch ``z (..., m)`` -> ``Linear(m, width)``, ``blocks`` residual blocks, ReLU, ``Linear(width, n_outputs)``,
    then the task's structure (:meth:`Task.parameters`)."""

    def __init__(self, task: Task, sketch_size: int, *, width: int = 512, blocks: int = 4, seed: int = 0):
        super().__init__()
        self.task = task
        self.sketch_size = check_int("sketch_size", sketch_size, 1)
        width = check_int("width", width, 1)
        blocks = check_int("blocks", blocks, 0)
        weights = (sketch_size + 1) * width + blocks * 2 * (width + 1) * width + (width + 1) * task.n_outputs
        check_allocation(
            {"sketch_size": sketch_size, "width": width, "blocks": blocks, "task.d": task.d},
            weights * torch.get_default_dtype().itemsize,
            f"the Query-Network's {weights:,} weights ({task.n_outputs:,} outputs for {task.name})",
        )
        self.body = _seeded(
            seed,
            "query-network",
            lambda: nn.Sequential(
                nn.Linear(sketch_size, width),
                *(ResidualBlock(width) for _ in range(blocks)),
                nn.ReLU(),
                nn.Linear(width, task.n_outputs),
            ),
        )

    def forward(self, z: torch.Tensor) -> Params:
        return self.task.parameters(self.body(z))


class CompressiveModel(nn.Module):
    """A Sketch-Network and a Query-Network trained together for one :class:`Task`.

    ``sketch_hidden``/``sketch_activation`` shape the Sketch-Network (tanh-bounded output, so
    ``||phi(x)||_inf <= 1``); ``width``/``blocks`` size the Query-Network.  ``device="auto"`` puts
    the model on CUDA when present.
    """

    def __init__(
        self,
        task: Task,
        sketch_size: int,
        *,
        sketch_hidden: Sequence[int] = (128, 128),
        sketch_activation: str = "relu",
        width: int = 512,
        blocks: int = 4,
        seed: int = 0,
        device: str | torch.device = "auto",
        max_sketch_size: int = MAX_SKETCH_SIZE,
    ):
        super().__init__()
        if not isinstance(task, Task):
            raise ValueError(f"task={task!r} is not allowed: a Task (see make_task)")
        self.task = task
        self.sketch_net = SketchNetwork(
            task.sketch_input_dim,
            sketch_size,
            sketch_hidden,
            activation=sketch_activation,
            seed=generator(check_seed(seed), "sketch-network").initial_seed(),
            max_sketch_size=max_sketch_size,
        )
        self.query_net = QueryNetwork(task, sketch_size, width=width, blocks=blocks, seed=seed)
        self.to(resolve_device(device))

    @property
    def sketch_size(self) -> int:
        return self.sketch_net.sketch_size

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def pooled(self, X: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The differentiable sketch mean ``z = (1/n) sum_i phi(rows_i)`` of ``X (..., n, d)``: ``(..., m)``."""
        return self.sketch_net.pool(self.task.rows(X, y).to(device=self.device, dtype=self.dtype))

    def forward(self, X: torch.Tensor, y: torch.Tensor | None = None) -> Params:
        """``psi(z(X))``: the predicted parameters, differentiable in both networks (batched over leading axes)."""
        return self.query_net(self.pooled(X, y))

    def _rows(self, X: Any, y: Any) -> torch.Tensor:
        """Validated rows of one data set (``X (n, d)``, ``y (n,)`` when the task needs it) as float64."""
        x = as_samples(X, self.task.d, "X")
        self.task.check_samples(x.shape[0])
        if not self.task.needs_target:
            return x
        if y is None:
            raise ValueError(f"y=None is not allowed: the {self.task.name} task needs targets y (n,)")
        t = references.as_param(y, "y", x, (None,))
        if tuple(t.shape) != (x.shape[0],):
            raise ValueError(f"y has shape {tuple(t.shape)}, which is not allowed: ({x.shape[0]},), one per row of X")
        return self.task.rows(x, t)

    def sketch(self, X: Any, y: Any = None) -> Sketch:
        """The :class:`~metalab.compressive.sketch.Sketch` of one data set under the Sketch-Network (mergeable)."""
        return Sketch.of(self.sketch_net, self._rows(X, y))

    def decode(self, sketch: Sketch | torch.Tensor) -> Params:
        """Parameters from a :class:`~metalab.compressive.sketch.Sketch` made by this model, or a sketch mean ``(m,)``/``(B, m)``."""
        if isinstance(sketch, Sketch):
            if sketch.size != self.sketch_size or sketch.map_id != self.sketch_net.fingerprint():
                raise ValueError(
                    f"sketch has map_id={sketch.map_id!r}, which is not allowed: decode only sketches made by this "
                    "model's Sketch-Network with its current weights"
                )
            z = sketch.mean
        else:
            z = torch.as_tensor(sketch)
            if z.ndim not in (1, 2) or z.shape[-1] != self.sketch_size:
                raise ValueError(
                    f"sketch has shape {tuple(z.shape)}, which is not allowed: ({self.sketch_size},) or (B, {self.sketch_size})"
                )
            if not bool(torch.isfinite(z).all()):
                raise ValueError("sketch contains non-finite values (NaN or inf), which are not allowed")
        with torch.no_grad():
            return self.query_net(z.to(device=self.device, dtype=self.dtype))

    def fit(self, X: Any, y: Any = None) -> Params:
        """``decode(sketch(X, y))``: the model's answer for one data set, through its sketch alone."""
        return self.decode(self.sketch(X, y))
