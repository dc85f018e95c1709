"""The model's share of inbound mail to unknown recipients (issue #16 point 1): refused
at the MX at RCPT, like Gateway0 refuses them on the real chain.

Checked against independent counts: the refused messages are a binomial share of
the inbound arrivals, the tier behind the MX sees the rest, and a refused session
costs the MX the SMTP dialogue only (no DATA, SPF, DKIM or spool)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from mailgate.sim.model.simulate import simulate
from mailgate.sim.scenario.loading import load

TESTBED = Path(__file__).resolve().parents[1] / "scenarios" / "loopback-testbed.toml"
FLAT = {
    "workload.diurnal.inbound": "flat",
    "workload.diurnal.outbound": "flat",
    "workload.inbound_per_s": 5.0,
    "workload.spam_spf_fail_share": 0.0,  # so every rejection is an unknown recipient
    "scenario.duration_h": 0.5,
    "scenario.warmup_h": 0.05,
}


def run(share: float, seed: int = 3) -> dict[str, Any]:
    return simulate(
        load(TESTBED, {**FLAT, "workload.unknown_recipient_share": share}), seed=seed
    ).to_dict()


def tier_messages(d: dict[str, Any], tier: str) -> int:
    return sum(h["messages"] for h in d["hosts"].values() if h["tier"] == tier)


def tier_cpu_s(d: dict[str, Any], tier: str) -> float:
    return sum(
        h["utilisation"]["cpu"]["mean"] * h["utilisation"]["cpu"]["capacity"] * d["measured_s"]
        for h in d["hosts"].values()
        if h["tier"] == tier
    )


def test_a_share_of_inbound_is_refused_at_the_mx_and_the_rest_goes_on() -> None:
    p = 0.2
    d = run(p)
    inbound = d["counts_by_flow"]["inbound"]
    n, refused = inbound["generated"], inbound["rejected"]
    bound = 4 * math.sqrt(n * p * (1 - p))  # four binomial standard deviations
    assert abs(refused - n * p) <= bound, (refused, n * p, bound)
    # Gateway1 sees what Gateway0 did not refuse: (1 - p) of its sessions
    g0, g1 = tier_messages(d, "gateway0"), tier_messages(d, "gateway1")
    assert abs(g1 - (1 - p) * g0) <= 4 * math.sqrt(g0 * p * (1 - p)) + 20, (g0, g1)
    assert d["scenario"]["workload"]["unknown_recipient_share"] == p


def test_a_refused_session_costs_the_dialogue_only() -> None:
    """Gateway0's CPU with a share p refused: (1 - p) full visits + p dialogues, where
    a full visit's CPU is measured by the run without refusals (same arrivals)."""
    p = 0.5
    full, half = run(0.0), run(p)
    s = load(TESTBED)
    dialogue = s.tiers["gateway0"].cost("smtp_receive").cpu_s.mean
    per_visit = tier_cpu_s(full, "gateway0") / tier_messages(full, "gateway0")
    visits = tier_messages(half, "gateway0")
    expected = visits * ((1 - p) * per_visit + p * dialogue)
    assert tier_cpu_s(half, "gateway0") == pytest.approx(expected, rel=0.05)
    # and far less than if every visit were a full one
    assert tier_cpu_s(half, "gateway0") < 0.8 * visits * per_visit


def test_without_the_share_the_key_is_not_echoed() -> None:
    """Scenarios that do not set it keep their results byte for byte (the golden files)."""
    assert "unknown_recipient_share" not in run(0.0)["scenario"]["workload"]


def test_the_solver_gives_the_simulated_utilisation_with_refusals() -> None:
    """``mailgate solve`` knows the share too: CPU utilisation of the MX and of the tier
    behind it as the simulation measures them (an independent computation)."""
    from mailgate.sim.analysis.solve import solve

    p = 0.5
    d = run(p)
    s = load(TESTBED, {**FLAT, "workload.unknown_recipient_share": p})
    solved = solve(s)["hosts"]
    for host in ("gateway0.0", "gateway1.0"):
        simulated = d["hosts"][host]["utilisation"]["cpu"]["mean"]
        assert solved[host]["utilisation"]["cpu"] == pytest.approx(simulated, rel=0.05), host
