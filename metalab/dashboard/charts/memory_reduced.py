"""Altair charts of the memory-reduced meta-learning page, one per view, drawn from the records alone:
graph memory and time per task against K; test accuracy against meta-training wall clock; the CG
residual and the hypergradient error (log axes, one number format); final accuracy with 95% intervals.
Method labels and colours come from :mod:`metalab.plots.styles`."""

from __future__ import annotations

import math

import altair as alt
import pandas as pd

from metalab.plots import styles

EXPERIMENT = "memory_reduced"
#: legends under side-by-side panels, so that the pair fits the page's width
BOTTOM = alt.Legend(orient="bottom", direction="horizontal", columns=4, labelLimit=0, titleLimit=0)
HEIGHT = 320


def decades(values: pd.Series, most: int = 8) -> list[float]:
    """Powers of ten spanning ``values`` (every other one, or sparser, beyond ``most``): the ticks of a log axis."""
    positive = values[values > 0]
    if positive.empty:
        return [1.0]
    low, high = math.floor(math.log10(positive.min())), math.ceil(math.log10(positive.max()))
    stride = max(1, math.ceil((high - low + 1) / most))
    return [10.0**k for k in range(low, high + 1, stride)]


def log_axis(values: pd.Series, title: str, format: str = ".0e") -> dict:
    """A log scale whose ticks are decades only, all in one number format (1e-7, 1e-6, ...: never 0.000001 beside
    1e-7, nor 2e-1 between decades)."""
    return {"title": title, "scale": alt.Scale(type="log"), "axis": alt.Axis(values=decades(values), format=format)}


def label(method: str) -> str:
    return styles.label(EXPERIMENT, method)


def labelled(rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows.copy()
    rows["method_label"] = rows["method"].map(label)
    return rows


def method_colour(methods, legend: alt.Legend | None = BOTTOM) -> alt.Color:
    domain, colours = styles.colour_domain(EXPERIMENT, methods)
    return alt.Color("method_label:N", title="method", scale=alt.Scale(domain=domain, range=colours), legend=legend)


def title(text: str, subtitle: str = "", running: bool = False) -> alt.TitleParams:
    subtitle += " · running…" if running else ""
    return alt.TitleParams(text, subtitle=subtitle.lstrip(" ·") or alt.Undefined, anchor="start")


def part(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    return frame[frame["part"] == name] if "part" in frame else frame.iloc[0:0]


def empty(text: str) -> alt.Chart:
    """A placeholder while a view's first records are computed."""
    return alt.Chart(pd.DataFrame({"text": [text]})).mark_text(size=14, color="grey").encode(text="text:N")


# --------------------------------------------------------------------------------------------
# memory


def memory_chart(frame: pd.DataFrame, running: bool) -> alt.HConcatChart | alt.Chart:
    """Bars of graph memory per method at each K, next to the time per task against K."""
    rows = labelled(part(frame, "memory"))
    if rows.empty:
        return empty("measuring the first hypergradient…")
    rows["ms_per_task"] = 1000 * rows["seconds_per_task"]
    methods = styles.ordered(EXPERIMENT, rows["method"])
    order = [label(m) for m in methods]
    first = rows.iloc[0]
    setting = (
        f"{int(first['ways'])}-way {int(first['shots'])}-shot, Conv-4-{int(first['hidden'])}, "
        f"{int(first['tasks'])} task(s), {first['dataset']}"
    )
    tooltip = [
        alt.Tooltip("method_label:N", title="method"),
        alt.Tooltip("inner_steps:Q", title="K"),
        alt.Tooltip("graph_mb:Q", title="graph MB", format=".2f"),
        alt.Tooltip("ms_per_task:Q", title="ms per task", format=".1f"),
    ]
    ks = sorted(rows["inner_steps"].unique().tolist())
    bars = (
        alt.Chart(rows)
        .mark_bar()
        .encode(
            x=alt.X("inner_steps:O", title="inner steps K", sort=ks, axis=alt.Axis(labelAngle=0)),
            xOffset=alt.XOffset("method_label:N", sort=order),
            y=alt.Y("graph_mb:Q", title="graph memory (MB saved for backward)"),
            color=method_colour(methods),
            tooltip=tooltip,
        )
        .properties(
            width=500,
            height=HEIGHT,
            title=title(
                f"Graph memory of one hypergradient vs K ({setting})",
                "bytes autograd keeps for the backward pass (saved-tensor hooks)",
                running,
            ),
        )
    )
    repeats = int(first["timing_repeats"]) if "timing_repeats" in rows else 1
    times = (
        alt.Chart(rows)
        .mark_line(point=True)
        .encode(
            x=alt.X("inner_steps:Q", title="inner steps K", axis=alt.Axis(format="d")),
            y=alt.Y("ms_per_task:Q", title="milliseconds per task"),
            color=method_colour(methods),
            tooltip=tooltip,
        )
        .properties(
            width=340,
            height=HEIGHT,
            title=title("Time per task vs K", f"the fastest of {repeats} timed call(s); this machine's clock"),
        )
    )
    return alt.hconcat(bars, times)


# --------------------------------------------------------------------------------------------
# training


def training_chart(frame: pd.DataFrame, running: bool) -> alt.HConcatChart | alt.Chart:
    """Test accuracy against meta-training wall clock, and the training query loss against the iteration."""
    rows = labelled(part(frame, "training"))
    if rows.empty:
        return empty("evaluating the untrained networks…")
    rows["setting"] = rows["shots"].map(lambda s: f"{int(s)}-shot")
    methods = styles.ordered(EXPERIMENT, rows["method"])
    several = rows["shots"].nunique() > 1
    dash = alt.StrokeDash("setting:N", title="shots", legend=BOTTOM if several else None)
    tooltip = [
        alt.Tooltip("method_label:N", title="method"),
        alt.Tooltip("setting:N", title="shots"),
        alt.Tooltip("step:Q", title="meta-iteration"),
        alt.Tooltip("seconds:Q", title="seconds", format=".2f"),
        alt.Tooltip("test_accuracy:Q", title="test accuracy", format=".3f"),
        alt.Tooltip("train_query_loss:Q", title="query loss", format=".3f"),
    ]
    base = alt.Chart(rows).encode(color=method_colour(methods), strokeDash=dash, tooltip=tooltip)
    first = rows.iloc[0]
    accuracy = (
        base.mark_line(point=True)
        .encode(
            x=alt.X("seconds:Q", title="meta-training wall clock (s)"),
            y=alt.Y("test_accuracy:Q", title="test accuracy after adaptation", scale=alt.Scale(domain=[0, 1])),
        )
        .properties(
            width=460,
            height=HEIGHT,
            title=title(
                f"Test accuracy during meta-training ({int(first['ways'])}-way, {first['dataset']})",
                f"chance = {1 / first['ways']:.2f}",
                running,
            ),
        )
    )
    loss = (
        base.transform_filter("isValid(datum.train_query_loss)")
        .mark_line(point=True)
        .encode(
            x=alt.X("step:Q", title="meta-iteration", axis=alt.Axis(format="d", tickMinStep=1)),
            y=alt.Y("train_query_loss:Q", title="query loss (mean since the last point)"),
        )
        .properties(width=360, height=HEIGHT, title=title("Training query loss"))
    )
    return alt.hconcat(accuracy, loss)


# --------------------------------------------------------------------------------------------
# conjugate gradient


def cg_chart(frame: pd.DataFrame, running: bool, methods_n: int) -> alt.HConcatChart | alt.Chart:
    """CG's relative residual against the step per λ (✕ where it failed; dashed: the ``methods_n`` steps the
    methods use), next to the hypergradient's error against K and N."""
    rows = part(frame, "cg")
    residual = rows[rows["sweep"] == "residual"].copy() if not rows.empty else rows
    if residual.empty:
        return empty("running conjugate gradient…")
    residual["lam_label"] = residual["lam"].map(lambda v: f"λ = {v:g}")
    residual["relative_residual"] = residual["relative_residual"].clip(lower=1e-16)
    y = alt.Y("relative_residual:Q", **log_axis(residual["relative_residual"], "‖r_N‖ / ‖b‖"))
    lines = (
        alt.Chart(residual)
        .mark_line(point=True)
        .encode(
            x=alt.X("cg_step:Q", title="CG step", axis=alt.Axis(format="d")),
            y=y,
            color=alt.Color("lam_label:N", title="ridge", legend=BOTTOM),
            tooltip=[
                alt.Tooltip("lam_label:N", title="ridge"),
                alt.Tooltip("cg_step:Q", title="step"),
                alt.Tooltip("relative_residual:Q", title="relative residual", format=".2e"),
                alt.Tooltip("status:N", title="status"),
            ],
        )
    )
    ends = residual[residual["failed"].astype(bool)].sort_values("cg_step").groupby("lam").tail(1)
    failures = (
        alt.Chart(ends)
        .mark_point(shape="cross", size=200, filled=True, color="#d62728")
        .encode(x="cg_step:Q", y=y, tooltip=[alt.Tooltip("status:N", title="CG failed")])
    )
    used = alt.Chart(pd.DataFrame({"N": [methods_n]})).mark_rule(strokeDash=[6, 4], color="grey").encode(x="N:Q")
    first = residual.iloc[0]
    left = alt.layer(lines, failures, used).properties(
        width=420,
        height=HEIGHT,
        title=title(
            f"CG on the head Hessian (K = {int(first['inner_steps'])})",
            f"{int(first['support'])} support points, {int(first['head_params'])} head parameters; dashed: "
            f"N = {methods_n}, the CG steps the methods use; ✕: CG failed",
            running,
        ),
    )
    errors = rows[rows["sweep"].isin(["inner_steps", "cg_steps"]) & (rows["step"] > 0)].copy()
    if errors.empty:
        return alt.hconcat(left)
    return alt.hconcat(left, error_chart(errors)).resolve_scale(color="independent")


def error_chart(errors: pd.DataFrame) -> alt.Chart:
    """The hypergradient's relative error against K (N large) and N (K large), both axes logarithmic."""
    big_n = int(errors.loc[errors["sweep"] == "inner_steps", "cg_steps"].max() if "cg_steps" in errors else 0)
    errors["sweep_label"] = errors["sweep"].map({"inner_steps": f"vs K (N = {big_n})", "cg_steps": "vs N (K large)"})
    errors["hypergrad_error"] = errors["hypergrad_error"].clip(lower=1e-16)
    return (
        alt.Chart(errors)
        .mark_line(point=True)
        .encode(
            x=alt.X("step:Q", **log_axis(errors["step"], "K or N", format="d")),
            y=alt.Y(
                "hypergrad_error:Q", **log_axis(errors["hypergrad_error"], "relative error vs the dense IFT solution")
            ),
            color=alt.Color("sweep_label:N", title="sweep", legend=BOTTOM),
            tooltip=[
                alt.Tooltip("sweep_label:N", title="sweep"),
                alt.Tooltip("inner_steps:Q", title="K"),
                alt.Tooltip("cg_steps:Q", title="N"),
                alt.Tooltip("hypergrad_error:Q", title="relative error", format=".2e"),
            ],
        )
        .properties(
            width=380,
            height=HEIGHT,
            title=title(f"Hypergradient error (small float64 problem, λ = {errors['lam'].iloc[0]:g})"),
        )
    )


# --------------------------------------------------------------------------------------------
# final accuracy


def final_chart(frame: pd.DataFrame, running: bool) -> alt.LayerChart | alt.Chart:
    """Final test accuracy per method (a row each, readable labels) with its 95% interval, one bar per shots
    setting, and chance as a dotted rule."""
    rows = part(frame, "final")
    rows = labelled(rows[rows["benchmark"] == "episodes"]) if "benchmark" in rows else rows
    if rows.empty:
        return empty("meta-training, then testing…")
    rows["setting"] = rows["shots"].map(lambda s: f"{int(s)}-shot")
    rows["low"], rows["high"] = rows["accuracy"] - rows["ci95"], rows["accuracy"] + rows["ci95"]
    methods = styles.ordered(EXPERIMENT, rows["method"])
    several = rows["shots"].nunique() > 1
    base = alt.Chart(rows).encode(
        y=alt.Y("method_label:N", title=None, sort=[label(m) for m in methods], axis=alt.Axis(labelLimit=0)),
        **({"yOffset": alt.YOffset("setting:N")} if several else {}),
    )
    accuracy = alt.X(
        "accuracy:Q", title="test accuracy (95% CI)", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(tickCount=10)
    )
    bars = base.mark_bar().encode(
        x=accuracy,
        color=method_colour(methods, legend=None),
        opacity=alt.Opacity(
            "setting:N", title="shots", scale=alt.Scale(range=[1.0, 0.55]), legend=BOTTOM if several else None
        ),
        tooltip=[
            alt.Tooltip("method_label:N", title="method"),
            alt.Tooltip("setting:N", title="shots"),
            alt.Tooltip("accuracy:Q", format=".3f"),
            alt.Tooltip("ci95:Q", title="± 95% CI", format=".3f"),
        ],
    )
    whiskers = base.mark_errorbar(ticks=True).encode(x=alt.X("low:Q", title="test accuracy (95% CI)"), x2="high:Q")
    first = rows.iloc[0]
    chance = alt.Chart(pd.DataFrame({"chance": [1 / first["ways"]]})).mark_rule(strokeDash=[2, 3], color="grey")
    heading = (
        f"Final test accuracy, {int(first['ways'])}-way, {int(first['episodes'])} test episodes ({first['dataset']})"
    )
    return alt.layer(bars, whiskers, chance.encode(x="chance:Q")).properties(
        height=alt.Step(36 if several else 44),
        title=title(heading, f"dotted: chance, {1 / first['ways']:.2f}", running),
    )
