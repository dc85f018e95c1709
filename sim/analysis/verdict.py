"""What a run says about capacity: stable or not, the root bottleneck, where mail queues.

- **Unstable** (over capacity): the work offered exceeds what the system completes, so
  queues grow without bound and no headroom exists. Flagged when fewer than
  ``COMPLETED_MIN`` of the offered messages reached an outcome, or when the mail waiting
  for delivery slots over all hosts grows through the window (a least-squares slope over
  the buckets adding up to at least ``GROWTH_MIN`` messages, and the last bucket within
  20 % of the largest: it has not drained).
- **Root bottleneck**: by the utilisation law U = X·S a resource's utilisation grows in
  proportion to the load, so the resource with the smallest multiplier 1 / U(peak)
  saturates first (``results.json``'s ``bottleneck.ranking``). Session and delivery slots
  are occupancies: they include waiting for the next hop's reply, so when a CPU or disk
  downstream saturates, the slots feeding it fill up at the same load. An occupancy is
  therefore named the root only when its multiplier is at least ``OCCUPANCY_MARGIN``
  smaller than every CPU's and disk's; otherwise the CPU or disk is the root and the
  occupancy is where the queue builds.
- **Where the queue builds**: the host with the most mail waiting for a delivery slot
  (mean over the window), or the deferred queue when that is larger.
"""

from __future__ import annotations

from typing import Any

from mailgate.sim.analysis.formatting import RESOURCE_TITLES, clock

COMPLETED_MIN = 0.85
GROWTH_MIN = 20.0
OCCUPANCY_MARGIN = 1.10
SERVICE = ("cpu", "disk")


def _slope(ys: list[float]) -> float:
    n = len(ys)
    if n < 2:
        return 0.0
    mx, my = (n - 1) / 2, sum(ys) / n
    den = sum((i - mx) ** 2 for i in range(n))
    return sum((i - mx) * (y - my) for i, y in enumerate(ys)) / den


def stability(d: dict[str, Any]) -> dict[str, Any]:
    """``{"unstable": bool, "completed_share", "backlog_growth", "stuck"}``."""
    c = d["counts"]
    generated = c.get("generated", 0)
    stuck = c.get("in_flight", 0)
    completed = 1 - stuck / generated if generated else 1.0
    series = [h["queue"]["series"] for h in d["hosts"].values()]
    backlog = [sum(v) for v in zip(*series, strict=False)] if series else []
    growth = _slope(backlog) * max(len(backlog) - 1, 0)
    growing = growth >= GROWTH_MIN and bool(backlog) and backlog[-1] >= 0.8 * max(backlog)
    return {
        "unstable": completed < COMPLETED_MIN or growing,
        "completed_share": completed,
        "backlog_growth": growth,
        "stuck": stuck,
    }


def root(d: dict[str, Any]) -> dict[str, Any] | None:
    """The ranking entry that saturates first, occupancies yielding to a CPU or disk."""
    ranking = (d.get("bottleneck") or {}).get("ranking") or []
    if not ranking:
        return None
    service = [r for r in ranking if r["resource"] in SERVICE]
    best_service = min((r["multiplier"] for r in service), default=float("inf"))

    def key(r: dict[str, Any]) -> tuple[float, float]:
        m = r["multiplier"]
        if r["resource"] not in SERVICE and m * OCCUPANCY_MARGIN > best_service:
            m = best_service * OCCUPANCY_MARGIN  # saturates with (because of) a CPU or disk
        host = d["hosts"].get(r["host"])
        mean = host["utilisation"][r["resource"]]["mean"] if host else 0.0
        return (m, -mean)

    return min(ranking, key=key)


def queue_builds(d: dict[str, Any]) -> dict[str, Any] | None:
    """Where mail waits most: a host's delivery queue or the deferred queue."""
    best = None
    for hid, h in d["hosts"].items():
        if h["queue"]["mean"] > 0 and (best is None or h["queue"]["mean"] > best["mean"]):
            best = {"where": f"{hid} (waiting for a delivery slot)", "mean": h["queue"]["mean"],
                    "max": h["queue"]["max"]}  # fmt: skip
    dq = d.get("deferred_queue") or {}
    if dq.get("mean", 0) > (best["mean"] if best else 0):
        best = {"where": "the deferred queue", "mean": dq["mean"], "max": dq["peak"]}
    return best


def lines(d: dict[str, Any]) -> list[str]:
    """The verdict and bottleneck section of the run summary."""
    out: list[str] = []
    st = stability(d)
    r = root(d)
    q = queue_builds(d)
    b = d.get("bottleneck") or {}
    if st["unstable"]:
        out.append(
            f"Over capacity: unstable — {st['completed_share']:.0%} of the offered messages "
            f"completed, {st['stuck']:,} still in the system at the end; queues grow without "
            f"bound, so the capacity is below this load ({d['mailboxes']:,} mailboxes; "
            "mailgate capacity finds it)."
        )
    if r is None:
        return out
    res = RESOURCE_TITLES.get(r["resource"], r["resource"]) + _destination(r)
    if st["unstable"]:
        out.append(f"Bottleneck (root): {r['host']} {res}, {r['peak_utilisation']:.1%} busy "
                   "in its peak bucket: the first resource to saturate.")  # fmt: skip
    else:
        mult = r["multiplier"]
        at = ""
        if r["host"] == b.get("host") and r["resource"] == b.get("resource"):
            at = f" ({clock(b['peak_clock_hour'])})"
        out.append(
            f"Bottleneck (root): {r['host']} {res} saturates first — "
            f"{r['peak_utilisation']:.1%} busy in its peak bucket{at}, so it reaches 100 % at "
            f"{mult:.1f}× this load (≈ {d['mailboxes'] * mult:,.0f} mailboxes with the same "
            "habits; a linear estimate: mailgate capacity checks it against the SLO)."
        )
        rate = b.get("offered_msgs_per_s_in_peak_bucket")
        if rate and r["host"] == b.get("host") and r["resource"] == b.get("resource"):
            sat = b["msgs_per_s_at_saturation"]
            out.append(f"  offered in that bucket: {rate:.2f} messages/s into the system; "
                       f"saturation near {sat:.1f} messages/s")  # fmt: skip
    if q is not None:
        out.append(f"  queue builds at: {q['where']}, mean {q['mean']:.1f}, max {q['max']:g}")
    others = ", ".join(
        f"{x['host']} {x['resource']}{_destination(x)} {x['multiplier']:.1f}×"
        for x in b["ranking"]
        if x is not r
    )
    if others:
        out.append(f"  next: {', '.join(others.split(', ')[:4])}")
    return out


def _destination(r: dict[str, Any]) -> str:
    """`` (name)`` of a ranking entry that is one destination's delivery slots."""
    return f" ({r['destination']})" if r.get("destination") else ""
