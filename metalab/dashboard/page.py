"""The template of a paper's page: header from the paper block, the live run, summary, downloads and the
command line that reproduces the view.  A page supplies only what is particular to its paper: its
controls, its charts and its summaries.

A page script reads, top to bottom::

    experiment = get_experiment("meta_sp")
    page.header(experiment, method=METHOD_MARKDOWN)
    config = lab.build_config(experiment.config, my_controls())
    if config is not None:
        page.run_view(experiment, config, View(chart=my_chart, summary=my_summary, stem="meta_sp_x"))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from typing import Any

import pandas as pd
import streamlit as st

from metalab import results
from metalab.core import Config
from metalab.core.cost import Budget
from metalab.dashboard import ICON, lab
from metalab.experiments.base import Experiment
from metalab.plots import styles
from metalab.pretrained import PretrainedError


@dataclasses.dataclass(frozen=True)
class Summary:
    """What a page says under its chart: a headline sentence and a table (with Streamlit column formats)."""

    headline: str
    table: pd.DataFrame
    formats: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class View:
    """One view of a page: ``chart(frame, running)`` draws the records (an altair chart),
    ``summary(frame, flagged)`` summarises a finished or stopped run (None: no summary) and must not
    rank the ``flagged`` methods (those whose computation raised a warning), ``stem`` names the
    downloaded files."""

    chart: Callable[[pd.DataFrame, bool], Any]
    stem: str
    summary: Callable[[pd.DataFrame, set[str]], Summary | None] | None = None


def header(experiment: Experiment, *, method: str) -> None:
    """Page configuration, title, citation and question from the paper block; ``method`` (Markdown)
    explains the problem and the method in an expander, followed by the claims the lab tests."""
    paper = experiment.paper
    st.set_page_config(page_title=f"{paper.title} · metalab", page_icon=str(ICON), layout="wide")
    st.title(paper.title)
    st.caption(f"[{paper.citation}]({paper.url}) · {paper.question}" if paper.url else paper.citation)
    with st.expander("The problem and the method"):
        st.markdown(method)
        st.markdown("**The claims this lab tests.**\n\n" + "\n".join(f"- {claim}" for claim in paper.claims))


def run_view(experiment: Experiment, config: Config, view: View) -> lab.RunResult:
    """Run (or fetch from the cache) ``experiment`` on ``config`` while drawing ``view``'s chart live,
    then show its summary, the downloads and how to reproduce it from a shell."""

    def draw(target: Any, frame: pd.DataFrame, running: bool) -> None:
        target.altair_chart(view.chart(frame, running), width="stretch")

    key = lab.run_key(experiment.name, config)
    refusal = None if lab.result_store().get(key) is not None else over_budget(experiment, config)
    if refusal is not None:
        st.error(refusal, icon=":material/block:")
        reproduce(experiment, config)
        return lab.RunResult(pd.DataFrame(), complete=False, progress=0.0, seconds=0.0, error=refusal)
    # everything under the chart goes into one slot made before the run starts: the previous
    # configuration's summary is cleared at once instead of staying faded beside the new run
    status, target, below = st.container(), st.empty(), st.empty()
    label = partial(styles.label, experiment.name)
    result = lab.live_run(key, lambda: experiment.run(config), draw, label=label, status=status, target=target)
    with below.container():
        if result.frame.empty:
            if result.error is None:
                st.info("No records yet: press **Run again** to start the run.", icon=":material/info:")
            return result
        for method, message in result.warnings:
            st.warning(f"**{label(method)}**: {message}", icon=":material/warning:")
        summary = view.summary(result.frame, result.flagged) if view.summary is not None else None
        if summary is not None:
            st.subheader("Summary" + ("" if result.complete else " (partial run)"))
            if summary.headline:
                st.markdown(summary.headline)
            st.dataframe(summary.table, hide_index=True, column_config=summary.formats)
        lab.downloads(result, view.stem, chart=lambda: view.chart(result.frame, False))
        reproduce(experiment, config)
    return result


def over_budget(experiment: Experiment, config: Config) -> str | None:
    """Why this server will not run ``config`` live (its estimated cost is over the server's budget,
    which the URL cannot change), or None."""
    cost = experiment.estimate(config)
    refusal = Budget.from_environment().refusal(cost)
    if refusal is None:
        return None
    return (
        f"**Not run: too large for this dashboard.** {refusal} The command line below runs it without "
        "the dashboard's limit."
    )


def reproduce(experiment: Experiment, config: Config) -> None:
    """The expander with the command line (and the full settings) that reproduce this view."""
    with st.expander("Reproduce outside the dashboard"):
        st.markdown("The link in the address bar reproduces this view. From a shell:")
        st.code(lab.cli_command(experiment.name, config), language="bash")
        st.json(config.to_dict(), expanded=False)


def paper_scale(
    title: str, claims: Callable[[], pd.DataFrame], text: str, regenerate: str, expanded: bool = True
) -> None:
    """An expander (open unless ``expanded`` is False) above the live run with what was trained at the
    paper's scale: the claim table (claim | paper | metalab | verdict) that ``claims()`` builds from stored
    models or runs, ``text`` on what they are, and the command that regenerates them.  A missing or broken
    store is said, not raised."""
    with st.expander(title, expanded=expanded):
        try:
            table = claims()
        except (PretrainedError, FileNotFoundError, ValueError) as error:
            st.info(str(error), icon=":material/info:")
            return
        st.markdown(text)
        st.table(table.set_index("claim"))
        st.caption(
            f"Regenerate with `{regenerate}`. The live run below trains at the settings in the sidebar, within this "
            "server's budget."
        )


@st.cache_resource(show_spinner=False)
def _stored(paper: str) -> results.StoredRun:
    return results.load(paper)


def stored_run(paper: str, claims: Callable[[results.StoredRun], pd.DataFrame], text: str) -> None:
    """An open expander with the ``paper``-preset run ``metalab reproduce`` stored (read once per server):
    ``text`` on what it is, the claim table ``claims(run)`` builds from its records, where the run came from,
    and its figures, one tab each.  A missing or broken run is said, not raised."""
    with st.expander(f"At paper scale: the stored run of `metalab reproduce {paper}`", expanded=True):
        try:
            run = _stored(paper)
            table = claims(run)
        except (FileNotFoundError, ValueError, KeyError) as error:
            st.info(f"The stored run cannot be shown: {error}", icon=":material/info:")
            return
        st.markdown(text)
        st.table(table.set_index("claim"))
        st.caption(f"{run.describe()}. Regenerate with `metalab reproduce {paper} --restart`.")
        figures = run.figures()
        for tab, figure in zip(st.tabs([f.stem.replace("_", " ") for f in figures]), figures, strict=True):
            tab.image(str(figure))
