"""The compressive page in a real browser, with the server, browser and waiting helpers of tests/test_browser.py.

Skipped without Debian's ``chromium``, except on CI (``CI=true``), where a missing browser is a failure.
"""

from __future__ import annotations

import pytest

# the module's fixtures (one dashboard server and one Chromium for this module) and its waiting helper
from test_browser import _wait_for_final_chart, browser, dashboard  # noqa: F401

pytestmark = pytest.mark.browser

PAGE = "Compressive_Meta_Learning"
#: the progress bar's value now, read in one step (the bar is replaced when the run ends)
READ_BAR = "() => document.querySelector('[data-testid=stProgress] [role=progressbar]')?.getAttribute('aria-valuenow')"


def progress_values(page, timeout_s: float) -> list[int]:
    """The progress bar's values (percent) seen every 100 ms until the run offers its records."""
    seen = []
    for _ in range(int(timeout_s * 10)):
        value = page.evaluate(READ_BAR)
        if value is not None and (not seen or seen[-1] != int(value)):
            seen.append(int(value))
        if page.get_by_text("Records (CSV)").count():
            return seen
        page.wait_for_timeout(100)
    pytest.fail(f"the run did not finish within {timeout_s} s; progress seen: {seen}")


def test_compressive_page_trains_then_draws_the_answers_over_the_data(dashboard, browser, tmp_path):  # noqa: F811
    page = browser.new_page(viewport={"width": 1500, "height": 1300})
    page.goto(f"{dashboard}/{PAGE}?steps=400&sketch_size=20")  # long enough to see the bar move
    progress = progress_values(page, timeout_s=180)
    # the bar moves during meta-training (it stayed at 0 % for the whole run before records carried progress)
    assert len([value for value in progress if 0 < value < 100]) >= 3, progress
    assert progress == sorted(progress)
    chart = page.get_by_test_id("stVegaLiteChart")
    text = _wait_for_final_chart(page, chart, "One held-out data set", timeout_s=30)
    assert chart.count() == 1  # the training curve and, beside it, the answers over a held-out data set
    assert "Meta-training on a family of data sets" in text and "centroids" in text  # k-means, the default task
    assert "learned sketch (Sketch- + Query-Network)" in text  # legend labels in full
    assert page.get_by_test_id("stDataFrame").count() == 1  # each method's error on this data set
    page.screenshot(path=str(tmp_path / "compressive.png"), full_page=True)
    page.close()
