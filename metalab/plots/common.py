"""What every paper's figures share: selecting a part's records, panels, log-axis floors.

Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot state), so they are safe to draw
from the dashboard's threads and are shown inline by Jupyter.  Each figure function takes the DataFrame
made by :func:`metalab.core.collect` and returns a figure, or ``None`` when the records hold nothing
for it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def part_rows(frame: pd.DataFrame, part: str) -> pd.DataFrame:
    """The records of one part of an experiment (an empty frame when there are none)."""
    if frame.empty or "part" not in frame:
        return frame.iloc[0:0]
    return frame[frame["part"] == part]


def figures_from(frame: pd.DataFrame, makers: dict[str, Callable[[pd.DataFrame], Figure | None]]) -> dict[str, Figure]:
    """Call every figure maker on the records and keep the figures they could draw, by name."""
    figures = {name: make(frame) for name, make in makers.items()}
    return {name: fig for name, fig in figures.items() if fig is not None}


def row_of_axes(fig: Figure, n: int, **options) -> np.ndarray:
    """``n`` panels side by side as a 1-D array of axes (also for ``n = 1``); ``options`` go to ``subplots``."""
    return fig.subplots(1, n, squeeze=False, **options)[0]


def log_floor(rows: pd.DataFrame, column: str) -> float:
    """A lower limit for a log axis: a decade under the smallest value of the methods that estimate
    (the oracle's exact zero, ~1e-16, would otherwise squash every other curve); at least 1e-12."""
    estimated = rows.loc[rows["method"] != "oracle", column]
    positive = estimated[estimated > 0]
    return max(float(positive.min()) / 10 if not positive.empty else 1e-12, 1e-12)
