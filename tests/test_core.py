"""Configs, the record stream, devices and memory measurement."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import types

import numpy as np
import pandas as pd
import pytest
import torch

from metalab.core import (
    Config,
    ConfigError,
    Record,
    SavedTensorMeter,
    collect,
    param,
    parse_assignments,
    peak_rss_in_subprocess,
    resolve_device,
)
from metalab.core.records import with_progress


@dataclasses.dataclass(frozen=True)
class ToyConfig(Config):
    width: int = param(4, ge=1, le=64, help="hidden width")
    rate: float = param(0.1, gt=0.0, le=1.0, help="learning rate")
    mode: str = param("fast", choices=("fast", "exact"), help="solver")
    grid: tuple[int, ...] = param((1, 2), ge=1, help="sizes")
    step: float | None = param(None, gt=0.0, help="step (None: automatic)")
    verbose: bool = param(False, help="talk")

    presets = {"quick": {}, "paper": {"width": 64, "grid": (8, 16)}}

    def check(self) -> None:
        if max(self.grid) > self.width:
            raise ConfigError("grid", self.grid, f"sizes at most width={self.width}")


def test_config_error_names_field_value_and_range():
    with pytest.raises(ConfigError, match=r"width=0 is not allowed: a finite number >= 1 and <= 64"):
        ToyConfig(width=0)
    with pytest.raises(ConfigError, match=r"mode='slow' is not allowed: one of 'fast', 'exact'"):
        ToyConfig(mode="slow")
    with pytest.raises(ConfigError, match=r"rate=nan"):
        ToyConfig(rate=float("nan"))
    with pytest.raises(ConfigError, match=r"grid=.*sizes at most width=4"):
        ToyConfig(grid=(1, 5))


def test_config_converts_strings_as_the_cli_gives_them():
    config = ToyConfig(**parse_assignments(["width=8", "rate=0.5", "grid=2,3,4", "verbose=yes", "mode=exact"]))
    assert (config.width, config.rate, config.grid, config.verbose, config.mode) == (8, 0.5, (2, 3, 4), True, "exact")
    with pytest.raises(ConfigError, match=r"width='eight' is not allowed: a value of type int"):
        ToyConfig(width="eight")
    with pytest.raises(ConfigError, match=r"width=2.5 is not allowed: a value of type int"):
        ToyConfig(width=2.5)
    with pytest.raises(ConfigError, match=r"--set='width' is not allowed: key=value"):
        parse_assignments(["width"])


def test_presets_and_replace():
    assert ToyConfig.preset("paper").width == 64
    assert ToyConfig.preset("quick", width=9).width == 9
    with pytest.raises(ConfigError, match=r"preset='huge' is not allowed: one of 'quick', 'paper'"):
        ToyConfig.preset("huge")
    assert ToyConfig().replace(rate=0.2).rate == 0.2
    with pytest.raises(ConfigError, match=r"colour=.*a field of ToyConfig"):
        ToyConfig().replace(colour="red")
    assert "hidden width" in ToyConfig.describe()["width"]
    assert ToyConfig(step=None).step is None and ToyConfig(step="0.5").step == 0.5


def test_collect_and_progress_stamps():
    records = [Record("a", "m1", 0, {"x": 1.0}), Record("a", "m2", 1, {"x": 2.0, "y": 3})]
    frame = collect(records)
    assert list(frame.columns) == ["part", "method", "step", "x", "y"]
    assert frame["x"].tolist() == [1.0, 2.0] and pd.isna(frame["y"].iloc[0])
    assert collect([]).columns.tolist() == ["part", "method", "step"]
    stamped = list(with_progress(iter(records), start=0.25, end=0.5))
    assert [r.progress for r in stamped] == [0.25, 0.5]
    assert list(with_progress(iter([]), 0.0, 1.0)) == []


def test_resolve_device():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"device='tpu' is not allowed"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"CUDA is not available"):
            resolve_device("cuda")


def test_saved_tensor_meter_counts_each_storage_once():
    x = torch.randn(1000, requires_grad=True)  # 4000 bytes
    with SavedTensorMeter() as meter:
        (x * x).sum()  # mul saves x twice: one storage
    assert meter.peak_bytes == 4000
    with SavedTensorMeter() as meter:
        x.exp().sin().sum()  # exp saves its output, sin saves the same tensor as input
    assert meter.peak_bytes == 4000


def test_saved_tensor_meter_grows_linearly_with_unrolled_steps():
    x = torch.randn(256, requires_grad=True)
    measured = []
    for steps in (1, 5, 10):
        with SavedTensorMeter() as meter:
            h = x
            for _ in range(steps):
                h = torch.tanh(h)  # tanh saves its output: 1 KiB per step
        measured.append(meter.peak_bytes)
    assert measured == [1024, 5 * 1024, 10 * 1024]


def allocate_and_touch(megabytes: int) -> float:
    array = np.ones(megabytes * 2**20 // 8)
    return float(array.sum())


def test_peak_rss_in_subprocess_sees_the_allocation_and_not_the_parent():
    parent_ballast = np.ones(800 * 2**20 // 8)  # the child's number must not inherit this peak
    small, _ = peak_rss_in_subprocess(allocate_and_touch, 1)
    large, total = peak_rss_in_subprocess(allocate_and_touch, 300)
    assert total == 300 * 2**20 // 8 and parent_ballast[0] == 1.0
    assert small < 700 * 2**20
    assert large - small > 250 * 2**20


def failing_function() -> None:
    raise ArithmeticError("boom")


def test_peak_rss_reports_the_child_failure():
    with pytest.raises(RuntimeError, match=r"ArithmeticError: boom"):
        peak_rss_in_subprocess(failing_function)


def dying_function() -> None:
    os._exit(3)


def test_peak_rss_reports_a_child_that_dies_at_once_instead_of_waiting_for_the_timeout():
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"died with exit code 3 before reporting"):
        peak_rss_in_subprocess(dying_function, timeout=120)
    assert time.monotonic() - started < 60


def test_peak_rss_never_reruns_the_callers_main_script(tmp_path, monkeypatch):
    marker = tmp_path / "main-ran"
    script = tmp_path / "page.py"  # like a Streamlit page under AppTest: a main module with side effects
    script.write_text(f"open({str(marker)!r}, 'w').close()\n")
    fake_main = types.ModuleType("__main__")
    fake_main.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", fake_main)
    _, total = peak_rss_in_subprocess(allocate_and_touch, 1)
    assert total == 2**20 // 8 and not marker.exists()


def test_generator_streams_are_independent_and_reproducible():
    from metalab.core import generator

    same = [torch.randn(5, generator=generator(3, "data")) for _ in range(2)]
    assert torch.equal(same[0], same[1])
    other = torch.randn(5, generator=generator(3, "init"))
    assert not torch.allclose(same[0], other)


def test_saved_tensor_meter_peak_forgets_graphs_freed_inside_the_block():
    x = torch.randn(256, requires_grad=True)
    with SavedTensorMeter() as meter:
        for _ in range(10):
            torch.tanh(x * 2.0).sum().backward()  # each step's graph (1 KiB saved) is freed by backward
        kept = torch.tanh(x)  # this graph stays alive past the block
    assert meter.peak_bytes == 1024
    assert meter.total_bytes >= 2 * 1024  # distinct storages over time (addresses may be reused)
    assert meter.live_bytes == 1024 and kept.requires_grad
    del kept
    assert meter.live_bytes == 0


def test_optional_fields_take_none_words_and_required_fields_refuse_none():
    assert ToyConfig(step="auto").step is None and ToyConfig(step="None").step is None
    with pytest.raises(ConfigError, match=r"width=None is not allowed: a value of type int"):
        ToyConfig(width=None)
