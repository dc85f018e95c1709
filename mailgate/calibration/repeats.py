"""Repeats of a load point: one pooled ``Point`` per offered rate, and the spread of
its quantiles across the repeats.

Each load is measured ``--repeats`` times (each with its own load-generator seed,
the sweep repeated in turn so a drift of the machine shows as spread, not as a
trend with load). The comparison uses the pooled samples; the spread says how far
one repeat's p50/p95 wanders from the next, and a model value that lies inside the
measured range is a miss the measurement cannot tell from noise ("within spread").
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mailgate.calibration.points import Point, quantiles

#: The quantiles whose spread is reported (and judged).
SPREAD_QUANTILES = ("p50", "p95")


def spread(values: Sequence[float]) -> dict[str, Any]:
    """min, max, mean and sample sd (0 for one value) of one quantile over repeats."""
    arr = [float(v) for v in values]
    return {
        "n": len(arr),
        "values": arr,
        "min": min(arr),
        "max": max(arr),
        "mean": statistics.fmean(arr),
        "sd": statistics.stdev(arr) if len(arr) > 1 else 0.0,
    }


def quantile_spread(repeats: Sequence[Point]) -> dict[str, dict[str, dict[str, Any]]]:
    """span → flow → quantile → ``spread`` over the repeats that measured that flow."""
    values: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for p in repeats:
        for span, flows in p.latency.items():
            for flow, row in flows.items():
                for q in SPREAD_QUANTILES:
                    if row.get(q) is not None:
                        values[span][flow][q].append(row[q])
    return {
        span: {f: {q: spread(v) for q, v in qs.items()} for f, qs in flows.items()}
        for span, flows in values.items()
    }


def within_spread(modelled: float | None, sp: Mapping[str, Any] | None) -> bool:
    """Whether a modelled quantile lies inside the range the repeats measured (needs ≥ 2)."""
    if modelled is None or not sp or sp.get("n", 0) < 2:
        return False
    return bool(sp["min"] <= modelled <= sp["max"])


def _mean(points: Sequence[Point], key: str) -> float | None:
    vals = [p.extra[key] for p in points if p.extra.get(key) is not None]
    return float(np.mean(vals)) if vals else None


def _pool_loadgen(summaries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The load generator's summaries of the repeats as one run of their total length."""
    if not summaries:
        return {}
    wall = sum(s.get("wall_s", 0.0) for s in summaries)
    cpu = sum(s.get("loadgen_cpu_share", 0.0) * s.get("wall_s", 0.0) for s in summaries)
    return {
        **summaries[-1],
        "messages": sum(s.get("messages", 0) for s in summaries),
        "wall_s": wall,
        "duration_s": sum(s.get("duration_s", 0.0) for s in summaries),
        "loadgen_cpu_share": cpu / wall if wall > 0 else 0.0,
        "pop_polls": sum(s.get("pop_polls", 0) for s in summaries),
        "lateness_s": {
            k: max(s.get("lateness_s", {}).get(k, 0.0) for s in summaries)
            for k in ("p50", "p99", "max")
        },
        "warnings": [w for s in summaries for w in s.get("warnings", [])],
    }


def _mean_table(tables: Sequence[Mapping[str, Mapping[str, float]]]) -> dict[str, dict[str, float]]:
    acc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for t in tables:
        for k, row in t.items():
            for part, v in row.items():
                acc[k][part].append(v)
    return {k: {p: float(np.mean(v)) for p, v in row.items()} for k, row in acc.items()}


def pool_points(repeats: Sequence[Point]) -> Point:
    """One ``Point`` for the repeats of one rate: latencies from the pooled samples,
    throughput, utilisation and stage means averaged, CPU seconds summed (they go with
    all the repeats' traces), and ``extra["spread"]`` / ``extra["repeats"]``."""
    if len(repeats) == 1:
        only = repeats[0]
        only.extra.setdefault("spread", quantile_spread(repeats))
        return only
    samples: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for p in repeats:
        for span, flows in p.samples.items():
            for flow, values in flows.items():
                samples[span][flow] += list(values)
    pooled = {s: dict(f) for s, f in samples.items()}
    hosts = sorted({h for p in repeats for h in p.utilisation})
    cpu_s: dict[str, float] = defaultdict(float)
    for p in repeats:
        for h, c in p.extra.get("cpu_s", {}).items():
            cpu_s[h] += c
    extra: dict[str, Any] = {
        "loadgen": _pool_loadgen([p.extra["loadgen"] for p in repeats if "loadgen" in p.extra]),
        "cpu_s": dict(cpu_s),
        "spread": quantile_spread(repeats),
        "repeats": [repeat_summary(p) for p in repeats],
    }
    for key in (
        "offered", "early_p50_s", "latency_growth_s", "machine_busy_cores",
        "run_queue_per_message_s",
    ):  # fmt: skip
        if (value := _mean(repeats, key)) is not None:
            extra[key] = value
    foreign = [p.extra["foreign_busy_cores"] for p in repeats if "foreign_busy_cores" in p.extra]
    if foreign:
        extra["foreign_busy_cores"] = float(np.mean(foreign))
        extra["foreign_busy_cores_max"] = float(max(foreign))
    paths = [p.extra["send_path_s"] for p in repeats if p.extra.get("send_path_s")]
    if paths:
        n = sum(sp["n"] for sp in paths)
        extra["send_path_s"] = {
            "n": n,
            "mean": sum(sp["mean"] * sp["n"] for sp in paths) / max(n, 1),
            "p95": max(sp["p95"] for sp in paths),
        }
    return Point(
        rate=repeats[0].rate,
        throughput=float(np.mean([p.throughput for p in repeats])),
        latency=quantiles(pooled),
        utilisation={
            h: float(np.mean([p.utilisation.get(h, 0.0) for p in repeats])) for h in hosts
        },
        samples=pooled,
        stage_means=_mean_table([p.stage_means for p in repeats]),
        residence=_mean_table([p.residence for p in repeats]),
        extra=extra,
    )


def repeat_summary(p: Point) -> dict[str, Any]:
    """What the report keeps of one repeat: its seed, throughput, other load, quantiles."""
    return {
        "seed": p.extra.get("seed"),
        "throughput": p.throughput,
        "foreign_busy_cores": p.extra.get("foreign_busy_cores"),
        "latency": {
            span: {f: {q: row[q] for q in SPREAD_QUANTILES} for f, row in flows.items()}
            for span, flows in p.latency.items()
        },
    }
