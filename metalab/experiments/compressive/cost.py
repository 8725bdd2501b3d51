"""What a compressive run will cost before it runs, from the sizes in its config.

Every model the run needs is meta-trained once (one per task, sketch size and private flag, as
:mod:`.parts` asks for them).  A step pushes ``B n`` samples (``batch`` data sets of ``n_samples``)
through the Sketch-Network, whose ``M`` multiply-adds per sample (``d h_1 + h_1 h_2 + ... + h_L m``)
dominate: about ``2.5e-10 s`` per sample and multiply-add, forward and backward, plus 3 ms per step
(10 ms for the autoencoder's hypernetwork), and autograd holds about ``4 (3 (h_1 + ... + h_L) + 2 m +
50)`` bytes per sample.  Every ``eval_every`` steps the ``eval_sets x held_out_samples`` held-out samples
go forward (``1.5e-10 s`` per sample and multiply-add); their exact references are computed once:
k-means++ with Lloyd, best of 5, about ``1.7e-5 k`` s per sample, and the autoencoder's Adam fit
``5e-8 hidden`` s per sample and step.  The random k-means sketch is decoded by CL-OMPR (about
``0.5 + 7e-4 E k m / 3`` s for ``E`` sketches, holding ``8 x 5`` bytes per sketch, restart, candidate
and sketch entry).  'decoding' holds about ``8 (2 m + 8 d + 4 k)`` bytes and takes ``5e-5`` s per
sample of its largest data set; 'throughput' 8 bytes per row and column of the data and of the rows
each map reads, ``2.5e-6`` s per row, and 15 s to start a local Dask cluster (whose workers, about
150 MB each, are other processes).  Importing the optimizer's compiled step takes 1.5 s and the run's
fixed memory (autograd, thread pools, that import) is about 100 MB.

Measured in fresh processes on the 2-core machine, one torch thread, while other jobs ran (the times
vary by about a factor of 2 with the load): meta-training alone at n = 100, 1000, 5000 (batch 8 and
32), Sketch-Network widths (64, 64) and (256, 256), 250 and 5000 held-out samples, each task; the
'sketch_size' part at m = 60 and 200, 'privacy', 'merge', 'decoding' at n = 1e5 and 1e6 (1.3 GB,
86 s), 'throughput' at 1e6 rows in one process and 1e5 on a local cluster.  Every measured peak was
within a factor of 2 of this estimate (the local cluster's workers aside), and so were the times but
one (meta-training at n = 5000 under a heavy load: 10 s for 5 estimated); the tests hold two peaks
there.  The whole quick preset: 262 MB and 69 s measured, 408 MB (300 MB of them Dask workers) and
2 min estimated.
"""

from __future__ import annotations

from metalab.core.cost import MB, Budget, Cost, sequence
from metalab.experiments.compressive.config import CompressiveConfig

BASE_BYTES = 100 * MB
FIRST_STEP_SECONDS = 1.5
TRAIN_SECONDS_PER_MAC = 2.5e-10
STEP_SECONDS = {"autoencoder": 0.010}
STEP_SECONDS_DEFAULT = 0.003
FORWARD_SECONDS_PER_MAC = 1.5e-10
EVALUATION_SECONDS = 0.02
KMEANS_SECONDS_PER_SAMPLE_AND_CLUSTER = 1.7e-5
AUTOENCODER_SECONDS_PER_SAMPLE_STEP_AND_UNIT = 5e-8
CLOMPR_CANDIDATES, CLOMPR_RESTARTS = 256, 3
DECODING_SECONDS_PER_SAMPLE = 5e-5
THROUGHPUT_SECONDS_PER_ROW = 2.5e-6
CLUSTER_SECONDS = {"single": 0.0, "threads": 1.0, "local": 15.0}
WORKER_BYTES = 150 * MB

#: the settings to lower first, by what drives a cost (named by their labels)
DRIVERS = {
    cost: ", ".join(map(CompressiveConfig.label, fields))
    for cost, fields in {
        "training": ("n_samples", "steps", "sketch_hidden"),
        "held_out": ("held_out_samples", "eval_sets"),
        "clompr": ("sketch_sizes", "eval_sets"),
        "decoding": ("decode_sizes",),
        "throughput": ("throughput_rows",),
    }.items()
}


def sketch_macs(config: CompressiveConfig, task: str, m: int) -> int:
    """Multiply-adds of the Sketch-Network per sample: ``sum_l w_l w_{l+1}`` over its widths."""
    widths = [config.d + (task == "ridge"), *config.sketch_hidden, m]
    return sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))


def _held_out_samples(config: CompressiveConfig) -> int:
    return config.eval_sets * (config.held_out_samples or config.n_samples)


def reference_seconds(config: CompressiveConfig, task: str) -> float:
    """The exact references of the held-out data sets (PCA and ridge in closed form: negligible)."""
    samples = _held_out_samples(config)
    if task == "kmeans":
        return KMEANS_SECONDS_PER_SAMPLE_AND_CLUSTER * config.clusters * samples
    if task == "autoencoder":
        return AUTOENCODER_SECONDS_PER_SAMPLE_STEP_AND_UNIT * config.ae_hidden * config.reference_steps * samples
    return 0.0


def training_cost(config: CompressiveConfig, task: str, m: int) -> Cost:
    """Meta-training one model: its steps, and its held-out evaluations (the larger of the two holds)."""
    macs = sketch_macs(config, task, m)
    rows = config.batch * config.n_samples
    step = STEP_SECONDS.get(task, STEP_SECONDS_DEFAULT) + TRAIN_SECONDS_PER_MAC * rows * macs
    evaluations = config.steps // config.eval_every + 1
    evaluation = EVALUATION_SECONDS + FORWARD_SECONDS_PER_MAC * _held_out_samples(config) * macs
    hidden = sum(config.sketch_hidden)
    held = max(4.0 * rows * (3 * hidden + 2 * m + 50), 4.0 * _held_out_samples(config) * (2 * hidden + 2 * m))
    return Cost(held, config.steps * step + evaluations * evaluation, DRIVERS["training"])


def held_out_cost(config: CompressiveConfig, task: str) -> Cost:
    """The held-out data sets and their exact references, once per task."""
    per_sample = 40.0 * (config.clusters + config.d) if task == "kmeans" else 32.0 * (config.d + config.ae_hidden)
    return Cost(per_sample * _held_out_samples(config), reference_seconds(config, task), DRIVERS["held_out"])


def random_decoding_cost(config: CompressiveConfig, task: str, m: int, sketches: int) -> Cost:
    """Decoding ``sketches`` random sketches: CL-OMPR for k-means, a small eigenproblem otherwise."""
    if task != "kmeans":
        return Cost(0.0, 0.01 * sketches, DRIVERS["clompr"])
    held = 40.0 * sketches * CLOMPR_RESTARTS * CLOMPR_CANDIDATES * m
    return Cost(held, 0.5 + 7e-4 * sketches * config.clusters * m / 3, DRIVERS["clompr"])


def decoding_cost(config: CompressiveConfig, n: int) -> Cost:
    """Sketching and decoding one k-means data set of ``n`` samples, and exact k-means on it."""
    per_sample = 8.0 * (2 * config.sketch_size + 8 * config.d + 4 * config.clusters)
    return Cost(per_sample * n, DECODING_SECONDS_PER_SAMPLE * n * config.clusters / 3, DRIVERS["decoding"])


def throughput_cost(config: CompressiveConfig) -> Cost:
    """Sketching ``throughput_rows`` rows with both maps, in one process and with the Dask scheduler."""
    rows, d, task = config.throughput_rows, config.d, config.tasks[0]
    # the data X and y, and the rows each map reads beyond X: [x, 1] or [x, y, 1] (random), [x, y] (learned ridge)
    columns = 2 * (d + 1) + (d + 2) * (task != "kmeans") + (d + 1) * (task == "ridge")
    workers = WORKER_BYTES * 2 if config.scheduler == "local" else 0.0
    runs = 1 + (config.scheduler != "single")
    seconds = CLUSTER_SECONDS[config.scheduler] + runs * THROUGHPUT_SECONDS_PER_ROW * rows
    return Cost(8.0 * rows * columns + workers, seconds, DRIVERS["throughput"])


def _models(config: CompressiveConfig) -> set[tuple[str, int, bool]]:
    """(task, sketch size, private) of every model the selected parts train."""
    c, parts = config, set(config.parts)
    example_private = c.example_epsilon is not None
    models = set()
    for task in c.tasks:
        if {"training", "example"} & parts:
            models.add((task, c.sketch_size, example_private))
        if "sketch_size" in parts:
            models.update((task, m, False) for m in c.sketch_sizes)
        if "privacy" in parts:
            models.add((task, c.sketch_size, True))
        if "merge" in parts:
            models.add((task, c.sketch_size, False))
    if "decoding" in parts and "kmeans" in c.tasks:
        models.add(("kmeans", c.sketch_size, False))
    if "throughput" in parts:
        models.add((c.tasks[0], c.sketch_size, False))
    return models


def _evaluations(config: CompressiveConfig) -> list[Cost]:
    """What the parts compute beyond training their models."""
    c, parts = config, set(config.parts)
    costs = [held_out_cost(c, task) for task in c.tasks if {"training", "sketch_size", "privacy"} & parts]
    for task in c.tasks:
        if "sketch_size" in parts:
            costs.extend(random_decoding_cost(c, task, m, c.eval_sets) for m in c.sketch_sizes)
        if "privacy" in parts:
            costs.extend(random_decoding_cost(c, task, c.sketch_size, c.eval_sets) for _ in c.epsilons)
        if "example" in parts:
            costs.append(random_decoding_cost(c, task, c.sketch_size, 1))
    if "decoding" in parts and "kmeans" in c.tasks:
        costs.extend(decoding_cost(c, n) for n in c.decode_sizes)
    if "throughput" in parts:
        costs.append(throughput_cost(c))
    return costs


def estimate(config: CompressiveConfig) -> Cost:
    """The peak memory above the process's own and the seconds of ``run(config)`` (one torch thread);
    ``driver`` names the settings behind the larger share of the default budget."""
    costs = [training_cost(config, task, m) for task, m, _ in sorted(_models(config))] + _evaluations(config)
    total = sequence(costs)
    seconds = FIRST_STEP_SECONDS + total.seconds
    budget = Budget()
    if seconds / budget.seconds > total.bytes / budget.bytes:
        driver = max(costs, key=lambda cost: cost.seconds).driver
    else:
        driver = max(costs, key=lambda cost: cost.bytes).driver
    return Cost(BASE_BYTES + total.bytes, seconds, driver)
