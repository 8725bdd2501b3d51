"""How fast the dashboard answers, measured in Chromium: per page, the time to the first chart and to the
finished view, for the default view of a fresh visit and after moving each main slider.

    .venv/bin/python benchmarks/dashboard.py [--pages meta_sp,mlsr] [--timeout 600]

Starts `metalab app` on a free port (:func:`metalab.dashboard.server.serve`), drives Debian's Chromium with Playwright, prints one row per
measurement against the goals (first chart within 1 s of a control change, default view done within
5 s), and stops the server.  Each page's main sliders are its config fields offered as sliders, in the
order the page draws them (at most ``--controls`` of them).
"""

from __future__ import annotations

import argparse
import os
import time

from playwright.sync_api import sync_playwright

from metalab.dashboard import PAGES
from metalab.dashboard.controls import widget_kind
from metalab.dashboard.server import serve
from metalab.experiments import get_experiment

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
GOAL_FIRST_CHART = 1.0
GOAL_DEFAULT_DONE = 5.0


def chart_text(page) -> str:
    charts = page.get_by_test_id("stVegaLiteChart")
    return "|".join(c.inner_html()[:20000] for c in charts.all()) if charts.count() else ""


def finished(page) -> bool:
    body = page.inner_text("body")
    return page.get_by_role("button", name="Stop").count() == 0 and any(
        word in body for word in ("Done:", "cached", "Not run", "The run failed", "Stopped at")
    )


def measure(page, act, timeout: float) -> tuple[float | None, float | None]:
    """Seconds from ``act()`` to a changed chart and to a finished view (None: not within ``timeout``)."""
    before = chart_text(page)
    start = time.perf_counter()
    act()
    first = done = None
    while time.perf_counter() - start < timeout:
        now = time.perf_counter() - start
        if first is None and chart_text(page) not in ("", before):
            first = now
        if first is not None and finished(page):  # the old run's "Done" stays until the chart changes
            done = now
            break
        page.wait_for_timeout(50)
    return first, done


def main_sliders(name: str, limit: int) -> list[str]:
    config = get_experiment(name).config
    script = PAGES[name].script(name).read_text()
    fields = [f for f in config.field_names() if widget_kind(config, f) == "slider" and f'"{f}"' in script]
    return fields[:limit]


def cell(value: float | None, goal: float) -> str:
    if value is None:
        return "  timeout"
    return f"{value:8.2f}{'' if value <= goal else ' *'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", default=",".join(PAGES))
    parser.add_argument("--controls", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    print(f"dashboard timings in Chromium; goals: first chart <= {GOAL_FIRST_CHART} s after a change, default view")
    print(f"done <= {GOAL_DEFAULT_DONE} s; * = goal missed; {os.cpu_count()} CPUs")
    print(f"{'page':16s} {'action':34s} {'first chart s':>14s} {'done s':>9s}")
    with serve() as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        for name in args.pages.split(","):
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            url = f"{base}/{PAGES[name].url_path}"
            first, done = measure(page, lambda url=url, page=page: page.goto(url), args.timeout)
            print(
                f"{name:16s} {'default view (fresh visit)':34s} {cell(first, GOAL_DEFAULT_DONE):>14s} "
                f"{cell(done, GOAL_DEFAULT_DONE):>9s}"
            )
            config = get_experiment(name).config
            for field in main_sliders(name, args.controls):
                thumb = page.get_by_test_id("stSlider").filter(has_text=config.label(field)).get_by_role("slider")
                if not thumb.count():
                    continue
                first, done = measure(page, lambda thumb=thumb: thumb.first.press("ArrowRight"), args.timeout)
                print(
                    f"{name:16s} {'move ' + config.label(field):34.34s} {cell(first, GOAL_FIRST_CHART):>14s} "
                    f"{cell(done, GOAL_DEFAULT_DONE):>9s}"
                )
            page.close()
        browser.close()


if __name__ == "__main__":
    main()
