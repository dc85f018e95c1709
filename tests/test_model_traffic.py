"""Traffic: piecewise-constant rates from the diurnal profile and surges."""

from __future__ import annotations

import math
from pathlib import Path

from mailgate.sim.model.network import Model
from mailgate.sim.model.traffic import Stream
from mailgate.sim.scenario import DIURNAL_SHAPES, HourlyProfile
from mailgate.sim.scenario.loading import load

ROOT = Path(__file__).resolve().parents[1]


def test_stream_rate_follows_clock_hours_and_surges() -> None:
    weights = HourlyProfile.parse("office").weights
    surge = (1800.0, 5400.0, 5.0)  # run seconds
    s = Stream("x", "inbound", 86400.0, weights, [surge], 22.5, lambda: 1.0)
    # run time 0 is 22:30; the clock hour changes at 1800 s (23:00), 5400 s (00:00)
    assert s.rate(0.0) == weights[22]
    assert s.rate(1799.0) == weights[22]
    assert s.rate(1800.0) == weights[23] * 5.0
    assert s.rate(5399.0) == weights[23] * 5.0
    assert s.rate(5400.0) == weights[0]
    assert s.next_edge(0.0) == 1800.0
    assert s.next_edge(1800.0) == 5400.0
    assert s.next_edge(100.0) == 1800.0
    assert DIURNAL_SHAPES["office"]  # the shape exists by name


def _generated(path: Path, overrides: dict[str, object]) -> dict[str, int]:
    s = load(path, overrides)
    m = Model(s, 3)
    m.start()
    m.run()
    return {f: c["generated"] for f, c in m.by_flow.items()}


def test_generated_counts_match_the_offered_volume() -> None:
    hours = 6.0
    over = {
        "population.mailboxes": 4000, "scenario.duration_h": hours, "scenario.warmup_h": 0.0,
        "workload.diurnal.inbound": "flat", "workload.diurnal.outbound": "flat",
    }  # fmt: skip
    path = ROOT / "scenarios" / "drive-network.toml"
    s = load(path, over)
    got = _generated(path, over)
    for flow in ("inbound", "outbound", "internal"):
        expected = s.daily_messages(flow) * hours / 24
        assert abs(got[flow] - expected) < 4 * math.sqrt(expected), (flow, got[flow], expected)


def test_spam_surge_multiplies_only_spam() -> None:
    over = {
        "population.mailboxes": 4000, "scenario.duration_h": 1.0, "scenario.warmup_h": 0.0,
        "workload.diurnal.inbound": "flat", "workload.diurnal.outbound": "flat",
        "workload.surges": [
            {"flow": "inbound", "spam_only": True, "start_h": 0.0, "duration_h": 1.0, "factor": 5.0}
        ],
    }  # fmt: skip
    path = ROOT / "scenarios" / "drive-network.toml"
    s = load(path, over)
    w = s.workload
    got = _generated(path, over)
    per_h = s.daily_messages("inbound") / 24
    expected = per_h * ((1 - w.spam_share) + 5.0 * w.spam_share)
    assert abs(got["inbound"] - expected) < 4 * math.sqrt(expected), (got, expected)
    outbound = s.daily_messages("outbound") / 24  # untouched by an inbound surge
    assert abs(got["outbound"] - outbound) < 4 * math.sqrt(outbound)
