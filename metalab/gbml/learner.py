"""A meta-learner: a meta-gradient per meta-batch, applied by Adam; :meth:`MetaLearner.fit` runs it in the shared
meta-training loop :func:`metalab.core.loop.meta_training`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Any

import torch
from torch import nn

from metalab.core.checks import check_number
from metalab.core.loop import meta_training
from metalab.gbml.core import (
    MetaGradient,
    Pair,
    check_model,
    check_param_dict,
    meta_gradient,
)
from metalab.nets import param_dict


def _adam(params: list[torch.Tensor], lr: float) -> torch.optim.Adam:
    """Adam with torch's fused kernel (one kernel per step instead of about ten per tensor) where this torch
    has one for the parameters' device, else the default implementation; both take the same step."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except RuntimeError:
        return torch.optim.Adam(params, lr=lr)


class MetaLearner:
    """Meta-train ``model``'s parameters (kept here as a dict, the module itself is not modified).

    Parameters
    ----------
    model : nn.Module
        A buffer-free network.
    method : str or callable
        A name from :data:`metalab.gbml.METHODS` (``options`` go to :func:`~metalab.gbml.meta_gradient`)
        or ``method(model, params, support, query, **options) -> MetaGradient`` such as
        :func:`metalab.sparse.mlsr_gradient`.
    meta_lr : float
        The learning rate of the Adam optimiser that applies each meta-gradient.
    params : dict, optional
        The starting point (default: the module's own parameters).
    **options
        Passed to the meta-gradient on every step.
    """

    def __init__(
        self,
        model: nn.Module,
        method: str | Callable[..., MetaGradient] = "maml",
        *,
        meta_lr: float = 1e-3,
        params: Mapping[str, torch.Tensor] | None = None,
        **options: Any,
    ):
        self.model = check_model(model)
        self.meta_lr = check_number("meta_lr", meta_lr)
        start = check_param_dict(model, param_dict(model) if params is None else params)
        self.params = {k: v.clone().requires_grad_(True) for k, v in start.items()}
        self.optimizer = _adam(list(self.params.values()), self.meta_lr)
        self.method = method if isinstance(method, str) else getattr(method, "__name__", "custom")
        if isinstance(method, str):
            self._gradient = partial(meta_gradient, method, **options)
        elif callable(method):
            self._gradient = partial(method, **options)
        else:
            raise ValueError(f"method={method!r} is not allowed: a method name or a callable returning a MetaGradient")
        self.iteration = 0

    def current_params(self) -> dict[str, torch.Tensor]:
        """A detached copy of the meta-parameters."""
        return {k: v.detach().clone() for k, v in self.params.items()}

    def step(self, support: Pair, query: Pair) -> dict[str, Any]:
        """One meta-update θ ← Adam(θ, ∇θ L_query); returns its stats (iteration, query loss, meta-gradient
        norm, status)."""
        result = self._gradient(self.model, self.params, support, query)
        for k, p in self.params.items():
            p.grad = result.grads[k].to(p.dtype)
        self.optimizer.step()
        self.iteration += 1
        norm = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(g, dtype=torch.float64) for g in result.grads.values()])
        )
        return {
            "iteration": self.iteration,
            "method": self.method,
            "query_loss": result.query_loss,
            "grad_norm": float(norm),
            "status": result.status,
        }

    def fit(self, sample: Callable[[int], tuple[Pair, Pair]], iterations: int) -> Iterator[dict[str, Any]]:
        """Meta-train for ``iterations`` meta-updates in :func:`~metalab.core.loop.meta_training`.

        Parameters
        ----------
        sample : callable
            ``sample(i) -> (support, query)``, the meta-batch of iteration i (1-based).
        iterations : int
            The number of meta-updates (>= 1).

        Returns
        -------
        Iterator[dict]
            Per iteration the stats of :meth:`step` with the loop's ``status`` (``"non_finite"`` ends
            the run early), ``seconds`` (sampling and step) and ``fraction`` (of the run done).
        """
        rows = meta_training(lambda batch: self.step(*batch), iterations, sample=sample, loss="query_loss")
        return (row.as_dict() for row in rows)
