"""Meta-learning from sparse recovery: meta-train MLSR against MAML and its variants, live, on the task you choose."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from metalab.dashboard import lab  # noqa: E402
from metalab.dashboard.controls import url  # noqa: E402

from metalab.plots import mlsr as plots_mlsr  # noqa: E402
from metalab.plots import styles  # noqa: E402
from metalab.experiments.mlsr import ALL_METHODS, RL_METHODS  # noqa: E402
from metalab.experiments import get_experiment  # noqa: E402

EXPERIMENT = "mlsr"
experiment = get_experiment(EXPERIMENT)
CONFIG = experiment.config
DEFAULT = CONFIG.preset("quick")
HELP = CONFIG.describe()
LABELS = {  # config field -> the control's label, for error messages
    "lam": "λ (L1 strength)",
    "rl_lam": "λ (L1 strength)",
    "inner_steps": "inner steps",
    "rl_inner_steps": "inner steps",
    "shots": "shots K",
    "digit_shots": "shots per class",
    "rl_trajectories": "trajectories per task",
    "hidden": "hidden width",
    "digit_hidden": "hidden width",
    "rl_hidden": "hidden width",
    "meta_iterations": "meta-iterations",
    "digit_iterations": "meta-iterations",
    "rl_iterations": "meta-iterations",
    "methods": "methods",
    "rl_methods": "methods",
    "digits": "digits",
    "seed": "seed",
}
#: task shown in the page (and in the URL) -> the experiment parts it runs
TASKS = {
    "Sinusoid": ("training", "sinusoid", "fits", "diagnostics"),
    "Digits": ("training", "digits"),
    "Navigation": ("rl",),
}
#: the test-time adaptation stages drawn in the fits and trajectories (Figure 2's colours)
STAGE_COLOURS = {"before adaptation": "#2ca02c", "after 1 step": "#d62728", "after the last step": "#9467bd"}


def method_label(method: str) -> str:
    return styles.label(EXPERIMENT, method)


def colour_scale(methods) -> alt.Scale:
    return alt.Scale(
        domain=[method_label(m) for m in methods], range=[styles.style(EXPERIMENT, m).colour for m in methods]
    )


def steps_text(steps: int) -> str:
    return f"{steps} step" + ("" if steps == 1 else "s")


def stage(steps: int, last: int) -> str:
    return "before adaptation" if steps == 0 else ("after the last step" if steps == last else "after 1 step")


def settings_text(task: str, config) -> str:
    if task == "Navigation":
        lam = "each method's default" if config.rl_lam is None else f"{config.rl_lam:g}"
        return (
            f"λ = {lam}, {config.rl_inner_steps} inner step(s), {config.rl_trajectories} trajectories per task, "
            f"width {config.rl_hidden[-1]}, {config.rl_iterations} meta-iterations"
        )
    shots, width, iterations = (
        (config.shots, config.hidden, config.meta_iterations)
        if task == "Sinusoid"
        else (config.digit_shots, config.digit_hidden[-1], config.digit_iterations)
    )
    return (
        f"λ = {config.lam:g}, {config.inner_steps[0]} inner step(s), K = {shots}, width {width}, "
        f"{iterations} meta-iterations"
    )


def title(text: str, task: str, config, running: bool, subtitle: str = "") -> alt.TitleParams:
    note = " · ".join(s for s in (subtitle, "running…" if running else "") if s)
    return alt.TitleParams(f"{text} ({settings_text(task, config)})", subtitle=note, anchor="start")


def kind_rows(frame: pd.DataFrame, part: str, kind: str | None = None) -> pd.DataFrame:
    if frame.empty or "part" not in frame:
        return frame.iloc[0:0]
    rows = frame[frame["part"] == part]
    return rows[rows["kind"] == kind] if kind is not None and "kind" in rows else rows


# --------------------------------------------------------------------------------------------
# charts (altair)


def training_chart(frame: pd.DataFrame, task: str, config, running: bool, methods) -> alt.Chart:
    """The live meta-training curve: query loss (sinusoid, digits) or return (navigation) per meta-iteration."""
    colour = alt.Color("method_label:N", title="method", scale=colour_scale(methods))
    x = alt.X("step:Q", title="meta-iteration", scale=alt.Scale(nice=False), axis=alt.Axis(format="d"))
    if task == "Navigation":
        columns = ["method", "step", "return_before", "return_after"]
        rows = kind_rows(frame, "rl", "meta_iteration")
        rows = rows[columns] if not rows.empty else pd.DataFrame(columns=columns)  # empty: only the untrained policy
        rows = rows.melt(
            id_vars=["method", "step"],
            value_vars=["return_before", "return_after"],
            var_name="measured",
            value_name="mean_return",
        )
        rows["measured"] = rows["measured"].map({"return_before": "before", "return_after": "after the inner loop"})
        rows["method_label"] = rows["method"].map(method_label)
        chart = (
            alt.Chart(rows)
            .mark_line(strokeWidth=2)
            .encode(
                x=x,
                y=alt.Y("mean_return:Q", title="mean return of the meta-batch"),
                color=colour,
                strokeDash=alt.StrokeDash("measured:N", title="return", sort=["after the inner loop", "before"]),
                tooltip=["method_label:N", "step:Q", "measured:N", alt.Tooltip("mean_return:Q", format=".2f")],
            )
        )
        return chart.properties(height=320, title=title("Meta-training on 2-D navigation", task, config, running))
    columns = ["method", "step", "query_loss"]
    rows = kind_rows(frame, "training")
    # only the columns drawn travel to the browser; an empty frame when only the random network was asked for
    rows = rows[columns].copy() if not rows.empty else pd.DataFrame(columns=columns)
    rows["method_label"] = rows["method"].map(method_label)
    scale = alt.Scale(type="log") if task == "Sinusoid" else alt.Scale(zero=False)
    chart = (
        alt.Chart(rows)
        .mark_line(strokeWidth=2)
        .encode(
            x=x,
            y=alt.Y("query_loss:Q", title="query loss after the inner loop", scale=scale),
            color=colour,
            tooltip=["method_label:N", "step:Q", alt.Tooltip("query_loss:Q", format=".3g")],
        )
    )
    what = "sinusoids (MSE)" if task == "Sinusoid" else "digit pairs (cross-entropy)"
    return chart.properties(height=320, title=title(f"Meta-training on {what}", task, config, running))


def fits_chart(frame: pd.DataFrame, config, running: bool, methods) -> alt.FacetChart | None:
    """Fitted curves on the fixed test sinusoids: truth, support points, each method before and after adaptation."""
    rows = kind_rows(frame, "fits")
    if rows.empty:
        return None
    curves = rows[rows["method"] != "support"].copy()
    last = int(curves["adapt_steps"].max()) if not curves.empty else 0
    curves = curves[curves["adapt_steps"].isin([0, last])]
    curves["series"] = curves["method"].map(method_label)
    curves["stage"] = [stage(int(s), last) for s in curves["adapt_steps"]]
    first = curves[curves["method"] == curves["method"].iloc[0]] if not curves.empty else curves
    truth = first[first["adapt_steps"] == 0].assign(series="ground truth", stage="truth", y_pred=first["y_true"])
    support = rows[rows["method"] == "support"].assign(series="support points", stage="support", y_pred=rows["y_true"])
    data = pd.concat([truth, curves, support], ignore_index=True)[["task_index", "x", "y_pred", "series", "stage"]]
    base = alt.Chart(data).encode(
        x=alt.X("x:Q", title="x"), y=alt.Y("y_pred:Q", title="y"), tooltip=["series:N", "stage:N"]
    )
    colour = alt.Color(
        "series:N",
        title="curve",
        scale=alt.Scale(
            domain=["ground truth", *[method_label(m) for m in methods]],
            range=["black", *[styles.style(EXPERIMENT, m).colour for m in methods]],
        ),
    )
    truth_line = (
        base.transform_filter("datum.stage == 'truth'").mark_line(strokeWidth=3, opacity=0.35).encode(color=colour)
    )
    fitted = (
        base.transform_filter("datum.stage != 'truth' && datum.stage != 'support'")
        .mark_line(strokeWidth=1.6)
        .encode(
            color=colour,
            strokeDash=alt.StrokeDash(
                "stage:N", title="stage", sort=["after the last step", "before adaptation"], legend=alt.Legend()
            ),
            detail="series:N",
        )
    )
    points = base.transform_filter("datum.stage == 'support'").mark_point(filled=True, color="black", size=40)
    return (
        alt.layer(truth_line, fitted, points)
        .properties(width=230, height=220)
        .facet(column=alt.Column("task_index:N", title="test sinusoid"))
        .properties(
            title=alt.TitleParams(
                f"Fits on test sinusoids, {len(set(curves['method']))} of {len(methods)} methods so far"
                if running
                else f"Fits on test sinusoids: before adaptation (dashed) and after {last} steps (solid)",
                anchor="start",
            )
        )
    )


def curve_with_band(rows: pd.DataFrame, x: str, y: str, x_title: str, y_title: str, methods) -> alt.LayerChart:
    """Mean curves per method with their 95 % confidence bands."""
    rows = rows[["method", x, y, "ci95"]].copy()
    rows["method_label"] = rows["method"].map(method_label)
    rows["low"], rows["high"] = rows[y] - rows["ci95"], rows[y] + rows["ci95"]
    colour = alt.Color("method_label:N", title="method", scale=colour_scale(methods))
    base = alt.Chart(rows).encode(x=alt.X(f"{x}:Q", title=x_title, axis=alt.Axis(format="d", tickMinStep=1)))
    band = base.mark_area(opacity=0.15).encode(y="low:Q", y2="high:Q", color=alt.Color("method_label:N", legend=None))
    line = base.mark_line(point=True, strokeWidth=2).encode(
        y=alt.Y(f"{y}:Q", title=y_title, scale=alt.Scale(zero=False)),
        color=colour,
        tooltip=["method_label:N", f"{x}:Q", alt.Tooltip(f"{y}:Q", format=".3g"), alt.Tooltip("ci95:Q", format=".2g")],
    )
    return alt.layer(band, line).resolve_legend(color="independent").properties(height=300)


def histogram_chart(frame: pd.DataFrame, methods) -> alt.Chart | None:
    """How the magnitudes of the heads are spread: MLSR's soft-thresholded zeros against gradient-step heads."""
    rows = kind_rows(frame, "diagnostics", "histogram")
    if rows.empty:
        return None
    rows = rows[["method", "bin_low", "bin_high", "count"]].copy()
    rows["fraction"] = rows["count"] / rows.groupby("method")["count"].transform("sum")
    rows["bin"] = [
        "0 (below 1e-4)" if low == 0 else f"{low:.0e}–{high:.0e}"
        for low, high in zip(rows["bin_low"], rows["bin_high"])
    ]
    rows["method_label"] = rows["method"].map(method_label)
    order = list(dict.fromkeys(rows.sort_values("bin_low")["bin"]))
    return (
        alt.Chart(rows)
        .mark_bar()
        .encode(
            x=alt.X("bin:N", title="|head weight|", sort=order, axis=alt.Axis(labelAngle=-45)),
            xOffset=alt.XOffset("method_label:N"),
            y=alt.Y("fraction:Q", title="fraction of weights"),
            color=alt.Color("method_label:N", title="method", scale=colour_scale(methods)),
            tooltip=["method_label:N", "bin:N", alt.Tooltip("fraction:Q", format=".3f")],
        )
        .properties(height=300, title=alt.TitleParams("Head magnitudes on 50 test tasks", anchor="start"))
    )


def trajectories_chart(frame: pd.DataFrame, methods) -> alt.FacetChart | None:
    """2-D navigation paths per method (rows) and goal (columns), before adaptation and after 1 and the last step."""
    rows = kind_rows(frame, "rl", "trajectory").copy()
    if rows.empty:
        return None
    last = int(rows["adapt_steps"].max())
    rows["stage"] = [stage(int(s), last) for s in rows["adapt_steps"]]
    rows["method_label"] = rows["method"].map(method_label)
    rows["series"] = rows["stage"] + " #" + rows["path"].astype(int).astype(str)
    goals = rows.drop_duplicates(["method", "goal_index"]).assign(
        stage="goal", x=lambda d: d["goal_x"], y=lambda d: d["goal_y"]
    )
    data = pd.concat([rows, goals], ignore_index=True)[["method_label", "goal_index", "stage", "series", "t", "x", "y"]]
    domain = alt.Scale(domain=[-0.8, 0.8])
    base = alt.Chart(data).encode(x=alt.X("x:Q", scale=domain, title="x"), y=alt.Y("y:Q", scale=domain, title="y"))
    paths = (
        base.transform_filter("datum.stage != 'goal'")
        .mark_line(strokeWidth=1.2, clip=True)
        .encode(
            color=alt.Color(
                "stage:N",
                title="policy",
                scale=alt.Scale(domain=list(STAGE_COLOURS), range=list(STAGE_COLOURS.values())),
            ),
            detail="series:N",
            order="t:Q",
        )
    )
    goal = base.transform_filter("datum.stage == 'goal'").mark_point(
        shape="diamond", filled=True, size=120, color="black"
    )
    return (
        alt.layer(paths, goal)
        .properties(width=190, height=190)
        .facet(
            row=alt.Row("method_label:N", title=None, sort=[method_label(m) for m in methods]),
            column=alt.Column("goal_index:N", title="evaluation goal (black diamond)"),
        )
        .properties(
            title=alt.TitleParams(
                f"Trajectories before adaptation and after 1 and {last} policy-gradient steps", anchor="start"
            )
        )
    )


def draw_charts(frame: pd.DataFrame, task: str, config, running: bool) -> None:
    """Every chart of the task's view, in reading order: training curve first."""
    methods = list(config.rl_methods if task == "Navigation" else config.methods)
    trained = [m for m in methods if m != "random"]
    st.altair_chart(training_chart(frame, task, config, running, trained), width="stretch")
    if task == "Sinusoid":
        fits = fits_chart(frame, config, running, methods)
        if fits is not None:
            st.altair_chart(fits)
        rows = kind_rows(frame, "sinusoid")
        left, right = st.columns(2)
        if not rows.empty:
            chart = curve_with_band(
                rows, "adapt_steps", "mse", "gradient steps at test time", "MSE on test sinusoids", methods
            )
            left.altair_chart(
                chart.properties(title=alt.TitleParams("Test MSE after adaptation", anchor="start")), width="stretch"
            )
        histogram = histogram_chart(frame, methods)
        if histogram is not None:
            right.altair_chart(histogram, width="stretch")
    elif task == "Digits":
        rows = kind_rows(frame, "digits")
        if not rows.empty:
            chart = curve_with_band(
                rows, "adapt_steps", "accuracy", "gradient steps on the support set", "query accuracy", methods
            )
            chance = alt.Chart(pd.DataFrame({"chance": [0.5]})).mark_rule(strokeDash=[4, 4]).encode(y="chance:Q")
            st.altair_chart(
                alt.layer(chart, chance).properties(
                    title=alt.TitleParams("Accuracy on test digit pairs", anchor="start")
                ),
                width="stretch",
            )
    else:
        rows = kind_rows(frame, "rl", "adaptation")
        if not rows.empty:
            chart = curve_with_band(
                rows, "adapt_steps", "mean_return", "policy-gradient steps at test time", "mean return", methods
            )
            st.altair_chart(
                chart.properties(title=alt.TitleParams("Return on evaluation goals after adaptation", anchor="start")),
                width="stretch",
            )
        paths = trajectories_chart(frame, methods)
        if paths is not None:
            st.altair_chart(paths)


# --------------------------------------------------------------------------------------------
# summaries


def summary(frame: pd.DataFrame, task: str, config) -> tuple[pd.DataFrame, str, str]:
    """(table, the column that ranks the methods, 'lower' or 'higher' is better)."""
    if task == "Sinusoid":
        rows = kind_rows(frame, "sinusoid")
        last = config.adapt_steps
        table = rows.pivot_table(index="method", columns="adapt_steps", values="mse", sort=False)
        table = table.reindex(columns=[0, 1, last])
        table.columns = ["MSE before adaptation", "MSE after 1 step", f"MSE after {steps_text(last)}"]
        sparsity = kind_rows(frame, "diagnostics", "sparsity").set_index("method")["sparsity"]
        table["zero head weights"] = sparsity.reindex(table.index)
        column, better = f"MSE after {steps_text(last)}", "lower"
    elif task == "Digits":
        rows = kind_rows(frame, "digits")
        steps = sorted({0, 1, config.adapt_steps, config.long_steps})
        table = rows.pivot_table(index="method", columns="adapt_steps", values="accuracy", sort=False)
        table = table.reindex(columns=steps)
        table.columns = [f"accuracy after {steps_text(s)}" for s in steps]
        column, better = f"accuracy after {steps_text(config.adapt_steps)}", "higher"
    else:
        rows = kind_rows(frame, "rl", "adaptation")
        table = rows.pivot_table(index="method", columns="adapt_steps", values="mean_return", sort=False)
        table.columns = [f"return after {steps_text(int(s))}" for s in table.columns]
        column, better = "return after 1 step", "higher"
    seconds = rows.groupby("method", sort=False)["train_seconds"].first().rename("training seconds")
    table = table.join(seconds).reset_index()
    table["method"] = table["method"].map(method_label)
    return table, column, better


def headline(table: pd.DataFrame, column: str, better: str) -> str:
    if table.empty or column not in table:
        return ""
    ranked = table.sort_values(column, ascending=better == "lower", kind="stable")
    best = ranked.iloc[0]
    text = f"Best {column}: **{best['method']}** ({best[column]:.3g})."
    mlsr = table[table["method"] == method_label("mlsr")]
    if not mlsr.empty and best["method"] != method_label("mlsr"):
        text += f" MLSR: {mlsr.iloc[0][column]:.3g}."
    return text


# --------------------------------------------------------------------------------------------
# the page


def slider(bar, key: str, low: int, high: int, default: int, *, step: int = 1, label: str = "", help: str = "") -> int:
    """A sidebar slider bound to the URL parameter ``key`` (the config field's name where the value is one)."""
    return bar.slider(label or LABELS[key], low, high, default, step=step, help=help or HELP.get(key), **url(key))


def methods_control(bar, key: str, options, default) -> tuple[str, ...]:
    """The methods to compare, by the names the CLI uses (a format_func would put labels in the URL)."""
    described = ", ".join(f"{m}: {method_label(m)}" for m in options)
    return tuple(bar.multiselect(LABELS[key], list(options), default=list(default), help=described, **url(key)))


def lam_control(bar, task: str) -> dict:
    if task == "Navigation":
        auto = bar.toggle(
            "each method's default λ",
            True,
            help="MLSR 0.001, L1-MAML 0.01 (metalab.rl.DEFAULT_LAM); MAML has no L1 term",
            **url("rl_lam_auto"),
        )
        lam = bar.number_input(
            LABELS["rl_lam"],
            value=0.01,
            step=0.001,
            format="%.4f",
            disabled=auto,
            help=HELP["rl_lam"],
            **url("rl_lam"),
        )
        return {"rl_lam": None if auto else lam}
    lam = bar.number_input(LABELS["lam"], value=DEFAULT.lam, step=0.01, format="%.4f", help=HELP["lam"], **url("lam"))
    return {"lam": lam}


def controls() -> tuple[str, dict]:
    """The task switch and the sidebar controls, each bound to the URL; returns (task, config values)."""
    task = st.segmented_control("Task", list(TASKS), default="Sinusoid", required=True, **url("task"))
    bar = st.sidebar
    bar.header("Inner loop")
    values = lam_control(bar, task)
    if task == "Navigation":
        values["rl_inner_steps"] = slider(bar, "rl_inner_steps", 1, 5, DEFAULT.rl_inner_steps)
        values["rl_trajectories"] = slider(bar, "rl_trajectories", 2, 100, DEFAULT.rl_trajectories)
        bar.header("Meta-training")
        width = slider(
            bar,
            "rl_width",
            8,
            200,
            DEFAULT.rl_hidden[-1],
            step=4,
            label=LABELS["rl_hidden"],
            help="units in each of the two hidden layers of the policy's mean",
        )
        values["rl_hidden"] = (width, width)
        values["rl_iterations"] = slider(bar, "rl_iterations", 1, 300, DEFAULT.rl_iterations)
        values["rl_methods"] = methods_control(bar, "rl_methods", RL_METHODS, DEFAULT.rl_methods)
    else:
        values["inner_steps"] = (slider(bar, "inner_steps", 1, 10, 1),)
        if task == "Sinusoid":
            shots = slider(
                bar, "shots", 1, 50, DEFAULT.shots, help="support points per task, in meta-training and at test time"
            )
            values["shots"] = values["eval_shots"] = shots
            values["rip_k"] = min(DEFAULT.rip_k, shots)  # the RIP diagnostic samples k of the K support columns
            bar.header("Meta-training")
            values["hidden"] = slider(bar, "hidden", 5, 200, DEFAULT.hidden, step=5)
            values["widths"] = (values["hidden"],)
            values["meta_iterations"] = slider(bar, "meta_iterations", 10, 2000, DEFAULT.meta_iterations, step=10)
        else:
            values["digit_shots"] = slider(bar, "digit_shots", 1, 100, DEFAULT.digit_shots)
            bar.header("Meta-training")
            width = slider(
                bar,
                "digit_width",
                2,
                200,
                DEFAULT.digit_hidden[-1],
                label=LABELS["digit_hidden"],
                help="units of the last hidden layer (64-100-width-2)",
            )
            values["digit_hidden"] = (*DEFAULT.digit_hidden[:-1], width)
            values["digit_iterations"] = slider(bar, "digit_iterations", 10, 2000, DEFAULT.digit_iterations, step=10)
            values["digits"] = tuple(
                bar.multiselect(
                    LABELS["digits"],
                    list(range(10)),
                    default=list(DEFAULT.digits),
                    help=HELP["digits"],
                    **url("digits"),
                )
            )
        values["methods"] = methods_control(bar, "methods", ALL_METHODS, DEFAULT.methods)
    with bar.expander("Variant and seed"):
        if task != "Navigation":
            values["algorithm"] = st.selectbox(
                "recovery algorithm", ["ista", "fista"], help=HELP["algorithm"], **url("algorithm")
            )
            values["loss"] = st.selectbox("recovery loss", ["mse", "mae"], help=HELP["loss"], **url("loss"))
        if task == "Sinusoid":
            values["sinusoid"] = st.selectbox(
                "sinusoid distribution", ["maml", "mlsr"], help=HELP["sinusoid"], **url("sinusoid")
            )
        values["seed"] = st.number_input(
            "seed", min_value=0, max_value=2**31 - 1, value=DEFAULT.seed, step=1, **url("seed")
        )
    values["parts"] = TASKS[task]
    values["task"] = "digits" if task == "Digits" else "sinusoid"
    return task, values


def main() -> None:
    st.set_page_config(
        page_title="Meta-learning from sparse recovery · metalab", page_icon=":material/scatter_plot:", layout="wide"
    )
    st.title("Meta-learning from sparse recovery (MLSR)")
    st.caption(
        "Lou, Zhao & Wang, NeurIPS 2021 Workshop on Meta-Learning · meta-train a network so that a sparse output "
        "layer, recovered per task from a few samples, does well on the task."
    )
    with st.expander("The method"):
        st.markdown(
            r"""
For a task's support set, let $\Phi = [\phi_\theta(X_s)\ 1]$ be the body's features. The inner loop recovers the
output layer by ISTA, $w \leftarrow \mathrm{soft}(w - \eta\,\Phi^\top(\Phi w - y)/n,\ \eta\lambda)$ with $\eta = 1/L$,
which minimises $\frac{1}{2n}\|\Phi w - y\|^2 + \lambda\|W\|_1$; the body is meta-trained on the query loss of the
recovered head with a **first-order** meta-gradient (the head's dependence on $\theta$ is dropped, which the paper
justifies when $\Phi$ satisfies RIP). At test time no method gets the L1 term.

Baselines: **MAML** (every parameter adapts), **MAML-FZ** (= ANIL: only the output layer adapts, by gradient
steps), **MAML + L1** (an L1 term in MAML's inner loop), and the **random** initialisation. On 2-D navigation the
inner loop is a REINFORCE step (MAML) or the recovery of the policy mean's output layer (MLSR, a reconstruction).
"""
        )

    task, values = controls()
    config = lab.build_config(CONFIG, values)
    if config is None:
        return

    def draw(target, frame: pd.DataFrame, running: bool) -> None:
        with target.container():
            draw_charts(frame, task, config, running)

    result = lab.live_run(lab.run_key(EXPERIMENT, config), lambda: experiment.run(config), draw)
    if result.frame.empty:
        if result.error is None:
            st.info("No records yet: press **Run again** to start the run.", icon=":material/info:")
        return

    table, column, better = summary(result.frame, task, config)
    st.subheader("Summary" + ("" if result.complete else " (partial run)"))
    st.markdown(headline(table, column, better))
    formats = {c: st.column_config.NumberColumn(format="%.3f") for c in table.columns if c != "method"}
    st.dataframe(table, hide_index=True, column_config=formats)
    make_figure = {
        "Sinusoid": plots_mlsr.sinusoid_figure,
        "Digits": plots_mlsr.digits_figure,
        "Navigation": plots_mlsr.rl_trajectories_figure,
    }[task]
    lab.downloads(result, f"mlsr_{task.lower()}", make_figure)
    with st.expander("Reproduce outside the dashboard"):
        st.markdown("The link in the address bar reproduces this view. From a shell:")
        st.code(lab.cli_command(EXPERIMENT, config), language="bash")
        st.json(config.to_dict(), expanded=False)


main()
