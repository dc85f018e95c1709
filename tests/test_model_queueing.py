"""The model's machinery against queueing theory: M/M/1, M/M/c, a Jackson tandem.

Each case runs independent replications with fixed seeds and checks that
the textbook mean lies inside the replications' 95 % confidence interval.
"""

from __future__ import annotations

import pytest

from benchmarks.tandem import erlang_c_wait, jackson_tandem_sojourn, run_tandem
from mailgate.sim.model.stats import confidence_interval

REPS, CUSTOMERS, WARMUP = 10, 20_000, 2_000


def _replicate(lam: float, mu: float, c: int, k: int, key: str) -> tuple[float, float]:
    runs = [run_tandem(lam, mu, c, k, CUSTOMERS, seed=s, warmup=WARMUP) for s in range(REPS)]
    return confidence_interval([r[key] for r in runs])


def test_erlang_c_reduces_to_mm1() -> None:
    lam, mu = 0.6, 1.0
    assert erlang_c_wait(lam, mu, 1) == pytest.approx(lam / (mu * (mu - lam)))


@pytest.mark.parametrize(("lam", "mu"), [(0.7, 1.0), (0.5, 2.0)])
def test_mm1_mean_wait(lam: float, mu: float) -> None:
    mean, half = _replicate(lam, mu, 1, 1, "wait1")
    expected = lam / (mu * (mu - lam))  # M/M/1: Wq = rho / (mu - lambda)
    assert abs(mean - expected) <= half, (mean, half, expected)


@pytest.mark.parametrize(("lam", "mu", "c"), [(2.1, 1.0, 3), (1.4, 1.0, 2)])
def test_mmc_mean_wait_erlang_c(lam: float, mu: float, c: int) -> None:
    mean, half = _replicate(lam, mu, c, 1, "wait1")
    expected = erlang_c_wait(lam, mu, c)
    assert abs(mean - expected) <= half, (mean, half, expected)


def test_five_station_tandem_matches_jackson() -> None:
    lam, mu, c, k = 1.4, 1.0, 2, 5  # rho = 0.7 at every station
    mean, half = _replicate(lam, mu, c, k, "sojourn")
    expected = jackson_tandem_sojourn(lam, mu, c, k)
    assert abs(mean - expected) <= half, (mean, half, expected)
