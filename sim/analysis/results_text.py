"""A model run's results as text (the terminal summary) and as JSON-safe data."""

from __future__ import annotations

import math
from typing import Any

from mailgate.sim.analysis.formatting import seconds as _s

SPAN_NAMES = {
    "accepted_to_mailbox": "accepted→mailbox",
    "sent_to_retrieved": "sent→retrieved",
    "sent_to_remote": "sent→remote MX",
}


def clean(value: Any) -> Any:
    """JSON has no NaN or infinity: make them null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def _hour(h: float) -> str:
    h = h % 24
    return f"{int(h):02d}:{round((h % 1) * 60) % 60:02d}"


def summary(d: dict[str, Any]) -> str:
    """The terminal summary of a results dict."""
    lines = []
    add = lines.append
    reps = d["replications"]
    add(
        f"mailgate run {d['name']}: {d['mailboxes']:,} mailboxes, {d['measured_s'] / 3600:g} h "
        f"measured after {d['warmup_s'] / 3600:g} h warm-up, seed {d['seed']}, "
        f"{reps} replication{'s' if reps > 1 else ''}, {d['wall_s']:.1f} s wall, "
        f"{d['events']:,} events"
    )
    add("")
    add("Latency per flow (messages sent after the warm-up)")
    add(f"  {'flow':9} {'span':17} {'count':>9} {'p50':>9} {'p95':>9} {'p99':>9} {'max':>9}")
    for flow, spans in d["latency"].items():
        for span, label in SPAN_NAMES.items():
            v = spans[span]
            if not v["count"]:
                continue
            ci = ""
            if v.get("p95_ci95"):
                lo, hi = v["p95_ci95"]
                ci = f"  p95 95% CI [{_s(lo)}, {_s(hi)}]"
            add(
                f"  {flow:9} {label:17} {v['count']:>9,} {_s(v['p50']):>9} {_s(v['p95']):>9} "
                f"{_s(v['p99']):>9} {_s(v['max']):>9}{ci}"
            )
    add("")
    add(
        "Hosts (utilisation: mean / peak bucket at clock hour; dest = the busiest destination's"
        " delivery slots; queue = waiting for a delivery slot)"
    )
    add(f"  {'host':11} {'CPU mean':>8} {'peak':>6} {'at':>6}  {'sessions':>8} {'peak':>6} "
        f"{'at':>6}  {'deliv':>6} {'dest':>6} {'disk':>6}  {'queue':>6} {'max':>5}  "
        f"{'msgs':>8}")  # fmt: skip
    for hid, row in d["hosts"].items():
        u = row["utilisation"]
        add(
            f"  {hid:11} {u['cpu']['mean']:>8.1%} {u['cpu']['peak']:>6.1%} "
            f"{_hour(u['cpu']['peak_clock_hour']):>6}  {u['sessions']['mean']:>8.2%} "
            f"{u['sessions']['peak']:>6.2%} {_hour(u['sessions']['peak_clock_hour']):>6}  "
            f"{u['delivery']['mean']:>6.1%} {u.get('destination', {}).get('mean', 0):>6.1%} "
            f"{u['disk']['mean']:>6.1%}  "
            f"{row['queue']['mean']:>6.2f} {row['queue']['max']:>5g}  {row['messages']:>8,}"
        )
    for name, m in d["machines"].items():
        add(f"  machine {name}: {m['cores']} cores, mean utilisation {m['mean']:.1%}")
    add("")
    c = d["counts"]
    # counts and POP totals add up over replications; utilisation and latency do not
    over = f" (summed over {reps} replications)" if reps > 1 else ""
    add(
        f"Counts{over}: "
        + "generated {generated:,}, delivered {delivered:,}, rejected {rejected:,}, "
        "quarantined {quarantined:,}, deferred {deferred:,}, bounced {bounced:,}, "
        "in flight at the end {in_flight:,}".format(**c)
    )
    dq = d["deferred_queue"]
    tiers = "+".join(dq.get("tiers", [])) or "fallback MX"
    add(f"Deferred queue ({tiers}, fallback MX): peak {dq['peak']:g} messages, "
        f"mean {dq['mean']:.1f}")  # fmt: skip
    pop = d["pop"]
    add(f"POP{over}: {pop['sessions']:,} sessions, {pop['retrievals']:,} messages retrieved "
        f"({pop['active_mailboxes']:,} mailboxes polling)")  # fmt: skip
    add("")
    add("SLO")
    ok_all = True
    for o in d["slo"]:
        ok_all &= bool(o["ok"])
        mark = "PASS" if o["ok"] else "FAIL"
        if "span" in o:
            span = SPAN_NAMES.get(o["span"], o["span"])
            add(
                f"  [{mark}] {o['name']}: p{o['quantile'] * 100:g} {span}"
                f" {o['flow']} = {_s(o['value_s'])} (≤ {_s(o['max_s'])}, n={o['samples']:,})"
            )
        else:
            add(f"  [{mark}] {o['name']}: {o['value']:.3%} (≤ {o['max']:.1%})")
    add(f"  verdict: {'all objectives met' if ok_all else 'OBJECTIVES MISSED'}")
    if d.get("recovery"):
        from mailgate.sim.analysis.recovery import lines as recovery_lines

        add("")
        lines.extend(recovery_lines(d["recovery"]))
    from mailgate.sim.analysis.verdict import lines as verdict_lines

    verdict = verdict_lines(d)
    if verdict:
        add("")
        lines.extend(verdict)
    return "\n".join(lines)
