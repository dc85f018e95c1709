"""One self-contained HTML report for model runs (``mailgate report``): the scenario's key
assumptions, the SLO verdict first, latency per flow (CDF and table), utilisation per host
over the day, queues, the bottleneck and the headroom; a capacity search's
``capacity.json`` gets its own section (``capacity_report``).

Built from ``results.json`` dicts only. The page is rendered by a Jinja2 template shipped
as package data (``templates/report.html.j2``); figures are inline SVG, the style sheet is
inline, and nothing is fetched: the file reads offline and as a mail attachment.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2

from mailgate.sim.analysis import recovery, svg_figures, verdict
from mailgate.sim.analysis.capacity_report import capacity_context
from mailgate.sim.analysis.formatting import (
    RESOURCE_TITLES,
    SPAN_TITLES,
    clock,
    percent,
    seconds,
)
from mailgate.sim.analysis.results_file import is_capacity
from mailgate.sim.analysis.sweep_report import is_sweep, sweep_context

TEMPLATE = "report.html.j2"


def environment(*packages: str) -> jinja2.Environment:
    """The reports' Jinja2 environment: templates of ``packages`` (each a package with a
    ``templates`` folder) first, then this package's own (the shared ``style.css``)."""
    loaders = [jinja2.PackageLoader(p, "templates") for p in (*packages, "mailgate.sim.analysis")]
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=True,  # scenario names and descriptions are user text
        undefined=jinja2.StrictUndefined,  # a misspelt field fails the tests, not the reader
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(seconds=seconds, percent=percent, clock=clock)
    return env


def assumptions(d: dict[str, Any]) -> list[tuple[str, str]]:
    """The scenario's key assumptions as (label, value) rows."""
    sc = d.get("scenario") or {}
    workload = sc.get("workload") or {}
    warmup_h = d.get("warmup_s", 0) / 3600
    start = clock(d.get("start_hour", 0) + warmup_h)
    rows = [
        ("scenario", d["name"]),
        ("mailboxes", f"{d['mailboxes']:,}"),
        ("simulated", f"{d['measured_s'] / 3600:g} h from {start} after {warmup_h:g} h warm-up"),
        ("seed", str(d["seed"])),
        ("replications", str(d["replications"])),
    ]  # fmt: skip
    if "inbound_per_mailbox_day" in workload:
        rows.append((
            "mail per mailbox and day",
            f"{workload['inbound_per_mailbox_day']:g} in, "
            f"{workload.get('outbound_per_mailbox_day', 0):g} out, "
            f"{percent(workload.get('internal_share'), 0)} internal, "
            f"{percent(workload.get('spam_share'), 0)} spam",
        ))  # fmt: skip
    tiers = {**(sc.get("gateways") or {}), "mailbox": sc.get("mailbox_server") or {}}
    hosts = ", ".join(f"{name} {len(t['hosts'])}" for name, t in tiers.items() if t.get("hosts"))
    if hosts:
        rows.append(("hosts per tier", hosts))
    failures = sc.get("failures") or {}
    events = [f"{kind.replace('_', ' ')}: {len(v)}" for kind, v in failures.items() if v]
    rows.append(("failures", ", ".join(events) or "none"))
    if d.get("events") is not None:
        wall = f" in {d['wall_s']:.1f} s" if d.get("wall_s") else ""
        rows.append(("events simulated", f"{d['events']:,}{wall}"))
    return rows


def latency_rows(d: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per flow and span that saw messages."""
    rows = []
    for flow, spans in d["latency"].items():
        for span, v in spans.items():
            if not v.get("count"):
                continue
            ci = v.get("p95_ci95")
            rows.append({
                "flow": flow, "span": SPAN_TITLES.get(span, span), "count": f"{v['count']:,}",
                "p50": seconds(v["p50"]), "p95": seconds(v["p95"]), "p99": seconds(v["p99"]),
                "max": seconds(v["max"]),
                "p95_ci": f"{seconds(ci[0])} – {seconds(ci[1])}" if ci else "",
            })  # fmt: skip
    return rows


def host_rows(d: dict[str, Any]) -> list[dict[str, Any]]:
    """Per host: mean and peak per resource, delivery queue, messages handled."""
    rows = []
    for hid, h in d["hosts"].items():
        u = h["utilisation"]
        rows.append({
            "host": hid,
            "resources": [
                {"mean": percent(u[r]["mean"], 2), "peak": percent(u[r]["peak"], 2),
                 "at": clock(u[r].get("peak_clock_hour"))}
                for r in RESOURCE_TITLES if r in u
            ],
            "queue_mean": f"{h['queue']['mean']:.2f}", "queue_max": f"{h['queue']['max']:g}",
            "messages": f"{h['messages']:,}",
        })  # fmt: skip
    return rows


def slo_rows(d: dict[str, Any]) -> list[dict[str, Any]]:
    """The SLO objectives with their measured value, as the terminal shows them."""
    rows = []
    for o in d["slo"]:
        if "span" in o:
            what = f"p{o['quantile'] * 100:g} {SPAN_TITLES.get(o['span'], o['span'])} {o['flow']}"
            value, limit = seconds(o["value_s"]), f"≤ {seconds(o['max_s'])}"
            samples = f"{o['samples']:,}"
        else:
            what, value, samples = "share", percent(o["value"], 3), ""
            limit = f"≤ {percent(o['max'])}"
        rows.append({"ok": bool(o["ok"]), "name": o["name"], "what": what, "value": value,
                     "limit": limit, "samples": samples})  # fmt: skip
    return rows


def bottleneck(d: dict[str, Any]) -> dict[str, Any] | None:
    """The first resource to saturate and the headroom to it, with the runners-up."""
    b = d.get("bottleneck") or {}
    if not b:
        return None
    rate = b.get("offered_msgs_per_s_in_peak_bucket")
    return {
        "host": b["host"],
        "resource": RESOURCE_TITLES.get(b["resource"], b["resource"]),
        "peak": percent(b["peak_utilisation"]),
        "at": clock(b.get("peak_clock_hour")),
        "multiplier": f"{b['multiplier']:.1f}×",
        "mailboxes": f"{b['mailboxes_at_saturation']:,.0f}",
        "rate": f"{rate:.2f}" if rate else None,
        "rate_at_saturation": f"{b['msgs_per_s_at_saturation']:.1f}" if rate else None,
        "ranking": [
            {"host": r["host"], "resource": RESOURCE_TITLES.get(r["resource"], r["resource"]),
             "peak": percent(r["peak_utilisation"], 2), "multiplier": f"{r['multiplier']:.1f}×"}
            for r in b.get("ranking", [])
        ],
    }  # fmt: skip


def run_context(d: dict[str, Any]) -> dict[str, Any]:
    """Everything the template shows for one run."""
    slo = slo_rows(d)
    return {
        "kind": "run",
        "name": d["name"],
        "description": (d.get("scenario") or {}).get("scenario", {}).get("description", ""),
        "ok": all(r["ok"] for r in slo),
        "slo": slo,
        "assumptions": assumptions(d),
        "latency": latency_rows(d),
        "hosts": host_rows(d),
        "resources": list(RESOURCE_TITLES.values()),
        "counts": [(k.replace("_", " "), f"{v:,}") for k, v in d["counts"].items()],
        "bottleneck": bottleneck(d),
        "verdict": verdict.lines(d),
        "recovery": recovery.lines(d["recovery"])[1:] if d.get("recovery") else [],
        "figures": {
            "latency": svg_figures.latency_cdf(d),
            "utilisation": svg_figures.utilisation(d),
            "queues": svg_figures.queues(d),
        },
    }


def render_report(runs: Sequence[dict[str, Any]]) -> str:
    """The HTML text of a report on one or more runs (results.json or capacity.json dicts)."""
    contexts = [
        capacity_context(d)
        if is_capacity(d)
        else sweep_context(d)
        if is_sweep(d)
        else run_context(d)
        for d in runs
    ]
    title = "mailgate report: " + ", ".join(c["name"] for c in contexts)
    versions = next((d.get("versions") for d in runs if d.get("versions")), {}) or {}
    return (
        environment()
        .get_template(TEMPLATE)
        .render(title=title, runs=contexts, mailgate_version=versions.get("mailgate", ""))
    )


def write_report(results: dict[str, Any] | Sequence[dict[str, Any]], out_path: str | Path) -> Path:
    """Write the report on one run's results dict (or several; capacity.json dicts too) to
    ``out_path``."""
    runs = [results] if isinstance(results, dict) else list(results)
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(runs), encoding="utf-8")
    return path
