"""The model's parts alone, through their public interfaces, at exact times.

Each part is built on its own clock with stand-ins for its neighbours (a host
that only has what the part uses, a router that records connections); the
expected times are written out from the rule each part implements, with the
scenario's numbers named where they come in.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import simpy

from mailgate.sim.model.engine import Scheduler
from mailgate.sim.model.hosts import Msg
from mailgate.sim.model.links import Links
from mailgate.sim.model.mailboxes import Mailboxes
from mailgate.sim.model.remote import RemoteDelivery, RetrySchedule
from mailgate.sim.model.routing import Router, TwinChoice
from mailgate.sim.model.sampling import Streams
from mailgate.sim.model.slots import DeliverySlots
from mailgate.sim.model.statistics import Statistics, Window
from mailgate.sim.model.stats import Level
from mailgate.sim.model.traffic import Stream, Traffic
from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.loading import load
from mailgate.sim.scenario.mta import Retry

BASE = Path(__file__).resolve().parents[1] / "scenarios" / "drive-network.toml"
DAY = 86400.0


def clock() -> Scheduler:
    return Scheduler(simpy.Environment())


def host(sched: Scheduler, hid: str, *, up: bool = True, refuses: bool = False) -> Any:
    """A stand-in host: what routing and remote delivery use of one."""
    return SimpleNamespace(
        id=hid, tier=hid.split(".")[0], up=up, refuses=refuses, dead={},
        delivery=DeliverySlots(sched.env, f"{hid}.delivery", total=1, per_destination=1,
                               dest_of=lambda m: None, names={}),
        stats=SimpleNamespace(deferred=Level(0.0, DAY, 3600.0)),
    )  # fmt: skip


# ------------------------------------------------------------ retry schedule


def test_retry_schedule_doubles_to_the_maximum_and_waits_for_queue_runs() -> None:
    r = RetrySchedule(Retry(queue_run_delay_s=300.0, minimal_backoff_s=300.0,
                            maximal_backoff_s=1000.0, max_queue_lifetime_s=5000.0))  # fmt: skip
    backoffs = [r.backoff(0.0)]
    for _ in range(3):
        backoffs.append(r.backoff(backoffs[-1]))
    assert backoffs == [300.0, 600.0, 1000.0, 1000.0]
    assert r.next_run(30.0, 300.0) == 600.0  # due at 330: the run at 600
    assert r.next_run(300.0, 300.0) == 600.0  # due exactly at a run: that run
    assert r.next_run(630.0, 600.0) == 1500.0  # due at 1230
    assert not r.expired(queued_at=100.0, now=5099.0)
    assert r.expired(queued_at=100.0, now=5100.0)


# ------------------------------------------------------------ traffic


def test_traffic_redraws_the_gap_at_a_rate_change() -> None:
    """One arrival per second, then four per second from 2.5 s (a surge): the gap drawn
    at 2 s (due at 3 s) is thrown away at the rate change and redrawn from 2.5 s."""
    sched = clock()
    draws: list[float] = []

    def exp() -> float:
        draws.append(1.0)
        return 1.0

    flat = (1.0,) * 24
    stream = Stream("x", "inbound", DAY, flat, [(2.5, 10.0, 4.0)], 0.0, exp)
    seen: list[tuple[str, bool, float]] = []
    traffic = Traffic([stream], sched, Window(0.0, 4.0, 300.0),
                      lambda flow, spam, now: seen.append((flow, spam, now)))  # fmt: skip
    traffic.start()
    sched.env.run()
    assert [t for _, _, t in seen] == [1.0, 2.0, 2.75, 3.0, 3.25, 3.5, 3.75]
    assert {(f, spam) for f, spam, _ in seen} == {("inbound", False)}
    # seven arrivals, the draw thrown away at 2.5 s, the last one due at 4.0 (the end)
    assert len(draws) == 9


# ------------------------------------------------------------ routing


def _router(s: Scenario, tier: str, hosts: list[Any], sched: Scheduler) -> tuple[Router, list]:
    links = Links(s, sched, lambda: 0.0)
    router = Router(s, sched, {tier: hosts}, links, Streams(1).uniforms("choices"))
    log: list[tuple[str, float, Any]] = []
    router.wire(arrive=lambda arg: log.append(("arrive", sched.now, arg[1].id)),
                requeue=lambda m: log.append(("requeue", sched.now, m.id)))  # fmt: skip
    return router, log


def test_round_robin_takes_the_twins_in_turn() -> None:
    s = load(BASE, {"gateways.gateway1.balance": "round_robin"})
    sched = clock()
    twins = [host(sched, "gateway1.0"), host(sched, "gateway1.1")]
    router, log = _router(s, "gateway1", twins, sched)
    for i in range(3):
        router.connect(Msg(i, "inbound", 2.0, 0.0), "gateway1", 0.5)
    sched.env.run()
    assert log == [("arrive", 0.5, "gateway1.0"), ("arrive", 0.5, "gateway1.1"),
                   ("arrive", 0.5, "gateway1.0")]  # fmt: skip
    choice = TwinChoice("round_robin", 1, lambda: 0.99)
    assert [choice.first() for _ in range(2)] == [0, 0]  # one host: nothing to choose


@pytest.mark.parametrize("refuses", [False, True], ids=["dead-machine", "refused"])
def test_a_dead_twin_costs_the_timeout_or_one_round_trip(refuses: bool) -> None:
    s = load(BASE, {"gateways.gateway1.balance": "round_robin"})
    sched = clock()
    twins = [host(sched, "gateway1.0", up=False, refuses=refuses), host(sched, "gateway1.1")]
    router, log = _router(s, "gateway1", twins, sched)
    m = Msg(0, "inbound", 2.0, 0.0)
    m.sender = host(sched, "gateway0.0")  # a relay: a refusal costs a LAN round trip
    router.connect(m, "gateway1", 0.5)
    sched.env.run()
    lost = s.network.lan_rtt_s if refuses else s.tiers["gateway1"].connect_timeout_s
    assert log == [("arrive", lost + 0.5, "gateway1.1")]


def test_a_dead_tier_sends_the_relay_back_to_its_queue_and_the_client_back_later() -> None:
    s = load(BASE)
    sched = clock()
    twins = [host(sched, "gateway1.0", up=False), host(sched, "gateway1.1", up=False)]
    router, log = _router(s, "gateway1", twins, sched)
    timeout, run = s.tiers["gateway1"].connect_timeout_s, s.retry.queue_run_delay_s
    relay = host(sched, "gateway0.0")
    from_relay = Msg(0, "inbound", 2.0, 0.0)
    relay.delivery.acquire(lambda m: setattr(m, "sender", relay), from_relay)
    router.connect(from_relay, "gateway1", 0.5)
    from_client = Msg(1, "inbound", 2.0, 0.0)
    router.connect(from_client, "gateway1", 0.5)
    sched.env.run(until=2 * timeout + 1.0)
    assert relay.delivery.in_use == 0  # the relay's slot is free while it waits
    twins[1].up = True  # back before the client's reconnection
    sched.env.run()
    assert log == [("requeue", 2 * timeout + run, 0),
                   ("arrive", 2 * timeout + run + 0.5, "gateway1.1")]  # fmt: skip


# ------------------------------------------------------------ remote delivery


class _Router:
    """A stand-in router: the scenario's fallbacks; connections are only recorded."""

    def __init__(self, s: Scenario, sched: Scheduler) -> None:
        self.s, self.sched, self.log = s, sched, []

    def fallback(self, tier: str) -> str:
        return self.s.tiers[tier].fallback

    def connect(self, m: Msg, tier: str, link: float) -> None:
        self.log.append((self.sched.now, m.id, tier))


def _remote(s: Scenario) -> tuple[Scheduler, RemoteDelivery, _Router, list]:
    sched = clock()
    router = _Router(s, sched)
    ended: list[tuple[float, int, str]] = []
    outcomes = SimpleNamespace(
        finish=lambda host, m, result, outcome="": ended.append((sched.now, m.id, result))
    )
    remote = RemoteDelivery(
        s, sched, Links(s, sched, lambda: 0.0), router,  # type: ignore[arg-type]
        choices=Streams(1).uniforms("choices"), remote_mta=lambda: 0.3,
        stats=Statistics(Window(0.0, DAY, 3600.0)), outcomes=outcomes,  # type: ignore[arg-type]
    )  # fmt: skip
    return sched, remote, router, ended


def _outage(**more: object) -> Scenario:
    return load(BASE, {"internet.temp_fail_prob": 0.0, "failures.remote_outage": [
        {"domain": "bigmail.example", "start_h": 0.0, "duration_h": 10.0}], **more})  # fmt: skip


def _sending(sched: Scheduler, hid: str, mid: int, domain: int) -> Msg:
    """A message at ``hid`` holding its delivery slot, for ``domain``."""
    m = Msg(mid, "outbound", 2.0, 0.0)
    m.domain, m.host = domain, host(sched, hid)
    m.host.delivery.acquire(lambda _: None, None)
    return m


def test_a_remote_attempt_delivers_after_the_link_and_the_remote_mta() -> None:
    s = _outage()
    sched, remote, router, ended = _remote(s)
    m = _sending(sched, "gateway3.0", 0, domain=1)  # carrier.example: no outage
    remote.attempt(m)
    sched.env.run()
    link = s.network.internet_rtt_s + 2.0 * 8192 / (s.network.internet_mbps * 1e6)
    assert ended == [(link + 0.3, 0, "delivered")]
    assert m.host.delivery.in_use == 0 and router.log == []


def test_an_outage_costs_the_timeout_then_the_site_is_throttled() -> None:
    s = _outage()
    sched, remote, router, ended = _remote(s)
    g3 = host(sched, "gateway3.0")
    first, second = _sending(sched, "gateway3.0", 0, 0), _sending(sched, "gateway3.0", 1, 0)
    first.host = second.host = g3
    remote.attempt(first)
    sched.env.run(until=100.0)
    timeout = s.tiers["gateway3"].connect_timeout_s
    assert router.log == [(timeout, 0, "gateway4")]  # to the fallback, the slot still held
    assert g3.dead == {0: timeout + s.retry.minimal_backoff_s}
    remote.attempt(second)  # at 100 s: throttled, straight to the fallback
    assert router.log[-1] == (100.0, 1, "gateway4")
    assert ended == [] and remote.deferred == {}


def test_the_fallback_retries_at_queue_runs_and_bounces_when_too_old() -> None:
    """gateway4 (no fallback of its own) defers: backoff 300, 600, 1200 s at the next
    queue run (every 300 s); the failure at 3030 s is older than 2000 s: bounced."""
    s = _outage(**{"retry.max_queue_lifetime_s": 2000.0})
    assert (s.retry.minimal_backoff_s, s.retry.queue_run_delay_s) == (300.0, 300.0)
    assert s.tiers["gateway4"].connect_timeout_s == 30.0
    sched, remote, router, ended = _remote(s)
    m = _sending(sched, "gateway4.0", 0, domain=0)
    attempts: list[float] = []
    remote.watchers.append(lambda m, now: attempts.append(now))
    remote.wire(requeue=lambda m: m.host.delivery.acquire(remote.attempt, m))
    remote.attempt(m)
    sched.env.run(until=700.0)
    assert remote.deferred == {0: m}  # failed at 630, waiting for the run at 1500
    sched.env.run()
    assert attempts == [0.0, 600.0, 1500.0, 3000.0]
    assert ended == [(3030.0, 0, "bounced")]
    assert remote.deferred == {} and router.log == []


# ------------------------------------------------------------ mailboxes (POP)


def test_a_copy_is_fetched_at_the_mailbox_next_poll() -> None:
    s = load(BASE, {"pop.active_share": 1.0, "pop.interval_s": 600.0})
    sched = clock()
    cpu: list[tuple[float, float]] = []

    class Server:  # the mailbox server: CPU at once, for the given seconds
        def burst(self, job: Any, seconds: float, cont: Any) -> None:
            cpu.append((sched.now, seconds))
            sched.after(seconds, cont, job)

        def background(self, seconds: float) -> None:
            pass

    got: list[tuple[str, float, float]] = []
    boxes = Mailboxes(
        s.pop, 1, sched=sched, streams=Streams(3), window=Window(0.0, 3000.0, 300.0),
        hosts=[Server()],  # type: ignore[list-item]
        session=lambda kb: 0.001, retrieve=lambda kb: 0.0002 + 0.00001 * kb,
        retrieved=lambda flow, waited: got.append((flow, sched.now, waited)),
    )  # fmt: skip
    phase = boxes.next_poll[0]  # the client's first poll, somewhere in its first interval
    assert 0 < phase < 600.0
    m = Msg(0, "inbound", 10.0, 0.0)
    m.rcpts, m.counted = 2, True  # two copies, both in the only mailbox
    boxes.file(m, 0.0)
    sched.env.run(until=phase + 50.0)
    later = Msg(1, "inbound", 10.0, phase + 50.0)
    later.counted = True
    boxes.file(later, phase + 50.0)  # after a poll: waits for the next one
    sched.env.run()
    work = 0.001 + 2 * (0.0002 + 0.00001 * 10.0)
    exact = {"abs": 1e-9, "rel": 0}
    second = (pytest.approx(phase + 600.0, **exact), pytest.approx(0.0013, **exact))
    assert cpu == [(phase, pytest.approx(work, **exact)), second]
    done = [phase + work, phase + work, phase + 600.0 + 0.0013]
    assert [t for _, t, _ in got] == pytest.approx(done, **exact)
    waited = [phase + work, phase + work, 600.0 - 50.0 + 0.0013]
    assert [w for _, _, w in got] == pytest.approx(waited, **exact)
    assert boxes.filed == 3 and boxes.retrievals == 3 and boxes.pending == {}
