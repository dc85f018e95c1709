"""The model at the calibration's loads: what the load generator offered, as
scenario overrides, run on the fitted costs (in memory) and read into ``Point``s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mailgate.calibration.overlay import fitted_scenario
from mailgate.calibration.points import (
    QUANTILES,
    Point,
    latency_samples,
    quantiles,
    stage_profile,
)
from mailgate.calibration.shadow import with_out_of_shadow
from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.records import HopRecord, MessageRecord


def model_overrides(
    scenario: Scenario,
    rate: float,
    shares: Mapping[str, float],
    pop_interval_s: float,
    horizon_s: float,
) -> dict[str, Any]:
    """Dotted overrides that make the model offer what the load generator offered.

    One receiving mailbox (the load generator's user) polled every
    ``pop_interval_s``; a flat profile at ``rate`` messages/s split as
    ``shares``; one recipient per message; no viruses; no remote failures.
    """
    inbound = shares.get("inbound", 0.0) * rate * 86400
    submitted = (shares.get("outbound", 0.0) + shares.get("internal", 0.0)) * rate * 86400
    internal_share = shares.get("internal", 0.0) / max(
        shares.get("outbound", 0.0) + shares.get("internal", 0.0), 1e-12
    )
    return {
        "population.mailboxes": 1,
        "workload.inbound_per_mailbox_day": inbound,
        "workload.outbound_per_mailbox_day": submitted,
        "workload.internal_share": internal_share,
        "workload.recipients": 1,
        "workload.virus_share": 0.0,
        "workload.diurnal.inbound": "flat",
        "workload.diurnal.outbound": "flat",
        "workload.surges": [],
        "pop.active_share": 1.0,
        "pop.interval_s": pop_interval_s,
        "internet.temp_fail_prob": 0.0,
        "scenario.duration_h": horizon_s / 3600,
        "scenario.warmup_h": min(horizon_s / 10, 60.0) / 3600,
        "scenario.replications": 1,
        "failures.host_down": [],
        "failures.remote_outage": [],
        "failures.dns_slow": [],
    }


def run_model(
    base: str | Path,
    rate: float,
    shares: Mapping[str, float],
    *,
    overlay: Mapping[str, Any] | None = None,
    pop_interval_s: float,
    horizon_s: float,
    seed: int = 1,
    extra_overrides: Mapping[str, Any] | None = None,
) -> tuple[Any, list[HopRecord], list[MessageRecord], Scenario]:
    """Run the model at one load on ``base`` with the fitted ``overlay`` table
    (``overlay.overlay_table``) on top, merged in memory: its results, hop and
    message records, and the scenario it ran."""
    from mailgate.sim.model.simulate import simulate  # only when the model runs: import late

    fitted = fitted_scenario(base, overlay or {})
    overrides = model_overrides(fitted, rate, shares, pop_interval_s, horizon_s)
    scenario = fitted_scenario(base, overlay or {}, {**overrides, **(extra_overrides or {})})
    hops: list[HopRecord] = []
    messages: list[MessageRecord] = []

    def trace(record: HopRecord | MessageRecord) -> None:
        (hops if isinstance(record, HopRecord) else messages).append(record)

    results = simulate(scenario, seed=seed, progress=False, trace=trace)
    return results, hops, messages, scenario


def model_point(
    base: str | Path,
    rate: float,
    shares: Mapping[str, float],
    *,
    overlay: Mapping[str, Any] | None = None,
    pop_interval_s: float,
    horizon_s: float,
    seed: int = 1,
) -> Point:
    """The model at one load (``run_model``) read into a ``Point``."""
    results, hops, messages, scenario = run_model(
        base,
        rate,
        shares,
        overlay=overlay,
        pop_interval_s=pop_interval_s,
        horizon_s=horizon_s,
        seed=seed,
    )
    return point_from_model(rate, results, hops, messages, scenario)


def point_from_model(
    rate: float,
    results: Any,
    hops: Sequence[HopRecord],
    messages: Sequence[MessageRecord],
    scenario: Scenario,
) -> Point:
    """Read a model run into a Point.

    send → in mailbox comes from the model's MessageRecords (sent is the
    generation time, like the load generator's schedule); send → retrieved
    from its histograms (its MessageRecords are written before retrieval).
    """
    warm = scenario.scenario.warmup_h * 3600
    counted = [m for m in messages if m.sent >= warm]
    samples = with_out_of_shadow(latency_samples(counted), counted)
    latency = quantiles(samples)
    latency["retrieved"] = {}
    for flow in ("inbound", "internal"):
        summary = results.latency(flow, "sent_to_retrieved")
        if summary.get("count"):
            latency["retrieved"][flow] = {
                "n": summary["count"],
                **{f"p{round(q * 100)}": summary[f"p{round(q * 100)}"] for q in QUANTILES},
            }
    samples.pop("retrieved", None)
    stage_means, residence = stage_profile(h for h in hops if h.arrived >= warm)
    horizon = scenario.scenario.duration_h * 3600
    done = sum(1 for m in counted if m.in_mailbox or m.remote or m.outcome == "rejected")
    bottleneck = dict(getattr(results, "bottleneck", {}) or {})
    return Point(
        rate=rate,
        throughput=done / horizon if horizon else 0.0,
        latency=latency,
        utilisation=model_utilisation(results),
        samples=samples,
        stage_means=stage_means,
        residence=residence,
        extra={
            "bottleneck": {k: bottleneck.get(k) for k in ("host", "resource", "multiplier")},
            "wall_s": getattr(results, "wall_s", None),
        },
    )


def model_utilisation(results: Any) -> dict[str, float]:
    """Per-host CPU utilisation as a share of one core (like /proc) from the model."""
    out = {}
    for host, row in results.host_table().items():
        cpu = row["utilisation"]["cpu"]
        out[host] = float(cpu["mean"]) * float(cpu["capacity"])
    return out
