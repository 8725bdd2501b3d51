"""Memory-reduced meta-learning: graph memory against inner steps K, meta-training, CG and final accuracy, live."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from metalab.dashboard import lab, page
from metalab.dashboard.charts import memory_reduced as charts
from metalab.dashboard.controls import control, url
from metalab.experiments import get_experiment
from metalab.experiments.memory_reduced import memory_ratios
from metalab.experiments.memory_reduced.claims import omniglot_claim_table, run_claim_table
from metalab.plots import styles

experiment = get_experiment("memory_reduced")
CONFIG = experiment.config
#: the page starts smaller than the quick preset (four methods, 1-shot episodes) so that each view draws in
#: seconds, and times every memory measurement three times (the fastest counts)
DEFAULT = CONFIG.preset("quick", methods=("implicit", "maml", "anil", "anil_recompute"), shots=(1,), timing_repeats=3)
#: view shown (and in the URL) -> the experiment part it runs
VIEWS = {"Memory": "memory", "Meta-training": "training", "Conjugate gradient": "cg", "Final accuracy": "final"}
#: the settings each view offers besides the sidebar's
VIEW_CONTROLS = {
    "memory": ("k_grid", "memory_shots", "memory_tasks", "timing_repeats"),
    "training": ("eval_every", "eval_episodes"),
    "cg": ("cg_max_steps", "cg_hidden"),
    "final": ("final_episodes",),
}
#: record statuses that say a method's computation failed: such a method is never ranked
FAILED = ("cg_fallback", "non_finite", "diverged", "nonpositive_curvature", "inner_not_converged")
#: what does not make a graph-memory measurement wrong: the graph's size is the same whether or not K inner
#: steps solved the head (K = 1 Newton step sits near max_inner_residual and flips between machines)
MEMORY_UNAFFECTED = ("inner_not_converged",)
SINGULAR = (
    "The inner objective is g(φ) = CE(support; φ) + λ/2 ‖φ‖². Cross-entropy alone does not change when one vector "
    "is added to every class's weights, nor, with fewer support points than feature dimensions, along directions "
    "orthogonal to the support features: at λ = 0 the head Hessian is singular, the right-hand side ∇φ f need not "
    "lie in its range, and CG meets near-zero curvature (its residual grows). Runs go on with the iterate of "
    "smallest residual, but Algorithm 1's hypergradient is then unreliable. A ridge λ ≥ 0.001 makes g strongly "
    "convex, and CG converges."
)
METHOD = r"""
Each few-shot task has a support set and a query set. The **upper level** is the Conv-4 backbone $\theta$,
the **lower level** a linear head $\varphi$ on the backbone's features $z = h_\theta(x)$:

$$g(\theta, \varphi) = \mathrm{CE}(\text{support}; \theta, \varphi) + \tfrac{\lambda}{2}\|\varphi\|^2, \qquad
f(\theta, \varphi) = \mathrm{CE}(\text{query}; \theta, \varphi), \qquad \min_\theta\ f(\theta, \varphi^*(\theta)).$$

**Algorithm 1** (fused, as implemented here): run the backbone once per task; take $K$ gradient steps on the
head, $\varphi_{k+1} = \varphi_k - \alpha \nabla_\varphi g$, on the detached features; solve
$\nabla^2_{\varphi\varphi} g\, v = \nabla_\varphi f$ with $N$ conjugate-gradient steps; then one backward pass
through the backbone on $f(\varphi_K) - \langle \nabla_\varphi g(\varphi_K), v\rangle$, whose gradient is the
implicit-function-theorem hypergradient $\nabla_\theta f - \nabla^2_{\theta\varphi} g\, v$. Nothing of the $K$
steps is kept for backward, so **its graph memory is flat in K**.

MAML (whole network) and ITD-BiO (head) backpropagate through the $K$ unrolled steps; ANIL *as the authors
wrote it* also recomputes the backbone on the support set at every inner step, where most of the paper's
memory gap comes from. Each view runs one part of the experiment.
"""


def label(method: str) -> str:
    return styles.label("memory_reduced", method)


def failing(frame: pd.DataFrame, flagged: set[str], harmless: tuple[str, ...] = ()) -> set[str]:
    """The methods that raised a warning or whose records carry a failure status (a CG fallback, a
    non-finite loss, a diverged solve), apart from the ``harmless`` statuses."""
    status = frame["status"].astype(str) if "status" in frame else pd.Series("", index=frame.index)
    failed = status.map(lambda text: any(word in text for word in FAILED if word not in harmless))
    return set(flagged) | set(frame.loc[failed, "method"])


def not_ranked(methods: set[str]) -> str:
    names = ", ".join(label(m) for m in styles.ordered("memory_reduced", methods))
    return f" Not ranked (a computation failed, see the status): {names}." if methods else ""


def number_formats(*columns: str, format: str = "%.3f") -> dict:
    return {column: st.column_config.NumberColumn(format=format) for column in columns}


# --------------------------------------------------------------------------------------------
# summaries: a headline that never ranks a failing method, and a table


def memory_summary(frame: pd.DataFrame, flagged: set[str]) -> page.Summary:
    """Graph memory per method and K; Algorithm 1's share of MAML's and authors'-style ANIL's at K = 20 (else
    the largest K) and its growth from the smallest K >= 5 to the largest (memory_ratios).  Time per task is a
    measurement of this machine (see the chart), so no headline rests on it."""
    rows = frame[frame["part"] == "memory"]
    table = rows.pivot_table(index="method", columns="inner_steps", values="graph_mb", sort=False)
    table = table.reindex(styles.ordered("memory_reduced", table.index))
    table.columns = [f"K = {k}" for k in table.columns]
    table.index = table.index.map(label)
    bad, ks = failing(rows, flagged, MEMORY_UNAFFECTED), sorted(rows["inner_steps"].unique())
    ratios, text = memory_ratios(frame), ""
    if "implicit" not in bad and len(ks) > 1:
        shares = [
            f"{ratios[key]:.0%} of the graph memory of {label(method)}"
            for key, method in (("implicit_vs_maml", "maml"), ("implicit_vs_anil_recompute", "anil_recompute"))
            if method not in bad and not math.isnan(ratios[key])
        ]
        if shares:
            text = f"At K = {20 if 20 in ks else ks[-1]}, Algorithm 1 keeps " + " and ".join(shares) + "."
        k_low = min([k for k in ks if k >= 5], default=ks[0])
        if k_low != ks[-1]:
            growth = ratios["implicit_k_max_vs_k_min"]
            text += f" From K = {k_low} to K = {ks[-1]} its graph memory changes by a factor of {growth:.2f}."
    formats = number_formats(*table.columns, format="%.2f MB")
    return page.Summary(text + not_ranked(bad), table.reset_index(names="method"), formats)


def training_summary(frame: pd.DataFrame, flagged: set[str], episodes: int) -> page.Summary:
    """The last evaluation of every (shots, method); the most accurate method that did not fail, on
    ``episodes`` test episodes."""
    rows = frame[frame["part"] == "training"].sort_values("step", kind="stable")
    last = rows.groupby(["shots", "method"], sort=False).tail(1)
    table = pd.DataFrame(
        {
            "method": last["method"].map(label).to_numpy(),
            "shots": last["shots"].astype(int).to_numpy(),
            "meta-iterations": last["step"].astype(int).to_numpy(),
            "test accuracy": last["test_accuracy"].to_numpy(float),
            "training seconds": last["seconds"].to_numpy(float),
            "status": last["status"].to_numpy(),
        }
    )
    bad = failing(rows, flagged)
    ranked = last[~last["method"].isin(bad)].sort_values("test_accuracy", ascending=False, kind="stable")
    text = ""
    if not ranked.empty:
        best = ranked.iloc[0]
        text = (
            f"Highest test accuracy after {int(best['step'])} meta-iterations: **{label(best['method'])}** "
            f"({best['test_accuracy']:.3f} on {episodes} test episodes, {int(best['shots'])}-shot; chance "
            f"{1 / best['ways']:.2f})."
        )
    if "imaml" in bad:
        text += (
            " iMAML's CG solves (I + ∇²g / prox) v = ∇f over the whole network, whose Hessian has negative "
            "curvature: below −prox the system is not positive definite and CG stops (`cg_fallback`); a larger "
            "prox helps only up to prox < 2 / inner step size, where its inner loop starts to diverge."
        )
    return page.Summary(text + not_ranked(bad), table, number_formats("test accuracy", "training seconds"))


def cg_summary(frame: pd.DataFrame, flagged: set[str]) -> page.Summary:
    """Per λ: how CG ended; then the hypergradient error at the largest K and N of the sweeps."""
    rows = frame[frame["part"] == "cg"]
    residual = rows[rows["sweep"] == "residual"].sort_values("cg_step").groupby("lam").tail(1)
    table = pd.DataFrame(
        {
            "ridge λ": residual["lam"].to_numpy(float),
            "CG status": residual["status"].to_numpy(),
            "steps": residual["cg_step"].astype(int).to_numpy(),
            "relative residual": residual["relative_residual"].to_numpy(float),
        }
    )
    text = " ".join(
        f"With λ = {r['lam']:g}, CG ended **{r['status']}** after {int(r['cg_step'])} steps at a relative residual "
        f"of {r['relative_residual']:.1e}."
        for _, r in residual.iterrows()
    )
    for sweep, what in (("inner_steps", "K"), ("cg_steps", "N")):
        errors = rows[rows["sweep"] == sweep].sort_values("step")
        if len(errors) > 1:
            first, end = errors.iloc[0], errors.iloc[-1]
            text += (
                f" Hypergradient error from {what} = {int(first['step'])} to {int(end['step'])}: "
                f"{first['hypergrad_error']:.1e} → {end['hypergrad_error']:.1e}."
            )
    formats = {
        "ridge λ": st.column_config.NumberColumn(format="%g"),
        **number_formats("relative residual", format="%.1e"),
    }
    return page.Summary(text, table, formats)


def final_summary(frame: pd.DataFrame, flagged: set[str]) -> page.Summary:
    """Accuracy ± 95% interval per method; the best method that did not fail, and those within its interval."""
    rows = frame[frame["part"] == "final"]
    episodes = rows[rows["benchmark"] == "episodes"]
    table = pd.DataFrame(
        {
            "method": episodes["method"].map(label).to_numpy(),
            "shots": episodes["shots"].astype(int).to_numpy(),
            "test accuracy": episodes["accuracy"].to_numpy(float),
            "± 95% CI": episodes["ci95"].to_numpy(float),
            "episodes": episodes["episodes"].astype(int).to_numpy(),
        }
    )
    bad = failing(frame[frame["part"] == "training"], flagged) & set(episodes["method"])
    text = ""
    for shots, group in episodes[~episodes["method"].isin(bad)].groupby("shots"):
        best = group.loc[group["accuracy"].idxmax()]
        close = group[(group["method"] != best["method"]) & (group["accuracy"] + group["ci95"] >= best["accuracy"])]
        text += f" {int(shots)}-shot: highest **{label(best['method'])}** ({best['accuracy']:.3f} ± {best['ci95']:.3f})"
        text += f"; within its interval: {', '.join(map(label, close['method']))}." if len(close) else "."
    one_shot = rows[rows["benchmark"] == "omniglot_one_shot"] if "benchmark" in rows else rows.iloc[0:0]
    if not one_shot.empty:
        best = one_shot[one_shot["predictor"] != "published"].sort_values("error_rate").iloc[0]
        text += f" Omniglot 20-way one-shot: {label(best['method'])} errs {best['error_rate']:.1%} (people: 4.5%)."
    return page.Summary(text.strip() + not_ranked(bad), table, number_formats("test accuracy", "± 95% CI"))


# --------------------------------------------------------------------------------------------
# the page


def controls() -> tuple[str, dict]:
    """The sidebar and the view's controls, each bound to the URL parameter of its config field."""
    bar = st.sidebar
    bar.header("Episodes")
    values = {name: control(CONFIG, name, getattr(DEFAULT, name)) for name in ("dataset", "ways", "shots", "queries")}
    bar.header("Network and inner problem")
    for name in ("hidden", "inner_steps", "cg_steps", "l2", "inner_lr"):
        values[name] = control(CONFIG, name, getattr(DEFAULT, name))
    bar.header("Meta-training")
    for name in ("methods", "meta_batch", "meta_iterations"):
        values[name] = control(CONFIG, name, getattr(DEFAULT, name))
    with bar.expander("Meta-training details and seed"):
        for name in ("meta_lr", "batch_mode", "prox", "seed"):
            values[name] = control(CONFIG, name, getattr(DEFAULT, name), where=st)
    view = VIEWS[st.segmented_control("View", list(VIEWS), default="Memory", required=True, **url("view"))]
    names = VIEW_CONTROLS[view]
    for name, column in zip(names, st.columns(len(names)), strict=True):
        values[name] = control(CONFIG, name, getattr(DEFAULT, name), where=column, persist_state="page")
    values["cg_lams"] = (values["l2"],)  # the residual plot follows the λ chosen
    return view, {**values, "parts": (view,)}


PAPER_SCALE = (
    "Conv-4-32 backbones meta-trained on Omniglot 5-way 1-shot (the small background sets with 90° rotations as "
    "new classes, 8 tasks per batch, K = 5, 1,200 meta-iterations) by Algorithm 1 and by MAML, from "
    "`metalab.pretrained`, tested on 200 fixed episodes. The memory claim is the Memory view below, measured live."
)


def stored_claims():
    """The stored backbones' accuracy claims (read from their files, no computation)."""
    return omniglot_claim_table(memory=False)


def main() -> None:
    page.header(experiment, method=METHOD)
    page.stored_run("memory_reduced", lambda run: run_claim_table(run.frame), experiment.paper_scale)
    page.paper_scale(
        "At paper scale: Conv-4 backbones meta-trained on Omniglot",
        stored_claims,
        PAPER_SCALE,
        "python -m metalab.pretrained.train omniglot --iterations 1200 --data DIR",
        expanded=False,
    )
    view, values = controls()
    config = lab.build_config(CONFIG, values)
    if config is None:
        return
    if config.l2 == 0 and (view == "cg" or {"implicit", "implicit_unfused"} & set(config.methods)):
        st.warning(
            f"**λ = 0: conjugate gradient will fail on a singular head Hessian.** {SINGULAR}", icon=":material/warning:"
        )
    chart, summary = {
        "memory": (charts.memory_chart, memory_summary),
        "training": (charts.training_chart, lambda frame, bad: training_summary(frame, bad, config.eval_episodes)),
        "cg": (lambda frame, running: charts.cg_chart(frame, running, config.cg_steps), cg_summary),
        "final": (charts.final_chart, final_summary),
    }[view]
    page.run_view(experiment, config, page.View(chart, f"memory_reduced_{view}", summary))


main()
