"""Recovery after a failure: queue peaks, drain time, retry amplification, bounces, and the
latency of mail caught in the failure against mail that was not.

Read from ``results.json``'s ``failure_watch`` (``sim.model.failure_watch`` records it for
runs whose scenario has failures or surges); ``figures(d)`` is ``results.json``'s
``recovery`` and ``lines(rec)`` its text in the run summary.

Drain time: from the end of the last failure window until the fleet's deferred queue
(sampled every minute, replications averaged) is back within ``DRAIN_TOLERANCE`` of its
mean level in the hour before the first failure began (at least within one message, so
that an empty queue before is reached by an empty-or-one queue after). ``None`` when it
is not back by the end of the run. The same is given for all queued mail (deferred,
waiting for a delivery slot, parked on a host that is down).
"""

from __future__ import annotations

from typing import Any

from mailgate.sim.analysis.formatting import clock
from mailgate.sim.analysis.formatting import seconds as _s

DRAIN_TOLERANCE = 0.10
#: the level "before the failure" is the mean over this long before it starts
BEFORE_S = 3600.0


def _before(series: list[float], dt: float, start_s: float) -> float:
    lo = max(0, int((start_s - BEFORE_S) / dt))
    hi = max(lo + 1, int(start_s / dt))
    part = series[lo:hi] or series[:1]
    return sum(part) / len(part) if part else 0.0


def drain(series: list[float], dt: float, start_s: float, end_s: float) -> dict[str, Any]:
    """Level before ``start_s``, the peak, and the time after ``end_s`` to be back within
    ``DRAIN_TOLERANCE`` of the level before."""
    if not series:
        return {"before": None, "peak": None, "peak_s": None, "threshold": None, "drain_s": None}
    before = _before(series, dt, start_s)
    threshold = max(before * (1 + DRAIN_TOLERANCE), before + 1.0)
    peak_i = max(range(len(series)), key=series.__getitem__)
    drain_s = None
    first = int(-(-end_s // dt))  # the first sample at or after the end
    for i in range(first, len(series)):
        if series[i] <= threshold:
            drain_s = max(0.0, i * dt - end_s)
            break
    return {
        "before": before,
        "peak": series[peak_i],
        "peak_s": peak_i * dt,
        "threshold": threshold,
        "drain_s": drain_s,
        "ended_in_run": first < len(series),
    }


def figures(d: dict[str, Any]) -> dict[str, Any] | None:
    """``results.json``'s ``recovery`` from its ``failure_watch`` (None without failures)."""
    fw = d.get("failure_watch")
    if not fw:
        return None
    dt = fw["sample_s"]
    windows = fw["windows"]
    start_s = min(w["start_s"] for w in windows)
    end_s = max(w["end_s"] for w in windows)
    s0 = d["start_hour"]
    series = fw["series"]
    backlog = [sum(v) for v in zip(*series.values(), strict=False)]
    queues = {
        "deferred": drain(series["deferred"], dt, start_s, end_s),
        "all_queued": drain(backlog, dt, start_s, end_s),
    }
    for q in queues.values():
        q["peak_clock_hour"] = None if q["peak_s"] is None else s0 + q["peak_s"] / 3600
    hosts = []
    for hid, p in fw["host_peaks"].items():
        for q, (value, t) in p.items():
            if value > 0:
                hosts.append({"host": hid, "queue": q, "peak": value, "at_s": t,
                              "clock_hour": s0 + t / 3600})  # fmt: skip
    hosts.sort(key=lambda h: -h["peak"])

    def amp(g: str) -> float | None:
        r = fw["remote_attempts"][g]
        return r["attempts"] / r["delivered"] if r["delivered"] else None

    total = {
        k: sum(fw["remote_attempts"][g][k] for g in fw["remote_attempts"])
        for k in ("delivered", "attempts")
    }
    retry = d.get("scenario", {}).get("retry", {})
    return {
        "windows": [
            {
                **w,
                "start_clock_hour": s0 + w["start_s"] / 3600,
                "end_clock_hour": s0 + w["end_s"] / 3600,
            }
            for w in windows
        ],
        "queues": queues,
        "host_queue_peaks": hosts,
        "drain_time_s": queues["deferred"]["drain_s"],
        "retry_amplification": {
            "all": total["attempts"] / total["delivered"] if total["delivered"] else None,
            "caught": amp("caught"),
            "not_caught": amp("not_caught"),
            "delivered_remote": total["delivered"],
            "attempts": total["attempts"],
        },
        "bounced_queue_lifetime": d["counts"].get("bounced", 0),
        "max_queue_lifetime_s": retry.get("max_queue_lifetime_s"),
        "latency_caught": fw["latency"]["caught"],
        "latency_not_caught": fw["latency"]["not_caught"],
    }


def _drain_text(q: dict[str, Any]) -> str:
    if q["drain_s"] is not None:
        return f"back within 10 % of before {_s(q['drain_s'])} after the failure ended"
    if not q.get("ended_in_run"):
        return "the failure lasts to the end of the run: no drain to measure"
    return "NOT back within 10 % of before by the end of the run"


def lines(rec: dict[str, Any]) -> list[str]:
    """The recovery section of the run summary."""
    out = ["Recovery after the failure"]
    for w in rec["windows"]:
        out.append(f"  {w['kind']} {w['what']}: {clock(w['start_clock_hour'])}–"
                   f"{clock(w['end_clock_hour'])}")  # fmt: skip
    for name, label in (("deferred", "deferred queue"), ("all_queued", "all queued mail")):
        q = rec["queues"][name]
        if q["peak"] is None:
            continue
        out.append(
            f"  {label}: {q['before']:.1f} before, peak {q['peak']:.0f} at "
            f"{clock(q['peak_clock_hour'])}; {_drain_text(q)}"
        )
    if rec["drain_time_s"] is not None:
        out.append(f"  drain time: {_s(rec['drain_time_s'])}")
    busiest = ", ".join(
        f"{h['host']} {h['queue']} {h['peak']:.0f} at {clock(h['clock_hour'])}"
        for h in rec["host_queue_peaks"][:4]
    )
    if busiest:
        out.append(f"  host queue peaks: {busiest}")
    a = rec["retry_amplification"]
    if a["all"] is not None:
        parts = [f"{g.replace('_', ' ')} {a[g]:.2f}" for g in ("caught", "not_caught")
                 if a[g] is not None]  # fmt: skip
        out.append(
            f"  retry amplification: {a['all']:.2f} Internet delivery attempts per delivered "
            f"message ({', '.join(parts)}; {a['attempts']:,} attempts, "
            f"{a['delivered_remote']:,} delivered)"
        )
    life = rec["max_queue_lifetime_s"]
    life_text = f" (queue lifetime {_s(life)})" if life else ""
    out.append(f"  bounced for queue lifetime{life_text}: {rec['bounced_queue_lifetime']:,}")
    c, n = rec["latency_caught"], rec["latency_not_caught"]
    out.append(
        f"  sent → delivered, caught in the failure: p50 {_s(c['p50'])}, p95 {_s(c['p95'])} "
        f"(n={c['count']:,}); not caught: p50 {_s(n['p50'])}, p95 {_s(n['p95'])} "
        f"(n={n['count']:,})"
    )
    return out
