"""Decoders for randomized sketches: compressive k-means (CL-OMPR), compressive PCA and compressive ridge.

These are the classical compressive-learning baselines the learned query networks are compared
with.  Each reads only the sketch (and the feature map that made it), so its cost does not depend
on the number of samples ``n``.

* :func:`ckm`: centroids from a random Fourier feature sketch by CL-OMPR (Keriven et al., arXiv
  1610.08738; pycle's ``CLOMP_CKM``), batched over restarts and sketches.
* :func:`compressive_pca`: the top-``k`` subspace from random quadratic measurements
  ``z_j = <a_j a_j^T, M>`` of the second moment (least squares, or Burer-Monteiro low-rank recovery).
* :func:`compressive_ridge`: ridge regression from the recovered joint second moment of ``[x, y, 1]``.

Rows sketched for PCA with first moments (``[x, 1]``) and for ridge (``[x, y, 1]``) come from
:func:`append_ones`.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from metalab.compressive.feature_maps import (
    FeatureMap,
    ProjectedSecondMoments,
    RandomFourierFeatures,
    RandomQuadraticFeatures,
    median_scale,
)
from metalab.compressive.references import as_data, as_targets, orient_columns, ridge_from_moments
from metalab.compressive.sketch import Sketch
from metalab.core.checks import check_choice, check_int, check_number, check_seed
from metalab.core.device import resolve_device
from metalab.core.seeding import generator


def _sketch_means(
    sketch: Any, feature_map: FeatureMap | None, kind: tuple[type, ...]
) -> tuple[torch.Tensor, bool, Any]:
    """The sketch mean(s) as float64 ``(B, m)``, whether a batch was given, and the feature map."""
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
# Compressive k-means

# The frequency scale of ``rff_sketch_for_kmeans(scale="median")`` in units of 1 / median distance.
# Measured on Gaussian mixtures (d = 2..8, k = 3..10, m = 10 k d): 2 failed for 10 clusters in 2-D,
# 10 failed in 5-D and 8-D; 3 to 6 gave CKM / Lloyd SSE ratios within 1.1 nearly everywhere.
MEDIAN_FACTOR = 4.0


def rff_sketch_for_kmeans(
    data_or_dim: Any, sketch_size: int, *, scale: str | float = "median", seed: int = 0
) -> RandomFourierFeatures:
    """A random Fourier feature map for :func:`ckm`, ``sketch_size = 2 * n_frequencies``.

    ``scale="median"`` takes the frequency scale from the samples ``data_or_dim (n, d)``:
    ``MEDIAN_FACTOR / median ||x - x'||`` (:func:`median_scale` times 4), a kernel four times narrower
    than the typical distance between points, so that it separates neighbouring clusters.  A number
    sets the scale (``data_or_dim`` may then be the dimension ``d``).  Two lines of CKM::

        fmap = rff_sketch_for_kmeans(X, 10 * k * d)
        centroids, weights = ckm(fmap.sketch(X), fmap, k, bounds=(X.min(0).values, X.max(0).values))
    """
    sketch_size = check_int("sketch_size", sketch_size, 2)
    if sketch_size % 2:
        raise ValueError(
            f"sketch_size={sketch_size!r} is not allowed: an even number (a cosine and a sine per frequency)"
        )
    if scale != "median":
        scale = check_number("scale", scale)
    if isinstance(data_or_dim, int) and not isinstance(data_or_dim, bool):
        if scale == "median":
            raise ValueError("scale='median' is not allowed with a dimension: pass the samples, or a number as scale")
        dim = check_int("data_or_dim", data_or_dim, 1)
    else:
        x, batched = as_data(data_or_dim, "data_or_dim")
        if batched:
            raise ValueError(f"data_or_dim has shape {tuple(x.shape)}, which is not allowed: one data set (n, d)")
        dim = x.shape[-1]
        if scale == "median":
            scale = MEDIAN_FACTOR * median_scale(x[0].cpu(), min(500, x.shape[1]), seed=check_seed(seed))
    return RandomFourierFeatures(dim, sketch_size // 2, scale, seed=seed)


def _nnls(gram: torch.Tensor, rhs: torch.Tensor, iterations: int = 100) -> torch.Tensor:
    """``argmin_{a >= 0} a^T G a / 2 - h^T a`` for a batch ``G (P, K, K)``, ``h (P, K)``: accelerated projected gradient."""
    step = 1.0 / torch.linalg.eigvalsh(gram)[:, -1:].clamp(min=1e-300)
    a = prev = torch.zeros_like(rhs)
    for t in range(iterations):
        y = a + (t / (t + 3)) * (a - prev)
        prev, a = a, (y - step * ((gram @ y.unsqueeze(-1)).squeeze(-1) - rhs)).clamp(min=0.0)
    return a


class _DiracSketches:
    """Atoms ``A(delta_c) = phi(c) = c_norm [cos(W c), sin(W c)]`` of a random Fourier feature map, with gradients."""

    def __init__(self, fmap: RandomFourierFeatures, device: torch.device):
        self.frequencies = fmap.frequencies.to(device)
        # Every atom has the same norm ||phi(c)|| = c_norm sqrt(F), so CL-OMPR's normalised correlations
        # and its NNLS on normalised atoms rank atoms as the plain ones do.
        self.c_norm = fmap.c_norm
        # Step length for moving a centroid: a tenth of the typical wavelength 1 / ||w||.
        self.length = 0.1 / float(self.frequencies.pow(2).sum(dim=1).mean().sqrt())

    def __call__(self, C: torch.Tensor) -> torch.Tensor:
        """``phi(c)`` for every row of ``C (..., d)``: ``(..., m)``."""
        t = C @ self.frequencies.T
        return self.c_norm * torch.cat([torch.cos(t), torch.sin(t)], dim=-1)

    def _pull(self, C: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``grad_c <phi(c), v> = c_norm sum_j (cos(w_j c) v_sin_j - sin(w_j c) v_cos_j) w_j`` per row of ``C``."""
        t = C @ self.frequencies.T
        F = t.shape[-1]
        return (self.c_norm * (torch.cos(t) * v[..., F:] - torch.sin(t) * v[..., :F])) @ self.frequencies

    def correlation(self, C: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``<phi(c), r>`` and its gradient for candidates ``C (P, S, d)`` and residuals ``r (P, m)``."""
        r = r.unsqueeze(1)
        return (self(C) * r).sum(-1), self._pull(C, r)

    def mixture(self, alpha: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
        """``sum_k alpha_k phi(c_k)`` for ``alpha (P, K)``, ``C (P, K, d)``: ``(P, m)``."""
        return (alpha.unsqueeze(-1) * self(C)).sum(dim=1)

    def misfit_gradients(self, z, alpha, C) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradients in ``alpha`` and ``C`` of ``||sum_k alpha_k phi(c_k) - z||^2 = ||e||^2``:
        ``2 <phi(c_k), e>`` and ``2 alpha_k grad_c <phi(c_k), e>``."""
        A = self(C)
        e = (alpha.unsqueeze(-1) * A).sum(dim=1, keepdim=True) - z.unsqueeze(1)
        return 2.0 * (A * e).sum(-1), 2.0 * alpha.unsqueeze(-1) * self._pull(C, e)

    def weights(self, C: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """NNLS weights ``argmin_{alpha >= 0} ||z - sum_k alpha_k phi(c_k)||``."""
        A = self(C)
        return _nnls(A @ A.transpose(1, 2), (A @ z.unsqueeze(-1)).squeeze(-1))


def _projected_adam(params: list[torch.Tensor], rates: list[float], steps: int, gradients, project) -> None:
    """``steps`` of Adam (rates decayed by a cosine to 0) on ``params`` in place, projecting after each step.

    ``gradients(*params)`` returns the gradients to descend; ``project(*params)`` maps back into the
    feasible set in place.
    """
    beta1, beta2 = 0.9, 0.999
    first = [torch.zeros_like(p) for p in params]
    second = [torch.zeros_like(p) for p in params]
    for t in range(1, steps + 1):
        decay = 0.5 * (1.0 + math.cos(math.pi * (t - 1) / steps))
        for p, g, m, v, rate in zip(params, gradients(*params), first, second, rates, strict=True):
            m.mul_(beta1).add_(g, alpha=1.0 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
            step = (m / (1.0 - beta1**t)) / ((v / (1.0 - beta2**t)).sqrt() + 1e-12)
            p.sub_(rate * decay * step)
        project(*params)


def _new_atoms(atoms: _DiracSketches, residual, lo, hi, gen, candidates: int, steps: int) -> torch.Tensor:
    """Step 1 of CL-OMPR: per problem, ``argmax_c <phi(c), r> / ||phi(c)||`` within the bounds, ``(P, d)``.

    ``candidates`` uniform random points per problem are scored, the best eight are refined by
    projected Adam ascent, and the best refined point is kept.
    """
    P, d = residual.shape[0], lo.shape[-1]
    u = lo + (hi - lo) * torch.rand(P, candidates, d, generator=gen, device=lo.device, dtype=lo.dtype)
    top = atoms.correlation(u, residual)[0].topk(min(8, candidates), dim=1).indices
    c = u.gather(1, top.unsqueeze(-1).expand(-1, -1, d))
    _projected_adam(
        [c],
        [atoms.length],
        steps,
        lambda c: [-atoms.correlation(c, residual)[1]],
        lambda c: torch.clamp(c, lo, hi, out=c),
    )
    best = atoms.correlation(c, residual)[0].argmax(dim=1)
    return c[torch.arange(P, device=c.device), best]


def _fine_tune(atoms: _DiracSketches, z, alpha, C, lo, hi, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 4 of CL-OMPR: projected Adam on ``||z - sum_k alpha_k phi(c_k)||^2`` over ``alpha >= 0`` and ``C``."""
    alpha, C = alpha.clone(), C.clone()
    alpha_rate = 0.02 * float(alpha.mean().clamp(min=1e-3))

    def project(alpha: torch.Tensor, C: torch.Tensor) -> None:
        alpha.clamp_(min=0.0)
        torch.clamp(C, lo, hi, out=C)

    _projected_adam(
        [alpha, C], [alpha_rate, atoms.length], steps, lambda a, c: atoms.misfit_gradients(z, a, c), project
    )
    return alpha, C


def _bound(value: Any, name: str, d: int, device: torch.device) -> torch.Tensor:
    """One side of the box ``bounds``: a number or a ``(d,)`` vector, as ``(d,)`` float64 on ``device``."""
    t = torch.as_tensor(value, dtype=torch.float64).to(device)
    t = t.expand(d) if t.ndim == 0 else t
    if t.shape != (d,) or not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} has shape {tuple(t.shape)}, which is not allowed: a finite ({d},) vector or a number")
    return t


def ckm(
    sketch: Any,
    feature_map: RandomFourierFeatures | None,
    k: int,
    *,
    bounds: tuple[Any, Any],
    restarts: int = 3,
    iterations: int | None = None,
    steps: int = 50,
    candidates: int = 256,
    seed: int = 0,
    device: str | torch.device = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Compressive k-means by CL-OMPR: ``(centroids (k, d), weights (k,))`` from a random Fourier sketch.

    Fits ``z ~ sum_k alpha_k phi(c_k)`` (``phi`` the map's features of the point ``c_k``, the
    sketch of a Dirac there) with ``alpha >= 0`` and ``lo <= c_k <= hi``.  ``iterations`` (default
    ``2 k``, CL-OMPR with replacement) each: (1) add the atom most correlated with the residual
    ``r = z - sum alpha_k phi(c_k)`` (``argmax <phi(c), r> / ||phi(c)||``, best of ``candidates``
    random points refined by ``steps`` of projected Adam); (2) with more than ``k`` atoms, drop the
    one with the smallest NNLS weight on the normalised atoms; (3) reset ``alpha`` by NNLS; (4)
    fine-tune ``(alpha, C)`` jointly on ``||z - sum alpha_k phi(c_k)||^2`` (``steps`` of projected
    Adam).  A final fine-tune (``4 * steps``), then the best of ``restarts`` by that residual;
    weights are normalised to sum to 1.

    ``bounds = (lo, hi)``: numbers or ``(d,)`` vectors boxing the centroids (for example the data's
    range, or a range known in advance).  ``sketch``: a :class:`Sketch` (its map is used when
    ``feature_map`` is None), or its mean
    ``(m,)``, or a batch of means ``(B, m)`` from the same map (answers ``(B, k, d)``, ``(B, k)``).
    Every restart of every sketch runs as one batch; the cost does not depend on ``n``.
    """
    z, batched, fmap = _sketch_means(sketch, feature_map, (RandomFourierFeatures,))
    k = check_int("k", k, 1)
    restarts = check_int("restarts", restarts, 1)
    iterations = 2 * k if iterations is None else check_int("iterations", iterations, k)
    steps = check_int("steps", steps, 1)
    candidates = check_int("candidates", candidates, 1)
    dev = resolve_device(device)
    d = fmap.input_dim
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise ValueError(f"bounds={bounds!r} is not allowed: a pair (lo, hi) of numbers or ({d},) vectors")
    lo, hi = (_bound(b, name, d, dev) for b, name in zip(bounds, ("bounds[0]", "bounds[1]"), strict=True))
    if not bool((lo < hi).all()):
        raise ValueError("bounds is not allowed: every lower bound must be below its upper bound")
    gen = generator(check_seed(seed), "ckm", device=dev)
    atoms = _DiracSketches(fmap, dev)
    B = z.shape[0]
    z = z.to(dev).repeat_interleave(restarts, dim=0)  # (P, m), P = B * restarts
    alpha = z.new_zeros(z.shape[0], 0)
    C = z.new_zeros(z.shape[0], 0, d)
    for _ in range(iterations):
        residual = z - atoms.mixture(alpha, C)
        C = torch.cat([C, _new_atoms(atoms, residual, lo, hi, gen, candidates, steps).unsqueeze(1)], dim=1)
        if C.shape[1] > k:
            keep = atoms.weights(C, z).topk(k, dim=1).indices.sort(dim=1).values
            C = C.gather(1, keep.unsqueeze(-1).expand(-1, -1, d))
        alpha, C = _fine_tune(atoms, z, atoms.weights(C, z), C, lo, hi, steps)
    alpha, C = _fine_tune(atoms, z, alpha, C, lo, hi, 4 * steps)
    residual = (z - atoms.mixture(alpha, C)).norm(dim=1).reshape(B, restarts)
    best = residual.argmin(dim=1) + restarts * torch.arange(B, device=dev)
    C, alpha = C[best], alpha[best]
    weights = alpha / alpha.sum(dim=1, keepdim=True).clamp(min=1e-300)
    if not batched:
        C, weights = C[0], weights[0]
    return C, weights


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
    """The second moment ``M = (1/n) sum_i u_i u_i^T`` recovered from a quadratic sketch: ``(D, D)`` (or ``(B, D, D)``).

    ``method="lstsq"``: the symmetric least-squares solution of least Frobenius norm, exact for a
    noiseless sketch when ``m >= D (D + 1) / 2`` (with Gaussian projections).  ``method="psd"``:
    Burer-Monteiro low-rank recovery, ``M = U U^T`` with ``U (D, rank)`` (``rank`` defaults to ``D``),
    which needs fewer measurements when ``M`` has low rank.  Inputs clipped by the map (rows outside
    its ``input_radius``) are recovered clipped.
    """
    z, batched, fmap = _sketch_means(sketch, feature_map, (RandomQuadraticFeatures, ProjectedSecondMoments))
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
    """Top-``k`` principal directions from a quadratic sketch: ``(components (d, k), mean (d,))``.

    ``augmented=False``: the sketch is of the rows ``x`` themselves; only the uncentred second moment
    ``E[x x^T]`` is measured, so the directions are its top eigenvectors and ``mean`` is zero.
    ``augmented=True``: the sketch is of ``[x, 1]`` (:func:`append_ones`); the last row of
    ``M = E[u u^T]`` holds the mean ``mu``, and the directions are the top eigenvectors of the
    covariance ``E[x x^T] - mu mu^T``.  ``method="auto"`` uses least squares when
    ``m >= D (D + 1) / 2`` (exact for a noiseless sketch) and otherwise PSD recovery of rank ``k``
    (``k + 1`` when augmented: the mean adds one).  Columns orthonormal, signed as :func:`pca`'s.
    """
    z, batched, fmap = _sketch_means(sketch, feature_map, (RandomQuadraticFeatures, ProjectedSecondMoments))
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
    """Ridge regression ``(w (d,), b ())`` from a quadratic sketch of the rows ``u = [x, y, 1]`` (:func:`append_ones`).

    The recovered ``M = E[u u^T]`` holds every moment ridge needs: ``E[x x^T]``, ``E[x y]``, and the
    means ``E[x]``, ``E[y]`` in its last row; then ``w = (S_xx + lam I)^+ s_xy``, ``b = E[y] - E[x]^T w``
    with the centred moments (as :func:`~metalab.compressive.references.ridge`, which this equals
    exactly when ``M`` is exact).  ``method="auto"``: least squares when ``m >= D (D + 1) / 2``,
    else full-rank PSD recovery.
    """
    z, batched, fmap = _sketch_means(sketch, feature_map, (RandomQuadraticFeatures, ProjectedSecondMoments))
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
