"""The compressive meta-learning page runs headless with Streamlit's AppTest: a run, URL state, errors, and
links over the server's budget refused before they run."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")

TIMEOUT = 240  # seconds per script run on 2 slow CPU cores


@pytest.fixture
def page(app_page):
    """A fresh AppTest of the compressive page with the given URL query parameters (not yet run)."""
    return app_page("compressive", TIMEOUT)


def test_a_short_run_draws_the_curve_the_answers_and_their_errors(page):
    at = page(steps="50", sketch_size="20").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert at.sidebar.slider(key="sketch_size").value == 20 and at.sidebar.slider(key="steps").value == 50
    (chart,) = at.get("vega_lite_chart")  # the training curve beside the answers over the data
    assert "Meta-training on a family of data sets" in chart.proto.spec and "One held-out data set" in chart.proto.spec
    table = at.dataframe[0].value
    errors = dict(zip(table["method"], table.iloc[:, 1], strict=True))
    assert errors["exact, on the full data"] == pytest.approx(1.0)
    assert errors["random sketch + classical decoder"] < 1.5  # CL-OMPR on 3 overlapping clusters
    assert errors["learned sketch (Sketch- + Query-Network)"] > 0
    assert any("After 50 meta-training steps" in m.value for m in at.markdown)  # the summary's headline
    assert [b.label for b in at.get("download_button")] == ["Records (CSV)", "Figure (PNG)"]
    (models,) = [e for e in at.expander if "networks meta-trained at d = 10" in e.label]
    (claims,) = [t.value for t in models.table]  # above the live run: the stored networks' claims at d = 10
    assert claims.index.str.contains("kmeans, d = 10, m = 500").any() and claims["verdict"].str.contains(": ").all()


def test_private_ridge_run_explains_the_release(page):
    at = page(tasks="ridge", private="true", example_epsilon="2.0", steps="50", sketch_size="20").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.warning, [w.value for w in at.warning]  # every link value was taken
    (info,) = [i.value for i in at.info]
    assert "ε = 2" in info and "not itself a private release" in info
    assert len(at.dataframe) == 1


def test_impossible_settings_are_explained_in_the_page(page):
    at = page(tasks="pca", d="2", components="3", steps="50").run()
    assert not at.exception
    assert len(at.error) == 1 and "components" in at.error[0].value and "at most d=2" in at.error[0].value
    assert not at.get("vega_lite_chart")


def test_a_link_over_the_budget_is_refused_with_its_cost_instead_of_running(page, monkeypatch):
    monkeypatch.delenv("METALAB_BUDGET_MB", raising=False)
    monkeypatch.delenv("METALAB_BUDGET_SECONDS", raising=False)
    at = page(steps="3000", n_samples="5000").run(timeout=60)  # about 26 min of meta-training
    assert not at.exception, [e.value for e in at.exception]
    (refusal,) = [e.value for e in at.error]
    assert "Not run: too large for this dashboard" in refusal and "allowed: 60 s" in refusal
    assert "Lower samples per data set n, meta-training steps" in refusal
    assert not at.get("vega_lite_chart") and not at.dataframe
