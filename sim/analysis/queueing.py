"""Queueing formulas, from scipy: the textbook answers the model is checked against and
the analytic solver (``sim.analysis.solver``) is built from.

- ``erlang_c``: the probability that an arrival waits at an M/M/c station;
- ``mmc_mean_response``, ``mmc_response_quantile``: M/M/c (FCFS) response time, mean
  and quantiles (M/M/1 when c = 1);
- ``pk_mean_response``: M/G/1, the Pollaczek–Khinchine mean (M/D/1 with no variance);
- ``mgc_mean_wait``: M/G/c mean wait by Allen–Cunneen (exact for M/M/c, for M/G/1 the
  Pollaczek–Khinchine mean);
- ``jackson_tandem_sojourn``: stations in series fed by a Poisson stream;
- ``ps_mean_response``: processor sharing on c cores beside endless processes
  (``scheduler = "fair"``), any service distribution.

Rates are per second, times in seconds; ``rho`` is the utilisation λ·S/c.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import optimize, stats


def erlang_c(c: int, offered: float) -> float:
    """P(wait) at an M/M/c station with ``offered`` = λ·S Erlangs (< c)."""
    if offered <= 0:
        return 0.0
    if offered >= c:
        return 1.0
    # Erlang B from the Poisson distribution (stable for large c), then C from B
    b = stats.poisson.pmf(c, offered) / stats.poisson.cdf(c, offered)
    rho = offered / c
    return float(b / (1 - rho * (1 - b)))


def mmc_mean_response(lam: float, service_s: float, c: int) -> float:
    """Mean response (wait + service) at an M/M/c station."""
    return mgc_mean_wait(lam, service_s, c, 1.0) + service_s


def mmc_response_quantile(lam: float, service_s: float, c: int, q: float) -> float:
    """The q-quantile of the response time at an M/M/c FCFS station.

    Response = service ~ Exp(μ) plus, with probability C (Erlang C), a wait ~
    Exp(cμ − λ); its survival function is a sum of two exponentials.
    """
    mu = 1 / service_s
    wait_rate = c * mu - lam
    pw = erlang_c(c, lam * service_s)

    def survival(t: float) -> float:
        if abs(wait_rate - mu) < 1e-12 * mu:
            tail = pw * mu * t * math.exp(-mu * t)
        else:
            tail = pw * mu / (wait_rate - mu) * (math.exp(-mu * t) - math.exp(-wait_rate * t))
        return math.exp(-mu * t) + tail

    hi = service_s
    while survival(hi) > 1 - q:
        hi *= 2
    return float(optimize.brentq(lambda t: survival(t) - (1 - q), 0.0, hi, xtol=1e-12))


def pk_mean_response(lam: float, mean_s: float, var_s: float) -> float:
    """M/G/1 mean response: S + λ·E[S²] / (2(1 − ρ)) (Pollaczek–Khinchine)."""
    rho = lam * mean_s
    if rho >= 1:
        return math.inf
    return mean_s + lam * (var_s + mean_s**2) / (2 * (1 - rho))


def mgc_mean_wait(lam: float, mean_s: float, c: int, cs2: float, ca2: float = 1.0) -> float:
    """Mean wait in queue at a G/G/c station by Allen–Cunneen:
    Wq ≈ C(c, λS) / (cμ − λ) · (ca² + cs²) / 2; inf at or past saturation."""
    if lam <= 0 or mean_s <= 0:
        return 0.0
    offered = lam * mean_s
    if offered >= c:
        return math.inf
    return erlang_c(c, offered) / (c / mean_s - lam) * (ca2 + cs2) / 2


def jackson_tandem_sojourn(lam: float, stations: Sequence[tuple[float, int]]) -> float:
    """Mean time through M/M/c stations in series, each given as (mean service s, cores)."""
    return sum(mmc_mean_response(lam, s, c) for s, c in stations)


def ps_mean_response(lam: float, mean_s: float, cores: int, hogs: int = 0) -> float:
    """Mean response at ``cores`` shared equally by the ``n`` jobs present and ``hogs``
    processes that never finish, each at most one core (``sim.model.fair``).

    A symmetric queue, so insensitive to the service distribution beyond its mean
    (M/G/1-PS: E[S]/(1 - rho)). The number present is a birth-death chain that leaves
    state n at rate n·min(1, c/(n + h))/E[S]; its stationary mean N gives W = N/λ
    (Little). Infinite when λ·E[S] ≥ c (the jobs' share tends to all c cores)."""
    if mean_s <= 0:
        return 0.0
    if lam <= 0:
        return mean_s / min(1.0, cores / (1 + hogs))
    if lam * mean_s >= cores:
        return math.inf
    p = total = 1.0
    number = 0.0
    n = 0
    while True:
        n += 1
        p *= lam * mean_s / (n * min(1.0, cores / (n + hogs)))
        total += p
        number += n * p
        if n > cores + hogs and p < 1e-13 * total:
            return number / total / lam
