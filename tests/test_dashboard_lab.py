"""The dashboard's machinery without a browser: run slots and the time-left estimate."""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("streamlit")

from metalab.dashboard.lab import RunSlots, time_left  # noqa: E402


def test_runs_beyond_the_slots_wait_in_line_and_say_so():
    slots = RunSlots(2)
    inside, most, waits = [], [0], []
    lock = threading.Lock()

    def run() -> None:
        with slots.slot(waits.append, poll=0.01):
            with lock:
                inside.append(1)
                most[0] = max(most[0], len(inside))
            time.sleep(0.05)
            with lock:
                inside.pop()

    threads = [threading.Thread(target=run) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert most[0] == 2  # never more than two at once, and two did run together
    assert waits and set(waits) <= {1, 2}  # the waiting runs were told how many were busy
    assert slots.busy == 0


def test_a_failing_run_gives_its_slot_back():
    slots = RunSlots(1)
    with pytest.raises(RuntimeError), slots.slot(lambda busy: None):
        raise RuntimeError("boom")
    with slots.slot(lambda busy: pytest.fail("the slot was not given back"), poll=0.01):
        pass


def test_slot_count_is_checked():
    with pytest.raises(ValueError, match="at least 1"):
        RunSlots(0)


def test_time_left_at_constant_speed():
    assert time_left(10.0, 0.5) == "about 10 s left"
    assert time_left(60.0, 0.25) == "about 3 min left"
    assert time_left(0.5, 0.5) == "" and time_left(10.0, 0.01) == ""
