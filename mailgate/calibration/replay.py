"""``mailgate realnet replay``, modelled side and the comparison.

The model runs the same scenario on the real clock of the replay: the load
generator's rate and mix (``modelled.model_overrides``), the failure windows
and the retry timers multiplied by ``realnet.time_scale`` as the testbed does
(so a window of one scenario hour lasts ``3600 × time_scale`` s in both), the
horizon the load's duration. Its queues are sampled as often as the replay
samples the spools (the model's own minute would not resolve a drain of a few
seconds), and ``sim.analysis.recovery.figures`` gives its recovery figures:
the same definitions the measured side uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest import mock

from mailgate.calibration.modelled import model_overrides
from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.loading import load
from mailgate.sim.scenario.topology import INTERNET

#: the figures compared, as (label, measured path, modelled path): paths into the
#: two sides' ``recovery``-like dicts
ROWS = (
    ("drain time, deferred (s)", ("queues", "deferred", "drain_s")),
    ("drain time, all queued (s)", ("queues", "all_queued", "drain_s")),
    ("peak deferred (messages)", ("queues", "deferred", "peak")),
    ("peak all queued (messages)", ("queues", "all_queued", "peak")),
    ("caught: count", ("latency_caught", "count")),
    ("caught: p50 send → delivered (s)", ("latency_caught", "p50")),
    ("caught: p95 send → delivered (s)", ("latency_caught", "p95")),
    ("not caught: count", ("latency_not_caught", "count")),
    ("not caught: p50 send → delivered (s)", ("latency_not_caught", "p50")),
    ("not caught: p95 send → delivered (s)", ("latency_not_caught", "p95")),
)


def replay_overrides(
    scenario: Scenario, rate: float, shares: dict[str, float], duration_s: float
) -> dict[str, Any]:
    """Dotted overrides: the load generator's load, and failures and retry timers in
    real seconds (× ``realnet.time_scale``)."""
    k = scenario.realnet.time_scale
    f, r = scenario.failures, scenario.retry
    out = model_overrides(scenario, rate, shares, pop_interval_s=1.0, horizon_s=duration_s)
    out.update({
        "failures.host_down": [
            {"host": d.host, "start_h": d.start_h * k, "duration_h": d.duration_h * k,
             "refuses": d.refuses}
            for d in f.host_down
        ],
        "failures.remote_outage": [
            {"domain": o.domain, "start_h": o.start_h * k, "duration_h": o.duration_h * k}
            for o in f.remote_outage
        ],
        "failures.dns_slow": [
            {"start_h": n.start_h * k, "duration_h": n.duration_h * k, "extra_s": n.extra_s}
            for n in f.dns_slow
        ],
        **{
            # the real sink of a domain that is down closes each connection at once: an
            # attempt costs one round trip, not a connect timeout
            f"gateways.{name}.connect_timeout_s": scenario.network.internet_rtt_s
            for name, tier in scenario.tiers.items()
            if tier.next_hop == INTERNET and f.remote_outage
        },
        "retry.minimal_backoff_s": r.minimal_backoff_s * k,
        "retry.maximal_backoff_s": r.maximal_backoff_s * k,
        "retry.max_queue_lifetime_s": r.max_queue_lifetime_s * k,
        # the real relays retry each message on its own timer, not in queue runs
        "retry.queue_run_delay_s": r.queue_run_delay_s * k,
    })  # fmt: skip
    return out


def model_replay(
    scenario_path: str | Path,
    rate: float,
    duration_s: float,
    *,
    sample_s: float,
    seed: int = 1,
) -> dict[str, Any] | None:
    """The model's ``recovery`` figures for the replay (None: the scenario has no failures)."""
    from mailgate.realnet.load.schedule import flow_shares
    from mailgate.sim.analysis.recovery import figures
    from mailgate.sim.analysis.results_text import clean
    from mailgate.sim.model import failure_watch
    from mailgate.sim.model.simulate import simulate

    base = load(scenario_path)
    scenario = load(scenario_path, replay_overrides(base, rate, flow_shares(base), duration_s))
    # the watch samples every SAMPLE_S of model time; here as often as the spools are
    with mock.patch.object(failure_watch, "SAMPLE_S", sample_s):
        results = clean(simulate(scenario, seed=seed, progress=False).to_dict())
    return clean(figures(results)) if results.get("failure_watch") else None


def _get(d: dict[str, Any] | None, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def side_by_side(measured: dict[str, Any], modelled: dict[str, Any] | None) -> list[dict]:
    """Each figure measured and modelled, with the model's relative error."""
    rows = []
    for label, path in ROWS:
        a, b = _get(measured, path), _get(modelled, path)
        rel = (
            (b - a) / a if isinstance(a, int | float) and isinstance(b, int | float) and a else None
        )
        rows.append({"figure": label, "measured": a, "modelled": b, "relative_error": rel})
    return rows


def table(rows: list[dict]) -> str:
    """The comparison as text."""

    def num(v: Any) -> str:
        return "-" if v is None else f"{v:.3g}"

    out = [f"  {'figure':<40}{'measured':>10}{'modelled':>10}{'rel. err':>10}"]
    for r in rows:
        rel = "-" if r["relative_error"] is None else f"{r['relative_error']:+.0%}"
        out.append(f"  {r['figure']:<40}{num(r['measured']):>10}{num(r['modelled']):>10}{rel:>10}")
    return "\n".join(out)
