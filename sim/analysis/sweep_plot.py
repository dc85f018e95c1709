"""A sweep as pictures: each numeric metric against one swept key (the x axis), one
line per combination of the other swept keys' values, with the 95 % interval of the
replications as error bars and the SLO limit as a dashed line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from mailgate.sim.analysis.sweep_text import metrics_of, short_keys
from mailgate.sim.scenario.errors import UserError


def x_key(d: dict[str, Any], wanted: str | None = None) -> str:
    """The key on the x axis: ``wanted``, else the first swept key with numeric values,
    else the first swept key."""
    varied = [a for a in d["axes"] if len(a["values"]) > 1] or d["axes"]
    if wanted:
        if wanted not in [a["key"] for a in d["axes"]]:
            raise UserError(f"--x {wanted}: not a swept key (give one of the --set keys)")
        return wanted
    numeric = [a for a in varied if all(_is_number(v) for v in a["values"])]
    return (numeric or varied)[0]["key"]


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def write_sweep_plots(d: dict[str, Any], folder: Path, x: str | None = None) -> list[Path]:
    """``sweep-METRIC.png`` in ``folder`` for every numeric metric; returns the files."""
    files = []
    for name, fig in sweep_figures(d, x):
        path = folder / f"sweep-{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        files.append(path)
    return files


def sweep_figures(d: dict[str, Any], x: str | None = None) -> list[tuple[str, Any]]:
    """(metric name, figure) for every numeric metric of a sweep.json."""
    key = x_key(d, x)
    axis = next(a for a in d["axes"] if a["key"] == key)
    numeric_x = all(_is_number(v) for v in axis["values"])
    others = [a["key"] for a in d["axes"] if a["key"] != key and len(a["values"]) > 1]
    short = short_keys([key, *others])
    figures = []
    for m in metrics_of(d):
        if not m.numeric:
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5))
        lines: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for p in d["points"]:
            lines.setdefault(tuple(p["labels"][k] for k in others), []).append(p)
        for i, (combo, points) in enumerate(lines.items()):
            xs, ys, err = [], [], [[], []]
            for p in points:
                v = p["metrics"][m.name]
                y = (1.0 if v == "pass" else 0.0) if m.kind == "slo" else v
                if y is None:
                    continue
                pos = axis["labels"].index(p["labels"][key])
                xs.append(axis["values"][pos] if numeric_x else pos)
                ys.append(y)
                lo, hi = p["ci95"].get(m.name) or (y, y)
                err[0].append(max(0.0, y - lo))
                err[1].append(max(0.0, hi - y))
            label = ", ".join(f"{short[k]}={c}" for k, c in zip(others, combo, strict=True))
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, color=f"C{i % 10}",
                        label=label or None)  # fmt: skip
        ys = [y for line in ax.get_lines() for y in line.get_ydata() if y and y > 0]
        if m.kind == "latency" and ys and max(ys) > 100 * min(ys):
            ax.set_yscale("log")  # milliseconds and minutes on one picture
        if m.limit is not None:
            ax.axhline(m.limit, color="red", linestyle="--", linewidth=1, label="SLO limit")
        if not numeric_x:
            ax.set_xticks(range(len(axis["labels"])), axis["labels"], rotation=15)
        ax.set_xlabel(key)
        ax.set_ylabel(m.name + (" (s)" if m.kind == "latency" else ""))
        if m.kind == "slo":
            ax.set_yticks([0, 1], ["fail", "pass"])
        ax.set_title(f"{d['scenario']}: {m.name} against {short[key]}")
        ax.grid(True, alpha=0.3)
        if others or m.limit is not None:
            ax.legend(fontsize="small")
        fig.tight_layout()
        figures.append((m.name, fig))
    return figures
