"""The MLSR page of the dashboard, headless with Streamlit's AppTest: tiny runs of each task, URL state, errors,
the budget, and the look of the methods the issue found hidden or shown as None."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

TIMEOUT = 180  # seconds per script run; generous for 2 slow CPU cores


@pytest.fixture
def page(app_page):
    """A fresh AppTest of the MLSR page with the given URL query parameters (not yet run)."""
    return app_page("mlsr", TIMEOUT)


def summary(at: AppTest):
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.dataframe) == 1, "no summary table: " + "; ".join(e.value for e in at.error)
    return at.dataframe[0].value.set_index("method")


def chart_spec(at: AppTest) -> str:
    """The page's one chart (every panel of the task in one figure), as its Vega-Lite JSON text."""
    charts = at.get("vega_lite_chart")
    assert len(charts) == 1
    return charts[0].proto.spec


def headline(at: AppTest) -> str:
    return " ".join(m.value for m in at.markdown if m.value.startswith("Best"))


def test_sinusoid_view_draws_training_fits_errors_and_head_histogram(page):
    at = page(meta_iterations="20", methods=["mlsr", "maml_fz"]).run()
    table = summary(at)
    assert not at.error
    assert list(table.index) == ["MLSR", "MAML-FZ (ANIL)"]
    assert float(table.loc["MLSR", "zero head weights"].rstrip("%")) > 0.0  # soft-thresholding gives exact zeros
    assert table.loc["MAML-FZ (ANIL)", "zero head weights"] == "0.0%"  # gradient steps do not
    assert (table["MSE after 10 steps"] < table["MSE before adaptation"]).all()
    spec = chart_spec(at)
    assert "Meta-training on sinusoids" in spec and "20 meta-iterations" in spec
    assert "Fits on test sinusoids" in spec and "Test MSE after adaptation" in spec and "Head magnitudes" in spec
    assert [b.label for b in at.get("download_button")] == ["Records (CSV)", "Figure (PNG)"]


def test_the_page_opens_with_the_pretrained_claim_table(page):
    at = page(meta_iterations="10", methods=["mlsr"]).run()
    # st.table: the live run's summary is the one st.dataframe; the stored run's table has its own expander
    (models,) = [e for e in at.expander if "70,000 iterations" in e.label]
    (claims,) = [t.value for t in models.table]
    assert claims.index.str.startswith("MAML, 5-shot MSE").sum() == 3  # after 1, 5 and 10 steps
    verdicts = claims["verdict"].str.split(":").str[0]
    assert verdicts.isin(["reproduced", "not reproduced", "holds", "does not hold"]).all()


def test_maml_head_sparsity_is_explained_not_shown_as_none(page):
    at = page(meta_iterations="10", methods=["mlsr", "maml"]).run()
    table = summary(at)
    assert table.loc["MAML", "zero head weights"] == "—"  # MAML adapts every layer: its head is not diagnosed
    assert "Zero head weights —: not measured, MAML and MAML + L1 adapt every layer" in headline(at)


def test_query_parameters_set_the_navigation_controls_and_a_slider_reruns(page):
    at = page(task="Navigation", rl_iterations="2", rl_width="16", rl_methods=["mlsr", "random"]).run()
    assert at.slider(key="rl_iterations").value == 2 and at.slider(key="rl_width").value == 16
    table = summary(at)
    assert list(table.index) == ["MLSR", "random init"]
    assert {"return after 0 steps", "return after 1 step", "return after 3 steps"} <= set(table.columns)
    spec = chart_spec(at)
    assert "2 meta-iterations" in spec and "width 16" in spec and "Trajectories before adaptation" in spec
    at.slider(key="rl_iterations").set_value(3).run()
    assert "3 meta-iterations" in chart_spec(at)
    assert summary(at).loc["MLSR", "return after 3 steps"] != table.loc["MLSR", "return after 3 steps"]


def _scale(spec: dict, channel: str, method: str):
    """The value the first encoding of ``channel`` on method labels gives ``method``."""
    if isinstance(spec, dict):
        encoding = spec.get("encoding", {}).get(channel)
        if encoding and encoding.get("field") == "method_label" and "scale" in encoding:
            scale = encoding["scale"]
            return scale["range"][scale["domain"].index(method)]
        children = [v for key, v in spec.items() if key in ("layer", "vconcat", "hconcat", "spec")]
        for child in (c for value in children for c in (value if isinstance(value, list) else [value])):
            found = _scale(child, channel, method)
            if found is not None:
                return found
    return None


def test_navigation_maml_and_maml_l1_are_drawn_apart(page):
    at = page(task="Navigation", rl_iterations="2", rl_methods=["maml", "maml_l1"]).run()
    spec = json.loads(chart_spec(at))
    maml, l1 = "MAML", "MAML + L1 inner loop"
    assert _scale(spec, "strokeDash", maml) == [] and _scale(spec, "strokeDash", l1) == [6, 4]
    assert _scale(spec, "shape", maml) != _scale(spec, "shape", l1)
    assert _scale(spec, "strokeWidth", l1) < _scale(spec, "strokeWidth", maml)  # the dashed line lies on top, thinner


def test_digits_view_starts_at_chance(page):
    at = page(task="Digits", methods=["random"]).run()  # no meta-training: the test-time adaptation alone
    table = summary(at)
    assert list(table.index) == ["random init"]
    assert abs(table.loc["random init", "accuracy after 0 steps"] - 0.5) < 0.1  # labels are permuted per task
    assert table.loc["random init", "accuracy after 100 steps"] > 0.6
    assert "Accuracy on test digit pairs" in chart_spec(at)


@pytest.mark.parametrize(
    ("query", "field", "value"),
    [
        ({"inner_steps": "1, 0"}, "inner_steps", "= `0` is not allowed"),
        ({"task": "Digits", "digit_shots": "90"}, "digit_shots", "90"),
        ({"task": "Digits", "digits": ["3"]}, "digits", "3"),
    ],
)
def test_invalid_settings_are_explained_not_raised(page, query, field, value):
    at = page(**query).run()
    assert not at.exception
    assert len(at.error) == 1
    message = at.error[0].value
    assert f"`{field}`" in message and value in message
    assert not at.get("vega_lite_chart") and len(at.dataframe) == 0  # nothing runs for an invalid configuration


def test_a_link_value_outside_a_control_is_reported_and_the_default_kept(page):
    at = page(lam="-0.5", meta_iterations="10", methods=["mlsr"]).run()
    assert "`lam=-0.5`: outside this control's range" in " ".join(w.value for w in at.warning)
    assert "= 0.1, 1 inner step(s)" in chart_spec(at) and len(at.dataframe) == 1  # λ's default


def test_a_link_over_the_budget_is_refused_before_it_runs(page):
    at = page(task="Navigation", rl_iterations="300", rl_trajectories="100", rl_width="200").run()
    assert not at.exception
    refusal = " ".join(e.value for e in at.error)
    assert "Not run: too large for this dashboard" in refusal and "min of computing (allowed: 60 s)" in refusal
    assert "Lower meta-iterations, trajectories per task" in refusal
    assert not at.get("vega_lite_chart") and len(at.dataframe) == 0
