"""Altair charts of the MLSR page: one figure per task, the meta-training curve on top and the test-time
results below it as they arrive (fits, test error and head magnitudes; digit-pair accuracy; navigation
returns and paths).  Methods keep the registry's colour, dash and marker, so curves that coincide (MAML
and MAML + L1 on navigation) stay apart."""

from __future__ import annotations

import altair as alt
import pandas as pd

from metalab.plots import styles

EXPERIMENT = "mlsr"
#: matplotlib markers of the registry -> Vega point shapes
SHAPES = {"o": "circle", "s": "square", "^": "triangle-up", "v": "triangle-down", "D": "diamond", "x": "cross"}
#: the test-time adaptation stages drawn in the fits and trajectories (the colours of the paper's Figure 2)
STAGE_COLOURS = {"before adaptation": "#2ca02c", "after 1 step": "#d62728", "after the last step": "#9467bd"}
#: legends under their panel, labels uncut: the figure then fits the page's column (about 850 px wide at a
#: 1400 px window) without a side legend pushing a panel out of view
LEGEND = {"labelLimit": 0, "titleLimit": 0, "orient": "bottom"}
WIDE, HALF, HEIGHT = 680, 320, 260
#: every panel keeps its own method scales and legend (panels show different methods)
INDEPENDENT = dict.fromkeys(("color", "strokeDash", "strokeWidth", "shape"), "independent")


def label(method: str) -> str:
    return styles.label(EXPERIMENT, method)


def method_encodings(methods: list[str], *, legend: bool = True) -> dict[str, alt.Color | alt.StrokeDash | alt.Shape]:
    """Colour, stroke dash and point shape of each method, from the registry (one shared legend); dashed
    methods get thinner strokes, so a dashed curve drawn over a solid one that it matches shows both."""
    looks = [styles.style(EXPERIMENT, m) for m in styles.ordered(EXPERIMENT, methods)]
    domain = [look.label for look in looks]
    shown = alt.Legend(**LEGEND) if legend else None
    return {
        "strokeWidth": alt.StrokeWidth(
            "method_label:N",
            scale=alt.Scale(domain=domain, range=[1.6 if lk.dash else 3.0 for lk in looks]),
            legend=None,
        ),
        "color": alt.Color(
            "method_label:N",
            title="method",
            scale=alt.Scale(domain=domain, range=[lk.colour for lk in looks]),
            legend=shown,
        ),
        "strokeDash": alt.StrokeDash(
            "method_label:N",
            title="method",
            scale=alt.Scale(domain=domain, range=[lk.dash for lk in looks]),
            legend=shown,
        ),
        "shape": alt.Shape(
            "method_label:N",
            title="method",
            scale=alt.Scale(domain=domain, range=[SHAPES.get(lk.marker, "circle") for lk in looks]),
            legend=shown,
        ),
    }


def rows_of(frame: pd.DataFrame, part: str, kind: str | None = None) -> pd.DataFrame:
    if frame.empty or "part" not in frame:
        return frame.iloc[0:0]
    rows = frame[frame["part"] == part]
    return rows[rows["kind"] == kind] if kind is not None and "kind" in rows else rows


def stage(steps: int, last: int) -> str:
    return "before adaptation" if steps == 0 else ("after the last step" if steps == last else "after 1 step")


def panel_title(text: str, subtitle: str = "") -> alt.TitleParams:
    return alt.TitleParams(text, subtitle=subtitle, anchor="start")


# --------------------------------------------------------------------------------------------
# meta-training


def training_chart(frame: pd.DataFrame, task: str, methods: list[str], title: alt.TitleParams) -> alt.Chart:
    """Query loss (sinusoid, digits) or mean return after the inner loop (navigation) per meta-iteration;
    several inner-step counts K are drawn side by side."""
    looks = method_encodings(methods)
    x = alt.X("iteration:Q", title="meta-iteration", scale=alt.Scale(nice=False), axis=alt.Axis(format="d"))
    if task == "Navigation":
        rows = rows_of(frame, "rl", "meta_iteration")
        columns = ["method", "iteration", "return_before", "return_after"]
        rows = rows[columns].copy() if not rows.empty else pd.DataFrame(columns=columns)
        rows["method_label"] = rows["method"].map(label)
        after = (
            alt.Chart(rows)
            .mark_line(point=alt.OverlayMarkDef(size=30, filled=True))
            .encode(
                x=x,
                y=alt.Y("return_after:Q", title="mean return of the meta-batch", scale=alt.Scale(zero=False)),
                **looks,
                tooltip=["method_label:N", "iteration:Q", alt.Tooltip("return_after:Q", title="after", format=".2f")],
            )
        )
        faint = method_encodings(methods, legend=False)
        before = (
            alt.Chart(rows)
            .mark_line(strokeWidth=1, opacity=0.45)
            .encode(x=x, y="return_before:Q", color=faint["color"], strokeDash=faint["strokeDash"])
        )
        return alt.layer(after, before).properties(width=WIDE, height=HEIGHT, title=title)
    rows = rows_of(frame, "training")
    columns = ["method", "iteration", "train_inner_steps", "query_loss"]
    rows = rows[columns].copy() if not rows.empty else pd.DataFrame(columns=columns)
    rows["method_label"] = rows["method"].map(label)
    several = rows["train_inner_steps"].nunique() > 1
    scale = alt.Scale(type="log", nice=False) if task == "Sinusoid" else alt.Scale(zero=False)
    chart = (
        alt.Chart(rows)
        .mark_line(strokeWidth=2)
        .encode(
            x=x,
            y=alt.Y("query_loss:Q", title="query loss after the inner loop", scale=scale),
            color=looks["color"],
            strokeDash=looks["strokeDash"],
            strokeWidth=looks["strokeWidth"],
            tooltip=["method_label:N", "iteration:Q", alt.Tooltip("query_loss:Q", format=".3g")],
        )
    )
    if several:
        column = alt.Column("train_inner_steps:O", title="inner steps in meta-training")
        return chart.properties(width=WIDE // 2 - 20, height=HEIGHT).facet(column=column).properties(title=title)
    return chart.properties(width=WIDE, height=HEIGHT, title=title)


# --------------------------------------------------------------------------------------------
# test time


def curve_with_band(
    rows: pd.DataFrame, x: str, y: str, x_title: str, y_title: str, methods: list[str]
) -> alt.LayerChart:
    """Mean curves per method (registry dash, and marker up to 25 points) with their 95 % confidence bands."""
    rows = rows[["method", x, y, "ci95"]].copy()
    rows["method_label"] = rows["method"].map(label)
    rows["low"], rows["high"] = rows[y] - rows["ci95"], rows[y] + rows["ci95"]
    looks = method_encodings(methods)
    base = alt.Chart(rows).encode(x=alt.X(f"{x}:Q", title=x_title, axis=alt.Axis(format="d", tickMinStep=1)))
    faint = method_encodings(methods, legend=False)["color"]  # the legend comes from the lines, drawn first
    band = base.mark_area(opacity=0.12).encode(y="low:Q", y2="high:Q", color=faint)
    markers = alt.OverlayMarkDef(size=45, filled=True) if rows[x].nunique() <= 25 else False  # not on 100 steps
    line = base.mark_line(point=markers).encode(
        y=alt.Y(f"{y}:Q", title=y_title, scale=alt.Scale(zero=False)),
        **looks,
        tooltip=["method_label:N", f"{x}:Q", alt.Tooltip(f"{y}:Q", format=".3g"), alt.Tooltip("ci95:Q", format=".2g")],
    )
    return alt.layer(line, band)


def fits_chart(frame: pd.DataFrame, methods: list[str]) -> alt.FacetChart | None:
    """Fitted curves on the fixed test sinusoids: truth, support points, each method before and after adaptation."""
    rows = rows_of(frame, "fits")
    curves = rows[rows["method"] != "support"].copy()
    if curves.empty:
        return None
    last = int(curves["adapt_steps"].max())
    curves = curves[curves["adapt_steps"].isin([0, last])]
    curves["series"] = curves["method"].map(label)
    curves["stage"] = [stage(int(s), last) for s in curves["adapt_steps"]]
    first = curves[curves["method"] == curves["method"].iloc[0]]
    truth = first[first["adapt_steps"] == 0].assign(series="ground truth", stage="truth", y_pred=first["y_true"])
    support = rows[rows["method"] == "support"].assign(series="support points", stage="support", y_pred=rows["y_true"])
    data = pd.concat([truth, curves, support], ignore_index=True)[["task_index", "x", "y_pred", "series", "stage"]]
    data = data.round({"x": 3, "y_pred": 3})  # a third of the chart's bytes, at a resolution no screen shows
    base = alt.Chart(data).encode(
        x=alt.X("x:Q", title="x"), y=alt.Y("y_pred:Q", title="y"), tooltip=["series:N", "stage:N"]
    )
    domain, colours = styles.colour_domain(EXPERIMENT, methods)
    colour = alt.Color(
        "series:N",
        title="curve",
        scale=alt.Scale(domain=["ground truth", *domain], range=["black", *colours]),
        legend=alt.Legend(**LEGEND),
    )
    truth_line = base.transform_filter("datum.stage == 'truth'").mark_line(strokeWidth=2.5).encode(color=colour)
    dash = alt.StrokeDash(
        "stage:N",
        title="stage",
        scale=alt.Scale(domain=["after the last step", "before adaptation"], range=[[], [5, 3]]),
        legend=alt.Legend(**LEGEND),
    )
    fitted = (
        base.transform_filter("datum.stage != 'truth' && datum.stage != 'support'")
        .mark_line(strokeWidth=1.6)
        .encode(color=colour, strokeDash=dash, detail="series:N")
    )
    points = base.transform_filter("datum.stage == 'support'").mark_point(filled=True, color="black", size=40)
    return (
        alt.layer(truth_line, fitted, points)
        .properties(width=WIDE // 3 - 20, height=200)
        .facet(column=alt.Column("task_index:N", title="test sinusoid"))
        .properties(
            title=panel_title(f"Fits on test sinusoids: before adaptation (dashed) and after {last} steps (solid)")
        )
    )


def histogram_chart(frame: pd.DataFrame, methods: list[str]) -> alt.Chart | None:
    """How the magnitudes of the heads are spread: MLSR's soft-thresholded zeros against gradient-step heads."""
    rows = rows_of(frame, "diagnostics", "histogram")
    if rows.empty:
        return None
    rows = rows[["method", "bin_low", "bin_high", "count"]].copy()
    rows["fraction"] = rows["count"] / rows.groupby("method")["count"].transform("sum")
    rows["bin"] = [
        "0 (below 1e-4)" if low == 0 else f"{low:.0e}–{high:.0e}"
        for low, high in zip(rows["bin_low"], rows["bin_high"], strict=True)
    ]
    rows["method_label"] = rows["method"].map(label)
    order = list(dict.fromkeys(rows.sort_values("bin_low")["bin"]))
    return (
        alt.Chart(rows)
        .mark_bar()
        .encode(
            x=alt.X("bin:N", title="|head weight|", sort=order, axis=alt.Axis(labelAngle=-45)),
            xOffset=alt.XOffset("method_label:N"),
            y=alt.Y("fraction:Q", title="fraction of weights"),
            color=method_encodings([m for m in methods if m in set(rows["method"])])["color"],
            tooltip=["method_label:N", "bin:N", alt.Tooltip("fraction:Q", format=".3f")],
        )
        .properties(
            width=HALF,
            height=HEIGHT,
            title=panel_title(
                "Head magnitudes on 50 test tasks", "after each method's own inner loop (MLSR, MAML-FZ, random)"
            ),
        )
    )


def trajectories_chart(frame: pd.DataFrame, methods: list[str]) -> alt.FacetChart | None:
    """2-D navigation paths per method (rows) and goal (columns), before adaptation and after 1 and the last step."""
    rows = rows_of(frame, "rl", "trajectory").copy()
    if rows.empty:
        return None
    last = int(rows["adapt_steps"].max())
    rows["stage"] = [stage(int(s), last) for s in rows["adapt_steps"]]
    rows["method_label"] = rows["method"].map(label)
    rows["series"] = rows["stage"] + " #" + rows["path"].astype(int).astype(str)
    goals = rows.drop_duplicates(["method", "goal_index"]).assign(
        stage="goal", x=lambda d: d["goal_x"], y=lambda d: d["goal_y"]
    )
    data = pd.concat([rows, goals], ignore_index=True)[["method_label", "goal_index", "stage", "series", "t", "x", "y"]]
    domain = alt.Scale(domain=[-0.8, 0.8])
    base = alt.Chart(data).encode(x=alt.X("x:Q", scale=domain, title="x"), y=alt.Y("y:Q", scale=domain, title="y"))
    colour = alt.Color(
        "stage:N", title="policy", scale=alt.Scale(domain=list(STAGE_COLOURS), range=list(STAGE_COLOURS.values()))
    )
    paths = (
        base.transform_filter("datum.stage != 'goal'")
        .mark_line(strokeWidth=1.2, clip=True)
        .encode(color=colour, detail="series:N", order="t:Q")
    )
    goal = base.transform_filter("datum.stage == 'goal'").mark_point(
        shape="diamond", filled=True, size=120, color="black"
    )
    return (
        alt.layer(paths, goal)
        .properties(width=170, height=170)
        .facet(
            row=alt.Row("method_label:N", title=None, sort=[label(m) for m in styles.ordered(EXPERIMENT, methods)]),
            column=alt.Column("goal_index:N", title="evaluation goal (black diamond)"),
        )
        .properties(title=panel_title(f"Trajectories before adaptation and after 1 and {last} policy-gradient steps"))
    )


def results_charts(frame: pd.DataFrame, task: str, methods: list[str]) -> list:
    """The test-time charts of ``task`` that have records so far, in reading order."""
    if task == "Sinusoid":
        rows = rows_of(frame, "sinusoid")
        mse = None
        if not rows.empty:
            mse = curve_with_band(
                rows, "adapt_steps", "mse", "gradient steps at test time", "MSE on test sinusoids", methods
            )
            mse = mse.properties(
                width=HALF,
                height=HEIGHT,
                title=panel_title("Test MSE after adaptation", "mean over the test sinusoids, band: 95 % interval"),
            )
        lower = [chart for chart in (mse, histogram_chart(frame, methods)) if chart is not None]
        return [
            c
            for c in (
                fits_chart(frame, methods),
                alt.hconcat(*lower).resolve_scale(**INDEPENDENT) if lower else None,
            )
            if c is not None
        ]
    if task == "Digits":
        rows = rows_of(frame, "digits")
        if rows.empty:
            return []
        accuracy = curve_with_band(
            rows, "adapt_steps", "accuracy", "gradient steps on the support set", "query accuracy", methods
        )
        chance = alt.Chart(pd.DataFrame({"chance": [0.5]})).mark_rule(strokeDash=[4, 4]).encode(y="chance:Q")
        title = panel_title("Accuracy on test digit pairs", "dotted: chance (labels are permuted per task)")
        return [alt.layer(accuracy, chance).properties(width=WIDE, height=HEIGHT, title=title)]
    rows = rows_of(frame, "rl", "adaptation")
    returns = None
    if not rows.empty:
        returns = curve_with_band(
            rows, "adapt_steps", "mean_return", "policy-gradient steps at test time", "mean return", methods
        )
        returns = returns.properties(
            width=WIDE, height=HEIGHT, title=panel_title("Return on evaluation goals after adaptation")
        )
    return [c for c in (returns, trajectories_chart(frame, methods)) if c is not None]


def task_chart(frame: pd.DataFrame, task: str, methods: list[str], title: alt.TitleParams) -> alt.VConcatChart:
    """Everything the run of ``task`` has drawn so far as one figure (one PNG download).

    Each panel sits in a concatenation of its own: Streamlit's ``width="stretch"`` widens every plain
    panel of a vertical concatenation to the whole column, which pushes its axis and legend out of view;
    it leaves nested concatenations at the widths set here.
    """
    trained = [m for m in methods if m != "random"]
    panels = [training_chart(frame, task, trained, title), *results_charts(frame, task, methods)]
    kept = [panel if isinstance(panel, (alt.HConcatChart, alt.FacetChart)) else alt.hconcat(panel) for panel in panels]
    return alt.vconcat(*kept, spacing=28).resolve_scale(**INDEPENDENT)
