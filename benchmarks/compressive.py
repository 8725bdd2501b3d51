"""Compressive k-means against its peers, side by side: end to end against scikit-learn, decoding against pycle.

    .venv/bin/python benchmarks/compressive.py [--quick] [--n 1000000] [--d 10] [--k 5] [--rounds 3]
        [--threads 1,2] [--decode-n 20000] [--decode-sets 3]

Both rows use the experiment's k-means data (Gaussian mixtures in ``[-1, 1]^d``, held-out split) and
sketch size ``m = 10 k d``; "ours" is the library's two lines: the random Fourier map of
:func:`~metalab.compressive.ckm.rff_sketch_for_kmeans` (frequency scale from the median distance of
500 samples) and :func:`~metalab.compressive.ckm.ckm` with 3 restarts in the box ``[-1, 1]^d``.

* ``end to end``: on ``--n`` rows, sketch (:meth:`Sketch.of <metalab.compressive.sketch.Sketch.of>`)
  plus decode, against ``sklearn.cluster.KMeans(n_init=5)`` on the full data.  The learned
  Sketch-Network's sketch (default architecture ``d -> 64 -> 64 -> m``; untrained weights cost what
  trained ones do, and its Query-Network decodes in one forward pass of milliseconds) is timed too.
* ``decode``: CL-OMPR on the same sketch and the same frequencies, ours against pycle's ``CLOMP_CKM``
  (``fit_several_times(3)``, complex exponentials ``c exp(i W x)``: the same numbers as our
  ``[cos, sin]``), on ``--decode-sets`` data sets of ``--decode-n`` rows.

Agreement comes first: SSE (mean squared distance to the nearest centroid) relative to scikit-learn's
on the same data.  Then times: rounds alternate the sides, each thread count of ``--threads`` (torch,
and BLAS/OpenMP through threadpoolctl) per round, and the table gives medians and ratios
``theirs / ours`` (above 1: ours faster), of wall seconds and of the process's CPU seconds (which
other processes on a shared machine inflate less).  Peers missing from the environment are skipped
with a note.  The default run takes 2-5 minutes on 2 cores; ``--quick`` under a minute.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch

from metalab.compressive import RandomFourierFeatures, SketchNetwork, references
from metalab.compressive.ckm import ckm, rff_sketch_for_kmeans
from metalab.compressive.datasets import Mixtures
from metalab.compressive.randomized import BOX
from metalab.compressive.sketch import Sketch
from metalab.core.timing import Stopwatch

try:
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - scikit-learn is a benchmark peer, installed with the bench extra
    KMeans = None
try:
    from pycle.compressive_learning import CLOMP_CKM
    from pycle.sketching import SimpleFeatureMap
except ImportError:  # pragma: no cover - pycle is a benchmark peer, installed with the bench extra
    CLOMP_CKM = None

RESTARTS = 3


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(float(v)) for v in text.split(",") if v.strip())


def timed(threads: int, run: Callable[[], object]) -> tuple[tuple[float, float], object]:
    """``(wall, CPU)`` seconds and result of ``run()`` with ``threads`` torch and BLAS/OpenMP threads (CPU:
    the process's, all threads; less sensitive than wall time to other processes on a shared machine)."""
    torch.set_num_threads(threads)
    cpu = time.process_time()
    with threadpool_limits(limits=threads), Stopwatch() as watch:
        result = run()
    return (watch.seconds, time.process_time() - cpu), result


def ours(X: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """Compressive k-means: the Fourier map's scale from the data, the sketch of ``X``, CL-OMPR (centroids)."""
    sketch = Sketch.of(rff_sketch_for_kmeans(X, 10 * k * X.shape[1], seed=seed), X)
    return ckm(sketch, None, k, bounds=BOX, restarts=RESTARTS, seed=seed, device="cpu")[0]


def sklearn_kmeans(X: np.ndarray, k: int, seed: int) -> torch.Tensor:
    """scikit-learn's k-means (k-means++, Lloyd, best of 5) on the full data (centroids)."""
    fitted = KMeans(n_clusters=k, n_init=5, random_state=seed).fit(X)
    return torch.from_numpy(fitted.cluster_centers_)


def pycle_ckm(fmap: RandomFourierFeatures, z: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """pycle's CL-OMPR on the sketch mean ``z`` of ``fmap``, as complex exponentials (centroids)."""
    F = fmap.n_frequencies
    phi = SimpleFeatureMap("complexExponential", fmap.frequencies.T.numpy().copy(), c_norm=fmap.c_norm)
    bounds = np.array([[BOX[0]] * fmap.input_dim, [BOX[1]] * fmap.input_dim])
    np.random.seed(seed)  # pycle draws its initial atoms from numpy's global generator
    solver = CLOMP_CKM(phi, k, bounds, (z[:F] + 1j * z[F:]).numpy())
    solver.fit_several_times(RESTARTS)
    return torch.as_tensor(solver.get_centroids())


def print_table(columns: list[str], seconds: dict, threads: tuple[int, ...], goal: str) -> None:
    """Median wall and CPU seconds of each column per thread count, and ``column / columns[0]`` ratios."""
    header = f"{'threads':>7s} {'clock':>5s} " + " ".join(f"{c + ' (s)':>20s}" for c in columns)
    header += " " + " ".join(f"{c + ' / ' + columns[0]:>24s}" for c in columns[1:]) + f"  {'goal':>6s}"
    print(header)
    print("-" * len(header))
    for t in threads:
        for i, clock in enumerate(("wall", "CPU")):
            medians = [statistics.median(times[i] for times in seconds[(c, t)]) for c in columns]
            cells = " ".join(f"{s:20.3f}" for s in medians)
            ratios = " ".join(f"{s / medians[0]:24.2f}" for s in medians[1:])
            print(f"{t:7d} {clock:>5s} {cells} {ratios}  {goal:>6s}")


def end_to_end(args: argparse.Namespace) -> None:
    """Sketch + CL-OMPR on ``--n`` rows against scikit-learn's KMeans(n_init=5) on the full data."""
    if KMeans is None:
        print("end to end: skipped, scikit-learn (and threadpoolctl) are not installed (pip install scikit-learn)")
        return
    d, k, m = args.d, args.k, 10 * args.k * args.d
    network = SketchNetwork(d, m, seed=args.seed)
    X = Mixtures(args.n, d, k).sample(1, seed=args.seed, split="held_out").X[0]
    X_numpy = X.numpy()
    sides = {
        "ckm": lambda: ours(X, k, args.seed),
        "sklearn": lambda: sklearn_kmeans(X_numpy, k, args.seed),
        "learned sketch": lambda: Sketch.of(network, X),
    }
    seconds = {(name, t): [] for name in sides for t in args.threads}
    results = {}
    for _ in range(args.rounds):
        for t in args.threads:
            for name, run in sides.items():
                elapsed, results[name] = timed(t, run)
                seconds[(name, t)].append(elapsed)
    sse = {name: float(references.kmeans_sse(X, results[name])) for name in ("ckm", "sklearn")}
    print(
        f"end to end: compressive k-means, n={args.n:,}, d={d}, k={k}, m=10kd={m}; ckm = Fourier sketch + CL-OMPR "
        f"({RESTARTS} restarts); sklearn = KMeans(n_init=5) on the full data; median of {args.rounds} rounds"
    )
    print(f"agreement: SSE ckm / SSE sklearn = {sse['ckm'] / sse['sklearn']:.3f} (sklearn SSE {sse['sklearn']:.4g})")
    print_table(["ckm", "sklearn", "learned sketch"], seconds, args.threads, ">= 5")


def decoding(args: argparse.Namespace) -> None:
    """CL-OMPR decode time and SSE, ours against pycle's CLOMP_CKM, on the same sketches."""
    if CLOMP_CKM is None or KMeans is None:
        print("decode: skipped, pycle or scikit-learn is not installed (pip install pycle scikit-learn)")
        return
    d, k, m = args.d, args.k, 10 * args.k * args.d
    data = Mixtures(args.decode_n, d, k).sample(args.decode_sets, seed=args.seed + 1, split="held_out").X
    seconds = {(name, t): [] for name in ("ckm", "pycle") for t in args.threads}
    ratios = {"ckm": [], "pycle": []}
    for i, X in enumerate(data):
        fmap = rff_sketch_for_kmeans(X, m, seed=args.seed)
        z = Sketch.of(fmap, X).mean
        exact = float(references.kmeans_sse(X, sklearn_kmeans(X.numpy(), k, args.seed)))
        sides = {
            "ckm": partial(ckm, z, fmap, k, bounds=BOX, restarts=RESTARTS, seed=i, device="cpu"),
            "pycle": partial(pycle_ckm, fmap, z, k, seed=i),
        }
        for t in args.threads:
            for name, run in sides.items():
                elapsed, result = timed(t, run)
                centroids = result[0] if name == "ckm" else result
                seconds[(name, t)].append(elapsed)
                ratios[name].append(float(references.kmeans_sse(X, centroids)) / exact)
    median = {name: statistics.median(r) for name, r in ratios.items()}
    print(
        f"decode: CL-OMPR on the same sketch (m={m}, d={d}, k={k}, {RESTARTS} restarts), {args.decode_sets} data sets "
        f"of n={args.decode_n:,}; median over data sets"
    )
    print(
        f"agreement: SSE / sklearn SSE, median: ckm {median['ckm']:.3f}, pycle {median['pycle']:.3f}; "
        f"ckm / pycle {median['ckm'] / median['pycle']:.2f}"
    )
    print_table(["ckm", "pycle"], seconds, args.threads, ">= 1")


SECTIONS = {"end-to-end": end_to_end, "decode": decoding}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="n = 1e5, one round, one decode set (a smoke run)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma separated: " + ", ".join(SECTIONS))
    parser.add_argument("--n", type=int, default=None, help="rows of the end-to-end row (default 1e6)")
    parser.add_argument("--d", type=int, default=10)
    parser.add_argument("--k", type=int, default=5, help="clusters: the sketch size is 10*k*d")
    parser.add_argument("--rounds", type=int, default=None, help="timing rounds (default 3, 1 with --quick)")
    parser.add_argument("--threads", type=_ints, default=(1, 2), help="thread counts, comma separated")
    parser.add_argument("--decode-n", type=int, default=20_000, help="rows of each decode data set")
    parser.add_argument("--decode-sets", type=int, default=None, help="decode data sets (default 3, 1 with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.n = args.n or (100_000 if args.quick else 1_000_000)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.decode_sets = args.decode_sets or (1 if args.quick else 3)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        parser.error(f"--sections {unknown!r}: not among {list(SECTIONS)}")
    print(f"torch {torch.__version__}, numpy {np.__version__}; times in seconds")
    for i, name in enumerate(sections):
        if i:
            print()
        SECTIONS[name](args)


if __name__ == "__main__":
    main()
