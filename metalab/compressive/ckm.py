"""Compressive k-means by CL-OMPR: centroids from a random Fourier feature sketch.

The classical compressive-learning baseline for k-means (Keriven et al., arXiv 1610.08738; pycle's
``CLOMP_CKM``), batched over restarts and sketches: :func:`ckm` decodes, :func:`rff_sketch_for_kmeans`
makes the feature map with a frequency scale fitted to the data.  The cost reads only the sketch, so
it does not depend on the number of samples ``n``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from metalab.compressive.decoders import sketch_means
from metalab.compressive.feature_maps import RandomFourierFeatures, median_scale
from metalab.compressive.references import as_data
from metalab.core.checks import check_int, check_number, check_seed
from metalab.core.device import resolve_device, torch_threads
from metalab.core.seeding import generator

# The frequency scale of ``rff_sketch_for_kmeans(scale="median")`` in units of 1 / median distance.
# Measured on Gaussian mixtures (d = 2..8, k = 3..10, m = 10 k d): 2 failed for 10 clusters in 2-D,
# 10 failed in 5-D and 8-D; 3 to 6 gave CKM / Lloyd SSE ratios within 1.1 nearly everywhere.
MEDIAN_FACTOR = 4.0
#: CL-OMPR's steps work on ``P x max(8, k + 1) x m`` elements (P = sketches x restarts); up to this
#: many, a CPU decode runs on one torch thread: thread start-ups cost more than such small operations
#: (one decode at d = 10, k = 5: 0.53 s on one thread, 42 s on two of a loaded 2-core machine)
SMALL_STEP = 2**17


def rff_sketch_for_kmeans(
    data_or_dim: Any, sketch_size: int, *, scale: str | float = "median", seed: int = 0
) -> RandomFourierFeatures:
    """A random Fourier feature map for :func:`ckm`. Two lines of CKM::

        fmap = rff_sketch_for_kmeans(X, 10 * k * d)
        centroids, weights = ckm(fmap.sketch(X), fmap, k, bounds=(X.min(0).values, X.max(0).values))

    Parameters
    ----------
    data_or_dim : tensor or int
        Samples ``(n, d)``, or the dimension ``d`` when ``scale`` is a number.
    sketch_size : int
        m, even: a cosine and a sine per frequency (``m / 2`` frequencies).
    scale : "median" or float
        The frequency scale; ``"median"``: ``MEDIAN_FACTOR / median ||x - x'||`` over the samples
        (:func:`median_scale` times 4), a kernel four times narrower than the typical distance
        between points, so that it separates neighbouring clusters.
    seed : int
        Seeds the frequencies (and the pairs the median is taken over).

    Returns
    -------
    RandomFourierFeatures
        The map ``phi(x) = c [cos(W x), sin(W x)]``.
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


def _nnls(gram: torch.Tensor, rhs: torch.Tensor, iterations: int = 100, tol: float = 1e-9) -> torch.Tensor:
    """``argmin_{a >= 0} a^T G a / 2 - h^T a`` for a batch ``G (P, K, K)``, ``h (P, K)``: accelerated projected gradient.

    Stops after ``iterations``, or once a step moves no weight by more than ``tol max_k a_k`` (checked
    every 10 steps).
    """
    step = 1.0 / torch.linalg.eigvalsh(gram)[:, -1:].clamp(min=1e-300)
    a = prev = torch.zeros_like(rhs)
    for t in range(iterations):
        y = a + (t / (t + 3)) * (a - prev)
        prev, a = a, (y - step * ((gram @ y.unsqueeze(-1)).squeeze(-1) - rhs)).clamp(min=0.0)
        if t % 10 == 9 and bool(((a - prev).abs() <= tol * a.abs().amax(dim=1, keepdim=True)).all()):
            break
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

    def _cos_sin(self, C: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``c_norm cos(W c)`` and ``c_norm sin(W c)`` for every row of ``C (..., d)``: two ``(..., m / 2)``."""
        t = C @ self.frequencies.T
        return self.c_norm * torch.cos(t), self.c_norm * torch.sin(t)

    def __call__(self, C: torch.Tensor) -> torch.Tensor:
        """``phi(c)`` for every row of ``C (..., d)``: ``(..., m)``."""
        return torch.cat(self._cos_sin(C), dim=-1)

    def _pull(self, cos: torch.Tensor, sin: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``grad_c <phi(c), v> = c_norm sum_j (cos(w_j c) v_sin_j - sin(w_j c) v_cos_j) w_j`` per row, from
        :meth:`_cos_sin`'s ``cos`` and ``sin`` (the trigonometry is computed once per point)."""
        F = cos.shape[-1]
        return (cos * v[..., F:] - sin * v[..., :F]) @ self.frequencies

    def correlation(self, C: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``<phi(c), r>`` and its gradient for candidates ``C (P, S, d)`` and residuals ``r (P, m)``."""
        r = r.unsqueeze(1)
        cos, sin = self._cos_sin(C)
        return (torch.cat([cos, sin], dim=-1) * r).sum(-1), self._pull(cos, sin, r)

    def correlation_gradient(self, C: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """The gradient part of :meth:`correlation` alone (what each ascent step needs)."""
        return self._pull(*self._cos_sin(C), r.unsqueeze(1))

    def mixture(self, alpha: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
        """``sum_k alpha_k phi(c_k)`` for ``alpha (P, K)``, ``C (P, K, d)``: ``(P, m)``."""
        return (alpha.unsqueeze(-1) * self(C)).sum(dim=1)

    def misfit_gradients(self, z, alpha, C) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradients in ``alpha`` and ``C`` of ``||sum_k alpha_k phi(c_k) - z||^2 = ||e||^2``:
        ``2 <phi(c_k), e>`` and ``2 alpha_k grad_c <phi(c_k), e>``."""
        cos, sin = self._cos_sin(C)
        A = torch.cat([cos, sin], dim=-1)
        e = alpha.unsqueeze(1) @ A - z.unsqueeze(1)  # (P, 1, m)
        return 2.0 * (A @ e.transpose(1, 2)).squeeze(-1), 2.0 * alpha.unsqueeze(-1) * self._pull(cos, sin, e)

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
            m.lerp_(g, 1.0 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
            # p -= rate decay m_hat / (sqrt(v_hat) + 1e-12), bias corrections folded into scalars
            denominator = v.sqrt().div_(math.sqrt(1.0 - beta2**t)).add_(1e-12)
            p.addcdiv_(m, denominator, value=-rate * decay / (1.0 - beta1**t))
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
        lambda c: [-atoms.correlation_gradient(c, residual)],
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


def _clompr(atoms: _DiracSketches, z, k: int, lo, hi, gen, iterations: int, steps: int, candidates: int):
    """CL-OMPR's iterations and final fine-tune (see :func:`ckm`) for sketches ``z (P, m)``: ``(alpha, C)``."""
    d = lo.shape[-1]
    alpha = z.new_zeros(z.shape[0], 0)
    C = z.new_zeros(z.shape[0], 0, d)
    for _ in range(iterations):
        residual = z - atoms.mixture(alpha, C)
        C = torch.cat([C, _new_atoms(atoms, residual, lo, hi, gen, candidates, steps).unsqueeze(1)], dim=1)
        if C.shape[1] > k:
            keep = atoms.weights(C, z).topk(k, dim=1).indices.sort(dim=1).values
            C = C.gather(1, keep.unsqueeze(-1).expand(-1, -1, d))
        alpha, C = _fine_tune(atoms, z, atoms.weights(C, z), C, lo, hi, steps)
    return _fine_tune(atoms, z, alpha, C, lo, hi, 4 * steps)


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
    """Compressive k-means by CL-OMPR: centroids and weights from a random Fourier sketch.

    Fits ``z ~ sum_k alpha_k phi(c_k)`` (``phi`` the map's features of the point ``c_k``, the
    sketch of a Dirac there) with ``alpha >= 0`` and ``lo <= c_k <= hi``.  ``iterations`` (default
    ``2 k``, CL-OMPR with replacement) each: (1) add the atom most correlated with the residual
    ``r = z - sum alpha_k phi(c_k)`` (``argmax <phi(c), r> / ||phi(c)||``, best of ``candidates``
    random points refined by ``steps`` of projected Adam); (2) with more than ``k`` atoms, drop the
    one with the smallest NNLS weight on the normalised atoms; (3) reset ``alpha`` by NNLS; (4)
    fine-tune ``(alpha, C)`` jointly on ``||z - sum alpha_k phi(c_k)||^2`` (``steps`` of projected
    Adam).  A final fine-tune (``4 * steps``), then the best of ``restarts`` by that residual.
    Every restart of every sketch runs as one batch; the cost does not depend on ``n``.

    Parameters
    ----------
    sketch : Sketch or tensor
        A :class:`Sketch`, its mean ``(m,)``, or a batch of means ``(B, m)`` from the same map.
    feature_map : RandomFourierFeatures or None
        The map that made the sketch (None: the :class:`Sketch`'s own).
    k : int
        Clusters.
    bounds : (lo, hi)
        Numbers or ``(d,)`` vectors boxing the centroids (the data's range, or one known in advance).
    restarts, iterations, steps, candidates : int
        CL-OMPR runs kept the best of; atoms added (default ``2 k``); projected Adam steps per
        refinement; random candidates scored per new atom.
    seed : int
        Seeds the candidates.
    device : str or torch.device
        Where to compute (``"auto"``: CUDA when present).

    Returns
    -------
    centroids : tensor
        ``(k, d)``, or ``(B, k, d)`` for a batch of sketches.
    weights : tensor
        ``(k,)`` or ``(B, k)``: each centroid's share of the mass, summing to 1.
    """
    z, batched, fmap = sketch_means(sketch, feature_map, (RandomFourierFeatures,))
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
    small = dev.type == "cpu" and z.shape[0] * max(8, k + 1) * fmap.sketch_size <= SMALL_STEP
    with torch_threads(1 if small else None):
        alpha, C = _clompr(atoms, z, k, lo, hi, gen, iterations, steps, candidates)
    residual = (z - atoms.mixture(alpha, C)).norm(dim=1).reshape(B, restarts)
    best = residual.argmin(dim=1) + restarts * torch.arange(B, device=dev)
    C, alpha = C[best], alpha[best]
    weights = alpha / alpha.sum(dim=1, keepdim=True).clamp(min=1e-300)
    if not batched:
        C, weights = C[0], weights[0]
    return C, weights
