"""Operational laws and bookkeeping on a whole-scenario run.

Little's law (L = X·W) and the utilisation law (U = X·S) per host,
conservation of messages, and seeded reproducibility.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mailgate.sim.model.hosts import Msg
from mailgate.sim.model.mailboxes import PopJob
from mailgate.sim.model.network import Model
from mailgate.sim.model.simulate import simulate
from mailgate.sim.model.statistics import OUTCOMES
from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.loading import load
from mailgate.sim.scenario.topology import MAILBOX, ROLE_STAGES

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


def _expected_cpu_per_message(s: Scenario) -> dict[str, float]:
    """E[CPU s per visit] of each gateway tier, on paper: the mix of message classes
    reaching it (from the daily volumes and shares), the stages each class runs there,
    and each stage's mean cost at the class's mean size (costs are linear in size)."""
    w = s.workload
    inbound = w.inbound_per_mailbox_day * s.population.mailboxes
    ham, spam = inbound * (1 - w.spam_share), inbound * w.spam_share
    legit, junk = w.size.legit.mean, w.size.spam.mean
    internal, outbound = s.daily_messages("internal"), s.daily_messages("outbound")
    fail = w.spam_spf_fail_share

    def cost(tier: str, stages: tuple[str, ...], size: float) -> float:
        costs = [s.tiers[tier].cost(st) for st in stages]
        return sum(c.cpu_s.mean + c.cpu_per_kb_s * size for c in costs if c is not None)

    def tier_mean(tier: str, classes: list[tuple[float, float, bool]]) -> float:
        # classes: (messages per day, mean size, runs every stage of the tier)
        every = ROLE_STAGES[s.tiers[tier].role]
        until_spf = ("smtp_receive", "spf")
        total = sum(n for n, _, _ in classes)
        return sum(n * cost(tier, every if full else until_spf, size)
                   for n, size, full in classes) / total  # fmt: skip

    ham_in, spam_in = (ham + internal, legit, True), (spam * (1 - fail), junk, True)
    return {
        # the MX: spam failing SPF is refused after smtp_receive + spf
        "gateway0": tier_mean("gateway0", [ham_in, spam_in, (spam * fail, junk, False)]),
        "gateway1": tier_mean("gateway1", [ham_in, spam_in]),
        "gateway2": tier_mean("gateway2", [(outbound + internal, legit, True)]),
        "gateway3": tier_mean("gateway3", [(outbound + internal, legit, True)]),
    }


def test_utilisation_law_against_the_scenario_costs() -> None:
    """U = X · E[S] per gateway host: busy cores (the model's time-weighted CPU level)
    against the measured departures times the mean CPU per visit worked out on paper
    from the scenario's distributions, not from the model's own CPU tallies."""
    s = load(SCENARIOS / "drive-network.toml", {
        "workload.diurnal.inbound": "flat", "workload.diurnal.outbound": "flat",
        "scenario.duration_h": 2.0, "scenario.warmup_h": 0.2, "population.mailboxes": 30_000,
        "workload.virus_share": 0.0,  # no quarantine: every legit visit runs every stage
        # constant sizes: the size-dependent CPU has no sampling noise (the scenario's
        # heavy-tailed sizes would need far more messages for a tight sample mean)
        "workload.size.legit": 12.0, "workload.size.spam": 4.0,
    })  # fmt: skip
    d = simulate(s, seed=5).to_dict()
    expected = _expected_cpu_per_message(s)
    checked = 0
    for hid, h in d["hosts"].items():
        if h["tier"] not in expected:
            continue
        cpu = h["utilisation"]["cpu"]
        busy_cores = cpu["mean"] * cpu["capacity"]  # U, from the busy level
        x = h["messages"] / d["measured_s"]  # X, visits that ended per second
        assert h["messages"] > 2000, hid
        assert busy_cores == pytest.approx(x * expected[h["tier"]], rel=0.03), hid
        checked += 1
    assert checked == 8


def census(model: Model) -> list[Msg]:
    """Every message still on its way, found where the parts keep it: the calls still to
    come on the clock (a stage's wait or CPU or fsync, a link, a connect timeout, a remote
    attempt, a retry), the waiters of every pool (sessions, delivery slots, processes,
    cores, disks) and the mail parked on hosts that are down. A message listed twice
    would be on two paths at once."""
    found: list[Msg] = []

    def take(arg: object) -> None:
        if isinstance(arg, tuple) and arg and isinstance(arg[0], Msg):
            arg = arg[0]  # (message, host) on its way to a host, (message, link) retrying
        if isinstance(arg, Msg):
            found.append(arg)

    for arg in model.sched.pending():
        take(arg)
    pools = {}
    for host in model.hosts.values():
        for pool in (host.sessions, host.delivery, host.disk, host.procs, host.machine.cores):
            if pool is not None:
                pools[id(pool)] = pool  # a shared machine's cores once
    for pool in pools.values():
        for arg in pool.waiters():
            take(arg)
    for parked in model.queues.parked.values():
        found.extend(parked)
    return found


def pop_copies_in_flight(model: Model) -> int:
    """Mailbox copies whose POP session is on its way (waiting for or holding a core)."""
    jobs = [a for a in model.sched.pending() if isinstance(a, PopJob)]
    for host in model.tiers[MAILBOX]:
        jobs += [a for a in host.machine.cores.waiters() if isinstance(a, PopJob)]
        if host.procs is not None:
            jobs += [a for a in host.procs.waiters() if isinstance(a, PopJob)]
    return sum(len(job.copies) for job in jobs)


def test_conservation_of_messages_counted_where_they_are() -> None:
    """generated = finished + the messages found on their way, per flow, at several
    moments of a run with rejections, a remote outage (deferrals, a fallback), a whole
    tier down (senders requeue) and hosts down (their queues parked)."""
    s = load(SCENARIOS / "remote-outage.toml", {
        **SMALL, "scenario.start_hour": 8.75,
        "failures.remote_outage": [
            {"domain": "bigmail.example", "start_h": 0.1, "duration_h": 0.5}
        ],
        "failures.host_down": [
            {"host": "gateway2.0", "start_h": 0.3, "duration_h": 0.2},
            {"host": "gateway2.1", "start_h": 0.3, "duration_h": 0.2},
            {"host": "gateway1.0", "start_h": 0.4, "duration_h": 0.1, "refuses": True},
            {"host": "gateway4.0", "start_h": 0.45, "duration_h": 0.45},  # deferred mail parks
        ],
    })  # fmt: skip
    model = Model(s, 1)
    model.start()
    seen = {"deferred": 0, "parked": 0}
    for hour in (0.3, 0.35, 0.45, 0.55, 0.65, 0.9, 1.25):
        model.run(until=hour * 3600.0)
        live = census(model)
        assert len({id(m) for m in live}) == len(live), "a message in two places"
        ids = {m.id for m in live}
        assert set(model.remote.deferred) <= ids  # each deferred entry has its retry coming
        seen["deferred"] += len(model.remote.deferred)
        seen["parked"] += sum(map(len, model.queues.parked.values()))
        counted = [m for m in live if m.counted]
        for flow, c in model.by_flow.items():
            on_the_way = sum(1 for m in counted if m.flow == flow)
            finished = sum(c[o] for o in OUTCOMES)
            assert c["generated"] == finished + on_the_way, (hour, flow)
        boxes = model.mailboxes
        pending = sum(map(len, boxes.pending.values()))
        assert boxes.filed == boxes.retrievals + pending + pop_copies_in_flight(model), hour
    c = model.counts
    assert c["generated"] > 1000 and c["rejected"] > 0 and c["deferred"] > 0
    assert seen["deferred"] > 0 and seen["parked"] > 0  # those places were really looked at


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
