"""The MLSR page in a real browser, with the server, browser and chart helpers of tests/test_browser.py.

Skipped without Debian's ``chromium``, except on CI (``CI=true``), where a missing browser is a failure.
"""

from __future__ import annotations

import pytest
from test_browser import _wait_for_final_chart, browser, dashboard, press_slider  # noqa: F401 - fixtures used by name

pytestmark = pytest.mark.browser

PAGE = "Meta_Learning_from_Sparse_Recovery"


def test_mlsr_training_curve_follows_the_hidden_width_slider(dashboard, browser, tmp_path):  # noqa: F811
    from playwright.sync_api import expect  # the browser fixture has skipped (or failed on CI) without playwright

    page = browser.new_page(viewport={"width": 1400, "height": 1300})
    page.goto(f"{dashboard}/{PAGE}?meta_iterations=20&methods=mlsr&methods=maml")
    chart = page.get_by_test_id("stVegaLiteChart")
    before_text = _wait_for_final_chart(page, chart, "width 40")
    assert "20 meta-iterations" in before_text
    for panel in ("Fits on test sinusoids", "Test MSE after adaptation", "Head magnitudes"):
        assert panel in before_text  # one figure: training curve, fits, test MSE, head magnitudes
    expect(chart).to_have_count(1, timeout=30_000)
    before_image = chart.first.screenshot()
    page.screenshot(path=str(tmp_path / "mlsr_before.png"))

    press_slider(page, "hidden width")

    after_text = _wait_for_final_chart(page, chart, "width 45")
    after_image = chart.first.screenshot()
    page.screenshot(path=str(tmp_path / "mlsr_after.png"))
    assert after_text != before_text
    assert after_image != before_image  # the curves were redrawn, not only the title
    assert "hidden=45" in page.url  # the view is in the link
    page.close()
