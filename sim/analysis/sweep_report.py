"""A what-if sweep (``sweep.json``) as a section of the HTML report: the grid's shape and
window, every point's swept values and metrics (the table ``mailgate sweep`` prints), the
SLO verdict per point, and each numeric metric against the first numeric swept key as
inline SVG (the same figures as the PNG files)."""

from __future__ import annotations

from typing import Any

from mailgate.sim.analysis.svg_figures import to_svg
from mailgate.sim.analysis.sweep_plot import sweep_figures
from mailgate.sim.analysis.sweep_text import table


def is_sweep(d: dict[str, Any]) -> bool:
    """A sweep's answer (``sweep.json``) rather than a run's or a capacity search's."""
    return "axes" in d and "points" in d


def sweep_context(d: dict[str, Any]) -> dict[str, Any]:
    """Everything the template shows for one sweep."""
    header, rows = table(d)
    verdicts = [p["metrics"].get("slo") for p in d["points"]]
    failing = [i for i, p in enumerate(d["points"]) if any(not o["ok"] for o in p.get("slo", []))]
    w = d["window"]
    return {
        "kind": "sweep",
        "name": f"{d['scenario']} (sweep)",
        "description": "",
        "ok": not failing,
        "points": len(d["points"]),
        "failing": len(failing),
        "axes": [(a["key"], ", ".join(a["labels"])) for a in d["axes"]],
        "window": f"{w['duration_h']:g} h measured after {w['warmup_h']:g} h warm-up, "
        f"from clock hour {w['start_hour']:g}",
        "replications": sorted({p["replications"] for p in d["points"]}),
        "seed": d["seed"],
        "header": header,
        "rows": rows,
        "row_ok": [v != "fail" for v in verdicts],
        "figures": [to_svg(fig) for _, fig in sweep_figures(d)],
    }
