"""Per-tier aggregates of an imported log: what the model's scenario needs (arrival rate
and its diurnal profile, sizes, per-hop delays, deferral and bounce rates, remote MTA
time) and the measured send → final time per flow and hour. Only aggregates: no address,
Message-ID or queue ID leaves this module."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path as FilePath
from typing import Any

import numpy as np

from mailgate.calibration.maillog.events import Collector, QueueEntry
from mailgate.calibration.maillog.lines import open_lines
from mailgate.calibration.maillog.privacy import Hasher
from mailgate.calibration.maillog.stitch import FINAL_AGENTS, Path, Stitched, stitch

QUANTILES = (0.5, 0.95, 0.99)
DELAY_PARTS = ("a", "b", "c", "d")
#: Hours with less log than this (s) get no diurnal weight of their own.
MIN_HOUR_EXPOSURE_S = 60.0


def read_logs(
    paths: Iterable[FilePath], hasher: Hasher | None = None, year: int | None = None
) -> Collector:
    """Parse every line of every log (plain or gzip) into one collector."""
    collector = Collector(hasher=hasher or Hasher(), year=year)
    for path in paths:
        collector.new_file()
        for line in open_lines(path):
            collector.feed(line)
    return collector


def quantile_stats(values: Sequence[float]) -> dict[str, float | int | None]:
    """n, mean and the usual quantiles (None when there is nothing)."""
    if not values:
        return {"n": 0, "mean": None, **{f"p{round(q * 100)}": None for q in QUANTILES}}
    a = np.asarray(values, dtype=float)
    qs = np.quantile(a, QUANTILES)
    return {
        "n": len(values),
        "mean": float(a.mean()),
        **{f"p{round(q * 100)}": float(v) for q, v in zip(QUANTILES, qs, strict=True)},
    }


def lognormal_fit(values_kb: Sequence[float]) -> dict[str, float] | None:
    """Median and sigma of log(size): the shape ``{dist = "lognormal"}`` takes."""
    positive = [v for v in values_kb if v > 0]
    if len(positive) < 2:
        return None
    logs = np.log(positive)
    return {"median": float(math.exp(float(np.median(logs)))), "sigma": float(logs.std())}


def default_tier(instance: str) -> str:
    """An instance's tier: its name without a trailing host number (``gw-2`` -> ``gw``)."""
    base, sep, tail = instance.rpartition("-")
    return base if sep and tail.isdigit() and base else instance


def hour_exposure(start_local: float, end_local: float) -> list[float]:
    """Seconds of the log period falling in each hour of day (wall clock)."""
    days = max(0, math.floor((end_local - start_local) / 86400))
    out = [days * 3600.0] * 24  # whole days cover every hour alike
    t = start_local + days * 86400
    while t < end_local:
        edge = min((math.floor(t / 3600) + 1) * 3600, end_local)
        out[int(t // 3600) % 24] += edge - t
        t = edge
    return out


def diurnal(arrivals_local: Sequence[float], exposure: Sequence[float]) -> dict[str, Any]:
    """24 weights (mean 1 over the hours the log covers) from arrivals per hour of day."""
    counts = [0] * 24
    for t in arrivals_local:
        counts[int(t // 3600) % 24] += 1
    pairs = zip(counts, exposure, strict=True)
    rates = [c / x if x >= MIN_HOUR_EXPOSURE_S else None for c, x in pairs]
    seen = [r for r in rates if r is not None]
    mean = sum(seen) / len(seen) if seen and sum(seen) > 0 else None
    weights = [round(r / mean, 4) if r is not None and mean else None for r in rates]
    return {
        "arrivals": counts,
        "exposure_s": [round(x, 3) for x in exposure],
        "weights": weights,
        "hours_covered": len(seen),
    }


def tier_aggregates(entries: Sequence[QueueEntry], stitched: Stitched) -> dict[str, Any]:
    """The aggregates of one tier's entries.

    Its rate and diurnal profile come from its own arrivals (Postfix's arrival times, finer
    than the stamps) over its own first-to-last arrival: a short log's rate is not diluted
    by the time other tiers take to finish."""
    mail = [e for e in entries if e.source != "notification"]
    started = [e for e in mail if e.source in ("smtpd", "pickup")]  # arrived within the log
    arrivals = [e.local - (e.first_seen - e.arrival) for e in started]
    span_s = max(arrivals) - min(arrivals) if arrivals else 0.0
    exposure = hour_exposure(min(arrivals), max(arrivals)) if arrivals else [0.0] * 24
    deliveries = [d for e in mail for d in e.deliveries]
    sent = [d for d in deliveries if d.status == "sent"]
    finished = [d for d in deliveries if d.status in ("sent", "bounced", "expired")]
    remote = [p.final for p in stitched.paths if p.flow == "outbound" and p.hops[-1] in mail]
    sizes = [e.size / 1024 for e in mail if e.size is not None]
    return {
        "instances": sorted({e.instance for e in entries}),
        "messages": len(mail),
        "rate_per_s": (len(started) - 1) / span_s if span_s > 0 else None,
        "diurnal": diurnal(arrivals, exposure),
        "size_kb": {**quantile_stats(sizes), "lognormal": lognormal_fit(sizes)},
        "recipients_per_message": quantile_stats([e.nrcpt for e in mail if e.nrcpt]),
        "delays_s": {
            "total": quantile_stats([d.delay for d in sent]),
            **{p: quantile_stats([d.delays[i] for d in sent]) for i, p in enumerate(DELAY_PARTS)},
        },
        "agents": dict(Counter(d.agent for d in sent)),
        "attempts": len(deliveries),
        "deferral_rate": _share(sum(d.status == "deferred" for d in deliveries), len(deliveries)),
        "deferred_messages": _share(
            sum(any(d.status == "deferred" for d in e.deliveries) for e in mail), len(mail)
        ),
        "bounce_rate": _share(sum(d.status != "sent" for d in finished), len(finished)),
        "rejected_messages": sum(e.rejected for e in mail),
        "notifications": len(entries) - len(mail),
        "remote_mta_s": quantile_stats([d.delays[2] + d.delays[3] for d in remote]),
    }


def end_to_end(paths: Sequence[Path], key: str = "seconds") -> dict[str, Any]:
    """Send → final per flow, overall and per hour of day of the send."""
    by_flow: dict[str, list[Path]] = defaultdict(list)
    for p in paths:
        by_flow[p.flow].append(p)
    out: dict[str, Any] = {}
    for flow, ps in sorted(by_flow.items()):
        hours: dict[int, list[float]] = defaultdict(list)
        for p in ps:
            hours[int(p.start_local // 3600) % 24].append(getattr(p, key))
        out[flow] = {
            **quantile_stats([getattr(p, key) for p in ps]),
            "by_hour": {f"{h:02d}": quantile_stats(v) for h, v in sorted(hours.items())},
        }
        if key == "seconds":
            out[flow]["if_hops_independent"] = independent_hops(ps)
    return out


def independent_hops(paths: Sequence[Path], shuffles: int = 50) -> dict[str, Any]:
    """Send → final quantiles as if each hop's time were independent of the others'
    (what the model assumes): every hop's column shuffled across the paths of the same
    length. Far from the measured quantiles, the hops are correlated (shared cores,
    disks, bursts) and the model cannot follow."""
    by_len: dict[int, list[tuple[float, ...]]] = defaultdict(list)
    for p in paths:
        if p.parts:
            by_len[len(p.parts)].append(p.parts)
    rng = np.random.default_rng(0)  # fixed: the same log gives the same report
    p50, p95 = [], []
    for _ in range(shuffles):
        sums: list[float] = []
        for rows in by_len.values():
            columns = np.asarray(rows, dtype=float).T
            sums += list(sum(rng.permutation(col) for col in columns))
        if sums:
            p50.append(float(np.quantile(sums, 0.5)))
            p95.append(float(np.quantile(sums, 0.95)))
    if not p50:
        return {"p50": None, "p95": None}
    return {"p50": float(np.mean(p50)), "p95": float(np.mean(p95))}


def tier_names(collector: Collector, tiers: Mapping[str, str] | None = None) -> dict[str, str]:
    """Instance -> tier (``tiers`` overrides ``default_tier``)."""
    tiers = dict(tiers or {})
    return {e.instance: tiers.get(e.instance, default_tier(e.instance)) for e in collector.entries}


def path_order(stitched: Stitched, tier_of: Mapping[str, str]) -> dict[str, float]:
    """Tier -> its mean position on the stitched paths (the MX first)."""
    spots: dict[str, list[int]] = defaultdict(list)
    for p in stitched.paths:
        for i, hop in enumerate(p.hops):
            spots[tier_of[hop.instance]].append(i)
    return {t: sum(v) / len(v) for t, v in spots.items()}


def aggregate(collector: Collector, tiers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Everything ``import-maillog`` reports and writes, from a parsed log."""
    entries = collector.entries
    tier_of = tier_names(collector, tiers)
    stitched = stitch(entries)
    times = [e.first_seen for e in entries]
    local = [e.local for e in entries]
    span = (max(times) - min(times)) if times else 0.0
    exposure = hour_exposure(min(local), max(local)) if local else [0.0] * 24
    by_tier: dict[str, list[QueueEntry]] = defaultdict(list)
    for e in entries:
        by_tier[tier_of[e.instance]].append(e)
    rejects: Counter[str] = Counter()
    for instance, n in collector.rejects.items():
        rejects[(tiers or {}).get(instance, default_tier(instance))] += n
    order = path_order(stitched, tier_of)
    ranked = sorted(by_tier, key=lambda t: (order.get(t, math.inf), t))
    return {
        "lines": dict(sorted(collector.counts.items())),
        "skipped": sum(n for k, n in collector.counts.items() if k.startswith("skipped:")),
        "period": {
            "seconds": span,
            "hours_covered": sum(x > 0 for x in exposure),
        },
        "tiers": {
            t: {
                **tier_aggregates(by_tier[t], stitched),
                "noqueue_rejects": rejects[t],
            }
            for t in ranked
        },
        "stitching": stitched.summary(),
        "end_to_end": end_to_end(stitched.paths),
        "end_to_end_clock": end_to_end(stitched.paths, "clock_seconds"),
        "hashed": collector.hasher.enabled,
    }


def fit_samples(
    collector: Collector, tiers: Mapping[str, str] | None = None
) -> dict[str, dict[str, list[float]]]:
    """Tier -> the delay sums the overlay fits (kept in memory, never written): ``a`` of
    every sent delivery, ``b+c`` of forwarding ones, ``b+c+d`` of final ones; messages
    deferred on the way left out."""
    tier_of = tier_names(collector, tiers)
    out: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for e in collector.entries:
        # after a deferral ``a`` includes the time in the deferred queue: the retry is the
        # model's own mechanism (deferral rate), not a cost of receiving
        if e.source == "notification" or any(d.status == "deferred" for d in e.deliveries):
            continue
        for d in e.deliveries:
            if d.status != "sent":
                continue
            a, b, c, dd = d.delays
            s = out[tier_of[e.instance]]
            s["a"].append(a)
            s["b+c+d" if d.agent in FINAL_AGENTS else "b+c"].append(
                b + c + dd if d.agent in FINAL_AGENTS else b + c
            )
    return {t: dict(v) for t, v in out.items()}


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None
