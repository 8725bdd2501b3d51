"""Costs known before a run: the budget's arithmetic, and each experiment's memory estimate held within a
factor of 2 of the peak measured in a fresh process."""

from __future__ import annotations

import pytest

from metalab.core.cost import GB, MB, Budget, Cost, sequence
from metalab.core.memory import peak_rss_bytes, peak_rss_in_subprocess


def test_costs_in_sequence_keep_the_larger_peak_and_add_the_times():
    total = sequence([Cost(1 * GB, 10, "a"), Cost(3 * GB, 5, "b"), Cost(2 * GB, 1, "c")])
    assert total == Cost(3 * GB, 16, "b")
    assert sequence([]) == Cost(0, 0)


def test_budget_refusal_says_what_and_which_control():
    budget = Budget(2 * GB, 60)
    assert budget.refusal(Cost(GB, 30, "d")) is None
    text = budget.refusal(Cost(9.7 * GB, 30, "tasks T"))
    assert "9.7 GB of memory (allowed: 2.0 GB)" in text and "Lower tasks T first." in text
    assert "20 min of computing (allowed: 60 s)" in budget.refusal(Cost(MB, 1200, "x"))


def test_budget_comes_from_the_server_environment(monkeypatch):
    monkeypatch.setenv("METALAB_BUDGET_MB", "512")
    monkeypatch.setenv("METALAB_BUDGET_SECONDS", "5")
    assert Budget.from_environment() == Budget(512 * MB, 5.0)
    monkeypatch.setenv("METALAB_BUDGET_MB", "lots")
    with pytest.raises(ValueError, match="must be numbers"):
        Budget.from_environment()


def measured_extra_bytes(experiment: str, overrides: dict) -> float:
    """In a fresh process: the peak resident memory a run adds above the imported, configured process."""
    from metalab.core import collect
    from metalab.experiments import get_experiment

    chosen = get_experiment(experiment)
    config = chosen.config.preset("quick", **overrides)
    before = peak_rss_bytes()
    collect(chosen.run(config))
    return peak_rss_bytes() - before


#: configurations large enough that the data, not the interpreter's noise, sets the peak
LARGE = {
    "meta_sp": [
        {"parts": ("convergence",), "n_tasks": 1000, "n_samples": 50, "d": 200, "max_iter": 5, "methods": ("meta_sp",)},
        {
            "parts": ("convergence",),
            "n_tasks": 1000,
            "n_samples": 25,
            "d": 150,
            "max_iter": 2,
            "methods": ("mom", "single_task"),
        },
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("experiment", "overrides"), [(name, o) for name, configs in LARGE.items() for o in configs], ids=str
)
def test_memory_estimate_is_within_a_factor_of_two_of_the_measured_peak(experiment, overrides):
    from metalab.experiments import get_experiment

    chosen = get_experiment(experiment)
    estimate = chosen.estimate(chosen.config.preset("quick", **overrides)).bytes
    _, measured = peak_rss_in_subprocess(measured_extra_bytes, experiment, overrides)
    assert measured > 50 * MB  # the run, not noise, sets the peak
    print(f"{experiment}: estimate {estimate / MB:.0f} MB, measured {measured / MB:.0f} MB")
    assert measured / 2 <= estimate <= 2 * measured, f"estimate {estimate / MB:.0f} MB, measured {measured / MB:.0f} MB"


def test_generators_and_padding_refuse_what_the_machine_cannot_hold(monkeypatch):
    import numpy as np

    from metalab.core import cost
    from metalab.data import hps_tasks
    from metalab.subspace import fit

    with pytest.raises(MemoryError, match=r"hps_tasks\(n_tasks=8000, n_samples=100000, d=2000\) would take"):
        hps_tasks(d=2000, rank=3, n_tasks=8000, n_samples=100_000)
    monkeypatch.setattr(cost, "available_bytes", lambda: 10 * MB)
    ragged = [np.ones((3, 50)), np.ones((40_000, 50))]  # one long task pads every task to 40000 rows
    with pytest.raises(MemoryError, match=r"padding 2 tasks to their longest \(40000 samples, d=50\)"):
        fit("mom", ragged, [np.ones(3), np.ones(40_000)], 1)
