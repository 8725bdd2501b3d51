"""The dashboard's entry script: Home plus one page per paper, through ``st.navigation``.

``streamlit run`` this file (``metalab app`` does, from any install); the checkout's ``app/Home.py``
runs it too.
"""

from __future__ import annotations

import streamlit as st

from metalab.dashboard import ICON, PAGES
from metalab.dashboard.home import home
from metalab.experiments import get_experiment


def main() -> None:
    st.set_page_config(page_title="metalab", page_icon=str(ICON), layout="wide")
    pages = [st.Page(home, title="Home", icon=":material/home:", url_path="", default=True)]
    for name, entry in PAGES.items():
        title = get_experiment(name).paper.title
        pages.append(st.Page(entry.script(name), title=title, icon=entry.icon, url_path=entry.url_path))
    st.navigation(pages).run()


if __name__ == "__main__":  # Streamlit runs its script as __main__
    main()
