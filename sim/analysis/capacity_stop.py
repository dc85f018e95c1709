"""Ending a capacity run early once its SLO failure is certain.

Above the capacity the backlog grows through the hour, and running such a point to
its end only confirms what its first half already shows. A run is stopped when one
latency SLO's p95 (its quantile q) is *certain* to end at or above ``STOP_RATIO`` ×
its limit, whatever the rest of the window does:

- the quantile at the end is computed (``LogHistogram.quantile``) over the samples
  of messages generated in the measured window; a sample, once recorded, stays, and
  there are at most as many samples as messages of the flow generated in the window;
- that number, ``N``, is known before the run ends: each arrival stream draws its
  gaps from a random stream of its own (``arrivals.<name>``), so replaying those
  draws gives the arrivals of the window exactly (``window_arrivals``);
- so if more than (1-q)·N samples already lie in bins at or above ``x``, the final
  quantile is at least ``x``, whatever the samples still to come.

A stopped run reports ``x`` (a lower bound of the run's value, the same for every
stopped run) for that objective and no value for the others; the search treats such
a point as failing only when that cannot be wrong (``capacity_points.Point``).
Checks happen every ``CHECK_S`` of simulated time; running a model in pieces gives the
same events in the same order as one run to the end.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mailgate.sim.model.network import Model
from mailgate.sim.model.sampling import Streams
from mailgate.sim.model.stats import LogHistogram
from mailgate.sim.model.traffic import streams_of
from mailgate.sim.scenario import Scenario

#: a run stops when an SLO's quantile is certain to reach this multiple of its limit
STOP_RATIO = 1.25
#: simulated seconds between two checks
CHECK_S = 60.0


def window_arrivals(scenario: Scenario, seed: np.random.SeedSequence | int) -> dict[str, int]:
    """Messages per flow the model generates in the measured window (counted ones),
    found by replaying the arrival streams' own draws as ``Traffic`` makes them."""
    warm = scenario.scenario.warmup_h * 3600.0
    end = warm + scenario.scenario.duration_h * 3600.0
    out: dict[str, int] = {}
    for stream in streams_of(scenario, Streams(seed)):
        n, now = 0, 0.0
        while True:
            t, at = now, None
            while t < end:  # Traffic._next_arrival, with the same arithmetic
                r = stream.rate(t)
                edge = stream.next_edge(t)
                if r > 0:
                    gap = stream.exp() / r
                    if t + gap < edge:
                        if t + gap < end:
                            at = now + (t + gap - now)
                        break
                t = edge
            if at is None:
                break
            now = at
            n += now >= warm
        out[stream.flow] = out.get(stream.flow, 0) + n
    return out


def lower_edge_bin(x: float) -> int:
    """The first bin of ``LogHistogram`` whose lower edge is at least ``x`` (> 0)."""
    h = LogHistogram
    i = math.ceil((math.log10(x) - h.LO_EXP) * h.PER_DECADE) + 1
    while i > 1 and h._edge(h, i - 1) >= x:  # type: ignore[arg-type]  # guard rounding
        i -= 1
    while h._edge(h, i) < x:  # type: ignore[arg-type]
        i += 1
    return i


class EarlyStop:
    """Watches a model's latency histograms for a certain SLO failure."""

    def __init__(self, model: Model, seed: np.random.SeedSequence | int) -> None:
        self.model, self.seed = model, seed
        self.goals = [
            (o, lower_edge_bin(STOP_RATIO * o.max_s))
            for o in model.s.slo.objectives
            if o.max_s > 0 and 0 < o.quantile < 1
        ]
        self.arrivals: dict[str, int] | None = None  # replayed only when first needed

    def decided(self) -> dict[str, Any] | None:
        """The objective certain to fail (name, flow, bound), or None."""
        stats = self.model.stats
        for o, b in self.goals:
            h = stats.hists[o.flow][o.span]
            above = sum(h.bins[b:])
            if above <= (1 - o.quantile) * stats.by_flow[o.flow]["generated"]:
                continue  # not even against the messages so far: no need to replay
            if self.arrivals is None:
                self.arrivals = window_arrivals(self.model.s, self.seed)
            if above >= (1 - o.quantile) * self.arrivals.get(o.flow, 0) + 1:
                return {"name": o.name, "bound": STOP_RATIO * o.max_s}
        return None


def run_until_decided(model: Model, seed: np.random.SeedSequence | int) -> dict[str, Any] | None:
    """Run ``model`` (started) to its end, or until an SLO's failure is certain; then
    close its statistics at the time it stopped. Returns what decided, or None."""
    stop = EarlyStop(model, seed)
    end = model.t_end
    t = model.t_warm + CHECK_S
    decided = None
    while t < end and stop.goals:
        model.run(until=t)
        decided = stop.decided()
        if decided is not None:
            model.t_end = t  # the window ends here for the time-weighted statistics
            break
        t += CHECK_S
    if decided is None:
        model.run()
    model.finish()
    return decided
