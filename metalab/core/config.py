"""Validated experiment configurations.

A config is a frozen dataclass whose fields are declared with :func:`param`, which records the
allowed range or choices.  Construction validates every field and then the cross-field rules in
``check()``; a violation raises :class:`ConfigError` naming the field, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Self


class ConfigError(ValueError):
    """An invalid configuration value: the message names the field, the value and what is allowed."""

    def __init__(self, field: str, value: Any, allowed: str):
        self.field, self.value, self.allowed = field, value, allowed
        super().__init__(f"{field}={value!r} is not allowed: {allowed}")


@dataclasses.dataclass(frozen=True)
class Control:
    """How an interface (the dashboard) offers a field: the widget and the range it shows, which may be
    narrower than what the field allows (a slider to 200 for a field valid up to 2000).

    ``widget`` is ``"auto"`` (from the field's type: a toggle for flags, a select for choices, a
    multiselect for tuples with choices, a text box for other tuples, a slider for bounded numbers, a
    number box otherwise) or one of ``slider``, ``number``, ``select``, ``multiselect``, ``toggle``,
    ``text``.  ``low``/``high`` default to the field's bounds.
    """

    widget: str = "auto"
    low: float | None = None
    high: float | None = None
    step: float | None = None
    format: str | None = None


def param(
    default: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    choices: Iterable[Any] | None = None,
    help: str = "",
    label: str = "",
    control: Control | None = None,
) -> Any:
    """Declare a config field with its default, its bounds (``ge``/``gt``/``le``) or ``choices``, its
    ``help`` text, the ``label`` people read (default: the field name) and how a ``control`` offers it.

    For tuple fields the bounds and choices apply to every element.

    Parameters
    ----------
    default : Any
        The field's default (a list or tuple becomes a tuple default).
    ge, gt, le : float, optional
        Numeric bounds: value >= ge, value > gt, value <= le.
    choices : iterable, optional
        The allowed values (then the bounds are not used).
    help : str
        One line saying what the field does (CLI help, dashboard tooltips).
    label : str
        The words people read for the field; empty for the field name.
    control : Control, optional
        How the dashboard offers the field; None for ``Control()`` (chosen from the type).

    Returns
    -------
    dataclasses.Field
        A field whose ``metadata`` holds the bounds, choices, help, label and control.

    Examples
    --------
    >>> import dataclasses
    >>> @dataclasses.dataclass(frozen=True)
    ... class Grid(Config):
    ...     sizes: tuple[int, ...] = param((10, 20), ge=1, help="sample sizes to sweep")
    >>> Grid().sizes, Grid(sizes="5, 50").sizes  # a tuple field also reads a comma-separated string
    ((10, 20), (5, 50))
    >>> Grid(sizes=(5, 0))
    Traceback (most recent call last):
        ...
    metalab.core.config.ConfigError: sizes=0 is not allowed: a finite number >= 1
    """
    meta = {
        "ge": ge,
        "gt": gt,
        "le": le,
        "choices": tuple(choices) if choices else None,
        "help": help,
        "label": label,
        "control": control or Control(),
    }
    if isinstance(default, (list, tuple)):
        return dataclasses.field(default_factory=lambda: tuple(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _allowed_text(meta: Mapping[str, Any]) -> str:
    if meta["choices"] is not None:
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    parts = []
    if meta["ge"] is not None:
        parts.append(f">= {meta['ge']}")
    if meta["gt"] is not None:
        parts.append(f"> {meta['gt']}")
    if meta["le"] is not None:
        parts.append(f"<= {meta['le']}")
    return "a finite number " + " and ".join(parts) if parts else "a finite number"


def _element_ok(value: Any, meta: Mapping[str, Any]) -> bool:
    if meta["choices"] is not None:
        return value in meta["choices"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return True  # strings and flags without choices are free-form
    if not math.isfinite(value):
        return False
    return not (
        (meta["ge"] is not None and value < meta["ge"])
        or (meta["gt"] is not None and value <= meta["gt"])
        or (meta["le"] is not None and value > meta["le"])
    )


def _base_type(annotation: Any) -> tuple[type, bool, bool]:
    """(element type, is_tuple, accepts None) for annotations such as ``int``, ``float | None``,
    ``tuple[str, ...]``."""
    origin = typing.get_origin(annotation)
    if origin is tuple:
        return typing.get_args(annotation)[0], True, False
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        return next(a for a in args if a is not type(None)), False, type(None) in args
    return annotation, False, False


#: the most values a tuple field (a grid, a list of methods) may hold: each value is a run's worth of work
MAX_VALUES = 64

#: strings that mean None for a field that accepts None (as the CLI's --set passes them)
NONE_WORDS = ("none", "auto", "")


def _coerce(name: str, value: Any, kind: type, optional: bool = False) -> Any:
    """Convert ``value`` to ``kind`` (from a string when given one), or raise ConfigError."""
    if optional and (value is None or (isinstance(value, str) and value.strip().lower() in NONE_WORDS)):
        return None
    if value is None:
        raise ConfigError(name, value, f"a value of type {kind.__name__}")
    try:
        if kind is bool:
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered in ("1", "true", "yes", "on"):
                    return True
                if lowered in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            return bool(value)
        if kind is int:  # "20" and "2e3" are integers; "20.9", "1e400" and 20.9 are not
            number = float(value) if isinstance(value, str) else value
            if isinstance(number, float) and not number.is_integer():
                raise ValueError
            return int(number)
        if kind is float:
            return float(value)
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(name, value, f"a value of type {kind.__name__}") from None


@dataclasses.dataclass(frozen=True)
class Config:
    """Base class of experiment configs: validated on construction, with named presets.

    A subclass is a frozen dataclass whose fields are declared with :func:`param` and whose ``presets``
    map a preset name to the fields it sets; ``check()`` adds cross-field rules.

    Raises
    ------
    ConfigError
        On construction, when a field's value cannot be converted to its type or is not allowed.

    Examples
    --------
    >>> import dataclasses
    >>> @dataclasses.dataclass(frozen=True)
    ... class Demo(Config):
    ...     rank: int = param(3, ge=1, le=20, label="rank s", help="subspace dimension")
    ...     method: str = param("meta_sp", choices=("meta_sp", "mom"), help="estimator")
    ...     presets = {"quick": {"rank": 2}, "paper": {"rank": 10}}
    >>> Demo.preset("quick").rank, Demo.preset("paper", method="mom").method
    (2, 'mom')
    >>> Demo(rank="5").replace(method="mom").to_dict()  # strings are converted to the field's type
    {'rank': 5, 'method': 'mom'}
    >>> Demo.label("rank"), Demo.label("method")  # a field without a label reads as its name
    ('rank s', 'method')
    >>> Demo.describe()["rank"]
    'subspace dimension (a finite number >= 1 and <= 20)'
    >>> Demo(rank=30)
    Traceback (most recent call last):
        ...
    metalab.core.config.ConfigError: rank=30 is not allowed: a finite number >= 1 and <= 20
    >>> Demo.preset("huge")
    Traceback (most recent call last):
        ...
    metalab.core.config.ConfigError: preset='huge' is not allowed: one of 'quick', 'paper'
    """

    presets: ClassVar[dict[str, dict[str, Any]]] = {}

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            kind, is_tuple, optional = _base_type(hints[f.name])
            value = getattr(self, f.name)
            if is_tuple:
                if isinstance(value, str):
                    value = [v for v in value.replace(";", ",").split(",") if v.strip()]
                if len(value) > MAX_VALUES:
                    raise ConfigError(f.name, f"{len(value)} values", f"at most {MAX_VALUES} values")
                value = tuple(_coerce(f.name, v.strip() if isinstance(v, str) else v, kind) for v in value)
            else:
                value = _coerce(f.name, value, kind, optional)
            object.__setattr__(self, f.name, value)
            for element in value if is_tuple else (value,):
                if element is not None and not _element_ok(element, f.metadata):
                    raise ConfigError(f.name, element, _allowed_text(f.metadata))
        self.check()

    def check(self) -> None:
        """Cross-field rules; subclasses raise ConfigError here."""

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Self:
        """The named preset (e.g. ``quick`` or ``paper``) with ``overrides`` applied.

        Parameters
        ----------
        name : str
            A key of ``presets``.
        **overrides
            Field values that replace the preset's (strings are converted).

        Returns
        -------
        Config
            A validated instance of this class (see the class docstring for an example).

        Raises
        ------
        ConfigError
            When ``name`` is not a preset, an override names no field, or a value is not allowed.
        """
        if name not in cls.presets:
            raise ConfigError("preset", name, "one of " + ", ".join(map(repr, cls.presets)))
        cls._check_names(overrides)
        return cls(**{**cls.presets[name], **overrides})

    def replace(self, **changes: Any) -> Self:
        """A validated copy with ``changes`` applied.

        Raises
        ------
        ConfigError
            When a change names no field or its value is not allowed.
        """
        self._check_names(changes)
        return dataclasses.replace(self, **changes)

    @classmethod
    def _check_names(cls, values: Mapping[str, Any]) -> None:
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            name = unknown[0]
            raise ConfigError(name, values[name], f"a field of {cls.__name__}: " + ", ".join(cls.field_names()))

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def field(cls, name: str) -> dataclasses.Field:
        """The dataclass field ``name`` (its ``metadata`` holds bounds, help, label and control)."""
        for f in dataclasses.fields(cls):
            if f.name == name:
                return f
        raise ConfigError(name, None, f"a field of {cls.__name__}: " + ", ".join(cls.field_names()))

    @classmethod
    def label(cls, name: str) -> str:
        """The words people read for field ``name`` (its declared label, else the name itself).

        Parameters
        ----------
        name : str
            A field of this config.

        Returns
        -------
        str
            The label, e.g. ``"rank s"`` for a field declared with ``param(3, label="rank s")``.

        Raises
        ------
        ConfigError
            When ``name`` is not a field.
        """
        return cls.field(name).metadata.get("label") or name

    @classmethod
    def field_type(cls, name: str) -> tuple[type, bool, bool]:
        """(element type, is a tuple, accepts None) of field ``name``."""
        cls.field(name)
        return _base_type(typing.get_type_hints(cls)[name])

    @classmethod
    def describe(cls) -> dict[str, str]:
        """Each field's help text with its allowed values, for CLI help and the dashboard."""
        return {f.name: f"{f.metadata.get('help', '')} ({_allowed_text(f.metadata)})" for f in dataclasses.fields(cls)}

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def parse_assignments(pairs: Iterable[str]) -> dict[str, str]:
    """Turn CLI ``key=value`` strings into a dict; values are converted by the config itself.

    Parameters
    ----------
    pairs : iterable of str
        Assignments such as ``"rank=3"`` (spaces around the key and value are dropped).

    Returns
    -------
    dict of str to str
        Field name to the value's text.

    Raises
    ------
    ConfigError
        When a string has no ``=`` or an empty key.

    Examples
    --------
    >>> parse_assignments(["rank=3", " init = spectral "])
    {'rank': '3', 'init': 'spectral'}
    >>> parse_assignments(["rank"])
    Traceback (most recent call last):
        ...
    metalab.core.config.ConfigError: --set='rank' is not allowed: key=value, e.g. --set rank=3
    """
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError("--set", pair, "key=value, e.g. --set rank=3")
        out[key.strip()] = value.strip()
    return out
