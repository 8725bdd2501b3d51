"""The ``memory`` part: graph memory, time per task (and optionally a fresh process's peak RSS) of one
hypergradient per method and inner-step count K, and the paper's headline ratios from those records."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator

from metalab.core import Record, Unit, resolve_device
from metalab.experiments.memory_reduced.config import MemoryReducedConfig
from metalab.experiments.memory_reduced.context import (
    RunContext,
    make_model,
    model_spec,
    options,
    sampler,
    threaded_unit,
)
from metalab.implicit.measure import MB, measure_method, peak_rss_of_hypergradient

#: the cost of one measure_rss subprocess (interpreter and torch start-up), in inner-step units
RSS_COST = 500


def memory_units(config: MemoryReducedConfig, context: RunContext) -> list[Unit]:
    """One unit per (method, K): one record each."""
    device = resolve_device(config.device)

    @functools.cache
    def setup():
        """The measured meta-batch (on the CPU and on the device), the model, and the RSS baseline."""
        batch = sampler(config, context.data.train, config.memory_shots, "memory").sample_batch(config.memory_tasks)
        baseline = math.nan
        if config.measure_rss:
            spec = model_spec(config, config.seed)
            baseline = peak_rss_of_hypergradient(None, spec, batch, options(config), threads=config.threads) / MB
        return batch, batch.to(device), make_model(config, config.seed), baseline

    def measure(method: str, K: int) -> Iterator[Record]:
        batch, device_batch, (backbone, params, head), rss_baseline = setup()
        opts = options(config, inner_steps=K)
        values = measure_method(
            method,
            backbone,
            params,
            head,
            device_batch,
            opts,
            repeats=config.timing_repeats,
            threads=config.threads,
            device=device,
        )
        rss = math.nan
        if config.measure_rss:
            spec = model_spec(config, config.seed)
            rss = peak_rss_of_hypergradient(method, spec, batch, opts, threads=config.threads) / MB
        yield Record(
            "memory",
            method,
            K,
            {
                "inner_steps": K,
                "cg_steps": config.cg_steps,
                "ways": config.ways,
                "shots": config.memory_shots,
                "queries": config.queries,
                "hidden": config.hidden,
                "tasks": config.memory_tasks,
                "timing_repeats": config.timing_repeats,
                "dataset": context.data.name,
                "device": str(device),
                **values,
                "rss_mb": rss,
                "rss_extra_mb": rss - rss_baseline,
            },
        )

    def weight(K: int) -> float:
        calls = 1 + config.timing_repeats + (device.type == "cuda")
        return calls * config.memory_tasks * (K + config.cg_steps + 2) + (RSS_COST if config.measure_rss else 0)

    return [
        threaded_unit(config, functools.partial(measure, method, K), weight(K))
        for method in config.methods
        for K in config.k_grid
    ]


def memory_ratios(frame) -> dict[str, float]:
    """The paper's headline ratios from the memory records (NaN where a method or K is missing).

    ``implicit_vs_maml`` and ``implicit_vs_anil_recompute``: graph memory at K=20 (else the largest K
    measured); ``implicit_k_max_vs_k_min``: the implicit method's graph memory at the largest vs the
    smallest K >= 5 (else the smallest K); ``time_k_max_vs_k_min``: the same for its seconds per task.
    """
    rows = frame[frame["part"] == "memory"] if "part" in frame else frame
    table = rows.pivot_table(index="inner_steps", columns="method", values=["graph_mb", "seconds_per_task"])
    ks = sorted(table.index)
    if not ks:
        return {}
    k_mid = 20 if 20 in ks else ks[-1]
    k_lo = min([k for k in ks if k >= 5], default=ks[0])
    k_hi = ks[-1]

    def ratio(column: str, method: str, k: int, reference: str, k_reference: int) -> float:
        try:
            a, b = float(table.loc[k, (column, method)]), float(table.loc[k_reference, (column, reference)])
        except KeyError:
            return math.nan
        return a / b if b and not math.isnan(b) else math.nan

    return {
        "implicit_vs_maml": ratio("graph_mb", "implicit", k_mid, "maml", k_mid),
        "implicit_vs_anil_recompute": ratio("graph_mb", "implicit", k_mid, "anil_recompute", k_mid),
        "implicit_k_max_vs_k_min": ratio("graph_mb", "implicit", k_hi, "implicit", k_lo),
        "time_k_max_vs_k_min": ratio("seconds_per_task", "implicit", k_hi, "implicit", k_lo),
    }
