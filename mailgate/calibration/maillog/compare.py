"""Measured (the log) against modelled (the fitted overlay): send → mailbox p50/p95 per
flow and hour of day, each hour simulated at the rate the log shows in it.

The model runs through its front door, ``simulate(load(overlay, overrides), seed)``; the
per-message send → mailbox times come from its ``MessageRecord`` trace.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mailgate.calibration.maillog.overlay import overlay_table, write_overlay
from mailgate.sim.scenario.loading import locate

#: Relative error of p50/p95 the issue accepts.
TOLERANCE = 0.15
#: Hours with fewer measured paths are shown, not judged.
MIN_JUDGED_N = 20
#: Messages the model simulates per compared hour (more: tighter quantiles, slower).
MODEL_MESSAGES = 3000
#: The model's warm-up, hours (queues fill from empty).
WARMUP_H = 0.01


def hour_rates(result: Mapping[str, Any]) -> dict[str, float]:
    """Hour of day -> arrivals/s at the first tier in that hour."""
    first = next(iter(result["tiers"].values()))
    exposure = first["diurnal"]["exposure_s"]
    arrivals = first["diurnal"]["arrivals"]
    return {f"{h:02d}": arrivals[h] / exposure[h] for h in range(24) if exposure[h] > 0}


def model_hour(overlay: Path, hour: int, rate: float, seed: int) -> dict[str, list[float]]:
    """Send → final times (s) per flow from one model run at ``rate`` messages/s."""
    from mailgate.sim.model.simulate import simulate
    from mailgate.sim.scenario.loading import load
    from mailgate.sim.scenario.records import MessageRecord

    base = load(overlay)
    duration_h = max(0.02, min(1.0, MODEL_MESSAGES / max(rate, 1e-6) / 3600.0))
    scenario = load(
        overlay,
        {
            "scenario.start_hour": float(hour),
            "scenario.duration_h": duration_h,
            "scenario.warmup_h": WARMUP_H,
            "scenario.replications": 1,
            "workload.diurnal.inbound": [1.0] * 24,
            "workload.inbound_per_mailbox_day": rate * 86400.0 / base.population.mailboxes,
        },
    )
    out: dict[str, list[float]] = {"inbound": [], "outbound": []}
    warmup_s = WARMUP_H * 3600.0

    def trace(record: object) -> None:
        if not isinstance(record, MessageRecord) or record.sent < warmup_s:
            return
        if record.in_mailbox is not None and record.flow == "inbound":
            out["inbound"].append(record.in_mailbox - record.sent)
        elif record.remote is not None and record.flow == "outbound":
            out["outbound"].append(record.remote - record.sent)

    simulate(scenario, seed=seed, trace=trace)
    return out


def compare_with_model(
    result: Mapping[str, Any],
    samples: Mapping[str, Mapping[str, list[float]]],
    scenario: str,
    out: Path,
    seed: int = 1,
    loads: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write ``fitted.toml`` (fitted from ``result``), run the model per measured hour and
    return the comparison; ``loads`` (label -> aggregates of one log) compares each log
    on its own with the one fitted overlay (logs taken at different loads)."""
    from mailgate.calibration.maillog.aggregate import quantile_stats
    from mailgate.sim.scenario.loading import load

    base_path = locate(scenario)  # a file, or a shipped scenario's name
    base = load(base_path)
    table = overlay_table(result, samples, base)
    used = [t for t in result["tiers"] if t in base.tiers]
    note = (
        "Fitted by `mailgate import-maillog` from a Postfix log: per-tier waits from "
        "delays=a/b/c/d,\nthe workload from the log's arrivals (tiers: "
        f"{', '.join(used) or 'none matched the scenario'})."
    )
    overlay = write_overlay(table, base_path, out / "fitted.toml", note)
    rows = []
    for label, measured in (loads or {"": result}).items():
        rates = hour_rates(measured)
        for flow, e2e in measured["end_to_end"].items():
            for hour, m in e2e["by_hour"].items():
                rate = rates.get(hour, 0.0)
                if rate <= 0:
                    continue
                modelled = quantile_stats(model_hour(overlay, int(hour), rate, seed)[flow])
                row = _row(flow, hour, rate, m, modelled)
                row["if_hops_independent"] = e2e.get("if_hops_independent")
                rows.append({"log": label, **row})
    judged = [r for r in rows if r["judged"]]
    return {
        "scenario": str(base_path),
        "overlay": str(overlay),
        "tiers_fitted": used,
        "tolerance": TOLERANCE,
        "rows": rows,
        "within_tolerance": bool(judged) and all(r["ok"] for r in judged),
        "files": [str(overlay)],
    }


def _row(
    flow: str, hour: str, rate: float, m: Mapping[str, Any], d: Mapping[str, Any]
) -> dict[str, Any]:
    errors = {
        q: (d[q] - m[q]) / m[q] if m.get(q) and d.get(q) is not None else None
        for q in ("p50", "p95")
    }
    judged = m["n"] >= MIN_JUDGED_N and all(e is not None for e in errors.values())
    return {
        "flow": flow,
        "hour": hour,
        "rate_per_s": rate,
        "measured": {k: m[k] for k in ("n", "p50", "p95")},
        "modelled": {k: d[k] for k in ("n", "p50", "p95")},
        "error": errors,
        "judged": judged,
        "ok": judged and all(abs(e) <= TOLERANCE for e in errors.values() if e is not None),
    }


def format_comparison(c: Mapping[str, Any]) -> str:
    """The measured-vs-modelled table (calibrate's report layout: one row per flow and
    load, measured and modelled quantiles in ms, the relative error)."""
    lines = [
        f"Measured (log) vs modelled ({Path(c['overlay']).name} on {Path(c['scenario']).name}),"
        f" send -> final, tolerance {c['tolerance'] * 100:.0f} %:",
        "| log | flow | hour | rate/s | n log | p50 log ms | p50 model ms | err | p95 log ms "
        "| p95 model ms | err | |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in c["rows"]:
        m, d, e = r["measured"], r["modelled"], r["error"]
        verdict = ("ok" if r["ok"] else "OFF") if r["judged"] else "few"
        lines.append(
            f"| {r['log'] or 'all'} | {r['flow']} | {r['hour']} | {r['rate_per_s']:.2f} "
            f"| {m['n']} | {_ms(m['p50'])} | {_ms(d['p50'])} | {_pct(e['p50'])} "
            f"| {_ms(m['p95'])} | {_ms(d['p95'])} "
            f"| {_pct(e['p95'])} | {verdict} |"
        )
    if not c["rows"]:
        lines.append("(no flow with a measured hour to compare)")
    seen = set()
    for r in c["rows"]:
        ind = r.get("if_hops_independent") or {}
        if (r["log"], r["flow"]) in seen or ind.get("p50") is None:
            continue
        seen.add((r["log"], r["flow"]))
        lines.append(
            f"{r['log'] or 'all'} {r['flow']}: the log's own hops shuffled independently (the "
            f"model's assumption) give p50 {_ms(ind['p50'])} ms, p95 {_ms(ind['p95'])} ms"
        )
    lines.append(
        "All judged rows within tolerance."
        if c["within_tolerance"]
        else "Not all judged rows are within tolerance (or none could be judged)."
    )
    return "\n".join(lines)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.1f}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:+.0f} %"
