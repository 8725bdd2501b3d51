"""Issue 12's memory rows (peak allocation against the sequential mode and against torchopt), then graph
memory and time per task of every hypergradient method against K, as ratios, in one run.

    .venv/bin/python benchmarks/memory.py [--hidden 64] [--shots 5] [--queries 15] [--k 1,5,10,20,40]
                                          [--methods implicit,maml,...] [--repeats 2] [--device auto]
                                          [--rounds 5] [--threads 1] [--no-grid]

Issue rows (one 5-way 5-shot glyph episode with 15 queries per class, K=20 inner steps, N=20 CG steps):
the peak of the bytes torch's CPU allocator holds during one hypergradient call, above what was held
before it (read from ``torch.profiler``'s memory events), for

* Conv-4-64: the default ``batch_mode="vmap"`` against metalab's own ``"sequential"`` (goal <= 1.1x);
  at 4 tasks too, where the vmap mode keeps every task's graph by design (no goal);
* an MLP 784-256-64 backbone: metalab's implicit hypergradient against ``torchopt.diff.implicit.custom_root``
  on the features (the inner solver's K gradient steps, ``solve_cg(maxiter=N)``; per task as torchopt's
  examples do), peak memory and time (medians of alternating rounds; goals <= 1.0x).  The two
  hypergradients must agree (relative difference printed) before anything is measured.  Skipped with
  a note when torchopt is not installed.

The grid, as before: Conv-4 (hidden 64) on 28x28 glyph episodes, 5-way 5-shot with 15 queries per class, one task per
measurement.  Graph memory is exact: the peak of the bytes autograd keeps for backward during one
hypergradient (saved-tensor hooks; the methods run task by task, ``batch_mode="sequential"``).
Time per task is the fastest of ``--repeats`` unmetered calls, one torch thread, timed in rounds
over the whole grid (every cell once per round) so that load from other processes hits all alike.  On CUDA the peak
allocation above the baseline is printed too.  Every method measures the same task, the same
initial weights, in this process, one after the other.

Targets (the paper's claims, for the fused implicit method): graph memory at K=40 within 10% of
K=5; at K=20 at most one fifth of MAML's and at most half of ANIL's as the authors wrote it
(``anil_recompute``, support features recomputed with graph at every inner step); time per task
flat in K within 20% (K=40 vs K=5).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from metalab.core import resolve_device
from metalab.data import EpisodeSampler, glyph_classes
from metalab.experiments.memory_reduced import MemoryReducedConfig, make_model, options
from metalab.implicit import implicit_hypergradient, quiet_numerics
from metalab.implicit.measure import measure_method, time_method
from metalab.nets import MLP, features, init_head, param_dict, seeded_conv4

try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torchopt
except ImportError:  # the bench extra is not installed
    torchopt = None
# torchopt 0.7.3 calls the deprecated functorch.vjp on every implicit backward
warnings.filterwarnings("ignore", category=FutureWarning, module="torchopt")

MB = 2**20
#: the issue rows' inner problem: K gradient steps of size lr on CE + (l2 / 2) ||φ||², N CG steps
INNER_STEPS, CG_STEPS, INNER_LR, L2 = 20, 20, 0.05, 1e-2

METHODS = (
    "implicit",
    "implicit_unfused",
    "maml",
    "fomaml",
    "anil",
    "anil_recompute",
    "itd_bio",
    "itd_bio_recompute",
    "imaml",
)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


# ---------------------------------------------------------------------------------------------
# Issue rows


def peak_allocation(fn: Callable[[], object]) -> float:
    """MB: the peak of the CPU allocator's bytes in use during ``fn()`` above those in use before it
    (the running sum of ``torch.profiler``'s memory events: + on allocation, - on free)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [
        e
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
    ]
    held = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        held += event.nbytes()
        peak = max(peak, held)
    return peak / MB


def torchopt_hypergradient(backbone, params, head, sx, sy, xq, yq) -> dict[str, torch.Tensor]:
    """torchopt's implicit differentiation of the same bilevel problem, task by task: ``custom_root`` with
    the stationarity condition ∇_φ g(φ, Z_s) = 0 on the support features, CG for the linear system."""

    def inner_loss(head, Zs, ys):
        weight, bias = head
        return F.cross_entropy(Zs @ weight.T + bias, ys) + 0.5 * L2 * (weight.square().sum() + bias.square().sum())

    def stationarity(head, Zs, ys):
        return torch.func.grad(inner_loss)(head, Zs, ys)

    @torchopt.diff.implicit.custom_root(
        stationarity, argnums=1, solve=torchopt.linear_solve.solve_cg(maxiter=CG_STEPS, rtol=0.0, atol=0.0)
    )
    def solve(head, Zs, ys):
        for _ in range(INNER_STEPS):
            step = torch.func.grad(inner_loss)(head, Zs, ys)
            head = tuple(h - INNER_LR * d for h, d in zip(head, step, strict=True))
        return head

    leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    for t in range(sx.shape[0]):  # each task's backward accumulates into the leaves' .grad
        Zs, Zq = features(backbone, leaves, sx[t]), features(backbone, leaves, xq[t])
        weight, bias = solve((head["weight"], head["bias"]), Zs, sy[t])
        F.cross_entropy(Zq @ weight.T + bias, yq[t]).backward()
    return {k: leaf.grad.div_(sx.shape[0]) for k, leaf in leaves.items()}


def ours(backbone, params, head, batch_mode: str = "vmap") -> Callable[..., dict[str, torch.Tensor]]:
    def hypergradient(sx, sy, xq, yq):
        with quiet_numerics():
            return implicit_hypergradient(
                backbone, params, head, sx, sy, xq, yq, inner_steps=INNER_STEPS, inner_lr=INNER_LR, l2=L2, cg_steps=CG_STEPS,
                batch_mode=batch_mode,
            ).hypergrad  # fmt: skip

    return hypergradient


def median_seconds(fns: list[Callable[[], object]], rounds: int) -> list[float]:
    """Each function's median seconds per call over ``rounds`` alternating rounds (after one warm-up call)."""
    times: list[list[float]] = [[] for _ in fns]
    for fn in fns:
        fn()
    for _ in range(rounds):
        for fn, seconds in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            seconds.append(time.perf_counter() - start)
    return [statistics.median(seconds) for seconds in times]


def issue_rows(args) -> None:
    """Print issue 12's memory rows: ours / reference with the goal."""
    classes = glyph_classes(200, 20, image_size=28, seed=args.seed)
    sampler = EpisodeSampler(classes, args.ways, args.shots, args.queries, seed=args.seed, stream="bench")
    one, four = sampler.sample_batch(1), sampler.sample_batch(4)
    tensors = lambda b: (b.support_x, b.support_y, b.query_x, b.query_y)  # noqa: E731
    print(
        f"issue 12 rows: {args.ways}-way {args.shots}-shot, {args.queries} queries per class, K={INNER_STEPS}, "
        f"N={CG_STEPS}, "
        f"l2={L2}; peak CPU allocation above the start of one call (torch.profiler memory events)"
    )
    header = f"{'row':62s} {'ours':>9s} {'reference':>10s} {'ratio':>7s} {'goal':>7s}"
    print(header + "\n" + "-" * len(header))

    def row(label: str, mine: float, theirs: float, goal: float | None, unit: str = "MB") -> None:
        ratio = mine / theirs
        verdict = "" if goal is None else ("  met" if ratio <= goal else "  NOT met")
        goal_text = "" if goal is None else f"<={goal:g}x"
        print(f"{label:62s} {mine:7.2f}{unit:>2s} {theirs:8.2f}{unit:>2s} {ratio:6.2f}x {goal_text:>7s}{verdict}")

    conv, conv_params, conv_head = seeded_conv4(args.ways, hidden=args.hidden, image_size=28, seed=args.seed)
    for batch, goal in ((one, 1.1), (four, None)):
        vmap_mb, sequential_mb = (
            peak_allocation(lambda mode=mode, batch=batch: ours(conv, conv_params, conv_head, mode)(*tensors(batch)))
            for mode in ("vmap", "sequential")
        )
        tasks = batch.support_x.shape[0]
        row(
            f"implicit Conv-4-{args.hidden}, {tasks} task(s): vmap (default) / sequential", vmap_mb, sequential_mb, goal
        )
    if torchopt is None:
        print("torchopt is not installed (pip install torchopt): the torchopt rows are skipped")
        return
    torch.manual_seed(args.seed)
    mlp = MLP([28 * 28, 256, 64], activate_last=True)
    mlp_params, mlp_head = param_dict(mlp), init_head(64, args.ways, zero=True)
    flat = (one.support_x.flatten(2), one.support_y, one.query_x.flatten(2), one.query_y)
    mine, theirs = ours(mlp, mlp_params, mlp_head), lambda *b: torchopt_hypergradient(mlp, mlp_params, mlp_head, *b)
    a, b = mine(*flat), theirs(*flat)
    difference = max(float((a[k] - b[k]).norm() / b[k].norm().clamp_min(1e-30)) for k in b)
    print(f"MLP 784-256-64, 1 task: ours and torchopt's hypergradients differ by {difference:.1e} (relative)")
    row("implicit MLP 784-256-64, 1 task: memory, ours / torchopt", peak_allocation(lambda: mine(*flat)),
        peak_allocation(lambda: theirs(*flat)), 1.0)  # fmt: skip
    for threads in args.time_threads:
        torch.set_num_threads(threads)
        seconds = median_seconds([lambda: mine(*flat), lambda: theirs(*flat)], args.rounds)
        row(f"implicit MLP 784-256-64, 1 task: time, ours / torchopt, {threads} thread(s)",
            1000 * seconds[0], 1000 * seconds[1], 1.0, unit="ms")  # fmt: skip
    print()


def grid(args) -> None:
    """The paper's table: graph memory and time per task of every method against K, and the ratios."""
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    device = resolve_device(args.device)
    config = MemoryReducedConfig(
        hidden=args.hidden,
        ways=args.ways,
        queries=args.queries,
        memory_shots=args.shots,
        shots=(args.shots,),
        cg_steps=args.cg_steps,
        k_grid=args.k,
        device=str(device),
        dataset="glyphs",
        seed=args.seed,
    )
    classes = glyph_classes(200, 20, image_size=28, seed=args.seed)
    batch = EpisodeSampler(classes, args.ways, args.shots, args.queries, seed=args.seed, stream="bench").sample_batch(1)
    backbone, params, head = make_model(config, args.seed)
    print(
        f"Conv-4-{args.hidden}, {args.ways}-way {args.shots}-shot, {args.queries} queries per class, "
        f"N={args.cg_steps} CG steps, l2={config.l2}, device {device}, {args.threads} thread(s), one task per cell"
    )
    cuda = device.type == "cuda"
    header = f"{'method':18s} {'K':>4s} {'graph MB':>10s} {'ms/task':>10s}" + (f" {'CUDA MB':>10s}" if cuda else "")
    print(header)
    print("-" * len(header))
    cells: dict[tuple[str, int], dict] = {}
    grid = [(method, K) for method in methods for K in args.k]
    for method, K in grid:  # graph memory (and the CUDA peak): exact, one metered call per cell
        opts = options(config, inner_steps=K)
        cells[(method, K)] = measure_method(
            method, backbone, params, head, batch, opts, repeats=0, threads=args.threads, device=device
        )
    # time: rounds over the whole grid, so that load from other processes hits every cell alike
    times: dict[tuple[str, int], list[float]] = {cell: [] for cell in grid}
    for _ in range(args.repeats):
        for method, K in grid:
            opts = options(config, inner_steps=K)
            times[(method, K)].append(time_method(method, backbone, params, head, batch, opts, threads=args.threads))
    for method, K in grid:
        values = cells[(method, K)]
        values["seconds_per_task"] = min(times[(method, K)])
        line = f"{method:18s} {K:4d} {values['graph_mb']:10.2f} {1000 * values['seconds_per_task']:10.1f}"
        if cuda:
            line += f" {values['cuda_peak_mb']:10.2f}"
        print(line + ("" if values["status"] == "ok" else f"  ({values['status']})"))

    def get(method: str, K: int, key: str) -> float:
        cell = cells.get((method, K))
        return float(cell[key]) if cell is not None else math.nan

    def ratio(a: float, b: float) -> float:
        return a / b if b and not math.isnan(b) else math.nan

    mid = 20 if 20 in args.k else max(args.k)
    lo = 5 if 5 in args.k else min(args.k)
    hi = 40 if 40 in args.k else max(args.k)
    graph, time = "graph_mb", "seconds_per_task"
    # (label, measured key, ours (method, K), reference (method, K), target kind, bound)
    ratios = [
        (f"graph  implicit / maml (K={mid})", graph, ("implicit", mid), ("maml", mid), "<=", 0.2),
        (f"graph  implicit / anil_recompute (K={mid})", graph, ("implicit", mid), ("anil_recompute", mid), "<=", 0.5),
        (f"graph  implicit / anil (K={mid})", graph, ("implicit", mid), ("anil", mid), None, None),
        (f"graph  implicit K={hi} / K={lo}", graph, ("implicit", hi), ("implicit", lo), "within", 0.10),
        (f"time   implicit K={hi} / K={lo}", time, ("implicit", hi), ("implicit", lo), "within", 0.20),
        (f"time   maml K={hi} / K={lo}", time, ("maml", hi), ("maml", lo), None, None),
        (f"time   implicit / maml (K={mid})", time, ("implicit", mid), ("maml", mid), None, None),
    ]
    if cuda:
        ratios.append(
            (f"CUDA   implicit / maml (K={mid})", "cuda_peak_mb", ("implicit", mid), ("maml", mid), None, None)
        )
    print("\nratios (ours / reference, measured side by side above)")
    met_all = True
    for label, key, (ma, ka), (mb, kb), kind, bound in ratios:
        value = ratio(get(ma, ka, key), get(mb, kb, key))
        if kind is None or math.isnan(value):
            verdict = "" if kind is None else "  target: not measured"
        else:
            ok = value <= bound if kind == "<=" else abs(value - 1) <= bound
            met_all &= ok
            target = f"<= {bound:g}" if kind == "<=" else f"1 +- {bound:g}"
            verdict = f"  target {target}: {'met' if ok else 'NOT met'}"
        print(f"  {label:44s} {value:8.3f}{verdict}")
    print(f"\nall targets met: {'yes' if met_all else 'no'}")
    if torch.cuda.is_available() and not cuda:
        print("(CUDA is available: run with --device cuda for the CUDA peaks)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--k", type=_ints, default=(1, 5, 10, 20, 40), help="inner steps K, comma separated")
    parser.add_argument("--cg-steps", type=int, default=20)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--repeats", type=int, default=3, help="timing rounds over the grid (the fastest counts)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=5, help="alternating timing rounds of the torchopt row")
    parser.add_argument("--time-threads", type=_ints, default=(1, 2), help="thread counts of the torchopt time row")
    parser.add_argument("--no-grid", action="store_true", help="print the issue rows only")
    args = parser.parse_args()
    issue_rows(args)
    if not args.no_grid:
        grid(args)


if __name__ == "__main__":
    main()
