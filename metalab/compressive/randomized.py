"""Randomized compressive learning for the four tasks: a data-independent sketch and its decoder.

The classical counterpart of :class:`~metalab.compressive.query.CompressiveModel`, with the same
batched interface (``pooled`` sketch means, ``decode``, ``error``), so experiments compare the two
on the same data sets and the same sketch size ``m``:

=============  ===============================================  ==========================================
task           random sketch of each row                        decoder
=============  ===============================================  ==========================================
``kmeans``     Fourier features ``[cos(Wx), sin(Wx)]``           CL-OMPR (:func:`~.ckm.ckm`)
``pca``        rank-one quadratic ``(a_j^T [x, 1])^2``            second-moment recovery, top-k eigenvectors
``ridge``      rank-one quadratic ``(a_j^T [x, y, 1])^2``         second-moment recovery, ridge normal equations
``autoencoder`` as ``pca``                                        the linear autoencoder of the top-k
                                                                 directions (``x -> mu + V V^T (x - mu)``)
=============  ===============================================  ==========================================

There is no randomized decoder for a non-linear autoencoder in the compressive-learning
literature; the linear autoencoder with the same bottleneck that compressive PCA gives is the
randomized baseline here, scored with the autoencoder's loss (mean squared reconstruction error).
Data sets are assumed to lie in the box ``[-1, 1]`` per coordinate (as every
:mod:`~metalab.compressive.datasets` family draws them), which fixes the Fourier map's box bounds and
the quadratic maps' input radius.
"""

from __future__ import annotations

import math

import torch

from metalab.compressive import references
from metalab.compressive.ckm import MEDIAN_FACTOR, ckm
from metalab.compressive.decoders import append_ones, compressive_pca, compressive_ridge
from metalab.compressive.feature_maps import FeatureMap, RandomFourierFeatures, RandomQuadraticFeatures
from metalab.compressive.privacy import Gaussian, Laplace
from metalab.compressive.query import Params, Task
from metalab.compressive.sketch import feature_sum
from metalab.compressive.training import private_sketches
from metalab.core.checks import check_int, check_number, check_seed

#: the box every data set lies in (per coordinate): CL-OMPR's bounds on the centroids
BOX = (-1.0, 1.0)


class RandomizedLearner:
    """A random feature map for ``task`` with ``sketch_size`` entries, and the task's classical decoder.

    ``scale`` (k-means only): the Fourier frequencies' scale; default ``MEDIAN_FACTOR / (0.5 sqrt(d))``,
    the median-distance rule for data spread over the box.  ``restarts`` (k-means): CL-OMPR restarts.
    """

    def __init__(self, task: Task, sketch_size: int, *, scale: float | None = None, restarts: int = 3, seed: int = 0):
        self.task = task
        self.sketch_size = check_int("sketch_size", sketch_size, 2 if task.name == "kmeans" else 1)
        self.seed = check_seed(seed)
        self.restarts = check_int("restarts", restarts, 1)
        self.feature_map = self._feature_map(scale)

    def _feature_map(self, scale: float | None) -> FeatureMap:
        task, m = self.task, self.sketch_size
        if task.name == "kmeans":
            if m % 2:
                raise ValueError(
                    f"sketch_size={m!r} is not allowed for random Fourier features: an even number (cos and sin pairs)"
                )
            scale = MEDIAN_FACTOR / (0.5 * math.sqrt(task.d)) if scale is None else check_number("scale", scale)
            return RandomFourierFeatures(task.d, m // 2, scale, seed=self.seed)
        width = task.d + (2 if task.needs_target else 1)  # [x, 1] or [x, y, 1]
        return RandomQuadraticFeatures(width, m, math.sqrt(width), seed=self.seed)

    def rows(self, X: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The rows the random map reads: ``x`` for k-means, ``[x, 1]`` or ``[x, y, 1]`` for the moment tasks."""
        if self.task.name == "kmeans":
            return X
        return append_ones(X, y if self.task.needs_target else None)

    def pooled(self, X: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Sketch means ``z_b = (1/n) sum_i phi(rows_bi)`` of a batch ``X (B, n, d)``: ``(B, m)`` float64."""
        rows = self.rows(X.to(torch.float64), None if y is None else y.to(torch.float64))
        return torch.stack([feature_sum(self.feature_map, one)[0] / one.shape[0] for one in rows])

    def decode(self, z: torch.Tensor) -> Params:
        """The task's parameters from sketch means ``z (B, m)`` (the layout of the learned model's, see the module)."""
        task = self.task
        if task.name == "kmeans":
            centroids, _ = ckm(z, self.feature_map, task.k, bounds=BOX, restarts=self.restarts, seed=self.seed)
            return {"centroids": centroids}
        if task.name == "ridge":
            w, b = compressive_ridge(z, self.feature_map, task.lam)
            return {"w": w, "b": b}
        components, mean = compressive_pca(z, self.feature_map, task.k, augmented=True)
        return {"components": components, "mean": mean}

    def predict(
        self,
        X: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        noise: Laplace | Gaussian | None = None,
        noise_seed: int | None = None,
    ) -> Params:
        """The parameters for every data set of ``X (B, n, d)`` decoded from its sketch mean, or from the
        sketch released by ``noise`` (calibrated to the random map's sensitivity ``D / n``; fresh noise
        unless ``noise_seed`` makes it reproducible, see :func:`~metalab.compressive.training.private_sketches`)."""
        z = self.pooled(X, y)
        if noise is not None:
            z = private_sketches(z, self.feature_map.bound, X.shape[-2], noise, seed=noise_seed)
        return self.decode(z)

    def error(self, params: Params, X: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The task's loss per data set; for the autoencoder, the linear autoencoder's reconstruction error."""
        if self.task.name == "autoencoder":
            return references.pca_error(X, params["components"], params["mean"])
        return self.task.error(params, X, y)

    def fitted(self, params: Params, X: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`Task.fitted <metalab.compressive.query.Task.fitted>`; for the autoencoder, the linear
        autoencoder's reconstructions ``mu + (x - mu) V V^T``."""
        if self.task.name == "autoencoder":
            return references.pca_reconstruction(X, params["components"], params["mean"])
        return self.task.fitted(params, X, y)
