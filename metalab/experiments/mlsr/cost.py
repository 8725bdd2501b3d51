"""What an MLSR run will cost before it runs, from the sizes in its config.

**Time** (seconds on the 2-core CPU with the run's one torch thread).  Meta-training dominates: each
model the run trains (every ModelSpec of the selected parts, once, as :class:`MLSRContext` shares
them) costs ``iterations x (fixed + slope x B n P)`` seconds, where B is the meta-batch, n the samples
of a task (support and query), P the network's parameters (B n P multiply-adds per forward pass of a
meta-batch), and ``fixed`` and ``slope`` grow with the inner steps K: ``fixed = f1 + fK (K - 1)``,
``slope = s1 + sK (K - 1)`` per task family and method (:data:`ITERATION`).  The constants are the CPU
time per meta-update of :meth:`MetaLearner.step` measured with one thread over 10 updates, at hidden
widths 40 and 160 (sinusoid; also meta-batch 50 and 40 shots) and 20 and 100 (digits), K = 1 and 5,
on the shared 2-core machine (so they include its contention and err on the slow side).  Test-time
adaptation costs ``tasks x steps x samples x P`` times :data:`SECONDS_PER_MAC` plus
:data:`SECONDS_PER_STEP` per step (measured: 100 sinusoids x 10 steps at widths 40 and 160, 400 at
160; 100 digit pairs x 100 steps at widths 20 and 100).  Meta-RL: an iteration rolls out
S = (K + 1) x tasks x trajectories x horizon steps and costs ``4 ms + S (2.2e-6 + 2.9e-10 P)`` s
times :data:`RL_METHOD_TIME` (measured: 10 iterations of each method at widths 100 and 200 and
with 60 trajectories); its evaluation the same per rollout step.

**Memory** (peak bytes above the imported process, measured with ``tests/test_cost.py``'s
``measured_extra_bytes`` in a fresh process): :data:`FIRST_RUN_BYTES` (90 MB: torch's optimiser and
functorch machinery load on the first meta-update; paid once per process) plus the largest phase:
MAML and MAML + L1 hold ``2.3 + K`` copies of the parameters per task of the meta-batch when their
inner steps form per-task weights (349 MB measured at width 1024, K = 1, before the batched MLP path
kept such a weight's change factored: :func:`_per_task_weights`); a test-time adaptation of every parameter holds 4
copies per test task (322 MB for 20 sinusoids at width 1024, 440 MB for 100 at 512, 190 MB for 50
digit pairs at width 2048); meta-RL ``a x P x 4 x tasks + 3.5 x S x width x 4`` (a = 10 for the
MAML rules, 5 for MLSR; 177 MB at width 512, 449 MB at 1024, 230 MB at 256 with 40 tasks) and its
evaluation 6 copies per evaluation task (262 MB at width 1024).  Each learner holds about 12
copies of its parameters (weights, gradients, Adam's moments, workspace: 54 MB at width 1024).
"""

from __future__ import annotations

from metalab.core.cost import MB, Cost, sequence
from metalab.experiments.mlsr.config import MLSRConfig
from metalab.experiments.mlsr.models import ModelSpec, adapt_rule, model_spec, network_sizes, training_specs
from metalab.gbml.batched import factors_cheaper

FLOAT = 4  # bytes of a float32 parameter
FIRST_RUN_BYTES = 90 * MB
#: (task, method) -> per meta-update (f1, fK) seconds and (s1, sK) seconds per multiply-add of B n P
ITERATION = {
    ("sinusoid", "mlsr"): (2.4e-3, 0.1e-3, 0.15e-9, 0.0),
    ("sinusoid", "maml"): (2.8e-3, 1.2e-3, 0.66e-9, 0.71e-9),
    ("sinusoid", "maml_fz"): (2.6e-3, 0.8e-3, 0.08e-9, 0.055e-9),
    ("sinusoid", "maml_l1"): (3.6e-3, 1.6e-3, 0.9e-9, 0.52e-9),
    ("digits", "mlsr"): (4.4e-3, 0.0, 0.18e-9, 0.0),
    ("digits", "maml"): (5.3e-3, 1.2e-3, 0.29e-9, 0.23e-9),
    ("digits", "maml_fz"): (5.3e-3, 0.3e-3, 0.07e-9, 0.07e-9),
    ("digits", "maml_l1"): (5.1e-3, 0.6e-3, 0.33e-9, 0.37e-9),
}
#: seconds per multiply-add of test-time adaptation (tasks x samples x P per step), and per step
SECONDS_PER_MAC = {"sinusoid": 9e-11, "digits": 1.2e-11}
SECONDS_PER_STEP = 4e-3
#: parameter copies held per task while training (MAML rules, 2.3 + K) or adapting every parameter
MAML_COPIES, ADAPT_COPIES, LEARNER_COPIES = 2.3, 4.0, 12.0
#: meta-RL: time factor and parameter copies per task of each method's inner rule
RL_METHOD_TIME = {"maml": 1.0, "maml_l1": 1.13, "mlsr": 1.6, "random": 0.0}
RL_METHOD_COPIES = {"maml": 10.0, "maml_l1": 10.0, "mlsr": 5.0, "random": 0.0}
RL_ACTIVATION_COPIES, RL_EVALUATION_COPIES = 3.5, 6.0
NAVIGATION_DIMS = (2, 2)  # observation and action sizes of the 2-D navigation policy


def parameters(sizes: list[int]) -> int:
    """Weights and biases of an MLP with these layer sizes."""
    return sum(i * o + o for i, o in zip(sizes[:-1], sizes[1:], strict=True))


def _labels(config: type[MLSRConfig], *names: str) -> str:
    return ", ".join(dict.fromkeys(config.label(name) for name in names))


def _samples(config: MLSRConfig, task: str) -> int:
    """Support and query samples of one meta-training task."""
    if task == "sinusoid":
        return config.shots + config.query_shots
    return 2 * (config.digit_shots + config.digit_query)


def _per_task_weights(config: MLSRConfig, spec: ModelSpec, sizes: list[int]) -> bool:
    """Whether a MAML rule's meta-training forms per-task copies of the weights: the batched MLP path
    keeps the widest weight's change factored while its rank, K x support size, is cheap enough
    (:func:`metalab.gbml.batched.factors_cheaper`; 150 MB measured at width 1024, K = 1: the learner)."""
    if spec.method not in ("maml", "maml_l1"):
        return False
    support = config.shots if spec.task == "sinusoid" else 2 * config.digit_shots
    fan_in, fan_out = max(zip(sizes[:-1], sizes[1:], strict=True), key=lambda pair: pair[0] * pair[1])
    return not factors_cheaper(spec.inner_steps * support, fan_out, fan_in)


def training_cost(config: MLSRConfig, spec: ModelSpec) -> Cost:
    """Meta-training one model: its iterations, its learner and (MAML rules) the per-task parameters."""
    sizes, _ = network_sizes(config, spec.task, spec.width)
    P, K, B = parameters(sizes), spec.inner_steps, config.meta_batch
    f1, fK, s1, sK = ITERATION[(spec.task, spec.method)]
    per_iteration = f1 + fK * (K - 1) + (s1 + sK * (K - 1)) * B * _samples(config, spec.task) * P
    copies = LEARNER_COPIES + (B * (MAML_COPIES + K) if _per_task_weights(config, spec, sizes) else 0.0)
    iterations = "meta_iterations" if spec.task == "sinusoid" else "digit_iterations"
    width = "hidden" if spec.task == "sinusoid" else "digit_hidden"
    driver = _labels(type(config), iterations, width, "inner_steps", "methods")
    return Cost(copies * P * FLOAT, spec.iterations * per_iteration, driver)


def adaptation_cost(config: MLSRConfig, spec: ModelSpec, tasks: int, steps: int, samples: int) -> Cost:
    """Test-time adaptation of ``tasks`` tasks for ``steps`` steps on ``samples`` points each."""
    sizes, _ = network_sizes(config, spec.task, spec.width)
    P = parameters(sizes)
    everything = adapt_rule(config, spec.method, spec.task) == "all_params_gd"
    held = ADAPT_COPIES * tasks * (P if everything else sizes[-2] + 1) * FLOAT
    seconds = steps * (SECONDS_PER_STEP + SECONDS_PER_MAC[spec.task] * tasks * samples * P)
    return Cost(held, seconds, _labels(type(config), "hidden" if spec.task == "sinusoid" else "digit_hidden"))


def _sinusoid_models(config: MLSRConfig) -> tuple[list[ModelSpec], list[Cost]]:
    """The models and test-time evaluations of the 'sinusoid', 'published' and 'fits' parts."""
    c, parts = config, set(config.parts)
    specs: list[ModelSpec] = []
    evaluations: list[Cost] = []
    samples = c.eval_shots + c.eval_query
    if "sinusoid" in parts:
        for k in c.inner_steps:
            for method in c.methods:
                specs.append(spec := model_spec(c, "sinusoid", method, k))
                evaluations.append(adaptation_cost(c, spec, c.eval_tasks, c.adapt_steps, samples))
    if "published" in parts and "maml" in c.methods:
        specs.append(spec := model_spec(c, "sinusoid", "maml", 1 if 1 in c.inner_steps else c.inner_steps[0]))
        evaluations.append(adaptation_cost(c, spec, c.eval_tasks, max(10, c.adapt_steps), samples))
    if "fits" in parts:
        for method in c.methods:
            specs.append(spec := model_spec(c, "sinusoid", method, c.inner_steps[0]))
            evaluations.append(adaptation_cost(c, spec, c.n_fits, c.adapt_steps, c.eval_shots + c.fit_points))
    return specs, evaluations


def supervised_costs(config: MLSRConfig) -> list[Cost]:
    """Every model the selected supervised parts train (each once) and every evaluation they run."""
    c, inner, parts = config, config.inner_steps[0], set(config.parts)
    specs, evaluations = _sinusoid_models(c)
    if "training" in parts:
        specs += training_specs(c)
    if "digits" in parts:
        for method in c.methods:
            specs.append(spec := model_spec(c, "digits", method, inner))
            samples = 2 * (c.digit_shots + c.digit_query)
            evaluations.append(adaptation_cost(c, spec, c.eval_tasks, c.long_steps, samples))
    if "diagnostics" in parts:
        diagnosed = [m for m in ("mlsr", "maml_fz", "random") if m in c.methods]
        specs += [model_spec(c, c.task, m, inner, width, c.diag_iterations) for width in c.widths for m in diagnosed]
    trained = [training_cost(c, spec) for spec in dict.fromkeys(specs) if spec.trains]
    return trained + evaluations


def rl_costs(config: MLSRConfig) -> list[Cost]:
    """Meta-training and evaluating each method of ``rl_methods`` on 2-D navigation."""
    c = config
    obs, act = NAVIGATION_DIMS
    P, width = parameters([obs, *c.rl_hidden, act]) + act, max(c.rl_hidden)
    per_step = 2.2e-6 + 2.9e-10 * P
    rollout = (c.rl_inner_steps + 1) * c.rl_meta_batch * c.rl_trajectories * c.rl_horizon
    evaluation = (c.rl_adapt_steps + 1) * c.rl_eval_tasks * c.rl_eval_trajectories * c.rl_horizon
    driver = _labels(type(c), "rl_iterations", "rl_trajectories", "rl_hidden", "rl_methods")
    costs = []
    for method in c.rl_methods:
        held = RL_METHOD_COPIES[method] * P * FLOAT * c.rl_meta_batch + RL_ACTIVATION_COPIES * rollout * width * FLOAT
        iterations = c.rl_iterations if method != "random" else 0
        seconds = iterations * RL_METHOD_TIME[method] * (4e-3 + rollout * per_step)
        costs.append(Cost(held if iterations else 0.0, seconds, driver))
        costs.append(Cost(RL_EVALUATION_COPIES * P * FLOAT * c.rl_eval_tasks, evaluation * per_step, driver))
    return costs


def estimate(config: MLSRConfig) -> Cost:
    """The peak memory and time of ``run(config)``: its models and evaluations run one after another.

    ``driver`` names the settings to lower first: those of the step that takes the longest.
    """
    costs = supervised_costs(config) + (rl_costs(config) if "rl" in config.parts else [])
    total = sequence(costs)
    slowest = max(costs, key=lambda cost: cost.seconds, default=Cost(0.0, 0.0))
    return Cost(FIRST_RUN_BYTES + total.bytes, total.seconds, slowest.driver or total.driver)
