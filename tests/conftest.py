"""Fixtures shared by the dashboard tests (tests/test_app*.py, tests/test_browser*.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The source checkout (the dashboard lives in repo_root / "app")."""
    return REPO_ROOT


@pytest.fixture
def app_page():
    """``app_page(experiment, timeout)`` -> ``make(**query)``: a fresh AppTest of that experiment's dashboard
    page (``metalab/dashboard/papers/<experiment>.py``) with the given URL query parameters (not yet run),
    each script run allowed ``timeout`` seconds."""
    from streamlit.testing.v1 import AppTest

    from metalab.dashboard import PAGES

    def factory(experiment: str, timeout: float):
        def make(**query) -> AppTest:
            at = AppTest.from_file(str(PAGES[experiment].script(experiment)), default_timeout=timeout)
            for name, value in query.items():
                at.query_params[name] = value
            return at

        return make

    return factory
