"""Latency quantiles, CDFs and quantile confidence intervals read from the sparse
histograms of ``results.json`` (``{"lo_exp", "per_decade", "bins": {index: count}}``).

Works on the JSON alone, so a report or a comparison needs no model code: bin ``i``
(1-based inner bins) spans ``10**(lo_exp + (i-1)/per_decade)`` to the next edge; bin 0 is
the underflow, the last the overflow (its upper edge is the recorded maximum).
"""

from __future__ import annotations

import math
from typing import Any

from scipy import stats


def _sorted_bins(hist: dict[str, Any]) -> list[tuple[int, int]]:
    return sorted((int(i), int(c)) for i, c in hist["bins"].items() if c)


def _edge(hist: dict[str, Any], i: int) -> float:
    """Lower edge of inner bin ``i``."""
    return 10 ** (hist["lo_exp"] + (i - 1) / hist["per_decade"])


def value_at_rank(hist: dict[str, Any], rank: float) -> float | None:
    """The latency below which ``rank`` of the samples lie, interpolated log-linearly inside
    its bin as the model does (None for an empty histogram)."""
    bins = _sorted_bins(hist)
    total = sum(c for _, c in bins)
    if not total:
        return None
    top = hist["max"] if hist.get("max") is not None else math.inf
    rank = min(max(rank, 0.0), total)
    seen = 0
    for i, c in bins:
        if seen + c >= rank:
            if i == 0:
                return 10.0 ** hist["lo_exp"]
            frac = (rank - seen) / c
            return min(_edge(hist, i) * 10 ** (frac / hist["per_decade"]), top)
        seen += c
    return top


def quantile(hist: dict[str, Any], q: float) -> float | None:
    """The q-quantile of the histogram's samples."""
    return value_at_rank(hist, q * int(hist.get("count") or 0))


def quantile_interval(
    hist: dict[str, Any], q: float, level: float = 0.95
) -> tuple[float, float] | None:
    """Distribution-free interval for the q-quantile: the order statistics whose ranks the
    binomial(n, q) distribution brackets with probability ``level`` (the samples are treated
    as independent; queueing makes neighbours correlated, so this is a lower bound on the
    noise — see docs/reports.md)."""
    n = int(hist.get("count") or 0)
    if n == 0:
        return None
    tail = (1 - level) / 2
    lo_rank = float(stats.binom.ppf(tail, n, q))
    hi_rank = float(stats.binom.ppf(1 - tail, n, q)) + 1
    lo, hi = value_at_rank(hist, lo_rank), value_at_rank(hist, min(hi_rank, n))
    assert lo is not None and hi is not None
    return lo, hi


def cdf_points(hist: dict[str, Any]) -> tuple[list[float], list[float]]:
    """(x, P(X ≤ x)) at the upper edge of every non-empty bin, for plots."""
    bins = _sorted_bins(hist)
    total = sum(c for _, c in bins)
    top = hist["max"] if hist.get("max") is not None else math.inf
    xs: list[float] = []
    ps: list[float] = []
    seen = 0
    for i, c in bins:
        seen += c
        upper = _edge(hist, i + 1) if i > 0 else 10.0 ** hist["lo_exp"]
        xs.append(min(upper, top))
        ps.append(seen / total)
    return xs, ps
