"""The memory-reduced meta-learning page under Streamlit's AppTest: each view, URL state, errors, λ = 0, the budget."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

TIMEOUT = 240  # seconds per script run; generous for 2 slow CPU cores
#: runs of a few seconds: two methods, two meta-iterations, one test episode per evaluation
TINY = {"methods": ["implicit", "maml"], "meta_iterations": "2", "eval_episodes": "1", "dataset": "glyphs"}


@pytest.fixture
def page(app_page):
    """A fresh AppTest of the memory-reduced page with the given URL query parameters (not yet run)."""
    return app_page("memory_reduced", TIMEOUT)


def chart_specs(at: AppTest) -> list[str]:
    """Each chart's Vega-Lite spec as text, with its non-ASCII characters (λ, …) as they are."""
    return [json.dumps(json.loads(chart.proto.spec), ensure_ascii=False) for chart in at.get("vega_lite_chart")]


def summary_table(at: AppTest):
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.dataframe) == 1, "no summary table: " + "; ".join(e.value for e in at.error)
    return at.dataframe[0].value


def markdown(at: AppTest) -> str:
    return " ".join(m.value for m in at.markdown)


def test_defaults_show_memory_flat_for_algorithm_1_and_growing_for_maml(page):
    at = page().run()
    assert not at.exception and not at.error and not at.warning
    graph = summary_table(at).set_index("method")
    assert list(graph.columns) == ["K = 1", "K = 5", "K = 10", "K = 20"]
    assert list(graph.index) == [
        "Algorithm 1 (fused implicit)",
        "MAML",
        "ANIL (features once)",
        "ANIL (authors' style)",
    ]
    implicit, maml = graph.loc["Algorithm 1 (fused implicit)"], graph.loc["MAML"]
    recompute, once = graph.loc["ANIL (authors' style)"], graph.loc["ANIL (features once)"]
    assert implicit.max() <= 1.01 * implicit.min() and once.max() <= 1.05 * once.min()
    for grows in (maml, recompute):
        assert grows.is_monotonic_increasing and grows["K = 20"] > 3 * grows["K = 1"]
    assert implicit["K = 20"] < 0.2 * maml["K = 20"] and implicit["K = 20"] < 0.5 * recompute["K = 20"]
    headline = markdown(at)
    assert "At K = 20, Algorithm 1 keeps" in headline and "of the graph memory of MAML" in headline
    assert "time per task by" not in headline  # one noisy timing drives no headline
    specs = chart_specs(at)
    assert len(specs) == 1
    assert "Graph memory of one hypergradient vs K (5-way 1-shot, Conv-4-8" in specs[0]
    assert "the fastest of 3 timed call(s)" in specs[0]
    assert [b.label for b in at.get("download_button")] == ["Records (CSV)", "Figure (PNG)"]
    assert any("Done:" in c.value or "cached" in c.value for c in at.caption)


def test_query_parameters_set_the_controls_of_the_sidebar_and_the_view(page):
    at = page(**TINY, k_grid="1,5", ways="3", hidden="4", inner_steps="3", cg_steps="4", l2="0.1").run()
    assert at.slider(key="ways").value == 3 and at.slider(key="hidden").value == 4
    assert at.slider(key="inner_steps").value == 3 and at.slider(key="cg_steps").value == 4
    assert at.number_input(key="l2").value == pytest.approx(0.1)
    assert at.text_input(key="k_grid").value == "1,5"
    assert at.multiselect(key="methods").value == ["implicit", "maml"]
    graph = summary_table(at)
    assert list(graph.columns) == ["method", "K = 1", "K = 5"]
    assert list(graph["method"]) == ["Algorithm 1 (fused implicit)", "MAML"]
    spec = chart_specs(at)[0]
    assert "3-way 1-shot, Conv-4-4" in spec and "glyphs" in spec
    command = at.code[0].value
    assert command.startswith("metalab run memory_reduced") and "--set hidden=4" in command
    assert "--set methods=implicit,maml" in command and "--set parts=memory" in command


def test_the_training_view_runs_only_meta_training(page):
    at = page(**TINY, view="Meta-training").run()
    table = summary_table(at)
    assert set(table["method"]) == {"Algorithm 1 (fused implicit)", "MAML"}
    assert table["test accuracy"].between(0, 1).all() and (table["meta-iterations"] == 2).all()
    assert "Test accuracy during meta-training (5-way, glyphs)" in chart_specs(at)[0]
    assert "on 1 test episodes" in markdown(at)
    assert "--set parts=training" in at.code[0].value


def test_the_cg_view_draws_residuals_and_errors_on_log_axes_with_one_number_format(page):
    at = page(view="Conjugate gradient", dataset="glyphs", inner_steps="3", cg_steps="4", l2="0.1").run()
    table = summary_table(at)
    assert list(table["CG status"]) == ["converged"] and table["relative residual"].iloc[0] < 1e-8
    spec = json.loads(chart_specs(at)[0])
    residual, error = spec["hconcat"]
    assert "CG on the head Hessian (K = 3)" in json.dumps(residual, ensure_ascii=False)
    assert "N = 4, the CG steps the methods use" in json.dumps(residual, ensure_ascii=False)
    encoding = error["encoding"]
    assert encoding["x"]["scale"]["type"] == "log"  # was symlog: ticks only at 0/100/200/300
    assert encoding["x"]["axis"]["values"] == [1, 10, 100, 1000]
    for axis in (encoding["y"], residual["layer"][0]["encoding"]["y"]):
        # one format, ticks at decades only: was "0.000001" beside "1e-7"
        assert axis["scale"]["type"] == "log" and axis["axis"]["format"] == ".0e"
        exponents = [math.log10(value) for value in axis["axis"]["values"]]
        assert len(exponents) >= 3 and all(e == pytest.approx(round(e)) for e in exponents)
    assert "Hypergradient error from K = 1 to 320" in markdown(at)


def test_lambda_zero_is_explained_and_cg_reports_its_failure(page):
    at = page(view="Conjugate gradient", dataset="glyphs", l2="0").run()
    assert not at.exception and not at.error
    assert at.number_input(key="l2").value == 0.0
    assert len(at.warning) == 1
    warning = at.warning[0].value
    assert "conjugate gradient will fail" in warning and "singular" in warning and "λ ≥ 0.001" in warning
    table = summary_table(at)
    assert table["CG status"].iloc[0] in ("diverged", "nonpositive_curvature")
    spec = chart_specs(at)[0]
    assert "CG failed" in spec  # the failure marker's tooltip


def test_a_failing_method_is_never_ranked(page):
    """iMAML's CG meets the network Hessian's negative curvature and falls back: the headline does not rank it,
    and says why."""
    at = page(**{**TINY, "methods": ["maml", "imaml"]}, view="Meta-training").run()
    table = summary_table(at)
    status = dict(zip(table["method"], table["status"], strict=True))
    assert "cg_fallback" in status["iMAML"] and status["MAML"] == "ok"
    text = markdown(at)
    assert "Highest test accuracy" in text and "**MAML**" in text and "**iMAML**" not in text
    assert "Not ranked (a computation failed, see the status): iMAML." in text
    assert "not positive definite" in text


def test_the_final_view_gives_accuracy_with_intervals(page):
    at = page(**TINY, view="Final accuracy", final_episodes="6").run()
    table = summary_table(at)
    assert list(table.columns) == ["method", "shots", "test accuracy", "± 95% CI", "episodes"]
    assert (table["episodes"] == 6).all() and (table["± 95% CI"] > 0).all()
    assert "Final test accuracy, 5-way, 6 test episodes (glyphs)" in chart_specs(at)[0]
    assert "1-shot: highest" in markdown(at)


def test_an_out_of_range_value_in_the_link_is_explained_not_raised(page):
    at = page(k_grid="1,-5").run()
    assert not at.exception
    assert len(at.error) == 1
    message = at.error[0].value
    assert "K values of the memory bars" in message and "`k_grid`" in message and "-5" in message
    assert not chart_specs(at) and not at.dataframe  # nothing runs for an invalid configuration


@pytest.mark.parametrize(
    ("query", "field", "allowed"),
    [
        ({"dataset": "digits", "ways": "6"}, "`ways`", "at most 5"),
        ({"shots": ["18"]}, "`shots`", "at most 15 shots"),
    ],
)
def test_settings_that_do_not_fit_together_are_explained(page, query, field, allowed):
    at = page(**query).run()
    assert not at.exception
    assert len(at.error) == 1 and field in at.error[0].value and allowed in at.error[0].value
    assert not chart_specs(at)


def test_the_issues_link_that_exhausted_the_server_is_refused_with_its_cost(page):
    """Issue 11: this link (every value inside the page's limits) drove the server to 10.4 GB until the OOM
    killer stopped it.  MAML's graph grows by 6.4 bytes per byte of support maps at each of K = 300 steps."""
    at = page(k_grid="300", hidden="64", methods="maml", meta_iterations="1", memory_shots="5").run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "Not run: too large for this dashboard" in errors and "GB of memory (allowed: 2.0 GB)" in errors
    assert "Lower K values of the memory bars" in errors
    assert not at.dataframe and not chart_specs(at)  # nothing ran
    assert "--set k_grid=300" in at.code[0].value  # the command line that runs it without the limit


def test_a_link_over_the_time_budget_is_refused(page):
    at = page(view="Meta-training", meta_iterations="100000").run()
    errors = " ".join(e.value for e in at.error)
    assert "Not run: too large for this dashboard" in errors and "of computing (allowed: 60 s)" in errors
    assert "meta-iterations" in errors and not at.dataframe
