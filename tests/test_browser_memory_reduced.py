"""The memory-reduced page in a real browser, with the server, browser and waiting helpers of tests/test_browser.py.

Skipped without Debian's ``chromium``, except on CI (``CI=true``), where a missing browser is a failure.
"""

from __future__ import annotations

import pytest

# the module's fixtures (one dashboard server and one Chromium for this module) and its waiting helper
from test_browser import _wait_for_final_chart, browser, dashboard  # noqa: F401

pytestmark = pytest.mark.browser

PAGE = "Memory_Reduced_Meta_Learning"
TINY = "methods=implicit&methods=maml&k_grid=1,5&meta_iterations=2&eval_episodes=1&dataset=glyphs"


def test_memory_page_draws_a_bar_per_method_and_k_then_the_cg_view(dashboard, browser, tmp_path):  # noqa: F811
    page = browser.new_page(viewport={"width": 1500, "height": 1400})
    page.goto(f"{dashboard}/{PAGE}?{TINY}")
    charts = page.get_by_test_id("stVegaLiteChart")
    text = _wait_for_final_chart(page, charts, "Graph memory of one hypergradient vs K", timeout_s=180)
    assert "Algorithm 1 (fused implicit)" in text and "MAML" in text  # the legend names both methods
    bars = charts.first.locator("[aria-roledescription='bar']")
    assert bars.count() == 4  # two methods at K = 1 and K = 5
    page.get_by_text("Records (CSV)").wait_for(timeout=180_000)  # the run finished and offers its records
    assert charts.count() == 1  # one view, one chart
    page.screenshot(path=str(tmp_path / "memory_reduced.png"), full_page=True)

    page.get_by_test_id("stButtonGroup").get_by_text("Conjugate gradient").click()
    text = _wait_for_final_chart(page, charts, "CG on the head Hessian", timeout_s=180)
    assert "Hypergradient error" in text and "1e-" in text  # log axes labelled in one format
    page.close()
