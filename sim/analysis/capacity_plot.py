"""The capacity search as a picture: each SLO's quantile against mailboxes, with its limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def capacity_figure(d: dict[str, Any]) -> Any:
    """Mean p95 (95 % CI bars) per latency SLO per point, the SLO limits, the capacity and
    its 95 % band (a matplotlib figure: PNG for ``capacity.png``, SVG for the report)."""
    fig, ax = plt.subplots(figsize=(8, 5))
    points = d["points"]
    names = [o["name"] for o in points[0]["objectives"] if "share" not in o["name"]]
    limits: set[float] = set()
    for i, name in enumerate(names):
        xs, ys, err = [], [], [[], []]
        for p in points:
            o = next((o for o in p["objectives"] if o["name"] == name), None)
            if o is None:
                continue
            xs.append(p["mailboxes"])
            ys.append(o["mean"])
            lo, hi = o["ci95"] or (o["mean"], o["mean"])
            err[0].append(max(0.0, o["mean"] - max(lo, 1e-3)))
            err[1].append(max(0.0, hi - o["mean"]))
            limits.add(o["limit"])
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=name, color=f"C{i}")
    for limit in sorted(limits):
        ax.axhline(limit, color="red", linestyle="--", linewidth=1, label=f"SLO {limit:g} s")
    c = d["capacity"]
    if c["mailboxes"]:
        ax.axvline(c["mailboxes"], color="black", linewidth=1, label="capacity")
        lo, hi = c["band95"]
        if hi:
            ax.axvspan(lo, hi, color="grey", alpha=0.2, label="95 % band")
    ax.set_yscale("log")
    ax.set_xlabel("mailboxes")
    ax.set_ylabel("p95 latency, s (mean over replications)")
    ax.set_title(f"{d['scenario']}: SLO quantiles against load")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def write_capacity_plot(d: dict[str, Any], folder: Path) -> Path:
    """``capacity.png`` in ``folder`` (``capacity_figure``)."""
    fig = capacity_figure(d)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "capacity.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
