"""Hourly shapes of offered load: the named shapes (office, private, spam and their
ISP mixes, SPECmail2001) and ``HourlyProfile``, the 24 normalised weights a
``[workload.diurnal]`` entry becomes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Hourly shapes (relative weights, hour 0 = 00:00-01:00). Sources: office
#: mail peaks 08-10 h, private mail 18-21 h, spam and newsletters 00-06 h
#: (docs/workload.md, "Time of day"); the exact heights are assumed.
_OFFICE = (1, 1, 1, 1, 1, 2, 4, 8, 14, 14, 12, 10, 8, 10, 10, 9, 8, 6, 4, 3, 2, 2, 1, 1)
_PRIVATE = (3, 2, 1, 1, 1, 1, 2, 3, 4, 4, 4, 5, 6, 5, 5, 5, 6, 8, 10, 12, 12, 10, 7, 5)
_SPAM = (10, 11, 12, 12, 11, 10, 8, 6, 5, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 5, 6, 7, 9)


def _mix(*parts: tuple[float, tuple[int, ...]]) -> tuple[float, ...]:
    out = [0.0] * 24
    for weight, shape in parts:
        total = sum(shape)
        for h in range(24):
            out[h] += weight * shape[h] / total
    return tuple(out)


def _specmail() -> tuple[float, ...]:
    # SPECmail2001: 15 % of the day's activity in the peak hour (11-12 h);
    # the other 85 % spread over the office/private mix.
    base = _mix((0.5, _OFFICE), (0.5, _PRIVATE))
    rest = [b if h != 11 else 0.0 for h, b in enumerate(base)]
    scale = 0.85 / sum(rest)
    return tuple(0.15 if h == 11 else r * scale for h, r in enumerate(rest))


DIURNAL_SHAPES: dict[str, tuple[float, ...]] = {
    "flat": tuple([1.0] * 24),
    "office": _mix((1, _OFFICE)),
    "private": _mix((1, _PRIVATE)),
    "spam": _mix((1, _SPAM)),
    # Inbound: 55 % legitimate (office and private alike), 45 % spam (Kaspersky).
    "isp-inbound": _mix((0.3, _OFFICE), (0.25, _PRIVATE), (0.45, _SPAM)),
    "isp-outbound": _mix((0.5, _OFFICE), (0.5, _PRIVATE)),
    "specmail": _specmail(),
}


@dataclass(frozen=True)
class HourlyProfile:
    """24 relative weights, normalised so that their mean is 1.

    ``factor(hour)`` multiplies the daily-mean rate.
    """

    name: str
    weights: tuple[float, ...]

    @classmethod
    def parse(cls, value: Any) -> HourlyProfile:
        if isinstance(value, str):
            if value not in DIURNAL_SHAPES:
                raise ValueError(
                    f"unknown shape {value!r}; expected one of {', '.join(DIURNAL_SHAPES)}"
                    " or a list of 24 hourly weights"
                )
            raw: Any = DIURNAL_SHAPES[value]
            name = value
        elif isinstance(value, list):
            raw, name = value, "custom"
        else:
            raise ValueError(f"expected a shape name or 24 hourly weights, got {value!r}")
        if len(raw) != 24:
            raise ValueError(f"expected 24 hourly weights, got {len(raw)}")
        if any(isinstance(w, bool) or not isinstance(w, int | float) or w < 0 for w in raw):
            raise ValueError("hourly weights must be numbers ≥ 0")
        total = float(sum(raw))
        if total <= 0:
            raise ValueError("hourly weights must not all be 0")
        return cls(name, tuple(24 * float(w) / total for w in raw))

    def factor(self, hour: float) -> float:
        return self.weights[int(hour) % 24]

    @property
    def peak_factor(self) -> float:
        return max(self.weights)

    def to_table(self) -> str | list[float]:
        return self.name if self.name in DIURNAL_SHAPES else list(self.weights)
