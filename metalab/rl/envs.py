"""Meta-RL task distributions: 2-D point navigation (vectorised, pure PyTorch) and half-cheetah direction (optional).

Every environment has the same small interface, batched over a grid of (tasks, trajectories):

* ``sample_tasks(n, generator) -> tasks (n, task_dim)``
* ``reset(tasks, trajectories, generator=None) -> observations (T, N, obs_dim)``
* ``step(actions (T, N, act_dim)) -> (observations, rewards (T, N), done (T, N) bool)``

plus the attributes ``name``, ``obs_dim``, ``act_dim``, ``task_dim`` and ``horizon``.  The rollout
(:func:`metalab.rl.sampling.rollout`) stops counting a trajectory once it is done.

``Navigation2D`` follows MAML's point environment (Finn et al. 2017, §5.3; cbfinn/maml_rl
``point_env_randgoal.py``): goal ~ U[-0.5, 0.5]², start (0, 0), observation = position, action =
velocity clipped to [-0.1, 0.1]², reward −||p − g||₂ after the move (the official code, also
tristandeleu/pytorch-maml-rl and learn2learn) or −||p − g||² with ``reward="squared"`` (the paper's
text), done when |dx| < 0.01 and |dy| < 0.01, horizon 100.  rllab's ``normalize`` wrapper, which the
official script used, instead maps the policy's action a to 0.1·clip(a, −1, 1): ``action_scale=0.1``
reproduces it (velocity = clip(action_scale · a, −0.1, 0.1)).

``HalfCheetahDir`` (MAML §5.3, rllab ``half_cheetah_env_rand_direc.py``) needs gymnasium and MuJoCo,
the ``rl`` extra; it is imported only when asked for.  Its reward is dir · forward velocity − 0.05
||a||², dir ∈ {−1, +1} with probability ½ each.  It steps one gymnasium environment per (task,
trajectory) in a Python loop (MuJoCo simulation is not a tensor operation).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from metalab.core.checks import check_choice, check_int, check_number

REWARDS = ("distance", "squared")
INSTALL_HINT = 'install the rl extra: pip install "metalab[rl]"'


def _check_tasks(tasks: Any, task_dim: int) -> torch.Tensor:
    if not isinstance(tasks, torch.Tensor) or tasks.ndim != 2 or tasks.shape[1] != task_dim or tasks.shape[0] < 1:
        shape = tuple(tasks.shape) if isinstance(tasks, torch.Tensor) else type(tasks).__name__
        raise ValueError(f"tasks of shape/type {shape} is not allowed: a tensor (n_tasks >= 1, {task_dim})")
    if not tasks.is_floating_point() or not bool(torch.isfinite(tasks).all()):
        raise ValueError("tasks is not allowed: finite floating-point values")
    return tasks


class Navigation2D:
    """A point that moves by its (clipped) action towards a hidden goal; batched over tasks and trajectories.

    ``horizon`` >= 1; ``reward`` in ``REWARDS``; ``max_action`` > 0 (the velocity box); ``action_scale``
    > 0 (velocity = clip(action_scale · action)); ``goal_range`` > 0 (goals ~ U[-goal_range, goal_range]²);
    ``done_tolerance`` >= 0.  Deterministic: only :meth:`sample_tasks` draws random numbers, from the
    generator it is given.
    """

    name = "navigation2d"
    obs_dim = 2
    act_dim = 2
    task_dim = 2

    def __init__(
        self,
        *,
        horizon: int = 100,
        reward: str = "distance",
        max_action: float = 0.1,
        action_scale: float = 1.0,
        goal_range: float = 0.5,
        done_tolerance: float = 0.01,
    ):
        self.horizon = check_int("horizon", horizon, 1)
        self.reward = check_choice("reward", reward, REWARDS)
        self.max_action = check_number("max_action", max_action)
        self.action_scale = check_number("action_scale", action_scale)
        self.goal_range = check_number("goal_range", goal_range)
        self.done_tolerance = check_number("done_tolerance", done_tolerance, strict=False)
        self._positions: torch.Tensor | None = None
        self._goals: torch.Tensor | None = None

    def sample_tasks(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Goals (n, 2), uniform on [-goal_range, goal_range]²."""
        n = check_int("n", n, 1)
        return (torch.rand(n, 2, generator=generator) * 2 - 1) * self.goal_range

    def transition(
        self, positions: torch.Tensor, actions: torch.Tensor, goals: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The pure dynamics: positions (..., 2), actions (..., 2), goals broadcastable -> (next, reward, done)."""
        velocity = (self.action_scale * actions).clamp(-self.max_action, self.max_action)
        nxt = positions + velocity
        delta = nxt - goals
        squared = delta.square().sum(-1)
        reward = -squared if self.reward == "squared" else -squared.sqrt()
        done = (delta.abs() < self.done_tolerance).all(-1)
        return nxt, reward, done

    def reset(self, tasks: torch.Tensor, trajectories: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Start ``trajectories`` points at the origin for each goal of ``tasks`` (T, 2); returns (T, N, 2)."""
        goals = _check_tasks(tasks, 2)
        trajectories = check_int("trajectories", trajectories, 1)
        self._goals = goals.to(torch.float32)
        self._positions = torch.zeros(goals.shape[0], trajectories, 2)
        return self._positions.clone()

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Move every point by its clipped action; returns (positions (T, N, 2), rewards (T, N), done (T, N))."""
        if self._positions is None or self._goals is None:
            raise RuntimeError("call reset(tasks, trajectories) before step(actions)")
        if not isinstance(actions, torch.Tensor) or tuple(actions.shape) != tuple(self._positions.shape):
            shape = tuple(actions.shape) if isinstance(actions, torch.Tensor) else type(actions).__name__
            raise ValueError(f"actions of shape/type {shape} is not allowed: a tensor {tuple(self._positions.shape)}")
        self._positions, reward, done = self.transition(self._positions, actions, self._goals[:, None, :])
        return self._positions.clone(), reward, done


def require_mujoco():
    """gymnasium, imported lazily; ImportError naming the ``rl`` extra when gymnasium or MuJoCo is missing."""
    try:
        import gymnasium
        import mujoco  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"the halfcheetah_dir environment needs gymnasium and MuJoCo, which are not installed ({exc}); "
            + INSTALL_HINT
        ) from exc
    return gymnasium


class HalfCheetahDir:
    """Half-cheetah running forwards (dir = +1) or backwards (dir = −1): reward dir · v_x − ctrl_cost · ||a||².

    Wraps gymnasium's ``env_id`` (HalfCheetah, observation qpos[1:] + qvel; rllab's also appended the
    torso's centre of mass) and replaces its reward.  rllab drew goal_vel ~ U[0, 2] and set dir = −1
    below 1, i.e. each direction with probability ½, which :meth:`sample_tasks` does directly.
    Actions are clipped to the action box before stepping and before the control cost.
    """

    name = "halfcheetah_dir"
    task_dim = 1

    def __init__(self, *, horizon: int = 200, ctrl_cost: float = 0.05, env_id: str = "HalfCheetah-v5"):
        self._gym = require_mujoco()
        self.horizon = check_int("horizon", horizon, 1)
        self.ctrl_cost = check_number("ctrl_cost", ctrl_cost, strict=False)
        self.env_id = env_id
        probe = self._gym.make(env_id)
        self.obs_dim = int(probe.observation_space.shape[0])
        self.act_dim = int(probe.action_space.shape[0])
        self._low = torch.as_tensor(probe.action_space.low, dtype=torch.float32)
        self._high = torch.as_tensor(probe.action_space.high, dtype=torch.float32)
        self._envs = [probe]
        self._directions: torch.Tensor | None = None

    def sample_tasks(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Directions (n, 1) in {−1, +1}."""
        n = check_int("n", n, 1)
        return torch.where(torch.rand(n, 1, generator=generator) < 0.5, -1.0, 1.0)

    def reset(self, tasks: torch.Tensor, trajectories: int, generator: torch.Generator | None = None) -> torch.Tensor:
        tasks = _check_tasks(tasks, 1)
        trajectories = check_int("trajectories", trajectories, 1)
        count = tasks.shape[0] * trajectories
        while len(self._envs) < count:
            self._envs.append(self._gym.make(self.env_id))
        seeds = torch.randint(0, 2**31 - 1, (count,), generator=generator).tolist()
        obs = [self._envs[i].reset(seed=seeds[i])[0] for i in range(count)]
        self._directions = tasks[:, 0].to(torch.float32)
        self._shape = (tasks.shape[0], trajectories)
        return torch.as_tensor(np.stack(obs), dtype=torch.float32).reshape(*self._shape, self.obs_dim)

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._directions is None:
            raise RuntimeError("call reset(tasks, trajectories) before step(actions)")
        clipped = torch.maximum(torch.minimum(actions.detach(), self._high), self._low).reshape(-1, self.act_dim)
        obs, velocity, done = [], [], []
        for i, a in enumerate(clipped.numpy()):
            o, _, terminated, _, info = self._envs[i].step(a)
            obs.append(o)
            velocity.append(float(info["x_velocity"]))
            done.append(bool(terminated))
        T, N = self._shape
        velocity_t = torch.tensor(velocity, dtype=torch.float32).reshape(T, N)
        reward = self._directions[:, None] * velocity_t - self.ctrl_cost * clipped.square().sum(-1).reshape(T, N)
        obs_t = torch.as_tensor(np.stack(obs), dtype=torch.float32).reshape(T, N, self.obs_dim)
        return obs_t, reward, torch.tensor(done).reshape(T, N)


ENVS = {"navigation2d": Navigation2D, "halfcheetah_dir": HalfCheetahDir}


def make_env(name: str, **options: Any):
    """An environment by name (``ENVS``): ``"navigation2d"`` or ``"halfcheetah_dir"`` (needs the ``rl`` extra)."""
    check_choice("name", name, tuple(ENVS))
    return ENVS[name](**options)
