"""Exact references computed on the full data: k-means, PCA, ridge regression and a small autoencoder.

Every compressive method is reported relative to one of these (its error divided by the
reference's).  Each function takes one data set ``X`` of shape ``(n, d)`` or a batch of data sets
``(B, n, d)`` (same ``n`` and ``d``) and answers per data set: fitted parameters gain a leading
``B`` axis, and errors come back as a 0-dim tensor for one data set and ``(B,)`` for a batch.  The
error functions are differentiable (they serve as training losses too); the fitting functions are not.

Errors, all *means over samples* (not sums, unlike pycle's ``SSE``):

* ``kmeans_sse(X, C) = (1/n) sum_i min_k ||x_i - c_k||^2``
* ``pca_error(X, V, mu) = (1/n) ||X_c - X_c P||_F^2`` with ``X_c = X - mu`` and ``P = V (V^T V)^+ V^T``
* ``ridge_loss(X, y, w, b, lam) = (1/n) ||X w + b - y||^2 + lam ||w||^2``
* ``autoencoder_error(X, params) = (1/n) sum_i ||x_i - f(x_i)||^2``

Fitting functions take ``device=None`` (compute where ``X`` lives: CPU for arrays) or
``"auto"``/``"cpu"``/``"cuda"`` (:func:`metalab.core.device.resolve_device`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from metalab.core.checks import check_int, check_number, check_seed
from metalab.core.device import resolve_device
from metalab.core.seeding import generator


def as_data(X: Any, name: str = "X", device: str | torch.device | None = None) -> tuple[torch.Tensor, bool]:
    """``X`` as a floating tensor ``(B, n, d)`` and whether it was given as a batch.

    Integer input becomes float64; tensors keep their dtype, device and autograd graph unless
    ``device`` says otherwise.  Other shapes, empty data and NaN/inf are a ValueError naming ``name``.
    """
    if not isinstance(X, torch.Tensor):
        try:
            X = torch.from_numpy(np.array(X, dtype=np.float64))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} is not allowed: a numeric (n, d) or (B, n, d) array ({err})") from None
    if not X.is_floating_point():
        X = X.to(torch.float64)
    if device is not None:
        X = X.to(resolve_device(device))
    if X.ndim not in (2, 3) or 0 in X.shape:
        raise ValueError(f"{name} has shape {tuple(X.shape)}, which is not allowed: (n, d) or a batch (B, n, d)")
    if not bool(torch.isfinite(X).all()):
        raise ValueError(f"{name} contains non-finite values (NaN or inf), which are not allowed")
    return (X if X.ndim == 3 else X.unsqueeze(0)), X.ndim == 3


def as_param(value: Any, name: str, like: torch.Tensor, shape: tuple[int | None, ...]) -> torch.Tensor:
    """``value`` on ``like``'s device and dtype, shaped ``shape`` or a batch ``(B, *shape)``.

    ``None`` in ``shape`` accepts any positive size; anything else is a ValueError naming ``name``.
    """
    t = torch.as_tensor(value, device=like.device)
    t = t if t.dtype == like.dtype else t.to(like.dtype)
    trailing = tuple(t.shape[t.ndim - len(shape) :]) if t.ndim >= len(shape) else ()
    fits = len(trailing) == len(shape) and all(
        s > 0 and (w is None or s == w) for s, w in zip(trailing, shape, strict=True)
    )
    if not fits or t.ndim > len(shape) + 1:
        wanted = ", ".join("?" if w is None else str(w) for w in shape)
        raise ValueError(
            f"{name} has shape {tuple(t.shape)}, which is not allowed: ({wanted}) or a batch (B, {wanted})"
        )
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains non-finite values (NaN or inf), which are not allowed")
    return t


def _answer(t: torch.Tensor, batched: bool) -> torch.Tensor:
    """Drop the batch axis added for a single data set."""
    return t if batched else t.squeeze(0)


def sq_dists(X: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """Squared distances ``||x_i - c_j||^2`` between ``X (..., n, d)`` and ``C (..., J, d)``: ``(..., n, J)``."""
    cross = X @ C.transpose(-1, -2)
    return (X.pow(2).sum(-1, keepdim=True) - 2.0 * cross + C.pow(2).sum(-1).unsqueeze(-2)).clamp(min=0.0)


# ---------------------------------------------------------------------------------------------
# k-means


def kmeans_sse(X: Any, C: Any) -> torch.Tensor:
    """``(1/n) sum_i min_k ||x_i - c_k||^2``: the *mean* (not the sum) squared distance to the nearest centroid.

    ``X (n, d)`` or ``(B, n, d)``; ``C (k, d)`` or ``(B, k, d)`` (one centroid set per data set, or
    ``B`` sets scored on one data set).
    """
    x, batched = as_data(X)
    c = as_param(C, "C", x, (None, x.shape[-1]))
    sse = sq_dists(x, c).min(dim=-1).values.mean(dim=-1)
    return _answer(sse, batched or c.ndim == 3)


def _kmeans_plus_plus(X: torch.Tensor, k: int, runs: int, gen: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ seeding, ``runs`` independent seedings per data set: ``(B, runs, k, d)``.

    Each new centre is the best (lowest potential) of ``2 + log k`` candidates drawn with
    probability proportional to the squared distance to the nearest centre so far (as scikit-learn).
    """
    B, n, d = X.shape
    trials = 2 + int(math.log(k))
    batch = torch.arange(B, device=X.device)[:, None, None]
    first = torch.randint(n, (B, runs, 1), generator=gen, device=X.device)
    centres = [X[batch, first]]  # each (B, runs, 1, d)
    closest = sq_dists(X, centres[0].reshape(B, runs, d)).transpose(1, 2)  # (B, runs, n)
    for _ in range(1, k):
        weights = closest.reshape(B * runs, n)
        weights = weights + (weights.sum(dim=-1, keepdim=True) == 0)  # all points already centres: uniform
        picks = torch.multinomial(weights, trials, replacement=True, generator=gen).reshape(B, runs, trials)
        candidates = X[batch, picks]  # (B, runs, trials, d)
        dist = sq_dists(X, candidates.reshape(B, runs * trials, d)).reshape(B, n, runs, trials)
        dist = torch.minimum(dist.permute(0, 2, 3, 1), closest.unsqueeze(2))  # (B, runs, trials, n)
        best = dist.sum(dim=-1).argmin(dim=-1)  # (B, runs)
        centres.append(candidates.gather(2, best[..., None, None].expand(B, runs, 1, d)))
        closest = dist.gather(2, best[..., None, None].expand(B, runs, 1, n)).squeeze(2)
    return torch.cat(centres, dim=2)


def _assign(X: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """Squared distances ``(B, runs, n, k)`` of every point to every centroid of every run ``C (B, runs, k, d)``."""
    B, runs, k, d = C.shape
    return sq_dists(X, C.reshape(B, runs * k, d)).reshape(B, -1, runs, k).transpose(1, 2)


def kmeans(
    X: Any,
    k: int,
    *,
    restarts: int = 5,
    max_iter: int = 100,
    tol: float = 1e-6,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means++ seeding and Lloyd iterations, best of ``restarts``: ``(centroids (k, d), sse)``.

    ``sse`` is :func:`kmeans_sse` of the returned centroids (the mean, not the sum).  All restarts
    (and all data sets of a batch ``(B, n, d)``) run together as batch dimensions.  Lloyd stops when
    every run moved its centroids by at most ``tol`` times the mean feature variance (squared
    Frobenius norm, scikit-learn's rule) or after ``max_iter`` iterations.  A centroid that loses
    all its points stays where it was.
    """
    x, batched = as_data(X, device=device)
    B, n, d = x.shape
    k = check_int("k", k, 1, n, hint=f" (at most the number of samples, {n})")
    restarts = check_int("restarts", restarts, 1)
    max_iter = check_int("max_iter", max_iter, 1)
    tol = check_number("tol", tol, strict=False)
    gen = generator(check_seed(seed), "kmeans++", device=x.device)
    with torch.no_grad():
        x = x.detach()
        threshold = tol * x.var(dim=1, unbiased=False).mean(dim=-1, keepdim=True)  # (B, 1)
        C = _kmeans_plus_plus(x, k, restarts, gen)
        for _ in range(max_iter):
            labels = _assign(x, C).argmin(dim=-1)  # (B, runs, n)
            onehot = F.one_hot(labels, k).to(x.dtype)  # (B, runs, n, k)
            counts = onehot.sum(dim=2).unsqueeze(-1)  # (B, runs, k, 1)
            sums = onehot.transpose(2, 3).reshape(B, restarts * k, n) @ x
            moved = torch.where(counts > 0, sums.reshape(B, restarts, k, d) / counts.clamp(min=1.0), C)
            shift = (moved - C).pow(2).sum(dim=(-1, -2))
            C = moved
            if bool((shift <= threshold).all()):
                break
        sse = _assign(x, C).min(dim=-1).values.mean(dim=-1)  # (B, runs)
        best = sse.argmin(dim=1)
        rows = torch.arange(B, device=x.device)
    return _answer(C[rows, best], batched), _answer(sse[rows, best], batched)


# ---------------------------------------------------------------------------------------------
# PCA


def pca(X: Any, k: int, *, device: str | torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` principal directions by SVD of the centred data: ``(components (d, k), mean (d,))``.

    The columns are orthonormal, in decreasing order of variance, each signed so that its entry of
    largest magnitude is positive.  ``k`` is at most ``min(n, d)``.
    """
    x, batched = as_data(X, device=device)
    _, n, d = x.shape
    k = check_int("k", k, 1, min(n, d), hint=f" (at most min(number of samples, dimension) = {min(n, d)})")
    with torch.no_grad():
        mean = x.mean(dim=1)
        V = torch.linalg.svd(x - mean.unsqueeze(1), full_matrices=False).Vh[:, :k].transpose(1, 2)
    return _answer(orient_columns(V), batched), _answer(mean, batched)


def orient_columns(V: torch.Tensor) -> torch.Tensor:
    """``V (..., d, k)`` with each column signed so that its entry of largest magnitude is positive."""
    sign = V.gather(-2, V.abs().argmax(dim=-2, keepdim=True)).sign()
    return V * torch.where(sign == 0, 1.0, sign)


def pca_error(X: Any, components: Any, mean: Any = None) -> torch.Tensor:
    """``(1/n) ||X_c - X_c V (V^T V)^+ V^T||_F^2``, ``X_c = X - mean``: mean squared reconstruction error.

    ``components`` ``V (d, k)`` need not be orthonormal (the projection is onto its column span);
    ``mean=None`` centres each data set with its own mean.  Batches: ``(B, n, d)``, ``(B, d, k)``, ``(B, d)``.
    """
    x, batched = as_data(X)
    d = x.shape[-1]
    V = as_param(components, "components", x, (d, None))
    mu = x.mean(dim=1) if mean is None else as_param(mean, "mean", x, (d,))
    xc = x - mu.unsqueeze(-2)
    err = (xc - xc @ _projector(V)).pow(2).sum(dim=-1).mean(dim=-1)
    return _answer(err, batched or V.ndim == 3 or (mean is not None and mu.ndim == 2))


def _projector(V: torch.Tensor) -> torch.Tensor:
    """``P = V (V^T V)^+ V^T``: the orthogonal projector onto the column span of ``V (..., d, k)``."""
    return V @ torch.linalg.pinv(V.transpose(-1, -2) @ V, hermitian=True) @ V.transpose(-1, -2)


def pca_reconstruction(X: torch.Tensor, components: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """``mu + (x - mu) P``: each sample of ``X (..., n, d)`` projected on the affine principal subspace
    through ``mean`` ``(..., d)`` spanned by ``components`` ``(..., d, k)`` (``P`` as in :func:`pca_error`)."""
    mu = mean.unsqueeze(-2)
    return mu + (X - mu) @ _projector(components)


# ---------------------------------------------------------------------------------------------
# Ridge regression


def as_targets(y: Any, x: torch.Tensor, batched: bool) -> torch.Tensor:
    """Targets ``y`` ``(n,)`` (or ``(B, n)`` for a batch) matching ``x (B, n, d)`` from :func:`as_data`, as ``(B, n)``."""
    t = as_param(y, "y", x, (x.shape[1],))
    expected = tuple(x.shape[:2]) if batched else (x.shape[1],)
    if tuple(t.shape) != expected:
        raise ValueError(f"y has shape {tuple(t.shape)}, which is not allowed: {expected} to match X")
    return t if batched else t.unsqueeze(0)


def ridge(X: Any, y: Any, lam: float, *, device: str | torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge regression with an unpenalised intercept, in closed form: ``(w (d,), b ())``.

    Minimises :func:`ridge_loss` ``(1/n) ||X w + b - y||^2 + lam ||w||^2`` (``lam`` per sample:
    scikit-learn's ``alpha`` is ``n * lam``): ``w = (S_xx + lam I)^+ s_xy`` with the centred moments
    ``S_xx = X_c^T X_c / n``, ``s_xy = X_c^T y_c / n``, and ``b = mean(y) - mean(X)^T w``.  With
    ``lam = 0`` this is least squares (the minimum-norm solution when ``S_xx`` is singular).
    """
    x, batched = as_data(X, device=device)
    t = as_targets(y, x, batched)
    lam = check_number("lam", lam, strict=False)
    with torch.no_grad():
        w, b = ridge_from_moments(*_centred_moments(x.detach(), t.detach()), lam)
    return _answer(w, batched), _answer(b, batched)


def _centred_moments(x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
    n = x.shape[1]
    x_mean, y_mean = x.mean(dim=1), t.mean(dim=1)
    xc, yc = x - x_mean.unsqueeze(1), t - y_mean.unsqueeze(1)
    return xc.transpose(1, 2) @ xc / n, (xc.transpose(1, 2) @ yc.unsqueeze(-1)).squeeze(-1) / n, x_mean, y_mean


def ridge_from_moments(
    S_xx: torch.Tensor, s_xy: torch.Tensor, x_mean: torch.Tensor, y_mean: torch.Tensor, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``w = (S_xx + lam I)^+ s_xy`` and ``b = y_mean - x_mean^T w`` from centred moments (batched ``(..., d)``)."""
    eye = torch.eye(S_xx.shape[-1], dtype=S_xx.dtype, device=S_xx.device)
    w = (torch.linalg.pinv(S_xx + lam * eye, hermitian=True) @ s_xy.unsqueeze(-1)).squeeze(-1)
    return w, y_mean - (x_mean * w).sum(dim=-1)


def ridge_loss(X: Any, y: Any, w: Any, b: Any, lam: float) -> torch.Tensor:
    """``(1/n) ||X w + b - y||^2 + lam ||w||^2``: mean squared error plus the ridge penalty."""
    x, batched = as_data(X)
    t = as_targets(y, x, batched)
    lam = check_number("lam", lam, strict=False)
    w = as_param(w, "w", x, (x.shape[-1],))
    b = torch.as_tensor(b, dtype=x.dtype, device=x.device)
    if b.ndim > 1 or (b.ndim == 1 and b.shape[0] != x.shape[0]):
        raise ValueError(f"b has shape {tuple(b.shape)}, which is not allowed: () or a batch (B,)")
    loss = (ridge_prediction(x, w, b) - t).pow(2).mean(dim=-1) + lam * w.pow(2).sum(dim=-1)
    return _answer(loss, batched or w.ndim == 2 or b.ndim == 1)


def ridge_prediction(X: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``X w + b``: the prediction for every sample of ``X (..., n, d)`` (``w (..., d)``, ``b`` ``()`` or ``(B,)``)."""
    return (X @ w.unsqueeze(-1)).squeeze(-1) + b.unsqueeze(-1)


# ---------------------------------------------------------------------------------------------
# Autoencoder

AUTOENCODER_LAYERS = (
    ("enc_w1", "enc_b1", "hidden", "input"),
    ("enc_w2", "enc_b2", "bottleneck", "hidden"),
    ("dec_w1", "dec_b1", "hidden", "bottleneck"),
    ("dec_w2", "dec_b2", "input", "hidden"),
)


def autoencoder_shapes(input_dim: int, hidden: int, bottleneck: int) -> dict[str, tuple[int, ...]]:
    """The parameter layout of :func:`autoencoder_forward`, in order: name -> shape (weights ``(out, in)``).

    ``enc_w1 (h, d)``, ``enc_b1 (h,)``, ``enc_w2 (c, h)``, ``enc_b2 (c,)``, ``dec_w1 (h, c)``,
    ``dec_b1 (h,)``, ``dec_w2 (d, h)``, ``dec_b2 (d,)`` for ``d = input_dim``, ``h = hidden``,
    ``c = bottleneck``.  A hypernetwork outputs these (with a leading batch axis) and evaluates them
    with :func:`autoencoder_forward`.
    """
    sizes = {
        "input": check_int("input_dim", input_dim, 1),
        "hidden": check_int("hidden", hidden, 1),
        "bottleneck": check_int("bottleneck", bottleneck, 1),
    }
    shapes: dict[str, tuple[int, ...]] = {}
    for weight, bias, out, inp in AUTOENCODER_LAYERS:
        shapes[weight] = (sizes[out], sizes[inp])
        shapes[bias] = (sizes[out],)
    return shapes


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return x @ weight.transpose(-1, -2) + bias.unsqueeze(-2)


def autoencoder_forward(X: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Reconstruction ``f(x) = W4 tanh(W3 (W2 tanh(W1 x + b1) + b2) + b3) + b4`` of ``X (..., n, d)``.

    ``d -> hidden (tanh) -> bottleneck (linear code) -> hidden (tanh) -> d (linear)``, with
    ``W1..W4 = enc_w1, enc_w2, dec_w1, dec_w2`` (layout: :func:`autoencoder_shapes`).  Parameters
    may carry leading batch axes ``(B, ...)`` matching (or broadcasting against) those of ``X``;
    differentiable in both.
    """
    code = _linear(torch.tanh(_linear(X, params["enc_w1"], params["enc_b1"])), params["enc_w2"], params["enc_b2"])
    return _linear(torch.tanh(_linear(code, params["dec_w1"], params["dec_b1"])), params["dec_w2"], params["dec_b2"])


def _check_params(params: Any, d: int) -> dict[str, torch.Tensor]:
    if not isinstance(params, dict) or set(params) != {name for layer in AUTOENCODER_LAYERS for name in layer[:2]}:
        raise ValueError(
            "params is not allowed: a dict with the keys of autoencoder_shapes(input_dim, hidden, bottleneck)"
        )
    h, c = params["enc_w1"].shape[-2], params["enc_w2"].shape[-2]
    for name, shape in autoencoder_shapes(d, h, c).items():
        if tuple(params[name].shape[-len(shape) :]) != shape:
            raise ValueError(f"params[{name!r}] has shape {tuple(params[name].shape)}, which is not allowed: {shape}")
    return params


def autoencoder_error(X: Any, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(1/n) sum_i ||x_i - f(x_i)||^2``: the mean (over samples) squared reconstruction error."""
    x, batched = as_data(X)
    params = _check_params(params, x.shape[-1])
    err = (x - autoencoder_forward(x, params)).pow(2).sum(dim=-1).mean(dim=-1)
    return _answer(err, batched or params["enc_w1"].ndim == 3)


def autoencoder(
    X: Any,
    hidden: int,
    bottleneck: int,
    *,
    steps: int = 2000,
    lr: float = 1e-2,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> dict[str, torch.Tensor]:
    """An autoencoder trained on the full data: full-batch Adam on :func:`autoencoder_error`.

    Weights start uniform in ``+-1/sqrt(fan_in)``, biases at zero; the learning rate follows a
    cosine decay from ``lr`` to 0 over ``steps``.  A batch ``(B, n, d)`` trains ``B`` independent
    autoencoders at once (their losses are summed, so their gradients do not interact).  Returns the
    parameters (layout: :func:`autoencoder_shapes`), with a leading ``B`` axis for a batch.
    """
    x, batched = as_data(X, device=device)
    shapes = autoencoder_shapes(x.shape[-1], hidden, bottleneck)
    steps = check_int("steps", steps, 1)
    lr = check_number("lr", lr)
    gen = generator(check_seed(seed), "autoencoder", device=x.device)
    x = x.detach()
    B = x.shape[0]
    params = {}
    for name, shape in shapes.items():
        if name.endswith(("w1", "w2")):
            bound = 1.0 / math.sqrt(shape[1])
            init = (2.0 * torch.rand(B, *shape, generator=gen, device=x.device, dtype=x.dtype) - 1.0) * bound
        else:
            init = torch.zeros(B, *shape, device=x.device, dtype=x.dtype)
        params[name] = init.requires_grad_(True)
    optimizer = torch.optim.Adam(params.values(), lr=lr, foreach=True)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = (x - autoencoder_forward(x, params)).pow(2).sum(dim=-1).mean(dim=-1).sum()
        loss.backward()
        optimizer.step()
        schedule.step()
    return {name: _answer(p.detach(), batched) for name, p in params.items()}
