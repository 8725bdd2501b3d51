"""The compressive page in a real browser, with the server, browser and waiting helpers of tests/test_browser.py.

Skipped without Debian's ``chromium``, except on CI (``CI=true``), where a missing browser is a failure.
"""

from __future__ import annotations

import pytest

# the module's fixtures (one dashboard server and one Chromium for this module) and its waiting helper
from test_browser import _wait_for_final_chart, browser, dashboard  # noqa: F401

pytestmark = pytest.mark.browser

PAGE = "Compressive_Meta_Learning"


def test_compressive_page_trains_then_draws_the_answers_over_the_data(dashboard, browser, tmp_path):  # noqa: F811
    page = browser.new_page(viewport={"width": 1500, "height": 1300})
    page.goto(f"{dashboard}/{PAGE}?steps=50&m=20")
    charts = page.get_by_test_id("stVegaLiteChart")
    _wait_for_final_chart(page, charts, "Meta-training on a family of data sets", timeout_s=180)
    page.get_by_text("Records (CSV)").wait_for(timeout=180_000)  # the run finished and offers its records
    assert charts.count() == 2  # the training curve and the answers over a held-out data set
    answers = _wait_for_final_chart(page, charts.nth(1), "One held-out data set", timeout_s=30)
    assert "centroids" in answers  # k-means, the default task
    assert page.get_by_test_id("stDataFrame").count() == 1  # each method's error on this data set
    page.screenshot(path=str(tmp_path / "compressive.png"), full_page=True)
    page.close()
