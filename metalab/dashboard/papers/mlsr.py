"""Meta-learning from sparse recovery: meta-train MLSR against MAML and its variants, live, on the task you choose."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from metalab.dashboard import lab, page
from metalab.dashboard.charts import mlsr as charts
from metalab.dashboard.controls import control, url
from metalab.experiments import get_experiment
from metalab.experiments.mlsr.claims import run_claim_table
from metalab.experiments.mlsr.sinusoid_inits import published_claim_table

experiment = get_experiment("mlsr")
CONFIG = experiment.config
DEFAULT = CONFIG.preset("quick")
#: task shown in the page (and in the URL) -> the experiment parts it runs
TASKS = {
    "Sinusoid": ("training", "sinusoid", "fits", "diagnostics"),
    "Digits": ("training", "digits"),
    "Navigation": ("rl",),
}
#: URL parameter -> (the tuple field whose last hidden width it sets, low, high, step, help)
WIDTH_SLIDERS = {
    "rl_width": ("rl_hidden", 8, 200, 4, "units in each of the two hidden layers of the policy's mean"),
    "digit_width": ("digit_hidden", 2, 200, 1, "units of the last hidden layer (64-100-width-2)"),
}
SPARSITY_HELP = (
    "Share of exactly-zero output weights after each method's own inner loop on 50 test tasks. Measured for "
    "MLSR (soft-thresholded recovery), MAML-FZ and the random network (head-only gradient steps); MAML and "
    "MAML + L1 adapt every layer, so their heads are not diagnosed (shown as —)."
)
METHOD = r"""
For a task's support set, let $\Phi = [\phi_\theta(X_s)\ 1]$ be the body's features. The inner loop recovers the
output layer by ISTA, $w \leftarrow \mathrm{soft}(w - \eta\,\Phi^\top(\Phi w - y)/n,\ \eta\lambda)$ with $\eta = 1/L$,
which minimises $\frac{1}{2n}\|\Phi w - y\|^2 + \lambda\|W\|_1$; the body is meta-trained on the query loss of the
recovered head with a **first-order** meta-gradient (the head's dependence on $\theta$ is dropped, which the paper
justifies when $\Phi$ satisfies RIP). At test time no method gets the L1 term.

Baselines: **MAML** (every parameter adapts), **MAML-FZ** (= ANIL: only the output layer adapts, by gradient
steps), **MAML + L1** (an L1 term in MAML's inner loop), and the **random** initialisation. On 2-D navigation the
inner loop is a REINFORCE step (MAML) or the recovery of the policy mean's output layer (MLSR, a reconstruction).
"""


def steps_text(steps: int) -> str:
    return f"{steps} step" + ("" if steps == 1 else "s")


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
    inner = ", ".join(map(str, config.inner_steps))
    return f"λ = {config.lam:g}, {inner} inner step(s), K = {shots}, width {width}, {iterations} meta-iterations"


def chart(frame: pd.DataFrame, task: str, config, running: bool) -> alt.VConcatChart:
    what = {"Sinusoid": "sinusoids (MSE)", "Digits": "digit pairs (cross-entropy)", "Navigation": "2-D navigation"}
    subtitle = "solid: return after the inner loop, faint: before" if task == "Navigation" else ""
    title = alt.TitleParams(
        f"Meta-training on {what[task]} ({settings_text(task, config)})",
        subtitle=" · ".join(s for s in (subtitle, "running…" if running else "") if s),
        anchor="start",
    )
    methods = list(config.rl_methods if task == "Navigation" else config.methods)
    return charts.task_chart(frame, task, methods, title)


# --------------------------------------------------------------------------------------------
# summaries


def summary_table(frame: pd.DataFrame, task: str, config) -> tuple[pd.DataFrame, str, bool]:
    """(table, the column that ranks the methods, whether lower is better)."""
    if task == "Sinusoid":
        rows = charts.rows_of(frame, "sinusoid")
        rows = rows[rows["train_inner_steps"] == config.inner_steps[0]]
        last = config.adapt_steps
        table = rows.pivot_table(index="method", columns="adapt_steps", values="mse", sort=False).reindex(
            columns=[0, 1, last]
        )
        table.columns = ["MSE before adaptation", "MSE after 1 step", f"MSE after {steps_text(last)}"]
        sparsity = charts.rows_of(frame, "diagnostics", "sparsity").set_index("method")["sparsity"]
        table["zero head weights"] = sparsity.reindex(table.index)
        column, lower = f"MSE after {steps_text(last)}", True
    elif task == "Digits":
        rows = charts.rows_of(frame, "digits")
        steps = sorted({0, 1, config.adapt_steps, config.long_steps})
        table = rows.pivot_table(index="method", columns="adapt_steps", values="accuracy", sort=False).reindex(
            columns=steps
        )
        table.columns = [f"accuracy after {steps_text(s)}" for s in steps]
        column, lower = f"accuracy after {steps_text(config.adapt_steps)}", False
    else:
        rows = charts.rows_of(frame, "rl", "adaptation")
        table = rows.pivot_table(index="method", columns="adapt_steps", values="mean_return", sort=False)
        table.columns = [f"return after {steps_text(int(s))}" for s in table.columns]
        column, lower = "return after 1 step", False
    seconds = rows.groupby("method", sort=False)["train_seconds"].first().rename("training seconds")
    table = table.join(seconds).reset_index()
    table.insert(1, "label", table["method"].map(charts.label))
    return table, column, lower


def headline(table: pd.DataFrame, column: str, lower: bool, flagged: set[str]) -> str:
    """The best method on ``column`` and MLSR's value; a method whose run raised a warning is not ranked."""
    ranked = table[~table["method"].isin(flagged) & table[column].notna()].sort_values(
        column, ascending=lower, kind="stable"
    )
    if ranked.empty:
        return "No method without a warning to rank." if flagged else ""
    best = ranked.iloc[0]
    text = f"Best {column}: **{best['label']}** ({best[column]:.3g})."
    mlsr = ranked[ranked["method"] == "mlsr"]
    if not mlsr.empty and best["method"] != "mlsr":
        text += f" MLSR: {mlsr.iloc[0][column]:.3g}."
    if flagged:
        text += " Not ranked (see the warnings above): " + ", ".join(sorted(map(charts.label, flagged))) + "."
    return text


def summary(task: str, config):
    def summarise(frame: pd.DataFrame, flagged: set[str]) -> page.Summary | None:
        table, column, lower = summary_table(frame, task, config)
        if table.empty:
            return None
        text = headline(table, column, lower, flagged)
        table = table.drop(columns="method").rename(columns={"label": "method"})
        formats = {c: st.column_config.NumberColumn(format="%.3f") for c in table.columns if c != "method"}
        if "zero head weights" in table:
            if table["zero head weights"].isna().any():
                text += (
                    " Zero head weights —: not measured, MAML and MAML + L1 adapt every layer (see the column's help)."
                )
            table["zero head weights"] = [f"{v:.1%}" if pd.notna(v) else "—" for v in table["zero head weights"]]
            formats["zero head weights"] = st.column_config.TextColumn(help=SPARSITY_HELP)
        return page.Summary(text, table, formats)

    return summarise


# --------------------------------------------------------------------------------------------
# the page


def lam_controls(task: str) -> dict:
    if task != "Navigation":
        return {"lam": control(CONFIG, "lam", DEFAULT.lam)}
    auto = st.sidebar.toggle(
        "each method's default λ",
        True,
        help="MLSR 0.001, L1-MAML 0.01 (metalab.rl.DEFAULT_LAM); MAML has no L1 term",
        **url("rl_lam_auto"),
    )
    lam = control(CONFIG, "rl_lam", 0.01, disabled=auto)
    return {"rl_lam": None if auto else lam}


def width_slider(name: str) -> int:
    """The last hidden width of a tuple field, as one slider (URL parameter ``name``, see WIDTH_SLIDERS)."""
    field, low, high, step, help = WIDTH_SLIDERS[name]
    default = getattr(DEFAULT, field)[-1]
    return st.sidebar.slider(CONFIG.label(field), low, high, default, step=step, help=help, **url(name))


def navigation_controls(values: dict) -> None:
    for name in ("rl_inner_steps", "rl_trajectories"):
        values[name] = control(CONFIG, name, getattr(DEFAULT, name))
    st.sidebar.header("Meta-training")
    width = width_slider("rl_width")
    values["rl_hidden"] = (width, width)
    values["rl_iterations"] = control(CONFIG, "rl_iterations", DEFAULT.rl_iterations)
    values["rl_methods"] = control(CONFIG, "rl_methods", DEFAULT.rl_methods)


def supervised_controls(task: str, values: dict) -> None:
    values["inner_steps"] = control(CONFIG, "inner_steps", (1,))
    if task == "Sinusoid":
        shots = control(
            CONFIG, "shots", DEFAULT.shots, help="support points per task, in meta-training and at test time"
        )
        values.update(shots=shots, eval_shots=shots, rip_k=min(DEFAULT.rip_k, shots))
        st.sidebar.header("Meta-training")
        values["hidden"] = control(CONFIG, "hidden", DEFAULT.hidden)
        values["widths"] = (values["hidden"],)  # the diagnostics read the model the other parts train
        values["meta_iterations"] = control(CONFIG, "meta_iterations", DEFAULT.meta_iterations)
    else:
        values["digit_shots"] = control(CONFIG, "digit_shots", DEFAULT.digit_shots)
        st.sidebar.header("Meta-training")
        width = width_slider("digit_width")
        values["digit_hidden"] = (*DEFAULT.digit_hidden[:-1], width)
        values["digit_iterations"] = control(CONFIG, "digit_iterations", DEFAULT.digit_iterations)
        values["digits"] = control(CONFIG, "digits", DEFAULT.digits)
    values["methods"] = control(CONFIG, "methods", DEFAULT.methods)


def controls() -> tuple[str, dict]:
    """The task switch and the sidebar controls, each bound to the URL; returns (task, config values)."""
    task = st.segmented_control("Task", list(TASKS), default="Sinusoid", required=True, **url("task"))
    st.sidebar.header("Inner loop")
    values = lam_controls(task)
    if task == "Navigation":
        navigation_controls(values)
    else:
        supervised_controls(task, values)
    with st.sidebar.expander("Variant and seed"):
        variants = () if task == "Navigation" else ("algorithm", "loss") + (("sinusoid",) if task == "Sinusoid" else ())
        for name in (*variants, "seed"):
            values[name] = control(CONFIG, name, getattr(DEFAULT, name), where=st)
    values["parts"] = TASKS[task]
    values["task"] = "digits" if task == "Digits" else "sinusoid"
    return task, values


PAPER_SCALE = (
    "Sinusoid regression, 5-shot test MSE on 600 fixed tasks after 1, 5 and 10 steps (1-40-40-1 ReLU, 10 shots "
    "per task in meta-training, inner step 0.01, meta-batch 25), from `metalab.pretrained`. MAML reproduces "
    "Finn et al.'s table; MLSR's claim does not hold in this reconstruction."
)


def main() -> None:
    page.header(experiment, method=METHOD)
    page.stored_run("mlsr", lambda run: run_claim_table(run.frame), experiment.paper_scale)
    page.paper_scale(
        "At paper scale: initialisations meta-trained for 70,000 iterations",
        published_claim_table,
        PAPER_SCALE,
        "python -m metalab.pretrained.train sinusoid --shots 10 --iterations 70000",
        expanded=False,
    )
    task, values = controls()
    config = lab.build_config(CONFIG, values)
    if config is None:
        return
    view = page.View(
        lambda frame, running: chart(frame, task, config, running), f"mlsr_{task.lower()}", summary(task, config)
    )
    page.run_view(experiment, config, view)


main()
