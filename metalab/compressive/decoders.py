"""Decoders for randomized sketches of second moments: compressive PCA and compressive ridge.

These are classical compressive-learning baselines the learned query networks are compared with
(compressive k-means is :mod:`metalab.compressive.ckm`).  Each reads only the sketch (and the
feature map that made it), so its cost does not depend on the number of samples ``n``.

* :func:`compressive_pca`: the top-``k`` subspace from random quadratic measurements
  ``z_j = <a_j a_j^T, M>`` of the second moment (least squares, or Burer-Monteiro low-rank recovery).
* :func:`compressive_ridge`: ridge regression from the recovered joint second moment of ``[x, y, 1]``.

Rows sketched for PCA with first moments (``[x, 1]``) and for ridge (``[x, y, 1]``) come from
:func:`append_ones`; :func:`sketch_means` reads a decoder's input (a :class:`Sketch` or its mean).
"""

from __future__ import annotations

from typing import Any

import torch

from metalab.compressive.feature_maps import (
    FeatureMap,
    ProjectedSecondMoments,
    RandomQuadraticFeatures,
)
from metalab.compressive.references import as_data, as_targets, orient_columns, ridge_from_moments
from metalab.compressive.sketch import Sketch
from metalab.core.checks import check_choice, check_int, check_number
from metalab.core.device import resolve_device


def sketch_means(sketch: Any, feature_map: FeatureMap | None, kind: tuple[type, ...]) -> tuple[torch.Tensor, bool, Any]:
    """A decoder's input: the sketch mean(s) as float64 ``(B, m)``, whether a batch was given, and the
    feature map (the sketch's own when ``feature_map`` is None), which must be one of ``kind``."""
    if isinstance(sketch, Sketch):
        fmap = sketch.feature_map if feature_map is None else feature_map
        z, batched = sketch.mean.unsqueeze(0), False
        if fmap is not None and fmap.fingerprint() != sketch.map_id:
            raise ValueError("feature_map is not allowed: it is not the map that made this sketch")
    else:
        fmap = feature_map
        z = torch.as_tensor(sketch).detach().to(device="cpu", dtype=torch.float64)
        batched = z.ndim == 2
        z = z if batched else z.unsqueeze(0)
    if not isinstance(fmap, kind):
        names = " or ".join(t.__name__ for t in kind)
        raise ValueError(f"feature_map={fmap!r} is not allowed: a {names}")
    if z.ndim != 2 or z.shape[-1] != fmap.sketch_size:
        raise ValueError(
            f"sketch has shape {tuple(z.shape)[int(not batched) :]}, which is not allowed: ({fmap.sketch_size},) "
            f"or a batch (B, {fmap.sketch_size}) for this feature map"
        )
    if not bool(torch.isfinite(z).all()):
        raise ValueError("sketch contains non-finite values (NaN or inf), which are not allowed")
    return z, batched, fmap


def append_ones(X: Any, y: Any = None) -> torch.Tensor:
    """Rows ``[x, 1]`` (or ``[x, y, 1]`` with targets ``y``) to sketch for centred PCA (or for ridge).

    ``X (n, d)`` with ``y (n,)``, or a batch ``(B, n, d)`` with ``(B, n)``.
    """
    x, batched = as_data(X)
    columns = [x] if y is None else [x, as_targets(y, x, batched).unsqueeze(-1)]
    rows = torch.cat([*columns, torch.ones_like(x[..., :1])], dim=-1)
    return rows if batched else rows[0]


# ---------------------------------------------------------------------------------------------
# Compressive PCA and ridge: second moments from quadratic measurements

METHODS = ("auto", "lstsq", "psd")


class _QuadraticMeasurements:
    """The linear map ``M -> z``, ``z_i = w_i l_i^T M r_i``, from a second moment ``M (D, D)`` to its sketch.

    :class:`RandomQuadraticFeatures`: ``l_j = r_j = a_j``, ``w_j = 1``.  :class:`ProjectedSecondMoments`:
    entry ``(p, q)`` of ``A M A^T``, so ``l = A_p``, ``r = A_q`` and ``w = sqrt(2)`` off the diagonal.
    """

    def __init__(self, fmap: RandomQuadraticFeatures | ProjectedSecondMoments, device: torch.device):
        if isinstance(fmap, RandomQuadraticFeatures):
            left = right = fmap.projections
            weight = torch.ones(fmap.sketch_size, dtype=torch.float64)
        else:  # the map's own (row, column, weight) of each upper-triangle entry
            left, right, weight = fmap.projection[fmap._rows], fmap.projection[fmap._cols], fmap._weights
        self.left, self.right, self.weight = left.to(device), right.to(device), weight.to(device)
        self.dim = fmap.input_dim
        self.rows, self.cols = (i.to(device) for i in torch.triu_indices(self.dim, self.dim))
        # The isometric basis of symmetric matrices: E_aa, and (E_ab + E_ba) / sqrt(2) for a < b.
        self.diagonal = self.rows == self.cols
        self.basis_scale = torch.full(self.rows.shape, 0.5**0.5, dtype=torch.float64, device=device)
        self.basis_scale[self.diagonal] = 1.0

    def __call__(self, M: torch.Tensor) -> torch.Tensor:
        """``z`` for second moments ``M (..., D, D)``: ``(..., m)``."""
        return self.weight * ((self.left @ M) * self.right).sum(-1)

    def of_factor(self, U: torch.Tensor) -> torch.Tensor:
        """``z`` for ``M = U U^T``, ``U (..., D, r)``, without forming ``M``."""
        return self.weight * ((self.left @ U) * (self.right @ U)).sum(-1)

    def design(self) -> torch.Tensor:
        """The matrix ``(m, D (D + 1) / 2)`` of the map in the isometric basis (column ``(a, b)``: the image of ``E_ab``)."""
        a, b = self.rows, self.cols
        both = self.left[:, a] * self.right[:, b] + self.left[:, b] * self.right[:, a]
        return self.weight.unsqueeze(-1) * both * self.basis_scale / (1.0 + self.diagonal)

    def matrix(self, theta: torch.Tensor) -> torch.Tensor:
        """The symmetric ``(..., D, D)`` with coordinates ``theta (..., D (D + 1) / 2)`` in the isometric basis."""
        M = theta.new_zeros(*theta.shape[:-1], self.dim, self.dim)
        M[..., self.rows, self.cols] = theta * self.basis_scale
        return M + M.transpose(-1, -2) - torch.diag_embed(M.diagonal(dim1=-2, dim2=-1))


def _least_squares_moment(meas: _QuadraticMeasurements, z: torch.Tensor) -> torch.Tensor:
    """``M = argmin ||meas(M) - z||`` over symmetric ``M``, of least Frobenius norm (exact when the map is injective)."""
    return meas.matrix(z @ torch.linalg.pinv(meas.design()).T)


def _psd_moment(meas: _QuadraticMeasurements, z: torch.Tensor, rank: int, max_iter: int) -> torch.Tensor:
    """Burer-Monteiro: ``M = U U^T`` with ``U (D, rank)`` minimising ``||meas(U U^T) - z||^2`` (L-BFGS).

    Starts from the top-``rank`` eigenpairs of the back-projection ``meas^*(z)``, scaled to fit ``z``
    best; a batch of sketches is fitted as one sum of independent losses.
    """
    back = meas.matrix(z @ meas.design())
    values, vectors = torch.linalg.eigh(back)
    U = vectors[..., -rank:] * values[..., -rank:].clamp(min=0.0).sqrt().unsqueeze(-2)
    fitted = meas.of_factor(U)
    fit = (fitted * z).sum(-1) / fitted.pow(2).sum(-1).clamp(min=1e-300)
    U = (U * fit.clamp(min=1e-12).sqrt()[..., None, None]).contiguous().requires_grad_(True)
    scale = 1.0 / z.pow(2).sum().clamp(min=1e-300)
    optimizer = torch.optim.LBFGS(
        [U],
        max_iter=max_iter,
        tolerance_grad=1e-14,
        tolerance_change=1e-16,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = scale * (meas.of_factor(U) - z).pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    U = U.detach()
    return U @ U.transpose(-1, -2)


def second_moment(
    sketch: Any,
    feature_map: RandomQuadraticFeatures | ProjectedSecondMoments | None = None,
    *,
    method: str = "lstsq",
    rank: int | None = None,
    max_iter: int = 200,
    device: str | torch.device = "auto",
) -> torch.Tensor:
    """The second moment ``M = (1/n) sum_i u_i u_i^T`` recovered from a quadratic sketch.

    Parameters
    ----------
    sketch : Sketch or tensor
        A :class:`Sketch`, its mean ``(m,)``, or a batch of means ``(B, m)``.
    feature_map : RandomQuadraticFeatures or ProjectedSecondMoments, optional
        The map that made the sketch (None: the :class:`Sketch`'s own).
    method : str
        ``"lstsq"``: the symmetric least-squares solution of least Frobenius norm, exact for a
        noiseless sketch when ``m >= D (D + 1) / 2`` (with Gaussian projections); ``"psd"``:
        Burer-Monteiro low-rank recovery ``M = U U^T``, ``U (D, rank)``, which needs fewer
        measurements when ``M`` has low rank.
    rank : int, optional
        The rank of ``"psd"`` (default ``D``).
    max_iter : int
        L-BFGS iterations of ``"psd"``.
    device : str or torch.device
        Where to compute.

    Returns
    -------
    tensor
        ``M`` ``(D, D)``, or ``(B, D, D)``; rows the map clipped (outside its ``input_radius``) are
        recovered clipped.
    """
    z, batched, fmap = sketch_means(sketch, feature_map, (RandomQuadraticFeatures, ProjectedSecondMoments))
    method = check_choice("method", method, METHODS[1:])
    dev = resolve_device(device)
    meas = _QuadraticMeasurements(fmap, dev)
    z = z.to(dev)
    if method == "lstsq":
        M = _least_squares_moment(meas, z)
    else:
        rank = meas.dim if rank is None else check_int("rank", rank, 1, meas.dim)
        M = _psd_moment(meas, z, rank, check_int("max_iter", max_iter, 1))
    return M if batched else M[0]


def _method_for(method: str, sketch_size: int, dim: int) -> str:
    """``"auto"``: least squares when the map can be injective (``m >= D (D + 1) / 2``), else low-rank PSD."""
    method = check_choice("method", method, METHODS)
    if method != "auto":
        return method
    return "lstsq" if sketch_size >= dim * (dim + 1) // 2 else "psd"


def compressive_pca(
    sketch: Any,
    feature_map: RandomQuadraticFeatures | ProjectedSecondMoments | None,
    k: int,
    *,
    augmented: bool = False,
    method: str = "auto",
    device: str | torch.device = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` principal directions from a quadratic sketch (via :func:`second_moment`).

    Parameters
    ----------
    sketch : Sketch or tensor
        A :class:`Sketch`, its mean ``(m,)``, or a batch of means ``(B, m)``.
    feature_map : RandomQuadraticFeatures or ProjectedSecondMoments or None
        The map that made the sketch (None: the :class:`Sketch`'s own).
    k : int
        Directions, at most ``d``.
    augmented : bool
        False: the sketch is of the rows ``x``; only ``E[x x^T]`` is measured, the directions are its
        top eigenvectors and ``mean`` is zero.  True: the sketch is of ``[x, 1]``
        (:func:`append_ones`); the last row of ``M = E[u u^T]`` holds the mean ``mu``, and the
        directions are the top eigenvectors of the covariance ``E[x x^T] - mu mu^T``.
    method : str
        ``"auto"``: least squares when ``m >= D (D + 1) / 2`` (exact for a noiseless sketch), else PSD
        recovery of rank ``k`` (``k + 1`` when augmented: the mean adds one); or ``"lstsq"``, ``"psd"``.
    device : str or torch.device
        Where to compute.

    Returns
    -------
    components : tensor
        ``(d, k)`` (or ``(B, d, k)``): orthonormal columns, signed as :func:`pca`'s.
    mean : tensor
        ``(d,)`` (or ``(B, d)``).
    """
    z, batched, fmap = sketch_means(sketch, feature_map, (RandomQuadraticFeatures, ProjectedSecondMoments))
    D = fmap.input_dim
    d = D - 1 if augmented else D
    if d < 1:
        raise ValueError(f"augmented=True is not allowed with input_dim={D}: the rows are [x, 1], so D >= 2")
    k = check_int("k", k, 1, d, hint=f" (at most the data dimension, {d})")
    method = _method_for(method, fmap.sketch_size, D)
    M = second_moment(z, fmap, method=method, rank=min(D, k + int(augmented)), device=device)
    if augmented:
        mean = M[:, :d, d]
        cov = M[:, :d, :d] - mean.unsqueeze(-1) * mean.unsqueeze(-2)
    else:
        mean, cov = M.new_zeros(M.shape[0], d), M
    V = orient_columns(torch.linalg.eigh(cov).eigenvectors.flip(-1)[..., :k])
    return (V, mean) if batched else (V[0], mean[0])


def compressive_ridge(
    sketch: Any,
    feature_map: RandomQuadraticFeatures | ProjectedSecondMoments | None,
    lam: float,
    *,
    method: str = "auto",
    device: str | torch.device = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge regression from a quadratic sketch of the rows ``u = [x, y, 1]`` (:func:`append_ones`).

    The recovered ``M = E[u u^T]`` holds every moment ridge needs: ``E[x x^T]``, ``E[x y]``, and the
    means ``E[x]``, ``E[y]`` in its last row; then ``w = (S_xx + lam I)^+ s_xy``, ``b = E[y] - E[x]^T w``
    with the centred moments (as :func:`~metalab.compressive.references.ridge`, which this equals
    exactly when ``M`` is exact).

    Parameters
    ----------
    sketch : Sketch or tensor
        A :class:`Sketch`, its mean ``(m,)``, or a batch of means ``(B, m)``.
    feature_map : RandomQuadraticFeatures or ProjectedSecondMoments or None
        The map that made the sketch (None: the :class:`Sketch`'s own); ``input_dim = d + 2``.
    lam : float
        The ridge penalty.
    method : str
        ``"auto"``: least squares when ``m >= D (D + 1) / 2``, else full-rank PSD recovery.
    device : str or torch.device
        Where to compute.

    Returns
    -------
    w : tensor
        ``(d,)`` (or ``(B, d)``).
    b : tensor
        ``()`` (or ``(B,)``).
    """
    z, batched, fmap = sketch_means(sketch, feature_map, (RandomQuadraticFeatures, ProjectedSecondMoments))
    D = fmap.input_dim
    if D < 3:
        raise ValueError(f"feature_map has input_dim={D}, which is not allowed: rows [x, y, 1] need at least 3")
    lam = check_number("lam", lam, strict=False)
    M = second_moment(z, fmap, method=_method_for(method, fmap.sketch_size, D), device=device)
    d = D - 2
    x_mean, y_mean = M[:, :d, d + 1], M[:, d, d + 1]
    S_xx = M[:, :d, :d] - x_mean.unsqueeze(-1) * x_mean.unsqueeze(-2)
    s_xy = M[:, :d, d] - x_mean * y_mean.unsqueeze(-1)
    w, b = ridge_from_moments(S_xx, s_xy, x_mean, y_mean, lam)
    return (w, b) if batched else (w[0], b[0])
