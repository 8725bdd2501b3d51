"""The dashboard's machinery: URL state, validation messages, live runs, the result cache, downloads.

* **URL state**: controls are created with ``**controls.url(name)``, which binds the widget to the query
  parameter ``name`` (Streamlit's ``bind="query-params"``): the URL always holds the non-default
  settings, and opening a copied link restores them (invalid values in a link are dropped).
* **Validation**: :func:`build_config` turns the control values into the experiment's config and
  explains a ``ConfigError``/``ValueError`` with ``st.error`` (field, value, what is allowed).
* **Live runs**: :func:`live_run` consumes ``run(config)``, redrawing into a placeholder at most every
  ``REDRAW_SECONDS`` and once at the end, with a progress bar from ``record.progress`` and a Stop
  button.  A click on any control interrupts the running script (Streamlit's fast reruns); the Stop
  button's callback keeps the records drawn so far, which the page then shows as a stopped run.
* **Cache**: finished runs are kept per ``experiment + config.to_json()`` in a process-wide LRU store,
  so returning to a configuration (or opening its link) shows it at once without recomputing.
* **Downloads**: :func:`downloads` offers the records as CSV and the chart the page shows as PNG.

No algorithm code lives here or in the pages: they build a config and read the record stream.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pandas as pd
import streamlit as st

from metalab.core import Config, ConfigError, Record
from metalab.dashboard.controls import report_ignored_link_values

#: seconds between redraws of a streaming chart (plus one final redraw)
REDRAW_SECONDS = 0.3
#: finished runs kept in memory (all sessions together)
CACHE_ENTRIES = 48


# --------------------------------------------------------------------------------------------
# configs


def build_config(config_cls: type[Config], values: Mapping[str, Any], *, preset: str = "quick") -> Config | None:
    """``config_cls.preset(preset, **values)``, or ``None`` after explaining why it is invalid (the
    message names the control by the field's label); first reports the link values the controls ignored."""
    report_ignored_link_values()
    try:
        return config_cls.preset(preset, **values)
    except ConfigError as error:
        label = config_cls.label(error.field) if error.field in config_cls.field_names() else error.field
        shown = ", ".join(map(str, error.value)) if isinstance(error.value, tuple) else error.value
        st.error(
            f"**These settings do not fit together.** {label} (`{error.field}`) = `{shown}` is not allowed: "
            f"it must be {error.allowed}.\n\nChange the control and the run starts again.",
            icon=":material/block:",
        )
    except ValueError as error:
        st.error(f"**Invalid settings.** {error}", icon=":material/block:")
    return None


def cli_command(experiment: str, config: Config, preset: str = "quick") -> str:
    """The ``metalab run`` command line that reproduces ``config`` from the files side."""
    base = type(config).preset(preset).to_dict()
    parts = [f"metalab run {experiment}"] + ([f"--preset {preset}"] if preset != "quick" else [])
    for name, value in config.to_dict().items():
        if value != base[name]:
            shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
            parts.append(f"--set {name}={shown}")
    return " ".join(parts + [f"--out runs/{experiment}"])


# --------------------------------------------------------------------------------------------
# results: a process-wide cache of finished runs, a per-session record of stopped ones


@dataclasses.dataclass
class RunResult:
    """The records of one run as a DataFrame, whether it finished, and what it cost."""

    frame: pd.DataFrame
    complete: bool
    progress: float
    seconds: float
    error: str | None = None
    #: (method, "Category: message") of each distinct warning raised while the run computed that
    #: method's records (a divergence, a conjugate-gradient fallback, a non-finite loss)
    warnings: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    @property
    def flagged(self) -> set[str]:
        """The methods whose computation raised a warning: no headline ranks them."""
        return {method for method, _ in self.warnings}


class ResultStore:
    """A small thread-safe LRU mapping ``key -> RunResult`` of finished runs."""

    def __init__(self, entries: int = CACHE_ENTRIES):
        self._entries = entries
        self._items: OrderedDict[str, RunResult] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> RunResult | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            return None

    def put(self, key: str, result: RunResult) -> None:
        with self._lock:
            self._items[key] = result
            self._items.move_to_end(key)
            while len(self._items) > self._entries:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


@st.cache_resource(show_spinner=False)
def result_store() -> ResultStore:
    """The dashboard's store of finished runs, shared by every session of this server."""
    return ResultStore()


class RunSlots:
    """At most ``size`` runs compute at once on this server; the others wait in line and say so."""

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"METALAB_CONCURRENT_RUNS={size!r} is not allowed: at least 1")
        self.size = size
        self._free = threading.Semaphore(size)
        self._lock = threading.Lock()
        self.busy = 0

    @contextlib.contextmanager
    def slot(self, waiting: Callable[[int], None], poll: float = 0.5):
        """Hold a slot while the block runs; while none is free, call ``waiting(busy)`` every ``poll``
        seconds (a Streamlit call there lets a rerun or a closed session interrupt the wait)."""
        while not self._free.acquire(timeout=poll):
            waiting(self.busy)
        with self._lock:
            self.busy += 1
        try:
            yield
        finally:
            with self._lock:
                self.busy -= 1
            self._free.release()


@st.cache_resource(show_spinner=False)
def run_slots() -> RunSlots:
    """The server's run slots: ``METALAB_CONCURRENT_RUNS`` (default 2, one per core of a small machine)."""
    return RunSlots(int(os.environ.get("METALAB_CONCURRENT_RUNS", "2")))


def run_key(experiment: str, config: Config) -> str:
    return f"{experiment}:{config.to_json()}"


def _session_dict(name: str) -> dict:
    return st.session_state.setdefault(name, {})


def _request_stop(key: str) -> None:
    """Stop-button callback (runs before the rerun): keep the interrupted run's records."""
    running = _session_dict("_lab_running").pop(key, None)
    if running is not None:
        rows, state = running
        _session_dict("_lab_stopped")[key] = RunResult(
            pd.DataFrame(rows), False, state["progress"], state["seconds"], warnings=state["warnings"]
        )


def _forget_stop(key: str) -> None:
    _session_dict("_lab_stopped").pop(key, None)


# --------------------------------------------------------------------------------------------
# the live loop


def live_run(
    key: str,
    records: Callable[[], Iterable[Record]],
    draw: Callable[[Any, pd.DataFrame, bool], None],
    *,
    label: Callable[[str], str] = str,
    every: float = REDRAW_SECONDS,
    status: Any = None,
    target: Any = None,
) -> RunResult:
    """Show the run ``key``: from the cache, as stopped earlier, or live from ``records()``.

    ``draw(target, frame, running)`` draws ``frame`` into ``target`` (an ``st.empty`` placeholder);
    it is called every ``every`` seconds while records stream in and once at the end.  The progress bar
    follows ``record.progress`` (never backwards) and names the method running (``label(method)``) and
    the time left.  ``status`` (a container) and ``target`` (an ``st.empty``) are where the progress and
    the chart go, by default new ones here.
    """
    status = status if status is not None else st.container()
    target = target if target is not None else st.empty()

    cached = result_store().get(key)
    if cached is not None:
        draw(target, cached.frame, False)
        status.caption(
            f"{len(cached.frame)} records, computed in {cached.seconds:.1f} s (cached: this "
            "configuration was run before)."
        )
        return cached

    stopped = _session_dict("_lab_stopped").get(key)
    if stopped is not None:
        _show_stopped(status, target, stopped, draw, key)
        return stopped

    running = _session_dict("_lab_running")
    running.clear()  # runs interrupted by another control are dropped; only a Stop keeps records
    rows: list[dict[str, Any]] = []
    state = {"progress": 0.0, "seconds": 0.0, "warnings": []}
    running[key] = (rows, state)
    with status:
        left, right = st.columns([3, 1], vertical_alignment="center")  # room for the button at 800 px
        bar_slot = left.empty()
        bar = bar_slot.progress(0.0, text="Starting…")
        stop_slot = right.empty()
        stop_slot.button("Stop", on_click=_request_stop, args=(key,), icon=":material/stop_circle:", key="_lab_stop")

    def waiting(busy: int) -> None:
        bar.progress(0.0, text=f"Waiting for a free run slot: {busy} runs in progress on this server…")

    with run_slots().slot(waiting):
        error = _stream(
            records, rows, state, lambda running: draw(target, pd.DataFrame(rows), running), bar, label, every
        )
    running.pop(key, None)
    stop_slot.empty()
    frame = pd.DataFrame(rows)
    if not frame.empty:
        draw(target, frame, False)
    result = RunResult(
        frame, error is None, 1.0 if error is None else state["progress"], state["seconds"], error, state["warnings"]
    )
    if error is not None:
        bar_slot.empty()
        status.error(f"**The run failed** after {len(rows)} records: {error}", icon=":material/error:")
        return result
    bar_slot.caption(f"Done: {len(rows)} records in {state['seconds']:.1f} s.")
    result_store().put(key, result)
    return result


def _show_stopped(status: Any, target: Any, stopped: RunResult, draw: Callable, key: str) -> None:
    if not stopped.frame.empty:
        draw(target, stopped.frame, False)
    with status:
        left, right = st.columns([3, 1], vertical_alignment="center")  # room for the button at 800 px
        left.warning(
            f"Stopped at {stopped.progress:.0%}: showing the {len(stopped.frame)} records drawn before the stop.",
            icon=":material/stop_circle:",
        )
        right.button(
            "Run again",
            on_click=_forget_stop,
            args=(key,),
            icon=":material/replay:",
            type="primary",
            key="_lab_run_again",
        )


def time_left(seconds: float, progress: float) -> str:
    """The time left at constant speed, ``seconds (1 - p) / p``, in words (empty before 2 % or 1 s)."""
    if progress < 0.02 or seconds < 1.0:
        return ""
    left = seconds * (1.0 - progress) / progress
    return f"about {left:.0f} s left" if left < 90 else f"about {left / 60:.0f} min left"


def _stream(
    records: Callable[[], Iterable[Record]],
    rows: list[dict[str, Any]],
    state: dict[str, Any],
    redraw: Callable[[bool], None],
    bar: Any,
    label: Callable[[str], str],
    every: float,
) -> str | None:
    """Consume the records into ``rows``/``state``, redrawing every ``every`` seconds; warnings raised
    while a record was computed are kept once each, with that record's method.  Returns the error text
    of a failed run, or None."""
    start = time.perf_counter()
    last_draw = -float("inf")
    seen: set[tuple[str, str]] = set()
    method = ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            for record in records():
                method = record.method
                _keep_warnings(caught, method, seen, state["warnings"])
                rows.append(record.as_row())
                if record.progress is not None:
                    state["progress"] = max(state["progress"], min(float(record.progress), 1.0))
                state["seconds"] = time.perf_counter() - start
                if time.perf_counter() - last_draw >= every:
                    redraw(True)
                    eta = time_left(state["seconds"], state["progress"])
                    bar.progress(
                        state["progress"],
                        text=f"Running **{label(record.method)}** ({record.part}): {state['progress']:.0%}"
                        + (f" · {eta}" if eta else ""),
                    )
                    last_draw = time.perf_counter()
        except Exception as exc:  # noqa: BLE001 - shown in the page, never as a traceback
            return f"{type(exc).__name__}: {exc}"
        finally:
            state["seconds"] = time.perf_counter() - start
            _keep_warnings(caught, method, seen, state["warnings"])  # raised after the last record
    return None


def _keep_warnings(caught: list, method: str, seen: set, kept: list[tuple[str, str]]) -> None:
    """Move the caught warnings into ``kept`` as (method, "Category: message"), each once."""
    for warning in caught:
        item = (method, f"{warning.category.__name__}: {warning.message}")
        if item not in seen:
            seen.add(item)
            kept.append(item)
    caught.clear()


# --------------------------------------------------------------------------------------------
# downloads


def chart_png(chart: Any, scale: float = 2.0) -> bytes:
    """An altair chart as PNG bytes (rendered by vl-convert, offline)."""
    import vl_convert

    return vl_convert.vegalite_to_png(chart.to_json(), scale=scale)


def downloads(result: RunResult, stem: str, chart: Callable[[], Any] | None = None) -> None:
    """Download buttons for the records (CSV) and, given ``chart()``, the chart the page shows (PNG,
    rendered only when the button is pressed)."""
    if result.frame.empty:
        return
    left, right, _ = st.columns([1, 1, 3])
    left.download_button(
        "Records (CSV)",
        result.frame.to_csv(index=False).encode(),
        file_name=f"{stem}.csv",
        mime="text/csv",
        on_click="ignore",
        icon=":material/download:",
        key=f"_lab_csv_{stem}",
    )
    if chart is not None:
        right.download_button(
            "Figure (PNG)",
            lambda: chart_png(chart()),
            file_name=f"{stem}.png",
            mime="image/png",
            on_click="ignore",
            icon=":material/image:",
            key=f"_lab_png_{stem}",
        )
