"""What a memory-reduced experiment will cost before it runs, from the sizes in its config.

Everything the network does scales with the **first layer's maps**: ``n · hidden · side² · 4`` bytes
for ``n`` images (the Conv-4's widest activations, float32), written ``S`` for a task's support set
(ways · shots images) and ``Q`` for its query set (ways · queries); and with the **multiply-adds of
one image's forward pass**, ``F = 9 · hidden · side² · (1 + 0.33 · hidden)`` (four 3x3 convolutions,
each block halving the side).  The constants below are those models fitted to runs measured on this
2-core CPU (one torch thread, the config's default), glyphs episodes, hidden 4 to 64, shots 1 and 5,
K from 1 to 30, meta-batches of 1 to 4:

* **Memory of one task** is ``support · S + query · Q + per_step · K · S`` bytes (:class:`Profile`).
  The ``sequential`` profiles (the memory part: one task at a time) were fitted to the peak resident
  memory one call adds (malloc_trim, then VmHWM reset by ``/proc/self/clear_refs``), within 0.75-1.45
  of every measurement; they agree with the graph memory the memory part records (``graph_bytes``:
  MAML saves 6.4 S per inner step, ANIL as the authors wrote it 3.6 S, Algorithm 1 nothing), which
  is what grows with K.  The ``vmap`` profiles (meta-training, every task of a meta-batch at once) are
  per task of the batch (0.85-1.3): torch.func keeps about 35 S per MAML inner step there.  The
  ``evaluation`` profiles are per test episode of a vmapped chunk of ``EVAL_BUDGET // hidden``
  episodes, plus ``EVALUATION_BYTES`` (0.7-2 of 158 measured chunks of 6 to 50 episodes).  A
  meta-training's peak is its meta-steps' plus its evaluations': the allocator keeps what the steps
  freed (a MAML training of one task at K = 10 then 25-episode chunks: 1044 MB, estimated 1122).
* **The cg part** builds the dense implicit-function-theorem reference in float64, a Jacobian of the
  head gradient over every support image: ``CG_JACOBIAN`` (6.6) bytes per byte of ``head parameters x
  support maps`` in float64, on top of ``CG_BASE`` (measured 125, 181 and 397 MB above the process at
  cg_hidden 4, 8 and 16).
* ``RUN_BASE`` (40 MB, a one-method memory run at hidden 4 adds 34 MB) covers what any run loads on
  first use; the data set adds its decoded images, up to every class it may touch (Omniglot's
  105 x 105 drawings plus their resized copies when ``dataset`` is auto or omniglot).
* **Time** of one task is ``overhead + forward · (n_s + n_q) F + K · (step + per_step_mac · n_s F)``
  seconds (:class:`Timing`); the timings of this shared machine scatter by a factor of 2-3 around it.
  Meta-training runs ``VMAP_SLOWDOWN`` (1.5) times slower per task than one task alone.

Measured against whole runs in a fresh process (``measured_extra_bytes`` of tests/test_cost.py; the
first two are the tests in tests/test_memory_reduced_experiment.py), estimate / measured: the memory
part's MAML at K = 20 (hidden 32, 5 shots) 412 / 428-446 MB; a vmapped meta-training of 8 tasks
(Algorithm 1, hidden 32, 5 shots) 602 / 517-578 MB; of 4 MAML tasks at K = 10 (hidden 16) 1852 / 1881
MB; the cg part at cg_hidden 8 and 16 231 / 186 and 428 / 396 MB; the quick preset's final part 873 /
875 MB.  The issue's link (K = 300, hidden 64, MAML, 5 shots), which drove a server to 10.4 GB, is
estimated at 9.3 GB.  Seconds, estimate / measured, for the page's four views: 1.7 / 1.2, 2.5 / 2.9,
1.1 / 1.2 and 3.7 / 2.6; the whole quick preset 24 / 15.
"""

from __future__ import annotations

import dataclasses

from metalab.core.cost import MB, Cost, sequence
from metalab.experiments.memory_reduced.config import GLYPH_CLASSES, INSTANCES, MemoryReducedConfig
from metalab.experiments.memory_reduced.training import EVAL_BUDGET

OMNIGLOT_CLASSES = 1623
OMNIGLOT_SIDE = 105
RUN_BASE = 40 * MB
EVALUATION_BYTES = 30 * MB
CG_BASE = 110 * MB
CG_JACOBIAN = 6.6
CHILD_PROCESS = 400 * MB  # an interpreter with torch, for measure_rss
CHILD_SECONDS = 4.0
VMAP_SLOWDOWN = 1.5


@dataclasses.dataclass(frozen=True)
class Profile:
    """Bytes one task holds at its peak, per byte of first-layer maps: of the support set, of the query
    set, and of the support set per inner step."""

    support: float
    query: float
    per_step: float = 0.0

    def bytes(self, S: float, Q: float, K: int) -> float:
        return self.support * S + self.query * Q + self.per_step * K * S


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds of one task: a fixed overhead, per multiply-add of a forward pass over its support and query
    images, per inner step, and per multiply-add of an inner step's pass over the support images."""

    overhead: float
    forward: float
    step: float = 0.0
    per_step_mac: float = 0.0

    def seconds(self, support_macs: float, query_macs: float, K: int) -> float:
        return (
            self.overhead
            + self.forward * (support_macs + query_macs)
            + K * (self.step + self.per_step_mac * support_macs)
        )


_HEAD_ONLY_EVAL = Profile(0.5, 7.0)
_NETWORK_EVAL = Profile(9.0, 6.0, 0.5)
#: method -> (sequential, vmap, evaluation) memory profiles
MEMORY = {
    "implicit": (Profile(4.8, 8.5), Profile(10.4, 16.2), _HEAD_ONLY_EVAL),
    "implicit_unfused": (Profile(4.8, 8.5), Profile(10.4, 16.2), _HEAD_ONLY_EVAL),
    "anil": (Profile(3.1, 9.5), Profile(11.5, 18.8, 0.4), _HEAD_ONLY_EVAL),
    "itd_bio": (Profile(4.1, 8.4), Profile(10.3, 19.4, 0.2), _HEAD_ONLY_EVAL),
    "anil_recompute": (Profile(0.2, 8.4, 4.0), Profile(6.4, 17.1, 8.1), _HEAD_ONLY_EVAL),
    "itd_bio_recompute": (Profile(0.2, 8.4, 4.0), Profile(6.4, 17.1, 8.1), _HEAD_ONLY_EVAL),
    "maml": (Profile(13.8, 7.7, 6.5), Profile(5.7, 10.8, 35.0), _NETWORK_EVAL),
    "fomaml": (Profile(1.9, 9.4, 0.2), Profile(0.6, 19.4, 0.9), _NETWORK_EVAL),
    "imaml": (Profile(22.9, 7.4, 0.1), Profile(27.7, 16.4, 0.6), _NETWORK_EVAL),
}
_MS = 1e-3 / 1e6  # milliseconds per million multiply-adds, in seconds per multiply-add
_HEAD_ONLY = Timing(0.015, 0.3 * _MS, 0.2e-3)
_RECOMPUTE = Timing(0.015, 0.3 * _MS, 4e-3, 0.25 * _MS)
#: method -> (hypergradient, evaluation of one episode) timings
TIME = {
    "implicit": (_HEAD_ONLY, Timing(0.005, 0.15 * _MS)),
    "implicit_unfused": (Timing(0.015, 0.3 * _MS, 1e-3), Timing(0.005, 0.15 * _MS)),
    "anil": (_HEAD_ONLY, Timing(0.005, 0.15 * _MS)),
    "itd_bio": (_HEAD_ONLY, Timing(0.005, 0.15 * _MS)),
    "anil_recompute": (_RECOMPUTE, Timing(0.005, 0.15 * _MS)),
    "itd_bio_recompute": (_RECOMPUTE, Timing(0.005, 0.15 * _MS)),
    "maml": (Timing(0.015, 0.3 * _MS, 10e-3, 0.9 * _MS), Timing(0.005, 0.15 * _MS, 2e-3, 0.4 * _MS)),
    "fomaml": (_RECOMPUTE, Timing(0.005, 0.15 * _MS, 2e-3, 0.4 * _MS)),
    "imaml": (Timing(0.015, 0.3 * _MS, 8e-3, 0.2 * _MS), Timing(0.005, 0.15 * _MS, 2e-3, 0.35 * _MS)),
}
#: iMAML's conjugate-gradient steps: per step, seconds per multiply-add of a pass over support and query
IMAML_CG_MAC = 0.05 * _MS


@dataclasses.dataclass(frozen=True)
class Sizes:
    """The first-layer maps (bytes) and forward multiply-adds of one task's support and query sets."""

    S: float
    Q: float
    support_macs: float
    query_macs: float

    @classmethod
    def of(cls, config: MemoryReducedConfig, shots: int, hidden: int | None = None, width: int = 4) -> Sizes:
        hidden = hidden or config.hidden
        side = config.image_size
        per_image = hidden * side * side * width
        macs = 9.0 * hidden * side * side * (1 + 0.33 * hidden)
        n_s, n_q = config.ways * shots, config.ways * config.queries
        return cls(n_s * per_image, n_q * per_image, n_s * macs, n_q * macs)


def _labels(*names: str) -> str:
    return ", ".join(MemoryReducedConfig.label(name) for name in names)


def task_bytes(method: str, config: MemoryReducedConfig, shots: int, K: int, mode: str) -> float:
    """Peak bytes of one task's hypergradient (``mode`` "sequential" or "vmap") or one test episode
    (``"evaluation"``)."""
    sequential, vmapped, evaluation = MEMORY[method]
    profile = {"sequential": sequential, "vmap": vmapped, "evaluation": evaluation}[mode]
    sizes = Sizes.of(config, shots)
    return profile.bytes(sizes.S, sizes.Q, K)


def task_seconds(method: str, config: MemoryReducedConfig, shots: int, K: int, evaluation: bool = False) -> float:
    """Seconds of one task's hypergradient, or of one test episode's adaptation and prediction."""
    sizes = Sizes.of(config, shots)
    timing = TIME[method][evaluation]
    seconds = timing.seconds(sizes.support_macs, sizes.query_macs, K)
    if method == "imaml" and not evaluation:
        seconds += config.cg_steps * IMAML_CG_MAC * (sizes.support_macs + sizes.query_macs)
    return seconds


def evaluation_cost(method: str, config: MemoryReducedConfig, shots: int, episodes: int) -> Cost:
    """``episodes`` test episodes, evaluated ``EVAL_BUDGET // hidden`` at a time."""
    chunk = min(max(1, EVAL_BUDGET // config.hidden), episodes)
    peak = EVALUATION_BYTES + chunk * task_bytes(method, config, shots, config.inner_steps, "evaluation")
    return Cost(peak, episodes * task_seconds(method, config, shots, config.inner_steps, evaluation=True))


def training_cost(method: str, config: MemoryReducedConfig, shots: int, eval_episodes: int) -> Cost:
    """One meta-training run: its meta-steps and its test evaluations."""
    c = config
    batched = c.batch_mode == "vmap"
    per_task = task_bytes(method, c, shots, c.inner_steps, "vmap" if batched else "sequential")
    step_seconds = c.meta_batch * task_seconds(method, c, shots, c.inner_steps) * (VMAP_SLOWDOWN if batched else 1)
    steps = Cost(per_task * (c.meta_batch if batched else 1), c.meta_iterations * step_seconds)
    evaluations = c.meta_iterations // c.eval_every + 2
    evaluation = evaluation_cost(method, c, shots, eval_episodes)
    # the allocator keeps what the meta-steps freed, and the evaluations come on top of it
    return Cost(steps.bytes + evaluation.bytes, steps.seconds + evaluations * evaluation.seconds)


def memory_part(config: MemoryReducedConfig) -> Cost:
    c = config
    calls = (1 + c.timing_repeats) * c.memory_tasks
    costs = []
    for method in c.methods:
        for K in c.k_grid:
            peak = task_bytes(method, c, c.memory_shots, K, "sequential")
            seconds = calls * task_seconds(method, c, c.memory_shots, K)
            if c.measure_rss:  # a fresh process per record, next to this one
                peak, seconds = peak + CHILD_PROCESS, seconds + 2 * CHILD_SECONDS
            costs.append(Cost(peak, seconds))
    return dataclasses.replace(sequence(costs), driver=_labels("k_grid", "hidden", "memory_shots"))


def training_part(config: MemoryReducedConfig) -> Cost:
    costs = [training_cost(m, config, shots, config.eval_episodes) for shots in config.shots for m in config.methods]
    return dataclasses.replace(
        sequence(costs), driver=_labels("meta_iterations", "meta_batch", "inner_steps", "hidden", "eval_episodes")
    )


def cg_part(config: MemoryReducedConfig) -> Cost:
    """The float64 problem at ``cg_hidden`` channels: the dense reference's Jacobian, and the sweeps' head
    and CG steps (about 0.2 ms each)."""
    c = config
    sizes = Sizes.of(c, min(c.shots), hidden=c.cg_hidden, width=8)
    head_params = c.ways * (c.cg_hidden * (c.image_size // 16) ** 2 + 1)
    peak = CG_BASE + CG_JACOBIAN * head_params * sizes.S
    steps = len(c.cg_lams) * (c.inner_steps + c.cg_max_steps)
    steps += sum(K + max(c.cg_grid) for K in c.error_k_grid) + sum(max(c.error_k_grid) + N for N in c.cg_grid)
    seconds = 0.5 + 2e-4 * steps + 1e-9 * head_params * sizes.support_macs
    return Cost(peak, seconds, _labels("cg_hidden", "error_k_grid", "cg_max_steps"))


def final_part(config: MemoryReducedConfig) -> Cost:
    """Every (shots, method): meta-training when the training part did not run, then the final episodes."""
    c = config
    costs = []
    for shots in c.shots:
        for method in c.methods:
            final = evaluation_cost(method, c, shots, c.final_episodes)
            if "training" not in c.parts:  # the allocator keeps the meta-training's memory under the final test
                training = training_cost(method, c, shots, eval_episodes=1)
                final = Cost(training.bytes + final.bytes, training.seconds + final.seconds)
            costs.append(final)
    return dataclasses.replace(sequence(costs), driver=_labels("final_episodes", "meta_iterations", "hidden"))


def data_bytes(config: MemoryReducedConfig) -> float:
    """The decoded images of every class the run may touch (glyphs are drawn at the image side; Omniglot's
    105 x 105 drawings are kept next to their resized copies)."""
    c = config
    episodes = len(c.shots) * (c.meta_iterations * c.meta_batch + c.eval_episodes + c.final_episodes)
    episodes += c.memory_tasks + 1
    omniglot = c.dataset in ("auto", "omniglot")
    classes = min(OMNIGLOT_CLASSES if omniglot else GLYPH_CLASSES, c.ways * episodes)
    pixels = c.image_size**2 + (OMNIGLOT_SIDE**2 if omniglot else 0)
    return classes * INSTANCES * pixels


PARTS = {"memory": memory_part, "training": training_part, "cg": cg_part, "final": final_part}


def estimate(config: MemoryReducedConfig) -> Cost:
    """The peak memory (above the configured process) and time of ``run(config)``: its parts run one after
    another, on top of what every run loads and the decoded data set.  ``driver`` names the settings of
    the part with the largest peak and, when another takes longest, of that one too."""
    costs = [PARTS[part](config) for part in config.parts]
    total = sequence(costs)
    slowest = max(costs, key=lambda cost: cost.seconds).driver
    driver = total.driver if slowest == total.driver else f"{total.driver} (memory); {slowest} (time)"
    return Cost(RUN_BASE + data_bytes(config) + total.bytes, total.seconds, driver)
