"""The memory-reduced meta-learning page under Streamlit's AppTest: defaults, URL state, errors, λ = 0, a tiny run."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

TIMEOUT = 240  # seconds per script run; generous for 2 slow CPU cores
#: a run of a few seconds: two methods, two K values, two meta-iterations, one test episode per evaluation
TINY = {
    "methods": ["implicit", "maml"],
    "k_grid": "1,5",
    "meta_iterations": "2",
    "eval_episodes": "1",
    "dataset": "glyphs",
}


@pytest.fixture
def page(app_page):
    """A fresh AppTest of the memory-reduced page with the given URL query parameters (not yet run)."""
    return app_page("memory_reduced", TIMEOUT)


def chart_specs(at: AppTest) -> list[str]:
    """Each chart's Vega-Lite spec as text, with its non-ASCII characters (λ, …) as they are."""
    return [json.dumps(json.loads(chart.proto.spec), ensure_ascii=False) for chart in at.get("vega_lite_chart")]


def memory_table(at: AppTest):
    assert not at.exception, [e.value for e in at.exception]
    assert at.dataframe, "no summary tables: " + "; ".join(e.value for e in at.error)
    table = at.dataframe[0].value
    assert table.columns[0] == "method"
    return table.set_index("method")


def test_defaults_show_memory_flat_for_algorithm_1_and_growing_for_maml(page):
    at = page().run()
    assert not at.exception and not at.error and not at.warning
    graph = memory_table(at)
    assert list(graph.columns) == ["K = 1", "K = 5", "K = 10", "K = 20"]
    assert list(graph.index) == [
        "Algorithm 1 (fused implicit)",
        "MAML",
        "ANIL (features once)",
        "ANIL (authors' style)",
    ]
    implicit, maml = graph.loc["Algorithm 1 (fused implicit)"], graph.loc["MAML"]
    recompute, once = graph.loc["ANIL (authors' style)"], graph.loc["ANIL (features once)"]
    assert implicit.max() <= 1.01 * implicit.min()
    assert once.max() <= 1.05 * once.min()
    for grows in (maml, recompute):
        assert grows.is_monotonic_increasing and grows["K = 20"] > 3 * grows["K = 1"]
    assert implicit["K = 20"] < 0.2 * maml["K = 20"] and implicit["K = 20"] < 0.5 * recompute["K = 20"]
    headline = " ".join(m.value for m in at.markdown)
    assert "At K = 20, Algorithm 1 keeps" in headline and "of the graph memory of MAML" in headline
    specs = chart_specs(at)
    assert len(specs) == 3
    assert "Graph memory of one hypergradient vs K (5-way 1-shot, Conv-4-8" in specs[0]
    assert "Test accuracy during meta-training (5-way" in specs[1]
    assert "CG on the head Hessian (K = 5, λ = 0.01)" in specs[2]
    assert [b.label for b in at.get("download_button")] == ["Records (CSV)", "Figure (PNG)"]
    assert any("Done:" in c.value or "cached" in c.value for c in at.caption)


def test_query_parameters_set_the_controls_and_a_tiny_run_draws_everything(page):
    at = page(**TINY, ways="3", hidden="4", inner_steps="3", cg_steps="4", l2="0.1").run()
    assert at.slider(key="ways").value == 3
    assert at.slider(key="hidden").value == 4
    assert at.slider(key="inner_steps").value == 3
    assert at.slider(key="cg_steps").value == 4
    assert at.select_slider(key="l2").value == 0.1
    assert at.text_input(key="k_grid").value == "1,5"
    assert at.multiselect(key="methods").value == ["implicit", "maml"]
    graph = memory_table(at)
    assert list(graph.columns) == ["K = 1", "K = 5"] and list(graph.index) == ["Algorithm 1 (fused implicit)", "MAML"]
    specs = chart_specs(at)
    assert len(specs) == 3
    assert "3-way 1-shot, Conv-4-4" in specs[0] and "glyphs" in specs[0]
    assert "(3-way, glyphs)" in specs[1]
    assert "CG on the head Hessian (K = 3, λ = 0.1)" in specs[2] and "N = 4, the CG steps the methods use" in specs[2]
    training = at.dataframe[1].value
    assert set(training["method"]) == {"Algorithm 1 (fused implicit)", "MAML"}
    assert training["test accuracy"].between(0, 1).all() and (training["meta-iterations"] == 2).all()
    assert [b.label for b in at.get("download_button")] == ["Records (CSV)", "Figure (PNG)"]
    command = at.code[0].value
    assert command.startswith("metalab run memory_reduced") and "--set hidden=4" in command
    assert "--set methods=implicit,maml" in command and "--set cg_lams=0.1" in command


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


def test_lambda_zero_shows_the_cg_divergence_as_a_warning(page):
    at = page(**TINY, l2="0").run()
    assert not at.exception and not at.error
    assert at.select_slider(key="l2").value == 0.0
    assert len(at.warning) == 1
    warning = at.warning[0].value
    assert "Conjugate gradient failed" in warning and "`diverged`" in warning and "singular" in warning
    assert "λ ≥ 0.001" in warning  # the way out is named
    specs = chart_specs(at)
    assert len(specs) == 3 and "CG on the head Hessian (K = 5, λ = 0)" in specs[2]
    assert "CG failed" in specs[2]  # the failure marker's tooltip
