"""The Model that ``mailgate run`` uses, against queueing theory.

The textbook cases ship as scenarios (``scenarios/validation/``: M/M/1, M/M/c, M/D/1,
M/G/1, a Jackson tandem; ``kind = "stations"``). Each runs through ``simulate`` — the
same code as ``mailgate run`` — at a load ρ set by overriding
``workload.inbound_per_s``, with independent replications; the formula (scipy,
``sim.analysis.queueing``) must lie inside the replications' 95 % confidence interval:

- mean response of a station (``hosts.*.response``: arrival until hand-on) — M/M/1,
  M/M/c (Erlang C), M/D/1 and M/G/1 (Pollaczek–Khinchine);
- p95 response — M/M/1 and M/M/c (the exact distribution of an FCFS M/M/c response);
- mean sojourn through a Jackson tandem (``latency.inbound.sent_to_remote``);
- the utilisation law U = λ·S/c for every station;
- Little's law L = λ·W: the time-average number in the host (a level, counted apart
  from the response histogram) against the arrival rate times the formula's W.

A check is a 95 % interval, so with about a hundred of them some five would miss by
chance alone. A miss therefore gets one second, independent set of replications (another
seed): chance misses the second time one time in twenty, a model that is wrong misses
again. Both sets are fixed seeds, so the suite gives the same verdict every time.

The default suite runs short versions at ρ = 0.5 and 0.8; ρ = 0.9 and the long runs
are marked ``slow``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from mailgate.sim.analysis.queueing import (
    jackson_tandem_sojourn,
    mmc_response_quantile,
    pk_mean_response,
)
from mailgate.sim.model.results import Results
from mailgate.sim.model.simulate import simulate
from mailgate.sim.model.stats import confidence_interval
from mailgate.sim.scenario import Scenario, load

#: long statistical runs: marked slow, and run only with MAILGATE_SLOW=1 (CI sets it) so that
#: the default suite stays quick
SLOW = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("MAILGATE_SLOW") != "1", reason="long statistical run: set MAILGATE_SLOW=1"
    ),
]

VALIDATION = Path(__file__).resolve().parent.parent / "scenarios" / "validation"
SINGLE = ("mm1", "mmc", "md1", "mg1")
EXPONENTIAL = ("mm1", "mmc")
# (customers per replication, replications, warm-up customers): short in the default suite
SHORT = (4_000, 5, 400)
LONG = (40_000, 10, 4_000)
DEFAULT = [(rho, SHORT) for rho in (0.5, 0.8)]
ALL = [
    *DEFAULT,
    pytest.param(0.9, SHORT, marks=SLOW),
    *(pytest.param(rho, LONG, marks=SLOW) for rho in (0.5, 0.8, 0.9)),
]


def stations(s: Scenario) -> list[tuple[str, float, float, int]]:
    """(host id, mean service s, service variance, cores) of each station, in chain order."""
    out = []
    for name in s.inbound_path:
        tier = s.tiers[name]
        service = tier.stages["service"].cpu_s
        for i, host in enumerate(tier.hosts):
            out.append((f"{name}.{i}", service.mean, service.variance, host.cores))
    return out


def rate_for(s: Scenario, rho: float) -> float:
    """The arrival rate that loads the busiest station to ``rho``."""
    return min(rho * c / mean for _, mean, _, c in stations(s))


@cache
def run(
    name: str, rho: float, size: tuple[int, int, int], attempt: int = 0
) -> tuple[Scenario, Results]:
    """The validation scenario ``name`` at load ``rho``, run by the Model (``attempt`` 1:
    the second, independent set of replications)."""
    customers, reps, warm = size
    base = load(VALIDATION / f"{name}.toml")
    lam = rate_for(base, rho)
    s = load(
        VALIDATION / f"{name}.toml",
        {
            "workload.inbound_per_s": lam,
            "scenario.duration_h": customers / lam / 3600,
            "scenario.warmup_h": warm / lam / 3600,
            "scenario.replications": reps,
            "scenario.seed": base.scenario.seed + 1000 * attempt,
        },
    )
    return s, simulate(s)


Check = Callable[[Scenario, Results], list[tuple[bool, str]]]


def holds(name: str, rho: float, size: tuple[int, int, int], check: Check) -> None:
    """Every formula of ``check`` inside its 95 % CI, in the first set of replications
    or else in a second, independent one."""
    results = check(*run(name, rho, size))
    if all(ok for ok, _ in results):
        return
    again = check(*run(name, rho, size, attempt=1))
    misses = [f"{name} rho={rho}: {text}" for ok, text in again if not ok]
    assert not misses, "\n".join(misses)


def within(values: list[float], expected: float) -> tuple[bool, str]:
    mean, half = confidence_interval(values)
    ok = abs(mean - expected) <= half
    return ok, f"simulated {mean:.6g} ± {half:.3g} (95 % CI), formula {expected:.6g}"


def per_rep(res: Results, hid: str, key: str) -> list[float]:
    """One number per replication from the host's raw tallies."""
    out = []
    for r in res.reps:
        h: Any = r["hosts"][hid]
        if key == "response_mean":
            out.append(h["response"].mean)
        elif key == "response_p95":
            out.append(h["response"].quantile(0.95))
        elif key == "cpu":
            out.append(h["utilisation"]["cpu"]["mean"])
        else:
            out.append(h["little"]["L"])
    return out


def single_station_w(s: Scenario, lam: float) -> float:
    """The formula's mean response of a one-station scenario."""
    ((_, mean, var, c),) = stations(s)
    if c == 1:
        return pk_mean_response(lam, mean, var)  # M/M/1, M/D/1, M/G/1
    return jackson_tandem_sojourn(lam, [(mean, c)])  # M/M/c


@pytest.mark.parametrize("name", SINGLE)
@pytest.mark.parametrize(("rho", "size"), ALL)
def test_station_mean_response(name: str, rho: float, size: tuple[int, int, int]) -> None:
    def check(s: Scenario, res: Results) -> list[tuple[bool, str]]:
        w = single_station_w(s, s.workload.inbound_per_s)
        return [within(per_rep(res, stations(s)[0][0], "response_mean"), w)]

    holds(name, rho, size, check)


@pytest.mark.parametrize("name", EXPONENTIAL)
@pytest.mark.parametrize(("rho", "size"), ALL)
def test_station_p95_response(name: str, rho: float, size: tuple[int, int, int]) -> None:
    def check(s: Scenario, res: Results) -> list[tuple[bool, str]]:
        ((hid, mean, _, c),) = stations(s)
        expected = mmc_response_quantile(s.workload.inbound_per_s, mean, c, 0.95)
        return [within(per_rep(res, hid, "response_p95"), expected)]

    holds(name, rho, size, check)


@pytest.mark.parametrize(("rho", "size"), ALL)
def test_jackson_tandem_sojourn(rho: float, size: tuple[int, int, int]) -> None:
    def check(s: Scenario, res: Results) -> list[tuple[bool, str]]:
        lam = s.workload.inbound_per_s
        chain = stations(s)
        expected = jackson_tandem_sojourn(lam, [(mean, c) for _, mean, _, c in chain])
        sojourns = [r["hists"]["inbound"]["sent_to_remote"].mean for r in res.reps]
        # the whole chain, and each station on its own the M/M/c of its formula
        return [within(sojourns, expected)] + [
            within(per_rep(res, hid, "response_mean"), jackson_tandem_sojourn(lam, [(mean, c)]))
            for hid, mean, _, c in chain
        ]

    holds("jackson-tandem", rho, size, check)


@pytest.mark.parametrize("name", [*SINGLE, "jackson-tandem"])
@pytest.mark.parametrize(("rho", "size"), ALL)
def test_utilisation_law(name: str, rho: float, size: tuple[int, int, int]) -> None:
    def check(s: Scenario, res: Results) -> list[tuple[bool, str]]:
        lam = s.workload.inbound_per_s
        return [within(per_rep(res, hid, "cpu"), lam * mean / c) for hid, mean, _, c in stations(s)]

    holds(name, rho, size, check)


@pytest.mark.parametrize("name", SINGLE)
@pytest.mark.parametrize(("rho", "size"), ALL)
def test_littles_law(name: str, rho: float, size: tuple[int, int, int]) -> None:
    def check(s: Scenario, res: Results) -> list[tuple[bool, str]]:
        lam = s.workload.inbound_per_s
        return [within(per_rep(res, stations(s)[0][0], "L"), lam * single_station_w(s, lam))]

    holds(name, rho, size, check)
