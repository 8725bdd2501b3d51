"""Figures of the memory-reduced meta-learning experiment (:mod:`metalab.experiments.memory_reduced`).

Built on ``matplotlib.figure.Figure`` (no pyplot state), like :mod:`metalab.plots`.  Each function
takes the DataFrame made by :func:`metalab.core.collect` and returns a figure, or ``None`` when the
records hold nothing for it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from metalab.plots import styles
from metalab.plots.common import figures_from, part_rows, row_of_axes

EXPERIMENT = "memory_reduced"


def _style(method: str) -> dict:
    return styles.mpl(EXPERIMENT, method)


def memory_figure(frame: pd.DataFrame, log_y: bool = False) -> Figure | None:
    """Graph memory (bytes saved for backward) and seconds per task against K, one line per method."""
    rows = part_rows(frame, "memory")
    if rows.empty:
        return None
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    mem_ax, time_ax = fig.subplots(1, 2)
    for method, group in rows.groupby("method", sort=False):
        group = group.sort_values("inner_steps")
        mem_ax.plot(group["inner_steps"], group["graph_mb"], marker="o", **_style(method))
        time_ax.plot(group["inner_steps"], group["seconds_per_task"] * 1000, marker="o", **_style(method))
    first = rows.iloc[0]
    setting = f"{int(first['ways'])}-way {int(first['shots'])}-shot, Conv-4-{int(first['hidden'])}"
    mem_ax.set(xlabel="inner steps K", ylabel="graph memory (MB saved for backward)", title=f"Memory vs K ({setting})")
    time_ax.set(xlabel="inner steps K", ylabel="milliseconds per task", title="Time per task vs K")
    if log_y:
        mem_ax.set_yscale("log")
    if "cuda_peak_mb" in rows and rows["cuda_peak_mb"].notna().any():
        mem_ax.text(0.02, 0.98, "CUDA peaks in the records", transform=mem_ax.transAxes, va="top", fontsize=7)
    mem_ax.legend(fontsize=8)
    for ax in (mem_ax, time_ax):
        ax.grid(True, alpha=0.3)
    return fig


def training_figure(frame: pd.DataFrame) -> Figure | None:
    """Test accuracy against meta-training wall clock, one panel per shots setting."""
    rows = part_rows(frame, "training")
    if rows.empty:
        return None
    shots = sorted(rows["shots"].unique())
    fig = Figure(figsize=(5.5 * len(shots), 4.2), layout="constrained")
    axes = row_of_axes(fig, len(shots))
    for ax, k in zip(axes, shots, strict=True):
        for method, group in rows[rows["shots"] == k].groupby("method", sort=False):
            group = group.sort_values("iteration")
            ax.plot(group["seconds"], group["test_accuracy"], marker="o", markersize=3, **_style(method))
        dataset = rows["dataset"].iloc[0]
        ax.set(
            xlabel="meta-training wall clock (s)",
            ylabel="test accuracy after adaptation",
            title=f"{int(rows['ways'].iloc[0])}-way {int(k)}-shot ({dataset})",
        )
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    return fig


def cg_figure(frame: pd.DataFrame) -> Figure | None:
    """CG relative residual against N per lambda (failures marked), and the hypergradient error vs K and N."""
    rows = part_rows(frame, "cg")
    if rows.empty:
        return None
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    res_ax, err_ax = fig.subplots(1, 2)
    residual = rows[rows["sweep"] == "residual"]
    cmap = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]
    for i, (lam, group) in enumerate(residual.groupby("lam")):
        group = group.sort_values("cg_step")
        values = group["relative_residual"].clip(lower=1e-16)
        status = group["status"].iloc[0]
        label = f"λ = {lam:g}" + (f" ({status})" if bool(group["failed"].iloc[0]) else "")
        colour = cmap[i % len(cmap)]
        res_ax.plot(group["cg_step"], values, color=colour, label=label)
        if bool(group["failed"].iloc[0]):
            res_ax.plot(group["cg_step"].iloc[-1], values.iloc[-1], "x", color=colour, markersize=10)
    res_ax.set(xlabel="CG step N", ylabel=r"$\|r_N\| / \|b\|$", yscale="log", title="CG on the head Hessian")
    res_ax.legend(fontsize=8)
    errors = rows[rows["sweep"].isin(["inner_steps", "cg_steps"]) & (rows["steps"] > 0)]  # a log axis: K, N >= 1
    for sweep, group in errors.groupby("sweep"):
        group = group.sort_values("steps")
        label = "vs K (N large)" if sweep == "inner_steps" else "vs N (K large)"
        err_ax.plot(group["steps"], group["hypergrad_error"].clip(lower=1e-16), marker="o", label=label)
    if not errors.empty:
        err_ax.set(
            xscale="log",
            yscale="log",
            xlabel="K or N",
            ylabel="relative error vs dense IFT hypergradient",
            title=f"Hypergradient error (λ = {errors['lam'].iloc[0]:g})",
        )
        err_ax.legend(fontsize=8)
    for ax in (res_ax, err_ax):
        ax.grid(True, which="both", alpha=0.3)
    return fig


def final_figure(frame: pd.DataFrame) -> Figure | None:
    """Final test accuracy with 95% intervals per method and shots setting."""
    rows = part_rows(frame, "final")
    if "benchmark" in rows:
        rows = rows[rows["benchmark"] == "episodes"]
    if rows.empty:
        return None
    shots = sorted(rows["shots"].unique())
    methods = list(dict.fromkeys(rows["method"]))
    width = 0.8 / max(len(shots), 1)
    fig = Figure(figsize=(max(6, 1.1 * len(methods) + 2), 4.2), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(methods))
    hatches = ["", "//", "..", "xx"]
    for j, k in enumerate(shots):
        part = rows[rows["shots"] == k].set_index("method").reindex(methods)
        ax.bar(
            x + (j - (len(shots) - 1) / 2) * width,
            part["accuracy"],
            width,
            yerr=part["ci95"],
            capsize=3,
            color=[styles.style(EXPERIMENT, m).colour for m in methods],
            hatch=hatches[j % len(hatches)],
            edgecolor="black",
            linewidth=0.5,
            label=f"{int(k)}-shot",
        )
    ax.set_xticks(x, [styles.label(EXPERIMENT, m) for m in methods], rotation=25, ha="right", fontsize=8)
    first = rows.iloc[0]
    ax.set(
        ylabel="test accuracy (95% CI)",
        ylim=(0, 1),
        title=f"Final accuracy, {int(first['ways'])}-way, {int(first['episodes'])} test episodes ({first['dataset']})",
    )
    ax.axhline(1 / float(first["ways"]), color="grey", linestyle=":", linewidth=1)
    ax.legend(fontsize=8)
    return fig


def one_shot_figure(frame: pd.DataFrame) -> Figure | None:
    """Omniglot 20-way one-shot error of the trained backbones next to the published errors."""
    rows = part_rows(frame, "final")
    if "benchmark" not in rows:
        return None
    rows = rows[rows["benchmark"] == "omniglot_one_shot"]
    if rows.empty:
        return None
    labels, values, colours = [], [], []
    for _, row in rows.iterrows():
        method, predictor = row["method"], row["predictor"]
        if predictor == "published":
            labels.append(f"{method} (published)")
            colours.append("#c7c7c7")
        else:
            suffix = "" if predictor == "pixels" else f" [{predictor}]"
            labels.append(styles.label(EXPERIMENT, method) + suffix)
            colours.append(styles.style(EXPERIMENT, method).colour)
        values.append(100 * float(row["error_rate"]))
    order = np.argsort(values)
    fig = Figure(figsize=(8, max(3.0, 0.28 * len(values) + 1)), layout="constrained")
    ax = fig.add_subplot()
    ax.barh([labels[i] for i in order], [values[i] for i in order], color=[colours[i] for i in order])
    ax.invert_yaxis()
    ax.set(xlabel="error rate (%)", title="Omniglot 20-way one-shot benchmark (20 runs)")
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(True, axis="x", alpha=0.3)
    return fig


def memory_reduced_figures(frame: pd.DataFrame) -> dict[str, Figure]:
    """Every figure of the experiment that the records allow, keyed by part (plus ``one_shot``)."""
    makers = {
        "memory": memory_figure,
        "training": training_figure,
        "cg": cg_figure,
        "final": final_figure,
        "one_shot": one_shot_figure,
    }
    return figures_from(frame, makers)
