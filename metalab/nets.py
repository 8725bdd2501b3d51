"""Small networks for meta-learning, written to be called functionally.

Every module here keeps no buffers (BatchNorm uses batch statistics only), so
``torch.func.functional_call(module, params, x)`` with a plain dict of parameters is the whole
forward pass and ``torch.func.grad``/``vmap`` work on it.  A linear classification head is kept as a
separate dict ``{"weight": (C, d), "bias": (C,)}`` so that bilevel methods can treat the backbone
(upper level) and the head (lower level) as different parameter blocks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "elu": nn.ELU, "sigmoid": nn.Sigmoid}


class MLP(nn.Sequential):
    """Fully connected net ``sizes[0] -> ... -> sizes[-1]`` with ``activation`` between layers.

    ``activate_last=True`` also applies the activation after the last layer (useful for a backbone
    whose output feeds a separate head).
    """

    def __init__(self, sizes: Sequence[int], activation: str = "relu", activate_last: bool = False):
        sizes = list(sizes)
        if len(sizes) < 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes):
            raise ValueError(f"sizes={sizes!r} is not allowed: at least two positive integers (input, ..., output)")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r} is not allowed: one of " + ", ".join(map(repr, ACTIVATIONS)))
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(nn.Linear(fan_in, fan_out))
            if i < len(sizes) - 2 or activate_last:
                layers.append(ACTIVATIONS[activation]())
        super().__init__(*layers)
        self.in_features, self.out_features = sizes[0], sizes[-1]
        self.feature_dim = sizes[-1]


class LinearHead(nn.Module):
    """``logits = z @ weight.T + bias`` with ``weight`` (n_classes, in_features)."""

    def __init__(self, in_features: int, n_classes: int, zero_init: bool = False):
        super().__init__()
        for name, value in (("in_features", in_features), ("n_classes", n_classes)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r} is not allowed: a positive integer")
        layer = nn.Linear(in_features, n_classes)
        self.weight = nn.Parameter(torch.zeros_like(layer.weight) if zero_init else layer.weight.detach().clone())
        self.bias = nn.Parameter(torch.zeros_like(layer.bias) if zero_init else layer.bias.detach().clone())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(z, self.weight, self.bias)


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 conv (padding 1) -> BatchNorm (batch statistics only) -> ReLU -> 2x2 max-pool."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_channels, track_running_stats=False),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


class Conv4(nn.Module):
    """The standard four-block few-shot CNN; returns flat features, or logits when ``out_features`` is set.

    BatchNorm keeps no running statistics: it always normalises with the statistics of the batch it
    is given (as MAML-style code does in train mode), which keeps the module buffer-free.
    ``feature_dim = hidden * (image_size // 16) ** 2``.
    """

    def __init__(self, in_channels: int = 1, hidden: int = 64, image_size: int = 28, out_features: int | None = None):
        super().__init__()
        for name, value, low in (
            ("in_channels", in_channels, 1),
            ("hidden", hidden, 1),
            ("image_size", image_size, 16),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name}={value!r} is not allowed: an integer >= {low}")
        if out_features is not None and (
            not isinstance(out_features, int) or isinstance(out_features, bool) or out_features < 1
        ):
            raise ValueError(f"out_features={out_features!r} is not allowed: None or a positive integer")
        self.blocks = nn.Sequential(
            conv_block(in_channels, hidden),
            conv_block(hidden, hidden),
            conv_block(hidden, hidden),
            conv_block(hidden, hidden),
        )
        side = image_size
        for _ in range(4):
            side //= 2
        self.in_channels, self.image_size = in_channels, image_size
        self.feature_dim = hidden * side * side
        self.head = LinearHead(self.feature_dim, out_features) if out_features is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.blocks(x).flatten(1)
        return z if self.head is None else self.head(z)


# ---------------------------------------------------------------------------------------------
# Parameter dicts


def param_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's parameters as ``{name: tensor}``, detached (sharing storage with the module)."""
    return {name: p.detach() for name, p in module.named_parameters()}


def split_params(
    params: Mapping[str, torch.Tensor], head_prefix: str = "head."
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Split a full parameter dict into (backbone, head); the head's names lose ``head_prefix``."""
    backbone = {k: v for k, v in params.items() if not k.startswith(head_prefix)}
    head = {k[len(head_prefix) :]: v for k, v in params.items() if k.startswith(head_prefix)}
    return backbone, head


def merge_params(
    backbone: Mapping[str, torch.Tensor], head: Mapping[str, torch.Tensor], head_prefix: str = "head."
) -> dict[str, torch.Tensor]:
    """Inverse of :func:`split_params`."""
    return {**backbone, **{head_prefix + k: v for k, v in head.items()}}


def init_head(
    in_features: int,
    n_classes: int,
    *,
    zero: bool = False,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> dict[str, torch.Tensor]:
    """A linear head dict ``{"weight": (C, d), "bias": (C,)}``: zeros, or PyTorch's default uniform init."""
    if zero:
        return {
            "weight": torch.zeros(n_classes, in_features, dtype=dtype, device=device),
            "bias": torch.zeros(n_classes, dtype=dtype, device=device),
        }
    bound = 1.0 / in_features**0.5
    weight = (torch.rand(n_classes, in_features, generator=generator, dtype=dtype) * 2 - 1) * bound
    bias = (torch.rand(n_classes, generator=generator, dtype=dtype) * 2 - 1) * bound
    return {"weight": weight.to(device), "bias": bias.to(device)}


def features(backbone: nn.Module, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``backbone`` evaluated with ``params`` on ``x`` (n, ...) -> (n, feature_dim)."""
    return functional_call(backbone, dict(params), (x,))


def seeded_conv4(
    n_classes: int,
    *,
    hidden: int,
    image_size: int,
    seed: int,
    in_channels: int = 1,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> tuple[Conv4, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A Conv-4 backbone drawn from ``seed`` (the global RNG left as it was) with a zero linear head.

    Parameters
    ----------
    n_classes : int
        Classes of the head (the episodes' N ways).
    hidden, image_size, in_channels
        The backbone's channels, input side and input channels (see :class:`Conv4`).
    seed : int
        Seeds the backbone's initialisation; the same seed gives the same weights.
    dtype, device
        Where the parameters live.

    Returns
    -------
    (Conv4, dict, dict)
        The module, its parameters as a dict of leaf tensors that require grad, and the zero head
        ``{"weight": (n_classes, feature_dim), "bias": (n_classes,)}``.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = Conv4(in_channels=in_channels, hidden=hidden, image_size=image_size)
    backbone = backbone.to(device=device, dtype=dtype)
    params = {k: p.detach().clone().requires_grad_(True) for k, p in backbone.named_parameters()}
    head = init_head(backbone.feature_dim, n_classes, zero=True, dtype=dtype, device=device)
    return backbone, params, head
