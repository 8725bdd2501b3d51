"""Dashboard controls built from the config's own field declarations.

Each field of an experiment's :class:`~metalab.core.Config` declares its label, help text, bounds or
choices and a :class:`~metalab.core.Control` (widget, the range offered); :func:`control` turns that
one declaration into a Streamlit widget bound to the URL query parameter of the field's name, so the
label a person reads, the range a slider offers and the error message for a bad value all come from
the same place.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from metalab.core import Config

WIDGETS = ("slider", "number", "select", "multiselect", "toggle", "text")


def url(name: str) -> dict[str, Any]:
    """Widget keyword arguments that bind the control to the URL query parameter ``name``."""
    return {"key": name, "bind": "query-params"}


def widget_kind(config: type[Config], name: str) -> str:
    """The widget a field gets: its Control's choice, else one inferred from its type and bounds."""
    meta = config.field(name).metadata
    spec = meta["control"]
    if spec.widget != "auto":
        if spec.widget not in WIDGETS:
            raise ValueError(f"control widget={spec.widget!r} of {name} is not one of {', '.join(WIDGETS)}")
        return spec.widget
    kind, is_tuple, _ = config.field_type(name)
    if is_tuple:
        return "multiselect" if meta["choices"] else "text"
    if kind is bool:
        return "toggle"
    if meta["choices"]:
        return "select"
    bounded = spec.high is not None or meta["le"] is not None
    return "slider" if kind in (int, float) and bounded else "number"


def _range(config: type[Config], name: str, kind: type) -> tuple[Any, Any]:
    meta, spec = config.field(name).metadata, config.field(name).metadata["control"]
    low = spec.low if spec.low is not None else meta["ge"] if meta["ge"] is not None else meta["gt"]
    high = spec.high if spec.high is not None else meta["le"]
    return (None if low is None else kind(low)), (None if high is None else kind(high))


IGNORED = "_controls_ignored_link_values"


def _link_value_problem(config: type[Config], name: str, widget: str, kind: type, shown: Any = str) -> str | None:
    """Why the URL's value for ``name`` cannot set its widget (Streamlit would drop it silently);
    ``shown`` is the widget's ``format_func`` (a select's link holds the text it shows)."""
    if name not in st.query_params:
        return None
    values = st.query_params.get_all(name)
    meta = config.field(name).metadata
    if widget in ("select", "multiselect"):
        choices = [str(shown(choice)) for choice in meta["choices"]]
        wrong = [v for v in values if v not in choices]
        return f"not one of {', '.join(choices)}" if wrong else None
    if widget == "toggle":
        return None if values[0].lower() in ("true", "false") else "not true or false"
    if widget == "text":
        return None
    low, high = _range(config, name, kind)
    try:
        value = kind(float(values[0]))
    except ValueError:
        return f"not a number of type {kind.__name__}"
    if (low is not None and value < low) or (high is not None and value > high):
        return f"outside this control's range {low}..{high}"
    return None


def report_ignored_link_values() -> None:
    """Say which values of the link were ignored by the controls drawn in this run, and why."""
    ignored = st.session_state.pop(IGNORED, [])
    if ignored:
        lines = "\n".join(f"- `{name}={value}`: {why}; the control kept its default" for name, value, why in ignored)
        st.warning(f"**Some values in the link were ignored.**\n{lines}", icon=":material/link_off:")


def control(config: type[Config], name: str, default: Any, *, where: Any = None, **options: Any) -> Any:
    """A widget for field ``name`` of ``config`` starting at ``default``, in ``where`` (default: the
    sidebar), bound to the URL; returns the widget's value (a tuple for tuple fields).  ``options`` go
    to the Streamlit widget (e.g. ``disabled``, ``persist_state``).  A link value the widget cannot take
    is noted for :func:`report_ignored_link_values` instead of vanishing."""
    where = where if where is not None else st.sidebar
    meta = config.field(name).metadata
    spec = meta["control"]
    kind, is_tuple, _ = config.field_type(name)
    problem = _link_value_problem(config, name, widget_kind(config, name), kind, options.get("format_func", str))
    if problem is not None:
        shown = ",".join(st.query_params.get_all(name))
        st.session_state.setdefault(IGNORED, []).append((name, shown, problem))
    common = {"help": meta["help"] or None, **url(name), **options}
    label = config.label(name)
    widget = widget_kind(config, name)
    if widget == "toggle":
        return where.toggle(label, bool(default), **common)
    if widget == "select":
        choices = list(meta["choices"])
        return where.selectbox(label, choices, index=choices.index(default), **common)
    if widget == "multiselect":
        return tuple(where.multiselect(label, list(meta["choices"]), default=list(default), **common))
    if widget == "text":
        shown = ", ".join(map(str, default)) if is_tuple else str(default)
        return where.text_input(label, shown, **common)
    low, high = _range(config, name, kind)
    value = kind(default)
    if low is not None:
        value = max(value, low)
    if high is not None:
        value = min(value, high)
    step = None if spec.step is None else kind(spec.step)
    if widget == "slider":
        return where.slider(label, low, high, value, step=step, format=spec.format, **common)
    return where.number_input(
        label, min_value=low, max_value=high, value=value, step=step, format=spec.format, **common
    )
