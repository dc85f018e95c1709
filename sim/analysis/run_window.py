"""Which clock hours a ``mailgate run`` measures, and warnings when that is not what the
reader will assume.

``--start-hour H`` starts the measured window at clock hour H (the warm-up runs before
it); ``--window peak`` measures the busiest hour of the diurnal profile
(``selftest.busiest_hour``, the hour ``check`` and ``selftest`` name too), one hour
unless ``--hours`` says otherwise.

Warnings: a measured window that does not contain the profile's peak hour (the
bottleneck's headroom is then a headroom over a quieter hour), and failures or surges
scheduled in the warm-up or after the run ends (they are not measured, or never happen).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from mailgate.sim.analysis.formatting import clock
from mailgate.sim.analysis.selftest import busiest_hour
from mailgate.sim.model.failure_watch import failure_windows
from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.errors import UserError
from mailgate.sim.scenario.loading import load


def check_start_hour(value: float) -> float:
    """A clock hour 0 ≤ H < 24 (finite)."""
    if not math.isfinite(value) or not 0 <= value < 24:
        raise UserError(f"--start-hour: a clock hour 0 ≤ H < 24, got {value:g}")
    return value


def window_overrides(
    scenario: str,
    overrides: Mapping[str, Any],
    *,
    start_hour: float | None = None,
    window: str | None = None,
) -> dict[str, Any]:
    """``overrides`` plus the scenario keys that put the measured window where asked."""
    out = dict(overrides)
    if start_hour is None and window is None:
        return out
    if start_hour is not None and window is not None:
        raise UserError("--start-hour and --window: give one of them")
    base = load(scenario, out)
    if window == "peak":
        start_hour = float(busiest_hour(base))
        out.setdefault("scenario.duration_h", 1.0)
    assert start_hour is not None
    start_hour = check_start_hour(start_hour)
    out["scenario.start_hour"] = (start_hour - base.scenario.warmup_h) % 24
    return out


def measured_hours(s: Scenario) -> tuple[float, float]:
    """The measured window as clock hours (the end may pass 24)."""
    meta = s.scenario
    start = meta.start_hour + meta.warmup_h
    return start, start + meta.duration_h


def misses_peak(s: Scenario) -> int | None:
    """The profile's peak hour if the measured window does not cover all of it, else None."""
    peak = busiest_hour(s)
    start, end = measured_hours(s)
    for day in (0, 24, 48):
        if start <= peak + day and peak + day + 1 <= end + 1e-9:
            return None
    return peak


def warnings(s: Scenario) -> list[str]:
    """What a reader of the run's summary should know about its window."""
    out = []
    peak = misses_peak(s)
    if peak is not None:
        start, end = measured_hours(s)
        out.append(
            f"the measured window {clock(start)}–{clock(end)} misses the profile's peak hour "
            f"{peak:02d}–{(peak + 1) % 24:02d} h: the bottleneck's headroom is for this window, "
            "not for the peak (use --window peak)"
        )
    meta = s.scenario
    warm, end_s = meta.warmup_h * 3600.0, (meta.warmup_h + meta.duration_h) * 3600.0
    for w in failure_windows(s):
        what = f"{w['kind']} {w['what']} at {w['start_s'] / 3600:g} h"
        if w["start_s"] >= end_s:
            out.append(f"{what} starts after the run ends ({end_s / 3600:g} h): it never happens")
        elif w["end_s"] <= warm:
            out.append(f"{what} ends in the warm-up ({warm / 3600:g} h): it is not measured")
    return out
