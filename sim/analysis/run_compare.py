"""Two model runs side by side (``mailgate compare``): latency quantiles per flow and span,
utilisation per host, counts, SLO verdicts and the bottleneck, each difference marked as
within noise or significant, and whether it is a regression beyond the tolerance.

Returns plain data (``compare``); compare_text.py prints it. Every figure that differs
gets a p-value (compare_stats.py); Holm's correction over all of them decides which are
*significant*. A significant difference is a *regression* when it goes the worse way
(latency, utilisation, bounces and deferrals up, deliveries down; any change of the
offered or filtered mail) by more than the tolerance relative to the base. An SLO that
passed and now fails is a regression too. docs/reports.md explains the choices.
"""

from __future__ import annotations

import math
from typing import Any

from mailgate.sim.analysis import compare_stats as cs
from mailgate.sim.analysis.histogram import quantile_interval

QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
RESOURCES = ("cpu", "sessions", "delivery", "destination", "disk")
# Which way a count gets worse; "any": a change means the offered or filtered mail differs.
COUNT_WORSE = {
    "generated": "any", "delivered": "down", "rejected": "any", "quarantined": "any",
    "bounced": "up", "deferred": "up", "in_flight": "up",
}  # fmt: skip
# A quantile is tested from the histogram only when this many samples lie beyond it on
# each side: a p99 of 150 messages rests on one or two of them, and neighbouring messages
# share queues and POP polls, so its binomial interval would claim more than it knows.
MIN_TAIL_SAMPLES = 10
# Utilisation differences smaller than this (a share of the resource) are never a
# regression: a relative tolerance means nothing on a resource busy 0.01 % of the time.
UTILISATION_FLOOR = 0.001


def _relative(base: float, new: float) -> float:
    if base == new:
        return 0.0
    if base == 0:
        return math.copysign(math.inf, new)
    return (new - base) / abs(base)


def _latency(base: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    both_replicated = base["replications"] > 1 and new["replications"] > 1
    for flow, spans in base["latency"].items():
        for span, b in spans.items():
            n = new["latency"].get(flow, {}).get(span)
            if n is None or not (b.get("count") or n.get("count")):
                continue
            for key, q in QUANTILES.items():
                row: dict[str, Any] = {
                    "flow": flow, "span": span, "quantile": key, "base": b.get(key),
                    "new": n.get(key), "base_ci": None, "new_ci": None, "p_value": None,
                    "method": "histogram", "worse": "up",
                }  # fmt: skip
                if key == "p95" and both_replicated and b.get("p95_ci95") and n.get("p95_ci95"):
                    row["method"] = "replications"
                    row["base_ci"], row["new_ci"] = b["p95_ci95"], n["p95_ci95"]
                    row["p_value"] = cs.welch_from_intervals(
                        tuple(b["p95_ci95"]), base["replications"],
                        tuple(n["p95_ci95"]), new["replications"],
                    )  # fmt: skip
                else:
                    row["base_ci"] = quantile_interval(base["histograms"][flow][span], q)
                    row["new_ci"] = quantile_interval(new["histograms"][flow][span], q)
                    tails = min(q, 1 - q) * min(b.get("count") or 0, n.get("count") or 0)
                    if tails < MIN_TAIL_SAMPLES:
                        row["method"] = "too few samples"
                    elif row["base_ci"] and row["new_ci"]:
                        row["p_value"] = cs.quantile_test(
                            row["base"], row["base_ci"], row["new"], row["new_ci"]
                        )
                rows.append(row)
    return rows


def _utilisation(base: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    both_replicated = base["replications"] > 1 and new["replications"] > 1
    for hid in dict.fromkeys([*base["hosts"], *new["hosts"]]):
        bh, nh = base["hosts"].get(hid), new["hosts"].get(hid)
        for res in RESOURCES:
            b = bh["utilisation"].get(res) if bh else None
            n = nh["utilisation"].get(res) if nh else None
            row: dict[str, Any] = {
                "host": hid, "resource": res, "base": b and b["mean"], "new": n and n["mean"],
                "base_ci_half": b and b.get("mean_ci95"), "new_ci_half": n and n.get("mean_ci95"),
                "p_value": None, "method": None, "worse": "up", "floor": UTILISATION_FLOOR,
            }  # fmt: skip
            if b and n:
                hb, hn = b.get("mean_ci95"), n.get("mean_ci95")
                if both_replicated and hb is not None and hn is not None:
                    row["method"] = "replications"
                    row["p_value"] = cs.welch_from_intervals(
                        (b["mean"] - hb, b["mean"] + hb), base["replications"],
                        (n["mean"] - hn, n["mean"] + hn), new["replications"],
                    )  # fmt: skip
                else:
                    row["method"] = "buckets"
                    row["p_value"] = cs.paired_series_test(b["series"], n["series"])
            rows.append(row)
    return rows


def _exposure(d: dict[str, Any]) -> float:
    """Mailbox-seconds simulated: counts scale with it."""
    return float(d["measured_s"]) * float(d["mailboxes"]) * int(d["replications"])


def _counts(base: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    eb, en = _exposure(base), _exposure(new)
    for key in dict.fromkeys([*base["counts"], *new["counts"]]):
        b, n = base["counts"].get(key), new["counts"].get(key)
        row: dict[str, Any] = {
            "count": key, "base": b, "new": n, "p_value": None, "method": "counts",
            "worse": COUNT_WORSE.get(key, "any"),
            # compare rates, so runs of different lengths or populations line up
            "rates": (None if b is None else b / eb, None if n is None else n / en),
        }  # fmt: skip
        if b is not None and n is not None:
            row["p_value"] = cs.counts_test(int(b), int(n), en / (eb + en))
        rows.append(row)
    return rows


def _judge(rows: list[dict[str, Any]], tolerance: float) -> None:
    """Holm-correct the p-values of the figures that differ, then mark each row."""
    tested = [r for r in rows if r["p_value"] is not None and r["base"] != r["new"]]
    for r, p in zip(tested, cs.holm([r["p_value"] for r in tested]), strict=True):
        r["p_adjusted"] = p
    for r in rows:
        base, new = r.pop("rates", None) or (r["base"], r["new"])
        r.setdefault("p_adjusted", None)
        significant = r["p_adjusted"] is not None and r["p_adjusted"] < cs.ALPHA
        r.update(change=None, significant=significant, regression=False)
        if base is None or new is None:
            r["status"] = "only in new" if base is None else "only in base"
            continue
        rel = _relative(base, new)
        r["change"] = None if math.isinf(rel) else rel
        worse_way = {"up": new > base, "down": new < base, "any": new != base}[r["worse"]]
        if base == new:
            r["status"] = "same"
        elif significant:
            r["status"] = "significant " + ("worse" if worse_way else "better")
        elif r["method"] == "too few samples":
            r["status"] = "not tested (too few samples)"
        else:
            r["status"] = "within noise"
        r["regression"] = (
            significant and worse_way and abs(rel) > tolerance
            and abs(new - base) > r.get("floor", 0.0)
        )  # fmt: skip


def _slo(base: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    new_by_name = {o["name"]: o for o in new["slo"]}
    rows = []
    for o in [*base["slo"], *(n for n in new["slo"] if n["name"] not in
                                {b["name"] for b in base["slo"]})]:  # fmt: skip
        b = o if o in base["slo"] else None
        n = new_by_name.get(o["name"])
        rows.append({
            "name": o["name"],
            "base_ok": None if b is None else bool(b["ok"]),
            "new_ok": None if n is None else bool(n["ok"]),
            "base": None if b is None else b.get("value_s", b.get("value")),
            "new": None if n is None else n.get("value_s", n.get("value")),
            "limit": o.get("max_s", o.get("max")), "seconds": "value_s" in o,
            "regression": (b is None or bool(b["ok"])) and n is not None and not n["ok"],
        })  # fmt: skip
    return rows


def _bottleneck(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Where each run saturates first and its headroom (informational: the utilisation
    rows carry the significance)."""

    def side(d: dict[str, Any]) -> dict[str, Any] | None:
        b = d.get("bottleneck") or {}
        keys = ("host", "resource", "peak_utilisation", "multiplier")
        return {k: b[k] for k in keys} if b else None

    b, n = side(base), side(new)
    moved = bool(b and n and (b["host"], b["resource"]) != (n["host"], n["resource"]))
    change = _relative(b["multiplier"], n["multiplier"]) if b and n else None
    if change is not None and math.isinf(change):
        change = None
    return {"base": b, "new": n, "moved": moved, "headroom_change": change}


def _describe(d: dict[str, Any], label: str) -> dict[str, Any]:
    return {"label": label, "name": d["name"], "seed": d["seed"],
            "replications": d["replications"], "mailboxes": d["mailboxes"],
            "hours": d["measured_s"] / 3600}  # fmt: skip


def compare(
    base: dict[str, Any],
    new: dict[str, Any],
    tolerance: float = 0.05,
    labels: tuple[str, str] = ("base", "new"),
) -> dict[str, Any]:
    """Everything ``mailgate compare`` shows, as JSON-safe data; ``regressions`` lists what
    made it fail (empty: no significant regression)."""
    latency, utilisation, counts = _latency(base, new), _utilisation(base, new), _counts(base, new)
    _judge([*latency, *utilisation, *counts], tolerance)
    slo = _slo(base, new)
    regressions = (
        [f"latency {r['flow']} {r['span']} {r['quantile']}" for r in latency if r["regression"]]
        + [f"utilisation {r['host']} {r['resource']}" for r in utilisation if r["regression"]]
        + [f"count {r['count']}" for r in counts if r["regression"]]
        + [f"SLO {r['name']}" for r in slo if r["regression"]]
    )
    notes = [
        f"{what} differs: {base[key]} vs {new[key]}"
        for what, key in (("scenario", "name"), ("mailboxes", "mailboxes"),
                          ("simulated time (s)", "measured_s"))
        if base[key] != new[key]
    ]  # fmt: skip
    return {
        "base": _describe(base, labels[0]),
        "new": _describe(new, labels[1]),
        "tolerance": tolerance,
        "alpha": cs.ALPHA,
        "notes": notes,
        "latency": latency,
        "utilisation": utilisation,
        "counts": counts,
        "slo": slo,
        "bottleneck": _bottleneck(base, new),
        "regressions": regressions,
    }
