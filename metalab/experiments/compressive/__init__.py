"""Compressive Meta-Learning (Mas Montserrat et al., arXiv 2508.11090): the paper's story as one record stream.

A Sketch-Network and a Query-Network are meta-trained end to end over a family of data sets
(:mod:`metalab.compressive.training`) and compared with randomized compressive learning at the same
sketch size m (:mod:`metalab.compressive.randomized`), every error divided by the exact reference's
on the full data (SVD PCA, closed-form ridge, k-means++ with Lloyd, an Adam-trained autoencoder).

Parts (select with ``Config.parts``; each one's x column in brackets, ``step`` repeats it):

* ``training``    [iteration] the meta-training curve of the learned model of every task at
  ``sketch_size`` (trained on noisy sketches when ``example_epsilon`` is set);
* ``sketch_size`` [sketch_size] relative error of learned and random sketches against m (the paper's
  Figures 3 and 4);
* ``privacy``     [epsilon] relative error against the privacy budget, both sketches released by the
  Laplace or Gaussian mechanism (the learned model meta-trained on noisy sketches);
* ``decoding``    [n] seconds to sketch and to decode k-means against the data set size n: the sketch
  methods' decoding is flat in n, the exact method's time grows;
* ``merge``       [none] a data set split across workers, sketched per worker and merged, against its
  one-pass sketch; and the same data streamed in chunks;
* ``throughput``  [none] rows per second of sketching in one process and on a local Dask cluster;
* ``example``     [point] one held-out data set and every method's answer, as 2-D points to draw over
  it (from sketches released at ``example_epsilon`` when set).

Evaluation records carry ``task``, ``method`` (``learned``, ``random``, ``exact``), ``sketch_size``
and ``relative_error`` (the median over the held-out data sets; quartiles alongside).  The modules:
:mod:`.config` (settings), :mod:`.context` (the models and held-out data the parts share),
:mod:`.parts` (what each part computes), :mod:`.cost` (what a configuration will cost before it runs).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd

from metalab.core import Record
from metalab.experiments.base import DriftSlice, Experiment, Paper, Part
from metalab.experiments.compressive.config import (
    PAPER_SCALE,
    PARTS,
    CompressiveConfig,
    family_of,
    held_out,
    held_out_family,
    mechanism_of,
    task_of,
)
from metalab.experiments.compressive.context import CompressiveContext, HeldOut, ModelKey
from metalab.experiments.compressive.cost import estimate
from metalab.experiments.compressive.parts import (
    decoding_units,
    example_units,
    merge_units,
    privacy_units,
    random_relative_errors,
    sketch_size_units,
    summary,
    throughput_units,
    training_units,
)

__all__ = [
    "CONFIG",
    "EXPERIMENT",
    "NAME",
    "PAPER",
    "PAPER_SCALE",
    "PARTS",
    "TITLE",
    "CompressiveConfig",
    "CompressiveContext",
    "HeldOut",
    "ModelKey",
    "family_of",
    "drift_slice",
    "figures",
    "held_out",
    "held_out_family",
    "mechanism_of",
    "random_relative_errors",
    "ratios",
    "run",
    "summary",
    "task_of",
]

PAPER = Paper(
    title="Compressive Meta-Learning",
    authors="Mas Montserrat, Bonet, Perera, Giró-i-Nieto & Ioannidis",
    venue="KDD",
    year=2025,
    arxiv="2508.11090",
    question=(
        "Can a Sketch-Network and a Query-Network, meta-trained end to end over many data sets, learn a model "
        "from a data set's sketch (the mean of per-sample features) more accurately than randomized compressive "
        "learning with the same sketch size?"
    ),
    claims=(
        "Learned sketches decoded by a Query-Network come closer to the exact method on the full data than random "
        "sketches with classical decoders at the same sketch size m, for PCA, ridge regression, k-means and "
        "autoencoders.",
        "Decoding from a sketch takes a time that depends on m and not on the number of samples n, while the exact "
        "method's time grows with n.",
        "Sketches stay useful under differential privacy: calibrated noise on the sketch, with a Query-Network "
        "meta-trained on noisy sketches.",
        "Sketches are mergeable and updatable: sketching each site and merging equals one pass over all the data.",
    ),
    lab="Meta-train a Sketch- and a Query-Network live, then compare their answer with a random sketch's and the "
    "exact one on a data set they never saw.",
)

NAME = "compressive"
TITLE = PAPER.title
CONFIG = CompressiveConfig


def run(config: CompressiveConfig | None = None) -> Iterator[Record]:
    """Stream the records of every selected part; each record carries the fraction of the run done.

    Parameters
    ----------
    config : CompressiveConfig, optional
        The settings (default: the ``quick`` preset).

    Returns
    -------
    Iterator[Record]
        The records of the selected parts, in declaration order.
    """
    return EXPERIMENT.run(config)


def ratios(frame: pd.DataFrame) -> dict[str, float]:
    """Headline numbers: median learned / random relative error at the largest sketch size, per task.

    Parameters
    ----------
    frame : pandas.DataFrame
        Records of a run (:func:`metalab.core.collect`); only the ``sketch_size`` part is read.

    Returns
    -------
    dict[str, float]
        ``"<task>_learned_vs_random"`` for every task with both methods at its largest m.
    """
    rows = frame[frame["part"] == "sketch_size"]
    out = {}
    for task, group in rows.groupby("task"):
        largest = group[group["sketch_size"] == group["sketch_size"].max()].set_index("method")["relative_error"]
        if {"learned", "random"} <= set(largest.index):
            out[f"{task}_learned_vs_random"] = float(largest["learned"] / largest["random"])
    return out


def drift_slice(config: CompressiveConfig) -> DriftSlice:
    """What the drift test re-runs of a stored run (about 20 s): the first model's whole meta-training (its
    one-cycle learning-rate schedule depends on the number of steps, so a shorter run is not a prefix);
    thousands of Adam steps on another CPU drift in the last digits, hence the 2 % tolerance."""
    return DriftSlice(config, ("training/0",), rtol=0.02, atol=1e-6)


def figures(frame: pd.DataFrame) -> dict[str, Any]:
    """Every figure the records allow, keyed by part name (from the records alone).

    Parameters
    ----------
    frame : pandas.DataFrame
        Records of a run (:func:`metalab.core.collect`, or the CSV the command line writes).

    Returns
    -------
    dict[str, matplotlib.figure.Figure]
        One figure per part that has records and a figure.
    """
    from metalab.plots.compressive import compressive_figures

    return compressive_figures(frame)


RELATIVE = ("relative_error", "q25", "q75")

EXPERIMENT = Experiment(
    name=NAME,
    paper=PAPER,
    config=CompressiveConfig,
    parts=(
        Part(
            "training",
            "iteration",
            ("task", "sketch_size", "iteration", "loss", "held_out", "seconds"),
            training_units,
            "the meta-training curve of the learned model of every task at sketch_size: batch loss and the held-out "
            "median relative error every eval_every steps",
            volatile=("seconds",),
        ),
        Part(
            "sketch_size",
            "sketch_size",
            ("task", "sketch_size", *RELATIVE),
            sketch_size_units,
            "relative error of learned and random sketches against the sketch size m (the paper's Figures 3 and 4)",
        ),
        Part(
            "privacy",
            "epsilon",
            ("task", "sketch_size", "epsilon", "mechanism", *RELATIVE),
            privacy_units,
            "relative error against the privacy budget epsilon, both sketches released by the Laplace or Gaussian "
            "mechanism (the learned model meta-trained on noisy sketches)",
        ),
        Part(
            "decoding",
            "n",
            ("task", "n", "sketch_size", "sketch_seconds", "decode_seconds", "relative_error"),
            decoding_units,
            "seconds to sketch and to decode k-means against the data set size n, and the SSE relative to exact k-means",
            volatile=("sketch_seconds", "decode_seconds"),
        ),
        Part(
            "merge",
            None,
            ("task", "sketch_size", "workers", "count", "merge_difference", "stream_difference", "remove_difference"),
            merge_units,
            "a data set split across workers, sketched per worker and merged, streamed in chunks, and a worker's "
            "samples removed again, each against the one-pass sketch",
        ),
        Part(
            "throughput",
            None,
            ("task", "sketch_size", "scheduler", "rows", "seconds", "rows_per_second"),
            throughput_units,
            "rows per second of sketching in one process and on Dask, for the learned and the random map",
            volatile=("seconds", "rows_per_second"),
        ),
        Part(
            "example",
            "point",
            ("task", "sketch_size", "epsilon", "point", "x", "y", "relative_error"),
            example_units,
            "one held-out data set and every method's answer drawn over it (point i of an answer is the answer for "
            "sample i; k-means: centroid i)",
        ),
    ),
    figures=figures,
    context=CompressiveContext,
    estimate=estimate,
    paper_scale=PAPER_SCALE,
    drift_slice=drift_slice,
)
