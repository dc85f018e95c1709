"""A calibration as one self-contained HTML page (``mailgate report`` on a calibration
folder, ``mailgate calibrate --report``): the verdict first, then measured and modelled
side by side — saturation, latency per load (table and figure), CPU per host, where the
model departs, the fitted costs and why targets were missed.

Built from ``calibration.json`` alone, with the same Jinja2 environment, style sheet and
inline-SVG figures as the run report: nothing is fetched, the file reads offline.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mailgate.calibration.report_sections import (
    MAX_DEPENDENCE_ROWS,
    background_summary,
    saturation_methods,
    spread_text,
    verdict_mark,
)
from mailgate.calibration.why import closing_notes
from mailgate.sim.analysis.formatting import percent
from mailgate.sim.analysis.html_report import environment

TEMPLATE = "calibration.html.j2"
SPAN = "in_mailbox"  # the span the targets judge: scheduled send -> in the mailbox


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1e3:.1f}"


def _error(value: float | None) -> str:
    return "—" if value is None else f"{value:+.0%}"


def latency_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per load, span, flow and quantile: measured, modelled, error, judged."""
    return [
        {
            "rate": f"{r['rate']:g}",
            "load": percent(r["load"], 0),
            "span": r["span"],
            "flow": r["flow"],
            "quantile": r["quantile"],
            "n": r.get("n", ""),
            "measured": _ms(r["measured_s"]),
            "modelled": _ms(r["modelled_s"]),
            "spread": spread_text(r),
            "error": _error(r["relative_error"]),
            "verdict": verdict_mark(r).strip("*"),
        }
        for r in report["latency"]
    ]


def background_context(report: Mapping[str, Any]) -> dict[str, Any] | None:
    """The burner, the CPU outside the hosts and the send path, formatted."""
    bg = report.get("background")
    if not bg:
        return None
    return {
        "burner": bg.get("burner"),
        "in_model": bg.get("in_model"),
        "cpu_per_message_ms": f"{bg['cpu_per_message_s'] * 1e3:.2f}",
        "cores": f"{bg['cores']:.2f}",
        "summary": [line.removeprefix("- ") for line in background_summary(bg)],
        "send_path_ms": f"{bg['send_path_s'] * 1e3:.2f}",
        "per_load": [
            {
                "rate": f"{r['rate']:g}",
                "outside_ms": f"{r['outside_cpu_per_message_s'] * 1e3:.2f}",
                "foreign": _cores(r.get("foreign_busy_cores")),
                "send_path_ms": _ms((r.get("send_path_s") or {}).get("mean")),
            }
            for r in bg["per_load"]
        ],
    }


def _cores(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def dependence_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The significant load dependences of the fitted costs, formatted."""
    dep = (report.get("fit") or {}).get("load_dependence") or {}
    rows = [r for r in (*dep.get("hosts", []), *dep.get("stages", [])) if r["significant"]]
    rows.sort(key=lambda r: abs(r["at_high"] - r["at_low"]), reverse=True)  # ms over the sweep
    return [
        {
            "tier": r["tier"],
            "stage": r["stage"],
            "quantity": r["quantity"],
            "n": r["n"],
            "low": f"{r['at_low'] * 1e3:.3f}",
            "high": f"{r['at_high'] * 1e3:.3f}",
            "change": _error(r.get("relative_change")),
            "slope": f"{r['slope'] * 1e6:+.2f} ± {r['stderr'] * 1e6:.2f}",
            "p": f"{r['p_value']:.1g}",
        }
        for r in rows[:MAX_DEPENDENCE_ROWS]
    ]


def latency_figure(report: Mapping[str, Any]) -> str:
    """p50 and p95 send → in mailbox against the offered load, per flow: measured as
    points joined by solid lines, modelled dashed, on one axis per flow."""
    from mailgate.sim.analysis.svg_figures import plt, to_svg

    rows = [r for r in report["latency"] if r["span"] == SPAN and r["quantile"] in ("p50", "p95")]
    flows = sorted({r["flow"] for r in rows})
    fig, axes = plt.subplots(
        1, max(len(flows), 1), figsize=(4.6 * max(len(flows), 1), 3.6), squeeze=False
    )
    for ax, flow in zip(axes[0], flows, strict=False):
        for q, colour in (("p50", "tab:blue"), ("p95", "tab:orange")):
            mine = sorted((r for r in rows if r["flow"] == flow and r["quantile"] == q),
                          key=lambda r: r["rate"])  # fmt: skip
            rates = [r["rate"] for r in mine]
            ax.plot(rates, [r["measured_s"] * 1e3 for r in mine], "o-", color=colour,
                    label=f"{q} measured")  # fmt: skip
            modelled = [(r["rate"], r["modelled_s"]) for r in mine if r["modelled_s"] is not None]
            ax.plot([x for x, _ in modelled], [y * 1e3 for _, y in modelled], "--",
                    color=colour, label=f"{q} modelled")  # fmt: skip
        ax.set_title(f"{flow}: send → in mailbox")
        ax.set_xlabel("offered load (messages/s)")
        ax.set_ylabel("ms")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return to_svg(fig)


def calibration_context(report: Mapping[str, Any]) -> dict[str, Any]:
    """What the template shows, formatted."""
    sat = report["saturation"]
    return {
        "scenario": report["scenario"],
        "command": report["command"],
        "ok": report["ok"],
        "failures": report["failures"],
        "why": [] if report["ok"] else closing_notes(report),
        "tolerance": percent(report["tolerance"], 0),
        "saturation": [
            {
                "side": side,
                "throughput": f"{sat[side]['throughput']:.1f}",
                "first_host": sat[side]["first_host"],
                "method": sat[side]["method"],
            }
            for side in ("measured", "modelled")
        ],
        "saturation_notes": [
            line.lstrip("- ") for line in saturation_methods(report)[3:] if line.strip()
        ],
        "repeats": report.get("repeats", 1),
        "background": background_context(report),
        "dependence": dependence_rows(report),
        "saturation_error": _error(sat["relative_error"]),
        "same_first_host": sat["same_first_host"],
        "latency": latency_rows(report),
        "utilisation": [
            {
                "rate": f"{r['rate']:g}",
                "host": r["host"],
                "measured": percent(r["measured"]),
                "modelled": percent(r["modelled"]),
                "error": _error(r["relative_error"]),
            }
            for r in report["utilisation"]
        ],
        "departures": [
            {
                "rate": rate,
                "gaps": [
                    f"{g['tier']}/{g['stage']}: measured {g['measured_s'] * 1e3:.2f} ms, "
                    f"modelled {g['modelled_s'] * 1e3:.2f} ms"
                    for g in gaps
                ],
            }
            for rate, gaps in report["departures"].items()
        ],
        "stages": report["fit"]["stages"],
        "figure": latency_figure(report),
    }


def render_calibration(report: Mapping[str, Any]) -> str:
    """The HTML text of the report on one calibration."""
    return (
        environment("mailgate.calibration")
        .get_template(TEMPLATE)
        .render(
            title=f"mailgate calibration: {Path(report['scenario']).stem}",
            c=calibration_context(report),
        )
    )


def write_calibration_report(report: Mapping[str, Any], out_path: str | Path) -> Path:
    """Write the page for ``report`` (a calibration.json dict) to ``out_path``."""
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_calibration(report), encoding="utf-8")
    return path
