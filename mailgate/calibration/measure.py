"""The real chain at one load: a running testbed (``Bench``), its warm-up and
idle CPU, and one measured ``Point`` per offered load (latencies from the load
generator and the hops' traces, CPU per host from /proc).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mailgate.calibration.cpu import CpuSampler
from mailgate.calibration.points import (
    OUTSIDE_MODEL,
    Point,
    latency_samples,
    quantiles,
    stage_profile,
)
from mailgate.calibration.shadow import with_out_of_shadow
from mailgate.realnet.load.loadgen import LoadResult, LoadSpec, Target, attach_traces, run_load
from mailgate.realnet.load.mailclients import Auth
from mailgate.realnet.relay.tracing import read_traces
from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.records import HopRecord, MessageRecord

#: A message completing this long after the end of the window still counts
#: as keeping up (the ones sent last need their send → mailbox time).
COMPLETION_GRACE_S = 1.0


@dataclass
class Bench:
    """What a calibration needs from a running testbed."""

    scenario: Scenario
    target: Target
    state_dir: Path
    pids: Mapping[str, int]  # host id -> PID
    user: Auth
    idle_cpu: dict[str, float] = field(default_factory=dict)  # host -> CPU s per s when idle


def bench_from_testbed(testbed: Any, user: Auth) -> Bench:
    """Adapt the supervisor's ``Testbed`` to what calibration needs."""
    return Bench(
        scenario=testbed.scenario,
        target=Target.from_plan(testbed.plan, Path(testbed.state_dir)),
        state_dir=Path(testbed.state_dir),
        pids={host: proc.pid for host, proc in testbed.procs.items()},
        user=user,
    )


def warm_up(
    bench: Bench, *, rate: float = 5.0, duration_s: float = 2.0, idle_s: float = 2.0
) -> None:
    """Send a little mail first (lazy imports, first DNS answers, key parsing
    cost each host tens of ms once), then measure each host's idle CPU so the
    sweep can subtract it."""
    spec = LoadSpec(
        rate=rate, duration_s=duration_s, user=bench.user, pop_interval_s=0.5, drain_s=10
    )
    asyncio.run(run_load(bench.scenario, bench.target, spec, run_id="warmup"))
    time.sleep(0.5)
    sampler = CpuSampler(bench.pids)
    sampler.start()
    time.sleep(idle_s)
    bench.idle_cpu = {h: c / idle_s for h, c in sampler.cpu_seconds().items()}


def measure(
    bench: Bench,
    rate: float,
    duration_s: float,
    run_id: str,
    *,
    pop_interval_s: float = 1.0,
    drain_s: float = 20.0,
    seed: int = 1,
) -> tuple[Point, LoadResult, list[HopRecord]]:
    """Offer one load to the testbed; its latencies, CPU per host and traces."""
    spec = LoadSpec(
        rate=rate,
        duration_s=duration_s,
        user=bench.user,
        seed=seed,
        pop_interval_s=pop_interval_s,
        drain_s=drain_s,
        max_messages=max(int(rate * duration_s * 3) + 100, 100),
    )
    sampler = CpuSampler(bench.pids)
    sampler.start()
    result = asyncio.run(run_load(bench.scenario, bench.target, spec, run_id=run_id))
    # CPU seconds over the run; as a utilisation, per second of the scheduled
    # window (the drain, when the hosts are nearly idle, would dilute it)
    # minus what the host burns when idle (timers, the POP poller's absence aside)
    raw_cpu = sampler.cpu_seconds()
    queued = sampler.run_queue_seconds()
    machine, wall = sampler.machine_seconds(), sampler.wall_seconds()
    cpu_s = {
        h: max(c - bench.idle_cpu.get(h, 0.0) * result.wall_s, 0.0) for h, c in raw_cpu.items()
    }
    # what else kept this machine's cores busy: other tenants, not the testbed
    foreign = max(machine - sum(raw_cpu.values()) - result.cpu_s, 0.0) / max(wall, 1e-9)
    utilisation = {h: c / max(duration_s, 1e-9) for h, c in cpu_s.items()}
    time.sleep(0.2)  # let the last trace lines reach the files
    hops = read_traces(bench.state_dir, run_id + "-")
    attach_traces(result.records, hops)
    samples = with_out_of_shadow(latency_samples(result.records), result.records)
    # completed within the window (plus a grace for the last ones): in a
    # mailbox, at the remote MX, or refused (SPF) — what a saturated system
    # stops keeping up with
    window_end = result.started + duration_s + COMPLETION_GRACE_S
    done = sum(
        1
        for r in result.records
        if (r.in_mailbox or r.remote or (r.sent if r.outcome == "rejected" else None) or math.inf)
        <= window_end
    )
    early, growth = latency_growth(result.records, result.started, duration_s)
    ours = [h for h in hops if h.host in set(bench.scenario.host_ids)]  # not the remote sinks
    stage_means, residence = stage_profile(ours)
    point = Point(
        rate=rate,
        throughput=done / duration_s,
        latency=quantiles(samples),
        utilisation=utilisation,
        samples=samples,
        stage_means=stage_means,
        residence=residence,
        extra={
            "loadgen": result.summary(),
            "cpu_s": cpu_s,
            "offered": len(result.records) / duration_s,  # the Poisson draw, not the rate
            "early_p50_s": early,
            "latency_growth_s": growth,
            "machine_busy_cores": machine / max(wall, 1e-9),
            "foreign_busy_cores": foreign,
            "seed": seed,
            "window_s": duration_s,
            "grace_s": COMPLETION_GRACE_S,
            "send_path_s": send_path(result.records, hops),
            # the hosts' wait for a core per offered message (schedstat): what processor
            # sharing without wake-ups does not have (docs/calibration.md)
            "run_queue_per_message_s": sum(v for h, v in queued.items() if h not in OUTSIDE_MODEL)
            / max(len(result.records), 1),
        },
    )
    return point, result, ours


#: The first hop of inbound mail: where the load generator's send path ends.
FIRST_HOP_TIER = "gateway0"


def send_path(records: Sequence[MessageRecord], hops: Sequence[HopRecord]) -> dict[str, float]:
    """Scheduled send → arrival at the first hop (gateway0) of inbound mail: the load
    generator's lateness plus a new connection, greeting and EHLO per message, which
    the model's generated message does not pay. ``{n, mean, p95}`` in seconds ({} if none)."""
    sent = {_msg_key(r.msg_id): r.sent for r in records if r.flow == "inbound"}
    delays = [
        h.arrived - sent[key]
        for h in hops
        if h.host.rsplit(".", 1)[0] == FIRST_HOP_TIER and (key := _msg_key(h.msg_id)) in sent
    ]
    if not delays:
        return {}
    arr = np.asarray(delays)
    return {"n": len(arr), "mean": float(arr.mean()), "p95": float(np.quantile(arr, 0.95))}


def _msg_key(msg_id: str) -> str:
    """``<lg-3@loadgen.mailgate>`` → ``lg-3``, as the load generator matches traces."""
    return msg_id.strip().strip("<>").split("@", 1)[0]


def latency_growth(
    records: Sequence[MessageRecord], start: float, duration_s: float
) -> tuple[float, float]:
    """Median send → in mailbox of messages sent in the first third of the
    window, and how much larger it is for the last third (0 if unknown)."""
    thirds: list[list[float]] = [[], []]
    for r in records:
        if r.in_mailbox is None:
            continue
        when = (r.sent - start) / duration_s
        if when < 1 / 3:
            thirds[0].append(r.in_mailbox - r.sent)
        elif when >= 2 / 3:
            thirds[1].append(r.in_mailbox - r.sent)
    if not all(thirds):
        return 0.0, 0.0
    early, late = (float(np.median(t)) for t in thirds)
    return early, late - early


def pop_login_cpu_s(scenario: Scenario) -> float:
    """CPU of one POP3 login as realnet pays it (not traced by realnet): the
    password check of a user who logged in before (realnet may cache the
    scrypt verdict, like Dovecot's auth cache; then this is tiny)."""
    from mailgate.realnet.services.passwords import hash_password, parse_hash, verify_password

    users = scenario.realnet.users
    try:
        n, r, p, _, _ = parse_hash(users[0].password_hash) if users else (16384, 8, 1, b"", b"")
    except ValueError:
        n, r, p = 16384, 8, 1
    stored = hash_password("calibration", n=n, r=r, p=p)
    verify_password("calibration", stored)  # the first login of the run
    c0 = time.thread_time()
    for _ in range(3):
        verify_password("calibration", stored)
    return (time.thread_time() - c0) / 3
