"""The dashboard's pages run headless with Streamlit's AppTest: defaults, controls, URL state, errors."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

TIMEOUT = 180  # seconds per script run; generous for 2 slow CPU cores
FEW_METHODS = ["meta_sp", "mom"]


@pytest.fixture
def page(app_page):
    """A fresh AppTest of the Meta-SP page with the given URL query parameters (not yet run)."""
    return app_page("meta_sp", TIMEOUT)


def summary(at: AppTest):
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.dataframe) == 1, "no summary table: " + "; ".join(e.value for e in at.error)
    return at.dataframe[0].value


def final_error(at: AppTest, method: str = "Meta-SP") -> float:
    table = summary(at)
    return float(table.loc[table["method"] == method, "final sin θ"].iloc[0])


def chart_specs(at: AppTest) -> list[str]:
    return [chart.proto.spec for chart in at.get("vega_lite_chart")]


def test_meta_sp_page_renders_defaults_with_a_result(page):
    at = page().run()
    assert not at.exception
    assert not at.error
    (claims,) = [t.value for t in at.table]  # above the live run: the stored paper-scale run's claims
    assert claims["verdict"].str.split(":").str[0].isin(["reproduced", "partly", "not"]).all() and len(claims) >= 4
    table = summary(at)
    assert set(table["method"]) == {
        "Meta-SP",
        "MoM",
        "AltMinGD",
        "Burer-Monteiro",
        "nuclear norm",
        "ANIL",
        "single-task OLS + SVD",
        "oracle basis",
    }
    meta_sp = final_error(at)
    assert math.isfinite(meta_sp) and 0 <= meta_sp < 0.5  # the quick preset recovers the subspace
    specs = chart_specs(at)
    assert len(specs) == 1 and "m = 10 samples per task" in specs[0]
    assert any("Done:" in c.value or "cached" in c.value for c in at.caption)
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Records (CSV)", "Figure (PNG)"]


def test_changing_samples_per_task_changes_the_result(page):
    at = page(methods=FEW_METHODS).run()
    before, spec_before = final_error(at), chart_specs(at)[0]
    at.slider(key="n_samples").set_value(40).run()
    after, spec_after = final_error(at), chart_specs(at)[0]
    assert after != before
    assert after < before  # four times the samples per task: a better subspace estimate
    assert "m = 40 samples per task" in spec_after and spec_after != spec_before


def test_changing_rank_changes_the_result(page):
    at = page(methods=FEW_METHODS).run()
    before = final_error(at)
    at.slider(key="rank").set_value(5).run()
    assert final_error(at) != before
    assert "s = 5" in chart_specs(at)[0]


def test_rank_too_large_is_explained_not_raised(page):
    at = page(methods=FEW_METHODS).run()
    at.slider(key="rank").set_value(20).run()  # d = 20: rank must be at most min(T, d) - 1 = 19
    assert not at.exception
    assert len(at.error) == 1
    message = at.error[0].value
    assert "rank" in message and "20" in message and "1..19" in message
    assert len(at.dataframe) == 0 and not chart_specs(at)  # nothing drawn for an invalid configuration


def test_invalid_samples_grid_is_explained(page):
    at = page(view="Samples", samples_grid="5, lots", methods=FEW_METHODS).run()
    assert not at.exception
    assert len(at.error) == 1 and "samples_grid" in at.error[0].value


def test_query_parameters_set_the_controls(page):
    at = page(n_samples="25", rank="2", d="30", methods=FEW_METHODS).run()
    assert at.slider(key="n_samples").value == 25
    assert at.slider(key="rank").value == 2
    assert at.slider(key="d").value == 30
    assert set(summary(at)["method"]) == {"Meta-SP", "MoM"}
    spec = chart_specs(at)[0]
    assert "m = 25 samples per task" in spec and "s = 2" in spec and "d = 30" in spec


def test_a_configuration_seen_before_comes_from_the_cache(page):
    first = page(n_samples="12", methods=FEW_METHODS).run()
    again = page(n_samples="12", methods=FEW_METHODS).run()
    assert final_error(again) == final_error(first)
    captions = " ".join(c.value for c in again.caption)
    assert "cached" in captions


def test_samples_sweep_view(page):
    at = page(view="Samples", samples_grid="5,30", repeats="1", methods=FEW_METHODS).run()
    table = summary(at)
    assert list(table.columns[:3]) == ["method", "sin θ, m = 5", "sin θ, m = 30"]
    meta_sp = table[table["method"] == "Meta-SP"].iloc[0]
    assert meta_sp["sin θ, m = 30"] < meta_sp["sin θ, m = 5"]
    assert "Subspace error vs samples per task" in chart_specs(at)[0]


def test_home_lists_the_four_papers(repo_root):
    """Home (the checkout's entry, drawing the packaged dashboard) has a card per paper, titled from its
    paper block, linking to its page."""
    from metalab.dashboard import PAGES
    from metalab.experiments import get_experiment

    at = AppTest.from_file(str(repo_root / "app" / "Home.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    titles = [s.value for s in at.subheader]
    links = " ".join(str(link.proto) for link in at.get("page_link"))
    assert len(PAGES) == 4
    for name, entry in PAGES.items():
        assert get_experiment(name).paper.title in titles
        assert f'page: "{entry.url_path}"' in links, name


def test_a_diverging_method_is_flagged_and_never_ranked(page):
    at = page(auto_step="false", methods=["meta_sp", "mom"], step_size="50").run()
    assert not at.exception
    warnings = [w.value for w in at.warning]
    assert any("Meta-SP" in w and "DivergenceWarning" in w and "diverged" in w for w in warnings), warnings
    headline = " ".join(m.value for m in at.markdown if "Lowest" in m.value or "Not ranked" in m.value)
    assert "**MoM**" in headline and "Not ranked" in headline and "Meta-SP" in headline.split("Not ranked")[1]


def test_a_configuration_over_the_servers_budget_is_refused_with_its_cost(page):
    # the link: 9.7 GB peaked before; the URL cannot raise the server's budget
    at = page(view="Samples", samples_grid="1500", n_tasks="1000", d="200", repeats="1", max_iter="1", methods="mom")
    at = at.run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "Not run: too large for this dashboard" in errors and "GB of memory (allowed: 2.0 GB)" in errors
    assert not at.dataframe  # nothing ran


def test_the_server_owner_sets_the_budget(page, monkeypatch):
    monkeypatch.setenv("METALAB_BUDGET_SECONDS", "0.001")
    at = page(seed="7").run()  # a configuration no other test ran (a cached result is shown whatever it cost)
    assert "s of computing (allowed: 0 s)" in " ".join(e.value for e in at.error)


def test_link_values_out_of_range_are_reported_not_dropped_silently(page):
    at = page(rank="99", d="abc", init="diagonal").run()
    assert not at.exception
    warning = " ".join(w.value for w in at.warning)
    assert "Some values in the link were ignored" in warning
    assert "`rank=99`: outside this control's range 1..20" in warning
    assert "`d=abc`: not a number of type int" in warning
    assert "`init=diagonal`: not one of zero, spectral" in warning
    assert len(at.dataframe) == 1  # the page still runs on the defaults
