"""The what-if grid of a sweep: ``--set KEY=V1,V2,...`` flags read into axes, and the
full factorial product of them as points (one scenario each).

A value is a TOML value (``0.004``, ``true``, ``"round_robin"``, ``[]``,
``{dist = "exponential", mean = 0.01}``, ``[{host = "gateway1.0", start_h = 0.25}]``)
or, when it is not one, a bare string (``round_robin``). Values are separated by the
commas that are not inside brackets, braces or quotes, so lists and tables can be
values too. Every key is checked by loading the scenario with each of its values
before anything runs, and an error names the flag, the key and the value.
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.errors import UserError
from mailgate.sim.scenario.loading import ScenarioError, load

OPEN, CLOSE = "[{", "]}"


@dataclass(frozen=True)
class Axis:
    """One ``--set``: a dotted scenario key and the values it takes, with their text."""

    key: str
    values: tuple[Any, ...]
    labels: tuple[str, ...]

    @property
    def numeric(self) -> bool:
        """Every value a number (so it can be an x axis)."""
        return all(isinstance(v, int | float) and not isinstance(v, bool) for v in self.values)


def split_values(text: str) -> list[str]:
    """``"1,2,[3,4],{a=1,b=2}"`` → ``["1", "2", "[3,4]", "{a=1,b=2}"]``: the commas
    outside brackets, braces and quotes separate values."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in OPEN:
            depth += 1
        elif ch in CLOSE:
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def parse_value(text: str) -> Any:
    """A TOML value, or the text itself when it is not one (a bare word)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        if text[:1] in OPEN or text[:1] in "\"'":
            raise ValueError(f"not a valid TOML value: {text}") from None
        return text


def parse_axis(spec: str) -> Axis:
    """``KEY=V1,V2,...`` as an axis; a malformed one is a ``UserError`` naming it."""
    key, sep, rest = spec.partition("=")
    key = key.strip()
    if not sep or not key or not rest.strip():
        raise UserError(f"--set {spec}: expected KEY=V1,V2,... (a dotted scenario key)")
    if any(not part for part in key.split(".")):
        raise UserError(f"--set {spec}: {key!r} is not a dotted key")
    labels = split_values(rest)
    if any(not label for label in labels):
        raise UserError(f"--set {spec}: an empty value")
    try:
        values = tuple(parse_value(label) for label in labels)
    except ValueError as e:
        raise UserError(f"--set {key}: {e}") from None
    if len(set(labels)) != len(labels):
        raise UserError(f"--set {key}: a value given twice")
    return Axis(key, values, tuple(labels))


def parse_axes(specs: Sequence[str]) -> list[Axis]:
    """Every ``--set``, each key once."""
    if not specs:
        raise UserError("--set: give at least one KEY=V1,V2,...")
    axes = [parse_axis(spec) for spec in specs]
    seen: set[str] = set()
    for a in axes:
        if a.key in seen:
            raise UserError(f"--set {a.key}: given twice (put all its values in one --set)")
        seen.add(a.key)
    return axes


@dataclass(frozen=True)
class GridPoint:
    """One combination of values and the scenario it makes."""

    index: int
    values: dict[str, Any]
    labels: dict[str, str]
    scenario: Scenario


def _check_gateway(key: str, base: Scenario) -> None:
    """A sweep changes gateways that exist; it does not add new ones by a typo."""
    parts = key.split(".")
    if parts[0] == "gateways" and len(parts) > 1:
        gateways = list(base.gateways)
        if parts[1] not in gateways:
            raise UserError(
                f"--set {key}: no gateway {parts[1]!r} in the scenario "
                f"(its gateways are {', '.join(gateways)})"
            )


def _load(path: str | Path, overrides: Mapping[str, Any], flag: str) -> Scenario:
    """The scenario with ``overrides``; an error names ``flag`` (``KEY=VALUE``) and the key."""
    try:
        return load(path, overrides)
    except ScenarioError as e:
        raise UserError(f"--set {flag}: {e.key + ': ' if e.key else ''}{e.message}") from None


def grid(path: str | Path, axes: Sequence[Axis], base: Mapping[str, Any]) -> list[GridPoint]:
    """The full factorial grid (the last axis varies fastest), each point's scenario
    loaded from ``path`` with ``base`` overrides and the point's values."""
    scenario = load(path, base)
    for a in axes:
        _check_gateway(a.key, scenario)
        for value, label in zip(a.values, a.labels, strict=True):
            _load(path, {**base, a.key: value}, f"{a.key}={label}")
    points = []
    for i, combo in enumerate(itertools.product(*(range(len(a.values)) for a in axes))):
        values = {a.key: a.values[j] for a, j in zip(axes, combo, strict=True)}
        labels = {a.key: a.labels[j] for a, j in zip(axes, combo, strict=True)}
        scenario = _load(path, {**base, **values}, " ".join(f"{k}={v}" for k, v in labels.items()))
        points.append(GridPoint(i, values, labels, scenario))
    return points
