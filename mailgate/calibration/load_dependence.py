"""Do the costs depend on the load? Slopes against the offered rate, with their
significance, over every run of the sweep (all loads, all repeats).

The overlay's costs are fitted from all the sweep's traces together (a mean over the
loads, per-KB costs over the whole range of sizes seen); this module says where one
constant is not the whole story: a stage's CPU per message that falls as the load
grows (group-committed fsyncs, warm caches, reused connections), a wait that grows
(thread hand-offs and run-queue waiting behind other processes), a host's CPU per
hop from /proc that changes with the load. Each is an ordinary least-squares slope
per msg/s of offered load with its standard error and two-sided p-value (scipy's
t distribution); ``significant`` means p < ``ALPHA``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mailgate.calibration.fit import tier_of
from mailgate.sim.scenario.records import HopRecord

#: Significance level of a slope.
ALPHA = 0.01
#: Fewer hops of a stage than this: no slope.
MIN_N = 10
#: Fewer runs than this: no /proc slope (one point per run).
MIN_RUNS = 4


@dataclass
class Run:
    """One measured run of the sweep: its offered rate, traces and /proc CPU per host."""

    rate: float
    hops: list[HopRecord]
    cpu_s: Mapping[str, float] = field(default_factory=dict)


def slope(
    x: Sequence[float],
    y: Sequence[float],
    covariates: Sequence[Sequence[float]] = (),
    min_n: int = MIN_N,
) -> dict[str, Any] | None:
    """OLS of ``y`` on ``1 + x (+ covariates)``: ``x``'s slope, its standard error, p-value,
    and the fitted ``y`` (covariates at their mean) at the smallest and largest ``x``."""
    from scipy import stats

    xa, ya = np.asarray(x, float), np.asarray(y, float)
    n = len(xa)
    cols = [np.ones(n), xa, *(np.asarray(c, float) for c in covariates)]
    design = np.column_stack(cols)
    k = design.shape[1]
    if n < max(min_n, k + 2) or np.ptp(xa) <= 0:
        return None
    beta, *_ = np.linalg.lstsq(design, ya, rcond=None)
    resid = ya - design @ beta
    dof = n - k
    s2 = float(resid @ resid) / dof
    try:
        cov = s2 * np.linalg.inv(design.T @ design)
    except np.linalg.LinAlgError:
        return None
    se = float(np.sqrt(max(cov[1, 1], 0.0)))
    b = float(beta[1])
    t = b / se if se > 0 else (np.inf if b else 0.0)
    p = float(2 * stats.t.sf(abs(t), dof)) if np.isfinite(t) else 0.0
    rest = sum(float(beta[i]) * float(np.mean(cols[i])) for i in range(2, k))
    lo, hi = float(xa.min()), float(xa.max())
    at_lo, at_hi = float(beta[0]) + b * lo + rest, float(beta[0]) + b * hi + rest
    return {
        "n": n,
        "slope": b,
        "stderr": se,
        "p_value": p,
        "significant": p < ALPHA,
        "rate_range": [lo, hi],
        "at_low": at_lo,
        "at_high": at_hi,
        "relative_change": (at_hi - at_lo) / at_lo if at_lo > 0 else None,
    }


def stage_dependence(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """Per tier and stage: traced CPU (controlling for size) and wait (elapsed − CPU)
    against the offered rate, one observation per hop."""
    rows: dict[tuple[str, str], list[tuple[float, float, float, float]]] = defaultdict(list)
    for run in runs:
        for hop in run.hops:
            if hop.outcome == "retrieved":
                continue
            tier = tier_of(hop.host)
            for stage, span in hop.stages.items():
                wait = max(span.elapsed - span.cpu_s, 0.0)
                rows[(tier, stage)].append((run.rate, hop.size_kb, span.cpu_s, wait))
    out = []
    for (tier, stage), data in sorted(rows.items()):
        arr = np.asarray(data, float)
        for quantity, fitted in (
            ("cpu", slope(arr[:, 0], arr[:, 2], [arr[:, 1]])),
            ("wait", slope(arr[:, 0], arr[:, 3])),
        ):
            if fitted is not None:
                out.append({"tier": tier, "stage": stage, "quantity": quantity, **fitted})
    return out


def host_dependence(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """Per tier: CPU per hop by /proc (all of the tier's CPU, traced or not) against
    the offered rate, one observation per run."""
    per_tier: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for run in runs:
        hops: dict[str, int] = defaultdict(int)
        hosts: dict[str, set[str]] = defaultdict(set)
        for hop in run.hops:
            if hop.outcome != "retrieved":
                hops[tier_of(hop.host)] += 1
                hosts[tier_of(hop.host)].add(hop.host)
        for tier, n in hops.items():
            cpu = sum(run.cpu_s.get(h, 0.0) for h in hosts[tier])
            if n and cpu > 0:
                per_tier[tier].append((run.rate, cpu / n))
    out = []
    for tier, data in sorted(per_tier.items()):
        arr = np.asarray(data, float)
        fitted = slope(arr[:, 0], arr[:, 1], min_n=MIN_RUNS)
        if fitted is not None:
            out.append({"tier": tier, "stage": "(all, /proc)", "quantity": "cpu", **fitted})
    return out


def load_dependence(runs: Sequence[Run]) -> dict[str, Any]:
    """``calibration.json``'s ``fit.load_dependence``: per-hop slopes and /proc slopes."""
    return {
        "alpha": ALPHA,
        "unit": "seconds per (msg/s of offered load)",
        "runs": len(runs),
        "rates": sorted({r.rate for r in runs}),
        "stages": stage_dependence(runs),
        "hosts": host_dependence(runs),
    }
