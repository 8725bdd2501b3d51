"""The MLSR page of the dashboard, headless with Streamlit's AppTest: tiny runs of each task, URL state, errors."""

from __future__ import annotations

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


def chart_specs(at: AppTest) -> list[str]:
    return [chart.proto.spec for chart in at.get("vega_lite_chart")]


def test_sinusoid_view_draws_training_fits_errors_and_head_histogram(page):
    at = page(meta_iterations="20", methods=["mlsr", "maml_fz"]).run()
    table = summary(at)
    assert not at.error
    assert list(table.index) == ["MLSR", "MAML-FZ (ANIL)"]
    assert table.loc["MLSR", "zero head weights"] > 0.0  # soft-thresholding gives exact zeros
    assert table.loc["MAML-FZ (ANIL)", "zero head weights"] == 0.0  # gradient steps do not
    assert (table["MSE after 10 steps"] < table["MSE before adaptation"]).all()
    specs = chart_specs(at)
    assert len(specs) == 4
    assert "Meta-training on sinusoids" in specs[0] and "20 meta-iterations" in specs[0]
    assert "Fits on test sinusoids" in specs[1] and "Test MSE after adaptation" in specs[2]
    assert "Head magnitudes" in specs[3]
    assert [b.label for b in at.get("download_button")] == ["Records (CSV)", "Figure (PNG)"]


def test_query_parameters_set_the_navigation_controls_and_a_slider_reruns(page):
    at = page(task="Navigation", rl_iterations="2", rl_width="16", rl_methods=["mlsr", "random"]).run()
    assert at.slider(key="rl_iterations").value == 2 and at.slider(key="rl_width").value == 16
    table = summary(at)
    assert list(table.index) == ["MLSR", "random init"]
    assert {"return after 0 steps", "return after 1 step", "return after 3 steps"} <= set(table.columns)
    specs = chart_specs(at)
    assert len(specs) == 3 and "2 meta-iterations" in specs[0] and "width 16" in specs[0]
    assert "Trajectories before adaptation" in specs[2]
    at.slider(key="rl_iterations").set_value(3).run()
    assert "3 meta-iterations" in chart_specs(at)[0]
    assert summary(at).loc["MLSR", "return after 3 steps"] != table.loc["MLSR", "return after 3 steps"]


def test_digits_view_starts_at_chance(page):
    at = page(task="Digits", methods=["random"]).run()  # no meta-training: the test-time adaptation alone
    table = summary(at)
    assert list(table.index) == ["random init"]
    assert abs(table.loc["random init", "accuracy after 0 steps"] - 0.5) < 0.1  # labels are permuted per task
    assert table.loc["random init", "accuracy after 100 steps"] > 0.6
    assert "Accuracy on test digit pairs" in " ".join(chart_specs(at))


@pytest.mark.parametrize(
    ("query", "field", "value"),
    [
        ({"lam": "-0.5"}, "lam", "-0.5"),
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
    assert not chart_specs(at) and len(at.dataframe) == 0  # nothing runs for an invalid configuration
