"""What a sweep reports at each point: metrics named on the command line
(``--metric``), read from the point's results (the ``results.json`` of its
replications combined, as ``mailgate run`` writes it).

Names:

- ``STAT.FLOW[.SPAN]``: latency, STAT one of mean, p50, p95, p99, max; FLOW inbound,
  outbound or internal; SPAN (default: the span of the flow's SLO objective, else
  accepted_to_mailbox for inbound and internal mail and sent_to_remote for outbound
  mail and for textbook ``stations`` scenarios);
- ``slo``: pass when every objective holds (merged over replications), else fail;
- ``util.busiest``: the peak utilisation of the busiest resource (the bottleneck's);
  ``bottleneck``: which host and resource that is; ``multiplier``: the load multiplier
  at which it saturates (utilisation law);
- ``util.HOST.RESOURCE`` / ``peak.HOST.RESOURCE``: a host's mean / busiest-bucket
  utilisation (RESOURCE cpu, sessions, delivery or disk; HOST e.g. gateway1.0);
- ``count.NAME``: an outcome count summed over replications (generated, delivered,
  rejected, quarantined, deferred, bounced, in_flight).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mailgate.sim.analysis.formatting import percent, seconds
from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.errors import UserError

STATS = ("mean", "p50", "p95", "p99", "max")
FLOWS = ("inbound", "outbound", "internal")
SPANS = ("accepted_to_mailbox", "sent_to_retrieved", "sent_to_remote", "sent_to_accepted")
RESOURCES = ("cpu", "sessions", "delivery", "disk")
COUNTS = ("generated", "delivered", "rejected", "quarantined", "deferred", "bounced", "in_flight")


@dataclass(frozen=True)
class Metric:
    """One metric: its name as given, what it reads, and its SLO limit if it has one."""

    name: str
    kind: str
    parts: tuple[str, ...] = ()
    limit: float | None = None

    @property
    def numeric(self) -> bool:
        """Can be plotted (``slo`` plots as 1 for pass, 0 for fail)."""
        return self.kind != "bottleneck"

    def value(self, d: dict[str, Any]) -> Any:
        """The metric in a results dict (None when it has no value there)."""
        p = self.parts
        if self.kind == "latency":
            return d["latency"][p[1]][p[2]].get(p[0])
        if self.kind == "slo":
            return "pass" if all(o["ok"] for o in d["slo"]) else "fail"
        if self.kind in ("busiest", "bottleneck", "multiplier"):
            b = d["bottleneck"]
            if not b:
                return None
            key = {"busiest": "peak_utilisation", "multiplier": "multiplier"}.get(self.kind)
            return b[key] if key else f"{b['host']} {b['resource']}"
        if self.kind == "util":
            host = d["hosts"].get(p[1])
            return host["utilisation"][p[2]][p[0]] if host else None
        return d["counts"][p[0]]

    def number(self, d: dict[str, Any]) -> float | None:
        """The value as a number for plots."""
        v = self.value(d)
        if self.kind == "slo":
            return 1.0 if v == "pass" else 0.0
        return float(v) if isinstance(v, int | float) else None

    def ci95(self, d: dict[str, Any]) -> list[float] | None:
        """Its 95 % interval over replications, where results.json has one."""
        p = self.parts
        if self.kind == "latency" and p[0] in ("mean", "p95"):
            return d["latency"][p[1]][p[2]].get(f"{p[0]}_ci95")
        if self.kind == "util" and p[0] == "mean" and p[1] in d["hosts"]:
            u = d["hosts"][p[1]]["utilisation"][p[2]]
            if u.get("mean_ci95") is not None:
                return [u["mean"] - u["mean_ci95"], u["mean"] + u["mean_ci95"]]
        return None

    def text(self, v: Any) -> str:
        """A value as the table shows it."""
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return "-"
        if self.kind == "latency":
            return seconds(v)
        if self.kind in ("util", "busiest"):
            return percent(v)
        if self.kind == "multiplier":
            return f"{v:.1f}×"
        if self.kind == "count":
            return f"{v:,}"
        return str(v)


def default_span(flow: str, scenario: Scenario) -> str:
    """The span a flow's latency is read on when the name does not say."""
    for o in scenario.slo.objectives:
        if o.flow == flow:
            return o.span
    if flow == "outbound" or scenario.scenario.kind == "stations":
        return "sent_to_remote"
    return "accepted_to_mailbox"


def _latency(name: str, parts: list[str], scenario: Scenario) -> Metric:
    if len(parts) not in (2, 3) or parts[1] not in FLOWS:
        raise UserError(f"--metric {name}: expected STAT.FLOW[.SPAN], FLOW one of {FLOWS}")
    span = parts[2] if len(parts) == 3 else default_span(parts[1], scenario)
    if span not in SPANS:
        raise UserError(f"--metric {name}: unknown span {span!r}; spans are {', '.join(SPANS)}")
    limit = None
    for o in scenario.slo.objectives:
        q = f"p{o.quantile * 100:g}"
        if (o.flow, o.span, q) == (parts[1], span, parts[0]):
            limit = o.max_s
    return Metric(name, "latency", (parts[0], parts[1], span), limit)


def _host(name: str, rest: str, hosts: set[str]) -> tuple[str, str]:
    host, _, res = rest.rpartition(".")
    if res not in RESOURCES:
        raise UserError(f"--metric {name}: the resource is one of {', '.join(RESOURCES)}")
    if host not in hosts:
        raise UserError(f"--metric {name}: no host {host!r}; hosts are {', '.join(sorted(hosts))}")
    return host, res


def parse_metric(name: str, scenarios: Sequence[Scenario]) -> Metric:
    """A ``--metric`` name checked against the sweep's scenarios (hosts, objectives)."""
    parts = name.split(".")
    if parts[0] in STATS:
        return _latency(name, parts, scenarios[0])
    if name in ("slo", "bottleneck", "multiplier"):
        return Metric(name, name)
    if name == "util.busiest":
        return Metric(name, "busiest")
    if parts[0] in ("util", "peak") and len(parts) > 2:
        hosts = {h for s in scenarios for h in s.host_ids}
        host, res = _host(name, name.partition(".")[2], hosts)
        return Metric(name, "util", ("mean" if parts[0] == "util" else "peak", host, res))
    if parts[0] == "count" and len(parts) == 2 and parts[1] in COUNTS:
        return Metric(name, "count", (parts[1],))
    raise UserError(
        f"--metric {name}: unknown metric; use STAT.FLOW[.SPAN] (STAT {'/'.join(STATS)}), "
        "slo, util.busiest, bottleneck, multiplier, util.HOST.RESOURCE, peak.HOST.RESOURCE "
        f"or count.NAME ({', '.join(COUNTS)})"
    )


def default_metrics(scenario: Scenario) -> list[str]:
    """Each latency objective's quantile (else p95 of each flow), the SLO verdict, the
    busiest resource's utilisation and which one it is."""
    names = []
    for o in scenario.slo.objectives:
        short = f"p{o.quantile * 100:g}.{o.flow}"
        names.append(short if default_span(o.flow, scenario) == o.span else f"{short}.{o.span}")
    if not names:
        flows = ("inbound",) if scenario.scenario.kind == "stations" else FLOWS
        names = [f"p95.{f}" for f in flows]
    return [*dict.fromkeys(names), "slo", "util.busiest", "bottleneck"]
