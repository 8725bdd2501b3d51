"""Figures of the sparse-recovery (MLSR) experiment, from the records of :mod:`metalab.experiments.mlsr`.

Built on ``matplotlib.figure.Figure`` (no pyplot state), like :mod:`metalab.plots`.  Each function takes
the DataFrame made by :func:`metalab.core.collect` and returns a figure, or ``None`` when the records
hold nothing for it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from metalab.plots import styles
from metalab.plots.common import figures_from, part_rows, row_of_axes

#: the colours of Figure 2 of the paper: truth, before adaptation, after 1 step, after the last step
FIT_STYLES = {
    "truth": {"color": "#ff7f0e", "linestyle": "-"},
    0: {"color": "#2ca02c", "linestyle": "-"},
    1: {"color": "#d62728", "linestyle": "--"},
    "last": {"color": "#9467bd", "linestyle": "--"},
}


EXPERIMENT = "mlsr"


def _style(method: str, *, marker: bool = False) -> dict:
    """The registry's colour, label and line style (MAML + L1 dashed, so it stays visible on top of a
    MAML curve it matches) and, on request, its marker."""
    return styles.mpl(EXPERIMENT, method, marker=marker, line=True)


def _curve_with_band(ax, group: pd.DataFrame, x: str, y: str, method: str, **options) -> None:
    """One method's curve with its 95 % confidence band (``ci95``, when the records have one)."""
    ax.plot(group[x], group[y], **options, **_style(method, marker=True))
    if "ci95" in group and group["ci95"].notna().any():
        low, high = group[y] - group["ci95"], group[y] + group["ci95"]
        ax.fill_between(group[x], low, high, color=styles.style(EXPERIMENT, method).colour, alpha=0.15)


def _methods(rows: pd.DataFrame) -> list[str]:
    return styles.ordered(EXPERIMENT, rows["method"])


def fits_figure(frame: pd.DataFrame) -> Figure | None:
    """Figure 2: a grid of test sinusoids (rows) by method (columns): truth, before, after 1 and the last step."""
    rows = part_rows(frame, "fits")
    if rows.empty:
        return None
    curves = rows[rows["method"] != "support"]
    support = rows[rows["method"] == "support"]
    methods = _methods(curves)
    tasks = sorted(curves["task_index"].unique())
    if not methods or not tasks:
        return None
    last = int(curves["adapt_steps"].max())
    fig = Figure(figsize=(3.0 * len(methods), 2.3 * len(tasks)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(tasks), len(methods), sharex=True, squeeze=False))
    for i, t in enumerate(tasks):
        for j, method in enumerate(methods):
            ax = axes[i, j]
            mine = curves[(curves["task_index"] == t) & (curves["method"] == method)]
            truth = mine[mine["adapt_steps"] == mine["adapt_steps"].min()].sort_values("x")
            ax.plot(truth["x"], truth["y_true"], lw=2, label="ground truth", **FIT_STYLES["truth"])
            for steps in sorted(mine["adapt_steps"].unique()):
                style = FIT_STYLES.get(int(steps), FIT_STYLES["last"]) if steps != last else FIT_STYLES["last"]
                label = "pre-update" if steps == 0 else f"{int(steps)} step" + ("s" if steps > 1 else "")
                curve = mine[mine["adapt_steps"] == steps].sort_values("x")
                ax.plot(curve["x"], curve["y_pred"], lw=1.4, label=label, **style)
            pts = support[support["task_index"] == t]
            ax.plot(pts["x"], pts["y_true"], "^", color="black", ms=5, label="support points")
            if i == 0:
                ax.set_title(styles.label(EXPERIMENT, method))
            if j == 0:
                ax.set_ylabel(f"task {int(t)}")
            ax.grid(True, alpha=0.3)
    axes[0, -1].legend(fontsize=7, loc="upper right")
    fig.suptitle("Fits on test sinusoids before and after test-time adaptation")
    return fig


def sinusoid_figure(frame: pd.DataFrame) -> Figure | None:
    """Figure 3: test MSE against adaptation steps, one panel per inner-step count used in meta-training."""
    rows = part_rows(frame, "sinusoid")
    if rows.empty:
        return None
    panels = sorted(rows["train_inner_steps"].unique())
    fig = Figure(figsize=(5.2 * len(panels), 4.0), layout="constrained")
    axes = row_of_axes(fig, len(panels), sharey=True)
    published = part_rows(frame, "published")
    for ax, inner in zip(axes, panels, strict=True):
        mine = rows[rows["train_inner_steps"] == inner]
        for method in _methods(mine):
            group = mine[mine["method"] == method].sort_values("adapt_steps")
            _curve_with_band(ax, group, "adapt_steps", "mse", method, ms=3)
        if not published.empty and int(published["train_inner_steps"].iloc[0]) == inner:
            ax.plot(
                published["adapt_steps"],
                published["published_mse"],
                "*",
                ms=11,
                color=styles.style(EXPERIMENT, "maml").colour,
                markeredgecolor="black",
                label="MAML, published (5-shot)",
            )
        ax.set(
            xlabel="gradient steps at test time",
            title=f"meta-trained with {int(inner)} inner step" + ("s" if inner > 1 else ""),
        )
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("MSE on test sinusoids")
    axes[0].legend(fontsize=8)
    return fig


def digits_figure(frame: pd.DataFrame) -> Figure | None:
    """Figure 5: digit-pair accuracy against adaptation steps, short term and long term."""
    rows = part_rows(frame, "digits")
    if rows.empty:
        return None
    short_end = int(rows.loc[rows["term"] == "short", "adapt_steps"].max()) if "term" in rows else 10
    fig = Figure(figsize=(10, 4), layout="constrained")
    short_ax, long_ax = fig.subplots(1, 2, sharey=True)
    for method in _methods(rows):
        group = rows[rows["method"] == method].sort_values("adapt_steps")
        short = group[group["adapt_steps"] <= short_end]
        short_ax.plot(short["adapt_steps"], short["accuracy"], ms=3, **_style(method, marker=True))
        long_ax.plot(group["adapt_steps"], group["accuracy"], **_style(method))
    for ax, title in ((short_ax, "short term"), (long_ax, "long term")):
        ax.axhline(0.5, color="black", lw=0.8, ls=":")
        ax.set(xlabel="gradient steps on the support set", title=title)
        ax.grid(True, alpha=0.3)
    short_ax.set_ylabel("query accuracy (digit pairs)")
    short_ax.legend(fontsize=8)
    return fig


def diagnostics_figure(frame: pd.DataFrame) -> Figure | None:
    """Head-magnitude histograms, head sparsity and the RIP diagnostic of the body against hidden width."""
    rows = part_rows(frame, "diagnostics")
    if rows.empty:
        return None
    fig = Figure(figsize=(14, 4), layout="constrained")
    hist_ax, sparse_ax, rip_ax = fig.subplots(1, 3)
    hist = rows[rows["kind"] == "histogram"]
    if not hist.empty:
        width = sorted(hist["width"].unique())[len(hist["width"].unique()) // 2]
        for method in _methods(hist):
            mine = hist[(hist["method"] == method) & (hist["width"] == width)].sort_values("bin_low")
            total = max(int(mine["count"].sum()), 1)
            labels = ["0"] + [f"{v:.0e}" for v in mine["bin_high"].iloc[1:]]
            positions = np.arange(len(mine))
            hist_ax.step(positions, mine["count"] / total, where="mid", **_style(method))
        hist_ax.set_xticks(positions[::4], labels[::4], rotation=30, fontsize=7)
        hist_ax.set(
            xlabel="|head weight| (bin upper edge; first bin: below 1e-4)",
            ylabel="fraction of weights",
            title=f"head magnitudes, width {int(width)}",
        )
        hist_ax.legend(fontsize=8)
    sparsity = rows[rows["kind"] == "sparsity"]
    for method in _methods(sparsity):
        mine = sparsity[sparsity["method"] == method].sort_values("width")
        sparse_ax.plot(mine["width"], mine["sparsity"], **_style(method, marker=True))
    sparse_ax.set(xscale="log", xlabel="hidden width p", ylabel="fraction of zero head weights", title="head sparsity")
    if not sparsity.empty:
        sparse_ax.set_ylim(-0.02, 1.02)
        sparse_ax.legend(fontsize=8)
    rip = rows[rows["kind"] == "rip"]
    for method in _methods(rip):
        mine = rip[rip["method"] == method].sort_values("width")
        rip_ax.plot(mine["width"], mine["delta_k"], **_style(method, marker=True))
        rip_ax.plot(
            mine["width"],
            mine["coherence"],
            marker="s",
            ls="--",
            color=styles.style(EXPERIMENT, method).colour,
            label=f"{styles.label(EXPERIMENT, method)}: coherence",
        )
    if not rip.empty:
        k = int(rip["rip_k"].iloc[0])
        rip_ax.axhline(np.sqrt(2) - 1, color="black", lw=0.8, ls=":", label=r"$\sqrt{2}-1$")
        rip_ax.set(
            xscale="log",
            xlabel="hidden width p",
            ylabel=rf"sampled $\delta_{{{k}}}$ (solid) / coherence (dashed)",
            title="restricted isometry of the support features",
        )
        rip_ax.legend(fontsize=7)
    for ax in (hist_ax, sparse_ax, rip_ax):
        ax.grid(True, alpha=0.3)
    return fig


def training_figure(frame: pd.DataFrame) -> Figure | None:
    """Meta-training query loss against iteration, one panel per (task, inner steps)."""
    rows = part_rows(frame, "training")
    if rows.empty:
        return None
    base = rows.groupby("task")["width"].agg(lambda w: w.mode().iloc[0])
    rows = rows[rows["width"] == rows["task"].map(base)]
    panels = list(rows.groupby(["task", "train_inner_steps"]).groups)
    fig = Figure(figsize=(4.6 * len(panels), 3.6), layout="constrained")
    axes = row_of_axes(fig, len(panels))
    for ax, (task, inner) in zip(axes, panels, strict=True):
        mine = rows[(rows["task"] == task) & (rows["train_inner_steps"] == inner)]
        for method in _methods(mine):
            group = mine[mine["method"] == method].sort_values("iteration")
            ax.plot(group["iteration"], group["query_loss"], **_style(method))
        ax.set(
            xlabel="meta-iteration",
            ylabel="query loss after the inner loop",
            title=f"{task}, {int(inner)} inner step" + ("s" if inner > 1 else ""),
        )
        if task == "sinusoid":
            ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def _rl_rows(frame: pd.DataFrame, kind: str) -> pd.DataFrame:
    rows = part_rows(frame, "rl")
    return rows[rows["kind"] == kind] if not rows.empty else rows


def rl_returns_figure(frame: pd.DataFrame) -> Figure | None:
    """Figure 6: return after the inner loop against meta-iteration, and return against test-time steps."""
    training, adaptation = _rl_rows(frame, "meta_iteration"), _rl_rows(frame, "adaptation")
    if training.empty and adaptation.empty:
        return None
    fig = Figure(figsize=(11, 4), layout="constrained")
    curve_ax, adapt_ax = fig.subplots(1, 2)
    for method in _methods(training):
        group = training[training["method"] == method].sort_values("iteration")
        curve_ax.plot(group["iteration"], group["return_after"], lw=1.6, **_style(method))
        curve_ax.plot(
            group["iteration"], group["return_before"], lw=0.9, ls=":", color=styles.style(EXPERIMENT, method).colour
        )
    curve_ax.set(
        xlabel="meta-iteration",
        ylabel="mean return of the meta-batch",
        title="meta-training (solid: after the inner loop, dotted: before)",
    )
    for method in _methods(adaptation):
        group = adaptation[adaptation["method"] == method].sort_values("adapt_steps")
        _curve_with_band(adapt_ax, group, "adapt_steps", "mean_return", method)
    if not adaptation.empty:
        adapt_ax.set_xticks(sorted(adaptation["adapt_steps"].astype(int).unique()))
    adapt_ax.set(
        xlabel="policy-gradient steps at test time", ylabel="mean return on evaluation tasks", title="adaptation"
    )
    for ax in (curve_ax, adapt_ax):
        ax.grid(True, alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=8)
    env = (training if not training.empty else adaptation)["env"].iloc[0]
    fig.suptitle(f"Meta-reinforcement learning on {env}")
    return fig


def rl_trajectories_figure(frame: pd.DataFrame) -> Figure | None:
    """2-D navigation paths (rows: methods, columns: goals) before adaptation and after 1 and the last step."""
    rows = _rl_rows(frame, "trajectory")
    if rows.empty:
        return None
    methods = _methods(rows)
    goals = sorted(rows["goal_index"].unique())
    last = int(rows["adapt_steps"].max())
    fig = Figure(figsize=(2.8 * len(goals) + 0.6, 2.8 * len(methods)), layout="constrained")
    axes = fig.subplots(len(methods), len(goals), squeeze=False, sharex=True, sharey=True)
    for i, method in enumerate(methods):
        for j, goal in enumerate(goals):
            ax = axes[i, j]
            mine = rows[(rows["method"] == method) & (rows["goal_index"] == goal)]
            for steps in sorted(mine["adapt_steps"].unique()):
                style = FIT_STYLES["last"] if steps == last else FIT_STYLES.get(int(steps), FIT_STYLES["last"])
                label = "pre-update" if steps == 0 else f"{int(steps)} step" + ("s" if steps > 1 else "")
                for k, (_, path) in enumerate(mine[mine["adapt_steps"] == steps].groupby("path")):
                    path = path.sort_values("t")
                    ax.plot(path["x"], path["y"], lw=1.1, color=style["color"], label=label if k == 0 else None)
            ax.add_patch(Rectangle((-0.5, -0.5), 1.0, 1.0, fill=False, ls=":", color="black", lw=0.8))
            ax.plot(0.0, 0.0, "o", color="black", ms=4, label="start")
            ax.plot(mine["goal_x"].iloc[0], mine["goal_y"].iloc[0], "*", color="gold", mec="black", ms=13, label="goal")
            ax.set_aspect("equal")
            if i == 0:
                ax.set_title(f"goal {int(goal)}")
            if j == 0:
                ax.set_ylabel(styles.label(EXPERIMENT, method))
            ax.grid(True, alpha=0.3)
    axes[0, -1].legend(fontsize=7, loc="lower right")
    fig.suptitle("2-D navigation: trajectories before and after test-time adaptation (dotted: the goals' square)")
    return fig


def mlsr_figures(frame: pd.DataFrame) -> dict[str, Figure]:
    """Every MLSR figure the records allow, keyed by part (``published`` is drawn into ``sinusoid``)."""
    makers = {
        "training": training_figure,
        "sinusoid": sinusoid_figure,
        "fits": fits_figure,
        "digits": digits_figure,
        "diagnostics": diagnostics_figure,
        "rl": rl_returns_figure,
        "rl_trajectories": rl_trajectories_figure,
    }
    return figures_from(frame, makers)
