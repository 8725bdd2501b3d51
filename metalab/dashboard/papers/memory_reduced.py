"""Memory-reduced meta-learning: graph memory against inner steps K, training curves and CG, live."""

from __future__ import annotations

import math
import altair as alt
import pandas as pd
import streamlit as st

from metalab.dashboard import lab  # noqa: E402
from metalab.dashboard.controls import url  # noqa: E402

from metalab.plots import memory_reduced as plots_memory  # noqa: E402
from metalab.plots import styles  # noqa: E402
from metalab.experiments import get_experiment, memory_reduced  # noqa: E402

EXPERIMENT = "memory_reduced"
experiment = get_experiment(EXPERIMENT)
CONFIG = experiment.config
QUICK = CONFIG.preset("quick")
HELP = CONFIG.describe()
#: the page starts smaller than the quick preset (four methods, 1-shot, no final evaluation) so that
#: its first view draws in seconds; the controls reach the whole quick preset
PAGE_METHODS = ("implicit", "maml", "anil", "anil_recompute")
PAGE_SHOTS = (1,)
LAMBDAS = (0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
LABELS = {  # config field -> the control's label, for error messages
    "dataset": "data set",
    "ways": "ways N",
    "shots": "shots",
    "queries": "queries per class",
    "inner_steps": "inner steps K",
    "cg_steps": "CG steps N",
    "l2": "ridge λ",
    "inner_lr": "inner step size α",
    "meta_batch": "meta-batch size",
    "meta_iterations": "meta-iterations",
    "meta_lr": "meta learning rate",
    "methods": "methods",
    "batch_mode": "tasks of a meta-batch",
    "eval_every": "evaluate every",
    "eval_episodes": "test episodes per evaluation",
    "k_grid": "K values of the memory bars",
    "memory_shots": "shots in the memory measurement",
    "memory_tasks": "tasks per measured meta-batch",
    "hidden": "Conv-4 channels",
    "prox": "iMAML proximal strength",
    "cg_max_steps": "CG steps in the residual plot",
    "final_episodes": "final test episodes",
    "parts": "parts",
    "seed": "seed",
}


def method_label(method: str) -> str:
    return styles.label(EXPERIMENT, method)


def colour_scale(methods) -> alt.Scale:
    return alt.Scale(
        domain=[method_label(m) for m in methods], range=[styles.style(EXPERIMENT, m).colour for m in methods]
    )


def labelled(rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows.copy()
    rows["method_label"] = rows["method"].map(method_label)
    return rows


#: legends under the side-by-side charts, so that the pair fits the page's width
BOTTOM = alt.Legend(orient="bottom", direction="horizontal", columns=4, labelLimit=260)


def running_text(running: bool) -> str:
    return " · running…" if running else ""


# --------------------------------------------------------------------------------------------
# charts (altair)


def memory_chart(rows: pd.DataFrame, config, running: bool) -> alt.HConcatChart:
    """Bars of graph memory per method at each K, next to the time per task."""
    rows = labelled(rows)
    rows["ms_per_task"] = 1000 * rows["seconds_per_task"]
    methods = [m for m in config.methods if m in set(rows["method"])]
    order = [method_label(m) for m in methods]
    colour = alt.Color("method_label:N", title="method", scale=colour_scale(methods), sort=order, legend=BOTTOM)
    k = alt.X("inner_steps:O", title="inner steps K", sort=sorted(config.k_grid), axis=alt.Axis(labelAngle=0))
    tooltip = [
        alt.Tooltip("method_label:N", title="method"),
        alt.Tooltip("inner_steps:Q", title="K"),
        alt.Tooltip("graph_mb:Q", title="graph MB", format=".2f"),
        alt.Tooltip("ms_per_task:Q", title="ms per task", format=".1f"),
    ]
    first = rows.iloc[0]
    setting = (
        f"{int(first['ways'])}-way {int(first['shots'])}-shot, Conv-4-{int(first['hidden'])}, "
        f"{int(first['tasks'])} task(s), {first['dataset']}"
    )
    bars = (
        alt.Chart(rows)
        .mark_bar()
        .encode(
            x=k,
            xOffset=alt.XOffset("method_label:N", sort=order),
            y=alt.Y("graph_mb:Q", title="graph memory (MB saved for backward)"),
            color=colour,
            tooltip=tooltip,
        )
        .properties(
            width=480,
            height=340,
            title=alt.TitleParams(
                f"Graph memory of one hypergradient vs K ({setting})",
                subtitle="bytes autograd keeps for the backward pass (saved-tensor hooks)" + running_text(running),
                anchor="start",
            ),
        )
    )
    times = (
        alt.Chart(rows)
        .mark_line(point=True)
        .encode(
            x=alt.X("inner_steps:Q", title="inner steps K"),
            y=alt.Y("ms_per_task:Q", title="milliseconds per task"),
            color=colour,
            tooltip=tooltip,
        )
        .properties(width=320, height=340, title=alt.TitleParams("Time per task vs K", anchor="start"))
    )
    return alt.hconcat(bars, times)


def training_chart(rows: pd.DataFrame, config, running: bool) -> alt.HConcatChart:
    """Test accuracy against meta-training wall clock, and the training query loss against the iteration."""
    rows = labelled(rows)
    rows["setting"] = rows["shots"].map(lambda s: f"{int(s)}-shot")
    methods = [m for m in config.methods if m in set(rows["method"])]
    colour = alt.Color("method_label:N", title="method", scale=colour_scale(methods), legend=BOTTOM)
    dash = alt.StrokeDash("setting:N", title="shots", legend=None if len(config.shots) == 1 else BOTTOM)
    tooltip = [
        alt.Tooltip("method_label:N", title="method"),
        alt.Tooltip("setting:N", title="shots"),
        alt.Tooltip("step:Q", title="meta-iteration"),
        alt.Tooltip("seconds:Q", title="seconds", format=".2f"),
        alt.Tooltip("test_accuracy:Q", title="test accuracy", format=".3f"),
        alt.Tooltip("train_query_loss:Q", title="query loss", format=".3f"),
    ]
    base = alt.Chart(rows).encode(color=colour, strokeDash=dash, tooltip=tooltip)
    accuracy = (
        base.mark_line(point=True)
        .encode(
            x=alt.X("seconds:Q", title="meta-training wall clock (s)"),
            y=alt.Y("test_accuracy:Q", title="test accuracy after adaptation", scale=alt.Scale(domain=[0, 1])),
        )
        .properties(
            width=440,
            height=320,
            title=alt.TitleParams(
                f"Test accuracy during meta-training ({config.ways}-way, {rows['dataset'].iloc[0]})",
                subtitle=f"{config.eval_episodes} test episodes per point; chance = {1 / config.ways:.2f}"
                + running_text(running),
                anchor="start",
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
        .properties(width=360, height=320, title=alt.TitleParams("Training query loss", anchor="start"))
    )
    return alt.hconcat(accuracy, loss)


def cg_chart(rows: pd.DataFrame, config, running: bool) -> alt.HConcatChart:
    """CG relative residual against the step at the current λ, and the hypergradient error against K and N."""
    residual = rows[rows["sweep"] == "residual"].copy()
    residual["lam_label"] = residual["lam"].map(lambda v: f"λ = {v:g}")
    residual["relative_residual"] = residual["relative_residual"].clip(lower=1e-16)
    y = alt.Y("relative_residual:Q", title="‖r_N‖ / ‖b‖", scale=alt.Scale(type="log"))
    lines = (
        alt.Chart(residual)
        .mark_line(point=True)
        .encode(
            x=alt.X("cg_step:Q", title="CG step"),
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
    used = alt.Chart(pd.DataFrame({"N": [config.cg_steps]})).mark_rule(strokeDash=[6, 4], color="grey").encode(x="N:Q")
    subtitle = f"dashed: N = {config.cg_steps}, the CG steps the methods use; ✕: CG failed"
    if not residual.empty:
        first = residual.iloc[0]
        subtitle = f"{int(first['support'])} support points, {int(first['head_params'])} head parameters; " + subtitle
    left = alt.layer(lines, failures, used).properties(
        width=420,
        height=320,
        title=alt.TitleParams(
            f"CG on the head Hessian (K = {config.inner_steps}, λ = {config.l2:g})",
            subtitle=subtitle + running_text(running),
            anchor="start",
        ),
    )
    errors = rows[rows["sweep"].isin(["inner_steps", "cg_steps"])].copy()
    if errors.empty:
        return alt.hconcat(left)
    errors["sweep_label"] = errors["sweep"].map(
        {"inner_steps": f"vs K (N = {int(errors['cg_steps'].max())})", "cg_steps": "vs N (K large)"}
    )
    errors["hypergrad_error"] = errors["hypergrad_error"].clip(lower=1e-16)
    right = (
        alt.Chart(errors)
        .mark_line(point=True)
        .encode(
            x=alt.X("step:Q", title="K or N", scale=alt.Scale(type="symlog")),
            y=alt.Y(
                "hypergrad_error:Q", title="relative error vs the dense IFT hypergradient", scale=alt.Scale(type="log")
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
            height=320,
            title=alt.TitleParams(
                f"Hypergradient error (small float64 problem, λ = {errors['lam'].iloc[0]:g})", anchor="start"
            ),
        )
    )
    return alt.hconcat(left, right).resolve_scale(color="independent")


def final_chart(rows: pd.DataFrame, config) -> alt.LayerChart:
    """Final test accuracy per method with its 95% interval."""
    rows = labelled(rows)
    rows["setting"] = rows["shots"].map(lambda s: f"{int(s)}-shot")
    rows["low"], rows["high"] = rows["accuracy"] - rows["ci95"], rows["accuracy"] + rows["ci95"]
    methods = [m for m in config.methods if m in set(rows["method"])]
    x = alt.X("method_label:N", title=None, sort=[method_label(m) for m in methods])
    base = alt.Chart(rows).encode(x=x, xOffset="setting:N")
    bars = base.mark_bar().encode(
        y=alt.Y("accuracy:Q", title="test accuracy (95% CI)", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("method_label:N", scale=colour_scale(methods), legend=None),
        opacity=alt.Opacity("setting:N", title="shots", scale=alt.Scale(range=[1.0, 0.55])),
        tooltip=[
            "method_label:N",
            "setting:N",
            alt.Tooltip("accuracy:Q", format=".3f"),
            alt.Tooltip("ci95:Q", format=".3f"),
        ],
    )
    whiskers = base.mark_errorbar().encode(y="low:Q", y2="high:Q")
    episodes = int(rows["episodes"].iloc[0])
    return alt.layer(bars, whiskers).properties(
        height=320,
        title=alt.TitleParams(
            f"Final test accuracy, {config.ways}-way, {episodes} test episodes ({rows['dataset'].iloc[0]})",
            anchor="start",
        ),
    )


# --------------------------------------------------------------------------------------------
# CG failures, summaries


def cg_warnings(frame: pd.DataFrame, config) -> None:
    """Explain λ = 0 (a singular head Hessian) and every CG failure the records show, as soon as they show it."""
    cg = frame[frame["part"] == "cg"]
    residual = cg[cg["sweep"] == "residual"] if "sweep" in cg else cg
    training = frame[frame["part"] == "training"]
    fallback = (
        training[training["status"].astype(str).str.contains("cg_fallback")] if "status" in training else training
    )
    head_fallback, imaml_fallback = fallback[fallback["method"] != "imaml"], fallback[fallback["method"] == "imaml"]
    failed = not residual.empty and residual["failed"].astype(bool).any()
    if config.l2 == 0 or failed or not head_fallback.empty:
        lines = []
        if not residual.empty:
            last = residual.sort_values("cg_step").iloc[-1]
            lines.append(
                f"In the residual plot ({int(last['support'])} support points, {int(last['head_params'])} head "
                f"parameters) CG stopped with status `{last['status']}` after {int(last['cg_step'])} steps, its "
                f"residual at {last['relative_residual']:.3g} × ‖b‖."
            )
        if not head_fallback.empty:
            methods = ", ".join(sorted({method_label(m) for m in head_fallback["method"]}))
            lines.append(f"During meta-training CG failed as well (status `cg_fallback`) for: {methods}.")
        headline = (
            "Conjugate gradient failed." if failed or not head_fallback.empty else "λ = 0: a singular head Hessian."
        )
        st.warning(
            f"**{headline}** "
            + " ".join(lines)
            + "\n\nThe inner objective is g(φ) = CE(support; φ) + λ/2 ‖φ‖². Cross-entropy alone is flat along "
            "directions that leave the support predictions unchanged: one vector added to every class's weights, "
            "and, with fewer support points than feature dimensions, every direction orthogonal to the support "
            "features. With λ = 0 its Hessian is therefore singular (with a tiny λ nearly so), the right-hand side "
            "∇φ f (from the query set) need not lie in its range, and CG meets near-zero curvature: the residual "
            "grows instead of falling. The run goes on with the iterate of smallest residual, but Algorithm 1's "
            "hypergradient is then unreliable. A ridge λ ≥ 0.001 makes g strongly convex, and CG converges.",
            icon=":material/warning:",
        )
    if not imaml_fallback.empty:
        st.warning(
            "**iMAML's conjugate gradient failed** during meta-training (status `cg_fallback`). iMAML solves "
            "(I + ∇²g / prox) v = ∇f over the whole network, whose Hessian has negative curvature; when it is below "
            f"−prox (here prox = {config.prox:g}) the system is not positive definite and CG stops. A larger "
            f"proximal strength helps only up to prox < 2 / inner_lr = {2 / config.inner_lr:g}, where the proximal "
            "inner loop starts to diverge; on the quick preset's Conv-4, CG still fails at K >= 5 below that bound.",
            icon=":material/warning:",
        )


def memory_table(rows: pd.DataFrame) -> pd.DataFrame:
    table = rows.pivot_table(index="method", columns="inner_steps", values="graph_mb", sort=False)
    table.columns = [f"K = {k}" for k in table.columns]
    table.index = table.index.map(method_label)
    return table.reset_index()


def memory_headline(frame: pd.DataFrame) -> str:
    """Algorithm 1's graph memory against MAML and authors'-style ANIL, and its growth over the K measured
    (the K values :func:`memory_ratios` compares: 20, else the largest; the smallest K >= 5 to the largest)."""
    rows = frame[frame["part"] == "memory"]
    ks = sorted(rows["inner_steps"].unique())
    if "implicit" not in set(rows["method"]) or len(ks) < 2:
        return ""
    ratios = memory_reduced.memory_ratios(frame)
    shares = [
        f"{ratios[key]:.0%} of the graph memory of {name}"
        for key, name in (("implicit_vs_maml", "MAML"), ("implicit_vs_anil_recompute", "ANIL (authors' style)"))
        if not math.isnan(ratios[key])
    ]
    text = f"At K = {20 if 20 in ks else ks[-1]}, Algorithm 1 keeps " + " and ".join(shares) + ". " if shares else ""
    k_lo = min([k for k in ks if k >= 5], default=ks[0])
    if k_lo != ks[-1]:
        text += (
            f"From K = {k_lo} to K = {ks[-1]} its graph memory changes by a factor of "
            f"{ratios['implicit_k_max_vs_k_min']:.2f} and its time per task by {ratios['time_k_max_vs_k_min']:.2f}."
        )
    return text


def training_table(rows: pd.DataFrame) -> pd.DataFrame:
    last = rows.sort_values("step", kind="stable").groupby(["shots", "method"], sort=False).tail(1)
    return pd.DataFrame(
        {
            "method": last["method"].map(method_label).to_numpy(),
            "shots": last["shots"].astype(int).to_numpy(),
            "meta-iterations": last["step"].astype(int).to_numpy(),
            "test accuracy": last["test_accuracy"].to_numpy(float),
            "training seconds": last["seconds"].to_numpy(float),
            "status": last["status"].to_numpy(),
        }
    )


def final_table(rows: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "method": rows["method"].map(method_label).to_numpy(),
            "shots": rows["shots"].astype(int).to_numpy(),
            "test accuracy": rows["accuracy"].to_numpy(float),
            "± 95% CI": rows["ci95"].to_numpy(float),
            "episodes": rows["episodes"].astype(int).to_numpy(),
        }
    )


def one_shot_table(rows: pd.DataFrame) -> pd.DataFrame:
    names = rows["method"].map(method_label) + rows["predictor"].map(
        lambda p: {"published": " (published)", "pixels": ""}.get(p, f" [{p}]")
    )
    table = pd.DataFrame({"method": names.to_numpy(), "error rate": rows["error_rate"].to_numpy(float)})
    return table.sort_values("error rate", kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# the page


def controls() -> dict:
    """The sidebar controls, each bound to the URL; returns the config values."""
    bar = st.sidebar
    bar.header("Episodes")
    values = {
        "dataset": bar.selectbox("data set", list(memory_reduced.DATASETS), help=HELP["dataset"], **url("dataset")),
        "ways": bar.slider("ways N", 2, 20, QUICK.ways, help=HELP["ways"], **url("ways")),
        "shots": tuple(
            bar.multiselect(
                "shots (one training run each)",
                list(range(1, 20)),
                default=list(PAGE_SHOTS),
                help=HELP["shots"] + f"; the quick preset uses {', '.join(map(str, QUICK.shots))}",
                **url("shots"),
            )
        ),
        "queries": bar.slider("queries per class", 1, 19, QUICK.queries, help=HELP["queries"], **url("queries")),
    }
    bar.header("Inner problem and CG")
    values["inner_steps"] = bar.slider(
        "inner steps K", 0, 100, QUICK.inner_steps, help=HELP["inner_steps"], **url("inner_steps")
    )
    values["cg_steps"] = bar.slider("CG steps N", 0, 100, QUICK.cg_steps, help=HELP["cg_steps"], **url("cg_steps"))
    values["l2"] = bar.select_slider(
        "ridge λ on the head", LAMBDAS, value=QUICK.l2, format_func=lambda v: f"{v:g}", help=HELP["l2"], **url("l2")
    )
    values["inner_lr"] = bar.number_input(
        "inner step size α", 0.001, 10.0, QUICK.inner_lr, step=0.05, format="%.3f", help=HELP["inner_lr"],
        **url("inner_lr"),
    )  # fmt: skip
    bar.header("Meta-training")
    # option names as in the CLI (`--set methods=implicit,maml`); a format_func would put labels in the URL
    values["methods"] = tuple(
        bar.multiselect(
            "methods to compare",
            list(memory_reduced.ALL_METHODS),
            default=list(PAGE_METHODS),
            help=", ".join(f"{m}: {method_label(m)}" for m in memory_reduced.ALL_METHODS),
            **url("methods"),
        )
    )
    values["meta_batch"] = bar.slider(
        "meta-batch size", 1, 32, QUICK.meta_batch, help=HELP["meta_batch"], **url("meta_batch")
    )
    values["meta_iterations"] = bar.slider(
        "meta-iterations", 1, 200, QUICK.meta_iterations, help=HELP["meta_iterations"], **url("meta_iterations")
    )
    with bar.expander("Meta-training details"):
        values["meta_lr"] = st.number_input(
            "meta learning rate (Adam)", 1e-5, 1.0, QUICK.meta_lr, step=1e-4, format="%.4f", help=HELP["meta_lr"],
            **url("meta_lr"),
        )  # fmt: skip
        values["eval_every"] = st.slider(
            "evaluate every", 1, 50, QUICK.eval_every, help=HELP["eval_every"], **url("eval_every")
        )
        values["eval_episodes"] = st.slider(
            "test episodes per evaluation", 1, 100, QUICK.eval_episodes, help=HELP["eval_episodes"],
            **url("eval_episodes"),
        )  # fmt: skip
        values["batch_mode"] = st.selectbox(
            "tasks of a meta-batch", ["vmap", "sequential"], help=HELP["batch_mode"], **url("batch_mode")
        )
        values["prox"] = st.number_input(
            "iMAML proximal strength", 0.01, 1000.0, QUICK.prox, step=0.5, help=HELP["prox"], **url("prox")
        )
    with bar.expander("Network, memory bars and CG plot"):
        values["hidden"] = st.slider("Conv-4 channels", 1, 64, QUICK.hidden, help=HELP["hidden"], **url("hidden"))
        values["k_grid"] = st.text_input(
            "K values of the memory bars (comma separated)",
            ", ".join(map(str, QUICK.k_grid)),
            help=HELP["k_grid"],
            **url("k_grid"),
        )
        values["memory_shots"] = st.slider(
            "shots in the memory measurement", 1, 19, QUICK.memory_shots, help=HELP["memory_shots"],
            **url("memory_shots"),
        )  # fmt: skip
        values["memory_tasks"] = st.slider(
            "tasks per measured meta-batch", 1, 8, QUICK.memory_tasks, help=HELP["memory_tasks"],
            **url("memory_tasks"),
        )  # fmt: skip
        values["cg_max_steps"] = st.slider(
            "CG steps in the residual plot", 1, 200, QUICK.cg_max_steps, help=HELP["cg_max_steps"],
            **url("cg_max_steps"),
        )  # fmt: skip
    with bar.expander("Final accuracy and seed"):
        final = st.toggle(
            "final test accuracy with 95% intervals", False, help="adds the experiment's final part (slower)",
            **url("final"),
        )  # fmt: skip
        values["final_episodes"] = st.slider(
            "final test episodes", 2, 600, QUICK.final_episodes, help=HELP["final_episodes"], disabled=not final,
            **url("final_episodes"),
        )  # fmt: skip
        values["seed"] = st.number_input(
            "seed", min_value=0, max_value=2**31 - 1, value=QUICK.seed, step=1, **url("seed")
        )
    values["parts"] = ("memory", "training", "cg") + (("final",) if final else ())
    return values


def draw_records(target, frame: pd.DataFrame, config, running: bool) -> None:
    """Every section the records allow so far, and the CG warnings as soon as the records call for them."""
    with target.container():
        cg_warnings(frame, config)
        sections = (
            ("memory", "Memory: graph bytes against inner steps K", memory_chart),
            ("training", "Meta-training", training_chart),
            ("cg", "Conjugate gradient", cg_chart),
        )
        for part, title, chart in sections:
            st.subheader(title)
            rows = frame[frame["part"] == part]
            if rows.empty:
                st.caption("Waiting for the first records…" if running else "No records.")
            else:
                st.altair_chart(chart(rows, config, running), width="content")
        final = frame[frame["part"] == "final"]
        if "benchmark" in final:
            episodes = final[final["benchmark"] == "episodes"]
            if not episodes.empty:
                st.subheader("Final test accuracy")
                st.altair_chart(final_chart(episodes, config), width="stretch")


def summaries(frame: pd.DataFrame, complete: bool) -> None:
    st.subheader("Summary" + ("" if complete else " (partial run)"))
    memory = frame[frame["part"] == "memory"]
    if not memory.empty:
        st.markdown(memory_headline(frame))
        formats = {c: st.column_config.NumberColumn(format="%.2f MB") for c in memory_table(memory).columns[1:]}
        st.dataframe(memory_table(memory), hide_index=True, column_config=formats)
    training = frame[frame["part"] == "training"]
    if not training.empty:
        st.dataframe(
            training_table(training),
            hide_index=True,
            column_config={
                "test accuracy": st.column_config.NumberColumn(format="%.3f"),
                "training seconds": st.column_config.NumberColumn(format="%.2f"),
            },
        )
    final = frame[frame["part"] == "final"]
    if "benchmark" in final:
        episodes = final[final["benchmark"] == "episodes"]
        if not episodes.empty:
            st.dataframe(
                final_table(episodes),
                hide_index=True,
                column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("test accuracy", "± 95% CI")},
            )
        one_shot = final[final["benchmark"] == "omniglot_one_shot"]
        if not one_shot.empty:
            st.markdown("**Omniglot 20-way one-shot benchmark** (20 runs), next to published error rates:")
            st.dataframe(
                one_shot_table(one_shot),
                hide_index=True,
                column_config={"error rate": st.column_config.NumberColumn(format="%.3f")},
            )


def main() -> None:
    st.set_page_config(
        page_title="Memory-Reduced Meta-Learning · metalab", page_icon=":material/memory:", layout="wide"
    )
    st.title("Memory-Reduced Meta-Learning")
    st.caption(
        "Yang, Ma & Yu, arXiv:2412.12030 (AAAI 2025) · an implicit hypergradient whose memory does not grow "
        "with the number of inner steps K, against MAML, ANIL, ITD-BiO and iMAML."
    )
    with st.expander("The problem and the method"):
        st.markdown(
            r"""
Each few-shot task has a support set and a query set. The **upper level** is the Conv-4 backbone $\theta$,
the **lower level** a linear head $\varphi$ on the backbone's features $z = h_\theta(x)$:

$$g(\theta, \varphi) = \mathrm{CE}(\text{support}; \theta, \varphi) + \tfrac{\lambda}{2}\|\varphi\|^2, \qquad
f(\theta, \varphi) = \mathrm{CE}(\text{query}; \theta, \varphi), \qquad \min_\theta\ f(\theta, \varphi^*(\theta)),\ \
\varphi^*(\theta) = \arg\min_\varphi g(\theta, \varphi).$$

**Algorithm 1** (fused, as implemented here): run the backbone once per task; take $K$ gradient steps on the
head, $\varphi_{k+1} = \varphi_k - \alpha \nabla_\varphi g$, on the detached features; solve
$\nabla^2_{\varphi\varphi} g\, v = \nabla_\varphi f$ with $N$ conjugate-gradient steps; then one backward pass
through the backbone on $f(\varphi_K) - \langle \nabla_\varphi g(\varphi_K), v\rangle$, whose gradient is the
implicit-function-theorem hypergradient $\nabla_\theta f - \nabla^2_{\theta\varphi} g\, v$. Nothing of the $K$ steps
is kept for backward, so **its graph memory is flat in K**.

MAML (whole network) and ITD-BiO (head) backpropagate through the $K$ unrolled steps. ANIL comes in two
versions: *features once* (the backbone runs once per task) and *the authors' style*, which recomputes the
backbone on the support set with graph at every inner step; that is where most of the paper's memory gap
comes from. **λ = 0** leaves $g$ without strong convexity: cross-entropy does not change when one vector is
added to every class's weights, so the head Hessian is singular, and with fewer support images than feature
dimensions CG has no solution to find and fails (the page says so when it happens).

The page starts with four methods, 1-shot episodes and no final evaluation so that it draws in seconds;
add the other methods, shots 1 and 5, and the final accuracy for the experiment's whole quick preset.
"""
        )

    values = controls()
    values["cg_lams"] = (values["l2"],)  # the residual plot follows the λ chosen above
    config = lab.build_config(CONFIG, values)
    if config is None:
        return

    def draw(target, frame: pd.DataFrame, running: bool) -> None:
        draw_records(target, frame, config, running)

    result = lab.live_run(
        lab.run_key(EXPERIMENT, config), lambda: experiment.run(config), draw
    )
    if result.frame.empty:
        if result.error is None:
            st.info("No records yet: press **Run again** to start the run.", icon=":material/info:")
        return

    summaries(result.frame, result.complete)
    lab.downloads(result, EXPERIMENT, plots_memory.memory_figure)
    with st.expander("Reproduce outside the dashboard"):
        st.markdown("The link in the address bar reproduces this view. From a shell:")
        st.code(lab.cli_command(EXPERIMENT, config), language="bash")
        st.json(config.to_dict(), expanded=False)


main()
