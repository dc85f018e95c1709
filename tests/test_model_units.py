"""Exact timestamps: one message through idle hosts, twin failover, the retry schedule.

Expected times are computed here from the scenario's own costs (all
constants in drive-network.toml except the remote MTA, which these tests
do not need or make constant), never typed in.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest

from mailgate.sim.analysis.selftest import idle
from mailgate.sim.model.network import Model
from mailgate.sim.model.plans import DELIVERY_STAGES, FSYNC_STAGES, OFF_PATH_STAGES
from mailgate.sim.scenario import MAILBOX, ROLE_STAGES, Scenario, StageCost
from mailgate.sim.scenario.loading import load
from mailgate.sim.scenario.records import HopRecord, MessageRecord

BASE = Path(__file__).resolve().parents[1] / "scenarios" / "drive-network.toml"
SIZE = 2.0


def scenario(**overrides: object) -> Scenario:
    return idle(load(BASE, {"population.mailboxes": 10, **overrides}))


def stage_time(s: Scenario, tier: str, stage: str, size: float = SIZE) -> float:
    """Wait + CPU + fsync of one stage at idle, from the scenario's constants."""
    cost = s.tiers[tier].cost(stage) or StageCost()
    t = cost.wait_s.mean + cost.dns_lookups * s.network.dns_s.mean
    t += cost.cpu_s.mean + cost.cpu_per_kb_s * size
    if stage in FSYNC_STAGES:
        t += s.tiers[tier].hosts[0].fsync_s.mean
    return t


def receive_stages(s: Scenario, tier: str, from_pc: bool) -> list[str]:
    if tier == MAILBOX:
        return ["smtp_receive", "submission", "spool"] if from_pc else ["smtp_receive", "maildir"]
    on_path = [st for st in ROLE_STAGES[s.tiers[tier].role] if st not in OFF_PATH_STAGES]
    return [st for st in on_path if st not in DELIVERY_STAGES]


def lan(s: Scenario, size: float = SIZE) -> float:
    return s.network.lan_rtt_s + size * 8192 / (s.network.lan_mbps * 1e6)


class Probe:
    """One message through a model with no other traffic, traced."""

    def __init__(self, s: Scenario, flow: str, horizon: float = 86400.0) -> None:
        self.hops: list[HopRecord] = []
        self.msgs: list[MessageRecord] = []
        self.model = Model(s, 1, trace=self._trace)
        self.model.t_end = horizon
        self.attempts: list[tuple[str, float]] = []
        self.model.remote.watchers.append(lambda m, now: self.attempts.append((m.host.id, now)))
        self.model.start()
        self.msg = self.model.new_message(flow, False, 0.0, size=SIZE, probe=True)

    def _trace(self, record: HopRecord | MessageRecord) -> None:
        (self.hops if isinstance(record, HopRecord) else self.msgs).append(record)

    def run(self) -> None:
        self.model.run()


def test_one_message_exact_times_per_host_and_stage() -> None:
    s = scenario()
    p = Probe(s, "internal")
    p.run()
    hops = sorted(p.hops, key=lambda h: h.arrived)
    tiers = [h.host.split(".")[0] for h in hops]
    assert tiers == [MAILBOX, *s.outbound_path[1:], *s.inbound_path]
    # PC -> mailbox server over the Internet link
    inet = s.network.internet_rtt_s + SIZE * 8192 / (s.network.internet_mbps * 1e6)
    assert hops[0].arrived == pytest.approx(inet, abs=1e-12)
    for i, (hop, tier) in enumerate(zip(hops, tiers, strict=True)):
        names = receive_stages(s, tier, from_pc=i == 0)
        expected = sum(stage_time(s, tier, st) for st in names)
        assert hop.accepted - hop.arrived == pytest.approx(expected, abs=1e-12), hop.host
        for st in names:
            if s.tiers[tier].cost(st) is None and st not in FSYNC_STAGES:
                assert st not in hop.stages, (tier, st)  # costs nothing: not run (tls in the base)
                continue
            span = hop.stages[st]
            assert span.elapsed == pytest.approx(stage_time(s, tier, st), abs=1e-12), (tier, st)
        if i + 1 < len(hops):
            # delivery stages, then the LAN link; the next hop's 250 ends our visit
            deliver = [st for st in DELIVERY_STAGES if st in ROLE_STAGES[s.tiers[tier].role]]
            out = sum(stage_time(s, tier, st) for st in deliver)
            assert hops[i + 1].arrived - hop.accepted == pytest.approx(out + lan(s), abs=1e-12)
            assert hop.left == pytest.approx(hops[i + 1].accepted, abs=1e-12)
    (msg,) = p.msgs
    assert msg.outcome == "mailbox"
    assert msg.in_mailbox == pytest.approx(hops[-1].accepted, abs=1e-12)


def _failover(refuses: bool) -> tuple[Scenario, HopRecord, HopRecord]:
    """One inbound message while gateway1.0 is down from the start (round robin
    picks it first): the scenario and the gateway0 and gateway1 hops."""
    s = scenario(**{
        "gateways.gateway1.balance": "round_robin",  # the first pick is host 0
        "failures.host_down": [{"host": "gateway1.0", "start_h": 0.0, "refuses": refuses}],
    })  # fmt: skip
    p = Probe(s, "inbound")
    p.run()
    hops = {h.host.split(".")[0]: h for h in p.hops}
    return s, hops["gateway0"], hops["gateway1"]


def test_twin_failover_costs_the_connect_timeout() -> None:
    s, g0, g1 = _failover(refuses=False)
    assert g1.host == "gateway1.1"
    deliver = stage_time(s, "gateway0", "deliver")
    timeout = s.tiers["gateway1"].connect_timeout_s
    assert g1.arrived - g0.accepted == pytest.approx(deliver + timeout + lan(s), abs=1e-9)


def test_a_refusing_host_costs_one_round_trip_not_the_timeout() -> None:
    """A crashed MTA on a live machine answers with a RST: the twin is tried at once."""
    s, g0, g1 = _failover(refuses=True)
    assert g1.host == "gateway1.1"
    deliver = stage_time(s, "gateway0", "deliver")
    refused = s.network.lan_rtt_s  # gateway0 is a relay: a LAN round trip
    assert g1.arrived - g0.accepted == pytest.approx(deliver + refused + lan(s), abs=1e-9)


def test_fallback_retry_schedule_and_bounce() -> None:
    lifetime = 5000.0
    s = scenario(**{
        "failures.remote_outage": [
            {"domain": "bigmail.example", "start_h": 0.0, "duration_h": 100.0}
        ],
        "retry.max_queue_lifetime_s": lifetime,
    })  # fmt: skip
    p = Probe(s, "outbound", horizon=2 * 86400.0)
    p.msg.domain = [d.name for d in s.internet.domains].index("bigmail.example")
    p.run()
    first, *fallback = p.attempts
    assert first[0].startswith("gateway3")
    assert all(h.startswith("gateway4") for h, _ in fallback)
    g4 = next(h for h in p.hops if h.host.startswith("gateway4"))
    # gateway3 waits its connect timeout, then hands the message to gateway4
    ct3 = s.tiers["gateway3"].connect_timeout_s
    assert g4.arrived == pytest.approx(first[1] + ct3 + lan(s), abs=1e-9)
    # gateway4 tries at once (after its delivery stages), then on Postfix's schedule
    deliver4 = sum(stage_time(s, "gateway4", st) for st in ("mx_lookup", "deliver"))
    assert fallback[0][1] == pytest.approx(g4.accepted + deliver4, abs=1e-9)
    # then Postfix's schedule: each failure (a connect timeout after the attempt) waits
    # its backoff, 300 s doubling up to 4000 s, and the attempt comes at the first queue
    # run (every 300 s) at or after that
    ct4, r = s.tiers["gateway4"].connect_timeout_s, s.retry
    assert (r.minimal_backoff_s, r.maximal_backoff_s, r.queue_run_delay_s) == (300, 4000, 300)
    backoffs = [300.0, 600.0, 1200.0, 2400.0] + [4000.0] * 10
    times = [t for _, t in fallback]
    for k, (before, after) in enumerate(itertools.pairwise(times)):
        due = before + ct4 + backoffs[k]
        run = after - deliver4
        assert run / 300.0 == pytest.approx(round(run / 300.0), abs=1e-9), k  # a queue run
        assert due - 1e-9 <= run < due + 300.0, k  # the first one at or after the due time
    assert len(times) >= 4  # the schedule really doubled a few times
    # the last failure is the first one older than the queue lifetime: it bounces
    assert times[-1] + ct4 - g4.accepted >= lifetime > times[-2] + ct4 - g4.accepted
    (msg,) = p.msgs
    assert msg.outcome == "bounced"
    assert g4.left == pytest.approx(times[-1] + ct4, abs=1e-9)


def test_spam_failing_spf_is_rejected_after_spf() -> None:
    s = scenario()
    p = Probe(s, "inbound")
    p.msg.spf_fail = True
    p.run()
    (hop,) = p.hops
    assert hop.outcome == "rejected"
    assert hop.accepted is None
    assert list(hop.stages) == ["smtp_receive", "spf"]
    assert hop.left - hop.arrived == pytest.approx(
        stage_time(s, s.mx, "smtp_receive") + stage_time(s, s.mx, "spf"), abs=1e-12
    )


def test_dead_site_is_throttled_after_a_connect_timeout() -> None:
    s = scenario(**{
        "failures.remote_outage": [
            {"domain": "bigmail.example", "start_h": 0.0, "duration_h": 100.0}
        ],
        "retry.max_queue_lifetime_s": 600.0,  # both bounce soon: their hop records end
        "gateways.gateway3.hosts": 1,  # the throttle is per host: make both use the same one
    })  # fmt: skip
    bigmail = [d.name for d in s.internet.domains].index("bigmail.example")
    p = Probe(s, "outbound", horizon=7200.0)
    p.msg.domain = bigmail
    p.model.run(until=100.0)  # the first message has timed out at gateway3 by now
    second = p.model.new_message("outbound", False, 100.0, size=SIZE, probe=True)
    second.domain = bigmail
    p.run()
    g3_first, g3_second = (t for h, t in p.attempts if h.startswith("gateway3"))
    throttle_end = g3_first + s.tiers["gateway3"].connect_timeout_s + s.retry.minimal_backoff_s
    assert g3_second < throttle_end
    hop = next(h for h in p.hops if h.msg_id == f"m{second.id}" and h.host.startswith("gateway4"))
    # no connect timeout this time: straight to the fallback over the LAN
    assert hop.arrived == pytest.approx(g3_second + lan(s), abs=1e-9)


def test_pop_poll_costs_and_retrieval_time() -> None:
    """The copy is fetched at the mailbox's next poll, after the POP CPU work."""
    interval = 600.0
    s = load(BASE, {  # no other mail, but every mailbox has a polling client
        "population.mailboxes": 10, "pop.active_share": 1.0, "pop.interval_s": interval,
        "workload.inbound_per_mailbox_day": 0.0, "workload.outbound_per_mailbox_day": 0.0,
    })  # fmt: skip
    p = Probe(s, "inbound", horizon=3000.0)
    p.msg.counted = True  # so that its retrieval lands in the histogram
    boxes = p.model.mailboxes
    polls: list[float] = []
    boxes.watchers.append(lambda box, now: polls.append(now))
    p.run()
    (msg,) = p.msgs
    assert msg.in_mailbox is not None
    (poll,) = polls
    assert msg.in_mailbox < poll <= msg.in_mailbox + interval
    cost = s.mailbox_server.cost
    cpu = cost("pop_session").cpu_s.mean + cost("pop_retrieve").cpu_s.mean
    cpu += cost("pop_retrieve").cpu_per_kb_s * SIZE
    h = p.model.hists["inbound"]["sent_to_retrieved"]
    assert h.count == 1
    assert h.max == pytest.approx(poll + cpu - msg.sent, abs=1e-12)
    assert boxes.pending == {}


def test_dns_slow_adds_to_every_lookup() -> None:
    extra = 0.25
    s = scenario(**{"failures.dns_slow": [{"start_h": 0.0, "duration_h": 1.0, "extra_s": extra}]})
    p = Probe(s, "inbound")
    p.run()
    hop = next(h for h in p.hops if h.host.startswith(s.mx))
    for stage in ("spf", "dkim_verify"):
        lookups = s.tiers[s.mx].cost(stage).dns_lookups
        expected = stage_time(s, s.mx, stage) + lookups * extra
        assert hop.stages[stage].elapsed == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("shared", [False, True], ids=["own-core", "shared-machine"])
def test_housekeeping_delays_the_next_message_not_its_own(shared: bool) -> None:
    """CPU after the hand-off: the message leaves on time; the next one waits for the core."""
    hk = 0.05  # far longer than any stage, so the overlap is certain
    overrides: dict[str, object] = {"gateways.gateway0.hosts": 1}
    if shared:  # one process of one core on a machine the host shares
        overrides["deployment.machines"] = [
            {"name": "box", "cores": 1, "hosts": ["gateway0.*"], "processes_per_host": 1}
        ]
    else:
        overrides["gateways.gateway0.host.cores"] = 1
    plain = scenario(**overrides)
    s = scenario(**overrides, **{"gateways.gateway0.stages.housekeeping.cpu_s": hk})
    mx = s.mx

    ref = Probe(plain, "inbound")
    ref.run()
    p = Probe(s, "inbound")
    left = next(h.left for h in ref.hops if h.host.startswith(mx))
    # the second message reaches the MX a quarter into the first one's housekeeping
    inet = s.network.internet_rtt_s + SIZE * 8192 / (s.network.internet_mbps * 1e6)
    arrive = left + hk / 4
    p.model.run(until=arrive - inet)
    second = p.model.new_message("inbound", False, p.model.env.now, size=SIZE, probe=True)
    p.run()

    def at_mx(hops: list[HopRecord], msg_id: str) -> HopRecord:
        hop = next(h for h in hops if h.msg_id == msg_id and h.host.startswith(mx))
        return dataclasses.replace(hop, next_hop="")  # which twin is picked next may differ

    # the message itself never waits for its housekeeping: same hop, same arrival in the mailbox
    assert at_mx(p.hops, f"m{p.msg.id}") == at_mx(ref.hops, f"m{p.msg.id}")
    done = next(m for m in p.msgs if m.msg_id == f"m{p.msg.id}")
    assert done.in_mailbox == pytest.approx(ref.msgs[0].in_mailbox, abs=1e-12)
    hop = at_mx(p.hops, f"m{second.id}")
    assert hop.arrived == pytest.approx(arrive, abs=1e-12)
    recv = hop.stages["smtp_receive"]
    cost = s.tiers[mx].cost("smtp_receive")
    # its first CPU block starts when the core is free: after the housekeeping
    wait = cost.wait_s.mean + cost.dns_lookups * s.network.dns_s.mean
    assert arrive + wait < left + hk
    assert recv.end == pytest.approx(left + hk + stage_time(s, mx, "smtp_receive") - wait, abs=1e-9)


def test_housekeeping_counts_in_cpu_busy_and_offered_load() -> None:
    """The utilisation law still holds: busy CPU = the stages' CPU + housekeeping."""
    from mailgate.sim.analysis.offered import tier_loads

    hk = 0.004
    s = load(BASE, {"population.mailboxes": 2000, "scenario.duration_h": 1.0,
                    "scenario.warmup_h": 0.0})  # fmt: skip
    with_hk = load(BASE, {"population.mailboxes": 2000, "scenario.duration_h": 1.0,
                          "scenario.warmup_h": 0.0,
                          "gateways.gateway1.stages.housekeeping.cpu_s": hk})  # fmt: skip
    busy, visits = {}, 0
    for name, sc in (("plain", s), ("hk", with_hk)):
        model = Model(sc, 7)
        model.start()
        model.run()
        hosts = model.tiers["gateway1"]
        for h in hosts:
            h.stats.cpu_busy.finish(model.t_end)
        busy[name] = sum(h.stats.cpu_busy.area for h in hosts)
        visits = sum(h.stats.left for h in hosts)  # visits that ended: one housekeeping each
    assert visits > 100
    # nearly the same traffic in both runs (named streams): the extra busy time is hk per visit
    assert busy["hk"] - busy["plain"] == pytest.approx(hk * visits, rel=0.05)
    # mailgate check's offered CPU counts it per message, at a gateway and at the mailbox server
    offered = tier_loads(with_hk)["gateway1"].cpu_s_per_message
    assert offered - tier_loads(s)["gateway1"].cpu_s_per_message == pytest.approx(hk)
    at_mailbox = load(BASE, {"mailbox_server.stages.housekeeping.cpu_s": hk})
    offered = tier_loads(at_mailbox)[MAILBOX].cpu_s_per_message
    assert offered - tier_loads(load(BASE))[MAILBOX].cpu_s_per_message == pytest.approx(hk)
