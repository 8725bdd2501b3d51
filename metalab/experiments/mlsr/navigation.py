"""The 'rl' part of the MLSR experiment (Figure 6): meta-reinforcement learning with :mod:`metalab.rl`,
one weighted unit per method.

Every record carries ``iteration``, the meta-iteration of the policy it describes, which is its ``step``:
1..``rl_iterations`` for the meta-training rows, and the last one (0 for the untrained ``random``
policy) for the evaluation rows (``adaptation``, ``trajectory``) of the final policy; and
``train_seconds``, the meta-training time up to that policy.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from metalab.core import Record, Unit
from metalab.core.seeding import generator
from metalab.experiments.mlsr.config import RL_RULES, MLSRConfig
from metalab.experiments.mlsr.models import ci95
from metalab.rl import DEFAULT_LAM, Evaluation, MetaRL, evaluate, meta_train


def make_rl_learner(config: MLSRConfig, method: str) -> MetaRL:
    """The meta-RL learner of ``method`` (in ``RL_METHODS``) with the config's 'rl' settings."""
    rule = RL_RULES[method]
    lam = 0.0 if rule == "maml" else (DEFAULT_LAM[rule] if config.rl_lam is None else config.rl_lam)
    return MetaRL(
        config.rl_env,
        method=rule,
        lam=lam,
        meta_batch=config.rl_meta_batch,
        trajectories=config.rl_trajectories,
        horizon=config.rl_horizon,
        inner_steps=config.rl_inner_steps,
        inner_lr=config.rl_inner_lr,
        meta_lr=config.rl_meta_lr,
        hidden=config.rl_hidden,
        seed=config.seed,
    )


def _trajectory_rows(config: MLSRConfig, evaluation: Evaluation, steps_shown: list[int]) -> Iterator[dict[str, Any]]:
    """Positions of the recorded trajectories; the frozen positions after an episode ends are left out."""
    for s in steps_shown:
        for g in range(config.rl_goals_shown):
            goal = evaluation.tasks[g]
            for path in range(config.rl_paths_shown):
                points = evaluation.positions[s, g, path]  # (H + 1, 2)
                last = int(evaluation.mask[s, g, path].sum())  # the position after the last running step
                for t in range(last + 1):
                    yield {
                        "adapt_steps": s,
                        "goal_index": g,
                        "goal_x": float(goal[0]),
                        "goal_y": float(goal[1]),
                        "path": path,
                        "t": t,
                        "x": float(points[t, 0]),
                        "y": float(points[t, 1]),
                    }


def _evaluation_cost(config: MLSRConfig) -> float:
    """The evaluation's rollouts in meta-iterations: (steps + 1) · tasks · trajectories against a
    meta-iteration's (inner steps + 1) · meta-batch · trajectories."""
    evaluation = (config.rl_adapt_steps + 1) * config.rl_eval_tasks * config.rl_eval_trajectories
    iteration = (config.rl_inner_steps + 1) * config.rl_meta_batch * config.rl_trajectories
    return max(evaluation / iteration, 1.0)


def rl_units(config: MLSRConfig, context: Any) -> list[Unit]:
    """Meta-train each method of ``rl_methods`` (records per meta-iteration), then evaluate it on fixed tasks."""
    steps_shown = sorted({0, 1, config.rl_adapt_steps})
    evaluation_cost = _evaluation_cost(config)

    def unit(method: str) -> Unit:
        iterations = config.rl_iterations if method != "random" else 0
        share = iterations / (iterations + evaluation_cost)

        def work() -> Iterator[Record]:
            learner = make_rl_learner(config, method)
            common = {"env": config.rl_env, "lam": learner.rule.lam}
            seconds, trained = 0.0, 0
            for stats in meta_train(learner, iterations) if iterations else ():
                seconds, trained = seconds + stats["seconds"], stats["iteration"]
                values = {
                    "kind": "meta_iteration",
                    **common,
                    "iteration": trained,
                    "return_before": stats["return_before"],
                    "return_after": stats["return_after"],
                    "surrogate": stats["surrogate"],
                    "grad_norm": stats["grad_norm"],
                    "status": stats["status"],
                    "train_seconds": seconds,
                }
                yield Record("rl", method, trained, values, progress=share * stats["fraction"])
            tasks = learner.env.sample_tasks(config.rl_eval_tasks, generator(config.seed, "mlsr-rl-eval-tasks"))
            result = evaluate(
                learner, tasks, steps=config.rl_adapt_steps, trajectories=config.rl_eval_trajectories, seed=config.seed
            )
            final = {**common, "iteration": trained, "train_seconds": seconds}
            for s in range(config.rl_adapt_steps + 1):
                values = {
                    "kind": "adaptation",
                    **final,
                    "adapt_steps": s,
                    "mean_return": float(result.returns[s].mean()),
                    "ci95": ci95(result.returns[s]),
                    "eval_tasks": config.rl_eval_tasks,
                }
                yield Record("rl", method, trained, values)
            if config.rl_env == "navigation2d":
                for row in _trajectory_rows(config, result, steps_shown):
                    yield Record("rl", method, trained, {"kind": "trajectory", **final, **row})

        return Unit(work, iterations + evaluation_cost)

    return [unit(m) for m in config.rl_methods]
