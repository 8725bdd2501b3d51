"""The dashboard's Home page: what the suite is, one card per paper (from its paper block), and how
to run the rest of it."""

from __future__ import annotations

import streamlit as st

from metalab.dashboard import ICON, PAGES
from metalab.experiments import get_experiment


def card(name: str) -> None:
    paper = get_experiment(name).paper
    with st.container(border=True, height="stretch"):
        st.subheader(paper.title)
        st.caption(paper.citation)
        st.markdown(paper.question)
        st.markdown(f"*{paper.lab}*")
        st.page_link(str(PAGES[name].script(name)), label="Open the lab", icon=":material/arrow_forward:")


def home() -> None:
    st.set_page_config(page_title="metalab", page_icon=str(ICON), layout="wide")
    st.title("metalab")
    st.markdown(
        "Interactive labs for four meta-learning papers. Each lab runs the paper's experiment on settings "
        "you choose and draws the curves while they are computed; the same experiments run from "
        "notebooks and the command line."
    )
    names = list(PAGES)
    for row in (names[i : i + 2] for i in range(0, len(names), 2)):
        for column, name in zip(st.columns(2), row, strict=False):  # the last row may hold one card
            with column:
                card(name)

    st.subheader("Beyond the dashboard")
    left, right = st.columns(2)
    with left:
        st.markdown("**Notebooks**: one per paper (question, method, experiment, figure), with a play section.")
        st.code(
            "metalab notebooks ~/metalab-notebooks   # copy them\nmetalab lab   # or open them in JupyterLab",
            language="bash",
        )
    with right:
        st.markdown("**Command line**: run an experiment to CSV/JSON records and PNG figures.")
        st.code(
            "metalab run meta_sp --out runs/x\nmetalab show meta_sp   # every setting and what it allows",
            language="bash",
        )
    st.caption(
        "The dashboard listens on 127.0.0.1 only. Every page keeps its settings in the URL: copy the "
        "link to share or return to a view."
    )
