"""How sure the fit is: bootstrap intervals of the fitted costs, and the capacity they imply
as a band.

The measured traces are a sample of messages. Resampling whole messages with replacement
(all of a message's hops together, so what one message costs at several tiers stays
together) and fitting each resample the same way as the traces (``refit``) gives the
spread of every fitted number; the 2.5 % and 97.5 % percentiles of the resampled fits are
a 95 % interval (the percentile bootstrap, numpy resampling). The capacity the fit implies
(the analytic solver's saturation of the fitted scenario, ``solver_capacity``) is computed
for every resampled fit too, so the planner sees "the calibrated model says X–Y
mailboxes" instead of one number.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from mailgate.calibration.fit import Fit
from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.records import HopRecord

#: Resamples: 200 put a 95 % percentile interval's ends within a few % of their limit.
N_BOOT = 200
CONFIDENCE = 0.95
#: The fitted numbers of a stage that get an interval.
PARAMETERS = ("cpu_fixed_s", "cpu_per_kb_s", "wait_mean_s")


def by_message(hops: Iterable[HopRecord]) -> list[list[HopRecord]]:
    """The hops grouped by message (the bootstrap's unit), in first-seen order."""
    groups: dict[str, list[HopRecord]] = defaultdict(list)
    for hop in hops:
        groups[hop.msg_id].append(hop)
    return list(groups.values())


def resample(groups: Sequence[list[HopRecord]], rng: np.random.Generator) -> list[HopRecord]:
    """As many messages as measured, drawn with replacement, with all their hops."""
    picks = rng.integers(0, len(groups), size=len(groups))
    return [hop for i in picks for hop in groups[i]]


def bootstrap(
    hops: Iterable[HopRecord],
    refit: Callable[[list[HopRecord]], Fit],
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> list[Fit]:
    """``refit`` of ``n_boot`` resamples of the messages of ``hops`` (seeded)."""
    groups = by_message(hops)
    if not groups:
        return []
    rng = np.random.default_rng(seed)
    return [refit(resample(groups, rng)) for _ in range(n_boot)]


def interval(values: Sequence[float], confidence: float = CONFIDENCE) -> list[float] | None:
    """The percentile interval of ``values`` (None when there are none)."""
    arr = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if not len(arr):
        return None
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(arr, [tail, 100 - tail])
    return [float(lo), float(hi)]


def stage_intervals(
    fits: Sequence[Fit], confidence: float = CONFIDENCE
) -> dict[tuple[str, str], dict[str, list[float] | None]]:
    """Per (tier, stage): the interval of each of ``PARAMETERS`` over the resampled fits
    (a stage missing from a resample, too rare to be drawn, just counts less)."""
    values: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for fit in fits:
        for key, sf in fit.stages.items():
            for p in PARAMETERS:
                values[key][p].append(getattr(sf, p))
    return {key: {p: interval(v[p], confidence) for p in PARAMETERS} for key, v in values.items()}


def add_intervals(fit_json: dict[str, Any], fits: Sequence[Fit]) -> None:
    """Put each stage's ``ci95`` (``PARAMETERS`` → [lo, hi]) into ``Fit.to_json()``'s
    stages, and how many resamples they rest on."""
    ci = stage_intervals(fits)
    for s in fit_json["stages"]:
        s["ci95"] = ci.get((s["tier"], s["stage"]))
    fit_json["bootstrap"] = {"resamples": len(fits), "unit": "message", "method": "percentile"}


def peak_hour(s: Scenario) -> int:
    """The clock hour with the most mail offered (the hour capacity is decided in)."""
    from mailgate.sim.analysis.offered import hourly_rate

    flows = ("inbound", "outbound", "internal")
    rates = [hourly_rate(s, f) for f in flows]
    return max(range(24), key=lambda h: sum(r[h] for r in rates))


def solver_capacity(s: Scenario, hour: int | None = None) -> dict[str, Any]:
    """Where the analytic solver says ``s`` saturates in ``hour`` (default: its peak hour):
    the load multiplier, messages/s offered and mailboxes at that point, and what gives out."""
    from mailgate.sim.analysis.offered import hourly_rate
    from mailgate.sim.analysis.solve import solve

    hour = peak_hour(s) if hour is None else hour
    b = solve(s, hour)["bottleneck"]
    mult = float(b.get("multiplier", np.inf))
    offered = sum(hourly_rate(s, f)[hour] for f in ("inbound", "outbound", "internal"))
    return {
        "hour": hour,
        "multiplier": mult,
        "msgs_per_s": offered * mult,
        "mailboxes": s.population.mailboxes * mult,
        "bottleneck": f"{b.get('host', '')} {b.get('resource', '')}".strip(),
    }


def capacity_band(
    point: float, resampled: Sequence[float], confidence: float = CONFIDENCE
) -> dict[str, Any]:
    """The capacity of the fit (``point``) and its interval over the resampled fits."""
    return {"value": point, "ci95": interval(resampled, confidence), "resamples": len(resampled)}
