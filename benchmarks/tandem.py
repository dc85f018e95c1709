"""Textbook queueing results and an open tandem network on the model's machinery.

Used by the formula tests and the benchmark: ``erlang_c_wait`` (M/M/c mean
wait in queue, M/M/1 when c = 1), ``jackson_tandem_sojourn`` (mean time
through stations in series) and ``run_tandem`` (Poisson arrivals through
``stations`` FIFO multi-server stations built from ``sim.engine``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import simpy

from mailgate.sim.model.engine import Scheduler, Station
from mailgate.sim.model.sampling import BATCH


def erlang_c_wait(lam: float, mu: float, c: int) -> float:
    """Mean wait in queue of an M/M/c queue (Erlang C)."""
    a = lam / mu
    rho = a / c
    if rho >= 1:
        return math.inf
    head = sum(a**k / math.factorial(k) for k in range(c))
    tail = a**c / (math.factorial(c) * (1 - rho))
    prob_wait = tail / (head + tail)
    return prob_wait / (c * mu - lam)


def jackson_tandem_sojourn(lam: float, mu: float, c: int, stations: int) -> float:
    """Mean sojourn through ``stations`` M/M/c stations in series (Jackson)."""
    return stations * (erlang_c_wait(lam, mu, c) + 1 / mu)


class _Draws:
    """Exponential draws served from a numpy buffer."""

    __slots__ = ("buf", "i", "mean", "rng")

    def __init__(self, rng: np.random.Generator, mean: float) -> None:
        self.rng, self.mean, self.buf, self.i = rng, mean, [], 0

    def __call__(self, _: object = None) -> float:
        if self.i >= len(self.buf):
            self.buf, self.i = self.rng.exponential(self.mean, BATCH).tolist(), 0
        self.i += 1
        return self.buf[self.i - 1]


def run_tandem(
    lam: float, mu: float, servers: int, stations: int, customers: int, seed: int, warmup: int = 0
) -> dict[str, float]:
    """Simulate an open tandem network; returns mean sojourn and mean wait at station 1.

    Customers are lists [arrival time, arrival at current station]; the
    first ``warmup`` customers are not counted.
    """
    env = simpy.Environment()
    sched = Scheduler(env)
    rng = np.random.default_rng(seed)
    gaps = _Draws(rng, 1 / lam)
    service = _Draws(np.random.default_rng(rng.integers(2**63)), 1 / mu)
    tally = {"n": 0, "sojourn": 0.0, "wait1": 0.0}
    counter = [0]

    def leave(job: list[float]) -> None:
        if job[2] >= warmup:
            tally["n"] += 1
            tally["sojourn"] += env._now - job[0]

    chain: list[Station] = []
    for i in range(stations):
        on_done = leave if i == stations - 1 else _forward(chain, i + 1)
        chain.append(Station(sched, servers, service, on_done, name=f"s{i}"))
    first = chain[0]

    def first_service(job: list[float]) -> float:
        if job[2] >= warmup:
            tally["wait1"] += env._now - job[1]
        return service()

    first.service = first_service

    def arrive(_: object) -> None:
        n = counter[0]
        counter[0] = n + 1
        first.arrive([env._now, env._now, n])
        if n + 1 < customers:
            sched.after(gaps(), arrive, None)

    sched.after(gaps(), arrive, None)
    env.run()
    n = tally["n"]
    return {"customers": n, "sojourn": tally["sojourn"] / n, "wait1": tally["wait1"] / n}


def _forward(chain: list[Station], i: int) -> Callable[[list[float]], None]:
    """A callback that moves a job to station ``i``."""

    def go(job: list[float]) -> None:
        chain[i].arrive(job)

    return go
