"""Batched rollouts, discounted returns, baselines, advantages and the policy-gradient surrogate.

Trajectories are stored on a dense (tasks T, trajectories N, time H) grid with a ``mask`` that is 1
while an episode runs: the step on which an environment reports ``done`` still counts (its reward is
received), later steps do not.  Every reduction below is weighted by the mask.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch
from torch import nn

from metalab.core.checks import check_choice, check_int, check_number
from metalab.rl.policy import action_mean, log_prob

BASELINES = ("linear", "mean", "none")


@dataclass
class Trajectories:
    """A batch of trajectories on the (T, N, H) grid.

    ``observations`` (T, N, H + 1, obs_dim): the observation before each action and the last one (for
    2-D navigation these are the positions, frozen once an episode is done); ``actions`` (T, N, H,
    act_dim): the sampled, unclipped actions (the environment clips); ``rewards``, ``mask`` (T, N, H);
    ``returns``/``advantages`` (T, N, H) once :func:`process` has run; ``old_log_prob`` (T, N, H): log
    π of the actions under the sampling policy.
    """

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    mask: torch.Tensor
    old_log_prob: torch.Tensor
    returns: torch.Tensor | None = None
    advantages: torch.Tensor | None = None

    @property
    def episode_returns(self) -> torch.Tensor:
        """Undiscounted return of each trajectory, (T, N)."""
        return (self.rewards * self.mask).sum(-1)

    @property
    def mean_return(self) -> float:
        """The average undiscounted return over tasks and trajectories."""
        return float(self.episode_returns.mean())


def rollout(
    env,
    policy: nn.Module,
    params: Mapping[str, torch.Tensor],
    tasks: torch.Tensor,
    trajectories: int,
    generator: torch.Generator | None = None,
    *,
    horizon: int | None = None,
) -> Trajectories:
    """Sample ``trajectories`` episodes for every task at once (a loop over time only).

    ``params``: one parameter dict shared by all tasks, or per task (a leading axis of length T).
    ``horizon``: None for ``env.horizon``.  Runs without a graph; the returned tensors are plain data.
    """
    trajectories = check_int("trajectories", trajectories, 1)
    H = env.horizon if horizon is None else check_int("horizon", horizon, 1)
    with torch.no_grad():
        obs = env.reset(tasks, trajectories, generator)
        T, N = obs.shape[:2]
        alive = torch.ones(T, N, dtype=torch.bool)
        std = torch.exp(params["log_std"].detach())
        std = std[:, None, :] if std.ndim == 2 else std
        observations, actions, rewards, masks = [obs], [], [], []
        for _ in range(H):
            mean = action_mean(policy, params, obs)
            action = mean + std * torch.randn(mean.shape, generator=generator)
            nxt, reward, done = env.step(action)
            masks.append(alive.float())
            rewards.append(torch.where(alive, reward, torch.zeros_like(reward)))
            actions.append(action)
            obs = torch.where(alive[..., None], nxt, obs)
            observations.append(obs)
            alive = alive & ~done
        observations_t = torch.stack(observations, dim=2)
        actions_t = torch.stack(actions, dim=2)
        old = log_prob(policy, params, observations_t[:, :, :-1], actions_t)
    return Trajectories(
        observations=observations_t,
        actions=actions_t,
        rewards=torch.stack(rewards, dim=2),
        mask=torch.stack(masks, dim=2),
        old_log_prob=old,
    )


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """R_t = Σ_{k >= t} γ^(k−t) r_k m_k along the last axis (masked steps add nothing), same shape as ``rewards``."""
    gamma = check_number("gamma", gamma, strict=False, high=1.0 + 1e-12)
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[..., 0])
    for t in range(rewards.shape[-1] - 1, -1, -1):
        running = rewards[..., t] * mask[..., t] + gamma * running * mask[..., t]
        out[..., t] = running
    return out


def baseline_features(observations: torch.Tensor) -> torch.Tensor:
    """rllab's ``LinearFeatureBaseline`` features of (T, N, H, obs_dim) observations -> (T, N, H, 2·obs_dim + 4).

    [o, o², t/100, (t/100)², (t/100)³, 1] with o clipped to [−10, 10] and t the time step.
    """
    o = observations.clamp(-10, 10)
    H = o.shape[-2]
    al = (torch.arange(H, dtype=o.dtype) / 100.0).reshape(*([1] * (o.ndim - 2)), H, 1).expand(*o.shape[:-1], 1)
    return torch.cat([o, o.square(), al, al.square(), al**3, torch.ones_like(al)], dim=-1)


def linear_baseline(
    observations: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, reg: float = 1e-5
) -> torch.Tensor:
    """Fit rllab's linear feature baseline per task by ridge least squares and predict it, (T, N, H).

    observations (T, N, H, obs_dim) (one per action), returns and mask (T, N, H).  As in rllab, the
    ridge ``reg`` grows tenfold (up to five times) while the solution is not finite.  Solved in float64.
    """
    reg = check_number("reg", reg, strict=False)
    F = baseline_features(observations).double() * mask.double()[..., None]
    F = F.flatten(1, 2)
    R = (returns.double() * mask.double()).flatten(1, 2)
    gram, rhs = F.transpose(1, 2) @ F, (F.transpose(1, 2) @ R[..., None])
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype)
    for _ in range(5):
        coef = torch.linalg.lstsq(gram + reg * eye, rhs).solution
        if bool(torch.isfinite(coef).all()):
            break
        reg = reg * 10 if reg > 0 else 1e-5
    feats = baseline_features(observations).double()
    return (feats @ coef[:, None]).squeeze(-1).to(returns.dtype) * mask


def time_baseline(returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The simple fitted baseline: the mean return at each time step over a task's running trajectories, (T, N, H)."""
    mean = (returns * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp_min(1)
    return mean.expand_as(returns) * mask


def process(
    batch: Trajectories,
    *,
    gamma: float = 0.99,
    baseline: str = "linear",
    normalize: bool = True,
) -> Trajectories:
    """Discounted returns, the fitted ``baseline`` (``BASELINES``) and advantages A = R − b.

    As in MAML's samplers, the baseline is fitted per task on the very trajectories it is subtracted
    from, and ``normalize=True`` centres and scales the advantages per task (over its running steps).
    """
    check_choice("baseline", baseline, BASELINES)
    returns = discounted_returns(batch.rewards, batch.mask, gamma)
    if baseline == "linear":
        values = linear_baseline(batch.observations[:, :, :-1], returns, batch.mask)
    elif baseline == "mean":
        values = time_baseline(returns, batch.mask)
    else:
        values = torch.zeros_like(returns)
    adv = (returns - values) * batch.mask
    if normalize:
        count = batch.mask.sum((1, 2), keepdim=True).clamp_min(1)
        centre = adv.sum((1, 2), keepdim=True) / count
        spread = (((adv - centre) * batch.mask).square().sum((1, 2), keepdim=True) / count).sqrt()
        adv = (adv - centre) / (spread + 1e-8) * batch.mask
    return replace(batch, returns=returns, advantages=adv)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ values·mask / Σ mask (at least 1 in the denominator)."""
    return (values * mask).sum() / mask.sum().clamp_min(1)


def surrogate_loss(
    policy: nn.Module,
    params: Mapping[str, torch.Tensor],
    observations: torch.Tensor,
    actions: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """REINFORCE with a baseline: −mean over running steps of log π(a|s) · A (one task's (N, H, ...) tensors).

    Its gradient is the policy gradient (advantages are data).  ``observations`` holds one observation
    per action (drop the trajectory's last one).
    """
    return -masked_mean(log_prob(policy, params, observations, actions) * advantages, mask)
