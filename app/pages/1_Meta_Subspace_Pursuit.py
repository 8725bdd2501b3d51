"""Meta Subspace Pursuit: watch every method recover a shared subspace, live, on settings you choose."""

from __future__ import annotations

import sys
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

APP_DIR = str(Path(__file__).resolve().parents[1])
if APP_DIR not in sys.path:  # `streamlit run app/Home.py` puts app/ on the path; AppTest on this file does not
    sys.path.insert(0, APP_DIR)

import lab  # noqa: E402

from metalab.plots import meta_sp as plots  # noqa: E402
from metalab.experiments import get_experiment  # noqa: E402

EXPERIMENT = "meta_sp"
experiment = get_experiment(EXPERIMENT)
CONFIG = experiment.CONFIG
DEFAULT = CONFIG.preset("quick")
LABELS = {  # config field -> the control's label, for error messages
    "rank": "rank s",
    "n_tasks": "tasks T",
    "n_samples": "samples per task m",
    "d": "dimension d",
    "noise": "noise σ",
    "step_size": "step size η",
    "max_iter": "iterations",
    "methods": "methods",
    "seed": "seed",
    "samples_grid": "samples grid",
    "repeats": "repeats",
    "init": "initialisation",
    "refit": "refit",
}
#: view shown in the page (and in the URL) -> the experiment part it runs
VIEWS = {"Convergence": "convergence", "Samples": "samples"}


def method_label(method: str) -> str:
    return plots.METHOD_LABELS.get(method, method)


def colour_scale(methods: list[str]) -> alt.Scale:
    return alt.Scale(
        domain=[method_label(m) for m in methods], range=[plots.METHOD_COLOURS.get(m, "#999999") for m in methods]
    )


def settings_text(config) -> str:
    return f"s = {config.rank}, T = {config.n_tasks}, d = {config.d}, σ = {config.noise:g}"


# --------------------------------------------------------------------------------------------
# charts (altair, log-scale errors)


def convergence_chart(frame: pd.DataFrame, config, running: bool) -> alt.LayerChart:
    rows = frame[frame["part"] == "convergence"].dropna(subset=["sin_theta"]).copy()
    rows["method_label"] = rows["method"].map(method_label)
    floor = plots.log_floor(rows, "sin_theta")
    rows["sin_theta"] = rows["sin_theta"].clip(lower=floor)
    counts = rows.groupby("method")["step"].transform("size")
    still_streaming = rows["method"] == rows["method"].iloc[-1] if running and len(rows) else False
    closed_form = (counts == 1) & ~still_streaming
    colour = alt.Color(
        "method_label:N", title="method", scale=colour_scale(list(config.methods)), legend=alt.Legend(orient="right")
    )
    y = alt.Y(
        "sin_theta:Q", title="subspace error sin θ(B̂, B*)", scale=alt.Scale(type="log", domainMin=floor, nice=False)
    )
    tooltip = [
        alt.Tooltip("method_label:N", title="method"),
        alt.Tooltip("step:Q", title="iteration"),
        alt.Tooltip("sin_theta:Q", title="sin θ", format=".3e"),
    ]
    lines = (
        alt.Chart(rows[~closed_form])
        .mark_line(strokeWidth=2)
        .encode(
            x=alt.X("step:Q", title="iteration", scale=alt.Scale(nice=False), axis=alt.Axis(format="d", tickMinStep=1)),
            y=y,
            color=colour,
            tooltip=tooltip,
        )
    )
    levels = (
        alt.Chart(rows[closed_form])
        .mark_rule(strokeDash=[6, 4], strokeWidth=2)
        .encode(y=y, color=colour, tooltip=tooltip)
    )
    title = alt.TitleParams(
        f"Convergence: m = {config.n_samples} samples per task ({settings_text(config)})",
        subtitle="dashed: closed-form methods (one estimate, no iterations); the oracle basis is exact "
        "and drawn at the bottom edge" + (" · running…" if running else ""),
        anchor="start",
    )
    return alt.layer(lines, levels).properties(height=430, title=title)


def samples_chart(frame: pd.DataFrame, config, running: bool) -> alt.LayerChart:
    rows = frame[frame["part"] == "samples"].dropna(subset=["sin_theta"]).copy()
    rows["method_label"] = rows["method"].map(method_label)
    stats = (
        rows.groupby(["method_label", "n_samples"])["sin_theta"]
        .agg(["mean", "min", "max"])
        .reset_index()
        .rename(columns={"mean": "sin_theta"})
    )
    for column in ("sin_theta", "min", "max"):
        stats[column] = stats[column].clip(lower=1e-16)
    colour = alt.Color("method_label:N", title="method", scale=colour_scale(list(config.methods)))
    x = alt.X(
        "n_samples:Q",
        title="samples per task m",
        scale=alt.Scale(type="log", nice=False),
        axis=alt.Axis(values=list(config.samples_grid), format="d"),
    )
    y = alt.Y("sin_theta:Q", title="final sin θ(B̂, B*) (mean over repeats)", scale=alt.Scale(type="log"))
    base = alt.Chart(stats)
    band = base.mark_area(opacity=0.12).encode(
        x=x,
        y=alt.Y("min:Q", scale=alt.Scale(type="log")),
        y2="max:Q",
        color=alt.Color("method_label:N", scale=colour_scale(list(config.methods)), legend=None),
    )
    lines = base.mark_line(point=True, strokeWidth=2).encode(
        x=x,
        y=y,
        color=colour,
        tooltip=[
            alt.Tooltip("method_label:N", title="method"),
            alt.Tooltip("n_samples:Q", title="m"),
            alt.Tooltip("sin_theta:Q", title="mean sin θ", format=".3e"),
        ],
    )
    title = alt.TitleParams(
        f"Subspace error vs samples per task ({settings_text(config)}, {config.repeats} repeats)",
        subtitle="band: range over repeats" + (" · running…" if running else ""),
        anchor="start",
    )
    # the band layer has no legend of its own (it would show faint swatches); the lines' legend stays
    return alt.layer(band, lines).resolve_legend(color="independent").properties(height=430, title=title)


def refined_progress(config):
    """Progress within a method's iterations too: the experiment stamps each method (one unit of work)
    with its start, so a long Meta-SP stream would otherwise sit at one value until it ends."""
    units = len(config.methods)

    def progress(record) -> float | None:
        if record.part != "convergence" or record.method not in config.methods:
            return record.progress
        within = min(1.0, (record.step + 1) / config.max_iter)
        return max(record.progress or 0.0, (config.methods.index(record.method) + within) / units)

    return progress


# --------------------------------------------------------------------------------------------
# summaries


def convergence_summary(frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame[frame["part"] == "convergence"].sort_values("step")
    last = rows.groupby("method", sort=False).tail(1)
    table = pd.DataFrame(
        {
            "method": last["method"].map(method_label).to_numpy(),
            "final sin θ": last["sin_theta"].to_numpy(float),
            "iterations": last["step"].to_numpy(int),
            "seconds": last["seconds"].to_numpy(float),
        }
    )
    return table.sort_values("final sin θ", kind="stable").reset_index(drop=True)


def samples_summary(frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame[frame["part"] == "samples"]
    table = rows.pivot_table(index="method", columns="n_samples", values="sin_theta", aggfunc="mean", sort=False)
    table.columns = [f"sin θ, m = {m}" for m in table.columns]
    seconds = rows.groupby("method", sort=False)["seconds"].mean().rename("seconds per fit")
    table = table.join(seconds).reset_index()
    table["method"] = table["method"].map(method_label)
    return table


def headline(table: pd.DataFrame, column: str) -> str:
    """One sentence: how Meta-SP does against the best method that is not told the true subspace."""
    ranked = table[table["method"] != method_label("oracle")].sort_values(column, kind="stable")
    if ranked.empty:
        return ""
    best = ranked.iloc[0]
    text = f"Lowest {column} without knowing the subspace: **{best['method']}** ({best[column]:.3g})."
    meta = table[table["method"] == method_label("meta_sp")]
    if not meta.empty and best["method"] != method_label("meta_sp"):
        text += f" Meta-SP: {meta.iloc[0][column]:.3g}."
    return text


# --------------------------------------------------------------------------------------------
# the page


def controls() -> tuple[str, dict]:
    """The sidebar and view controls, each bound to the URL; returns (view, config values)."""
    bar = st.sidebar
    bar.header("Problem")
    values = {
        "rank": bar.slider("rank s", 1, 20, DEFAULT.rank, help=CONFIG.describe()["rank"], **lab.url("rank")),
        "n_tasks": bar.slider(
            "tasks T", 2, 1000, DEFAULT.n_tasks, help=CONFIG.describe()["n_tasks"], **lab.url("n_tasks")
        ),
        "n_samples": bar.slider(
            "samples per task m", 1, 100, DEFAULT.n_samples, help=CONFIG.describe()["n_samples"], **lab.url("n_samples")
        ),
        "d": bar.slider("dimension d", 2, 200, DEFAULT.d, help=CONFIG.describe()["d"], **lab.url("d")),
        "noise": bar.slider(
            "noise σ", 0.0, 2.0, DEFAULT.noise, step=0.01, help=CONFIG.describe()["noise"], **lab.url("noise")
        ),
    }
    bar.header("Methods")
    auto = bar.toggle("automatic step size", True, help="η = 1 / max_t λmax(X_tᵀX_t/m)", **lab.url("auto_step"))
    step = bar.number_input(
        "step size η (Meta-SP)",
        min_value=0.001,
        max_value=100.0,
        value=0.2,
        step=0.05,
        format="%.3f",
        disabled=auto,
        **lab.url("step_size"),
    )
    values["step_size"] = None if auto else step
    values["max_iter"] = bar.slider(
        "iterations", 1, 1000, DEFAULT.max_iter, help=CONFIG.describe()["max_iter"], **lab.url("max_iter")
    )
    # option names as in the CLI (`--set methods=meta_sp,mom`); a format_func would put labels in the URL
    values["methods"] = tuple(
        bar.multiselect(
            "methods to compare",
            list(experiment.ALL_METHODS),
            default=list(DEFAULT.methods),
            help=", ".join(f"{m}: {method_label(m)}" for m in experiment.ALL_METHODS),
            **lab.url("methods"),
        )
    )
    with bar.expander("Meta-SP variant and seed"):
        values["init"] = st.selectbox(
            "initialisation", ["zero", "spectral"], help=CONFIG.describe()["init"], **lab.url("init")
        )
        values["refit"] = st.selectbox(
            "refit after thresholding", ["none", "ls"], help=CONFIG.describe()["refit"], **lab.url("refit")
        )
        values["seed"] = st.number_input(
            "seed", min_value=0, max_value=2**31 - 1, value=DEFAULT.seed, step=1, **lab.url("seed")
        )

    view = VIEWS[st.segmented_control("View", list(VIEWS), default="Convergence", required=True, **lab.url("view"))]
    if view == "samples":
        left, right = st.columns([3, 1])
        values["samples_grid"] = left.text_input(
            "samples grid (m values, comma separated)",
            ", ".join(map(str, DEFAULT.samples_grid)),
            help=CONFIG.describe()["samples_grid"],
            persist_state="page",
            **lab.url("samples_grid"),
        )
        values["repeats"] = right.slider(
            "repeats",
            1,
            5,
            DEFAULT.repeats,
            help=CONFIG.describe()["repeats"],
            persist_state="page",
            **lab.url("repeats"),
        )
    values["parts"] = (view,)
    return view, values


def main() -> None:
    st.set_page_config(page_title="Meta Subspace Pursuit · metalab", page_icon=":material/insights:", layout="wide")
    st.title("Meta Subspace Pursuit")
    st.caption(
        "Zhang, Liu & Zhang, arXiv:2409.02708 · every task's regressor lies in one unknown "
        "s-dimensional subspace; recover it from T tasks that have only m samples each."
    )
    with st.expander("The problem and the method"):
        st.markdown(
            r"""
Task $t = 1..T$ has $m$ samples $y_{t,i} = x_{t,i}^\top \theta_t^* + \varepsilon_{t,i}$ with
$x \sim N(0, I_d)$, noise $\varepsilon \sim N(0, \sigma^2)$ and $\theta_t^* = B^* w_t$: all tasks share the
subspace spanned by $B^* \in \mathbb{R}^{d\times s}$. With $m < d$ no single task can be solved alone.

**Meta-SP** (as reconstructed here) runs iterative hard thresholding on the stacked coefficients
$\Theta \in \mathbb{R}^{T\times d}$: a gradient step for every task at once,
$\hat\theta_t = \theta_t - \eta\, \tfrac1m X_t^\top(X_t\theta_t - y_t)$, then the best rank-$s$
approximation $\Theta = H_s(\hat\Theta)$, whose top right singular vectors are the subspace estimate $\hat B$.

The chart shows $\sin\theta(\hat B, B^*) = \|(I - \hat B\hat B^\top) B^*\|_2$ (0: exact recovery, 1: orthogonal)
for each method: Meta-SP should fall linearly (a straight line on the log scale) to a noise floor.
"""
        )

    view, values = controls()
    config = lab.build_config(CONFIG, values, labels=LABELS)
    if config is None:
        return

    draw_chart = convergence_chart if view == "convergence" else samples_chart

    def draw(target, frame: pd.DataFrame, running: bool) -> None:
        target.altair_chart(draw_chart(frame, config, running), width="stretch")

    result = lab.live_run(
        lab.run_key(EXPERIMENT, config), lambda: experiment.run(config), draw, progress=refined_progress(config)
    )
    if result.frame.empty:
        if result.error is None:
            st.info("No records yet: press **Run again** to start the run.", icon=":material/info:")
        return

    if view == "convergence":
        table, column, make_figure = convergence_summary(result.frame), "final sin θ", plots.convergence_figure
        formats = {
            "final sin θ": st.column_config.NumberColumn(format="%.3e"),
            "seconds": st.column_config.NumberColumn(format="%.3f"),
        }
    else:
        table = samples_summary(result.frame)
        column = next((c for c in table.columns if c.startswith("sin")), "seconds per fit")  # smallest m
        make_figure = plots.samples_figure
        formats = {c: st.column_config.NumberColumn(format="%.3e") for c in table.columns if c.startswith("sin")}
        formats["seconds per fit"] = st.column_config.NumberColumn(format="%.3f")
    st.subheader("Summary" + ("" if result.complete else " (partial run)"))
    st.markdown(headline(table, column))
    st.dataframe(table, hide_index=True, column_config=formats)
    lab.downloads(result, f"meta_sp_{view}", make_figure)
    with st.expander("Reproduce outside the dashboard"):
        st.markdown("The link in the address bar reproduces this view. From a shell:")
        st.code(lab.cli_command(EXPERIMENT, config), language="bash")
        st.json(config.to_dict(), expanded=False)


main()
