"""A user's install: the wheel built from this checkout, installed into a fresh folder outside it, serves
the dashboard (Home and every paper page load in Chromium) and hands out the notebooks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_browser import browser  # noqa: F401 - the Chromium fixture, used by name

from metalab.dashboard import PAGES
from metalab.dashboard.server import serve
from metalab.experiments import get_experiment

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def installed(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a Python that imports metalab from the installed wheel (its dependencies from
    this test's environment, which is how a fresh venv with them installed would see them)."""
    work = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(work), "."]
    subprocess.run(build, cwd=repo_root, check=True, capture_output=True)
    (wheel,) = work.glob("metalab-*.whl")
    target = work / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)]
    subprocess.run(install, check=True, capture_output=True)
    # the wheel's metalab comes first; the checkout is neither the working directory nor on the path
    return {**os.environ, "PYTHONPATH": str(target), "PYTHONSAFEPATH": "1"}


def test_the_installed_package_is_not_the_checkout(installed, tmp_path, repo_root):
    where = subprocess.run(
        [sys.executable, "-c", "import metalab; print(metalab.__file__)"],
        env=installed,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert not Path(where).resolve().is_relative_to(repo_root)
    shipped = (
        "from metalab import pretrained; print(*[pretrained.load(m.name)[1].name for m in pretrained.available()])"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", shipped], env=installed, cwd=tmp_path, capture_output=True, text=True
    )
    assert "sinusoid_maml_k10" in loaded.stdout.split(), loaded.stderr  # the stored models ship, checksums intact
    stored = (
        "from metalab import results; run = results.load('meta_sp'); print(len(run.frame), run.provenance['units'])"
    )
    read = subprocess.run([sys.executable, "-c", stored], env=installed, cwd=tmp_path, capture_output=True, text=True)
    assert read.returncode == 0 and int(read.stdout.split()[0]) > 100, read.stderr  # so do the stored runs


def test_metalab_notebooks_copies_the_shipped_notebooks(installed, tmp_path):
    subprocess.run([sys.executable, "-m", "metalab.cli", "notebooks", "nb"], env=installed, cwd=tmp_path, check=True)
    names = sorted(p.name for p in (tmp_path / "nb").glob("*.ipynb"))
    assert names == sorted(p.name for p in (Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))
    assert len(names) == 4


def test_the_installed_dashboard_serves_every_page(installed, browser, tmp_path):  # noqa: F811
    with serve(sys.executable, cwd=tmp_path, log_path=tmp_path / "server.log", env=installed) as base:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(base)
        page.get_by_role("heading", name="metalab", exact=True).wait_for(timeout=60_000)
        for name in PAGES:
            assert page.get_by_text(get_experiment(name).paper.title).count() >= 1  # its Home card
        for name, entry in PAGES.items():
            page.goto(f"{base}/{entry.url_path}")
            title = get_experiment(name).paper.title
            page.get_by_role("heading", name=title, exact=True).wait_for(timeout=60_000)
            assert page.get_by_test_id("stException").count() == 0, f"{name}: {page.content()[:500]}"
        page.close()
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log, log
