"""A calibration's files: ``calibration.json``, ``report.md`` and the plots
(latency against load, CDFs per load).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mailgate.calibration.points import Point
from mailgate.calibration.report import format_report


def plot(
    report: Mapping[str, Any], measured: Sequence[Point], modelled: Sequence[Point], out: Path
) -> list[Path]:
    """Latency versus load (measured points, modelled lines) and CDF overlays per load."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    flows = sorted({f for p in measured for f in p.latency.get("in_mailbox", {})})
    fig, axes = plt.subplots(
        1, max(len(flows), 1), figsize=(5 * max(len(flows), 1), 4), squeeze=False
    )
    for ax, flow in zip(axes[0], flows, strict=False):
        for q, colour in (("p50", "tab:blue"), ("p95", "tab:orange"), ("p99", "tab:red")):
            xs = [p.rate for p in measured if flow in p.latency.get("in_mailbox", {})]
            ys = [
                p.latency["in_mailbox"][flow][q] * 1e3
                for p in measured
                if flow in p.latency.get("in_mailbox", {})
            ]
            ax.plot(xs, ys, "o", color=colour, label=f"measured {q}")
            mx = [p.rate for p in modelled if flow in p.latency.get("in_mailbox", {})]
            my = [
                p.latency["in_mailbox"][flow][q] * 1e3
                for p in modelled
                if flow in p.latency.get("in_mailbox", {})
            ]
            ax.plot(mx, my, "-", color=colour, label=f"modelled {q}")
        ax.set_title(f"{flow}: send → in mailbox")
        ax.set_xlabel("offered load, msg/s")
        ax.set_ylabel("latency, ms")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(out / "latency_vs_load.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    n = len(measured)
    fig, axes = plt.subplots(1, max(n, 1), figsize=(4 * max(n, 1), 3.5), squeeze=False)
    for ax, meas, mod in zip(axes[0], measured, modelled, strict=False):
        for flow, colour in zip(flows, ("tab:blue", "tab:green", "tab:purple"), strict=False):
            for point, style, who in ((meas, "-", "measured"), (mod, "--", "modelled")):
                values = np.sort(point.samples.get("in_mailbox", {}).get(flow, []))
                if len(values):
                    ax.plot(
                        values * 1e3,
                        np.arange(1, len(values) + 1) / len(values),
                        style,
                        color=colour,
                        label=f"{flow} {who}",
                    )
        ax.set_xscale("log")
        ax.set_title(f"{meas.rate:g} msg/s")
        ax.set_xlabel("send → in mailbox, ms")
        ax.set_ylabel("CDF")
        ax.legend(fontsize=6)
    fig.tight_layout()
    paths.append(out / "cdf_by_load.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


def write_outputs(
    report: dict[str, Any], measured: Sequence[Point], modelled: Sequence[Point], out: Path
) -> dict[str, Path]:
    """calibration.json, report.md and the plots in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "calibration.json", "report": out / "report.md"}
    report["plots"] = [str(p) for p in plot(report, measured, modelled, out)]
    paths["json"].write_text(json.dumps(_jsonable(report), indent=1) + "\n", encoding="utf-8")
    paths["report"].write_text(format_report(report), encoding="utf-8")
    return paths


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
