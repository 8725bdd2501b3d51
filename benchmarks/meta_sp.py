"""Time for each subspace method to reach a target sin-theta, as ratios to Meta-SP, on the same instances.

    .venv/bin/python benchmarks/meta_sp.py [--d 50] [--rank 5] [--n-tasks 400] [--n-samples 15] [--repeats 5]

Every method fits the same seeded instances one after the other in this process; the time to target is
read off each method's own history (wall clock since its start), so the ratios compare like with like.
Methods that never reach the target within their iteration budget are reported as such, not timed.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from metalab.experiments.meta_sp import (
    ALL_METHODS,
    MetaSPConfig,
    fit_method,
    make_instance,
    time_to_target,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--d", type=int, default=50)
    parser.add_argument("--rank", type=int, default=5)
    parser.add_argument("--n-tasks", type=int, default=400)
    parser.add_argument("--n-samples", type=int, default=15)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--target", type=float, default=0.1)
    parser.add_argument("--max-iter", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    config = MetaSPConfig(
        d=args.d,
        rank=args.rank,
        n_tasks=args.n_tasks,
        n_samples=args.n_samples,
        noise=args.noise,
        max_iter=args.max_iter,
        target_error=args.target,
    )
    # each row: (label, method, config); Meta-SP also runs in its subspace-pursuit form (least-squares refit)
    rows = [(m, m, config) for m in ALL_METHODS]
    rows.insert(1, ("meta_sp refit=ls", "meta_sp", config.replace(refit="ls")))
    times: dict[str, list[float]] = {label: [] for label, _, _ in rows}
    finals: dict[str, list[float]] = {label: [] for label, _, _ in rows}
    for repeat in range(args.repeats):
        tasks = make_instance(config, seed=repeat)
        for label, method, row_config in rows:
            result = fit_method(method, tasks, config.rank, row_config, seed=repeat)
            outcome = time_to_target(result, args.target)
            if outcome["reached"]:
                times[label].append(outcome["seconds_to_target"])
            finals[label].append(outcome["final_sin_theta"])

    reference = statistics.median(times["meta_sp"])
    print(
        f"time to sin-theta <= {args.target} on d={args.d}, s={args.rank}, T={args.n_tasks}, m={args.n_samples}, "
        f"sigma={args.noise}; {args.repeats} instances, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"{'method':18s} {'reached':>8s} {'median s':>10s} {'ratio to meta_sp':>17s} {'final sin-theta':>16s}")
    for label in times:
        reached = f"{len(times[label])}/{args.repeats}"
        final = statistics.median(finals[label])
        if times[label]:
            median = statistics.median(times[label])
            print(f"{label:18s} {reached:>8s} {median:10.4f} {median / reference:17.2f} {final:16.3g}")
        else:
            print(f"{label:18s} {reached:>8s} {'-':>10s} {'never':>17s} {final:16.3g}")


if __name__ == "__main__":
    main()
