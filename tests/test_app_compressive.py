"""The compressive meta-learning page runs headless with Streamlit's AppTest: a run, URL state, errors."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")

TIMEOUT = 240  # seconds per script run on 2 slow CPU cores


@pytest.fixture
def page(app_page):
    """A fresh AppTest of the compressive page with the given URL query parameters (not yet run)."""
    return app_page("compressive", TIMEOUT)


def test_a_short_run_draws_the_curve_the_answers_and_their_errors(page):
    at = page(steps="50", m="20").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert at.sidebar.slider(key="m").value == 20 and at.sidebar.slider(key="steps").value == 50
    assert len(at.get("vega_lite_chart")) == 2  # training curve, answers over the data
    table = at.dataframe[0].value
    errors = dict(zip(table["method"], table.iloc[:, 1]))
    assert errors["exact, on the full data"] == pytest.approx(1.0)
    assert errors["random sketch + classical decoder"] < 1.5  # CL-OMPR on 3 overlapping clusters
    assert errors["learned sketch (Sketch- + Query-Network)"] > 0
    assert [b.label for b in at.get("download_button")] == ["Records (CSV)", "Figure (PNG)"]


def test_private_ridge_run_explains_the_release(page):
    at = page(task="ridge regression", private="true", epsilon="2.0", steps="50", m="20").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("ε = 2" in info.value for info in at.info)
    assert len(at.dataframe) == 1


def test_impossible_settings_are_explained_in_the_page(page):
    at = page(task="PCA", d="2", components="3", steps="50").run()
    assert not at.exception
    assert len(at.error) == 1 and "components" in at.error[0].value and "at most d=2" in at.error[0].value
    assert not at.get("vega_lite_chart")
