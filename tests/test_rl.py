"""Meta-RL: 2-D navigation dynamics, rollouts, returns and baselines, MAML / L1-MAML / MLSR adaptation."""

from __future__ import annotations

import math
import sys

import pytest
import torch

from metalab.core import generator
from metalab.rl import (
    MetaRL,
    Navigation2D,
    Trajectories,
    action_mean,
    discounted_returns,
    evaluate,
    expand_params,
    inner_update,
    linear_baseline,
    log_prob,
    make_env,
    make_policy,
    meta_train,
    process,
    rl_meta_gradient,
    rollout,
    time_baseline,
)

torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------------
# Environment


def test_navigation_clips_the_velocity_and_rewards_minus_the_distance():
    env = Navigation2D()
    goals = torch.tensor([[0.3, 0.4]])
    env.reset(goals, 1)
    pos, reward, done = env.step(torch.tensor([[[1.0, -0.05]]]))
    assert torch.allclose(pos, torch.tensor([[[0.1, -0.05]]]))
    assert reward.item() == pytest.approx(-math.hypot(0.2, 0.45), abs=1e-6)
    assert not done.item()
    pos, reward, _ = env.step(torch.tensor([[[-3.0, 0.3]]]))
    assert torch.allclose(pos, torch.tensor([[[0.0, 0.05]]]))
    assert reward.item() == pytest.approx(-math.hypot(0.3, 0.35), abs=1e-6)

    squared = Navigation2D(reward="squared")
    squared.reset(goals, 1)
    assert squared.step(torch.tensor([[[0.1, 0.1]]]))[1].item() == pytest.approx(-(0.2**2 + 0.3**2), abs=1e-6)
    scaled = Navigation2D(action_scale=0.1)  # rllab's normalize wrapper: velocity = 0.1 * clip(a, -1, 1)
    scaled.reset(goals, 1)
    assert torch.allclose(scaled.step(torch.tensor([[[0.5, -2.0]]]))[0], torch.tensor([[[0.05, -0.1]]]))


def test_navigation_done_within_tolerance_on_both_axes():
    env = Navigation2D()
    pos = torch.zeros(3, 2)
    goals = torch.tensor([[0.105, 0.0], [0.1, 0.02], [0.095, 0.009]])
    _, _, done = env.transition(pos, torch.tensor([[0.1, 0.0]] * 3), goals)
    assert done.tolist() == [True, False, True]


def test_navigation_vectorised_equals_one_task_at_a_time():
    env = Navigation2D(horizon=5)
    g = generator(0, "test")
    goals = env.sample_tasks(3, g)
    actions = 0.2 * torch.randn(5, 3, 4, 2, generator=g)
    env.reset(goals, 4)
    batched = [env.step(a) for a in actions]
    for t in range(3):
        single = Navigation2D(horizon=5)
        single.reset(goals[t : t + 1], 4)
        for k in range(5):
            pos, reward, done = single.step(actions[k, t : t + 1])
            assert torch.allclose(pos, batched[k][0][t : t + 1])
            assert torch.allclose(reward, batched[k][1][t : t + 1])
            assert torch.equal(done, batched[k][2][t : t + 1])


def test_tasks_are_deterministic_from_the_seed_and_in_the_unit_square():
    env = Navigation2D()
    a, b = env.sample_tasks(50, generator(3, "x")), env.sample_tasks(50, generator(3, "x"))
    assert torch.equal(a, b)
    assert float(a.abs().max()) <= 0.5 and float(a.abs().max()) > 0.4
    assert not torch.equal(a, env.sample_tasks(50, generator(4, "x")))


# ---------------------------------------------------------------------------------------------
# Policy, rollouts, returns, baselines


def test_log_prob_is_the_diagonal_gaussian_density():
    policy = make_policy(2, 2, hidden=(8,), init_std=0.7, seed=1)
    params = dict(policy.named_parameters())
    obs, actions = torch.randn(5, 2), torch.randn(5, 2)
    expected = torch.distributions.Normal(policy(obs), 0.7).log_prob(actions).sum(-1)
    assert torch.allclose(log_prob(policy, params, obs, actions), expected, atol=1e-5)


def test_rollout_stops_counting_after_done_and_freezes_the_position():
    env = Navigation2D(horizon=6)
    policy = make_policy(2, 2, hidden=(4,))
    params = {k: v.detach().clone() for k, v in policy.named_parameters()}
    params["mean.2.weight"].zero_()
    params["mean.2.bias"].fill_(1.0)  # mean action (1, 1) -> velocity (0.1, 0.1)
    params["log_std"].fill_(math.log(1e-6))
    batch = rollout(env, policy, params, torch.tensor([[0.2, 0.2], [0.45, -0.45]]), 2, generator(0, "r"))
    assert batch.mask[0, 0].tolist() == [1, 1, 0, 0, 0, 0]
    assert torch.allclose(batch.observations[0, 0, -1], torch.tensor([0.2, 0.2]), atol=1e-5)
    assert batch.episode_returns[0, 0].item() == pytest.approx(-math.hypot(0.1, 0.1), abs=1e-4)
    assert batch.mask[1].sum().item() == 12  # never reaches (0.45, -0.45) when moving up-right
    assert batch.observations.shape == (2, 2, 7, 2) and batch.actions.shape == (2, 2, 6, 2)


def test_discounted_returns_on_a_hand_made_trajectory():
    rewards = torch.tensor([[1.0, 2.0, 3.0, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    returns = discounted_returns(rewards, mask, 0.5)
    assert returns.tolist() == [[1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3.0, 0.0]]
    assert discounted_returns(rewards, torch.ones_like(rewards), 1.0)[0, 0].item() == 11.0


def test_linear_baseline_reproduces_returns_in_its_feature_span_and_mean_baseline():
    g = generator(0, "b")
    obs = torch.rand(2, 3, 5, 2, generator=g)
    t = torch.arange(5.0) / 100
    returns = 2 * obs[..., 0] - obs[..., 1].square() + 7 * t + 1.5
    mask = torch.ones(2, 3, 5)
    mask[1, 2, 3:] = 0
    fitted = linear_baseline(obs, returns * mask, mask, reg=1e-10)
    assert torch.allclose(fitted, returns * mask, atol=1e-3)
    assert time_baseline(
        torch.tensor([[[1.0, 2.0], [3.0, 0.0]]]), torch.tensor([[[1.0, 1.0], [1.0, 0.0]]])
    ).tolist() == [[[2.0, 2.0], [2.0, 0.0]]]


def test_process_normalises_the_advantages_per_task_over_running_steps():
    g = generator(1, "p")
    rewards, mask = torch.randn(2, 4, 6, generator=g), torch.ones(2, 4, 6)
    mask[0, 0, 2:] = 0
    batch = Trajectories(
        observations=torch.randn(2, 4, 7, 2, generator=g),
        actions=torch.zeros(2, 4, 6, 2),
        rewards=rewards,
        mask=mask,
        old_log_prob=torch.zeros(2, 4, 6),
    )
    out = process(batch, gamma=0.9, baseline="none", normalize=False)
    assert torch.allclose(out.advantages, discounted_returns(rewards, mask, 0.9))
    adv = process(batch, gamma=0.9).advantages
    for t in range(2):
        values = adv[t][mask[t] > 0]
        assert values.mean().abs().item() < 1e-5 and values.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)
    assert adv[0, 0, 2:].abs().max().item() == 0.0


# ---------------------------------------------------------------------------------------------
# Adaptation


@pytest.mark.parametrize("method", ["maml", "mlsr"])
def test_one_inner_step_moves_the_mean_action_towards_the_goal(method):
    learner = MetaRL(method=method, meta_batch=1, trajectories=100, horizon=10, seed=2)
    goal = torch.tensor([[0.4, -0.3]])
    batch = learner.sample(expand_params(learner.params, 1), goal, 100, generator(0, "step"))
    before = expand_params(learner.params, 1)
    after = inner_update(learner.policy, before, batch, learner.rule)
    origin = torch.zeros(1, 1, 2)
    moved = (action_mean(learner.policy, after, origin) - action_mean(learner.policy, before, origin)).flatten()
    cosine = torch.nn.functional.cosine_similarity(moved, goal.flatten(), dim=0).item()
    assert cosine > 0.8, (method, moved, cosine)


def test_second_order_l1_and_first_order_meta_gradients_differ():
    grads = {}
    for name, options in {
        "maml": {},
        "fomaml": {"first_order": True},
        "l1_maml": {"method": "l1_maml", "lam": 0.5},
    }.items():
        learner = MetaRL(meta_batch=2, trajectories=5, horizon=5, hidden=(16, 16), seed=0, **options)
        tasks = learner.env.sample_tasks(2, generator(0, "g"))
        support = learner.sample(expand_params(learner.params, 2), tasks, 5, generator(0, "s"))
        adapted = inner_update(learner.policy, expand_params(learner.params, 2), support, learner.rule)
        query = learner.sample({k: v.detach() for k, v in adapted.items()}, tasks, 5, generator(0, "q"))
        result = rl_meta_gradient(learner.policy, learner.params, [support], query, rule=learner.rule)
        assert result.status == "ok"
        grads[name] = torch.cat([g.flatten() for g in result.grads.values()])
    assert not torch.allclose(grads["maml"], grads["fomaml"])
    assert not torch.allclose(grads["maml"], grads["l1_maml"])


def test_meta_training_is_deterministic_by_seed_and_ppo_and_two_steps_run():
    options = dict(meta_batch=3, trajectories=4, horizon=6, hidden=(16, 16))
    a = [s["return_after"] for s in meta_train(iterations=2, seed=5, **options)]
    b = [s["return_after"] for s in meta_train(iterations=2, seed=5, **options)]
    c = [s["return_after"] for s in meta_train(iterations=2, seed=6, **options)]
    assert a == b and a != c
    for extra in ({"outer": "ppo", "ppo_epochs": 2}, {"inner_steps": 2, "method": "l1_maml"}, {"method": "mlsr"}):
        stats = list(meta_train(iterations=1, seed=0, **options, **extra))
        assert stats[0]["status"] == "ok" and math.isfinite(stats[0]["return_after"])


def test_meta_train_runs_in_the_shared_loop_and_a_step_takes_the_tasks_it_is_given():
    options = dict(meta_batch=2, trajectories=3, horizon=4, hidden=(8, 8), seed=4)
    stats = list(meta_train(MetaRL(**options), iterations=3))
    assert [s["iteration"] for s in stats] == [1, 2, 3]
    assert [s["fraction"] for s in stats] == pytest.approx([1 / 3, 2 / 3, 1.0]) and all(s["seconds"] > 0 for s in stats)
    drawn, given = MetaRL(**options), MetaRL(**options)
    assert drawn.step()["return_after"] == given.step(given.sample_tasks())["return_after"]  # the same task stream
    one_goal = MetaRL(**options).step(torch.tensor([[0.3, -0.2]]))  # a meta-batch of one given task
    assert one_goal["status"] == "ok" and math.isfinite(one_goal["return_after"])


@pytest.mark.parametrize("method", ["maml", "mlsr"])
def test_short_meta_training_run_improves_the_post_adaptation_return(method):
    # measured (seeds 0-3): the random policy returns -9.1 to -9.8 before adaptation; after 25
    # meta-iterations MAML returns -6.9 to -7.5 before and -4.3 to -5.2 after one step, MLSR -7.1 to
    # -7.8 before and -4.8 to -5.2 after one recovery
    options = dict(method=method, meta_batch=8, trajectories=20, horizon=20, meta_lr=3e-3, seed=0)
    untrained = evaluate(MetaRL(**options), steps=1, n_tasks=10, trajectories=20)
    learner = MetaRL(**options)
    stats = list(meta_train(learner, iterations=25))
    trained = evaluate(learner, steps=1, n_tasks=10, trajectories=20)
    assert [s["iteration"] for s in stats] == list(range(1, 26))
    assert trained.mean_returns[1] > untrained.mean_returns[0] + 3.0
    assert trained.mean_returns[1] > trained.mean_returns[0] + 1.0
    assert trained.positions.shape == (2, 10, 20, 21, 2) and trained.returns.shape == (2, 10)


# ---------------------------------------------------------------------------------------------
# Errors


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="name='cartpole' is not allowed.*'navigation2d'.*'halfcheetah_dir'"):
        make_env("cartpole")
    with pytest.raises(ValueError, match="lam=-0.1 is not allowed"):
        MetaRL(method="l1_maml", lam=-0.1)
    with pytest.raises(ValueError, match="lam=0.1 is not allowed with method='maml'"):
        MetaRL(method="maml", lam=0.1)
    with pytest.raises(ValueError, match="inner_steps=0 is not allowed"):
        MetaRL(inner_steps=0)
    with pytest.raises(ValueError, match="iterations=0 is not allowed"):
        next(meta_train(iterations=0))
    with pytest.raises(ValueError, match="method='reptile' is not allowed"):
        MetaRL(method="reptile")
    with pytest.raises(ValueError, match="reward='manhattan' is not allowed"):
        Navigation2D(reward="manhattan")


def test_half_cheetah_without_mujoco_names_the_rl_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mujoco", None)
    with pytest.raises(ImportError, match=r'pip install "metalab\[rl\]"'):
        make_env("halfcheetah_dir")
