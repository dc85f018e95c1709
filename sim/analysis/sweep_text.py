"""A sweep as a table on the terminal: one row per point, the swept values then the
metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mailgate.sim.analysis.sweep_metrics import Metric


def short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Each dotted key by its shortest tail that no other key ends with
    (``gateways.gateway1.connect_timeout_s`` → ``connect_timeout_s``)."""
    out = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            tail = ".".join(parts[-n:])
            if not any(o != key and (o == tail or o.endswith("." + tail)) for o in keys):
                break
        out[key] = tail
    return out


def metrics_of(d: dict[str, Any]) -> list[Metric]:
    """The metrics of a sweep.json, as objects that format their values."""
    return [Metric(m["name"], m["kind"], tuple(m["parts"]), m["limit"]) for m in d["metrics"]]


def table(d: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The header (swept keys by their short names, then the metrics) and one row of
    formatted values per point."""
    varied = [a for a in d["axes"] if len(a["values"]) > 1]
    short = short_keys([a["key"] for a in varied])
    metrics = metrics_of(d)
    header = [short[a["key"]] for a in varied] + [m.name for m in metrics]
    rows = [
        [p["labels"][a["key"]] for a in varied] + [m.text(p["metrics"][m.name]) for m in metrics]
        for p in d["points"]
    ]
    return header, rows


def render(d: dict[str, Any]) -> str:
    """The terminal summary of a sweep.json."""
    axes = d["axes"]
    varied = [a for a in axes if len(a["values"]) > 1]
    fixed = [a for a in axes if len(a["values"]) == 1]
    points = d["points"]
    reps = sorted({p["replications"] for p in points})
    shape = " × ".join(str(len(a["values"])) for a in varied) or "1"
    lines = [
        f"mailgate sweep {d['scenario']}: {len(points)} points ({shape}), "
        f"{'/'.join(map(str, reps))} replication{'s' if reps != [1] else ''} each (same seeds "
        f"at every point, first seed {d['seed']}), {d['workers']} workers, "
        f"{d['wall_s']:.1f} s wall",
    ]
    w = d["window"]
    lines.append(
        f"  each point: {w['duration_h']:g} h measured after {w['warmup_h']:g} h warm-up, "
        f"from clock hour {w['start_hour']:g}"
    )
    for a in fixed:
        lines.append(f"  with {a['key']} = {a['labels'][0]}")
    short = short_keys([a["key"] for a in varied])
    for key, name in short.items():
        if name != key:
            lines.append(f"  {name} = {key}")
    metrics = metrics_of(d)
    header, rows = table(d)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines.append("")
    lines.append("  " + "  ".join(h.rjust(wd) for h, wd in zip(header, widths, strict=True)))
    for r in rows:
        lines.append("  " + "  ".join(c.rjust(wd) for c, wd in zip(r, widths, strict=True)))
    limits = [f"{m.name} ≤ {m.text(m.limit)}" for m in metrics if m.limit is not None]
    if limits:
        lines.append("")
        lines.append("  SLO limits: " + ", ".join(limits))
    return "\n".join(lines)
