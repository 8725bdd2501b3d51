"""Meta-reinforcement learning: 2-D navigation and half-cheetah direction, MAML, L1-MAML and MLSR.

See :mod:`metalab.rl.meta` for the algorithms and the documented choices (MLSR's RL inner loop is a
reconstruction), :mod:`metalab.rl.envs` for the environments and :mod:`metalab.rl.sampling` for
rollouts, returns, baselines and the policy-gradient surrogate.
"""

from metalab.rl.envs import ENVS, INSTALL_HINT, REWARDS, HalfCheetahDir, Navigation2D, make_env, require_mujoco
from metalab.rl.meta import (
    DEFAULT_LAM,
    METHODS,
    MLSR_TARGETS,
    OUTER,
    Evaluation,
    InnerRule,
    MetaRL,
    evaluate,
    expand_params,
    inner_update,
    meta_train,
    mlsr_step,
    pg_step,
    rl_meta_gradient,
)
from metalab.rl.policy import GaussianPolicy, action_mean, log_prob, make_policy
from metalab.rl.sampling import (
    BASELINES,
    Trajectories,
    baseline_features,
    discounted_returns,
    linear_baseline,
    process,
    rollout,
    surrogate_loss,
    time_baseline,
)

__all__ = [
    "BASELINES",
    "DEFAULT_LAM",
    "ENVS",
    "INSTALL_HINT",
    "METHODS",
    "MLSR_TARGETS",
    "OUTER",
    "REWARDS",
    "Evaluation",
    "GaussianPolicy",
    "HalfCheetahDir",
    "InnerRule",
    "MetaRL",
    "Navigation2D",
    "Trajectories",
    "action_mean",
    "baseline_features",
    "discounted_returns",
    "evaluate",
    "expand_params",
    "inner_update",
    "linear_baseline",
    "log_prob",
    "make_env",
    "require_mujoco",
    "make_policy",
    "meta_train",
    "mlsr_step",
    "pg_step",
    "process",
    "rl_meta_gradient",
    "rollout",
    "surrogate_loss",
    "time_baseline",
]
