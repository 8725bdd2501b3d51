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
        "source": "Yang, Ma & Yu, arXiv:2412.12030",
        "question": "Meta-gradients through inner loops cost memory that grows with the number of "
        "inner steps K. Can an implicit hypergradient (K head steps, N conjugate-gradient steps) keep "
        "memory flat in K without losing accuracy?",
        "lab": "Live: graph memory against K for the implicit method, MAML, ANIL and ITD-BiO; "
        "few-shot training curves; conjugate-gradient residuals, and why λ = 0 diverges.",
        "page": "pages/2_Memory_Reduced_Meta_Learning.py",
    },
    {
        "title": "Meta-learning from sparse recovery (MLSR)",
        "source": "Lou, Zhao & Wang, NeurIPS 2021 Workshop on Meta-Learning",
        "question": "If the output layer is recovered by an L1 (sparse-recovery) inner loop, does a "
        "first-order meta-gradient learn features that adapt with less cross-task interference?",
        "lab": "Live: MLSR against MAML, MAML-FZ (ANIL), L1-MAML and random init on sinusoid regression, "
        "digit pairs and 2-D navigation.",
        "page": "pages/3_Meta_Learning_from_Sparse_Recovery.py",
    },
    {
        "title": "Compressive meta-learning",
        "source": "Mas Montserrat, Bonet, Perera, Giró-i-Nieto & Ioannidis, arXiv:2508.11090 (KDD '25)",
        "question": "Can a model be meta-learned from a compact sketch of a data set instead of the data, "
        "with privacy and distributed collection for free?",
        "lab": "Live: learned Sketch- and Query-Networks against randomized sketches for PCA, ridge, "
        "k-means and autoencoders; error against sketch size and privacy budget ε.",
        "page": "pages/4_Compressive_Meta_Learning.py",
    },
]


def card(paper: dict) -> None:
    with st.container(border=True, height="stretch"):
        st.subheader(paper["title"])
        st.caption(paper["source"])
        st.markdown(paper["question"])
        st.markdown(f"*{paper['lab']}*")
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
