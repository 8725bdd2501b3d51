"""metalab dashboard home: what the suite is, one card per paper, and how to run the rest of it."""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="metalab", page_icon=":material/science:", layout="wide")

PAPERS = [
    {
        "title": "Meta Subspace Pursuit",
        "source": "Zhang, Liu & Zhang, arXiv:2409.02708",
        "question": "Tasks share an unknown low-dimensional subspace, but each has fewer samples than "
        "dimensions. How fast, and how well, can the subspace be recovered across tasks?",
        "lab": "Live: convergence of Meta-SP against MoM, AltMinGD, Burer-Monteiro, nuclear norm, ANIL, "
        "single-task and oracle baselines; error against samples per task.",
        "page": "pages/1_Meta_Subspace_Pursuit.py",
    },
    {
        "title": "Memory-reduced meta-learning",
        "source": "gradient-based and implicit meta-learning",
        "question": "Meta-gradients through inner loops cost memory that grows with the number of "
        "inner steps. How much can be saved without changing what is learned?",
        "lab": "Memory and accuracy of MAML-style and implicit (hypergradient) meta-learning, side by side.",
        "page": None,
    },
    {
        "title": "Meta-learning from sparse recovery (MLSR)",
        "source": "sparse recovery across tasks",
        "question": "When tasks share a sparse structure, can sparse-recovery algorithms (ISTA / FISTA) "
        "learn it from few samples per task?",
        "lab": "Recovery of the shared support and few-shot error as tasks and samples vary.",
        "page": None,
    },
    {
        "title": "Compressive meta-learning",
        "source": "learning from sketches",
        "question": "Can a model be meta-learned from a compact sketch of a data set instead of the data, "
        "with privacy and distributed collection for free?",
        "lab": "Sketch and query networks against randomized baselines, with differential privacy "
        "and distributed sketching.",
        "page": None,
    },
]


def card(paper: dict) -> None:
    with st.container(border=True, height="stretch"):
        live = paper["page"] is not None
        st.subheader(paper["title"])
        if live:
            st.badge("live", icon=":material/play_circle:", color="green")
        else:
            st.badge("coming next", icon=":material/schedule:", color="gray")
        st.caption(paper["source"])
        st.markdown(paper["question"])
        st.markdown(f"*{paper['lab']}*")
        if live:
            st.page_link(paper["page"], label="Open the lab", icon=":material/arrow_forward:")


st.title("metalab")
st.markdown(
    "Interactive labs for four meta-learning papers. Each lab runs the paper's experiment on settings "
    "you choose and draws the curves while they are computed; the same experiments run from "
    "notebooks and the command line."
)

for row in (PAPERS[:2], PAPERS[2:]):
    for column, paper in zip(st.columns(2), row):
        with column:
            card(paper)

st.subheader("Beyond the dashboard")
left, right = st.columns(2)
with left:
    st.markdown("**Notebooks**: one per paper (question, method, experiment, figure), with a play section.")
    st.code("./run.sh lab", language="bash")
with right:
    st.markdown("**Command line**: run an experiment to CSV/JSON records and PNG figures.")
    st.code(
        "metalab run meta_sp --out runs/x\nmetalab show meta_sp   # every setting and what it allows", language="bash"
    )
st.caption(
    "The dashboard listens on 127.0.0.1 only. Every page keeps its settings in the URL: copy the "
    "link to share or return to a view."
)
