"""One registry of how every method looks, for matplotlib figures and the dashboard's altair charts alike.

``STYLES[experiment][method]`` is a :class:`MethodStyle` (label, colour, marker, dash).  A method that
several papers share keeps one colour across the suite (MAML is blue, ANIL orange, the paper's own
method red); where one name means different things in two papers (``random``: a random initialisation
in MLSR, a random sketch in compressive learning) the experiment's entry says which.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

#: colour of a method the registry does not know
UNKNOWN_COLOUR = "#999999"


@dataclasses.dataclass(frozen=True)
class MethodStyle:
    label: str
    colour: str
    marker: str = "o"
    #: matplotlib line style; the dashboard maps it to a stroke dash
    linestyle: str = "-"

    @property
    def dash(self) -> list[int]:
        """The altair ``strokeDash`` of the line style."""
        return {"-": [], "--": [6, 4], ":": [2, 3], "-.": [6, 3, 2, 3]}[self.linestyle]


_S = MethodStyle
#: methods the papers share, one look each across the suite
_SHARED = {
    "maml": _S("MAML", "#1f77b4", "s"),
    "fomaml": _S("FOMAML", "#aec7e8", "s"),
    "anil": _S("ANIL", "#ff7f0e", "^"),
}

STYLES: dict[str, dict[str, MethodStyle]] = {
    "meta_sp": {
        "meta_sp": _S("Meta-SP", "#d62728", "o"),
        "mom": _S("MoM", "#1f77b4", "s"),
        "altmin_gd": _S("AltMinGD", "#2ca02c", "D"),
        "altmin": _S("AltMin", "#98df8a", "d"),
        "burer_monteiro": _S("Burer-Monteiro", "#9467bd", "v"),
        "nuclear_norm": _S("nuclear norm", "#8c564b", "P"),
        "anil": _SHARED["anil"],
        "anil_fo": _S("ANIL (first order)", "#ffbb78", "^"),
        "single_task": _S("single-task OLS + SVD", "#7f7f7f", "x"),
        "oracle": _S("oracle basis", "#17becf", "*", "--"),
        "ridge": _S("per-task ridge", "#bcbd22", "h"),
        "zero": _S("predict the mean", "#c7c7c7", "."),
    },
    "mlsr": {
        "mlsr": _S("MLSR", "#d62728", "o"),
        "maml": _SHARED["maml"],
        "maml_fz": _S("MAML-FZ (ANIL)", _SHARED["anil"].colour, "^"),
        "maml_l1": _S("MAML + L1 inner loop", "#9467bd", "D", "--"),
        "random": _S("random init", "#7f7f7f", "x"),
    },
    "memory_reduced": {
        "implicit": _S("Algorithm 1 (fused implicit)", "#d62728", "o"),
        "implicit_unfused": _S("Algorithm 1 (authors' two-pass)", "#ff9896", "o", "--"),
        "maml": _SHARED["maml"],
        "fomaml": _SHARED["fomaml"],
        "anil": _S("ANIL (features once)", _SHARED["anil"].colour, "^"),
        "anil_recompute": _S("ANIL (authors' style)", "#8c564b", "v"),
        "itd_bio": _S("ITD-BiO", "#2ca02c", "D"),
        "itd_bio_recompute": _S("ITD-BiO (authors' style)", "#98df8a", "d"),
        "imaml": _S("iMAML", "#9467bd", "P"),
        "pixel_nearest": _S("pixel nearest neighbour", "#7f7f7f", "x"),
    },
    "compressive": {
        "learned": _S("learned sketch (Sketch- + Query-Network)", "#d62728", "o"),
        "random": _S("random sketch + classical decoder", "#1f77b4", "s"),
        "exact": _S("exact, on the full data", "#2ca02c", "D", "--"),
        "data": _S("data", "#bbbbbb", "."),
    },
}


def style(experiment: str, method: str) -> MethodStyle:
    """The look of ``method`` in ``experiment``'s figures (grey and its own name when unregistered)."""
    return STYLES.get(experiment, {}).get(method) or MethodStyle(method, UNKNOWN_COLOUR)


def label(experiment: str, method: str) -> str:
    return style(experiment, method).label


def mpl(experiment: str, method: str, *, marker: bool = False, line: bool = False) -> dict:
    """Matplotlib keyword arguments: ``color`` and ``label``, with ``marker`` and ``linestyle`` on request."""
    look = style(experiment, method)
    kwargs = {"color": look.colour, "label": look.label}
    if marker:
        kwargs["marker"] = look.marker
    if line:
        kwargs["linestyle"] = look.linestyle
    return kwargs


def ordered(experiment: str, methods: Iterable[str]) -> list[str]:
    """``methods`` (without repeats) in the registry's order, unregistered ones last."""
    present = list(dict.fromkeys(methods))
    known = [m for m in STYLES.get(experiment, {}) if m in present]
    return known + [m for m in present if m not in known]


def colour_domain(experiment: str, methods: Iterable[str]) -> tuple[list[str], list[str]]:
    """(labels, colours) of ``methods``: the domain and range of a chart's colour scale."""
    looks = [style(experiment, m) for m in ordered(experiment, methods)]
    return [look.label for look in looks], [look.colour for look in looks]
