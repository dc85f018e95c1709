"""What-if sweeps: the model run at every point of a full factorial grid of scenario
values, each point with its replications, and chosen metrics per point.

Common random numbers: every point runs the same replication seeds (children of one
``SeedSequence``, as ``mailgate run`` uses them), so the differences between points
come from the values swept, not from different luck. Every replication of every point
is one job on the executor (local processes or a Dask cluster); a job's result depends
only on its scenario and seed, and the replications of a point are combined in seed
order, so where the jobs ran does not change the answer. A point's figures are those
``mailgate run`` would report for it (``results.json``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mailgate.sim.analysis.parallel import Executor
from mailgate.sim.analysis.results_text import clean
from mailgate.sim.analysis.sweep_grid import GridPoint, grid, parse_axes
from mailgate.sim.analysis.sweep_metrics import Metric, default_metrics, parse_metric
from mailgate.sim.model.simulate import combine, replicate, seeds
from mailgate.sim.scenario.loading import load


def point_figures(p: GridPoint, d: dict[str, Any], metrics: Sequence[Metric]) -> dict[str, Any]:
    """One point of sweep.json: its values, the metrics (with 95 % intervals where there
    are), each SLO's value and verdict, and the bottleneck."""
    b = d["bottleneck"] or {}
    return {
        "index": p.index,
        "values": p.values,
        "labels": p.labels,
        "replications": d["replications"],
        "metrics": {m.name: m.value(d) for m in metrics},
        "ci95": {m.name: m.ci95(d) for m in metrics if m.ci95(d) is not None},
        "slo": [
            {
                "name": o["name"],
                "value": o.get("value_s", o.get("value")),
                "limit": o.get("max_s", o.get("max")),
                "ok": o["ok"],
            }
            for o in d["slo"]
        ],
        "bottleneck": {k: b.get(k) for k in ("host", "resource", "peak_utilisation", "multiplier")},
    }


def sweep(
    path: str | Path,
    sets: Sequence[str],
    ex: Executor,
    *,
    overrides: Mapping[str, Any] | None = None,
    metrics: Sequence[str] = (),
    seed: int | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the grid of ``sets`` (``KEY=V1,V2,...``) over the scenario at ``path`` (with
    ``overrides`` under every point) and return sweep.json as a dict."""
    log = log or (lambda line: None)
    base = dict(overrides or {})
    axes = parse_axes(sets)
    points = grid(path, axes, base)
    scenarios = [p.scenario for p in points]
    names = list(metrics) or default_metrics(scenarios[0])
    chosen = [parse_metric(name, scenarios) for name in dict.fromkeys(names)]
    seed = load(path, base).scenario.seed if seed is None else seed
    start = time.perf_counter()
    # every replication of every point at once, so the workers stay busy to the end
    jobs = []
    for p in points:
        children = seeds(seed, p.scenario.scenario.replications)
        jobs.append([ex.submit(replicate, p.scenario, child) for child in children])
    log(f"{len(points)} points × replications: {sum(map(len, jobs))} runs on {ex.workers} workers")
    out = []
    for p, futures in zip(points, jobs, strict=True):
        reps = ex.gather(futures)
        d = clean(combine(p.scenario, reps, seed=seed, wall_s=0.0).to_dict())
        out.append(point_figures(p, d, chosen))
        shown = ", ".join(f"{m.name} {m.text(out[-1]['metrics'][m.name])}" for m in chosen[:3])
        text = " ".join(f"{k}={v}" for k, v in p.labels.items())
        log(f"point {p.index + 1}/{len(points)} {text}: {shown}")
    meta = load(path, base).scenario
    return {
        "scenario": meta.name,
        "source": str(path),
        "seed": seed,
        "overrides": base,
        "window": {
            "start_hour": meta.start_hour,
            "warmup_h": meta.warmup_h,
            "duration_h": meta.duration_h,
        },
        "axes": [{"key": a.key, "values": list(a.values), "labels": list(a.labels)} for a in axes],
        "metrics": [
            {"name": m.name, "kind": m.kind, "parts": list(m.parts), "limit": m.limit}
            for m in chosen
        ],
        "points": out,
        "workers": ex.workers,
        "wall_s": time.perf_counter() - start,
    }
