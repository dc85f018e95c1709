"""A capacity search (``capacity.json``) as a section of the HTML report: the capacity
with its 95 % band, the SLO verdict at today's load, the binding SLO, the saturating
resource, the SPECmail load points, every point run, N-1 if searched, and the figure of
each SLO's p95 against mailboxes with the SLO limit.

Built from ``capacity.json``'s keys only (``mailgate capacity`` writes them); the
template is ``templates/capacity.html.j2``, included by ``report.html.j2``.
"""

from __future__ import annotations

from typing import Any

from mailgate.sim.analysis.capacity_plot import capacity_figure
from mailgate.sim.analysis.capacity_text import window_text
from mailgate.sim.analysis.formatting import RESOURCE_TITLES, percent, seconds
from mailgate.sim.analysis.svg_figures import to_svg


def _value(name: str, x: float | None) -> str:
    """An objective's value: a share for the error objective, else seconds."""
    if x is None:
        return "-"
    return percent(x, 2) if "share" in name else seconds(x)


def _verdict(p: dict[str, Any]) -> str:
    """pass/fail decided at 95 %, or pass?/fail? when the interval still straddles the limit."""
    if p["verdict"] in ("pass", "fail"):
        return str(p["verdict"])
    return "pass?" if p["ok"] else "fail?"


def _resource(r: dict[str, Any] | None) -> dict[str, str] | None:
    if not r:
        return None
    return {"host": r["host"], "resource": RESOURCE_TITLES.get(r["resource"], r["resource"]),
            "peak": percent(r["peak"]), "mean": percent(r["mean"])}  # fmt: skip


def point_rows(points: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """One row per load run: its verdict and every objective's mean with its 95 % CI."""
    rows = []
    for p in points:
        objectives = {o["name"]: o for o in p["objectives"]}
        cells = []
        for name in names:
            o = objectives.get(name)
            ci = o and o.get("ci95")
            cells.append({
                "mean": _value(name, o["mean"]) if o else "-",
                # a t-interval on 2 replications can reach below 0; no latency or share does
                "ci": f"{_value(name, max(0.0, ci[0]))} – {_value(name, ci[1])}" if ci else "",
                "binding": name == p["binding"],
            })  # fmt: skip
        rows.append({
            "mailboxes": f"{p['mailboxes']:,}", "msgs_per_s": f"{p['msgs_per_s']:.3g}",
            "replications": p["replications"], "verdict": _verdict(p), "ok": bool(p["ok"]),
            "objectives": cells, "busiest": _resource((p.get("busiest") or [None])[0]),
        })  # fmt: skip
    return rows


def capacity_context(d: dict[str, Any]) -> dict[str, Any]:
    """Everything the template shows for one capacity search."""
    c, today = d["capacity"], d["today"]
    names = [o["name"] for o in d["points"][0]["objectives"]] if d["points"] else []
    lo, hi = c["band95"]
    b = d.get("binding_slo")
    at_today = (d.get("load_points") or {}).get("100%")
    return {
        "kind": "capacity",
        "name": f"{d['scenario']} capacity",
        "description": f"Capacity search in {window_text(d['window'])}.",
        # the verdict on top: does today's load meet every SLO in the window?
        "ok": bool(at_today["ok"]) if at_today else c["mailboxes"] >= today["mailboxes"],
        "today_verdict": _verdict(at_today) if at_today else None,
        "today": f"{today['mailboxes']:,}",
        "found": bool(c["found"]),
        "mailboxes": f"{c['mailboxes']:,}",
        "msgs_per_s": f"{c['msgs_per_s']:.3g}",
        "headroom": f"{c.get('headroom', 0):.2f}×",
        "band": [f"{lo:,}", f"{hi:,}" if hi is not None else None],
        "binding": {
            "name": b["name"],
            "limit": _value(b["name"], b["limit"]),
            "mean": _value(b["name"], b["mean"]),
            "at": f"{b['at_mailboxes']:,}",
        }
        if b
        else None,
        "bottleneck": _resource(d.get("bottleneck")),
        "law": f"{d['utilisation_law_mailboxes']:,.0f}",
        "busiest": [_resource(r) for r in d.get("busiest", [])],
        "assumptions": [
            ("scenario", d["scenario"]),
            ("window", window_text(d["window"])),
            ("today's mailboxes", f"{today['mailboxes']:,}"),
            ("seeds", f"{d['seed']}, {d['seed'] + 1}, … (the same at every point)"),
            ("replications per point", f"until decided at 95 %, at most {d['max_replications']}"),
            ("bisection stops at", percent(d.get("tolerance"), 0) + " of the capacity"),
            ("workers", str(d.get("workers", "-"))),
            ("wall time", f"{d['wall_s']:.0f} s" if d.get("wall_s") is not None else "-"),
        ],
        "load_points": [
            {
                "share": share,
                "mailboxes": f"{p['mailboxes']:,}",
                "verdict": _verdict(p),
                "ok": bool(p["ok"]),
                "replications": p["replications"],
            }
            for share, p in (d.get("load_points") or {}).items()
        ],
        "objectives": names,
        "points": point_rows(d["points"], names),
        "n_1": [
            {
                "gateway": r["gateway"],
                "host": r["host"],
                "mailboxes": f"{r['mailboxes']:,}",
                "ratio": f"{r['ratio']:.2f}",
                "survives": bool(r["survives"]),
                "note": r.get("note") or f"headroom {r['headroom']:.2f}×",
            }
            for r in d.get("n_1", [])
        ],
        "figure": to_svg(capacity_figure(d)) if d["points"] else "",
    }
