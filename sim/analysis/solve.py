"""``solve(scenario, hour)``: the analytic solver's answer for one clock hour, as a dict
(``mailgate solve --json``), and ``render`` for the terminal.

Per host: utilisation of each resource (cpu, disk, sessions, delivery; the names of
results.json), the mean response time (arrival until hand-on, as results.json's
``hosts.*.response``) and the mean time of each stage; per flow: the mean of each
latency span; the bottleneck and the load multiplier at which it saturates. See
``sim.analysis.solver`` for the model and its approximations.
"""

from __future__ import annotations

import math
from typing import Any

from mailgate.sim.analysis.solver import Solver, _cpu
from mailgate.sim.analysis.solver_paths import Visit
from mailgate.sim.scenario import Scenario, StageCost

RESOURCES = ("cpu", "disk", "sessions", "delivery", "destination")


def default_hour(s: Scenario) -> int:
    """The first clock hour after the warm-up (the hour a one-hour run measures)."""
    return int((s.scenario.start_hour + s.scenario.warmup_h) % 24)


def solve(s: Scenario, hour: int | None = None) -> dict[str, Any]:
    """Utilisation, response times and the bottleneck of ``s`` in clock ``hour``."""
    hour = default_hour(s) if hour is None else hour % 24
    sv = Solver(s, hour)
    t = sv.solve_times()
    hosts: dict[str, Any] = {}
    for name, tier in s.tiers.items():
        h = sv.hosts[name]
        at = [v for v in sv.visits if v.tier == name]
        rate = sum(v.rate for v in at) / h.up
        resp = (
            sum(v.rate * t[id(v)]["response"] for v in at) / sum(v.rate for v in at) if at else None
        )
        util = {
            "cpu": h.cpu.work / h.cpu_cap,
            "disk": h.disk.work,
            "sessions": h.session_hold / h.sessions,
            "delivery": h.delivery_hold / h.delivery,
            # the busiest destination's slots (as results.json's "destination")
            "destination": max((d[1] for d in h.dests.values()), default=0.0) / h.per_dest,
        }
        for i in range(len(tier.hosts)):
            hid = f"{name}.{i}"
            down = sv.down(hid)
            hosts[hid] = {
                "tier": name,
                "up": not down,
                "messages_per_s": 0.0 if down else rate,
                "utilisation": {r: 0.0 if down else u for r, u in util.items()},
                "response_s": None if down else resp,
                "stages": {} if down else _stages(sv, at, t),
            }
    machines = {
        m: {"cores": cores, "utilisation": jobs.work / cores}
        for m, (cores, jobs) in sv.machines.items()
    }
    return {
        "scenario": s.scenario.name,
        "hour": hour,
        "hosts": hosts,
        "machines": machines,
        "flows": _flows(sv, t),
        "bottleneck": _bottleneck(hosts, machines),
    }


def _stages(sv: Solver, at: list[Visit], t: dict[int, dict[str, float]]) -> dict[str, float]:
    """Mean time per stage at a tier (over the visits that run it): its waiting before
    the CPU and the wait for a core go to the first stage of a block, a durable write
    (with its wait for the disk) to the stage that ends with it."""
    total: dict[str, float] = {}
    weight: dict[str, float] = {}
    for v in at:
        h = sv.hosts[v.tier]
        blocks = sv.blocks(v.tier, v.recv, v.size)
        if not v.ends:
            blocks += sv.blocks(v.tier, v.deliver, v.size)
        for b in blocks:
            for k, st in enumerate(b.stages):
                cost = sv.s.tiers[v.tier].cost(st.name) or StageCost()
                x = _cpu(cost, v.size, sv.rcpts, st.per_rcpt)[0] * h.stretch
                if k == 0:
                    x += b.delay + (h.w_cpu + h.wakeups if b.cpu > 0 else 0.0)
                if k == len(b.stages) - 1 and b.fsyncs > 0:
                    x += h.w_disk + b.fsyncs * h.fsync.mean
                total[st.name] = total.get(st.name, 0.0) + v.rate * x
                weight[st.name] = weight.get(st.name, 0.0) + v.rate
    return {k: total[k] / weight[k] for k in total if weight[k] > 0}


def _flows(sv: Solver, t: dict[int, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean latency spans per flow (results.json's names), weighted over its classes."""
    sums: dict[str, dict[str, list[float]]] = {}
    for first in sv.firsts.values():
        spans = _class_spans(sv, first, t)
        acc = sums.setdefault(first.flow, {})
        for span, (value, rate) in spans.items():
            a = acc.setdefault(span, [0.0, 0.0])
            a[0] += value * rate
            a[1] += rate
    return {
        flow: {span: v / w for span, (v, w) in spans.items() if w > 0}
        for flow, spans in sums.items()
    }


def _class_spans(
    sv: Solver, first: Visit, t: dict[int, dict[str, float]]
) -> dict[str, tuple[float, float]]:
    """(mean seconds, messages/s) of each span one class of mail reaches."""
    if first.ends == "rejected":
        return {}
    h = sv.hosts[first.tier]
    accepted = (
        sv.s.workload.send_path_s
        + sv.link(first.size, True)
        + sv.dead_penalty(first.tier, False)
        + h.w_session
        + t[id(first)]["recv"]
    )
    out = {"sent_to_accepted": (accepted, first.rate)}
    after, v = 0.0, first
    while True:
        tv = t[id(v)]
        if v is not first:
            after += (
                sv.link(v.size, False)
                + sv.dead_penalty(v.tier, True)
                + tv["w_session"]
                + tv["recv"]
            )
        if v.ends == "filed":
            out["accepted_to_mailbox"] = (after, v.rate)
            pop = sv.s.pop.interval_s
            residual = (pop.variance + pop.mean**2) / (2 * pop.mean) if pop.mean > 0 else 0.0
            out["sent_to_retrieved"] = (accepted + after + residual, v.rate)
            return out
        after += tv["w_delivery"] + tv["deliver"]
        if v.remote:
            out["sent_to_remote"] = (accepted + after + _remote_time(sv, v, t), v.rate)
            return out
        if v.next is None:
            return out
        v = v.next


def _remote_time(sv: Solver, v: Visit, t: dict[int, dict[str, float]]) -> float:
    """From the hand-on to the Internet until a remote MTA has the message."""
    inet, mta = sv.link(v.size, True), sv.s.internet.remote_mta_s.mean
    ok = inet + mta
    if v.p_fail <= 0:
        return ok
    fail = sv.s.network.internet_rtt_s + mta
    if v.fallback is not None:
        fb, tf = v.fallback, t[id(v.fallback)]
        fail += (
            sv.link(v.size, False)
            + sv.dead_penalty(fb.tier, True)
            + tf["w_session"]
            + tf["recv"]
            + tf["w_delivery"]
            + tf["deliver"]
            + _remote_time(sv, fb, t)
        )
        return (1 - v.p_fail) * ok + v.p_fail * fail
    # deferred: each re-attempt waits a backoff (to the next queue run) and runs the
    # delivery plan again
    r = sv.s.retry
    again = r.minimal_backoff_s + r.queue_run_delay_s / 2 + t[id(v)]["deliver"] + fail
    return ok + v.retries * again


def _bottleneck(hosts: dict[str, Any], machines: dict[str, Any]) -> dict[str, Any]:
    ranking = [
        (u, hid, res) for hid, h in hosts.items() for res, u in h["utilisation"].items() if u > 0
    ] + [(m["utilisation"], f"machine {name}", "cpu") for name, m in machines.items()]
    ranking.sort(reverse=True)
    if not ranking:
        return {}
    u, hid, res = ranking[0]
    return {
        "host": hid,
        "resource": res,
        "utilisation": u,
        "multiplier": 1 / u if u > 0 else math.inf,
        "ranking": [
            {"host": h, "resource": r, "utilisation": x, "multiplier": 1 / x}
            for x, h, r in ranking[:8]
        ],
    }


def render(result: dict[str, Any]) -> str:
    """The solver's answer as text for the terminal."""
    lines = [f"{result['scenario']}: clock hour {result['hour']:02d}-{result['hour'] + 1:02d}"]
    lines.append(
        f"{'host':<14}{'msg/s':>8}{'cpu':>8}{'disk':>8}{'sess':>8}{'deliv':>8}{'dest':>8}"
        f"{'response':>12}"
    )
    for hid, h in result["hosts"].items():
        u = h["utilisation"]
        resp = "down" if not h["up"] else _ms(h["response_s"])
        lines.append(
            f"{hid:<14}{h['messages_per_s']:8.2f}"
            + "".join(f"{100 * u[r]:7.1f}%" for r in RESOURCES)
            + f"{resp:>12}"
        )
    for name, m in result["machines"].items():
        lines.append(f"machine {name}: {m['cores']} cores, cpu {100 * m['utilisation']:.1f}%")
    lines.append("flows (mean):")
    for flow, spans in result["flows"].items():
        lines.append(f"  {flow:<9}" + "  ".join(f"{k} {_ms(v)}" for k, v in spans.items()))
    b = result["bottleneck"]
    if b:
        lines.append(
            f"bottleneck: {b['host']} {b['resource']} at {100 * b['utilisation']:.1f}%;"
            f" saturates at {b['multiplier']:.2f}x this hour's load"
        )
    return "\n".join(lines)


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{1000 * seconds:.2f} ms" if seconds < 10 else f"{seconds:.1f} s"
