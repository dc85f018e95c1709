"""``mailgate realnet load``: a load held against a running chain, host kills, one report.

``run_held_load`` offers an open-loop load (``loadgen.run_load``) to a testbed
whose processes are listed by ``pids()`` (``realnet.json`` of a running ``up``,
or a testbed the command started itself), SIGKILLs the hosts named in
``kills`` at their times, calls ``tick()`` every 0.2 s (a self-started
testbed's service manager restarts the dead hosts there) and returns a
``LoadReport``: offered vs accepted vs completed throughput, send → mailbox /
retrieved / remote percentiles, every SMTP error by step and code, body
integrity of every retrieved message (SHA-256 of the body), duplicates (POP
retrievals and remote-sink receipts), the accepted messages not delivered by
the end of the drain (still in a spool, and where, or lost), and each
process's CPU seconds and RSS at the start and the end (from /proc).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mailgate.realnet.addresses import AddressPlan
from mailgate.realnet.load.loadgen import (
    LoadSpec,
    Target,
    attach_traces,
    latency_quantiles,
    run_load,
)
from mailgate.realnet.load.memwatch import MemoryWatch
from mailgate.realnet.load.procstat import ProcessSample, sample_process
from mailgate.realnet.relay.tracing import read_traces
from mailgate.realnet.testbed.remote import received
from mailgate.sim.scenario import Scenario


@dataclass(frozen=True)
class Kill:
    """SIGKILL ``host`` ``at_s`` seconds after the load starts (``HOST@T``)."""

    host: str
    at_s: float

    @classmethod
    def parse(cls, text: str) -> Kill:
        host, sep, at = text.rpartition("@")
        if not sep or not host:
            raise ValueError(f"expected HOST@SECONDS, got {text!r}")
        return cls(host, float(at))


@dataclass
class LoadReport:
    """What ``realnet load`` prints (``asdict`` gives its JSON)."""

    offered: int
    accepted: int
    delivered: int
    rate: float
    duration_s: float
    wall_s: float
    accepted_rate: float
    completed_rate: float
    latency: dict[str, Any]
    errors: dict[str, int]
    intact: int
    corrupt: list[str]
    duplicates: int
    #: accepted, not delivered (in a mailbox, retrieved, at a remote MX) by the end of the
    #: drain, and still in a host's spool: msg id -> host
    queued: dict[str, str]
    lost: list[str]  # accepted, not delivered, in no spool
    processes: dict[str, dict[str, Any]]
    kills: list[dict[str, Any]] = field(default_factory=list)
    #: per host: RSS after warm-up (from the process's own start or restart) → end, growth
    memory: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def ok(self) -> bool:
        """Every accepted message delivered in time, every retrieved body intact."""
        return not self.lost and not self.queued and not self.corrupt


async def run_held_load(
    scenario: Scenario,
    state_dir: Path,
    pids: Callable[[], Mapping[str, int]],
    spec: LoadSpec,
    *,
    kills: tuple[Kill, ...] = (),
    observe: Callable[[dict[str, float]], None] | None = None,
    tick: Callable[[], None] | None = None,
    run_id: str = "",
    records_out: list[Any] | None = None,
    warmup_share: float = 0.1,
) -> LoadReport:
    """Offer ``spec``'s load, kill as told, wait for the mail, report (and extend
    ``records_out`` with every message's ``MessageRecord``: ``realnet replay`` reads them).

    Memory growth is measured from ``warmup_share`` × the duration after each
    process's start (the load's) or restart to the end (see ``MemoryWatch``).
    """
    run_id = run_id or f"load{int(time.time())}"
    plan = AddressPlan(scenario)
    start = {h: sample_process(p) for h, p in pids().items()}
    done: list[dict[str, Any]] = []
    helpers = [asyncio.create_task(_kill_at(k, pids, done)) for k in kills]
    if tick is not None:
        helpers.append(asyncio.create_task(_every(0.2, tick)))
    memory = MemoryWatch(warmup_share * spec.duration_s)
    began = time.monotonic()
    helpers.append(
        asyncio.create_task(_every(1.0, lambda: memory.observe(pids(), time.monotonic() - began)))
    )
    try:
        result = await run_load(scenario, Target.from_plan(plan, state_dir), spec, run_id, observe)
    finally:
        for task in helpers:
            task.cancel()
        outcomes = await asyncio.gather(*helpers, return_exceptions=True)
    for outcome in outcomes:  # e.g. the service manager could not restart a host
        if isinstance(outcome, Exception):
            raise outcome
    end = {h: sample_process(p) for h, p in pids().items()}
    await asyncio.sleep(0.2)  # the last trace lines reach their files
    records = result.records
    attach_traces(records, read_traces(state_dir, run_id + "-"))
    if records_out is not None:
        records_out.extend(records)
    sinks = Counter(
        row["trace_id"]
        for domain in plan.remote_domains
        for row in received(state_dir, domain)
        if str(row.get("trace_id", "")).startswith(run_id + "-")
    )
    accepted = [r for r in records if r.accepted is not None]
    delivered = [r for r in accepted if r.in_mailbox or r.retrieved or r.remote]
    delivered_ids = {r.msg_id for r in delivered}
    undelivered = {r.msg_id for r in accepted if r.msg_id not in delivered_ids}
    spooled = spooled_ids(state_dir, run_id + "-") if undelivered else {}
    last = max((r.retrieved or r.in_mailbox or r.remote or 0.0 for r in delivered), default=0.0)
    span = max(spec.duration_s, last - result.started)
    return LoadReport(
        offered=len(records),
        accepted=len(accepted),
        delivered=len(delivered),
        rate=spec.rate,
        duration_s=spec.duration_s,
        wall_s=result.wall_s,
        accepted_rate=len(accepted) / spec.duration_s,
        completed_rate=len(delivered) / span,
        latency={
            "send_to_mailbox": latency_quantiles(records, "in_mailbox"),
            "send_to_retrieved": latency_quantiles(records, "retrieved"),
            "send_to_remote": latency_quantiles(records, "remote"),
        },
        errors=dict(sorted(result.errors.items())),
        intact=result.intact,
        corrupt=result.corrupt,
        duplicates=result.duplicates + sum(n - 1 for n in sinks.values()),
        queued={i: spooled[i] for i in sorted(undelivered) if i in spooled},
        lost=[i for i in sorted(undelivered) if i not in spooled],
        processes=_processes(start, end),
        kills=done,
        memory=memory.growth(end),
        warnings=result.warnings,
    )


def spooled_ids(state_dir: Path, prefix: str) -> dict[str, str]:
    """Trace ids starting with ``prefix`` found in any host's spool: id -> host."""
    found: dict[str, str] = {}
    for path in Path(state_dir).glob("spool/*/queue/*"):
        try:
            with path.open("rb") as f:
                meta = json.loads(f.readline())
        except (OSError, ValueError):
            continue  # delivered and removed meanwhile, or half-written
        trace = str(meta.get("trace_id", "")) if isinstance(meta, dict) else ""
        if trace.startswith(prefix):
            found[trace] = path.parent.parent.name
    return found


def _processes(
    start: Mapping[str, ProcessSample | None], end: Mapping[str, ProcessSample | None]
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for host in sorted(set(start) | set(end)):
        a, b = start.get(host), end.get(host)
        out[host] = {
            "start": asdict(a) if a else None,
            "end": asdict(b) if b else None,
            "restarted": bool(a and b and a.pid != b.pid),
        }
    return out


async def _kill_at(kill: Kill, pids: Callable[[], Mapping[str, int]], done: list) -> None:
    await asyncio.sleep(kill.at_s)
    pid = pids().get(kill.host)
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
        done.append({"host": kill.host, "at_s": kill.at_s, "pid": pid})


async def _every(interval_s: float, tick: Callable[[], None]) -> None:
    while True:
        tick()
        await asyncio.sleep(interval_s)
