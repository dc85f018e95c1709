"""Operational laws and bookkeeping on a whole-scenario run.

Little's law (L = X·W) and the utilisation law (U = X·S) per host,
conservation of messages, and seeded reproducibility.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mailgate.sim.model.simulate import simulate
from mailgate.sim.model.statistics import OUTCOMES
from mailgate.sim.scenario.loading import load

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
SMALL = {"population.mailboxes": 6000, "scenario.duration_h": 1.0, "scenario.warmup_h": 0.25}


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    s = load(SCENARIOS / "remote-outage.toml", {
        **SMALL, "scenario.start_hour": 8.75,
        "failures.remote_outage": [
            {"domain": "bigmail.example", "start_h": 0.1, "duration_h": 0.5}
        ],
    })  # fmt: skip
    return simulate(s).to_dict()


def test_littles_law_per_host(run: dict[str, Any]) -> None:
    checked = 0
    for hid, h in run["hosts"].items():
        if h["messages"] < 200:
            continue  # too few departures for the edge effects to vanish
        little = h["little"]
        assert little["L"] == pytest.approx(little["X"] * little["W"], rel=0.05, abs=1e-4), hid
        checked += 1
    assert checked >= 8


def test_utilisation_law_per_host(run: dict[str, Any]) -> None:
    span = run["measured_s"]
    for hid, h in run["hosts"].items():
        if not h["messages"]:
            continue
        cpu = h["utilisation"]["cpu"]
        busy_cores = cpu["mean"] * cpu["capacity"]  # U
        x = h["messages"] / span  # X
        s = h["cpu_per_message_s"]  # S
        assert busy_cores == pytest.approx(x * s, rel=0.02, abs=1e-5), hid


def test_conservation_of_messages(run: dict[str, Any]) -> None:
    c = run["counts"]
    assert c["generated"] > 1000
    assert c["generated"] == sum(c[o] for o in OUTCOMES) + c["in_flight"]
    assert min(c.values()) >= 0
    assert c["rejected"] > 0 and c["deferred"] > 0
    for flow, fc in run["counts_by_flow"].items():
        assert fc["generated"] == sum(fc[o] for o in OUTCOMES) + fc["in_flight"], flow
    assert sum(fc["generated"] for fc in run["counts_by_flow"].values()) == c["generated"]


def _metrics(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in ("wall_s",)}


def test_same_seed_same_numbers_different_seed_different() -> None:
    s = load(SCENARIOS / "peak-hour.toml", {**SMALL, "population.mailboxes": 1000})
    a = _metrics(simulate(s, seed=11).to_dict())
    b = _metrics(simulate(s, seed=11).to_dict())
    c = _metrics(simulate(s, seed=12).to_dict())
    assert a == b
    assert a["counts"] != c["counts"] or a["latency"] != c["latency"]
    assert a["histograms"]["inbound"] != c["histograms"]["inbound"]


def test_replications_give_confidence_intervals() -> None:
    s = load(SCENARIOS / "peak-hour.toml", {**SMALL, "population.mailboxes": 1000,
                                             "scenario.replications": 3})  # fmt: skip
    d = simulate(s).to_dict()
    assert d["replications"] == 3
    lat = d["latency"]["inbound"]["accepted_to_mailbox"]
    lo, hi = lat["mean_ci95"]
    assert lo <= lat["mean"] <= hi
    assert d["hosts"]["gateway1.0"]["utilisation"]["cpu"]["mean_ci95"] is not None


def test_shared_machine_carries_its_hosts_cpu() -> None:
    """On the loopback testbed every host shares one machine's cores."""
    s = load(SCENARIOS / "loopback-testbed.toml", {"population.mailboxes": 100_000})
    d = simulate(s).to_dict()
    (machine,) = d["machines"].values()
    hosts_busy = sum(
        h["utilisation"]["cpu"]["mean"] * h["utilisation"]["cpu"]["capacity"]
        for h in d["hosts"].values()
    )
    assert hosts_busy > 0.1
    assert machine["mean"] * machine["cores"] == pytest.approx(hosts_busy, rel=0.01)
    for h in d["hosts"].values():
        assert h["machine"] == "loopback"
        assert h["utilisation"]["cpu"]["capacity"] == 1  # processes_per_host


def test_tier_rates_and_cpu_match_the_offered_load_on_paper() -> None:
    """Independent check against sim.offered (mean rates and mean CPU per message)."""
    from mailgate.sim.analysis.offered import tier_loads

    s = load(SCENARIOS / "drive-network.toml", {
        "workload.diurnal.inbound": "flat", "workload.diurnal.outbound": "flat",
        "scenario.duration_h": 2.0, "scenario.warmup_h": 0.2, "population.mailboxes": 30_000,
    })  # fmt: skip
    d = simulate(s, seed=5).to_dict()
    for name, offered in tier_loads(s).items():
        hosts = [h for h in d["hosts"].values() if h["tier"] == name]
        rate = sum(h["messages"] for h in hosts) / d["measured_s"]
        if offered.mean > 0.5:  # enough messages for a tight estimate
            assert rate == pytest.approx(offered.mean, rel=0.03), name
    # gateway3: every message runs every stage, sizes are legit mail: U = X·S exactly on paper
    g3 = [h for h in d["hosts"].values() if h["tier"] == "gateway3"]
    busy = sum(h["utilisation"]["cpu"]["mean"] * h["utilisation"]["cpu"]["capacity"] for h in g3)
    paper = tier_loads(s)["gateway3"]
    assert busy == pytest.approx(paper.mean * paper.cpu_s_per_message, rel=0.05)
