"""Figures of the Meta Subspace Pursuit experiment (:mod:`metalab.experiments.meta_sp`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter

from metalab.plots import styles
from metalab.plots.common import figures_from, log_floor, part_rows, row_of_axes

EXPERIMENT = "meta_sp"


def _style(method: str) -> dict:
    return styles.mpl(EXPERIMENT, method)


def convergence_figure(frame: pd.DataFrame) -> Figure | None:
    """Subspace error per iteration for every method (log scale): Meta-SP's linear rate to a floor.

    Values under the axis floor (the oracle's exact recovery) are drawn on the floor."""
    rows = part_rows(frame, "convergence")
    if rows.empty:
        return None
    rows = rows.dropna(subset=["sin_theta"])
    floor = log_floor(rows, "sin_theta")
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for method, group in rows.groupby("method", sort=False):
        group = group.sort_values("step")
        single = len(group) == 1
        ax.plot(
            group["step"],
            group["sin_theta"].clip(lower=floor),
            marker="o" if single else None,
            linestyle="none" if single else "-",
            **_style(method),
        )
    ax.set_yscale("log")
    ax.set_ylim(bottom=floor / 1.5)
    ax.set_xlabel("iteration")
    ax.set_ylabel(r"subspace error $\sin\theta(\hat B, B^*)$")
    first = rows.iloc[0]
    ax.set_title(f"Convergence (m = {int(first['n_samples'])} samples per task, rank {int(first['rank'])})")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(True, which="both", alpha=0.3)
    return fig


def _mean_band(ax, rows: pd.DataFrame, x: str, y: str, method: str, floor: float) -> None:
    stats = rows.groupby(x)[y].agg(["mean", "min", "max"]).sort_index().clip(lower=floor)
    ax.plot(stats.index, stats["mean"], marker="o", **_style(method))
    ax.fill_between(stats.index, stats["min"], stats["max"], color=styles.style(EXPERIMENT, method).colour, alpha=0.12)


def samples_figure(frame: pd.DataFrame) -> Figure | None:
    """Final subspace error against samples per task (mean and range over repeats)."""
    rows = part_rows(frame, "samples")
    if rows.empty:
        return None
    fig = Figure(figsize=(10, 4), layout="constrained")
    error_ax, mse_ax = fig.subplots(1, 2)
    error_floor = log_floor(rows, "sin_theta")
    for method, group in rows.groupby("method", sort=False):
        _mean_band(error_ax, group, "n_samples", "sin_theta", method, error_floor)
        _mean_band(mse_ax, group, "n_samples", "few_shot_mse", method, 0.0)
    error_ax.set_ylim(bottom=error_floor / 1.5)
    error_ax.set(
        xlabel="samples per task m",
        ylabel=r"$\sin\theta(\hat B, B^*)$",
        yscale="log",
        title="Subspace error vs samples per task",
    )
    mse_ax.set(
        xlabel="samples per task m",
        ylabel="few-shot MSE on new tasks",
        yscale="log",
        title="Few-shot prediction after fitting the head",
    )
    error_ax.legend(fontsize=8, ncol=2)
    for ax in (error_ax, mse_ax):
        ax.grid(True, which="both", alpha=0.3)
    return fig


def rank_figure(frame: pd.DataFrame) -> Figure | None:
    """Meta-SP with the rank under-, well- and over-specified."""
    rows = part_rows(frame, "rank")
    if rows.empty:
        return None
    stats = rows.groupby("fitted_rank")[["sin_theta", "few_shot_mse"]].mean().sort_index()
    true_rank = int(rows["rank"].iloc[0])
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    fitted = stats.index.astype(int)
    labels = [f"s{r - true_rank:+d}" if r != true_rank else "s" for r in fitted]
    colours = ["#d62728" if r == true_rank else "#aaaaaa" for r in fitted]
    left.bar(labels, stats["sin_theta"], color=colours)
    left.set(ylabel=r"$\sin\theta$ to the true subspace", title=f"Fitted rank vs true rank s = {true_rank}")
    right.bar(labels, stats["few_shot_mse"], color=colours)
    right.set(ylabel="few-shot MSE on new tasks", title="Prediction on new tasks")
    return fig


def noise_floor_figure(frame: pd.DataFrame) -> Figure | None:
    """Final ||Θ̂-Θ*||_F against sigma, d, T and m on log-log axes, with fitted and stated slopes."""
    rows = part_rows(frame, "noise_floor")
    if rows.empty:
        return None
    factors = [f for f in ("noise", "d", "n_tasks", "n_samples") if f in set(rows["factor"])]
    names = {"noise": r"noise $\sigma$", "d": "dimension d", "n_tasks": "tasks T", "n_samples": "samples per task m"}
    fig = Figure(figsize=(3.2 * len(factors), 3.4), layout="constrained")
    axes = row_of_axes(fig, len(factors))
    for ax, factor in zip(axes, factors, strict=True):
        means = rows[rows["factor"] == factor].groupby("value")["coef_error_fro"].mean().sort_index()
        x, y = means.index.to_numpy(float), means.to_numpy(float)
        ax.loglog(x, y, "o", color=styles.style(EXPERIMENT, "meta_sp").colour, label="Meta-SP")
        expected = float(rows[rows["factor"] == factor]["expected_slope"].iloc[0])
        if len(x) >= 2:
            slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
            ax.loglog(
                x,
                np.exp(intercept) * x**slope,
                "-",
                color=styles.style(EXPERIMENT, "meta_sp").colour,
                label=f"fit: slope {slope:.2f}",
            )
            anchor = np.exp(np.mean(np.log(y)) - expected * np.mean(np.log(x)))
            ax.loglog(x, anchor * x**expected, "--", color="black", label=f"rate: slope {expected:g}")
        ax.set(xlabel=names[factor], title=names[factor])
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(x)
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel(r"$\|\hat\Theta - \Theta^*\|_F$")
    fig.suptitle(r"Noise floor against the stated rate $O(\sigma\sqrt{dT/m})$")
    return fig


def _bar_by_method(rows: pd.DataFrame, column: str, ylabel: str, title: str, log: bool = False) -> Figure:
    stats = rows.groupby("method", sort=False)[column].mean()
    fig = Figure(figsize=(8, 3.6), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(
        [styles.label(EXPERIMENT, m) for m in stats.index],
        stats.to_numpy(),
        color=[styles.style(EXPERIMENT, m).colour for m in stats.index],
    )
    ax.set(ylabel=ylabel, title=title)
    if log:
        ax.set_yscale("log")
    ax.tick_params(axis="x", labelrotation=30)
    return fig


def air_quality_figure(frame: pd.DataFrame) -> Figure | None:
    """Few-shot PM2.5 prediction error on held-out station-days."""
    rows = part_rows(frame, "air_quality")
    if rows.empty:
        return None
    first = rows.iloc[0]
    return _bar_by_method(
        rows,
        "few_shot_mse",
        "MSE on query hours (standardised PM2.5)",
        f"Beijing air quality: {int(first['n_test_tasks'])} held-out station-days, "
        f"{int(first['support'])} support hours",
    )


def time_to_target_figure(frame: pd.DataFrame) -> Figure | None:
    """Seconds each method needs to reach the target subspace error (methods that never do are omitted)."""
    rows = part_rows(frame, "time_to_target")
    rows = rows.dropna(subset=["seconds_to_target"]) if not rows.empty else rows
    if rows.empty:
        return None
    target = float(rows["target_error"].iloc[0])
    return _bar_by_method(
        rows, "seconds_to_target", "seconds (log scale)", f"Time to reach sin-theta <= {target:g}", log=True
    )


def meta_sp_figures(frame: pd.DataFrame) -> dict[str, Figure]:
    """Every Meta-SP figure that the records allow, keyed by part."""
    makers = {
        "convergence": convergence_figure,
        "samples": samples_figure,
        "rank": rank_figure,
        "noise_floor": noise_floor_figure,
        "air_quality": air_quality_figure,
        "time_to_target": time_to_target_figure,
    }
    return figures_from(frame, makers)
