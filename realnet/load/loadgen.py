"""Open-loop load generator for realnet.

Messages arrive as a Poisson process at a set rate for a set duration,
whatever the system is doing: every send is *scheduled* in advance and its
latency counts from the scheduled time, so a slow system cannot slow the
generator down and hide its own queueing (no coordinated omission). Each
message gets its own SMTP session on an asyncio task; a semaphore bounds the
sessions in flight, and the time a send started after its schedule is
recorded as *lateness*. When the lateness or the generator's own CPU says
that the generator, not the system, was the bottleneck, the result carries a
warning.

The flows mix like the scenario's: inbound from the remote senders (bound
to their addresses so SPF sees them; SPF-failing spam from a failing
domain), outbound and internal submissions from a PC with SMTP AUTH to the
mailbox server's submission port. Sizes come from the scenario's size
distributions. POP pollers fetch the receiving mailbox so send → retrieved
is measured too.

Output: one ``sim.records.MessageRecord`` per message. ``in_mailbox`` and
``remote`` come from HopRecord traces (``attach_traces``).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import re
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mailgate.realnet.addresses import OTHER_DOMAIN, AddressPlan, Endpoint
from mailgate.realnet.load.mailclients import Auth, ProtocolError, pop_fetch_all, smtp_send
from mailgate.sim.scenario import MAILBOX, Scenario
from mailgate.sim.scenario.records import HopRecord, MessageRecord

log = logging.getLogger(__name__)

#: Headers + the fixed part of a generated message, bytes (sizes are totals).
_HEADER_ROOM = 400


@dataclass(frozen=True)
class Target:
    """Where the load goes and where it comes from."""

    mx: tuple[Endpoint, ...]  # our domain's MX hosts (inbound)
    submission: Endpoint  # the mailbox server's submission port (PCs)
    pop3: Endpoint | None  # the mailbox server's POP3 port (None: no pollers)
    domain: str  # our mail domain
    pc_address: str | None = None
    sender_addresses: Mapping[str, str] = field(default_factory=dict)  # domain -> source

    @classmethod
    def from_plan(cls, plan: AddressPlan) -> Target:
        s = plan.scenario
        return cls(
            mx=tuple(plan.smtp(h) for h in s.host_ids if h.startswith(f"{s.mx}.")),
            submission=Endpoint(plan.host_address(f"{MAILBOX}.0"), s.realnet.submission_port),
            pop3=Endpoint(plan.host_address(f"{MAILBOX}.0"), s.realnet.pop3_port),
            domain=s.population.domains[0],
            pc_address=plan.pc_address,
            sender_addresses={d: plan.remote_sender_address(d) for d in plan.remote_domains},
        )


@dataclass(frozen=True)
class LoadSpec:
    """How much load, for how long, with what bounds."""

    rate: float  # messages/s offered
    duration_s: float
    user: Auth  # the PC user who submits, and whose mailbox receives
    shares: Mapping[str, float] | None = None  # flow -> share; None: the scenario's mix
    max_messages: int = 50_000
    concurrency: int = 1000  # sessions in flight at most
    seed: int = 1
    pop_interval_s: float = 1.0  # 0: no POP pollers
    drain_s: float = 30.0  # after the last send, wait this long at most for retrieval
    send_timeout_s: float = 60.0
    max_size_kb: float | None = None  # None: just under the scenario's size limit
    late_warn_s: float = 0.01  # warn when p99 lateness exceeds this
    cpu_warn: float = 0.8  # warn when the generator used more than this share of a core


@dataclass(slots=True)
class Planned:
    """One scheduled message."""

    msg_id: str
    offset_s: float  # after the start of the run
    flow: str
    size_kb: float
    mail_from: str
    rcpt: str
    source: str | None
    spf_fail: bool = False


@dataclass
class LoadResult:
    """What a load run produced."""

    records: list[MessageRecord]
    offered_rate: float
    started: float  # wall time of offset 0
    duration_s: float  # scheduled span
    wall_s: float  # including drain
    lateness_s: list[float]
    cpu_s: float  # the generator's own CPU (process_time)
    errors: dict[str, int]
    warnings: list[str]
    pop_polls: int = 0

    @property
    def cpu_share(self) -> float:
        return self.cpu_s / max(self.wall_s, 1e-9)

    @property
    def behind(self) -> bool:
        return bool(self.warnings)

    def lateness_quantiles(self) -> dict[str, float]:
        if not self.lateness_s:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0}
        arr = np.asarray(self.lateness_s)
        return {
            "p50": float(np.quantile(arr, 0.5)),
            "p99": float(np.quantile(arr, 0.99)),
            "max": float(arr.max()),
        }

    def accepted_rate(self) -> float:
        """Messages accepted by the first hop per second of the scheduled span."""
        n = sum(1 for r in self.records if r.accepted is not None)
        return n / max(self.duration_s, 1e-9)

    def summary(self) -> dict[str, Any]:
        return {
            "offered_rate": self.offered_rate,
            "messages": len(self.records),
            "accepted_rate": self.accepted_rate(),
            "duration_s": self.duration_s,
            "wall_s": self.wall_s,
            "lateness_s": self.lateness_quantiles(),
            "loadgen_cpu_share": self.cpu_share,
            "errors": dict(self.errors),
            "pop_polls": self.pop_polls,
            "warnings": list(self.warnings),
        }


# ---------------------------------------------------------------- planning


def flow_shares(scenario: Scenario) -> dict[str, float]:
    """The scenario's mix of flows (by daily messages offered)."""
    daily = {f: scenario.daily_messages(f) for f in ("inbound", "outbound", "internal")}
    total = sum(daily.values()) or 1.0
    return {f: v / total for f, v in daily.items()}


def arrival_offsets(
    rate: float, duration_s: float, limit: int, rng: np.random.Generator
) -> list[float]:
    """Poisson arrival times in [0, duration), at most ``limit`` of them."""
    out: list[float] = []
    t = 0.0
    while len(out) < limit:
        t += float(rng.exponential(1.0 / rate))
        if t >= duration_s:
            break
        out.append(t)
    return out


def plan_messages(scenario: Scenario, target: Target, spec: LoadSpec, run_id: str) -> list[Planned]:
    """Schedule every message of the run up front (open loop)."""
    rng = np.random.default_rng(spec.seed)
    shares = dict(spec.shares or flow_shares(scenario))
    flows = [f for f, v in shares.items() if v > 0]
    weights = np.array([shares[f] for f in flows], dtype=float)
    weights /= weights.sum()
    w = scenario.workload
    limit_kb = scenario.limits.message_size_limit_bytes / 1024 - 4
    cap_kb = min(spec.max_size_kb or limit_kb, limit_kb)
    domains = scenario.internet.domains
    failing = [d.name for d in domains if d.spf == "fail"]
    passing = [d for d in domains if d.spf != "fail"]
    in_names = [d.name for d in passing] + [OTHER_DOMAIN]
    in_w = np.array([d.inbound_share for d in passing] + [0.0])
    in_w[-1] = max(1.0 - in_w.sum() - sum(d.inbound_share for d in domains if d.spf == "fail"), 0)
    out_names = [d.name for d in domains] + [OTHER_DOMAIN]
    out_w = np.array([d.share for d in domains] + [max(1.0 - sum(d.share for d in domains), 0)])
    user_address = f"{spec.user.user}@{target.domain}"  # local rcpt, submission sender
    planned = []
    offsets = arrival_offsets(spec.rate, spec.duration_s, spec.max_messages, rng)
    for i, offset in enumerate(offsets):
        flow = flows[int(rng.choice(len(flows), p=weights))]
        msg_id = f"{run_id}-{i}"
        spf_fail = False
        if flow == "inbound":
            spam = rng.random() < w.spam_share
            spf_fail = bool(spam and failing and rng.random() < w.spam_spf_fail_share)
            if spf_fail:
                domain = failing[int(rng.integers(len(failing)))]
            else:
                domain = in_names[int(rng.choice(len(in_names), p=in_w / in_w.sum()))]
            size = (w.size.spam if spam else w.size.legit).sample(rng)
            mail_from, rcpt = f"sender{i}@{domain}", user_address
            source = target.sender_addresses.get(domain)
        else:
            if flow == "outbound":
                domain = out_names[int(rng.choice(len(out_names), p=out_w / out_w.sum()))]
                rcpt = f"user{i}@{domain}"
            else:
                rcpt = user_address
            size = w.size.legit.sample(rng)
            mail_from, source = user_address, target.pc_address
        size_kb = min(max(size, _HEADER_ROOM / 1024), cap_kb)
        planned.append(Planned(msg_id, offset, flow, size_kb, mail_from, rcpt, source, spf_fail))
    return planned


def build_message(p: Planned) -> bytes:
    """A plain-text message of about ``p.size_kb`` KB carrying its id."""
    headers = (
        f"From: <{p.mail_from}>\r\n"
        f"To: <{p.rcpt}>\r\n"
        f"Subject: mailgate load {p.msg_id} ({p.flow})\r\n"
        f"Date: {email.utils.formatdate(localtime=False)}\r\n"
        f"Message-ID: <{p.msg_id}@loadgen.mailgate>\r\n"
        f"X-Mailgate-Id: {p.msg_id}\r\n"
        # realnet's hops carry this trace id into their HopRecords (realnet.relay)
        f"X-Mailgate-Trace: {p.msg_id}; flow={p.flow}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
    ).encode()
    body_len = max(int(p.size_kb * 1024) - len(headers), 2)
    line = b"The quick brown fox jumps over the lazy dog; mailgate load test padding.\r\n"
    body = (line * (body_len // len(line) + 1))[:body_len]
    return headers + body.rstrip(b"\r\n") + b"\r\n"


_ID_RE = re.compile(rb"^X-Mailgate-Id:\s*(\S+)", re.MULTILINE | re.IGNORECASE)


def message_id_of(message: bytes) -> str | None:
    """The load generator's id in a retrieved message."""
    m = _ID_RE.search(message.split(b"\r\n\r\n", 1)[0])
    return m.group(1).decode() if m else None


# ---------------------------------------------------------------- running


class _Run:
    """State of one load run (the tasks share it)."""

    def __init__(self, target: Target, spec: LoadSpec, planned: list[Planned]) -> None:
        self.target, self.spec = target, spec
        self.planned = planned
        self.records = {
            p.msg_id: MessageRecord(p.msg_id, p.flow, p.size_kb, sent=0.0) for p in planned
        }
        self.lateness: list[float] = []
        self.errors: Counter[str] = Counter()
        self.awaiting_pop: set[str] = set()
        self.polls = 0
        self.sem = asyncio.Semaphore(spec.concurrency)
        self.loop = asyncio.get_running_loop()
        self.t0_loop = 0.0
        self.t0_wall = 0.0
        self.sending_done = asyncio.Event()

    def wall(self, loop_time: float) -> float:
        return self.t0_wall + (loop_time - self.t0_loop)

    async def send(self, p: Planned) -> None:
        scheduled = self.t0_loop + p.offset_s
        record = self.records[p.msg_id]
        record.sent = self.wall(scheduled)
        async with self.sem:
            self.lateness.append(max(self.loop.time() - scheduled, 0.0))
            try:
                if p.flow == "inbound":
                    endpoints = list(self.target.mx)
                    # equal-preference MX: pick at random, the twin on failure
                    k = zlib.crc32(p.msg_id.encode()) % len(endpoints)
                    accepted = await self._first_that_works(p, endpoints[k:] + endpoints[:k])
                else:
                    accepted = await self._smtp(p, self.target.submission, self.spec.user)
            except ProtocolError as e:
                record.outcome = "rejected" if 500 <= e.code < 600 else "error"
                key = f"{p.flow} {e.step} {e.code}"
                self.errors[key] += 1
                return
            except (OSError, TimeoutError) as e:
                record.outcome = "error"
                key = f"{p.flow} {type(e).__name__}"
                self.errors[key] += 1
                return
        record.accepted = accepted
        if p.flow != "outbound":
            self.awaiting_pop.add(p.msg_id)

    async def _first_that_works(self, p: Planned, endpoints: list[Endpoint]) -> float:
        for k, endpoint in enumerate(endpoints):
            try:
                return await self._smtp(p, endpoint)
            except OSError:
                if k == len(endpoints) - 1:
                    raise
        raise AssertionError("unreachable")

    async def _smtp(self, p: Planned, endpoint: Endpoint, auth: Auth | None = None) -> float:
        """Send ``p`` in one SMTP session; the time of the server's 250."""
        return await smtp_send(
            endpoint,
            p.mail_from,
            [p.rcpt],
            build_message(p),
            source=p.source,
            auth=auth,
            timeout=self.spec.send_timeout_s,
        )

    async def schedule(self) -> None:
        tasks: set[asyncio.Task[None]] = set()
        for p in self.planned:
            delay = self.t0_loop + p.offset_s - self.loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self.send(p))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks)
        self.sending_done.set()

    async def poll(self) -> None:
        """POP the user's mailbox until every accepted message is retrieved."""
        spec, endpoint = self.spec, self.target.pop3
        assert endpoint is not None
        while True:
            try:
                fetched = await pop_fetch_all(
                    endpoint, spec.user, source=self.target.pc_address, timeout=spec.send_timeout_s
                )
                self.polls += 1
            except (ProtocolError, OSError, TimeoutError) as e:
                key = f"pop {type(e).__name__}"
                self.errors[key] += 1
                fetched = []
            for message, when in fetched:
                msg_id = message_id_of(message)
                record = self.records.get(msg_id or "")
                if record is not None and record.retrieved is None:
                    record.retrieved = when
                    self.awaiting_pop.discard(record.msg_id)
            if self.sending_done.is_set() and not self.awaiting_pop:
                return
            await asyncio.sleep(spec.pop_interval_s)


async def run_load(
    scenario: Scenario, target: Target, spec: LoadSpec, run_id: str = "lg"
) -> LoadResult:
    """Offer the load, wait for retrieval (bounded), return the records."""
    planned = plan_messages(scenario, target, spec, run_id)
    run = _Run(target, spec, planned)
    cpu0, wall0 = time.process_time(), time.monotonic()
    # Start a little in the future so the first arrivals are not late by construction.
    run.t0_loop = run.loop.time() + 0.05
    run.t0_wall = time.time() + 0.05
    jobs = [asyncio.create_task(run.schedule())]
    if spec.pop_interval_s > 0 and target.pop3 is not None:
        jobs.append(asyncio.create_task(run.poll()))
    deadline = spec.duration_s + 0.05 + spec.drain_s
    done, pending = await asyncio.wait(jobs, timeout=deadline, return_when=asyncio.ALL_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        task.result()  # a bug in the generator must not pass silently
    wall = time.monotonic() - wall0
    cpu = time.process_time() - cpu0
    result = LoadResult(
        records=list(run.records.values()),
        offered_rate=spec.rate,
        started=run.t0_wall,
        duration_s=spec.duration_s,
        wall_s=wall,
        lateness_s=run.lateness,
        cpu_s=cpu,
        errors=dict(run.errors),
        warnings=[],
        pop_polls=run.polls,
    )
    _check_behind(result, spec, pending=len(pending))
    return result


def _check_behind(result: LoadResult, spec: LoadSpec, pending: int) -> None:
    late = result.lateness_quantiles()
    if late["p99"] > spec.late_warn_s:
        result.warnings.append(
            f"load generator fell behind its schedule: p99 lateness {late['p99'] * 1e3:.1f} ms "
            f"(max {late['max'] * 1e3:.1f} ms); it, not the system, may be the bottleneck"
        )
    if result.cpu_share > spec.cpu_warn:
        result.warnings.append(
            f"load generator used {result.cpu_share:.0%} of a core; it may be the bottleneck"
        )
    if pending:
        result.warnings.append(f"drain time ({spec.drain_s:g} s) ran out before retrieval ended")
    for w in result.warnings:
        log.warning(w)


# ---------------------------------------------------------------- traces


def _norm_id(msg_id: str) -> str:
    """``<lg-3@loadgen.mailgate>`` → ``lg-3``: realnet may trace the Message-ID header."""
    return msg_id.strip().strip("<>").split("@", 1)[0]


def attach_traces(records: Iterable[MessageRecord], hops: Iterable[HopRecord]) -> int:
    """Fill ``in_mailbox``, ``remote`` and outcomes from realnet's HopRecords.

    Returns how many records gained a time.
    """
    by_id = {r.msg_id: r for r in records}
    n = 0
    for hop in hops:
        record = by_id.get(_norm_id(hop.msg_id))
        if record is None or hop.left is None:
            continue
        if hop.outcome == "mailbox" and record.in_mailbox is None:
            record.in_mailbox = hop.left
            record.outcome = "delivered"
            n += 1
        elif hop.outcome == "remote" and record.remote is None:
            record.remote = hop.left
            record.outcome = "delivered"
            n += 1
        elif (
            hop.outcome in ("rejected", "quarantined", "bounced") and record.outcome == "in_flight"
        ):
            record.outcome = hop.outcome
    for record in by_id.values():
        if record.outcome == "in_flight" and record.retrieved is not None:
            record.outcome = "delivered"
    return n


def latency_quantiles(
    records: Iterable[MessageRecord], span: str, qs: tuple[float, ...] = (0.5, 0.95, 0.99)
) -> dict[str, dict[str, float | int]]:
    """Per flow ``{"n", "p50", "p95", "p99"}`` of ``record.<span> - record.sent``."""
    values: dict[str, list[float]] = {}
    for r in records:
        end = getattr(r, span)
        if end is not None:
            values.setdefault(r.flow, []).append(end - r.sent)
    return {flow: quantile_row(vs, qs) for flow, vs in sorted(values.items())}


def quantile_row(
    values: Sequence[float], qs: tuple[float, ...] = (0.5, 0.95, 0.99)
) -> dict[str, float | int]:
    """``{"n", "p50", "p95", "p99"}`` of non-empty ``values`` (``qs`` names the columns)."""
    arr = np.asarray(values, dtype=float)
    return {"n": len(arr), **{f"p{round(q * 100)}": float(np.quantile(arr, q)) for q in qs}}
