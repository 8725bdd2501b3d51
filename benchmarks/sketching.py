"""Sketching speed and k-means from sketches: throughput (one core vs Dask), decoding time, learned vs CKM error.

    .venv/bin/python benchmarks/sketching.py [--quick] [--sections throughput,decoding,quality]
        [--n 100000,1000000] [--d 10] [--k 5] [--workers 2] [--chunk 25000] [--batch 2048] [--repeats 3]
        [--kmeans-d 2] [--kmeans-k 3] [--steps 3000] [--eval-sets 100] [--decode-n 10000,100000,1000000]

``throughput``: both feature maps have the sketch size ``m = 10 k d``: the learned one is a Sketch-Network of the
default architecture (``d -> 64 -> 64 -> m``, tanh output; untrained weights cost the same as
trained ones) and the random one is random Fourier features with ``m / 2`` frequencies.  "single"
sketches an in-memory array ``--batch`` rows at a time in this process with one torch thread
(``sketch_stream``); "dask" runs ``sketch_dask`` (same ``batch_rows``) on a ``LocalCluster`` of
``--workers`` single-threaded worker processes on 127.0.0.1, on the same rows, in partitions of
``--chunk`` rows drawn on and kept by the workers beforehand, so the time is the sketching and
merging, not the transfer of the data.  Every
cell is the fastest of ``--repeats`` runs, timed in rounds over the grid so that load from other
processes hits every cell alike.

``decoding`` and ``quality`` meta-train the experiment's k-means Sketch- and Query-Network at
``m = 10 k d`` (``--kmeans-d``, ``--kmeans-k``, ``--steps``) once, then time decoding (learned: one
forward pass; CKM: CL-OMPR on a random Fourier sketch; exact: k-means++ and Lloyd with 5 restarts on
the full data) at each ``--decode-n``, and compare SSE / exact SSE of learned and CKM on
``--eval-sets`` held-out mixtures.  Each section prints its own ratios; ``--sections`` picks them.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from metalab.compressive import FeatureMap, RandomFourierFeatures, SketchNetwork, references, sketch_stream
from metalab.compressive.distributed import local_cluster, sketch_dask
from metalab.compressive.randomized import RandomizedLearner
from metalab.compressive.training import evaluate
from metalab.core.timing import Stopwatch
from metalab.experiments.compressive import (
    CompressiveConfig,
    CompressiveContext,
    family_of,
    random_relative_errors,
    task_of,
)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(float(v)) for v in text.split(",") if v.strip())


def feature_maps(d: int, k: int, seed: int) -> dict[str, FeatureMap]:
    """The learned and the random-feature map of the same sketch size ``m = 10 k d``."""
    m = 10 * k * d
    return {
        "learned": SketchNetwork(d, m, seed=seed),
        "random": RandomFourierFeatures(d, m // 2, seed=seed),
    }


def sketch_single(fmap: FeatureMap, x: np.ndarray, batch: int):
    """The sketch of ``x`` in this process, ``batch`` rows at a time."""
    return sketch_stream(fmap, (x[i : i + batch] for i in range(0, len(x), batch)))


def throughput(args: argparse.Namespace) -> None:
    """Rows per second of sketching, single process (one thread) and on a local Dask cluster."""
    import dask.array as da
    import distributed

    torch.set_num_threads(1)
    maps = feature_maps(args.d, args.k, args.seed)
    with local_cluster(args.workers) as cluster, distributed.Client(cluster) as client:
        # the rows are drawn on the workers and kept there; this process holds a copy for "single"
        rng = da.random.default_rng(args.seed)
        persisted = {n: client.persist(rng.standard_normal((n, args.d), chunks=(args.chunk, args.d))) for n in args.n}
        data = {n: client.compute(rows, sync=True) for n, rows in persisted.items()}
        for fmap in maps.values():  # warm-up: the workers import torch and metalab on their first task
            sketch_dask(fmap, persisted[args.n[0]][: 2 * args.chunk], client=client)
        grid = [(name, n) for n in args.n for name in maps]
        seconds = {(name, n, where): [] for name, n in grid for where in ("single", "dask")}
        gaps = {}
        for _ in range(args.repeats):
            for name, n in grid:
                with Stopwatch() as single_watch:
                    single = sketch_single(maps[name], data[n], args.batch)
                with Stopwatch() as dask_watch:
                    merged = sketch_dask(maps[name], persisted[n], client=client, batch_rows=args.batch)
                seconds[(name, n, "single")].append(single_watch.seconds)
                seconds[(name, n, "dask")].append(dask_watch.seconds)
                gaps[(name, n)] = merged.distance(single)
    rate = {key: key[1] / min(times) for key, times in seconds.items()}  # key = (map, n, where)

    m = 10 * args.k * args.d
    print(
        f"sketching throughput: d={args.d}, k={args.k}, m=10kd={m}, features {args.batch} rows at a time; single = "
        f"this process, 1 torch thread; dask = LocalCluster of {args.workers} worker processes x 1 thread, "
        f"partitions of {args.chunk} rows; "
        f"fastest of {args.repeats}, torch {torch.__version__}"
    )
    header = (
        f"{'map':8s} {'n':>9s} {'single rows/s':>14s} {'dask rows/s':>14s} {'dask/single':>12s} {'max |diff|':>11s}"
    )
    print(header)
    print("-" * len(header))
    for name, n in grid:
        one, on_dask = rate[(name, n, "single")], rate[(name, n, "dask")]
        print(f"{name:8s} {n:9d} {one:14.4g} {on_dask:14.4g} {on_dask / one:12.2f} {gaps[(name, n)]:11.1e}")
    print("\nratios learned / random (rows per second)")
    for n in args.n:
        ratios = [rate[("learned", n, where)] / rate[("random", n, where)] for where in ("single", "dask")]
        print(f"  n={n:<9d} single {ratios[0]:6.2f}   dask {ratios[1]:6.2f}")


def kmeans_setting(args: argparse.Namespace) -> CompressiveContext:
    """The experiment's k-means setting at ``m = 10 k d`` in a run context holding its meta-trained model
    (trained once)."""
    if not hasattr(args, "_kmeans"):
        m = 10 * args.kmeans_k * args.kmeans_d
        config = CompressiveConfig.preset(
            "quick", tasks=("kmeans",), d=args.kmeans_d, clusters=args.kmeans_k, sketch_size=m, sketch_sizes=(m,),
            steps=args.steps, eval_sets=args.eval_sets, device="cpu", seed=args.seed,
            sketch_hidden=(128, 128), width=512, blocks=4, n_samples=100, held_out_samples=250,
        )  # fmt: skip
        context = CompressiveContext(config)
        with Stopwatch() as watch:
            context.model("kmeans", m)
        print(f"(meta-trained the k-means Sketch- and Query-Network: {args.steps} steps in {watch.seconds:.0f} s)")
        args._kmeans = context
    return args._kmeans


def decoding(args: argparse.Namespace) -> None:
    """Seconds to decode k-means from a sketch (learned, CL-OMPR) against exact k-means on the full data."""
    torch.set_num_threads(1)
    context = kmeans_setting(args)
    config = context.config
    m, k = config.sketch_size, config.clusters
    learned = context.model("kmeans", m)
    ckm = RandomizedLearner(task_of(config, "kmeans"), m, seed=args.seed)
    print(f"decoding: k-means, d={config.d}, k={k}, m=10kd={m}; exact = k-means++ and Lloyd, 5 restarts; 1 thread")
    header = f"{'n':>9s} {'sketch (s)':>11s} {'learned (s)':>12s} {'CKM (s)':>9s} {'exact (s)':>10s} {'exact/learned':>14s} {'exact/CKM':>10s}"
    print(header)
    print("-" * len(header))
    for n in args.decode_n:
        X = family_of(config, "kmeans", n).sample(1, seed=args.seed + 2, split="held_out").X[0]
        with Stopwatch() as sketch_watch:
            sketch = learned.sketch(X)
        with Stopwatch() as learned_watch:
            learned.decode(sketch)
        z = ckm.pooled(X[None])
        with Stopwatch() as ckm_watch:
            ckm.decode(z)
        with Stopwatch() as exact_watch:
            references.kmeans(X, k, restarts=5, seed=args.seed)
        exact, fast, slow = exact_watch.seconds, learned_watch.seconds, ckm_watch.seconds
        print(
            f"{n:9d} {sketch_watch.seconds:11.3f} {fast:12.5f} {slow:9.2f} {exact:10.2f} {exact / fast:14.0f} "
            f"{exact / slow:10.1f}"
        )


def quality(args: argparse.Namespace) -> None:
    """Learned vs CKM k-means SSE at the same sketch size, relative to exact k-means, on held-out mixtures."""
    torch.set_num_threads(1)
    context = kmeans_setting(args)
    config = context.config
    m = config.sketch_size
    scored = context.scored("kmeans")
    learned = evaluate(context.model("kmeans", m), scored.data, reference=scored.exact_errors, seed=args.seed)
    ckm = random_relative_errors(config, "kmeans", m, scored)
    print(
        f"k-means quality: SSE / exact SSE on {len(scored.exact_errors)} held-out mixtures (d={config.d}, k={config.clusters}, "
        f"n={config.held_out_samples}; trained on n={config.n_samples}), sketch size m=10kd={m}"
    )
    print(f"{'method':8s} {'median':>7s} {'q25':>6s} {'q75':>6s} {'q90':>6s}")
    for name, errors in (("learned", learned), ("CKM", ckm)):
        q = torch.quantile(errors, torch.tensor([0.5, 0.25, 0.75, 0.9], dtype=errors.dtype))
        print(f"{name:8s} {q[0]:7.3f} {q[1]:6.3f} {q[2]:6.3f} {q[3]:6.3f}")
    print(f"ratio learned / CKM (medians): {float(learned.median() / ckm.median()):.3f}")


SECTIONS = {"throughput": throughput, "decoding": decoding, "quality": quality}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat (a smoke run)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma separated: " + ", ".join(SECTIONS))
    parser.add_argument("--n", type=_ints, default=None, help="rows, comma separated (default 1e5,1e6)")
    parser.add_argument("--d", type=int, default=10)
    parser.add_argument("--k", type=int, default=5, help="clusters: the sketch size is 10*k*d")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=25_000, help="rows per Dask partition")
    parser.add_argument("--batch", type=int, default=2048, help="rows per feature computation")
    parser.add_argument("--repeats", type=int, default=None, help="timing rounds (default 3, 1 with --quick)")
    parser.add_argument("--kmeans-d", type=int, default=2, help="dimension of the k-means sections")
    parser.add_argument("--kmeans-k", type=int, default=3, help="clusters of the k-means sections")
    parser.add_argument("--steps", type=int, default=None, help="meta-training steps (default 6000, 300 with --quick)")
    parser.add_argument("--eval-sets", type=int, default=None, help="held-out mixtures (default 100, 16 with --quick)")
    parser.add_argument("--decode-n", type=_ints, default=None, help="data set sizes (default 1e4,1e5,1e6)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.steps = args.steps or (300 if args.quick else 6000)
    args.eval_sets = args.eval_sets or (16 if args.quick else 100)
    args.decode_n = args.decode_n or ((10_000, 100_000) if args.quick else (10_000, 100_000, 1_000_000))
    args.n = args.n or ((10_000, 100_000) if args.quick else (100_000, 1_000_000))
    args.repeats = args.repeats or (1 if args.quick else 3)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        parser.error(f"--sections {unknown!r}: not among {list(SECTIONS)}")
    for i, name in enumerate(sections):
        if i:
            print()
        SECTIONS[name](args)


if __name__ == "__main__":
    main()
