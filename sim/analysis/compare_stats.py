"""The statistical tests behind ``mailgate compare``: is a difference between two runs
beyond the noise of the simulation? Each returns a two-sided p-value (or, for the
histogram intervals, whether the intervals are apart). docs/reports.md says why these.

- ``welch_from_intervals``: replication sets. ``results.json`` holds the 95 % Student-t
  interval of the replications' p95 (and mean); its half-width gives the standard error
  back, and Welch's t-test compares the two means without assuming equal variances.
- ``quantile_test``: one run each. The histogram gives a binomial interval for any
  quantile (histogram.quantile_interval); its width on a log scale gives the standard
  error of the log quantile, and a z-test compares the two runs.
- ``paired_series_test``: utilisation. The runs share the buckets of the day, so the
  per-bucket differences take out the diurnal shape the two runs have in common; a
  one-sample t-test on those differences (buckets as batch means).
- ``counts_test``: counts of messages. Events of a Poisson stream: given the total, the
  new run's share is binomial with the share of exposure; an exact binomial test.
- ``holm``: a comparison makes dozens of tests; Holm's step-down correction keeps the
  chance that any of them is a false alarm below the level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats

ALPHA = 0.05  # two-sided level of every test


def _standard_error(half_width: float, n: int) -> float:
    return half_width / float(stats.t.ppf(0.975, n - 1))


def welch_from_intervals(
    base: tuple[float, float], n_base: int, new: tuple[float, float], n_new: int
) -> float:
    """p-value of Welch's t-test between two replication means given their 95 % intervals
    ``(low, high)`` over ``n_base`` and ``n_new`` replications (each ≥ 2)."""
    m1, m2 = (base[0] + base[1]) / 2, (new[0] + new[1]) / 2
    s1 = _standard_error((base[1] - base[0]) / 2, n_base)
    s2 = _standard_error((new[1] - new[0]) / 2, n_new)
    spread = math.hypot(s1, s2)
    if spread == 0:
        return 1.0 if m1 == m2 else 0.0
    t = (m2 - m1) / spread
    # Welch–Satterthwaite degrees of freedom
    df = spread**4 / ((s1**4 / (n_base - 1) if s1 else 0.0) + (s2**4 / (n_new - 1) if s2 else 0.0))
    return float(2 * stats.t.sf(abs(t), df))


def quantile_test(
    base: float, base_ci: tuple[float, float], new: float, new_ci: tuple[float, float]
) -> float | None:
    """p-value of a z-test between two quantile estimates, each with its 95 % interval,
    on a log scale (latencies are positive and change by factors); None when a figure is not
    positive (everything in the histogram's underflow bin)."""
    if min(base, new, base_ci[0], new_ci[0]) <= 0:
        return None
    z975 = float(stats.norm.ppf(0.975))
    se1 = (math.log(base_ci[1]) - math.log(base_ci[0])) / (2 * z975)
    se2 = (math.log(new_ci[1]) - math.log(new_ci[0])) / (2 * z975)
    spread = math.hypot(se1, se2)
    diff = math.log(new) - math.log(base)
    if spread == 0:
        return 1.0 if diff == 0 else 0.0
    return float(2 * stats.norm.sf(abs(diff) / spread))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the order given."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def paired_series_test(base: Sequence[float], new: Sequence[float]) -> float | None:
    """p-value of a one-sample t-test on the per-bucket differences ``new - base`` (None
    when the series do not line up or are too short to test)."""
    if len(base) != len(new) or len(base) < 3:
        return None
    diffs = [b - a for a, b in zip(base, new, strict=True)]
    k = len(diffs)
    mean = sum(diffs) / k
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (k - 1))
    if sd == 0:  # identical series, or a constant shift: no noise to weigh it against
        return 1.0 if mean == 0 else 0.0
    t = mean / (sd / math.sqrt(k))
    return float(2 * stats.t.sf(abs(t), k - 1))


def counts_test(base: int, new: int, new_share: float = 0.5) -> float:
    """p-value that ``new`` of ``base + new`` events fall in the new run when it had
    ``new_share`` of the exposure (exact binomial test; 1.0 when there are none)."""
    total = base + new
    if total == 0:
        return 1.0
    return float(stats.binomtest(new, total, new_share).pvalue)
