"""The Streamlit dashboard, shipped inside the package: ``metalab app`` runs :mod:`metalab.dashboard.app`.

``PAGES`` lists the paper pages: experiment name -> :class:`PageEntry` (the URL path, which stays
stable so links keep working, and its icon in the navigation).  A page's code is ``papers/<experiment name>.py``; its
title, citation and Home card come from the experiment's paper block.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

PAGES_DIR = Path(__file__).resolve().parent / "papers"  # not "pages": Streamlit would list that folder itself
#: the browser tab's icon, shipped with the package (a Material icon there would be fetched from the internet)
ICON = Path(__file__).resolve().parent / "icon.png"


@dataclasses.dataclass(frozen=True)
class PageEntry:
    url_path: str
    icon: str

    def script(self, experiment: str) -> Path:
        return PAGES_DIR / f"{experiment}.py"


PAGES = {
    "meta_sp": PageEntry("Meta_Subspace_Pursuit", ":material/insights:"),
    "memory_reduced": PageEntry("Memory_Reduced_Meta_Learning", ":material/memory:"),
    "mlsr": PageEntry("Meta_Learning_from_Sparse_Recovery", ":material/scatter_plot:"),
    "compressive": PageEntry("Compressive_Meta_Learning", ":material/compress:"),
}
