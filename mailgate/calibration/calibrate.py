"""``mailgate calibrate``: measure the real relays, fit the model, compare.

Steps, each bounded in count and time:

1. bring the loopback testbed up (``realnet.supervisor.Testbed``);
2. find its saturation throughput by ramping the offered load until the
   delivered throughput stops following it or latency explodes;
3. run realnet at 10/30/50/70/90 % of that (or ``--rates``), recording each
   message's times (``realnet.loadgen``), each host's CPU (``realnet.cpu``)
   and each hop's stage trace;
4. fit the stage costs from the lowest load (``realnet.fit``) into an overlay
   that extends the testbed scenario (its deployment: every host one
   process, all sharing the machine's cores);
5. run the model at the same loads on that overlay and put the two side by
   side: latency quantiles per flow, saturation throughput and the first
   host to saturate, per-host CPU, plots, ``calibration.json``; where they
   depart, the stage whose modelled time departs most is named.

Exit code 3 when a relative error exceeds ``--tolerance``.

The realnet side and the model side meet only in data (MessageRecords,
HopRecords, utilisations): the comparison and the report are in
``realnet.compare``, tested without either running.
"""

from __future__ import annotations

import asyncio
import math
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mailgate.calibration.compare import (
    OUTSIDE_MODEL,
    QUANTILES,
    Point,
    Saturation,
    build_report,
    format_report,
    latency_samples,
    machine_cores,
    quantiles,
    stage_profile,
    utilisation_law_saturation,
    write_outputs,
)
from mailgate.calibration.cpu import CpuSampler
from mailgate.calibration.fit import (
    Fit,
    add_measured_stage,
    attribute_untraced_cpu,
    fit_traces,
    write_overlay,
)
from mailgate.realnet.load.loadgen import (
    LoadResult,
    LoadSpec,
    Target,
    attach_traces,
    flow_shares,
    run_load,
)
from mailgate.realnet.load.mailclients import Auth
from mailgate.realnet.relay.tracing import read_traces
from mailgate.sim.scenario.loading import load
from mailgate.sim.scenario.records import HopRecord, MessageRecord
from mailgate.sim.scenario.topology import MAILBOX, Scenario

EXIT_TOLERANCE = 3
#: Loads of the default sweep, as shares of the measured saturation throughput.
DEFAULT_LOADS = (0.1, 0.3, 0.5, 0.7, 0.9)
#: A message completing this long after the end of the window still counts
#: as keeping up (the ones sent last need their send → mailbox time).
COMPLETION_GRACE_S = 1.0


# ---------------------------------------------------------------- realnet side


def parse_rates(text: str) -> list[float]:
    """``"5,10.5,20"`` → ``[5.0, 10.5, 20.0]`` (sorted, each > 0)."""
    from mailgate.sim.scenario.errors import UserError

    try:
        rates = sorted(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UserError(f"--rates: expected numbers separated by commas, got {text!r}") from None
    if not rates or any(r <= 0 or not math.isfinite(r) for r in rates):
        raise UserError(f"--rates: every rate must be a number > 0, got {text!r}")
    return rates


@dataclass
class Bench:
    """What a calibration needs from a running testbed."""

    scenario: Scenario
    target: Target
    state_dir: Path
    pids: Mapping[str, int]  # host id -> PID
    user: Auth
    idle_cpu: dict[str, float] = field(default_factory=dict)  # host -> CPU s per s when idle


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
    samples = latency_samples(result.records)
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
        },
    )
    return point, result, ours


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


def find_saturation(
    run: Callable[[float], Point],
    *,
    start_rate: float = 4.0,
    factor: float = 1.5,
    max_steps: int = 10,
    refine: int = 2,
    follow: float = 0.95,
    grow_s: float = 0.25,
    explode: float = 10.0,
    host_busy: float = 0.9,
) -> Saturation:
    """Ramp the offered load ×``factor`` until completed throughput stops
    following it (below ``follow`` × the messages actually scheduled, or the
    median send → in mailbox of the step's last third exceeds its first
    third's by ``grow_s`` and 3× — a growing backlog), or p95 send → in
    mailbox exceeds ``explode`` × its value at the first step (and 1 s);
    then ``refine`` bisection steps between the last good and the first
    failing rate. Bounded: at most ``max_steps + refine`` runs.

    The saturation throughput is the largest completed throughput of a step
    that kept up, or of one whose completions fell behind (its throughput is
    the ceiling); what
    saturates first is the host whose process was at least ``host_busy`` of a
    core at the first failing step, else ``machine`` (see ``saturated_first``).
    """
    steps: list[dict[str, Any]] = []
    base: list[float] = []

    def step(rate: float) -> tuple[bool, Point]:
        point = run(rate)
        p95 = _pooled_p95(point)
        if not base and p95 is not None:
            base.append(p95)
        exploded = p95 is not None and bool(base) and p95 > max(explode * base[0], 1.0)
        behind = point.throughput < follow * point.extra.get("offered", rate)
        # open loop past capacity: the backlog, and so the latency, grows through the step
        growth = point.extra.get("latency_growth_s", 0.0)
        growing = growth > max(grow_s, 3 * point.extra.get("early_p50_s", 0.0))
        lagging = behind or growing
        steps.append(
            {
                "rate": rate,
                "throughput": point.throughput,
                "p95_in_mailbox_s": p95,
                "utilisation": point.utilisation,
                "lagging": lagging,
                "behind": behind,
                "exploded": exploded,
                "latency_growth_s": growth,
            }
        )
        return lagging or exploded, point

    good, bad, failed = 0.0, math.inf, None
    rate = start_rate
    for _ in range(max_steps):
        failing, point = step(rate)
        if failing:
            bad, failed = rate, point
            break
        good, failed = rate, point
        rate *= factor
    for _ in range(refine if good and math.isfinite(bad) else 0):
        mid = math.sqrt(good * bad)
        failing, point = step(mid)
        if failing:
            bad, failed = mid, point
        else:
            good = mid
    kept_up = [s for s in steps if s["behind"] or not (s["lagging"] or s["exploded"])]
    best = max((s["throughput"] for s in kept_up), default=0.0)
    assert failed is not None
    return Saturation(best, saturated_first(failed.utilisation, host_busy), "ramp", steps)


def saturated_first(utilisation: Mapping[str, float], host_busy: float = 0.9) -> str:
    """The host whose one process was (nearly) a full core busy, or ``machine``
    when none was: then the hosts together ran out of the machine's cores."""
    if not utilisation:
        return ""
    host, u = max(utilisation.items(), key=lambda kv: kv[1])
    return host if u >= host_busy else "machine"


def _pooled_p95(point: Point) -> float | None:
    values = [v for vs in point.samples.get("in_mailbox", {}).values() for v in vs]
    return float(np.quantile(values, 0.95)) if values else None


# ---------------------------------------------------------------- model side


def model_overrides(
    scenario: Scenario,
    rate: float,
    shares: Mapping[str, float],
    pop_interval_s: float,
    horizon_s: float,
) -> dict[str, Any]:
    """Dotted overrides that make the model offer what the load generator offered.

    One receiving mailbox (the load generator's user) polled every
    ``pop_interval_s``; a flat profile at ``rate`` messages/s split as
    ``shares``; one recipient per message; no viruses; no remote failures.
    """
    inbound = shares.get("inbound", 0.0) * rate * 86400
    submitted = (shares.get("outbound", 0.0) + shares.get("internal", 0.0)) * rate * 86400
    internal_share = shares.get("internal", 0.0) / max(
        shares.get("outbound", 0.0) + shares.get("internal", 0.0), 1e-12
    )
    return {
        "population.mailboxes": 1,
        "workload.inbound_per_mailbox_day": inbound,
        "workload.outbound_per_mailbox_day": submitted,
        "workload.internal_share": internal_share,
        "workload.recipients": 1,
        "workload.virus_share": 0.0,
        "workload.diurnal.inbound": "flat",
        "workload.diurnal.outbound": "flat",
        "workload.surges": [],
        "pop.active_share": 1.0,
        "pop.interval_s": pop_interval_s,
        "internet.temp_fail_prob": 0.0,
        "scenario.duration_h": horizon_s / 3600,
        "scenario.warmup_h": min(horizon_s / 10, 60.0) / 3600,
        "scenario.replications": 1,
        "failures.host_down": [],
        "failures.remote_outage": [],
        "failures.dns_slow": [],
    }


def model_point(
    overlay: Path,
    rate: float,
    shares: Mapping[str, float],
    *,
    pop_interval_s: float,
    horizon_s: float,
    seed: int = 1,
) -> Point:
    """Run the model on the fitted overlay at one load."""
    from mailgate.sim.model.simulate import simulate  # the model (sim-model branch): import late

    base = load(overlay)
    scenario = load(overlay, model_overrides(base, rate, shares, pop_interval_s, horizon_s))
    hops: list[HopRecord] = []
    messages: list[MessageRecord] = []

    def trace(record: HopRecord | MessageRecord) -> None:
        (hops if isinstance(record, HopRecord) else messages).append(record)

    results = simulate(scenario, seed=seed, progress=False, trace=trace)
    return point_from_model(rate, results, hops, messages, scenario)


def point_from_model(
    rate: float,
    results: Any,
    hops: Sequence[HopRecord],
    messages: Sequence[MessageRecord],
    scenario: Scenario,
) -> Point:
    """Read a model run into a Point.

    send → in mailbox comes from the model's MessageRecords (sent is the
    generation time, like the load generator's schedule); send → retrieved
    from its histograms (its MessageRecords are written before retrieval).
    """
    warm = scenario.scenario.warmup_h * 3600
    counted = [m for m in messages if m.sent >= warm]
    samples = latency_samples(counted)
    latency = quantiles(samples)
    latency["retrieved"] = {}
    for flow in ("inbound", "internal"):
        summary = results.latency(flow, "sent_to_retrieved")
        if summary.get("count"):
            latency["retrieved"][flow] = {
                "n": summary["count"],
                **{f"p{round(q * 100)}": summary[f"p{round(q * 100)}"] for q in QUANTILES},
            }
    samples.pop("retrieved", None)
    stage_means, residence = stage_profile(h for h in hops if h.arrived >= warm)
    horizon = scenario.scenario.duration_h * 3600
    done = sum(1 for m in counted if m.in_mailbox or m.remote or m.outcome == "rejected")
    bottleneck = dict(getattr(results, "bottleneck", {}) or {})
    return Point(
        rate=rate,
        throughput=done / horizon if horizon else 0.0,
        latency=latency,
        utilisation=model_utilisation(results),
        samples=samples,
        stage_means=stage_means,
        residence=residence,
        extra={
            "bottleneck": {k: bottleneck.get(k) for k in ("host", "resource", "multiplier")},
            "wall_s": getattr(results, "wall_s", None),
        },
    )


def model_utilisation(results: Any) -> dict[str, float]:
    """Per-host CPU utilisation as a share of one core (like /proc) from the model."""
    out = {}
    for host, row in results.host_table().items():
        cpu = row["utilisation"]["cpu"]
        out[host] = float(cpu["mean"]) * float(cpu["capacity"])
    return out


def model_saturation(point: Point) -> Saturation:
    """The model's own bottleneck: the load at which its busiest resource reaches 100 %."""
    b = point.extra.get("bottleneck") or {}
    if b.get("multiplier"):
        host = str(b["host"])
        who = "machine" if host.startswith("machine") else host
        return Saturation(
            point.rate * float(b["multiplier"]),
            who,
            f"model bottleneck ({b['host']} {b['resource']}) at {point.rate:g} msg/s",
        )
    x, who = utilisation_law_saturation(point, 2)
    return Saturation(x, who, "utilisation law on the model")


def with_outside_cpu(sat: Saturation, outside_s: float, cores: int) -> Saturation:
    """The model's machine saturation once the testbed's processes that are not
    in the model (DNS server, remote sinks, load generator) take their share.

    Utilisation law: the model's hosts need ``D = cores / X`` core-seconds per
    message at the machine bottleneck; with ``outside_s`` more per message
    (measured), the cores run out at ``cores / (D + outside_s)``. A host
    bottleneck is unaffected (its own process, not the machine, limits it).
    """
    if sat.first_host != "machine" or not sat.throughput or not math.isfinite(sat.throughput):
        return sat
    demand = cores / sat.throughput
    x = cores / (demand + outside_s)
    method = (
        f"{sat.method}, plus {outside_s * 1e3:.2f} ms of CPU per message measured in the "
        "testbed's processes outside the model (DNS, remote sinks, load generator)"
    )
    return Saturation(x, sat.first_host, method, [{"model_alone": sat.throughput}])


def outside_cpu_per_message(point: Point) -> float:
    """CPU seconds per offered message of the DNS server, remote sinks and load generator."""
    if not point.rate:
        return 0.0
    outside = sum(u for h, u in point.utilisation.items() if h in OUTSIDE_MODEL) / point.rate
    lg = point.extra.get("loadgen", {})
    loadgen = (
        lg.get("loadgen_cpu_share", 0.0) * lg.get("wall_s", 0.0) / max(lg.get("messages", 1), 1)
    )
    return outside + loadgen


# ---------------------------------------------------------------- the command


@dataclass
class Options:
    """The command's settings (from argparse, or a test)."""

    scenario: str
    rates: list[float] | None = None
    duration_s: float = 30.0
    tolerance: float = 0.15
    out: Path = Path("results/calibration")
    user: Auth = field(default_factory=lambda: Auth("selftest", "selftest"))
    pop_interval_s: float = 1.0
    ramp_step_s: float = 8.0
    model_horizon_s: float = 300.0
    seed: int = 1
    command: str = "mailgate calibrate"
    #: dotted overrides for the testbed only (e.g. another address prefix)
    testbed_overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class Measurement:
    """Everything the realnet side of a calibration produced."""

    scenario: Scenario
    saturation: Saturation | None
    points: list[Point]
    low_hops: list[HopRecord]  # traces of the lowest load
    low_point: Point
    pop_cpu_s: float  # CPU of one POP login (scrypt), measured in-process


def measure_testbed(opts: Options, log: Callable[[str], None] = print) -> Measurement:
    """Bring the testbed up, ramp to saturation (or not), sweep the loads, stop it."""
    from mailgate.realnet.testbed.supervisor import Testbed  # a sibling's work: import late

    with tempfile.TemporaryDirectory(prefix="mailgate-calibrate-") as tmp:
        state = Path(tmp)
        with Testbed(opts.scenario, overrides=opts.testbed_overrides, state_dir=state) as testbed:
            bench = bench_from_testbed(testbed, opts.user)
            log("warming up the testbed …")
            warm_up(bench)
            counter = iter(range(10_000))
            hops_by_rate: dict[float, list[HopRecord]] = {}

            def run(rate: float, duration: float) -> Point:
                run_id = f"cal{next(counter)}"
                log(f"  realnet {rate:.2f} msg/s for {duration:g} s …")
                point, _, hops = measure(
                    bench,
                    rate,
                    duration,
                    run_id,
                    pop_interval_s=opts.pop_interval_s,
                    seed=opts.seed,
                )
                hops_by_rate[rate] = hops  # (the load generator logs its own warnings)
                return point

            sat = None
            if opts.rates is None:
                log("finding the saturation throughput (ramp) …")
                sat = find_saturation(lambda r: run(r, opts.ramp_step_s))
                rates = [round(share * sat.throughput, 2) for share in DEFAULT_LOADS]
            else:
                rates = list(opts.rates)
            log(f"sweep at {', '.join(f'{r:g}' for r in rates)} msg/s")
            points = [run(r, opts.duration_s) for r in rates]
            low = min(points, key=lambda p: p.rate)
            return Measurement(
                scenario=bench.scenario,
                saturation=sat,
                points=points,
                low_hops=hops_by_rate[low.rate],
                low_point=low,
                pop_cpu_s=pop_login_cpu_s(bench.scenario),
            )


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


def fit_measurement(m: Measurement, opts: Options) -> tuple[Fit, Path]:
    """Fit the lowest load's traces (+ /proc for untraced CPU) into ``fitted.toml``."""
    fit = fit_traces(m.low_hops, m.scenario)
    add_measured_stage(fit, MAILBOX, "pop_session", m.pop_cpu_s)
    if (MAILBOX, "submission") not in fit.stages:  # older realnet traced it as smtp_receive
        add_measured_stage(fit, MAILBOX, "submission", 0.0)
    polls = m.low_point.extra.get("loadgen", {}).get("pop_polls", 0)
    residual = attribute_untraced_cpu(
        fit,
        m.low_hops,
        m.low_point.extra.get("cpu_s", {}),
        extra_cpu_s={MAILBOX: polls * m.pop_cpu_s},
    )
    m.low_point.extra["untraced_cpu_per_message_s"] = residual
    submission_on_top_of_receive(fit)
    overlay = write_overlay(fit, Path(opts.scenario), opts.out / "fitted.toml", m.scenario)
    parent = production_base(Path(opts.scenario))
    if parent is not None:
        # the planners' question: the same stage costs on the production deployment
        write_overlay(
            fit, parent, opts.out / "fitted-production.toml", m.scenario, stages_only=True
        )
    return fit, overlay


def submission_on_top_of_receive(fit: Fit) -> None:
    """realnet traces a PC's whole session as ``submission``; the model runs
    ``smtp_receive`` *and* ``submission`` for it (sim.model: submission is
    the AUTH on top of the dialogue), so the overlay's submission is the
    difference."""
    sub = fit.stages.get((MAILBOX, "submission"))
    recv = fit.stages.get((MAILBOX, "smtp_receive"))
    if sub is None or recv is None or sub.source == "measured in-process":
        return
    sub.cpu_fixed_s = max(sub.cpu_fixed_s - recv.cpu_fixed_s, 0.0)
    sub.cpu_per_kb_s = max(sub.cpu_per_kb_s - recv.cpu_per_kb_s, 0.0)
    sub.cpu_sigma = 0.0
    sub.source += " − smtp_receive"


def production_base(testbed: Path) -> Path | None:
    """The scenario the testbed file ``extends`` (its production original), if any."""
    import tomllib

    with testbed.open("rb") as f:
        parent = tomllib.load(f).get("extends")
    return testbed.parent / parent if isinstance(parent, str) else None


def calibrate(opts: Options, log: Callable[[str], None] = print) -> tuple[dict[str, Any], int]:
    """Run the whole calibration; returns the report and the exit code."""
    t_start = time.monotonic()
    m = measure_testbed(opts, log)
    fit, overlay = fit_measurement(m, opts)
    x, who = utilisation_law_saturation(m.low_point, machine_cores(m.scenario))
    law = {"throughput": x, "first_host": who, "at_rate": m.low_point.rate}
    sat = m.saturation
    if sat is None:
        # no ramp: estimate measured saturation from the utilisation law at the lowest load
        sat = Saturation(x, who, "utilisation law at the lowest load")
    sat.steps = [*sat.steps, {"utilisation_law_estimate": law}]
    log("running the model at the same loads …")
    shares = flow_shares(m.scenario)
    horizon = max(opts.model_horizon_s, opts.duration_s)
    modelled = [
        model_point(
            overlay,
            p.rate,
            shares,
            pop_interval_s=opts.pop_interval_s,
            horizon_s=horizon,
            seed=opts.seed,
        )
        for p in m.points
    ]
    sat_model = with_outside_cpu(
        model_saturation(min(modelled, key=lambda p: p.rate)),
        outside_cpu_per_message(m.low_point),
        machine_cores(m.scenario),
    )
    report, failures = build_report(
        scenario_path=opts.scenario,
        command=opts.command,
        measured=m.points,
        modelled=modelled,
        saturation_measured=sat,
        saturation_modelled=sat_model,
        fit=fit,
        overlay=overlay,
        tolerance=opts.tolerance,
        wall_s=time.monotonic() - t_start,
    )
    write_outputs(report, m.points, modelled, opts.out)
    return report, (EXIT_TOLERANCE if failures else 0)


def bench_from_testbed(testbed: Any, user: Auth) -> Bench:
    """Adapt the supervisor's ``Testbed`` to what calibration needs."""
    return Bench(
        scenario=testbed.scenario,
        target=Target.from_plan(testbed.plan),
        state_dir=Path(testbed.state_dir),
        pids={host: proc.pid for host, proc in testbed.procs.items()},
        user=user,
    )


def calibrate_command(args: Any) -> int:
    """``mailgate calibrate SCENARIO [--rates R,…|--auto] [--duration S] …``.

    The PC user is the scenario's first ``[[realnet.users]]``; its password
    comes from ``MAILGATE_PROBE_PASSWORD`` or is the user name (as for the
    probe; the testbed's self-test user has password "selftest").
    """
    import os

    from mailgate.sim.scenario.errors import UserError

    users = load(args.scenario).realnet.users
    if not users:
        raise UserError(f"{args.scenario}: no [[realnet.users]] to submit mail and read POP as")
    name = users[0].name
    opts = Options(
        scenario=args.scenario,
        user=Auth(name, os.environ.get("MAILGATE_PROBE_PASSWORD", name)),
        rates=parse_rates(args.rates) if args.rates else None,
        duration_s=args.duration,
        tolerance=args.tolerance,
        out=Path(args.out or "results/calibration"),
        command=" ".join(["mailgate", *sys.argv[1:]]),
    )
    report, code = calibrate(opts, log=lambda s: print(s, file=sys.stderr))
    print(format_report(report))
    print(f"wrote {opts.out / 'calibration.json'} and {opts.out / 'report.md'}")
    return code
