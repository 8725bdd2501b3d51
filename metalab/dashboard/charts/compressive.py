"""Altair charts of the compressive page: the meta-training curve and one held-out data set with every
method's answer drawn over it, side by side once the answers exist."""

from __future__ import annotations

import altair as alt
import pandas as pd

from metalab.plots import styles
from metalab.plots.compressive import TASK_TITLES

EXPERIMENT = "compressive"
#: what the grey points and the marks of each task's answers are
ANSWERS = {
    "kmeans": ["grey: its samples", "marks: each method's centroids"],
    "pca": ["grey: its samples; marks: each sample projected on", "the principal subspace (first two coordinates)"],
    "autoencoder": ["grey: its samples; marks: each sample's", "reconstruction (first two coordinates)"],
    "ridge": ["grey: a perfect prediction; marks: each method's", "prediction against the target, one per sample"],
}
#: legends show the registry's full method labels (Vega-Lite cuts labels at 160 px by default)
LEGEND = {"labelLimit": 0, "titleLimit": 0}
WIDTH = {"training": 270, "example": 340}
HEIGHT = 320


def colour(methods: list[str], *, legend: alt.Legend | None) -> alt.Color:
    """Colour by method label with the registry's colours."""
    domain, colours = styles.colour_domain(EXPERIMENT, methods)
    return alt.Color("label:N", title=None, scale=alt.Scale(domain=domain, range=colours), legend=legend)


def training_chart(frame: pd.DataFrame, running: bool) -> alt.LayerChart:
    """The held-out median error / exact error of the learned model every evaluation (log scale), the
    exact method's level dashed at 1."""
    rows = frame[frame["part"] == "training"].dropna(subset=["held_out"]).copy()
    rows["label"] = styles.label(EXPERIMENT, "learned")
    exact = pd.DataFrame({"held_out": [1.0], "label": [styles.label(EXPERIMENT, "exact")]})
    legend = alt.Legend(orient="bottom", direction="vertical", **LEGEND)
    y = alt.Y("held_out:Q", title="held-out error / exact error (median)", scale=alt.Scale(type="log"))
    curve = (
        alt.Chart(rows)
        .mark_line(point=True, strokeWidth=2)
        .encode(
            x=alt.X("iteration:Q", title="meta-training step", axis=alt.Axis(format="d", tickMinStep=1)),
            y=y,
            color=colour(["learned", "exact"], legend=legend),
            tooltip=[
                alt.Tooltip("iteration:Q", title="step"),
                alt.Tooltip("held_out:Q", title="error / exact", format=".3f"),
            ],
        )
    )
    level = alt.Chart(exact).mark_rule(strokeDash=styles.style(EXPERIMENT, "exact").dash, strokeWidth=2)
    level = level.encode(y=y, color=colour(["learned", "exact"], legend=legend))
    title = alt.TitleParams(
        "Meta-training on a family of data sets",
        subtitle=[
            "median over the held-out data sets",
            "1 = as good as the exact method on the full data" + (" · running…" if running else ""),
        ],
        anchor="start",
    )
    return alt.layer(curve, level).properties(width=WIDTH["training"], height=HEIGHT, title=title)


def example_chart(frame: pd.DataFrame) -> alt.LayerChart | None:
    """One held-out data set (grey) and each method's answer over it; None before the answers exist."""
    rows = frame[frame["part"] == "example"].copy()
    if rows.empty:
        return None
    task = rows["task"].iloc[0]
    rows["label"] = rows["method"].map(lambda method: styles.label(EXPERIMENT, method))
    methods = ["data", "exact", "random", "learned"]
    legend = alt.Legend(orient="bottom", direction="vertical", **LEGEND)
    x_title, y_title = ("target y", "prediction") if task == "ridge" else ("x1", "x2")
    data = (
        alt.Chart(rows[rows["method"] == "data"])
        .mark_circle(size=14, opacity=0.6)
        .encode(x=alt.X("x:Q", title=x_title), y=alt.Y("y:Q", title=y_title), color=colour(methods, legend=legend))
    )
    kmeans = task == "kmeans"
    answers = (
        alt.Chart(rows[rows["method"] != "data"])
        .mark_point(size=260 if kmeans else 18, filled=True, opacity=0.9, stroke="black", strokeWidth=0.6 * kmeans)
        .encode(
            x="x:Q",
            y="y:Q",
            color=colour(methods, legend=legend),
            shape=alt.Shape("label:N", legend=None),
            tooltip=[
                alt.Tooltip("label:N", title="method"),
                alt.Tooltip("relative_error:Q", title="error / exact", format=".3f"),
            ],
        )
    )
    title = alt.TitleParams(
        f"One held-out data set ({TASK_TITLES.get(task, task)})", subtitle=ANSWERS[task], anchor="start"
    )
    return alt.layer(data, answers).properties(width=WIDTH["example"], height=HEIGHT, title=title)


def compressive_chart(frame: pd.DataFrame, running: bool) -> alt.Chart:
    """The training curve, and beside it the held-out data set with the answers once they exist."""
    training = training_chart(frame, running)
    example = example_chart(frame)
    if example is None:
        return training
    return alt.hconcat(training, example, spacing=30).resolve_scale(color="independent", shape="independent")
