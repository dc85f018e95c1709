"""``mailgate check``: validate a scenario and summarise it for a planner.

Prints hosts per tier, offered load per tier (messages/s at the daily mean
and in the peak hour), POP sessions/s, an estimate of each host's CPU
utilisation in the peak hour, and warnings for anything suspicious.
"""

from __future__ import annotations

from typing import Any

from mailgate.sim.analysis.offered import pop_sessions_per_s, tier_loads
from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.topology import MAILBOX

#: Peak-hour CPU utilisation above which a host is flagged.
HOT = 0.8


def summarise(s: Scenario) -> dict[str, Any]:
    """The check summary as plain data."""
    loads = tier_loads(s)
    tiers = []
    for name, tier in s.tiers.items():
        load = loads[name]
        cores = min(h.cores for h in tier.hosts)
        tiers.append(
            {
                "tier": name,
                "role": tier.role,
                "hosts": len(tier.hosts),
                "cores_per_host": cores,
                "stages": list(tier.stages),
                "next_hop": tier.next_hop,
                "fallback": tier.fallback,
                "mean_msgs_per_s": load.mean,
                "peak_msgs_per_s": load.peak,
                "peak_hour": load.hourly.index(load.peak),
                "cpu_ms_per_msg": load.cpu_s_per_message * 1e3,
                "peak_cpu_utilisation": load.peak_cpu_utilisation(cores),
                "peak_disk_utilisation": load.peak_disk_utilisation(
                    max(h.fsync_s.mean for h in tier.hosts)
                ),
            }
        )
    return {
        "scenario": s.scenario.name,
        "source": s.source,
        "mailboxes": s.population.mailboxes,
        "domains": list(s.population.domains),
        "messages_per_day": {f: s.daily_messages(f) for f in ("inbound", "outbound", "internal")},
        "pop_sessions_per_s": pop_sessions_per_s(s),
        "tiers": tiers,
        "warnings": warnings(s, tiers),
    }


def warnings(s: Scenario, tiers: list[dict[str, Any]]) -> list[str]:
    """Things a planner should look at twice."""
    out = []
    for t in tiers:
        for resource in ("cpu", "disk"):
            u = t[f"peak_{resource}_utilisation"]
            if u >= 1:
                out.append(
                    f"{t['tier']}: estimated peak-hour {resource} {u:.0%} — "
                    "overloaded: queues grow without bound in the peak"
                )
            elif u >= HOT:
                out.append(
                    f"{t['tier']}: estimated peak-hour {resource} {u:.0%} "
                    f"(≥ {HOT:.0%}): waiting times climb steeply here"
                )
        if t["hosts"] == 1 and t["tier"] != MAILBOX:
            out.append(f"{t['tier']}: a single host — no twin to fail over to")
    run_h = s.scenario.warmup_h + s.scenario.duration_h
    for surge in s.workload.surges:
        if surge.start_h >= run_h:
            out.append(f"a {surge.flow} surge starts at {surge.start_h} h, after the run ends")
    for outage in s.failures.remote_outage:
        if outage.start_h >= run_h:
            out.append(f"the outage of {outage.domain} starts after the run ends")
    for down in s.failures.host_down:
        if down.start_h >= run_h:
            out.append(f"{down.host} goes down at {down.start_h} h, after the run ends")
        elif down.start_h < s.scenario.warmup_h:
            out.append(f"{down.host} goes down during the warm-up; its effect is partly cut")
    if s.scenario.warmup_h == 0:
        out.append("no warm-up: statistics include the empty start")
    if s.workload.diurnal.outbound.peak_factor / 24 > 0.15 + 1e-9:
        share = s.workload.diurnal.outbound.peak_factor / 24
        out.append(f"outbound peak hour carries {share:.0%} of the day (SPECmail2001 uses 15 %)")
    for m in s.deployment.machines:
        demand = sum(
            min(h.cores, m.processes_per_host or h.cores)
            for name, tier in s.tiers.items()
            for i, h in enumerate(tier.hosts)
            if s.deployment.machine_of(f"{name}.{i}") is m
        )
        if demand > m.cores:
            out.append(
                f"machine {m.name}: its hosts could use {demand} cores but it has {m.cores}; "
                "they compete for CPU"
            )
    return out


def render(summary: dict[str, Any]) -> str:
    """The summary as a table a planner reads at a glance."""
    lines = [
        f"scenario {summary['scenario']} ({summary['source']}): valid",
        f"  {summary['mailboxes']:,} mailboxes in {', '.join(summary['domains'])}",
        "  messages/day: "
        + ", ".join(f"{k} {v:,.0f}" for k, v in summary["messages_per_day"].items()),
        f"  POP sessions/s: {summary['pop_sessions_per_s']:.2f}",
        "",
        f"  {'tier':<10} {'role':<14} {'hosts':>5} {'cores':>5} {'mean msg/s':>10} "
        f"{'peak msg/s':>10} {'peak h':>6} {'CPU ms/msg':>10} {'peak CPU':>8} {'peak disk':>9}"
        "  next hop",
    ]
    for t in summary["tiers"]:
        hop = t["next_hop"] + (f" (fallback {t['fallback']})" if t["fallback"] else "")
        lines.append(
            f"  {t['tier']:<10} {t['role']:<14} {t['hosts']:>5} {t['cores_per_host']:>5} "
            f"{t['mean_msgs_per_s']:>10.2f} {t['peak_msgs_per_s']:>10.2f} "
            f"{t['peak_hour']:>4}h {t['cpu_ms_per_msg']:>10.2f} "
            f"{t['peak_cpu_utilisation']:>8.1%} {t['peak_disk_utilisation']:>9.1%}  {hop}"
        )
    lines.append("")
    lines.append(
        "  (peak CPU and disk: estimates per host from mean stage costs and one fsync per"
        " message;\n   `mailgate run` measures them)"
    )
    if summary["warnings"]:
        lines.append("")
        lines += [f"  warning: {w}" for w in summary["warnings"]]
    return "\n".join(lines)
