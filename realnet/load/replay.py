"""``mailgate realnet replay``, measured side: a held load while the scenario's
failures happen for real, with the recovery figures the model reports.

``run_replay`` starts the failures (``testbed.faults``) with an open-loop load
(``loadrun.run_held_load``), samples every host's spool while it runs (files in
``spool/*/queue``: *deferred* = at least one failed attempt, as the spool's
metadata says; *all queued* = every file) and, once the load is over, keeps
sampling until the queues are back (or ``settle_s``). The figures use the
model's definitions (``sim.analysis.recovery.drain``: back within 10 % of the
level before the first failure, at least within one message; the model's
caught / not caught: ``sim.model.failure_watch``): a message is *caught* when
its life (sent → delivered) overlaps a window it can run into — a remote
outage only for mail delivered to that domain (its sink's record), a host down
or slow DNS for every message (the real chain does not tell which message
tried the dead host, so this counts more mail as caught than the model does).
Nothing lost is checked by ``testbed.audit`` over the whole state dir.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mailgate.realnet.addresses import AddressPlan
from mailgate.realnet.load.loadgen import LoadSpec, attach_traces
from mailgate.realnet.load.loadrun import run_held_load
from mailgate.realnet.relay.tracing import read_traces
from mailgate.realnet.testbed.audit import audit
from mailgate.realnet.testbed.faults import FOREVER_S, Faults, FaultWindow, run_faults
from mailgate.realnet.testbed.remote import received
from mailgate.sim.analysis.recovery import drain
from mailgate.sim.scenario import Scenario


def spool_levels(state_dir: Path) -> dict[str, tuple[int, int]]:
    """Per host: (deferred, all queued) files in its spool now."""
    out: dict[str, list[int]] = {}
    for path in Path(state_dir).glob("spool/*/queue/*"):
        counts = out.setdefault(path.parent.parent.name, [0, 0])
        try:
            with path.open("rb") as f:
                meta = json.loads(f.readline())
        except (OSError, ValueError):
            continue  # delivered and removed meanwhile, or half-written
        counts[1] += 1
        if isinstance(meta, dict) and int(meta.get("attempts", 0) or 0) > 0:
            counts[0] += 1
    return {h: (c[0], c[1]) for h, c in sorted(out.items())}


class _Sampler:
    """Spool levels every ``every_s`` from the start (the series ``drain`` reads)."""

    def __init__(self, state_dir: Path, every_s: float) -> None:
        self.state_dir, self.every_s = state_dir, every_s
        self.t0 = time.monotonic()
        self.deferred: list[float] = []
        self.queued: list[float] = []
        self.host_peaks: dict[str, int] = {}

    async def run(self) -> None:
        while True:
            levels = spool_levels(self.state_dir)
            self.deferred.append(float(sum(d for d, _ in levels.values())))
            self.queued.append(float(sum(q for _, q in levels.values())))
            for host, (_, q) in levels.items():
                self.host_peaks[host] = max(self.host_peaks.get(host, 0), q)
            due = self.t0 + len(self.queued) * self.every_s
            await asyncio.sleep(max(0.0, due - time.monotonic()))


def _quantiles(values: list[float]) -> dict[str, Any]:
    """The model's latency summary keys (``LogHistogram.summary``)."""
    if not values:
        return {"count": 0, "mean": None, "p50": None, "p95": None, "p99": None, "max": None}
    a = np.asarray(values)
    return {
        "count": len(values),
        "mean": float(a.mean()),
        "p50": float(np.quantile(a, 0.5)),
        "p95": float(np.quantile(a, 0.95)),
        "p99": float(np.quantile(a, 0.99)),
        "max": float(a.max()),
    }


def caught_latency(
    records: list[Any], windows: list[FaultWindow], t0_wall: float, by_domain: Mapping[str, set]
) -> dict[str, dict[str, Any]]:
    """Send → delivered (mailbox or remote MX) of caught and not-caught messages."""
    groups: dict[str, list[float]] = {"caught": [], "not_caught": []}
    for r in records:
        done = r.in_mailbox or r.remote
        if r.accepted is None or done is None:
            continue
        caught = False
        for w in windows:
            a, b = t0_wall + w.start_s, t0_wall + w.end_s
            hits = r.msg_id in by_domain.get(w.what, ()) if w.kind == "remote_outage" else True
            caught = caught or (hits and r.sent < b and done > a)
        groups["caught" if caught else "not_caught"].append(done - r.sent)
    return {g: _quantiles(v) for g, v in groups.items()}


async def run_replay(
    scenario: Scenario,
    state_dir: Path,
    pids: Callable[[], Mapping[str, int]],
    spec: LoadSpec,
    windows: list[FaultWindow],
    *,
    hold: Callable[[str, float], None] | None = None,
    tick: Callable[[], None] | None = None,
    observe: Callable[[dict[str, float]], None] | None = None,
    sample_s: float = 0.25,
    settle_s: float = 60.0,
    run_id: str = "",
) -> dict[str, Any]:
    """Hold ``spec``'s load while ``windows`` happen; the measured recovery figures."""
    run_id = run_id or f"replay{int(time.time())}"
    faults = Faults(state_dir, pids, hold)
    faults.prepare(windows)
    sampler = _Sampler(state_dir, sample_s)
    t0_wall = time.time()
    tasks = [asyncio.create_task(sampler.run()), asyncio.create_task(run_faults(faults, windows))]
    records: list[Any] = []
    try:
        load = await run_held_load(
            scenario,
            state_dir,
            pids,
            spec,
            observe=observe,
            tick=tick,
            run_id=run_id,
            records_out=records,
        )
        end_s = max((w.end_s for w in windows), default=0.0)
        deadline = time.monotonic() + settle_s
        while time.monotonic() < deadline:
            back = sampler.t0 + end_s < time.monotonic() and sampler.queued[-1] == 0
            if back and end_s < FOREVER_S:
                break
            if tick is not None:
                tick()
            await asyncio.sleep(0.2)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        faults.release(windows)
    await asyncio.sleep(0.2)  # the last trace lines reach their files
    attach_traces(records, read_traces(state_dir, run_id + "-"))  # late deliveries too
    plan = AddressPlan(scenario)
    by_domain = {
        d: {str(row.get("trace_id", "")) for row in received(state_dir, d)}
        for d in plan.remote_domains
    }
    figures = measured_figures(
        windows,
        sampler,
        load.as_dict(),
        caught_latency(records, windows, t0_wall, by_domain),
        audit(state_dir),
        faults.log,
        records,
    )
    figures["started_wall"] = t0_wall  # the epoch the windows' seconds count from
    return figures


def measured_figures(
    windows: list[FaultWindow],
    sampler: _Sampler,
    load: dict[str, Any],
    latency: dict[str, dict[str, Any]],
    audited: Any,
    actions: list[dict[str, Any]],
    records: list[Any],
) -> dict[str, Any]:
    """The measured side of ``replay.json`` (keys as the model's ``recovery``)."""
    dt = sampler.every_s
    start_s = min((w.start_s for w in windows), default=0.0)
    end_s = max((w.end_s for w in windows), default=0.0)
    accepted = [r for r in records if r.accepted is not None]
    delivered = [r for r in accepted if r.in_mailbox or r.remote]
    return {
        "windows": [w.as_dict() for w in windows],
        "actions": actions,
        "sample_s": dt,
        "series": {"deferred": sampler.deferred, "all_queued": sampler.queued},
        "queues": {
            "deferred": drain(sampler.deferred, dt, start_s, end_s),
            "all_queued": drain(sampler.queued, dt, start_s, end_s),
        },
        "drain_time_s": drain(sampler.deferred, dt, start_s, end_s)["drain_s"],
        "host_queue_peaks": sampler.host_peaks,
        "latency_caught": latency["caught"],
        "latency_not_caught": latency["not_caught"],
        "offered": load["offered"],
        "accepted": len(accepted),
        "delivered": len(delivered),
        "undelivered": sorted(r.msg_id for r in accepted if r not in delivered),
        "errors": load["errors"],
        "duplicates": load["duplicates"],
        "corrupt": load["corrupt"],
        "audit": {
            "accepted": audited.accepted,
            "in_spool": len(audited.in_spool),
            "lost": len(audited.lost),
            "ends": dict(audited.ends),
        },
    }
