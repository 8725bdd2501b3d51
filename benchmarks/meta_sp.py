"""Meta-SP's time per iteration against a plain IHT reference, and how it grows with d (issue 12); with
--baselines, each subspace method's time to a target sin-theta as a ratio to Meta-SP's.

    .venv/bin/python benchmarks/meta_sp.py [--dims 50 100 200 400 800] [--rounds 5] [--iterations 3] [--threads 1 2]
    .venv/bin/python benchmarks/meta_sp.py --baselines [--d 50] [--rank 5] [--n-tasks 400] [--n-samples 15] [--repeats 5]

The reference is iterative hard thresholding written plainly: Θ ← H_s(Θ - η G(Θ)) with the library's
task gradients G and H_s by a thin SVD, nothing else.  Meta-SP (``iterate_meta_subspace_pursuit``) also
computes the objective, the relative change and the clock every iteration, and projects by its default
warm-started subspace iteration.  Every run follows its own trajectory from Θ⁰ = 0 on the same instance
(T=1000, m=20, s=5, σ=0.1); after a warm-up, each round advances every run by ``--iterations``
iterations, the runs interleaved, and the table shows medians over rounds.  The slope is the
least-squares fit of log(time per iteration) on log d.  The process CPU time is measured too: on a
machine that other work keeps busy the wall clock includes the waits for a core, the CPU time does not
(with 2 threads it also counts a waiting thread's spinning).  A profile of Meta-SP's iteration (its
pieces timed one by one) follows each table.

With --baselines every method fits the same seeded instances one after the other in this process; the
time to target is read off each method's own history (wall clock since its start), so the ratios compare
like with like.  Methods that never reach the target within their iteration budget are reported as such.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Iterator

import torch

from metalab.data import hps_tasks
from metalab.experiments.meta_sp import ALL_METHODS, MetaSPConfig, fit_method, make_instance, time_to_target
from metalab.subspace import iterate_meta_subspace_pursuit
from metalab.subspace.linalg import RankProjection
from metalab.subspace.tasks import TaskTensors, as_task_tensors

T, M, RANK, NOISE = 1000, 20, 5, 0.1
WARMUP = 5
PROFILED = 10  # iterations the profile times, after the warm-up
RATIO_GOAL, SLOPE_GOAL = 1.0, 1.1


def instance(d: int) -> TaskTensors:
    """The seeded instance at dimension d (T, m, s and σ fixed above)."""
    tasks = hps_tasks(d, RANK, T, M, noise=NOISE, seed=0)
    return as_task_tensors(tasks.X, tasks.y)


def plain_iht(data: TaskTensors, eta: float) -> Iterator[torch.Tensor]:
    """The reference: Θ ← H_s(Θ - η G(Θ)), H_s by a thin SVD; no objective, no bookkeeping."""
    theta = torch.zeros(data.n_tasks, data.dim, dtype=data.X.dtype)
    while True:
        U, S, Vh = torch.linalg.svd(theta - eta * data.task_gradients(theta), full_matrices=False)
        theta = (U[:, :RANK] * S[:RANK]) @ Vh[:RANK]
        yield theta


def runs_for(data: TaskTensors) -> dict[str, Iterator]:
    """Each method's endless run on ``data``, advanced past the warm-up."""
    eta = 1.0 / data.smoothness()
    meta_sp = {"max_iter": 10**9, "tol": 0.0, "step_size": eta}
    runs = {
        "reference": plain_iht(data, eta),
        "meta_sp": iterate_meta_subspace_pursuit(data.X, data.y, RANK, **meta_sp),
    }
    for run in runs.values():
        for _ in range(WARMUP):
            next(run)
    return runs


def seconds_per_iteration(run: Iterator, iterations: int) -> tuple[float, float]:
    """Wall-clock and process CPU seconds per iteration over the next ``iterations`` items of ``run``."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(iterations):
        next(run)
    return (time.perf_counter() - wall) / iterations, (time.process_time() - cpu) / iterations


def slope(dims: list[int], seconds: list[float]) -> float:
    """The least-squares slope of log(seconds) against log(d)."""
    x, y = [math.log(d) for d in dims], [math.log(s) for s in seconds]
    mx, my = statistics.fmean(x), statistics.fmean(y)
    return sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sum((a - mx) ** 2 for a in x)


def profile(data: TaskTensors, iterations: int) -> dict[str, float]:
    """Meta-SP's iteration in pieces: medians of process CPU ms (a busy machine's waits left out) over ``iterations`` iterations after the warm-up, of its
    residual, objective, gradient and projection re-done one by one along its trajectory, of a thin SVD of
    the same Z (not part of Meta-SP), and of the library's own iteration (``step``, timed in turn with the
    pieces); ``rest`` = step - the pieces (the clock, the relative change, the finiteness checks).  Also
    the subspace-iteration sweeps per iteration and the thin-SVD fallbacks."""
    eta = 1.0 / data.smoothness()
    run = iterate_meta_subspace_pursuit(data.X, data.y, RANK, max_iter=10**9, tol=0.0, step_size=eta)
    project = RankProjection(RANK, (data.n_tasks, data.dim), "subspace", dtype=data.X.dtype, device=data.device)
    theta = torch.zeros(data.n_tasks, data.dim, dtype=data.X.dtype)
    names = ("residual", "objective", "gradient", "projection", "thin svd", "step")
    seconds: dict[str, list[float]] = {name: [] for name in names}
    next(run)  # iteration 0, the initial state, which the loop below starts from
    for iteration in range(WARMUP + iterations):
        if iteration == WARMUP:
            project.sweeps, project.fallbacks = 0, 0
        marks = [time.process_time()]
        residual = data.residual(theta)
        marks.append(time.process_time())
        float(data.loss_from_residual(residual))
        marks.append(time.process_time())
        Z = theta - eta * data.gradients_from_residual(residual)
        marks.append(time.process_time())
        scores, basis = project(Z)
        theta = scores @ basis.T
        marks.append(time.process_time())
        torch.linalg.svd(Z, full_matrices=False)
        marks.append(time.process_time())
        next(run)
        marks.append(time.process_time())
        if iteration >= WARMUP:
            for name, start, end in zip(names, marks[:-1], marks[1:], strict=True):
                seconds[name].append(end - start)
    ms = {name: 1e3 * statistics.median(values) for name, values in seconds.items()}
    ms["rest"] = ms["step"] - sum(ms[name] for name in ("residual", "objective", "gradient", "projection"))
    return ms | {"sweeps": project.sweeps / iterations, "fallbacks": project.fallbacks}


def per_iteration_table(dims: list[int], rounds: int, iterations: int, threads: int) -> None:
    """The reference's and Meta-SP's ms per iteration for every d, the slopes, the issue's rows, the profile."""
    torch.set_num_threads(threads)
    instances = {d: instance(d) for d in dims}
    runs = {d: runs_for(data) for d, data in instances.items()}
    walls: dict[tuple[int, str], list[float]] = {}
    cpus: dict[tuple[int, str], list[float]] = {}
    for _ in range(rounds):
        for d in dims:
            for name, run in runs[d].items():
                wall, cpu = seconds_per_iteration(run, iterations)
                walls.setdefault((d, name), []).append(wall)
                cpus.setdefault((d, name), []).append(cpu)
    ms = {key: 1e3 * statistics.median(values) for key, values in walls.items()}
    cpu_ms = {key: 1e3 * statistics.median(values) for key, values in cpus.items()}
    print(f"\n{threads} thread(s): ms per iteration, T={T}, m={M}, s={RANK}, median of {rounds} rounds x {iterations}")
    print(f"{'d':>5s} {'reference':>10s} {'meta_sp':>10s} {'ratio':>6s} {'cpu ratio':>10s}")
    for d in dims:
        reference, meta_sp = ms[d, "reference"], ms[d, "meta_sp"]
        cpu_ratio = cpu_ms[d, "meta_sp"] / cpu_ms[d, "reference"]
        print(f"{d:5d} {reference:10.2f} {meta_sp:10.2f} {meta_sp / reference:6.2f} {cpu_ratio:10.2f}")
    slopes = {name: slope(dims, [ms[d, name] for d in dims]) for name in ("reference", "meta_sp")}
    cpu_slopes = {name: slope(dims, [cpu_ms[d, name] for d in dims]) for name in ("reference", "meta_sp")}
    print("slope in d (wall): " + ", ".join(f"{name} {value:.2f}" for name, value in slopes.items()))
    print("slope in d (cpu):  " + ", ".join(f"{name} {value:.2f}" for name, value in cpu_slopes.items()))
    ratio = ms[100, "meta_sp"] / ms[100, "reference"] if 100 in dims else math.nan
    rows = [
        (f"Meta-SP per iteration vs plain IHT, d=100, T={T}, m={M}", f"{ratio:.2f}x", ratio, RATIO_GOAL, "x"),
        (f"slope of Meta-SP time per iteration in d, d={dims[0]}..{dims[-1]}", f"{slopes['meta_sp']:.2f}",
         slopes["meta_sp"], SLOPE_GOAL, ""),
    ]  # fmt: skip
    for label, shown, value, goal, unit in rows:
        verdict = "met" if value <= goal else f"missed by {value / goal - 1:.0%}"
        print(f"| {label} | {shown} | <= {goal}{unit} | {verdict} |")
    print("profile of Meta-SP's iteration, CPU ms (step: the whole iteration; thin svd: not part of it)")
    for d in sorted({dims[0], 100, dims[-1]} & set(dims)):
        pieces = profile(instances[d], PROFILED)
        print(f"  d={d}: " + ", ".join(f"{name} {value:.2f}" for name, value in pieces.items()))


def baselines(args: argparse.Namespace) -> None:
    """Time to sin-theta <= target for every method (and Meta-SP with refit="ls"), as ratios to Meta-SP."""
    config = MetaSPConfig(
        d=args.d, rank=args.rank, n_tasks=args.n_tasks, n_samples=args.n_samples, noise=args.noise,
        max_iter=args.max_iter, target_error=args.target,
    )  # fmt: skip
    rows = [(m, m, config) for m in ALL_METHODS]  # (label, method, config)
    rows.insert(1, ("meta_sp refit=ls", "meta_sp", config.replace(refit="ls")))
    times: dict[str, list[float]] = {label: [] for label, _, _ in rows}
    finals: dict[str, list[float]] = {label: [] for label, _, _ in rows}
    for repeat in range(args.repeats):
        tasks = make_instance(config, seed=repeat)
        for label, method, row_config in rows:
            outcome = time_to_target(fit_method(method, tasks, config.rank, row_config, seed=repeat), args.target)
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
        reached, final = f"{len(times[label])}/{args.repeats}", statistics.median(finals[label])
        if times[label]:
            median = statistics.median(times[label])
            print(f"{label:18s} {reached:>8s} {median:10.4f} {median / reference:17.2f} {final:16.3g}")
        else:
            print(f"{label:18s} {reached:>8s} {'-':>10s} {'never':>17s} {final:16.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    per_iteration = parser.add_argument_group("time per iteration (the default)")
    per_iteration.add_argument("--dims", type=int, nargs="+", default=[50, 100, 200, 400, 800])
    per_iteration.add_argument("--rounds", type=int, default=5)
    per_iteration.add_argument("--iterations", type=int, default=3, help="iterations per run per round")
    per_iteration.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    targets = parser.add_argument_group("time to target (--baselines)")
    targets.add_argument("--baselines", action="store_true")
    targets.add_argument("--d", type=int, default=50)
    targets.add_argument("--rank", type=int, default=5)
    targets.add_argument("--n-tasks", type=int, default=400)
    targets.add_argument("--n-samples", type=int, default=15)
    targets.add_argument("--noise", type=float, default=0.1)
    targets.add_argument("--target", type=float, default=0.1)
    targets.add_argument("--max-iter", type=int, default=1000)
    targets.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.baselines:
        baselines(args)
        return
    print(f"torch {torch.__version__}; goals: ratio <= {RATIO_GOAL}x, slope <= {SLOPE_GOAL} (linear in d)")
    for threads in args.threads:
        per_iteration_table(sorted(args.dims), args.rounds, args.iterations, threads)


if __name__ == "__main__":
    main()
