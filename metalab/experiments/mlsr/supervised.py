"""The supervised parts of the MLSR experiment (sinusoid regression, digit-pair classification and the
diagnostics of the recovered heads), each a list of weighted units yielding records."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from metalab.core import Record, Unit, resolve_device
from metalab.core.seeding import generator
from metalab.experiments.mlsr.config import PUBLISHED, PUBLISHED_PROTOCOL, SPARSITY_TOL, MLSRConfig
from metalab.experiments.mlsr.models import (
    MLSRContext,
    ModelSpec,
    Trained,
    adapt_predictions,
    adapt_rule,
    ci95,
    digit_pools,
    evaluation_cost,
    model_spec,
    recovered_heads,
    sinusoid_tasks,
    training_specs,
)
from metalab.sparse import body_features, head_sparsity, split_body, task_rip_estimates

#: bins of the head-magnitude histogram: exact zeros (below 1e-4), then 20 log-spaced bins up to 10
HIST_BINS = np.concatenate([[0.0], np.logspace(-4, 1, 21)])

# --------------------------------------------------------------------------------------------
# meta-training curves


def training_units(config: MLSRConfig, context: MLSRContext) -> list[Unit]:
    """Train every method of ``config.task`` with each inner-step count; the records come from the training."""
    return [context.unit([spec], 0.0, lambda: iter(())) for spec in training_specs(config)]


# --------------------------------------------------------------------------------------------
# sinusoid regression


def _eval_sinusoids(config: MLSRConfig):
    tasks = sinusoid_tasks(config)
    batch = tasks.fixed_tasks(config.eval_tasks, config.eval_shots, config.eval_query, seed=config.seed)
    device = resolve_device(config.device)
    return batch, (batch.support_x.to(device), batch.support_y.to(device)), batch.query_x.to(device)


def sinusoid_test_mse(config: MLSRConfig, model: Trained, steps: int) -> torch.Tensor:
    """MSE (steps + 1, tasks) of ``model`` on the config's fixed test sinusoids (``eval_tasks`` tasks of
    ``eval_shots`` support and ``eval_query`` query points) after 0..steps test-time steps."""
    batch, support, qx = _eval_sinusoids(config)
    with torch.no_grad():
        preds = adapt_predictions(config, model, support, qx, steps)
    return (preds - batch.query_y.to(preds.device)).square().flatten(2).mean(-1)


def _sinusoid_mse(config: MLSRConfig, context: MLSRContext, spec: ModelSpec, steps: int) -> torch.Tensor:
    """:func:`sinusoid_test_mse` of the trained ``spec``, computed once per run (the 'sinusoid' and 'published' parts
    share it)."""
    key = ("sinusoid_mse", spec, steps)
    if key not in context.evaluations:
        context.evaluations[key] = sinusoid_test_mse(config, context.models[spec], steps)
    return context.evaluations[key]


def _sinusoid_mse_cost(config: MLSRConfig, context: MLSRContext, spec: ModelSpec, steps: int) -> float:
    first = context.claim(("sinusoid_mse", spec, steps))
    return evaluation_cost(config.eval_tasks, steps, config.meta_batch) if first else 1.0


def sinusoid_units(config: MLSRConfig, context: MLSRContext) -> list[Unit]:
    """Figure 3: test MSE against adaptation steps for every method and inner-step count."""

    def unit(method: str, inner: int) -> Unit:
        spec = model_spec(config, "sinusoid", method, inner)

        def work() -> Iterator[Record]:
            mse = _sinusoid_mse(config, context, spec, config.adapt_steps)
            for s in range(config.adapt_steps + 1):
                row = {
                    "train_inner_steps": inner,
                    "adapt_steps": s,
                    "mse": float(mse[s].mean()),
                    "ci95": ci95(mse[s]),
                    "eval_shots": config.eval_shots,
                    "eval_tasks": config.eval_tasks,
                    "adapt_rule": adapt_rule(config, method),
                    "train_seconds": context.models[spec].seconds,
                }
                yield Record("sinusoid", method, s, row)

        return context.unit([spec], _sinusoid_mse_cost(config, context, spec, config.adapt_steps), work)

    return [unit(m, k) for k in config.inner_steps for m in config.methods]


def published_units(config: MLSRConfig, context: MLSRContext) -> list[Unit]:
    """MAML's MSE after 1 / 5 / 10 steps beside Finn et al.'s published 5-shot numbers."""
    if "maml" not in config.methods:
        return []
    inner = 1 if 1 in config.inner_steps else config.inner_steps[0]
    comparable = all(getattr(config, k) == v for k, v in PUBLISHED_PROTOCOL.items() if k != "train_inner_steps")
    comparable = comparable and inner == PUBLISHED_PROTOCOL["train_inner_steps"]
    spec = model_spec(config, "sinusoid", "maml", inner)
    steps = max(10, config.adapt_steps)

    def work() -> Iterator[Record]:
        mse = _sinusoid_mse(config, context, spec, steps)
        for s, published in PUBLISHED["maml"].items():
            ours = float(mse[s].mean())
            yield Record(
                "published",
                "maml",
                s,
                {
                    "adapt_steps": s,
                    "published_mse": published,
                    "mse": ours,
                    "ci95": ci95(mse[s]),
                    "ratio": ours / published,
                    "train_inner_steps": inner,
                    "meta_iterations": config.meta_iterations,
                    "published_iterations": 70_000,
                    "comparable": bool(comparable),
                },
            )

    return [context.unit([spec], _sinusoid_mse_cost(config, context, spec, steps), work)]


def fits_units(config: MLSRConfig, context: MLSRContext) -> list[Unit]:
    """Figure 2: predictions on ``n_fits`` fixed test sinusoids before adaptation and after 1 and
    ``adapt_steps`` steps (``step`` is the point's x); the support points are method ``"support"``."""
    inner = config.inner_steps[0]
    device = resolve_device(config.device)
    tasks = sinusoid_tasks(config)
    fixed = tasks.fixed_tasks(config.n_fits, config.eval_shots, 1, seed=config.seed + 104_729)
    grid = torch.linspace(*tasks.x_range, config.fit_points, dtype=fixed.support_x.dtype)
    truth = fixed.curve(grid)  # (B, n)
    steps_shown = sorted({0, 1, config.adapt_steps})

    def point(method: str, t: int, adapt_steps: int, x: float, y_true: float, y_pred: float) -> Record:
        values = {
            "task_index": t,
            "adapt_steps": adapt_steps,
            "train_inner_steps": inner,
            "x": x,
            "y_true": y_true,
            "y_pred": y_pred,
            "amplitude": float(fixed.amplitude[t]),
            "phase": float(fixed.phase[t]),
            "frequency": float(fixed.frequency[t]),
        }
        return Record("fits", method, x, values)

    def support_points() -> Iterator[Record]:
        for t in range(config.n_fits):
            for j in range(config.eval_shots):
                x, y = float(fixed.support_x[t, j, 0]), float(fixed.support_y[t, j, 0])
                yield point("support", t, -1, x, y, math.nan)

    def unit(method: str) -> Unit:
        spec = model_spec(config, "sinusoid", method, inner)

        def work() -> Iterator[Record]:
            qx = grid.reshape(1, -1, 1).expand(config.n_fits, -1, -1).to(device)
            support = (fixed.support_x.to(device), fixed.support_y.to(device))
            with torch.no_grad():
                preds = adapt_predictions(config, context.models[spec], support, qx, config.adapt_steps).cpu()
            for s in steps_shown:
                for t in range(config.n_fits):
                    for j in range(config.fit_points):
                        yield point(method, t, s, float(grid[j]), float(truth[t, j]), float(preds[s, t, j, 0]))

        return context.unit([spec], evaluation_cost(config.n_fits, config.adapt_steps, config.meta_batch), work)

    return [Unit(support_points), *(unit(m) for m in config.methods)]


# --------------------------------------------------------------------------------------------
# digit pairs


def digits_units(config: MLSRConfig, context: MLSRContext) -> list[Unit]:
    """Figure 5: accuracy on test digit pairs against adaptation steps 0..``long_steps``."""
    inner = config.inner_steps[0]
    device = resolve_device(config.device)

    def unit(method: str) -> Unit:
        spec = model_spec(config, "digits", method, inner)

        def work() -> Iterator[Record]:
            model = context.models[spec]
            batch = digit_pools(config)[1].sample(
                config.eval_tasks,
                config.digit_shots,
                config.digit_query,
                generator=generator(config.seed, "mlsr-digits-test"),
            )
            support = (batch.support_x.to(device), batch.support_y.to(device))
            with torch.no_grad():
                logits = adapt_predictions(config, model, support, batch.query_x.to(device), config.long_steps)
            accuracy = (logits.argmax(-1) == batch.query_y.to(device)).to(torch.float64).mean(-1)  # (steps + 1, B)
            for s in range(config.long_steps + 1):
                row = {
                    "train_inner_steps": inner,
                    "adapt_steps": s,
                    "accuracy": float(accuracy[s].mean()),
                    "ci95": ci95(accuracy[s]),
                    "term": "short" if s <= config.adapt_steps else "long",
                    "eval_tasks": config.eval_tasks,
                    "adapt_rule": adapt_rule(config, method, "digits"),
                    "train_seconds": model.seconds,
                }
                yield Record("digits", method, s, row)

        return context.unit([spec], evaluation_cost(config.eval_tasks, config.long_steps, config.meta_batch), work)

    return [unit(m) for m in config.methods]


# --------------------------------------------------------------------------------------------
# diagnostics: head sparsity, head magnitudes, restricted isometry of the support features


def _diagnostic_support(config: MLSRConfig, n_tasks: int) -> tuple[torch.Tensor, torch.Tensor]:
    device = resolve_device(config.device)
    if config.task == "sinusoid":
        batch = sinusoid_tasks(config).fixed_tasks(n_tasks, config.shots, 1, seed=config.seed + 7_919)
    else:
        g = generator(config.seed, "mlsr-digits-diag")
        batch = digit_pools(config)[1].sample(n_tasks, config.digit_shots, 1, generator=g)
    return batch.support_x.to(device), batch.support_y.to(device)


def _diagnostic_values(config: MLSRConfig, model: Trained, support: tuple) -> Iterator[dict[str, Any]]:
    """The sparsity row, the histogram rows and (MLSR and the random body) the RIP row of one model."""
    heads = recovered_heads(config, model, support)
    sparsity = head_sparsity(heads, tol=SPARSITY_TOL)
    nonzero = (heads.abs() >= SPARSITY_TOL).flatten(1).sum(-1).to(torch.float64)
    yield {
        "kind": "sparsity",
        "sparsity": sparsity.mean_fraction,
        "nonzero_mean": float(nonzero.mean()),
        "head_size": int(heads[0].numel()),
    }
    counts, _ = np.histogram(sparsity.magnitudes.cpu().numpy(), bins=HIST_BINS)
    for low, high, count in zip(HIST_BINS[:-1], HIST_BINS[1:], counts, strict=True):
        yield {"kind": "histogram", "bin_low": float(low), "bin_high": float(high), "count": int(count)}
    if model.spec.method in ("mlsr", "random"):
        body, _ = split_body(model.net)
        with torch.no_grad():
            Phi = body_features(body, model.params, support[0][:20])[..., :-1].to(torch.float64)
        estimates = task_rip_estimates(Phi, config.rip_k, trials=100, seed=config.seed)
        yield {
            "kind": "rip",
            "coherence": float(np.mean([e.coherence for e in estimates])),
            "delta_k": float(np.mean([e.delta for e in estimates])),
            "rip_k": config.rip_k,
            "live_columns": float(np.mean([e.live_columns for e in estimates])),
            "dead_columns": float(np.mean([e.dead_columns for e in estimates])),
        }


def diagnostics_units(config: MLSRConfig, context: MLSRContext) -> list[Unit]:
    """For bodies meta-trained at every width of ``widths``: head sparsity, head magnitudes and RIP."""
    inner, n_tasks = config.inner_steps[0], min(config.eval_tasks, 50)
    methods = [m for m in ("mlsr", "maml_fz", "random") if m in config.methods]

    def unit(width: int) -> Unit:
        specs = [model_spec(config, config.task, m, inner, width, config.diag_iterations) for m in methods]

        def work() -> Iterator[Record]:
            support = _diagnostic_support(config, n_tasks)
            common = {"task": config.task, "width": width, "train_inner_steps": inner, "lam": config.lam}
            for spec in specs:
                for values in _diagnostic_values(config, context.models[spec], support):
                    yield Record("diagnostics", spec.method, width, {**common, **values})

        return context.unit(specs, evaluation_cost(n_tasks * len(specs), inner, config.meta_batch), work)

    return [unit(w) for w in config.widths]
