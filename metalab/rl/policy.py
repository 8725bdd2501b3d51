"""A diagonal Gaussian MLP policy, run functionally (parameters as a dict, shared or one set per task)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap

from metalab.core.checks import check_int, check_number
from metalab.core.seeding import generator
from metalab.nets import MLP


class GaussianPolicy(nn.Module):
    """π(a|s) = N(μ_θ(s), diag(σ²)): ``mean`` is a :class:`metalab.nets.MLP` obs -> hidden... -> act, σ = exp(``log_std``).

    MAML's policy: two hidden layers of 100 ReLU units and a state-independent learned log-std
    (initial σ = ``init_std`` = 1).  The mean head (output layer) is ``mean.<last>``, which
    :func:`metalab.gbml.head_names` finds as the last ``nn.Linear``.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (100, 100),
        activation: str = "relu",
        init_std: float = 1.0,
    ):
        super().__init__()
        act_dim = check_int("act_dim", act_dim, 1)
        init_std = check_number("init_std", init_std)
        self.mean = MLP([obs_dim, *hidden, act_dim], activation)
        self.log_std = nn.Parameter(torch.full((act_dim,), math.log(init_std)))
        self.obs_dim, self.act_dim = obs_dim, act_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """The action mean μ(obs), (..., act_dim)."""
        return self.mean(obs)


def make_policy(
    obs_dim: int,
    act_dim: int,
    *,
    hidden: Sequence[int] = (100, 100),
    activation: str = "relu",
    init_std: float = 1.0,
    seed: int = 0,
) -> GaussianPolicy:
    """A :class:`GaussianPolicy` whose initial weights depend only on ``seed`` (the global RNG is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(generator(seed, "rl-policy").initial_seed())
        return GaussianPolicy(obs_dim, act_dim, tuple(hidden), activation, init_std)


def per_task(policy: nn.Module, params: Mapping[str, torch.Tensor]) -> bool:
    """True when ``params`` carries a leading task axis (one parameter set per task)."""
    own = dict(policy.named_parameters())
    return any(v.ndim == own[k].ndim + 1 for k, v in params.items())


def action_mean(policy: nn.Module, params: Mapping[str, torch.Tensor], obs: torch.Tensor) -> torch.Tensor:
    """μ for obs (T, ..., obs_dim), with shared ``params`` or one set per task (leading axis T)."""
    if per_task(policy, params):
        return vmap(lambda p, o: functional_call(policy, p, (o,)))(dict(params), obs)
    return functional_call(policy, dict(params), (obs,))


def log_prob(
    policy: nn.Module, params: Mapping[str, torch.Tensor], obs: torch.Tensor, actions: torch.Tensor
) -> torch.Tensor:
    """log π(actions | obs), summed over action dimensions: (..., act_dim) -> (...).

    Works on one task's tensors with one parameter set (and composes with ``vmap``/``grad``), or on
    (T, ...) tensors with per-task parameters.
    """
    mean = action_mean(policy, params, obs)
    log_std = params["log_std"]
    if log_std.ndim == 2:  # per task: (T, act) -> broadcast over the sample axes
        log_std = log_std.reshape(log_std.shape[0], *([1] * (mean.ndim - 2)), log_std.shape[1])
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z.square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
