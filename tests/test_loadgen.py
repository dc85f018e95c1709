"""The load generator's latency accounting, against servers with known delays.

A plain aiosmtpd server sleeps a known time in DATA. Measured send → accepted
latency must be about that delay when the server keeps up, and — open loop —
must include the queueing from the *scheduled* time when a single-slot server
is overloaded. A tiny POP3 server over what the SMTP server received checks
send → retrieved and the poll loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from mailgate.realnet.addresses import Endpoint
from mailgate.realnet.load.loadgen import attach_traces, latency_quantiles, run_load
from mailgate.realnet.load.mailclients import Auth, dot_stuff
from mailgate.realnet.load.schedule import (
    LoadSpec,
    Target,
    arrival_offsets,
    build_message,
    message_id_of,
    plan_messages,
)
from mailgate.sim.scenario.loading import load
from mailgate.sim.scenario.records import HopRecord, MessageRecord
from tests.conftest import TESTBED

SCENARIO = load(TESTBED)
USER = Auth("selftest", "selftest")
SENDER_ADDRESS = "127.25.200.1"  # binds without setup: all of 127/8 is loopback


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class DelayHandler:
    """Accepts every message after ``delay`` s in DATA; ``slots`` at a time."""

    def __init__(self, delay: float, slots: int | None) -> None:
        self.delay, self.slots = delay, slots
        self.sem: asyncio.Semaphore | None = None
        self.messages: list[bytes] = []
        self.peers: set[str] = set()
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:
        self.peers.add(session.peer[0])
        if self.slots is None:
            await asyncio.sleep(self.delay)
        else:
            if self.sem is None:
                self.sem = asyncio.Semaphore(self.slots)
            async with self.sem:
                await asyncio.sleep(self.delay)
        with self.lock:
            self.messages.append(envelope.original_content)
        return "250 OK"


def _authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = auth_data.login == b"selftest" and auth_data.password == b"selftest"
    # handled=False: aiosmtpd then answers 535 itself (the default sends nothing)
    return AuthResult(success=ok, handled=False)


@contextlib.contextmanager
def smtp_server(delay: float, slots: int | None = None) -> Iterator[tuple[DelayHandler, Endpoint]]:
    handler = DelayHandler(delay, slots)
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        server_hostname="test.invalid",
        authenticator=_authenticator,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield handler, Endpoint("127.0.0.1", port)
    finally:
        controller.stop()


class TinyPop:
    """A POP3 server over the messages an SMTP handler received (RFC 1939 subset)."""

    def __init__(self, handler: DelayHandler) -> None:
        self.handler = handler

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"+OK ready\r\n")
        with self.handler.lock:
            box = list(self.handler.messages)
        deleted: set[int] = set()
        while line := await reader.readline():
            cmd, *args = line.decode().split()
            if cmd == "LIST":
                writer.write(b"+OK\r\n")
                for i, m in enumerate(box, 1):
                    writer.write(f"{i} {len(m)}\r\n".encode())
                writer.write(b".\r\n")
            elif cmd == "RETR":
                writer.write(b"+OK\r\n" + dot_stuff(box[int(args[0]) - 1]))
            elif cmd == "DELE":
                deleted.add(int(args[0]) - 1)
                writer.write(b"+OK\r\n")
            elif cmd == "QUIT":
                with self.handler.lock:
                    gone = {id(box[i]) for i in deleted}
                    self.handler.messages[:] = [
                        m for m in self.handler.messages if id(m) not in gone
                    ]
                writer.write(b"+OK bye\r\n")
                break
            else:
                writer.write(b"+OK\r\n")
            await writer.drain()
        writer.close()


def target(smtp: Endpoint, pop3: Endpoint | None = None) -> Target:
    return Target(
        mx=(smtp,),
        submission=smtp,
        pop3=pop3,
        domain="drive-network.example",
        pc_address=None,
        sender_addresses={d.name: SENDER_ADDRESS for d in SCENARIO.internet.domains}
        | {"elsewhere.example": SENDER_ADDRESS},
    )


INBOUND_ONLY = {"inbound": 1.0}


def spec(rate: float, duration: float, **kw) -> LoadSpec:
    kw.setdefault("shares", INBOUND_ONLY)
    kw.setdefault("pop_interval_s", 0)
    kw.setdefault("drain_s", 10.0)
    kw.setdefault("max_size_kb", 16)
    return LoadSpec(rate=rate, duration_s=duration, user=USER, **kw)


def test_poisson_arrivals_are_bounded_and_have_the_rate() -> None:
    rng = np.random.default_rng(3)
    offsets = arrival_offsets(200.0, 50.0, 100_000, rng)
    assert len(offsets) == pytest.approx(200 * 50, rel=0.05)
    gaps = np.diff(offsets)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)  # exponential: CV 1
    assert len(arrival_offsets(200.0, 50.0, 17, rng)) == 17  # bounded in count
    assert max(offsets) < 50.0  # and in time


def test_plan_mixes_flows_and_sizes_like_the_scenario() -> None:
    t = target(Endpoint("127.0.0.1", 1))
    planned = plan_messages(SCENARIO, t, LoadSpec(rate=500, duration_s=20, user=USER), "x")
    flows = [p.flow for p in planned]
    daily = {f: SCENARIO.daily_messages(f) for f in ("inbound", "outbound", "internal")}
    total = sum(daily.values())
    for flow, v in daily.items():
        assert flows.count(flow) / len(flows) == pytest.approx(v / total, abs=0.02)
    inbound = [p for p in planned if p.flow == "inbound"]
    w = SCENARIO.workload
    fail = sum(p.spf_fail for p in inbound) / len(inbound)
    assert fail == pytest.approx(w.spam_share * w.spam_spf_fail_share, abs=0.02)
    assert all(p.source == SENDER_ADDRESS for p in inbound)
    legit = [p.size_kb for p in planned if p.flow != "inbound"]
    assert np.median(legit) == pytest.approx(w.size.legit.median, rel=0.15)


def test_plan_sends_the_asked_shares_to_unknown_users_and_with_routing_tricks() -> None:
    import math

    from mailgate.realnet.relay.syntax import routing_in

    t = target(Endpoint("127.0.0.1", 1))
    planned = plan_messages(SCENARIO, t, spec(500, 10, unknown_share=0.1, tricks_share=0.05), "x")
    n = len(planned)
    unknown = [p for p in planned if p.rcpt.startswith("nosuchuser")]
    tricks = [p for p in planned if routing_in(p.rcpt)]
    for got, share in ((unknown, 0.1), (tricks, 0.05)):
        assert abs(len(got) - n * share) <= 4 * math.sqrt(n * share * (1 - share))
    assert {p.refuse for p in unknown} == {"unknown"} and {p.refuse for p in tricks} == {"routing"}
    assert {p.rcpt.split("@")[0][:5] for p in tricks} >= {"selft", '"self', "elsew"}  # all three
    assert all(p.rcpt.endswith("@" + t.domain) for p in unknown + tricks)
    # without the shares the plan is the one it always was (no extra draws)
    assert plan_messages(SCENARIO, t, spec(500, 10), "x") == plan_messages(
        SCENARIO, t, spec(500, 10, unknown_share=0.0), "x"
    )
    assert not any(p.refuse for p in plan_messages(SCENARIO, t, spec(500, 10), "x"))


def test_message_carries_its_id_and_size() -> None:
    t = target(Endpoint("127.0.0.1", 1))
    p = plan_messages(SCENARIO, t, spec(10, 1), "id")[0]
    data = build_message(p)
    assert message_id_of(data) == p.msg_id
    assert len(data) == pytest.approx(p.size_kb * 1024, abs=4)


def test_latency_is_the_injected_delay_when_the_server_keeps_up() -> None:
    delay = 0.05
    with smtp_server(delay) as (handler, endpoint):
        result = asyncio.run(run_load(SCENARIO, target(endpoint), spec(20, 2.0)))
    accepted = [r for r in result.records if r.accepted is not None]
    assert len(accepted) == len(result.records) > 20
    latency = np.array([r.accepted - r.sent for r in accepted])
    # the delay plus one SMTP dialogue on loopback (a few ms on a busy 2-core box)
    assert np.median(latency) == pytest.approx(delay, abs=0.02)
    assert latency.min() >= delay
    assert handler.peers == {SENDER_ADDRESS}  # bound to the remote sender's address
    assert result.lateness_quantiles()["p50"] < 0.01  # on schedule
    assert 0 < result.cpu_share < 1


def test_overloaded_single_slot_server_shows_queueing_from_the_schedule() -> None:
    # capacity 1/0.05 = 20 msg/s, offered 40 msg/s for 1.5 s: open loop keeps
    # sending, the backlog grows, and the n-th message waits ~n*delay - its offset.
    delay, rate, duration = 0.05, 40.0, 1.5
    with smtp_server(delay, slots=1) as (_, endpoint):
        result = asyncio.run(run_load(SCENARIO, target(endpoint), spec(rate, duration)))
    records = sorted(result.records, key=lambda r: r.sent)
    assert all(r.accepted is not None for r in records)
    latency = np.array([r.accepted - r.sent for r in records])
    n = len(records)
    # the last one waits for everyone before it: it finishes no earlier than
    # start + n*delay (a busy machine only makes the server slower)
    expected_last = (records[0].sent + n * delay) - records[-1].sent
    assert latency[-1] >= 0.9 * expected_last
    assert latency[-1] > 10 * delay
    assert np.corrcoef(np.arange(n), latency)[0, 1] > 0.9  # grows through the run
    # and the generator itself stayed (nearly) on schedule: the backlog is the
    # server's, measured from the scheduled times, not the generator's lateness
    assert result.lateness_quantiles()["p99"] < 0.1 * latency[-1]


def test_behind_schedule_is_warned() -> None:
    # one session at a time against a slow server: sends start late
    with smtp_server(0.05) as (_, endpoint):
        result = asyncio.run(run_load(SCENARIO, target(endpoint), spec(40, 1.0, concurrency=1)))
    assert result.behind
    assert "fell behind" in result.warnings[0]
    # latency still counts from the schedule, so it includes the lateness
    worst = max(r.accepted - r.sent for r in result.records if r.accepted)
    assert worst >= max(result.lateness_s)


def test_submission_with_auth_and_pop_retrieval() -> None:
    async def scenario(endpoint: Endpoint, handler: DelayHandler) -> object:
        pop = TinyPop(handler)
        port = free_port()
        server = await asyncio.start_server(pop.session, "127.0.0.1", port)
        try:
            s = spec(20, 1.0, shares={"internal": 1.0}, pop_interval_s=0.2)
            return await run_load(SCENARIO, target(endpoint, Endpoint("127.0.0.1", port)), s)
        finally:
            server.close()
            await server.wait_closed()

    with smtp_server(0.0) as (handler, endpoint):
        t0 = time.time()
        result = asyncio.run(scenario(endpoint, handler))
    assert not result.errors
    got = [r for r in result.records if r.retrieved is not None]
    assert len(got) == len(result.records) > 5
    waits = [r.retrieved - r.sent for r in got]
    assert all(r.retrieved >= r.accepted >= r.sent >= t0 for r in got)
    assert max(waits) < 0.2 + 0.5  # one poll interval plus slack
    q = latency_quantiles(result.records, "retrieved")
    assert q["internal"]["n"] == len(got)


def test_bad_password_is_counted_not_raised() -> None:
    with smtp_server(0.0) as (_, endpoint):
        s = LoadSpec(
            rate=10,
            duration_s=0.5,
            user=Auth("selftest", "wrong"),
            shares={"outbound": 1.0},
            pop_interval_s=0,
        )
        result = asyncio.run(run_load(SCENARIO, target(endpoint), s))
    assert result.records and all(r.accepted is None for r in result.records)
    assert sum(result.errors.values()) == len(result.records)
    assert all(k.startswith("outbound AUTH 535") for k in result.errors)


def test_attach_traces_fills_mailbox_and_remote_times() -> None:
    records = [
        MessageRecord("lg-1", "internal", 4.0, sent=10.0),
        MessageRecord("lg-2", "outbound", 4.0, sent=10.0),
    ]
    hops = [
        HopRecord("lg-1", "internal", "mailbox.0", 4.0, 10.1, 10.2, 10.3, outcome="relayed"),
        HopRecord(
            "<lg-1@loadgen.mailgate>",
            "internal",
            "mailbox.0",
            4.0,
            11,
            11.1,
            11.2,
            outcome="mailbox",
        ),
        HopRecord("lg-2", "outbound", "gateway3.1", 4.0, 10.5, 10.6, 10.7, outcome="remote"),
    ]
    assert attach_traces(records, hops) == 2
    assert records[0].in_mailbox == 11.2 and records[0].outcome == "delivered"
    assert records[1].remote == 10.7 and records[1].in_mailbox is None
