"""The report's text (``report.md``, also printed by the command): saturation,
latency per load, CPU per host and of the machine, where the model departs, the
fit, the verdict and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mailgate.calibration.points import OUTSIDE_MODEL
from mailgate.calibration.report_sections import (
    background_section,
    load_dependence_section,
    saturation_methods,
    spread_text,
    verdict_mark,
)
from mailgate.calibration.why import closing_notes


def format_report(report: Mapping[str, Any]) -> str:
    """The terminal/Markdown report."""
    lines = [f"# Calibration of {report['scenario']}", "", f"`{report['command']}`", ""]
    sat = report["saturation"]
    lines += [
        "## Saturation",
        "",
        "| | msg/s | first to saturate |",
        "|---|---:|---|",
        f"| measured | {sat['measured']['throughput']:.1f} | {sat['measured']['first_host']} |",
        f"| modelled | {sat['modelled']['throughput']:.1f} | {sat['modelled']['first_host']} |",
        "",
        f"relative error {_fmt_err(sat['relative_error'])}; same first host: "
        f"{'yes' if sat['same_first_host'] else 'NO'}",
        *saturation_methods(report),
        "",
        "## Latency from the scheduled send (ms)",
        "",
        f"Each load measured {report.get('repeats', 1)} time(s); measured = the pooled "
        "samples, range = the lowest and highest value of the repeats. A judged miss whose "
        "modelled value lies inside that range is `within spread` (not a miss). "
        "`out_of_shadow`: small inbound messages that overlapped no message over 200 KB "
        "(reported, not judged).",
        "",
        "| msg/s | load | span | flow | n | q | measured | range over repeats | modelled "
        "| error | |",
        "|---:|---:|---|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in report["latency"]:
        mod = "—" if r["modelled_s"] is None else f"{r['modelled_s'] * 1e3:.1f}"
        lines.append(
            f"| {r['rate']:g} | {r['load']:.0%} | {r['span']} | {r['flow']} | {r['n']} "
            f"| {r['quantile']} | {r['measured_s'] * 1e3:.1f} | {spread_text(r)} "
            f"| {mod} | {_fmt_err(r['relative_error'])} | {verdict_mark(r)} |"
        )
    lines += ["", "## CPU utilisation per host (share of one core)", ""]
    lines += ["| msg/s | host | measured | modelled | error |", "|---:|---|---:|---:|---:|"]
    for r in report["utilisation"]:
        lines.append(
            f"| {r['rate']:g} | {r['host']} | {_fmt_share(r['measured'])} | "
            f"{_fmt_share(r['modelled'])} | {_fmt_err(r['relative_error'])} |"
        )
    lines += machine_section(report)
    lines += background_section(report)
    lines += ["", "## Where the model departs (largest gaps in mean time per hop)", ""]
    for rate, gaps in report["departures"].items():
        text = "; ".join(
            f"{g['tier']}/{g['stage']} measured {g['measured_s'] * 1e3:.2f} ms, modelled "
            f"{g['modelled_s'] * 1e3:.2f} ms"
            for g in gaps
        )
        lines.append(f"- {rate} msg/s: {text or 'no stage data'}")
    lines += ["", "## Fit (every load and repeat of the sweep)", ""]
    boot = report["fit"].get("bootstrap")
    if boot:
        lines += [
            f"95 % intervals in brackets: percentile bootstrap over the messages "
            f"({boot['resamples']} resamples, each fitted the same way).",
            "",
        ]
    lines += ["| tier | stage | n | cpu fixed ms | cpu µs/KB | sigma | R² | wait ms | from |"]
    lines += ["|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for s in report["fit"]["stages"]:
        r2 = "—" if s["r2"] is None else f"{s['r2']:.2f}"
        ci = s.get("ci95") or {}
        lines.append(
            f"| {s['tier']} | {s['stage']} | {s['n']} | "
            f"{s['cpu_fixed_s'] * 1e3:.3f}{_ci(ci.get('cpu_fixed_s'), 1e3, 3)} | "
            f"{s['cpu_per_kb_s'] * 1e6:.2f}{_ci(ci.get('cpu_per_kb_s'), 1e6, 2)} | "
            f"{s['cpu_sigma']:.2f} | {r2} | "
            f"{s['wait_mean_s'] * 1e3:.3f}{_ci(ci.get('wait_mean_s'), 1e3, 3)} | "
            f"{s.get('source', '')} |"
        )
    lines += load_dependence_section(report)
    lines += capacity_section(report)
    lines += ["", "## Verdict", ""]
    if report["ok"]:
        lines.append("All targets met.")
    else:
        lines += [f"- {f}" for f in report["failures"]]
        lines += ["", "## Why", ""] + [f"- {w}" for w in closing_notes(report)]
    lines.append("")
    return "\n".join(lines)


def machine_section(report: Mapping[str, Any]) -> list[str]:
    """Who kept the machine's cores busy at each load: the modelled hosts, the
    DNS server and remote sinks (not modelled), the load generator, others."""
    lines = [
        "",
        "## The machine's cores during each load (cores busy, measured)",
        "",
        "| msg/s | whole machine | modelled hosts (meas.) | modelled hosts (model) "
        "| dns + remote sinks | load generator | other processes |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for level in report["loads"]:
        m, d = level["measured"], level["modelled"]
        hosts = sum(u for h, u in m["utilisation"].items() if h not in OUTSIDE_MODEL)
        outside = sum(u for h, u in m["utilisation"].items() if h in OUTSIDE_MODEL)
        loadgen = m.get("loadgen", {}).get("loadgen_cpu_share", 0.0)
        foreign = m.get("foreign_busy_cores")
        lines.append(
            f"| {m['rate']:g} | {_fmt_cores(m.get('machine_busy_cores'))} | {hosts:.2f} | "
            f"{sum(d['utilisation'].values()):.2f} | {outside:.2f} | {loadgen:.2f} | "
            f"{_fmt_cores(foreign)} |"
        )
        if foreign is not None and foreign > 0.25:
            notes.append(
                f"At {m['rate']:g} msg/s other processes kept {foreign:.2f} cores busy: the "
                "testbed had less than the machine's cores the model gives it."
            )
        if outside + loadgen > 0.1 * max(hosts, 1e-9):
            notes.append(
                f"At {m['rate']:g} msg/s the DNS server, remote sinks and load generator used "
                f"{outside + loadgen:.2f} cores the model does not know about."
            )
    return lines + ([""] + [f"- {n}" for n in notes] if notes else [])


def capacity_section(report: Mapping[str, Any]) -> list[str]:
    """The capacity the fit implies (the analytic solver on the fitted scenario), with
    its 95 % band over the resampled fits."""
    bands = report.get("capacity_band")
    if not bands:
        return []
    lines = [
        "",
        "## Capacity the fit implies (analytic solver, 95 % bootstrap band)",
        "",
        "| where | fitted | 95 % band | bottleneck | peak hour |",
        "|---|---:|---:|---|---:|",
    ]
    for world, b in bands.items():
        if not isinstance(b, dict):
            continue
        unit, fmt = (
            ("mailboxes", "{:,.0f}") if world == "production" else ("msgs_per_s", "{:.1f} msg/s")
        )
        band = b[unit]["ci95"]
        text = "—" if band is None else "–".join(fmt.format(v) for v in band)
        who = b["bottleneck"] + (
            f" (resamples: {', '.join(b['bottlenecks'])})" if len(b["bottlenecks"]) > 1 else ""
        )
        lines.append(
            f"| {world} ({b['scenario']}) | {fmt.format(b[unit]['value'])} | {text} | {who} "
            f"| {b['hour']:02d}:00 |"
        )
    return lines


def _ci(band: list[float] | None, scale: float, digits: int) -> str:
    """`` [lo–hi]`` scaled, or nothing."""
    if not band:
        return ""
    return f" [{band[0] * scale:.{digits}f}–{band[1] * scale:.{digits}f}]"


def _fmt_cores(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _fmt_err(err: float | None) -> str:
    return "—" if err is None else f"{err:+.0%}"


def _fmt_share(u: float | None) -> str:
    return "—" if u is None else f"{u:.0%}"
