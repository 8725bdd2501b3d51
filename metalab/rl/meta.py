"""Meta-RL by gradient-based adaptation: MAML, L1-regularised MAML and MLSR, vectorised over the tasks.

One meta-iteration (:meth:`MetaRL.step`), for a meta-batch of T tasks:

1. sample N trajectories per task with the meta-policy θ (all tasks at once);
2. adapt per task: θ'_i = inner(θ, trajectories_i) (``inner_steps`` times, re-sampling with the adapted
   policy before each further step);
3. sample N trajectories per task with θ'_i;
4. outer update on the post-adaptation trajectories: the REINFORCE surrogate of θ'_i(θ) averaged over
   tasks, applied by Adam (``outer="vpg"``), or ``ppo_epochs`` Adam steps on PPO's clipped
   surrogate (``outer="ppo"``; the inner adaptation is recomputed from θ in every epoch, as in ProMP).
   MAML used TRPO (KL 0.01) here; TRPO is not implemented.

Inner rules (``METHODS``):

* ``"maml"``: one vanilla policy-gradient step θ' = θ − α ∇θ L_PG(θ) on every parameter (α =
  ``inner_lr``, 0.1 as in MAML).  The outer gradient is second order: it differentiates through the
  inner step (Hessian-vector products of L_PG).  Like MAML's implementation it does not differentiate
  the sampling distribution of the pre-update trajectories (no DiCE / E-MAML term).  ``first_order=True``
  treats the inner gradient as a constant (FOMAML).
* ``"l1_maml"``: the same with L_PG + λ Σ|W_head| (λ = ``lam``, subgradient sign(W) on the mean head's
  weight matrix), the paper's L1-regularised MAML ablation.
* ``"mlsr"``: **a reconstruction, unverified** (the MLSR paper gives no RL details and no code).  Only
  the mean head (output layer W, b of μ) adapts, by sparse recovery on the body's features
  Φ = [φ_θ(s) 1] of the task's running steps: ISTA/FISTA (:func:`metalab.sparse.sparse_recovery`,
  ``mlsr_steps`` iterations, step 1/L, started from the meta-learned head) on

      (1/2n) Σ_i ω_i ||Φ_i w − y_i||² + λ ||W||₁     (bias unpenalised)

  with either ``mlsr_target="pg"``: y_i = μ_i + κ · A_i (a_i − μ_i)/σ², ω_i = 1 — the action means are
  regressed onto themselves moved along the per-sample policy-gradient direction (κ =
  ``mlsr_scale``; the first ISTA step from the meta-learned head with λ = 0 is a policy-gradient step
  on the head) — or ``mlsr_target="awr"``: y_i = a_i, ω_i ∝ exp(A_i/``mlsr_temperature``) (clipped
  at 20, advantage-weighted regression).  The meta-gradient is first order (the recovered head is
  held fixed, with an identity path to the meta-learned head, as :func:`metalab.sparse.mlsr_gradient`
  does); σ is not adapted.

Evaluation (:func:`evaluate`) adapts with the method's own inner rule, except that L1-MAML adapts
without the regulariser (as :func:`metalab.gbml.fine_tune`, following the paper's test protocol);
MLSR's recovery is its adaptation, so it keeps λ.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.func import vmap

from metalab.core.checks import check_choice, check_int, check_number
from metalab.core.loop import meta_training
from metalab.core.seeding import generator
from metalab.gbml import MetaGradient, MetaLearner, head_names
from metalab.gbml.core import gradient_of_mean, make_result
from metalab.rl.envs import make_env
from metalab.rl.policy import GaussianPolicy, log_prob, make_policy
from metalab.rl.sampling import BASELINES, Trajectories, masked_mean, process, rollout, surrogate_loss
from metalab.sparse import (
    ALGORITHMS,
    bias_free_penalty,
    body_features,
    head_layer,
    head_matrix,
    sparse_recovery,
    split_body,
)

METHODS = ("maml", "l1_maml", "mlsr")
OUTER = ("vpg", "ppo")
MLSR_TARGETS = ("pg", "awr")
DEFAULT_LAM = {"maml": 0.0, "l1_maml": 0.01, "mlsr": 1e-3}

Params = dict[str, torch.Tensor]


@dataclass(frozen=True)
class InnerRule:
    """How one task adapts (see the module docstring); ``lam`` is λ of L1-MAML or MLSR."""

    method: str = "maml"
    lr: float = 0.1
    lam: float = 0.0
    second_order: bool = True
    mlsr_steps: int = 20
    mlsr_algorithm: str = "ista"
    mlsr_target: str = "pg"
    mlsr_scale: float = 2.0
    mlsr_temperature: float = 1.0


def expand_params(params: Mapping[str, torch.Tensor], tasks: int) -> Params:
    """One parameter set per task (a broadcast view, no copy): {k: (tasks, *shape)}."""
    return {k: v.expand(tasks, *v.shape) for k, v in params.items()}


def _penalised_surrogate(policy, l1, l1_names, params, obs, actions, adv, mask):
    loss = surrogate_loss(policy, params, obs, actions, adv, mask)
    if l1:
        loss = loss + l1 * sum(params[k].abs().sum() for k in l1_names)
    return loss


def _pg_task(policy, lr, l1, l1_names, create_graph, params, obs, actions, adv, mask):
    grads = torch.func.grad(partial(_penalised_surrogate, policy, l1, l1_names))(params, obs, actions, adv, mask)
    return {k: params[k] - lr * (grads[k] if create_graph else grads[k].detach()) for k in params}


def pg_step(
    policy: nn.Module,
    params: Mapping[str, torch.Tensor],
    batch: Trajectories,
    *,
    lr: float,
    l1: float = 0.0,
    create_graph: bool = False,
) -> Params:
    """One vanilla policy-gradient step per task (vmap over tasks) on per-task ``params`` (leading axis T).

    ``l1`` > 0 adds l1 · Σ|W| over the mean head's weight matrix.  ``create_graph`` keeps the inner
    gradient's dependence on ``params`` (second order).
    """
    l1_names = tuple(k for k in head_names(policy) if params[k].ndim >= 3) if l1 else ()
    step = partial(_pg_task, policy, lr, l1, l1_names, create_graph)
    return vmap(step)(dict(params), batch.observations[:, :, :-1], batch.actions, batch.advantages, batch.mask)


def mlsr_step(
    policy: GaussianPolicy, params: Mapping[str, torch.Tensor], batch: Trajectories, rule: InnerRule
) -> Params:
    """Recover each task's mean head by ISTA/FISTA on the body's features (first order; see the module docstring)."""
    body, last = split_body(policy.mean)
    prefix = f"mean.{last}"
    # the body is never adapted by MLSR, so every task shares the first task's body parameters
    body_params = {k[len("mean.") :]: v[0].detach() for k, v in params.items() if k.startswith("mean.")}
    mask = batch.mask.flatten(1, 2)[..., None]  # (T, n, 1)
    start = head_matrix(params, prefix)  # (T, p + 1, m)
    with torch.no_grad():
        Phi_d = body_features(body, body_params, batch.observations[:, :, :-1].flatten(1, 2))  # (T, n, p + 1)
        start_d = start.detach()
        mean = Phi_d @ start_d
        actions = batch.actions.flatten(1, 2)
        adv = batch.advantages.flatten(1, 2)[..., None]
        if rule.mlsr_target == "pg":
            var = torch.exp(2 * params["log_std"].detach())[:, None, :]
            y, weights = mean + rule.mlsr_scale * adv * (actions - mean) / var, mask
        else:
            raw = torch.exp((adv / rule.mlsr_temperature).clamp(max=20.0)) * mask
            weights = raw / (raw.sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp_min(1)).clamp_min(1e-12)
            y = actions
        root = weights.sqrt()
        # λ is relative to the mean over running steps; padded rows are zero and only rescale the 1/n
        count = mask.sum((1, 2))
        lam = rule.lam * bias_free_penalty(start_d) * (count / mask.shape[1])[:, None, None]
        coef = sparse_recovery(
            Phi_d * root, y * root, lam, w0=start_d, steps=rule.mlsr_steps, algorithm=rule.mlsr_algorithm
        ).coef
    head = start + (coef - start_d)  # identity path to the meta-learned head (first order)
    return {**params, **head_layer(head, prefix)}


def inner_update(
    policy: GaussianPolicy,
    params: Mapping[str, torch.Tensor],
    batch: Trajectories,
    rule: InnerRule,
    *,
    lr: float | None = None,
    differentiable: bool = False,
    regularise: bool = True,
) -> Params:
    """One adaptation step of every task by ``rule`` on per-task ``params``; ``lr`` overrides ``rule.lr``.

    ``differentiable``: keep the graph for a second-order meta-gradient (MAML/L1-MAML with
    ``rule.second_order``); ``regularise=False`` drops L1-MAML's penalty (test-time adaptation).
    """
    if rule.method == "mlsr":
        return mlsr_step(policy, params, batch, rule)
    l1 = rule.lam if (rule.method == "l1_maml" and regularise) else 0.0
    return pg_step(
        policy,
        params,
        batch,
        lr=rule.lr if lr is None else lr,
        l1=l1,
        create_graph=differentiable and rule.second_order,
    )


def _outer_task_loss(policy, outer, clip, params, obs, actions, adv, mask, old):
    if outer == "vpg":
        return surrogate_loss(policy, params, obs, actions, adv, mask)
    ratio = torch.exp(log_prob(policy, params, obs, actions) - old)
    clipped = torch.minimum(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv)
    return -masked_mean(clipped, mask)


def rl_meta_gradient(
    model: GaussianPolicy,
    params: Mapping[str, torch.Tensor],
    support: Sequence[Trajectories],
    query: Trajectories,
    *,
    rule: InnerRule,
    outer: str = "vpg",
    clip: float = 0.2,
) -> MetaGradient:
    """The meta-gradient of the post-adaptation surrogate (``query``) w.r.t. the meta-parameters.

    ``support``: the trajectories of each inner step (their advantages are data); the adaptation is
    recomputed from ``params`` here so the gradient can flow through it.  Usable as a
    :class:`metalab.gbml.MetaLearner` method.
    """
    T = query.actions.shape[0]

    def losses(leaves):
        adapted = expand_params(leaves, T)
        for batch in support:
            adapted = inner_update(model, adapted, batch, rule, differentiable=True)
        task_loss = partial(_outer_task_loss, model, outer, clip)
        values = vmap(task_loss)(
            adapted, query.observations[:, :, :-1], query.actions, query.advantages, query.mask, query.old_log_prob
        )
        return values, None

    grads, values, _ = gradient_of_mean(losses, params)
    return make_result(rule.method, grads, values)


class MetaRL:
    """A meta-RL learner: environment, Gaussian MLP policy, inner rule and Adam on the meta-parameters.

    Parameters
    ----------
    env : str or environment
        A name for :func:`metalab.rl.make_env` (``horizon`` and ``env_options`` go to it) or an
        environment object.
    method : str
        One of ``METHODS``.
    meta_batch, trajectories : int
        Tasks per meta-iteration, and trajectories per task and inner step.
    inner_steps, inner_lr
        Inner steps (>= 1) and their size α.
    lam : float, optional
        None for the method's default (``DEFAULT_LAM``); must be 0 for ``"maml"``.
    first_order : bool
        FOMAML-style inner gradients (MAML / L1-MAML).
    outer, meta_lr, ppo_epochs, ppo_clip
        The outer update: one of ``OUTER``, Adam's learning rate, PPO's epochs and clip.
    gamma, baseline, normalize_advantages
        The advantages: discount, one of ``BASELINES``, normalisation per task.
    hidden, init_std
        The policy: hidden sizes of the mean network and the initial action standard deviation.
    mlsr_steps, mlsr_algorithm, mlsr_target, mlsr_scale, mlsr_temperature
        MLSR's head recovery (see the module docstring).
    seed : int
        Every random draw (initial policy, tasks, rollouts) comes from it.
    """

    def __init__(
        self,
        env: Any = "navigation2d",
        *,
        method: str = "maml",
        meta_batch: int = 20,
        trajectories: int = 20,
        horizon: int | None = None,
        inner_steps: int = 1,
        inner_lr: float = 0.1,
        lam: float | None = None,
        first_order: bool = False,
        outer: str = "vpg",
        meta_lr: float = 1e-3,
        ppo_epochs: int = 5,
        ppo_clip: float = 0.2,
        gamma: float = 0.99,
        baseline: str = "linear",
        normalize_advantages: bool = True,
        hidden: Sequence[int] = (100, 100),
        init_std: float = 1.0,
        mlsr_steps: int = 20,
        mlsr_algorithm: str = "ista",
        mlsr_target: str = "pg",
        mlsr_scale: float = 2.0,
        mlsr_temperature: float = 1.0,
        env_options: Mapping[str, Any] | None = None,
        seed: int = 0,
    ):
        check_choice("method", method, METHODS)
        lam = DEFAULT_LAM[method] if lam is None else check_number("lam", lam, strict=False)
        if method == "maml" and lam:
            raise ValueError(
                f"lam={lam!r} is not allowed with method='maml': 0 (use method='l1_maml' for an L1 inner loss)"
            )
        for name, value in (("first_order", first_order), ("normalize_advantages", normalize_advantages)):
            if not isinstance(value, bool):
                raise ValueError(f"{name}={value!r} is not allowed: True or False")
        self.rule = InnerRule(
            method=method,
            lr=check_number("inner_lr", inner_lr),
            lam=lam,
            second_order=not first_order,
            mlsr_steps=check_int("mlsr_steps", mlsr_steps, 1),
            mlsr_algorithm=check_choice("mlsr_algorithm", mlsr_algorithm, ALGORITHMS),
            mlsr_target=check_choice("mlsr_target", mlsr_target, MLSR_TARGETS),
            mlsr_scale=check_number("mlsr_scale", mlsr_scale),
            mlsr_temperature=check_number("mlsr_temperature", mlsr_temperature),
        )
        self.method = method
        self.meta_batch = check_int("meta_batch", meta_batch, 1)
        self.trajectories = check_int("trajectories", trajectories, 1)
        self.inner_steps = check_int("inner_steps", inner_steps, 1)
        self.outer = check_choice("outer", outer, OUTER)
        self.ppo_epochs = check_int("ppo_epochs", ppo_epochs, 1) if outer == "ppo" else 1
        self.ppo_clip = check_number("ppo_clip", ppo_clip)
        self.gamma = check_number("gamma", gamma, strict=False, high=1.0 + 1e-12)
        self.baseline = check_choice("baseline", baseline, BASELINES)
        self.normalize_advantages = normalize_advantages
        self.seed = seed
        if isinstance(env, str):
            options = dict(env_options or {})
            if horizon is not None:
                options["horizon"] = horizon
            env = make_env(env, **options)
        elif horizon is not None or env_options:
            raise ValueError("horizon and env_options are not allowed with an environment object: configure the object")
        self.env = env
        self.policy = make_policy(env.obs_dim, env.act_dim, hidden=hidden, init_std=init_std, seed=seed)
        self.learner = MetaLearner(
            self.policy, rl_meta_gradient, meta_lr=meta_lr, rule=self.rule, outer=self.outer, clip=self.ppo_clip
        )
        self._tasks = generator(seed, "rl-tasks")
        self._rollouts = generator(seed, "rl-rollouts")
        self.iteration = 0

    @property
    def params(self) -> Params:
        """A detached copy of the meta-parameters."""
        return self.learner.current_params()

    def sample(self, params: Mapping[str, torch.Tensor], tasks: torch.Tensor, trajectories: int, gen) -> Trajectories:
        """Roll out ``params`` (shared or per task) on ``tasks`` and compute the advantages."""
        batch = rollout(self.env, self.policy, params, tasks, trajectories, gen)
        return process(batch, gamma=self.gamma, baseline=self.baseline, normalize=self.normalize_advantages)

    def sample_tasks(self) -> torch.Tensor:
        """A fresh meta-batch of tasks (``meta_batch``, task_dim) from the learner's task stream."""
        return self.env.sample_tasks(self.meta_batch, self._tasks)

    def step(self, tasks: torch.Tensor | None = None) -> dict[str, Any]:
        """One meta-iteration on ``tasks`` (None: a fresh meta-batch, :meth:`sample_tasks`); returns its stats."""
        tasks = self.sample_tasks() if tasks is None else tasks
        adapted = expand_params(self.params, tasks.shape[0])
        support = []
        for _ in range(self.inner_steps):
            support.append(self.sample(adapted, tasks, self.trajectories, self._rollouts))
            adapted = {k: v.detach() for k, v in inner_update(self.policy, adapted, support[-1], self.rule).items()}
        query = self.sample(adapted, tasks, self.trajectories, self._rollouts)
        for _ in range(self.ppo_epochs):
            stats = self.learner.step(support, query)
        self.iteration += 1
        return {
            "iteration": self.iteration,
            "method": self.method,
            "return_before": support[0].mean_return,
            "return_after": query.mean_return,
            "surrogate": stats["query_loss"],
            "grad_norm": stats["grad_norm"],
            "status": stats["status"],
        }


def meta_train(learner: MetaRL | None = None, iterations: int = 100, **options: Any) -> Iterator[dict[str, Any]]:
    """Meta-train ``learner`` (or ``MetaRL(**options)``) in the shared loop :func:`metalab.core.loop.meta_training`.

    Parameters
    ----------
    learner : MetaRL, optional
        The learner to train in place; None builds ``MetaRL(**options)``.
    iterations : int
        The number of meta-iterations (>= 1).
    **options
        :class:`MetaRL` arguments, only without a ``learner``.

    Returns
    -------
    Iterator[dict]
        Per meta-iteration: ``iteration``, ``method``, ``return_before`` / ``return_after`` (mean
        undiscounted return of the meta-batch before / after adaptation), ``surrogate`` (the outer
        loss), ``grad_norm``, ``status`` ("ok"; "non_finite" when a meta-gradient was zeroed, or when
        the surrogate itself was not finite, which ends the run), ``seconds`` and ``fraction`` (of the
        run done).
    """
    if learner is None:
        learner = MetaRL(**options)
    elif options:
        raise ValueError(f"options {sorted(options)} are not allowed together with a learner: configure the learner")
    rows = meta_training(learner.step, iterations, sample=lambda _: learner.sample_tasks(), loss="surrogate")
    return (row.as_dict() for row in rows)


@dataclass
class Evaluation:
    """Returns after 0..steps adaptation steps on fixed tasks.

    ``tasks`` (T, task_dim); ``returns`` (steps + 1, T): mean undiscounted return per task;
    ``mean_returns``: its mean over tasks per step; ``observations`` (steps + 1, T, N, H + 1, obs_dim)
    (positions for 2-D navigation, see :attr:`positions`) and ``mask`` (steps + 1, T, N, H).
    """

    tasks: torch.Tensor
    returns: torch.Tensor
    mean_returns: list[float]
    observations: torch.Tensor
    mask: torch.Tensor

    @property
    def positions(self) -> torch.Tensor:
        """The 2-D navigation trajectories, (steps + 1, T, N, H + 1, 2)."""
        return self.observations


def evaluate(
    learner: MetaRL,
    tasks: torch.Tensor | None = None,
    *,
    n_tasks: int = 10,
    steps: int = 3,
    trajectories: int = 40,
    lrs: Sequence[float] | None = None,
    params: Mapping[str, torch.Tensor] | None = None,
    seed: int = 0,
) -> Evaluation:
    """Adapt ``learner``'s meta-policy (or ``params``) to fixed ``tasks`` for ``steps`` steps, sampling after each.

    Parameters
    ----------
    learner : MetaRL
        The learner whose environment, policy and inner rule are used.
    tasks : Tensor, optional
        (T, task_dim); None for ``n_tasks`` tasks drawn from ``seed``.
    steps : int
        Test-time adaptation steps.
    trajectories : int
        Trajectories per task and step (MAML: 40).
    lrs : sequence of float, optional
        The policy-gradient step sizes, default (α, α/2, α/2, ...) with α the learner's ``inner_lr``
        (MAML evaluated with 0.1, then 0.05); not used by MLSR.
    params : dict, optional
        Parameters to adapt instead of the learner's meta-parameters.
    seed : int
        The seed of the tasks (when drawn) and of the rollouts.

    Returns
    -------
    Evaluation
        Returns per step and task, and the trajectories' observations and masks.
    """
    steps = check_int("steps", steps, 0)
    trajectories = check_int("trajectories", trajectories, 1)
    if tasks is None:
        tasks = learner.env.sample_tasks(check_int("n_tasks", n_tasks, 1), generator(seed, "rl-eval-tasks"))
    alpha = learner.rule.lr
    lrs = [alpha] + [alpha / 2] * max(steps - 1, 0) if lrs is None else list(lrs)
    if len(lrs) < steps:
        raise ValueError(f"lrs={lrs!r} is not allowed: at least steps={steps} step sizes")
    for i, lr in enumerate(lrs):
        check_number(f"lrs[{i}]", lr)
    base = learner.params if params is None else {k: v.detach() for k, v in params.items()}
    gen = generator(seed, "rl-eval-rollouts")
    adapted = expand_params(base, tasks.shape[0])
    batches = []
    for s in range(steps + 1):
        batch = learner.sample(adapted, tasks, trajectories, gen)
        batches.append(batch)
        if s < steps:
            adapted = inner_update(learner.policy, adapted, batch, learner.rule, lr=lrs[s], regularise=False)
            adapted = {k: v.detach() for k, v in adapted.items()}
    returns = torch.stack([b.episode_returns.mean(1) for b in batches])
    return Evaluation(
        tasks=tasks,
        returns=returns,
        mean_returns=[float(r) for r in returns.mean(1)],
        observations=torch.stack([b.observations for b in batches]),
        mask=torch.stack([b.mask for b in batches]),
    )
