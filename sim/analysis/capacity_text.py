"""A capacity search's answer as text: the figure, its band, what binds, every point."""

from __future__ import annotations

import math
from typing import Any


def seconds(x: float | None) -> str:
    """Seconds, human-sized."""
    if x is None or not math.isfinite(x):
        return "-"
    if abs(x) < 1:
        return f"{x * 1000:.0f}ms"
    if abs(x) < 120:
        return f"{x:.1f}s"
    if abs(x) < 7200:
        return f"{x / 60:.1f}min"
    return f"{x / 3600:.1f}h"


def _value(name: str, x: float | None) -> str:
    """An SLO value: seconds, or a share for the error objective."""
    if x is None:
        return "-"
    return f"{x:.2%}" if "share" in name else seconds(x)


def window_text(w: dict[str, Any]) -> str:
    start = w["start_h"]
    where = "the peak hour of the diurnal profile" if w["peak"] else "the hour asked for"
    return (
        f"{int(start):02d}:{round(start % 1 * 60):02d}-{int(start + w['duration_h']) % 24:02d}:"
        f"{round(start % 1 * 60):02d} ({where}), after {w['warmup_h'] * 60:.0f} min of warm-up"
    )


def point_rows(points: list[dict[str, Any]]) -> list[str]:
    """One line per point: load, replications, verdict, the binding SLO's mean and CI."""
    rows = [
        f"  {'mailboxes':>10}  {'msgs/s':>8}  {'reps':>4}  {'verdict':<9}  "
        f"{'binding SLO':<20} {'mean':>8}  {'95 % CI':>19}  busiest"
    ]
    for p in points:
        o = next((o for o in p["objectives"] if o["name"] == p["binding"]), None)
        ci = "-"
        if o and o["ci95"]:
            ci = f"{_value(o['name'], o['ci95'][0])}..{_value(o['name'], o['ci95'][1])}"
        busy = p["busiest"][0] if p["busiest"] else None
        busiest = f"{busy['host']} {busy['resource']} {busy['peak']:.0%}" if busy else ""
        verdict = p["verdict"] if p["verdict"] != "undecided" else ("pass?" if p["ok"] else "fail?")
        # runs stopped once their failure was certain give a lower bound of the value
        mean = ("≥" if p.get("stopped_early") else "") + (
            _value(o["name"], o["mean"]) if o else "-"
        )
        rows.append(
            f"  {p['mailboxes']:>10,}  {p['msgs_per_s']:>8.3g}  {p['replications']:>4}  "
            f"{verdict:<9}  {(o['name'] if o else '-'):<20} "
            f"{mean:>8}  {ci:>19}  {busiest}"
        )
    return rows


def render(d: dict[str, Any]) -> str:
    """The terminal report of ``sim.analysis.capacity.capacity``'s answer."""
    c, today = d["capacity"], d["today"]
    lines = [
        f"mailgate capacity {d['scenario']}: {window_text(d['window'])}; seeds {d['seed']}.. "
        f"(same at every point), up to {d['max_replications']} replications per point, "
        f"{d['workers']} workers, {d['wall_s']:.0f} s wall",
        "",
    ]
    add = lines.append
    if c["found"]:
        lo, hi = c["band95"]
        add(
            f"Capacity: {c['mailboxes']:,} mailboxes ({c['msgs_per_s']:.3g} messages/s offered), "
            f"{c['headroom']:.2f}× today's {today['mailboxes']:,}"
        )
        add(f"  95 % band: {lo:,} .. {hi:,} mailboxes" if hi else f"  95 % band: ≥ {lo:,}")
    elif c["mailboxes"] == 0:
        add("Capacity: 0 — the SLO fails at every load tried")
    else:
        add(f"Capacity: ≥ {c['mailboxes']:,} mailboxes — no failing load found")
    b = d["binding_slo"]
    if b:
        at_least = "≥ " if b.get("lower_bound") else ""
        value = at_least + _value(b["name"], b["mean"])
        add(f"  binding SLO: {b['name']} (limit {_value(b['name'], b['limit'])}; "
            f"{value} at {b['at_mailboxes']:,} mailboxes)")  # fmt: skip
    if d["bottleneck"]:
        r = d["bottleneck"]
        add(f"  saturates: {r['host']} {r['resource']} ({r['peak']:.0%} in its busiest "
            f"5 minutes, {r['mean']:.0%} over the hour at the capacity)")  # fmt: skip
    add(f"  utilisation law from today's load: saturation near "
        f"{d['utilisation_law_mailboxes']:,.0f} mailboxes")  # fmt: skip
    if d.get("solver_knee_mailboxes"):
        add(f"  analytic solver: SLO knee near {d['solver_knee_mailboxes']:,} mailboxes "
            "(where the search started)")  # fmt: skip
    add("")
    add("Busiest resources at the capacity (peak 5 minutes / hour mean)")
    for r in d["busiest"]:
        add(f"  {r['host']:<12} {r['resource']:<9} {r['peak']:>6.1%} {r['mean']:>7.1%}")
    add("")
    add("SPECmail load points (share of today's load: SLO verdict at 95 %)")
    for share, p in d["load_points"].items():
        verdict = p["verdict"] if p["verdict"] != "undecided" else ("pass?" if p["ok"] else "fail?")
        add(f"  {share:>5}  {p['mailboxes']:>10,} mailboxes  {verdict}  ({p['replications']} reps)")
    add("")
    add(
        "Points run (pass?/fail?: the 95 % CI still straddles the limit at the replication cap; "
        "≥: runs stopped once the SLO's failure was certain)"
    )
    lines += point_rows(d["points"])
    if "n_1" in d:
        lines += ["", *n_minus_1_rows(d)]
    return "\n".join(lines)


def n_minus_1_rows(d: dict[str, Any]) -> list[str]:
    """The N-1 table: each gateway with one host down for the whole window."""
    today = d["today"]["mailboxes"]
    rows = [
        "N-1: one host of each gateway down for the whole window",
        f"  {'gateway':<10} {'host down':<11} {'capacity':>10}  {'ratio':>6}  "
        f"today's load ({today:,}) survives",
    ]
    for r in d["n_1"]:
        verdict = "yes" if r["survives"] else "no"
        note = f", {r['note']}" if r.get("note") else f", headroom {r['headroom']:.2f}×"
        rows.append(
            f"  {r['gateway']:<10} {r['host']:<11} {r['mailboxes']:>10,}  {r['ratio']:>6.2f}  "
            f"{verdict}{note}"
        )
    worst = min(d["n_1"], key=lambda r: r["mailboxes"], default=None)
    if worst:
        yes = all(r["survives"] for r in d["n_1"])
        rows.append(
            f"  today's load survives N-1: {'yes' if yes else 'no'}, headroom "
            f"{worst['headroom']:.2f}× (worst: {worst['host']} down)"
        )
    return rows
