"""Sections of the report about how the calibration was measured: the saturation on
both sides (how found, the other estimates), the background load and what runs
beside the hosts, and how the fitted costs move with the load.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Rows of the load-dependence table: the significant slopes, largest change (in s) first.
MAX_DEPENDENCE_ROWS = 15


def saturation_methods(report: Mapping[str, Any]) -> list[str]:
    """How each side's saturation was found, and the model's other estimates."""
    sat = report["saturation"]
    lines = [
        "",
        f"- measured: {sat['measured'].get('method', '')}",
        f"- modelled: {sat['modelled'].get('method', '')}",
    ]
    others = sat.get("modelled_other_estimates") or {}
    names = {
        "ramp_on_model": "the ramp on the model alone",
        "busiest_resource": "the model's busiest resource at 100 %",
        "busiest_resource_with_outside_cpu": "… with the outside CPU (utilisation law)",
    }
    for key, label in names.items():
        if key in others:
            o = others[key]
            lines.append(
                f"- for reference, {label}: {o['throughput']:.1f} msg/s ({o['first_host']})"
            )
    return lines


def spread_text(row: Mapping[str, Any], scale: float = 1e3) -> str:
    """``min–max`` of a latency row's quantile over the repeats (``—`` without repeats)."""
    sp = row.get("spread")
    if not sp:
        return "—"
    return f"{sp['min'] * scale:.1f}–{sp['max'] * scale:.1f}"


def verdict_mark(row: Mapping[str, Any]) -> str:
    """The report's mark for a latency row."""
    verdict = row.get("verdict")
    if verdict is None:
        return "" if row.get("ok") is None else ("ok" if row["ok"] else "**MISS**")
    return {"ok": "ok", "miss": "**MISS**", "within spread": "within spread"}[verdict]


def background_section(report: Mapping[str, Any]) -> list[str]:
    """The burner (if it ran), the CPU outside the hosts per message, the send path."""
    bg = report.get("background")
    if not bg:
        return []
    lines = ["", "## What else ran on the machine", ""]
    burner = bg.get("burner")
    if burner:
        lines.append(
            f"A CPU burner ran during the whole measurement (`--background-load "
            f"{burner['cores_requested']:g}`): {burner['processes']} process(es), PIDs "
            f"{', '.join(map(str, burner['pids']))}, {burner['cores_measured']:.2f} cores "
            f"measured over {burner['wall_s']:.0f} s; stopped at the end."
        )
    else:
        lines.append("No CPU burner ran (`--background-load` not given).")
    lines += [
        "",
        "| msg/s | CPU outside the hosts per message (ms) | other processes (cores) "
        "| send → gateway0 mean (ms) | p95 (ms) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in bg["per_load"]:
        sp = r.get("send_path_s") or {}
        foreign = r.get("foreign_busy_cores")
        lines.append(
            f"| {r['rate']:g} | {r['outside_cpu_per_message_s'] * 1e3:.2f} | "
            f"{'—' if foreign is None else f'{foreign:.2f}'} | "
            f"{sp['mean'] * 1e3:.2f} | {sp['p95'] * 1e3:.2f} |"
            if sp
            else f"| {r['rate']:g} | {r['outside_cpu_per_message_s'] * 1e3:.2f} | "
            f"{'—' if foreign is None else f'{foreign:.2f}'} | — | — |"
        )
    where = (
        "written into the model (`fitted.toml`: `[[deployment.machines]]` `scheduler = "
        '"fair"`, `background_processes`, `background_cpu_per_message_s`, '
        "`background_cores`; `[workload] send_path_s`)"
        if bg.get("in_model")
        else "measured only: this model has no background keys yet, so the modelled "
        "saturation adds the outside CPU by the utilisation law"
    )
    lines += ["", f"Fitted over the sweep ({where}):", *background_summary(bg)]
    return lines


def background_summary(bg: Mapping[str, Any]) -> list[str]:
    """The fitted background as list items (markdown; the HTML report shows the same)."""
    out = [
        f"- {bg['cpu_per_message_s'] * 1e3:.2f} ms of CPU outside the hosts per message (DNS "
        "server, remote sinks, load generator: the slope of their cores against the rate)",
        f"- {bg['cores']:.2f} cores of constant load: "
        f"{bg.get('outside_constant_cores', 0.0):.2f} of those processes whatever the rate, "
        f"{bg.get('hosts_constant_cores', 0.0):.2f} of the hosts' own constant burn, "
        f"{bg.get('other_cores', bg['cores']):.2f} of other processes (median)",
    ]
    if bg.get("processes"):
        out.append(
            f"- {bg['processes']} always-runnable process(es) (the burner), sharing the cores "
            "fairly with the hosts"
        )
    out.append(f"- send path {bg['send_path_s'] * 1e3:.2f} ms (the lowest load's)")
    return out


def _fmt_s(v: float | None, scale: float = 1e3) -> str:
    return "—" if v is None else f"{v * scale:.3f}"


def load_dependence_section(report: Mapping[str, Any]) -> list[str]:
    """Costs that depend on the load: significant slopes against the offered rate."""
    fit = report.get("fit") or {}
    dep = fit.get("load_dependence")
    sizes = fit.get("sizes_kb")
    lines = []
    if sizes:
        lines += [
            "",
            f"The fit used {sizes['hops']} hops of every load and repeat; sizes "
            f"{sizes['min']:.1f}–{sizes['max']:.0f} KB ({sizes['over_200kb']} over 200 KB).",
        ]
    if not dep:
        return lines
    rows = [r for r in (*dep.get("hosts", []), *dep.get("stages", [])) if r["significant"]]
    rows.sort(key=lambda r: abs(r["at_high"] - r["at_low"]), reverse=True)  # ms over the sweep
    lines += [
        "",
        "## Costs that depend on the load",
        "",
        f"Least-squares slope against the offered load over {dep['runs']} runs "
        f"({', '.join(f'{r:g}' for r in dep['rates'])} msg/s); shown where p < "
        f"{dep['alpha']:g}. The overlay carries one constant per cost (the mean over the "
        "sweep); these say where that constant is low at one end and high at the other.",
        "",
    ]
    if not rows:
        return [*lines, "No cost changed significantly with the load."]
    lines += [
        "| tier | stage | what | n | at lowest load ms | at highest ms | change | "
        "slope µs per msg/s | p |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows[:MAX_DEPENDENCE_ROWS]:
        change = r.get("relative_change")
        lines.append(
            f"| {r['tier']} | {r['stage']} | {r['quantity']} | {r['n']} | "
            f"{_fmt_s(r['at_low'])} | {_fmt_s(r['at_high'])} | "
            f"{'—' if change is None else f'{change:+.0%}'} | "
            f"{r['slope'] * 1e6:+.2f} ± {r['stderr'] * 1e6:.2f} | {r['p_value']:.1g} |"
        )
    if len(rows) > MAX_DEPENDENCE_ROWS:
        lines.append(f"\n({len(rows) - MAX_DEPENDENCE_ROWS} more in calibration.json)")
    return lines
