"""The model's saturation found the way the testbed's is: the same ramp and the same
criterion (``saturation.find_saturation``) applied to short model runs.

Before, the modelled saturation was "the busiest resource at 100 %" while the
measured one was "throughput stops following the offered load, or latency
explodes": two different things. Here each ramp step is a model run as long as a
measured step (``window_s``), starting empty like the testbed after the previous
step drained; the messages generated in the window count as offered, those in a
mailbox, at the remote MX or refused within the window plus the same grace count as
completed, and the growth of the median and the p95 are read from the same records.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mailgate.calibration.measure import COMPLETION_GRACE_S, latency_growth
from mailgate.calibration.modelled import model_utilisation, run_model
from mailgate.calibration.points import Point, latency_samples, quantiles
from mailgate.calibration.saturation import Saturation, find_saturation
from mailgate.sim.scenario.records import MessageRecord

#: Simulated time after the grace, so the last completions inside it are seen.
TAIL_S = 0.5


def ramp_point(
    rate: float,
    messages: list[MessageRecord],
    utilisation: Mapping[str, float],
    window_s: float,
    grace_s: float = COMPLETION_GRACE_S,
    offered_n: int | None = None,
) -> Point:
    """A model step read as ``measure`` reads a testbed step: offered and completed in
    the window (+ grace), send → in mailbox samples, the growth of the median.

    ``offered_n``: messages generated in the window (the model writes a message's
    record when it completes, so those still in flight are not in ``messages``);
    default: the records sent in the window."""
    sent = [m for m in messages if 0.0 <= m.sent < window_s]
    end = window_s + grace_s

    def completed(m: MessageRecord) -> bool:
        if m.outcome == "rejected":
            return True
        done = m.in_mailbox if m.in_mailbox is not None else m.remote
        return done is not None and done <= end

    early, growth = latency_growth(sent, 0.0, window_s)
    samples = latency_samples(sent)
    return Point(
        rate=rate,
        throughput=sum(map(completed, sent)) / window_s,
        latency=quantiles(samples),
        utilisation=dict(utilisation),
        samples=samples,
        extra={
            "offered": (len(sent) if offered_n is None else offered_n) / window_s,
            "early_p50_s": early,
            "latency_growth_s": growth,
            "window_s": window_s,
            "grace_s": grace_s,
        },
    )


def model_step(
    base: str | Path,
    shares: Mapping[str, float],
    overlay: Mapping[str, Any] | None,
    *,
    window_s: float,
    pop_interval_s: float,
    seed: int,
) -> Callable[[float], Point]:
    """One ramp step on the model: a run of ``window_s`` + grace from an empty system.

    What it offered in the window is counted by a run that stops at the window's end
    with the same seed: a simulation is the same up to any time whatever its horizon,
    so its ``generated`` count is the number of messages the long run generated in
    the window, completed or not."""

    def run(rate: float, horizon: float) -> tuple[Any, list[MessageRecord]]:
        results, _, messages, _ = run_model(
            base,
            rate,
            shares,
            overlay=overlay,
            pop_interval_s=pop_interval_s,
            horizon_s=horizon,
            seed=seed,
            extra_overrides={"scenario.warmup_h": 0.0, "scenario.duration_h": horizon / 3600},
        )
        return results, messages

    def step(rate: float) -> Point:
        offered = int(run(rate, window_s)[0].counts()["generated"])
        results, messages = run(rate, window_s + COMPLETION_GRACE_S + TAIL_S)
        return ramp_point(rate, messages, model_utilisation(results), window_s, offered_n=offered)

    return step


def model_ramp_saturation(
    base: str | Path,
    shares: Mapping[str, float],
    overlay: Mapping[str, Any] | None,
    *,
    window_s: float,
    pop_interval_s: float,
    seed: int = 1,
    **ramp: Any,
) -> Saturation:
    """``find_saturation`` (same defaults as the testbed's ramp) on model runs."""
    step = model_step(
        base, shares, overlay, window_s=window_s, pop_interval_s=pop_interval_s, seed=seed
    )
    sat = find_saturation(step, **ramp)
    sat.method = f"ramp on the model ({window_s:g} s model runs per step, the testbed's criterion)"
    return sat
