"""Compressive meta-learning: meta-train a Sketch- and a Query-Network live, then see their answer
next to a random sketch's and the exact one, on a data set they never saw."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from metalab.dashboard import lab  # noqa: E402
from metalab.dashboard.controls import url  # noqa: E402

from metalab.plots import compressive as plots_compressive  # noqa: E402
from metalab.plots import styles  # noqa: E402
from metalab.experiments import get_experiment  # noqa: E402

EXPERIMENT = "compressive"
experiment = get_experiment(EXPERIMENT)
CONFIG = experiment.config
#: the page trains one model per run: fewer steps than the quick preset, so a run takes seconds
DEFAULT = CONFIG.preset("quick", steps=300, eval_every=25)
TASKS = {"k-means": "kmeans", "PCA": "pca", "ridge regression": "ridge", "autoencoder": "autoencoder"}
FAMILIES = {"generated": "generated", "scikit-learn tables": "sklearn"}
LABELS = {
    "sketch_size": "sketch size m",
    "n_samples": "samples per data set n",
    "example_epsilon": "privacy budget ε",
    "steps": "meta-training steps",
    "d": "features d",
    "clusters": "clusters k",
    "components": "components",
    "tasks": "task",
    "family": "data sets",
    "seed": "seed",
}
COLOURS = alt.Scale(
    domain=[styles.label(EXPERIMENT, m) for m in ("data", "exact", "random", "learned")],
    range=[styles.style(EXPERIMENT, m).colour for m in ("data", "exact", "random", "learned")],
)


# --------------------------------------------------------------------------------------------
# charts


def training_chart(frame: pd.DataFrame, running: bool) -> alt.Chart | None:
    rows = frame[(frame["part"] == "training")].dropna(subset=["held_out"])
    if rows.empty:
        return None
    line = (
        alt.Chart(rows)
        .mark_line(point=True, color=styles.style(EXPERIMENT, "learned").colour)
        .encode(
            x=alt.X("step:Q", title="meta-training step"),
            y=alt.Y("held_out:Q", title="held-out error / exact error (median)", scale=alt.Scale(type="log")),
            tooltip=[alt.Tooltip("step:Q"), alt.Tooltip("held_out:Q", title="relative error", format=".3f")],
        )
    )
    exact = alt.Chart(pd.DataFrame({"y": [1.0]})).mark_rule(strokeDash=[6, 4], color="#2ca02c").encode(y="y:Q")
    title = alt.TitleParams(
        "Meta-training on a family of data sets",
        subtitle="dashed: the exact method on the full data" + (" · running…" if running else ""),
        anchor="start",
    )
    return alt.layer(line, exact).properties(height=300, title=title)


def example_chart(frame: pd.DataFrame, task: str) -> alt.Chart | None:
    rows = frame[frame["part"] == "example"].copy()
    if rows.empty:
        return None
    rows["answer"] = rows["method"].map(lambda method: styles.label(EXPERIMENT, method))
    size = 260 if task == "kmeans" else 18
    data = rows[rows["method"] == "data"]
    answers = rows[rows["method"] != "data"]
    x_title, y_title = ("target y", "prediction") if task == "ridge" else ("x1", "x2")
    colour = alt.Color("answer:N", title=None, scale=COLOURS, legend=alt.Legend(orient="bottom"))
    base = (
        alt.Chart(data)
        .mark_circle(size=14, opacity=0.6)
        .encode(x=alt.X("x:Q", title=x_title), y=alt.Y("y:Q", title=y_title), color=colour)
    )
    marks = (
        alt.Chart(answers)
        .mark_point(size=size, filled=True, opacity=0.9, stroke="black", strokeWidth=0.6 if task == "kmeans" else 0)
        .encode(
            x="x:Q",
            y="y:Q",
            color=colour,
            shape=alt.Shape("answer:N", legend=None),
            tooltip=[alt.Tooltip("answer:N"), alt.Tooltip("relative_error:Q", title="error / exact", format=".3f")],
        )
    )
    what = {
        "kmeans": "centroids",
        "pca": "each point projected on the principal subspace (first two coordinates)",
        "autoencoder": "each point's reconstruction (first two coordinates)",
        "ridge": "prediction against target, one point per sample",
    }[task]
    title = alt.TitleParams("One held-out data set", subtitle=what, anchor="start")
    return alt.layer(base, marks).properties(height=420, title=title)


def errors_table(frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame[(frame["part"] == "example") & (frame["method"] != "data")]
    table = rows.groupby("method", sort=False)["relative_error"].first().reset_index()
    table["method"] = table["method"].map(lambda method: styles.label(EXPERIMENT, method))
    return table.rename(columns={"relative_error": "error / exact error on this data set"})


# --------------------------------------------------------------------------------------------
# the page


def controls() -> dict:
    bar = st.sidebar
    describe = CONFIG.describe()
    bar.header("Task")
    task = TASKS[bar.selectbox("task", list(TASKS), help="what the Query-Network predicts", **url("task"))]
    family = FAMILIES[bar.selectbox("data sets", list(FAMILIES), help=describe["family"], **url("family"))]
    values = {"tasks": (task,), "family": family, "parts": ("training", "example")}
    values["d"] = bar.slider("features d", 1, 16, DEFAULT.d, help=describe["d"], **url("d"))
    if task == "kmeans":
        values["clusters"] = bar.slider("clusters k", 1, 10, DEFAULT.clusters, help=describe["clusters"], **url("k"))
    if task in ("pca", "autoencoder"):
        values["components"] = bar.slider(
            "components", 1, 8, DEFAULT.components, help=describe["components"], **url("components")
        )
    values["n_samples"] = bar.select_slider(
        "samples per data set n",
        [50, 100, 200, 500, 1000, 2000, 5000],
        DEFAULT.n_samples,
        help=describe["n_samples"],
        **url("n"),
    )
    bar.header("Sketch")
    values["sketch_size"] = bar.slider(
        "sketch size m", 2, 200, DEFAULT.sketch_size, step=2, help=describe["sketch_size"], **url("m")
    )
    private = bar.toggle(
        "differential privacy", False, help="release both sketches with calibrated noise", **url("private")
    )
    epsilon = bar.select_slider(
        "privacy budget ε",
        [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0],
        5.0,
        disabled=not private,
        help="smaller ε: stronger privacy, more noise (Laplace mechanism, replace-one neighbours)",
        **url("epsilon"),
    )
    values["example_epsilon"] = epsilon if private else None
    if private:
        values["epsilons"] = (epsilon,)
    bar.header("Meta-training")
    values["steps"] = bar.slider(
        "meta-training steps", 50, 3000, DEFAULT.steps, step=50, help=describe["steps"], **url("steps")
    )
    values["eval_every"] = max(1, values["steps"] // 12)
    values["seed"] = bar.number_input(
        "seed", min_value=0, max_value=2**31 - 1, value=DEFAULT.seed, step=1, **url("seed")
    )
    values["device"] = "cpu"
    return values


def main() -> None:
    st.set_page_config(page_title="Compressive Meta-Learning · metalab", page_icon=":material/compress:", layout="wide")
    st.title("Compressive Meta-Learning")
    st.caption(
        "Mas Montserrat, Bonet, Perera, Giró-i-Nieto & Ioannidis, arXiv:2508.11090 (KDD '25) · learn a model "
        "from a sketch (the mean of per-sample features) instead of the data."
    )
    with st.expander("The method"):
        st.markdown(
            r"""
A **Sketch-Network** $\phi$ maps each sample to $m$ bounded numbers; the data set's sketch is their mean
$z = \frac1n\sum_i \phi(x_i)$ (mergeable across sites, updatable, and private after calibrated noise).
A **Query-Network** $\psi$ reads only $z$ and outputs the model: centroids, principal directions, ridge
weights or a whole autoencoder. Both are trained end to end over many data sets on
$\mathbb{E}_D[\,L(\psi(z(D)); D)\,]$.

The baseline is classical compressive learning: a *random* sketch (Fourier features for k-means,
rank-one quadratic measurements for PCA and ridge) decoded by CL-OMPR or second-moment recovery.
Every error is divided by the exact method's on the full data (1 = as good as exact).
"""
        )
    values = controls()
    config = lab.build_config(CONFIG, values)
    if config is None:
        return
    task = config.tasks[0]
    if config.example_epsilon is not None:
        st.info(
            f"Private mode: both sketches are released with Laplace noise at ε = {config.example_epsilon:g} "
            f"(sensitivity = feature diameter / n, n = {config.n_samples}); the Query-Network is meta-trained on "
            "sketches with that noise.",
            icon=":material/shield:",
        )

    curve, example = st.columns([2, 3])

    def draw(target, frame: pd.DataFrame, running: bool) -> None:
        chart = training_chart(frame, running)
        if chart is not None:
            target.altair_chart(chart, width="stretch")

    with curve:
        result = lab.live_run(lab.run_key(EXPERIMENT, config), lambda: experiment.run(config), draw)
    if result.frame.empty:
        if result.error is None:
            st.info("No records yet: press **Run again** to start the run.", icon=":material/info:")
        return
    with example:
        chart = example_chart(result.frame, task)
        if chart is None:
            st.info("The answers on a held-out data set appear when meta-training ends.", icon=":material/info:")
        else:
            st.altair_chart(chart, width="stretch")
            st.dataframe(
                errors_table(result.frame),
                hide_index=True,
                column_config={"error / exact error on this data set": st.column_config.NumberColumn(format="%.3f")},
            )
    lab.downloads(result, f"compressive_{task}", plots_compressive.example_figure)
    with st.expander("Reproduce outside the dashboard"):
        st.markdown("The link in the address bar reproduces this view. From a shell:")
        st.code(lab.cli_command(EXPERIMENT, config), language="bash")
        st.json(config.to_dict(), expanded=False)


main()
