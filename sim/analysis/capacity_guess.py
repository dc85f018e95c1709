"""Where the capacity search starts: the analytic solver's estimate of the SLO knee.

The solver (``sim.analysis.solver``, milliseconds per call) gives the mean of each
latency span at a given load, and infinity past saturation. The search asks it for
the largest number of mailboxes at which every latency SLO would hold if the span's
distribution had an exponential tail (p95 = ln 20 × the mean, i.e. -ln(1-q) × mean):
a cheap, usually close first guess, so that the simulation needs only a couple of
points around it. It is only a starting point: the simulation decides every verdict,
and the search goes on past the guess when the guess is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from mailgate.sim.scenario import Scenario

#: steps of the bisection on the number of mailboxes (each a solver call of a few ms)
STEPS = 24


def predicted_ok(s: Scenario, hour: int) -> bool:
    """True when every latency SLO of ``s`` holds in the solver's answer for ``hour``."""
    from mailgate.sim.analysis.solve import solve

    flows = solve(s, hour)["flows"]
    for o in s.slo.objectives:
        mean = flows.get(o.flow, {}).get(o.span)
        if mean is None:
            continue  # a span the solver does not model: no opinion
        if not math.isfinite(mean) or -math.log(1 - o.quantile) * mean > o.max_s:
            return False
    return True


def solver_knee(scenario_at: Callable[[int], Scenario], hour: int, today: int) -> int | None:
    """The most mailboxes for which the solver predicts every latency SLO holds in
    ``hour`` (``scenario_at(n)``: the scenario with ``n`` mailboxes); None when it
    predicts a failure even at 1 % of today's load or a pass at 10,000× it."""
    lo, hi = max(1, today // 100), today * 10_000
    try:
        if not predicted_ok(scenario_at(lo), hour):
            return None
        if predicted_ok(scenario_at(hi), hour):
            return None
        for _ in range(STEPS):  # geometric bisection: the answer may be far from today
            mid = round(math.sqrt(lo * hi))
            if mid in (lo, hi):
                break
            if predicted_ok(scenario_at(mid), hour):
                lo = mid
            else:
                hi = mid
    except (ArithmeticError, ValueError):  # a scenario the solver cannot take: no guess
        return None
    return lo
