"""Meta Subspace Pursuit: watch every method recover a shared subspace, live, on settings you choose."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from metalab import results
from metalab.dashboard import lab, page
from metalab.dashboard.controls import control, url
from metalab.experiments import get_experiment
from metalab.experiments.meta_sp import claim_table
from metalab.plots import styles
from metalab.plots.common import log_floor

experiment = get_experiment("meta_sp")
CONFIG = experiment.config
DEFAULT = CONFIG.preset("quick")
#: view shown in the page (and in the URL) -> the experiment part it runs
VIEWS = {"Convergence": "convergence", "Samples": "samples", "Stored paper-scale run": "stored"}
#: the figures of the stored run the page draws itself (the others are shown as the stored PNGs)
DRAWN = ("convergence", "samples")
METHOD = r"""
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


def method_label(method: str) -> str:
    return styles.label("meta_sp", method)


def colour_scale(methods: list[str]) -> alt.Scale:
    domain, colours = styles.colour_domain("meta_sp", methods)
    return alt.Scale(domain=domain, range=colours)


def settings_text(config) -> str:
    return f"s = {config.rank}, T = {config.n_tasks}, d = {config.d}, σ = {config.noise:g}"


# --------------------------------------------------------------------------------------------
# charts (altair, log-scale errors)


def convergence_chart(frame: pd.DataFrame, config, running: bool) -> alt.LayerChart:
    rows = frame[frame["part"] == "convergence"].dropna(subset=["sin_theta"]).copy()
    rows["method_label"] = rows["method"].map(method_label)
    floor = log_floor(rows, "sin_theta")
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
    floor = log_floor(rows, "sin_theta")  # the oracle's exact 1e-16 would squash every other curve
    for column in ("sin_theta", "min", "max"):
        stats[column] = stats[column].clip(lower=floor)
    colour = alt.Color("method_label:N", title="method", scale=colour_scale(list(config.methods)))
    x = alt.X(
        "n_samples:Q",
        title="samples per task m",
        scale=alt.Scale(type="log", nice=False),
        axis=alt.Axis(values=list(config.samples_grid), format="d"),
    )
    log_scale = alt.Scale(type="log", domainMin=floor, nice=False)
    y = alt.Y("sin_theta:Q", title="final sin θ(B̂, B*) (mean over repeats)", scale=log_scale)
    base = alt.Chart(stats)
    band = base.mark_area(opacity=0.12).encode(
        x=x,
        y=alt.Y("min:Q", scale=log_scale),
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
        subtitle="band: range over repeats; the oracle basis is exact and drawn at the bottom edge"
        + (" · running…" if running else ""),
        anchor="start",
    )
    # the band layer has no legend of its own (it would show faint swatches); the lines' legend stays
    return alt.layer(band, lines).resolve_legend(color="independent").properties(height=430, title=title)


# --------------------------------------------------------------------------------------------
# summaries


def convergence_table(frame: pd.DataFrame) -> pd.DataFrame:
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


def samples_table(frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame[frame["part"] == "samples"]
    table = rows.pivot_table(index="method", columns="n_samples", values="sin_theta", aggfunc="mean", sort=False)
    table.columns = [f"sin θ, m = {m}" for m in table.columns]
    seconds = rows.groupby("method", sort=False)["seconds"].mean().rename("seconds per fit")
    table = table.join(seconds).reset_index()
    table["method"] = table["method"].map(method_label)
    return table


def headline(table: pd.DataFrame, column: str, flagged: set[str]) -> str:
    """One sentence: how Meta-SP does against the best method that is not told the true subspace; a
    method whose run raised a warning (it diverged, or stopped unconverged) is never ranked."""
    excluded = {method_label(m) for m in flagged | {"oracle"}}
    ranked = table[~table["method"].isin(excluded) & table[column].notna()].sort_values(column, kind="stable")
    if ranked.empty:
        return "No method without a warning to rank." if flagged else ""
    best = ranked.iloc[0]
    text = f"Lowest {column} without knowing the subspace: **{best['method']}** ({best[column]:.3g})."
    meta = ranked[ranked["method"] == method_label("meta_sp")]
    if not meta.empty and best["method"] != method_label("meta_sp"):
        text += f" Meta-SP: {meta.iloc[0][column]:.3g}."
    if flagged - {"oracle"}:
        text += " Not ranked (see the warnings above): " + ", ".join(sorted(map(method_label, flagged))) + "."
    return text


def convergence_summary(frame: pd.DataFrame, flagged: set[str]) -> page.Summary:
    table = convergence_table(frame)
    formats = {
        "final sin θ": st.column_config.NumberColumn(format="%.3e"),
        "seconds": st.column_config.NumberColumn(format="%.3f"),
    }
    return page.Summary(headline(table, "final sin θ", flagged), table, formats)


def samples_summary(frame: pd.DataFrame, flagged: set[str]) -> page.Summary:
    table = samples_table(frame)
    errors = [c for c in table.columns if c.startswith("sin")]
    formats = {c: st.column_config.NumberColumn(format="%.3e") for c in errors}
    formats["seconds per fit"] = st.column_config.NumberColumn(format="%.3f")
    column = errors[0] if errors else "seconds per fit"  # the smallest m
    return page.Summary(headline(table, column, flagged), table, formats)


# --------------------------------------------------------------------------------------------
# the page


def controls() -> tuple[str, dict]:
    """The sidebar and view controls, each bound to the URL; returns (view, config values)."""
    st.sidebar.header("Problem")
    values = {
        name: control(CONFIG, name, getattr(DEFAULT, name)) for name in ("rank", "n_tasks", "n_samples", "d", "noise")
    }
    st.sidebar.header("Methods")
    auto = st.sidebar.toggle("automatic step size", True, help="η = 1 / max_t λmax(X_tᵀX_t/m)", **url("auto_step"))
    step = control(CONFIG, "step_size", 0.2, disabled=auto)
    values["step_size"] = None if auto else step
    values["max_iter"] = control(CONFIG, "max_iter", DEFAULT.max_iter)
    values["methods"] = control(CONFIG, "methods", DEFAULT.methods)
    with st.sidebar.expander("Meta-SP variant and seed"):
        for name in ("init", "refit", "seed"):
            values[name] = control(CONFIG, name, getattr(DEFAULT, name), where=st)

    view = VIEWS[st.segmented_control("View", list(VIEWS), default="Convergence", required=True, **url("view"))]
    if view == "samples":
        left, right = st.columns([3, 1])
        values["samples_grid"] = control(CONFIG, "samples_grid", DEFAULT.samples_grid, where=left, persist_state="page")
        values["repeats"] = control(CONFIG, "repeats", DEFAULT.repeats, where=right, persist_state="page")
    values["parts"] = (view,)
    return view, values


def stored_view() -> None:
    """The stored paper-scale run: its provenance, the claim table, the samples and convergence charts,
    and the other figures as stored; the live views train on the settings in the sidebar."""
    try:
        stored = results.load("meta_sp")
    except (FileNotFoundError, ValueError) as error:
        st.info(str(error), icon=":material/info:")
        return
    config = stored.config_object()
    st.subheader("Stored paper-scale run")
    st.caption(stored.describe())
    st.markdown(f"{settings_text(config)}, {config.repeats} repeats. Train live: choose Convergence or Samples.")
    st.dataframe(claim_table(stored.frame), hide_index=True)
    st.altair_chart(samples_chart(stored.frame, config, False), width="stretch")
    st.altair_chart(convergence_chart(stored.frame, config, False), width="stretch")
    for figure in stored.figures():
        if figure.stem not in DRAWN:
            st.image(str(figure), caption=figure.stem.replace("_", " "))


def stored_claims() -> pd.DataFrame:
    """The claim table of the stored paper-scale run (read from the package, no computation)."""
    return claim_table(results.load("meta_sp").frame)


def main() -> None:
    page.header(experiment, method=METHOD)
    page.paper_scale(
        "At paper scale: the stored run of the paper preset",
        stored_claims,
        "d = 100, s = 5, T = 400, 10 repeats per grid point, m from 6 to 30, and the air-quality tasks, run by "
        "`metalab reproduce meta_sp`. The view *Stored paper-scale run* shows its figures and provenance.",
        "metalab reproduce meta_sp --restart",
    )
    view, values = controls()
    if view == "stored":
        stored_view()
        return
    config = lab.build_config(CONFIG, values)
    if config is None:
        return
    if view == "convergence":
        shown = page.View(
            lambda frame, running: convergence_chart(frame, config, running), "meta_sp_convergence", convergence_summary
        )
    else:
        shown = page.View(
            lambda frame, running: samples_chart(frame, config, running), "meta_sp_samples", samples_summary
        )
    page.run_view(experiment, config, shown)


main()
