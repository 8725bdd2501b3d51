"""What every hypergradient method shares: validated options and task tensors, and a switch that hides
the numerical warnings of callers that record the statuses instead.

The result type and its finiteness guard live in :mod:`metalab.core.results`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from metalab.core.checks import check_int, check_number
from metalab.core.results import BATCH_MODES, HypergradientWarning, all_finite
from metalab.implicit.cg import CGWarning
from metalab.implicit.heads import INNER_SOLVERS


@dataclass(frozen=True)
class Options:
    """Knobs shared by every method (each method reads the ones it uses).

    inner_steps K >= 0, inner_lr > 0, l2 (ridge on the head inside g) >= 0, cg_steps N >= 0,
    cg_tol >= 0 (relative residual), prox (iMAML's proximal strength) > 0, batch_mode in
    ``BATCH_MODES``.  Algorithm 1 only: inner_solver in ``INNER_SOLVERS`` ("gd": K steps of inner_lr;
    "newton": at most K damped Newton steps), inner_tol >= 0 (stop once ||∇g|| <= inner_tol times its
    start), max_inner_residual >= 0 (above it the hypergradient is reported unreliable).
    """

    inner_steps: int = 20
    inner_lr: float = 0.05
    l2: float = 1e-2
    cg_steps: int = 20
    cg_tol: float = 1e-10
    prox: float = 2.0
    batch_mode: str = "vmap"
    inner_solver: str = "gd"
    inner_tol: float = 0.0
    max_inner_residual: float = 0.1

    def __post_init__(self) -> None:
        object.__setattr__(self, "inner_steps", check_int("inner_steps", self.inner_steps, 0))
        object.__setattr__(self, "inner_lr", check_number("inner_lr", self.inner_lr))
        object.__setattr__(self, "l2", check_number("l2", self.l2, strict=False))
        object.__setattr__(self, "cg_steps", check_int("cg_steps", self.cg_steps, 0))
        object.__setattr__(self, "cg_tol", check_number("cg_tol", self.cg_tol, strict=False))
        object.__setattr__(self, "prox", check_number("prox", self.prox))
        object.__setattr__(self, "inner_tol", check_number("inner_tol", self.inner_tol, strict=False))
        object.__setattr__(
            self, "max_inner_residual", check_number("max_inner_residual", self.max_inner_residual, strict=False)
        )
        if self.inner_solver not in INNER_SOLVERS:
            raise ValueError(
                f"inner_solver={self.inner_solver!r} is not allowed: one of " + ", ".join(map(repr, INNER_SOLVERS))
            )
        if self.batch_mode not in BATCH_MODES:
            raise ValueError(
                f"batch_mode={self.batch_mode!r} is not allowed: one of " + ", ".join(map(repr, BATCH_MODES))
            )


@dataclass(frozen=True)
class Tasks:
    """A meta-batch: inputs (B, n, ...), one-hot labels (B, n, C), integer labels (B, n)."""

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    support_onehot: torch.Tensor
    query_onehot: torch.Tensor

    @property
    def n_tasks(self) -> int:
        return self.support_x.shape[0]

    def task(self, t: int) -> tuple[torch.Tensor, ...]:
        """(support_x, support_onehot, query_x, query_onehot) of task ``t``."""
        return self.support_x[t], self.support_onehot[t], self.query_x[t], self.query_onehot[t]


def check_params(params: Any, head: Any) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Detached copies-by-reference of the backbone dict and the head dict, validated."""
    if not isinstance(params, dict) or not params or not all(isinstance(v, torch.Tensor) for v in params.values()):
        raise ValueError("params must be a non-empty dict {name: tensor} of backbone parameters")
    if not isinstance(head, dict) or set(head) != {"weight", "bias"}:
        got = sorted(head) if isinstance(head, dict) else type(head).__name__
        raise ValueError(f"head={got!r} is not allowed: a dict with exactly 'weight' (C, d) and 'bias' (C,)")
    weight, bias = head["weight"], head["bias"]
    if weight.ndim != 2 or bias.ndim != 1 or bias.shape[0] != weight.shape[0]:
        raise ValueError(
            f"head has weight {tuple(weight.shape)} and bias {tuple(bias.shape)}; expected (C, d) and (C,)"
        )
    tensors = {**params, "head.weight": weight, "head.bias": bias}
    for name, tensor in tensors.items():
        if not tensor.is_floating_point():
            raise ValueError(f"{name} has dtype {tensor.dtype}; expected a floating-point tensor")
    if not all_finite(list(tensors.values())):
        bad = next(name for name, tensor in tensors.items() if not all_finite([tensor]))
        raise ValueError(f"{bad} contains non-finite values (NaN or inf)")
    return {k: v.detach() for k, v in params.items()}, {k: v.detach() for k, v in head.items()}


def check_tasks(
    support_x: Any, support_y: Any, query_x: Any, query_y: Any, n_way: int, dtype: torch.dtype, device: torch.device
) -> Tasks:
    """Validate a meta-batch (support_x (B, n_s, ...), support_y (B, n_s), query likewise)."""
    xs = {"support_x": support_x, "query_x": query_x}
    ys = {"support_y": support_y, "query_y": query_y}
    out: dict[str, torch.Tensor] = {}
    for name, x in xs.items():
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 3:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"{name} of shape/type {shape} is not allowed: a floating tensor (tasks, samples, *input_shape)"
            )
        if not all_finite([x]):
            raise ValueError(f"{name} contains non-finite values (NaN or inf)")
        out[name] = x.detach().to(device=device, dtype=dtype)
    for name, y in ys.items():
        x = out[name.replace("_y", "_x")]
        if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise ValueError(f"{name} is not allowed: an integer tensor of class labels (tasks, samples)")
        if tuple(y.shape) != tuple(x.shape[:2]):
            raise ValueError(f"{name} has shape {tuple(y.shape)}; expected {tuple(x.shape[:2])} to match {name[:-2]}_x")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_way):
            raise ValueError(f"{name} has labels outside 0..{n_way - 1} (the head has {n_way} classes)")
        out[name] = y.detach().to(device=device, dtype=torch.long)
    if out["support_x"].shape[0] != out["query_x"].shape[0] or out["support_x"].shape[0] < 1:
        raise ValueError(
            f"support_x has {out['support_x'].shape[0]} tasks and query_x {out['query_x'].shape[0]}; expected the same number >= 1"
        )
    if out["support_x"].shape[2:] != out["query_x"].shape[2:]:
        raise ValueError(
            f"support_x inputs {tuple(out['support_x'].shape[2:])} and query_x inputs {tuple(out['query_x'].shape[2:])} differ"
        )
    if min(out["support_x"].shape[1], out["query_x"].shape[1]) < 1:
        raise ValueError("support_x and query_x need at least one sample per task")
    one_hot = lambda y: torch.nn.functional.one_hot(y, n_way).to(dtype)  # noqa: E731
    return Tasks(
        out["support_x"],
        out["support_y"],
        out["query_x"],
        out["query_y"],
        one_hot(out["support_y"]),
        one_hot(out["query_y"]),
    )


def check_backbone(backbone: Any) -> nn.Module:
    if not isinstance(backbone, nn.Module):
        raise ValueError(
            f"backbone of type {type(backbone).__name__} is not allowed: a torch.nn.Module mapping (n, ...) to (n, d)"
        )
    if any(True for _ in backbone.buffers()):
        raise ValueError(
            "backbone has buffers (e.g. BatchNorm running statistics); use track_running_stats=False (see metalab.nets)"
        )
    return backbone


def check_feature_dim(Z: torch.Tensor, head: dict[str, torch.Tensor]) -> None:
    if Z.shape[-1] != head["weight"].shape[-1]:
        raise ValueError(
            f"the backbone gives {Z.shape[-1]} features but head['weight'] expects {head['weight'].shape[-1]}"
        )


@contextlib.contextmanager
def quiet_numerics() -> Iterator[None]:
    """Hide :class:`CGWarning` and :class:`HypergradientWarning` inside the block, for callers that keep
    the result's ``status`` instead (an experiment's records)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CGWarning)
        warnings.simplefilter("ignore", HypergradientWarning)
        yield
