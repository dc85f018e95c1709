"""Open-loop load generator for realnet: runs a schedule and collects the results.

Every send is *scheduled* in advance (:mod:`schedule`) and its latency counts
from the scheduled time, so a slow system cannot slow the generator down and
hide its own queueing (no coordinated omission). Each message gets its own
SMTP session on an asyncio task; a semaphore bounds the sessions in flight,
and the time a send started after its schedule is recorded as *lateness*.
When the lateness or the generator's own CPU says that the generator, not the
system, was the bottleneck, the result carries a warning. POP pollers fetch
the receiving mailbox so send → retrieved is measured too.

Output: one ``sim.records.MessageRecord`` per message. ``in_mailbox`` and
``remote`` come from HopRecord traces (``attach_traces``). Every retrieved
message's body is compared with what was sent (a SHA-256 of the body, as Postal
checks it), and a message retrieved twice is counted as a duplicate. An
``observe`` callback gets a progress snapshot every second (``realnet load``'s
live line).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mailgate.realnet.addresses import Endpoint
from mailgate.realnet.load.mailclients import Auth, ProtocolError, pop_fetch_all, smtp_send
from mailgate.realnet.load.schedule import (
    LoadSpec,
    Planned,
    Target,
    build_message,
    flow_shares,
    message_id_of,
    plan_messages,
)
from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.records import HopRecord, MessageRecord

# the schedule's names that callers of the runner (calibration) import from here
__all__ = [
    "LoadResult",
    "LoadSpec",
    "Target",
    "attach_traces",
    "flow_shares",
    "latency_quantiles",
    "quantile_row",
    "run_load",
]

log = logging.getLogger(__name__)


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
    duplicates: int = 0  # retrievals of a message already retrieved
    intact: int = 0  # retrieved messages whose body is the one sent
    corrupt: list[str] = field(default_factory=list)  # ids of those whose body is not

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
            "duplicates": self.duplicates,
            "intact": self.intact,
            "corrupt": list(self.corrupt),
            "warnings": list(self.warnings),
        }


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
        self.digests: dict[str, bytes] = {}  # msg id -> SHA-256 of the body sent
        self.duplicates = 0
        self.intact = 0
        self.corrupt: list[str] = []
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
                if p.refuse:  # sent to be refused: the report tells it from a real error
                    key += f" ({p.refuse}, as expected)" if e.step == "RCPT" else f" ({p.refuse})"
                self.errors[key] += 1
                return
            except (OSError, TimeoutError) as e:
                record.outcome = "error"
                key = f"{p.flow} {type(e).__name__}"
                self.errors[key] += 1
                return
        record.accepted = accepted
        if p.refuse:  # our MX took what it had to refuse
            self.errors[f"{p.flow} accepted, expected a refusal ({p.refuse})"] += 1
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
        data = build_message(p)
        self.digests[p.msg_id] = body_digest(data)
        return await smtp_send(
            endpoint,
            p.mail_from,
            [p.rcpt],
            data,
            source=p.source,
            auth=auth,
            timeout=self.spec.send_timeout_s,
            tls=self.target.tls,
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
                if record is None:
                    continue
                if record.retrieved is not None:
                    self.duplicates += 1
                    continue
                record.retrieved = when
                self.awaiting_pop.discard(record.msg_id)
                if body_digest(message) == self.digests.get(record.msg_id):
                    self.intact += 1
                else:
                    self.corrupt.append(record.msg_id)
            if self.sending_done.is_set() and not self.awaiting_pop:
                return
            await asyncio.sleep(spec.pop_interval_s)

    def snapshot(self) -> dict[str, float]:
        """Where the run stands (``observe``'s argument)."""
        records = self.records.values()
        return {
            "elapsed_s": self.loop.time() - self.t0_loop,
            "planned": len(self.planned),
            "started": len(self.lateness),
            "accepted": sum(1 for r in records if r.accepted is not None),
            "errors": sum(self.errors.values()),
            "retrieved": sum(1 for r in records if r.retrieved is not None),
            "duplicates": self.duplicates,
            "corrupt": len(self.corrupt),
        }

    async def report(self, observe: Callable[[dict[str, float]], None], every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            observe(self.snapshot())


def body_digest(message: bytes) -> bytes:
    """SHA-256 of a message's body (the relays add headers, never touch the body)."""
    _, sep, body = message.partition(b"\r\n\r\n")
    return hashlib.sha256(body if sep else b"").digest()


async def run_load(
    scenario: Scenario,
    target: Target,
    spec: LoadSpec,
    run_id: str = "lg",
    observe: Callable[[dict[str, float]], None] | None = None,
) -> LoadResult:
    """Offer the load, wait for retrieval (bounded), return the records.

    ``observe`` (optional) gets ``_Run.snapshot()`` every second while it runs."""
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
    progress = asyncio.create_task(run.report(observe, 1.0)) if observe else None
    done, pending = await asyncio.wait(jobs, timeout=deadline, return_when=asyncio.ALL_COMPLETED)
    for task in [*pending, *([progress] if progress else [])]:
        task.cancel()
    await asyncio.gather(*pending, *([progress] if progress else []), return_exceptions=True)
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
        duplicates=run.duplicates,
        intact=run.intact,
        corrupt=run.corrupt,
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
