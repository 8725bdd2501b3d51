"""Figures of the compressive meta-learning experiment (:mod:`metalab.experiments.compressive`).

Built on ``matplotlib.figure.Figure`` (no pyplot state), like :mod:`metalab.plots`.  Each function
takes the DataFrame made by :func:`metalab.core.collect` and returns a figure, or ``None`` when the
records hold nothing for it.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from metalab.plots import styles
from metalab.plots.common import figures_from, part_rows, row_of_axes

TASK_TITLES = {"pca": "PCA", "ridge": "ridge regression", "kmeans": "k-means", "autoencoder": "autoencoder"}


EXPERIMENT = "compressive"


def _style(method: str) -> dict:
    return styles.mpl(EXPERIMENT, method)


def _task_axes(fig: Figure, tasks: list[str]) -> dict[str, object]:
    return dict(zip(tasks, row_of_axes(fig, len(tasks)), strict=True))


def _relative_panels(rows: pd.DataFrame, x: str, xlabel: str, title: str, log_x: bool) -> Figure:
    tasks = list(dict.fromkeys(rows["task"]))
    fig = Figure(figsize=(3.6 * len(tasks) + 0.8, 3.6), layout="constrained")
    for task, ax in _task_axes(fig, tasks).items():
        group = rows[rows["task"] == task]
        for method, line in group.groupby("method", sort=False):
            line = line.sort_values(x)
            ax.plot(line[x], line["relative_error"], marker="o", **_style(method))
            if "q25" in line and method != "exact":
                ax.fill_between(
                    line[x], line["q25"], line["q75"], color=styles.style(EXPERIMENT, method).colour, alpha=0.15
                )
        ax.set(xlabel=xlabel, title=TASK_TITLES.get(task, task), yscale="log")
        if log_x:
            ax.set_xscale("log")
        ax.grid(True, which="both", alpha=0.3)
    first = next(iter(fig.axes))
    first.set_ylabel("error / exact error (median, quartiles)")
    first.legend(fontsize=7)
    fig.suptitle(title)
    return fig


def sketch_size_figure(frame: pd.DataFrame) -> Figure | None:
    """Relative error against sketch size m, learned vs random, one panel per task (the paper's Figs. 3-4)."""
    rows = part_rows(frame, "sketch_size")
    if rows.empty:
        return None
    return _relative_panels(rows, "sketch_size", "sketch size m", "Error relative to the exact method", log_x=False)


def privacy_figure(frame: pd.DataFrame) -> Figure | None:
    """Relative error against the privacy budget epsilon (smaller epsilon: more noise on the sketch)."""
    rows = part_rows(frame, "privacy")
    if rows.empty:
        return None
    first = rows.iloc[0]
    title = f"Privacy-utility ({first['mechanism']} mechanism, m = {int(first['sketch_size'])})"
    return _relative_panels(rows, "epsilon", "privacy budget ε", title, log_x=True)


def training_figure(frame: pd.DataFrame) -> Figure | None:
    """Meta-training: batch loss and the held-out median relative error, per task."""
    rows = part_rows(frame, "training")
    if rows.empty:
        return None
    tasks = list(dict.fromkeys(rows["task"]))
    fig = Figure(figsize=(3.6 * len(tasks) + 0.8, 3.4), layout="constrained")
    for task, ax in _task_axes(fig, tasks).items():
        group = rows[(rows["task"] == task) & rows["held_out"].notna()]
        ax.plot(group["step"], group["held_out"], marker=".", **_style("learned"))
        ax.axhline(1.0, **_style("exact"), linestyle="--")
        ax.set(xlabel="meta-training step", title=TASK_TITLES.get(task, task), yscale="log")
        ax.grid(True, which="both", alpha=0.3)
    fig.axes[0].set_ylabel("held-out error / exact error (median)")
    fig.axes[0].legend(fontsize=7)
    return fig


def decoding_figure(frame: pd.DataFrame) -> Figure | None:
    """k-means: seconds to decode (and to sketch) against the data set size n, log-log."""
    rows = part_rows(frame, "decoding")
    if rows.empty:
        return None
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    time_ax, error_ax = fig.subplots(1, 2)
    for method, group in rows.groupby("method", sort=False):
        group = group.sort_values("n")
        label = "exact k-means (k-means++ and Lloyd)" if method == "exact" else styles.label(EXPERIMENT, method)
        time_ax.plot(
            group["n"], group["decode_seconds"], marker="o", color=styles.style(EXPERIMENT, method).colour, label=label
        )
        if method != "exact":
            time_ax.plot(
                group["n"],
                group["sketch_seconds"],
                marker="x",
                linestyle=":",
                color=styles.style(EXPERIMENT, method).colour,
            )
        error_ax.plot(group["n"], group["relative_error"], marker="o", **_style(method))
    time_ax.set(
        xscale="log", yscale="log", xlabel="samples n", ylabel="seconds", title="Decode (solid) and sketch (dotted)"
    )
    error_ax.set(xscale="log", xlabel="samples n", ylabel="SSE / exact SSE", title="k-means error")
    for ax in (time_ax, error_ax):
        ax.grid(True, which="both", alpha=0.3)
    time_ax.legend(fontsize=7)
    return fig


def throughput_figure(frame: pd.DataFrame) -> Figure | None:
    """Rows per second of sketching per feature map and scheduler."""
    rows = part_rows(frame, "throughput")
    if rows.empty:
        return None
    table = rows.pivot_table(index="method", columns="scheduler", values="rows_per_second")
    fig = Figure(figsize=(6, 3.4), layout="constrained")
    ax = fig.subplots()
    table.plot.bar(ax=ax, rot=0)
    ax.set(ylabel="rows per second", yscale="log", title=f"Sketching {int(rows['rows'].iloc[0]):,} rows")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    return fig


def example_figure(frame: pd.DataFrame) -> Figure | None:
    """One held-out data set per task with every method's answer drawn over it."""
    rows = part_rows(frame, "example")
    if rows.empty:
        return None
    tasks = list(dict.fromkeys(rows["task"]))
    fig = Figure(figsize=(3.8 * len(tasks) + 0.8, 3.8), layout="constrained")
    for task, ax in _task_axes(fig, tasks).items():
        draw_example(ax, rows[rows["task"] == task], task)
    return fig


def draw_example(ax, rows: pd.DataFrame, task: str) -> None:
    """Data as grey dots; centroids as large markers (k-means), reconstructions (PCA, autoencoder) or
    (target, prediction) pairs (ridge) as small ones, labelled with each method's relative error."""
    data = rows[rows["method"] == "data"]
    ax.scatter(data["x"], data["y"], s=6, color=styles.style(EXPERIMENT, "data").colour, label="data")
    markers = {"exact": "s", "learned": "o", "random": "^"}
    for method in ("exact", "random", "learned"):
        answer = rows[rows["method"] == method]
        if answer.empty:
            continue
        label = f"{method} ({answer['relative_error'].iloc[0]:.2f}x)"
        size = 90 if task == "kmeans" else 8
        ax.scatter(
            answer["x"],
            answer["y"],
            s=size,
            marker=markers[method],
            color=styles.style(EXPERIMENT, method).colour,
            label=label,
            edgecolors="black" if task == "kmeans" else "none",
            linewidths=0.6,
            alpha=0.9,
        )
    if task == "ridge":
        ax.set(xlabel="target y", ylabel="prediction")
    else:
        ax.set(xlabel="x1", ylabel="x2")
    ax.set_title(TASK_TITLES.get(task, task))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)


def compressive_figures(frame: pd.DataFrame) -> dict[str, Figure]:
    """Every figure the records allow, keyed by part."""
    return figures_from(
        frame,
        {
            "training": training_figure,
            "sketch_size": sketch_size_figure,
            "privacy": privacy_figure,
            "decoding": decoding_figure,
            "throughput": throughput_figure,
            "example": example_figure,
        },
    )
