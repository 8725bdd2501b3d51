"""metalab.core.claims: tolerance checks that print the claim, not the machine's digits, and the runtime pin."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from metalab.core.claims import check, check_less, checks, pin_runtime


def test_a_passing_check_prints_the_expected_value_and_tolerance_not_the_measured_digits(capsys):
    check("Meta-SP final sin-theta", 0.043317, 0.043, rel=0.25)
    line = capsys.readouterr().out
    assert line == "✓ Meta-SP final sin-theta ≈ 0.043 (rel 25%)\n"
    assert "0.0433" not in line


def test_the_printed_line_is_the_same_for_any_value_within_the_tolerance(capsys):
    for measured in (0.0421, 0.0433, 0.0449):
        check("floor", measured, 0.043, rel=0.1)
    lines = capsys.readouterr().out.splitlines()
    assert len(set(lines)) == 1


def test_a_failing_check_raises_and_names_both_numbers():
    with pytest.raises(AssertionError) as failure:
        check("few-shot MSE", 0.61, 0.0707, rel=0.2)
    message = str(failure.value)
    assert "few-shot MSE" in message and "0.61" in message and "0.0707" in message and "rel 20%" in message


def test_abs_and_rel_combine_as_the_larger_bound():
    check("near zero", 3e-13, 0.0, abs=1e-12)
    check("either bound", 1.05, 1.0, rel=0.01, abs=0.06)
    with pytest.raises(AssertionError):
        check("both too tight", 1.05, 1.0, rel=0.01, abs=0.01)


def test_the_tolerance_is_inclusive_and_symmetric():
    check("upper edge", 1.25, 1.0, rel=0.25)
    check("lower edge", -0.5, -1.0, abs=0.5)
    with pytest.raises(AssertionError):
        check("just outside", 0.7499, 1.0, rel=0.25)


def test_a_tolerance_must_be_given_and_non_negative():
    with pytest.raises(ValueError, match="rel= or abs="):
        check("no tolerance", 1.0, 1.0)
    with pytest.raises(ValueError, match="must be >= 0"):
        check("negative", 1.0, 1.0, rel=-0.1)


def test_arrays_are_compared_element_wise_and_a_failure_names_each_entry_off(capsys):
    check("table", [[0.144, 0.047], [0.962, 0.661]], [[0.14, 0.047], [0.96, 0.66]], rel=0.05)
    assert capsys.readouterr().out == "✓ table: 4 values as expected (rel 5%)\n"
    with pytest.raises(AssertionError) as failure:
        check("table", [[0.144, 0.047], [0.5, 0.661]], [[0.14, 0.047], [0.96, 0.66]], rel=0.05)
    message = str(failure.value)
    assert "1 of 4 values off" in message and "(1, 0)" in message and "0.5" in message and "0.96" in message


def test_a_failing_table_names_the_entries_by_their_labels():
    table = pd.DataFrame({"m=5": [0.144, 0.686], "m=8": [0.047, 0.35]}, index=["Meta-SP", "ANIL"])
    with pytest.raises(AssertionError, match=r"at \('ANIL', 'm=8'\): measured 0.35, expected 0.2"):
        check("sin-theta", table, [[0.144, 0.047], [0.686, 0.2]], rel=0.1)
    with pytest.raises(AssertionError, match="at Meta-SP: measured 0.144"):
        check("one column", table["m=5"], [0.2, 0.686], rel=0.1)
    by_size = pd.Series([1.47, 1.15], index=pd.MultiIndex.from_tuples([("pca", 10), ("pca", 60)]))
    with pytest.raises(AssertionError, match=r"at \('pca', 10\): measured 1.47"):
        check("numpy labels print as Python's", by_size, [1.58, 1.15], rel=0.05)


def test_nan_matches_only_nan():
    check("a method that never reached the target", [0.024, math.nan], [0.02, math.nan], rel=0.5)
    with pytest.raises(AssertionError):
        check("nan measured where a number was claimed", math.nan, 0.02, rel=0.5)
    with pytest.raises(AssertionError):
        check("number measured where nan was claimed", [0.02], [math.nan], rel=0.5)


def test_shapes_must_agree():
    with pytest.raises(AssertionError, match="shape"):
        check("rows", [1.0, 2.0, 3.0], [1.0, 2.0], rel=0.1)


def test_tensors_and_numpy_scalars_are_accepted(capsys):
    check("tensor", torch.tensor(2.0, dtype=torch.float64), 2.0, rel=1e-9)
    check("numpy", np.float32(0.5), 0.5, abs=1e-6)
    assert capsys.readouterr().out.splitlines() == ["✓ tensor ≈ 2 (rel 1e-09)", "✓ numpy ≈ 0.5 (abs 1e-06)"]


def test_check_less_prints_only_the_claim_and_raises_with_both_numbers(capsys):
    check_less("Meta-SP below ANIL at m = 5", 0.144, 0.686)
    check_less("every method above chance", [0.48, 0.55], 0.2 + np.array([0.3, 0.4]))
    assert capsys.readouterr().out.splitlines() == ["✓ Meta-SP below ANIL at m = 5", "✓ every method above chance"]
    with pytest.raises(AssertionError) as failure:
        check_less("Meta-SP below ANIL at m = 5", 0.7, 0.686)
    assert "0.7" in str(failure.value) and "0.686" in str(failure.value)
    with pytest.raises(AssertionError):
        check_less("strict", 1.0, 1.0)


def test_inactive_checks_check_and_print_nothing(capsys):
    assert checks(active=True) == (check, check_less)
    quiet_check, quiet_less = checks(active=False)
    quiet_check("a quick-preset number on the paper preset", 5.0, 0.1, rel=0.01)
    quiet_less("a quick-preset ordering on the paper preset", 2.0, 1.0)
    assert capsys.readouterr().out == ""


@pytest.fixture
def restore_runtime():
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def test_pin_runtime_sets_threads_deterministic_kernels_and_seeds(restore_runtime, monkeypatch):
    monkeypatch.delenv("METALAB_THREADS", raising=False)
    assert pin_runtime(seed=3) == 1
    assert torch.get_num_threads() == 1
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    first = torch.rand(3), np.random.rand()
    pin_runtime(seed=3)
    second = torch.rand(3), np.random.rand()
    assert torch.equal(first[0], second[0]) and first[1] == second[1]


def test_pin_runtime_takes_the_thread_count_from_the_environment(restore_runtime, monkeypatch):
    monkeypatch.setenv("METALAB_THREADS", "2")
    assert pin_runtime() == 2 and torch.get_num_threads() == 2
    assert pin_runtime(threads=1) == 1 and torch.get_num_threads() == 1
    with pytest.raises(ValueError, match="threads=0"):
        pin_runtime(threads=0)
