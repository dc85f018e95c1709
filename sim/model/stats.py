"""Streaming statistics: bounded memory whatever the number of messages.

- ``LogHistogram``: latency samples in log-spaced bins (100 per decade, from
  10 µs to 10⁷ s), exact count / mean / max, quantiles within a bin's width
  (±1.2 %); histograms merge across replications.
- ``Level``: a time-weighted quantity (busy cores, queue length, messages in
  a host) with its mean, maximum and per-bucket (hourly) means and maxima,
  counted only after the warm-up.
- ``confidence_interval``: mean and half-width over replications (Student t, scipy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def t975(df: int) -> float:
    """Two-sided 95 % Student t quantile (scipy's, for any number of degrees of freedom)."""
    if df < 1:
        return math.inf
    # imported here: scipy.stats takes ~0.3 s to import and only replicated runs need it
    from scipy.stats import t as student_t

    return float(student_t.ppf(0.975, df))


def confidence_interval(values: Sequence[float]) -> tuple[float, float]:
    """Mean and 95 % half-width of independent replications (inf for one)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    if n == 1:
        return mean, math.inf
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, t975(n - 1) * math.sqrt(var / n)


class LogHistogram:
    """Latencies in log-spaced bins; exact count, sum and max."""

    LO_EXP = -5  # 10 µs
    HI_EXP = 7  # ~116 days
    PER_DECADE = 100
    NBINS = (HI_EXP - LO_EXP) * PER_DECADE

    __slots__ = ("bins", "count", "max", "min", "total")

    def __init__(self) -> None:
        self.bins = [0] * (self.NBINS + 2)  # [0] underflow, [-1] overflow
        self.count = 0
        self.total = 0.0
        self.max = -math.inf
        self.min = math.inf

    def add(self, x: float) -> None:
        self.count += 1
        self.total += x
        if x > self.max:
            self.max = x
        if x < self.min:
            self.min = x
        if x <= 1e-5:
            self.bins[0] += 1
            return
        i = int((math.log10(x) - self.LO_EXP) * self.PER_DECADE) + 1
        self.bins[i if i <= self.NBINS else self.NBINS + 1] += 1

    def merge(self, other: LogHistogram) -> None:
        for i, c in enumerate(other.bins):
            if c:
                self.bins[i] += c
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)
        self.min = min(self.min, other.min)

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan

    def _edge(self, i: int) -> float:
        """Lower edge of bin ``i`` (1-based inner bins)."""
        return 10 ** (self.LO_EXP + (i - 1) / self.PER_DECADE)

    def quantile(self, q: float) -> float:
        """The q-quantile, interpolated log-linearly inside its bin, clamped to [min, max]."""
        if not self.count:
            return math.nan
        target = q * self.count
        seen = 0
        for i, c in enumerate(self.bins):
            if c and seen + c >= target:
                if i == 0:
                    return max(self.min, 0.0) if self.min <= 1e-5 else 1e-5
                if i == self.NBINS + 1:
                    return self.max
                frac = (target - seen) / c
                lo = self._edge(i)
                value = lo * 10 ** (frac / self.PER_DECADE)
                return min(max(value, self.min), self.max)
            seen += c
        return self.max

    def cdf_points(self) -> tuple[list[float], list[float]]:
        """(x, P(X ≤ x)) at the upper edge of every non-empty bin, for plots."""
        xs, ps, seen = [], [], 0
        for i, c in enumerate(self.bins):
            if not c:
                continue
            seen += c
            upper = self._edge(i + 1) if i <= self.NBINS else self.max
            xs.append(min(upper, self.max))
            ps.append(seen / self.count)
        return xs, ps

    def summary(self) -> dict[str, float | int | None]:
        """count, mean, p50, p95, p99, max (None when empty)."""
        if not self.count:
            return {"count": 0, "mean": None, "p50": None, "p95": None, "p99": None, "max": None}
        return {
            "count": self.count,
            "mean": self.mean,
            "p50": self.quantile(0.5),
            "p95": self.quantile(0.95),
            "p99": self.quantile(0.99),
            "max": self.max,
        }

    def to_dict(self) -> dict[str, Any]:
        """Sparse bins for results.json: {index: count}."""
        return {
            "lo_exp": self.LO_EXP,
            "per_decade": self.PER_DECADE,
            "bins": {str(i): c for i, c in enumerate(self.bins) if c},
            **self.summary(),
        }


class Level:
    """A time-weighted level (e.g. busy cores) counted over ``[start, end]``.

    ``add(t, delta)`` changes the level at time ``t`` (non-decreasing).
    ``start`` is the end of the warm-up; buckets of ``bucket_s`` seconds give
    the hourly series (the last one may be shorter).
    """

    __slots__ = ("area", "bucket_area", "bucket_max", "bucket_s", "edge", "end", "index", "max",
                 "on", "start", "t", "value")  # fmt: skip

    def __init__(self, start: float, end: float, bucket_s: float) -> None:
        self.start = start
        self.end = end
        self.bucket_s = bucket_s
        n = max(1, math.ceil((end - start) / bucket_s - 1e-9))
        self.t = 0.0
        self.value = 0.0
        self.area = 0.0
        self.max = 0.0
        self.bucket_area = [0.0] * n
        self.bucket_max = [0.0] * n
        self.index = -1  # -1 warm-up, n past the end
        self.on = False  # counting (0 <= index < n)
        self.edge = start  # when index changes next

    def add(self, t: float, delta: float) -> None:
        v = self.value
        if t < self.edge:
            if v and self.on:
                a = v * (t - self.t)
                self.area += a
                self.bucket_area[self.index] += a
        else:
            self._advance(t)
        self.t = t
        v += delta
        self.value = v
        if self.on and v > self.bucket_max[self.index]:
            self.bucket_max[self.index] = v
            if v > self.max:
                self.max = v

    def _advance(self, t: float) -> None:
        """Integrate the current value from ``self.t`` to ``t``, bucket by bucket."""
        tl, v = self.t, self.value
        n = len(self.bucket_area)
        while True:
            edge = self.edge
            if self.on and v:
                seg = (t if t < edge else edge) - tl
                if seg > 0:
                    self.area += v * seg
                    self.bucket_area[self.index] += v * seg
            if t < edge:
                return
            tl = edge
            self.index += 1
            if self.index >= n:
                self.index, self.on, self.edge = n, False, math.inf
                return
            self.on = True
            self.edge = min(self.start + (self.index + 1) * self.bucket_s, self.end)
            if v > self.bucket_max[self.index]:
                self.bucket_max[self.index] = v
                if v > self.max:
                    self.max = v

    def pulse(self, t0: float, duration: float, value: float = 1.0) -> None:
        """Add ``value`` over ``[t0, t0 + duration]``, known in advance (a CPU burst).

        Cheaper than two ``add`` calls; only the areas are kept (a level fed
        by pulses has no maximum).
        """
        t1 = t0 + duration
        lo = t0 if t0 > self.start else self.start
        hi = t1 if t1 < self.end else self.end
        if hi <= lo:
            return
        b = self.bucket_s
        i = int((lo - self.start) / b)
        n = len(self.bucket_area)
        self.area += value * (hi - lo)
        while lo < hi and i < n:
            edge = self.start + (i + 1) * b
            seg = (hi if hi < edge else edge) - lo
            if seg > 0:
                self.bucket_area[i] += value * seg
            lo = edge
            i += 1

    def finish(self, t: float) -> None:
        """Integrate up to ``t`` (the end of the run)."""
        if t > self.t:
            self._advance(t)
            self.t = t

    @property
    def span(self) -> float:
        return self.end - self.start

    @property
    def mean(self) -> float:
        return self.area / self.span if self.span > 0 else math.nan

    def bucket_means(self) -> list[float]:
        """Per-bucket time averages."""
        out = []
        for i, a in enumerate(self.bucket_area):
            lo = self.start + i * self.bucket_s
            width = min(lo + self.bucket_s, self.end) - lo
            out.append(a / width if width > 0 else math.nan)
        return out
