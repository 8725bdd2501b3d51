"""How well a meta-learned network adapts: query accuracy after a method's own inner loop, and a one-shot
predictor from its features.

A method is evaluated the way it adapts during meta-training: the head-only methods (ANIL, ITD-BiO)
take K gradient steps on the head over fixed backbone features, Algorithm 1 runs its inner solver
(K gradient or Newton steps), the MAML family adapts the whole network (iMAML with its proximal term).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.func import vmap

from metalab.implicit import heads
from metalab.implicit.baselines import adapt_network
from metalab.implicit.common import Options
from metalab.implicit.hypergrad import prepare
from metalab.implicit.registry import HEAD_ONLY, HYPERGRADIENTS
from metalab.nets import features, init_head

ONE_SHOT_PREDICTORS = ("nearest", "head")


def _network_accuracy(method: str, backbone, params, head, opts: Options, xs, Ys, xq, Yq) -> torch.Tensor:
    """One episode's query accuracy after the MAML family's whole-network inner loop."""
    net = adapt_network(backbone, (params, head), xs, Ys, opts, proximal=method == "imaml")
    return heads.accuracy(heads.logits(net[1], features(backbone, net[0], xq)), Yq)


def _head_accuracy(method: str, backbone, params, head, opts: Options, tasks) -> torch.Tensor:
    """Query accuracies after a head-only inner loop on the episodes' features (computed with vmap);
    Algorithm 1 adapts with its own inner solver (:func:`~metalab.implicit.heads.minimise`)."""
    embed = vmap(lambda x: features(backbone, params, x))
    Zs, Zq = embed(tasks.support_x), embed(tasks.query_x)
    if method == "implicit":
        start = {k: t.expand(tasks.n_tasks, *t.shape) for k, t in head.items()}
        adapted = heads.minimise(start, Zs, tasks.support_onehot, opts).head
    else:
        adapted = heads.gradient_descent(head, Zs, tasks.support_onehot, opts.l2, opts.inner_steps, opts.inner_lr)
    return heads.accuracy(heads.logits(adapted, Zq), tasks.query_onehot)


def adapted_accuracy(
    method: str, backbone, params, head, support_x, support_y, query_x, query_y, **options: Any
) -> torch.Tensor:
    """Query accuracy of every episode after ``method``'s own inner loop from ``(params, head)``.

    Parameters
    ----------
    method : str
        A key of :data:`~metalab.implicit.HYPERGRADIENTS`: it decides which inner loop adapts.
    backbone, params, head
        The meta-learned network (a buffer-free module, its parameters as a dict) and head.
    support_x, support_y, query_x, query_y : tensor
        Episodes: inputs (B, n, ...) and integer labels (B, n); evaluated together with vmap.
    **options
        ``inner_steps`` K, ``inner_lr``, ``l2``, for Algorithm 1 ``inner_solver``, ``inner_tol`` and
        ``cg_steps``, and for iMAML ``prox`` (see
        :class:`~metalab.implicit.common.Options`).

    Returns
    -------
    torch.Tensor
        (B,) accuracies in [0, 1], detached.
    """
    if method not in HYPERGRADIENTS:
        raise ValueError(f"method={method!r} is not allowed: one of " + ", ".join(map(repr, HYPERGRADIENTS)))
    opts = Options(**options)
    backbone, params, head, tasks = prepare(backbone, params, head, support_x, support_y, query_x, query_y)
    if method in HEAD_ONLY:
        return _head_accuracy(method, backbone, params, head, opts, tasks).detach()
    episode = lambda xs, Ys, xq, Yq: _network_accuracy(method, backbone, params, head, opts, xs, Ys, xq, Yq)  # noqa: E731
    return vmap(episode)(tasks.support_x, tasks.support_onehot, tasks.query_x, tasks.query_onehot).detach()


def one_shot_predictor(
    backbone, params, how: str, *, l2: float, inner_steps: int, inner_lr: float
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A one-shot predictor from the backbone's features: (training images, test images) -> for each
    test image the index of a training image.

    Parameters
    ----------
    backbone, params
        The meta-learned backbone and its parameters.
    how : str
        ``"nearest"``: the training image with the most similar features (cosine); ``"head"``: a head
        with one class per training image, adapted by ``inner_steps`` (at least 1) gradient steps on
        ``g = CE + (l2/2)||φ||²`` from zero.
    l2, inner_steps, inner_lr
        The head's inner loop.

    Returns
    -------
    callable
        ``predict(train_images (n, ...), test_images (m, ...)) -> (m,)`` indices, on the CPU.
    """
    if how not in ONE_SHOT_PREDICTORS:
        raise ValueError(f"how={how!r} is not allowed: one of " + ", ".join(map(repr, ONE_SHOT_PREDICTORS)))
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
            head = heads.gradient_descent(head, Zs, Y, l2, max(inner_steps, 1), inner_lr)
            return heads.logits(head, Zq).argmax(1).cpu()

    return predict
