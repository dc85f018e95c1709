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

from mailgate.calibration.report import closing_notes
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
            "error": _error(r["relative_error"]),
            "verdict": "" if r["ok"] is None else ("ok" if r["ok"] else "MISS"),
        }
        for r in report["latency"]
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
