"""Build frozen dataclasses from TOML tables, with errors a planner can act on.

The dataclasses of ``sim.scenario`` (``root.Scenario`` and its sections) are the
schema: their type hints say what each key holds, their defaults fill what a file
leaves out and their field metadata gives limits. ``build(cls, table, path)`` checks
a table against a class and returns an instance, or raises ``SchemaError`` naming
the key path (``gateways.gateway1.hosts[0].cores``), the bad value and what was
expected.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from functools import cache
from typing import Any

from mailgate.sim.scenario.distributions import DistributionError, parse_distribution
from mailgate.sim.scenario.diurnal import HourlyProfile


class SchemaError(ValueError):
    """A value does not fit the schema. ``key`` is the dotted path to it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        self.message = message


def join(path: str, key: str | int) -> str:
    """Extend a key path by a table key or an array index."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def suggest(key: str, choices: typing.Iterable[str]) -> str:
    """' (did you mean 'x'?)' when a close match exists."""
    close = difflib.get_close_matches(key, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def schema_fields(cls: type) -> list[dataclasses.Field[Any]]:
    """The fields a TOML table may set (internal fields excluded)."""
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


def build(cls: type, table: Any, path: str = "") -> Any:
    """Check ``table`` against dataclass ``cls`` and build an instance."""
    if not isinstance(table, dict):
        raise SchemaError(path, f"expected a table, got {_show(table)}")
    fields = {f.name: f for f in schema_fields(cls)}
    renamed = getattr(cls, "RENAMED", {})
    for key in table:
        if key in renamed:
            raise SchemaError(join(path, key), renamed[key])
        if key not in fields:
            raise SchemaError(
                join(path, key),
                f"unknown key{suggest(key, fields)}; expected one of {', '.join(fields)}",
            )
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for name, f in fields.items():
        key_path = join(path, name)
        if name in table:
            values[name] = convert(hints[name], table[name], key_path, f.metadata)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise SchemaError(key_path, f"missing required key ({f.metadata.get('doc', name)})")
    return cls(**values)


def convert(hint: Any, value: Any, path: str, meta: typing.Mapping[str, Any]) -> Any:
    """Convert one TOML value to the type ``hint``, checking ``meta`` limits."""
    parse = meta.get("parse")
    if parse == "distribution":
        try:
            return parse_distribution(value)
        except DistributionError as e:
            raise SchemaError(join(path, e.key) if e.key else path, str(e)) from None
    if parse == "profile":
        try:
            return HourlyProfile.parse(value)
        except ValueError as e:
            raise SchemaError(path, str(e)) from None

    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, path)
    if origin is tuple:
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        if not isinstance(value, list):
            raise SchemaError(path, f"expected a list, got {_show(value)}")
        if meta.get("nonempty") and not value:
            raise SchemaError(path, "must not be empty")
        return tuple(convert(item, v, join(path, i), {}) for i, v in enumerate(value))
    if origin is dict:
        _, item = typing.get_args(hint)
        if not isinstance(value, dict):
            raise SchemaError(path, f"expected a table, got {_show(value)}")
        return {k: convert(item, v, join(path, k), {}) for k, v in value.items()}
    return _scalar(hint, value, path, meta)


# scalar type -> (does a TOML value fit it?, what the error says was expected)
_SCALARS: dict[type, tuple[typing.Callable[[Any], bool], str]] = {
    bool: (lambda v: isinstance(v, bool), "true or false"),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "a whole number"),
    float: (lambda v: isinstance(v, int | float) and not isinstance(v, bool), "a number"),
    str: (lambda v: isinstance(v, str), "a string"),
}


def _scalar(hint: Any, value: Any, path: str, meta: typing.Mapping[str, Any]) -> Any:
    fits, expected = _SCALARS[hint]
    if not fits(value):
        raise SchemaError(path, f"expected {expected}, got {_show(value)}")
    value = float(value) if hint is float else value
    _limits(value, path, meta)
    return value


def _limits(value: Any, path: str, meta: typing.Mapping[str, Any]) -> None:
    if "choices" in meta and value not in meta["choices"]:
        raise SchemaError(
            path,
            f"got {_show(value)}{suggest(str(value), meta['choices'])}; expected one of "
            f"{', '.join(meta['choices'])}",
        )
    if "min" in meta and value < meta["min"]:
        raise SchemaError(path, f"must be ≥ {meta['min']}, got {_show(value)}")
    if "gt" in meta and value <= meta["gt"]:
        raise SchemaError(path, f"must be > {meta['gt']}, got {_show(value)}")
    if "max" in meta and value > meta["max"]:
        raise SchemaError(path, f"must be ≤ {meta['max']}, got {_show(value)}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def to_table(obj: Any) -> Any:
    """The TOML-like form of a built object (for results.json)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if hasattr(obj, "to_table"):
            return obj.to_table()
        # a "quiet" key is echoed only when set: a key added later leaves the results of
        # scenarios that do not use it byte-identical (the golden files)
        return {
            f.name: to_table(getattr(obj, f.name))
            for f in schema_fields(type(obj))
            if not (f.metadata.get("quiet") and getattr(obj, f.name) == f.default)
        }
    if isinstance(obj, tuple | list):
        return [to_table(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_table(v) for k, v in obj.items()}
    return obj
