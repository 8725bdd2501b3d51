"""Fixtures shared by the dashboard tests (tests/test_app.py, tests/test_browser.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The source checkout (the dashboard lives in repo_root / "app")."""
    return REPO_ROOT
