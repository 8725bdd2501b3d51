"""The dashboard in a real browser: `metalab app` on a free port, driven by the system Chromium.

Needs Debian's ``chromium`` (``apt-get install chromium``); skipped without it, except on CI
(``CI=true``), where a missing browser is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from metalab.dashboard.server import serve

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PAGE = "Meta_Subspace_Pursuit"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (required on CI)")
    pytest.skip(reason)


def _chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(path):
        _unavailable("Chromium is not installed: `apt-get install chromium` to run the browser tests")
    return path


@pytest.fixture(scope="module")
def dashboard(repo_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """`metalab app` from the checkout (one server for this module); yields its base URL."""
    log_path = tmp_path_factory.mktemp("dashboard") / "server.log"
    # a budget of 300 s instead of 60 lets the Stop test ask for a run that a Stop cannot miss
    with serve(cwd=repo_root, log_path=log_path, env={**os.environ, "METALAB_BUDGET_SECONDS": "300"}) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright (the Python package) is not installed")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _chart_title(chart) -> str:
    """The chart's title text (Vega draws it into the chart's SVG)."""
    return " ".join(chart.locator("svg text").all_text_contents())


def _wait_for_final_chart(page, chart, expected: str, timeout_s: float = 90) -> str:
    """Wait until the chart shows ``expected`` and is no longer marked as running; return its text."""
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        if chart.count():
            text = _chart_title(chart.first)
            if expected in text and "running" not in text:
                return text
        page.wait_for_timeout(200)
    pytest.fail(f"the chart never showed {expected!r} as a finished run; last text: {text[:300]!r}")


def press_slider(page, label: str, presses: int = 1, key: str = "ArrowRight") -> None:
    """Move the sidebar slider whose label contains ``label`` by ``presses`` keyboard steps."""
    thumb = page.get_by_test_id("stSlider").filter(has_text=label).get_by_role("slider")
    thumb.focus()
    for _ in range(presses):
        thumb.press(key)


def test_meta_sp_chart_follows_a_slider(dashboard, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1300})
    page.goto(f"{dashboard}/{PAGE}")
    chart = page.get_by_test_id("stVegaLiteChart")
    before_text = _wait_for_final_chart(page, chart, "m = 10 samples per task")
    before_image = chart.first.screenshot()
    page.screenshot(path=str(tmp_path / "meta_sp_before.png"))

    press_slider(page, "samples per task m", 5)

    after_text = _wait_for_final_chart(page, chart, "m = 15 samples per task")
    after_image = chart.first.screenshot()
    page.screenshot(path=str(tmp_path / "meta_sp_after.png"))
    assert after_text != before_text
    assert after_image != before_image  # the curves were redrawn, not only the title
    assert "n_samples=15" in page.url  # the view is in the link
    page.close()


def test_stop_keeps_what_was_drawn(dashboard, browser, tmp_path):
    # a run of about 17 s on a quiet 2-core machine (estimated 73 s, inside this server's 300 s budget) in
    # which Meta-SP streams one record per iteration of 1000, so a Stop is seen within a redraw (0.3 s). The
    # nuclear norm is left out: it reports only when it ends, so a Stop during it waits for the end.
    page = browser.new_page(viewport={"width": 1400, "height": 1300})
    page.goto(f"{dashboard}/{PAGE}?n_tasks=1000&n_samples=20&d=200&max_iter=1000&methods=meta_sp")
    page.get_by_text(re.compile(r"^Running ")).first.wait_for(timeout=60_000)
    page.get_by_test_id("stVegaLiteChart").first.wait_for(timeout=30_000)
    assert page.get_by_text("Some values in the link were ignored").count() == 0  # the long run it asks for
    page.get_by_role("button", name="Stop").click()
    stopped = page.get_by_text("Stopped at")
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    try:
        stopped.wait_for(timeout=30_000)
    except PlaywrightTimeoutError as error:  # say what the page showed instead
        status = page.get_by_test_id("stMain").inner_text()[-1500:]
        raise AssertionError(f"no 'Stopped at' 30 s after the Stop click; the page ends with:\n{status}") from error
    percent = int(stopped.inner_text().split("Stopped at ")[1].split("%")[0])
    assert percent < 100  # stopped mid-run, not after the end
    page.get_by_role("button", name="Run again").wait_for(timeout=10_000)
    page.get_by_role("button", name="Stop").wait_for(state="detached", timeout=30_000)  # the rerun finished
    assert page.get_by_test_id("stVegaLiteChart").count() == 1  # the partial curves stay on the page
    assert page.get_by_text("(partial run)").count() == 1
    page.screenshot(path=str(tmp_path / "meta_sp_stopped.png"))
    page.close()


def test_opening_a_page_directly_fails_no_request_but_streamlits_base_path_probes(dashboard, browser):
    """Opening a page by its URL, nothing is fetched from the internet and nothing fails except the two
    probes by which Streamlit's frontend looks for the server's base path: it asks ``/<Page>/_stcore/health``
    and ``/<Page>/_stcore/host-config`` first, then ``/_stcore/...`` (streamlit/streamlit#7074, open)."""
    page = browser.new_page()
    failed, outside = [], []
    page.on("response", lambda r: failed.append(r.url.removeprefix(dashboard)) if r.status >= 400 else None)
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((dashboard, "data:", "blob:")) else None)
    page.goto(f"{dashboard}/{PAGE}")
    _wait_for_final_chart(page, page.get_by_test_id("stVegaLiteChart"), "m = 10 samples per task")
    page.close()
    assert outside == []
    assert set(failed) <= {f"/{PAGE}/_stcore/health", f"/{PAGE}/_stcore/host-config"}, failed
