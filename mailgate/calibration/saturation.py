"""The saturation throughput and what saturates first: the ramp that finds it
on the testbed, the model's own bottleneck, and the utilisation law
(U = X·D) that estimates it from one load and adds the CPU of the testbed's
processes the model does not have.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mailgate.calibration.points import OUTSIDE_MODEL, Point


@dataclass
class Saturation:
    """The throughput where the system stops keeping up, and who gives out first."""

    throughput: float  # messages/s
    first_host: str
    method: str
    steps: list[dict[str, Any]] = field(default_factory=list)


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
    that kept up, or of one whose completions fell behind (its completions per
    second of window and grace are the ceiling); what
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
                "ceiling": _ceiling(point),
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
    best = max((s["ceiling"] if s["behind"] else s["throughput"] for s in kept_up), default=0.0)
    assert failed is not None
    return Saturation(best, saturated_first(failed.utilisation, host_busy), "ramp", steps)


def _ceiling(point: Point) -> float:
    """What a step that fell behind completed per second: its completions ran over the
    window *and* the grace after it (a saturated server was busy all that time), so
    per second of both, not of the window alone (which would overstate it by
    (window + grace) / window). Without the window known, its throughput."""
    window, grace = point.extra.get("window_s"), point.extra.get("grace_s", 0.0)
    if not window:
        return point.throughput
    return point.throughput * window / (window + grace)


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


def utilisation_law_saturation(
    point: Point, machine_cores: float, per_host_cores: float = 1.0
) -> tuple[float, str]:
    """Saturation throughput from one point's utilisations (U = X·D).

    Each host's demand per message is ``D = U / X``; a host saturates at
    ``per_host_cores / D`` and the machine at ``cores / ΣD``. Returns
    the smaller and who it is (a host id or ``machine``).
    """
    x = point.rate
    demands = {h: u / x for h, u in point.utilisation.items() if u > 0 and x > 0}
    if not demands:
        return math.inf, ""
    host, d = max(demands.items(), key=lambda kv: kv[1])
    host_limit = per_host_cores / d
    machine_limit = machine_cores / sum(demands.values())
    if machine_limit < host_limit:
        return machine_limit, "machine"
    return host_limit, host


def first_host(name: str) -> str:
    """What saturates first, comparable across worlds: a host id or ``machine``."""
    return "machine" if name.startswith("machine") else name


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
