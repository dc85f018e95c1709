"""Streaming statistics: histogram quantiles, time-weighted levels, intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mailgate.sim.model.engine import Pool, Scheduler
from mailgate.sim.model.stats import Level, LogHistogram, confidence_interval, t975


def test_histogram_quantiles_within_bin_width() -> None:
    x = np.random.default_rng(7).lognormal(0.0, 1.5, 50_000)
    h = LogHistogram()
    for v in x:
        h.add(float(v))
    width = 10 ** (1 / LogHistogram.PER_DECADE)  # relative width of one bin
    for q in (0.5, 0.9, 0.95, 0.99):
        assert h.quantile(q) == pytest.approx(np.quantile(x, q), rel=width - 1)
    assert h.count == len(x)
    assert h.mean == pytest.approx(x.mean(), rel=1e-9)
    assert h.max == x.max()


def test_histogram_merge_adds_counts() -> None:
    a, b = LogHistogram(), LogHistogram()
    for v in (0.1, 0.2, 5.0):
        a.add(v)
    b.add(100.0)
    a.merge(b)
    assert a.count == 4
    assert a.max == 100.0
    assert a.quantile(1.0) == 100.0


def test_level_time_weighted_with_warmup_and_buckets() -> None:
    level = Level(start=10.0, end=40.0, bucket_s=10.0)
    level.add(0.0, 2)  # 2 from t=0, but only [10, 15) counts
    level.add(15.0, -1)  # 1 on [15, 25)
    level.add(25.0, 3)  # 4 on [25, 40)
    level.finish(40.0)
    assert level.area == pytest.approx(2 * 5 + 1 * 10 + 4 * 15)
    assert level.mean == pytest.approx(level.area / 30.0)
    assert level.bucket_means() == pytest.approx([(2 * 5 + 1 * 5) / 10, (1 * 5 + 4 * 5) / 10, 4.0])
    assert level.bucket_max == [2.0, 4.0, 4.0]
    assert level.max == 4.0


def test_confidence_interval_student_t() -> None:
    mean, half = confidence_interval([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert half == pytest.approx(4.303 * 1.0 / math.sqrt(3), rel=1e-4)  # the table's t(2)
    assert confidence_interval([5.0])[1] == math.inf
    # past 30 degrees of freedom the quantile keeps shrinking towards 1.96 (scipy's, not a table)
    assert t975(40) == pytest.approx(2.0211, abs=1e-4)


def test_pool_fifo_and_levels() -> None:
    import simpy

    env = simpy.Environment()
    sched = Scheduler(env)
    busy = Level(0.0, 10.0, 10.0)
    pool = Pool(env, 1, "p", busy=busy)
    order: list[tuple[str, float]] = []

    def start(name: str) -> None:
        order.append((name, env.now))
        sched.after(2.0, lambda _: pool.release(), None)

    for name in "abc":
        pool.acquire(start, name)
    env.run()
    busy.finish(10.0)
    assert order == [("a", 0.0), ("b", 2.0), ("c", 4.0)]
    assert busy.mean == pytest.approx(6.0 / 10.0)
