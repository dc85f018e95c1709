"""``mailgate calibrate``'s work: measure the real relays, fit the model, compare.

Steps, each bounded in count and time:

1. bring the loopback testbed up (``realnet.testbed.supervisor.Testbed``);
2. find its saturation throughput by ramping the offered load until the
   delivered throughput stops following it or latency explodes
   (``saturation.find_saturation``);
3. run realnet at 10/30/50/70/90 % of that (or the given rates), each load
   ``repeats`` times, recording each message's times (``realnet.load.loadgen``),
   each host's CPU (``cpu``) and each hop's stage trace (``measure``), pooled
   per load with the repeats' spread (``sweep``, ``repeats``); with
   ``--background-load`` a CPU burner runs beside the testbed (``burner``);
4. fit the stage costs from every run of the sweep (``fit``, ``attribution``),
   and how they move with the load (``load_dependence``), into an overlay that
   extends the testbed scenario (its deployment: every host one process, all
   sharing the machine's cores), written once as ``fitted.toml`` (``overlay``;
   the outside CPU and the send path too once the model has the keys,
   ``background``);
5. run the model at the same loads on that overlay, merged in memory
   (``modelled``), find its saturation by the testbed's ramp (``model_ramp``),
   and put the two side by side (``compare``): latency quantiles per flow,
   saturation throughput and the first host to saturate, per-host CPU; where
   they depart, the stage whose modelled time departs most is named;
   ``report.md``, ``calibration.json`` and plots (``outputs``);
6. bootstrap the fit over the sweep's messages (``uncertainty``): a 95 %
   interval for every fitted cost, and the capacity the fit implies (the
   analytic solver on the fitted testbed and production scenarios) as a band.

The realnet side and the model side meet only in data (``points.Point``:
latencies, utilisations, stage means), so the comparison and the report are
tested without either running. The command line (arguments, printing, the
exit code) is ``mailgate.commands.calibrate``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mailgate.calibration.attribution import (
    attribute_untraced_cpu,
    submission_on_top_of_receive,
)
from mailgate.calibration.background import MODEL_HAS_MACHINE_KEYS, add_machine_keys, background
from mailgate.calibration.compare import build_report, machine_cores
from mailgate.calibration.fit import Fit, add_measured_stage, fit_traces
from mailgate.calibration.fit_sweep import combine
from mailgate.calibration.load_dependence import load_dependence
from mailgate.calibration.model_ramp import model_ramp_saturation
from mailgate.calibration.modelled import model_point
from mailgate.calibration.options import Options
from mailgate.calibration.outputs import write_outputs
from mailgate.calibration.overlay import (
    fitted_scenario,
    overlay_table,
    production_base,
    write_overlay,
)
from mailgate.calibration.saturation import (
    Saturation,
    model_saturation,
    utilisation_law_saturation,
    with_outside_cpu,
)
from mailgate.calibration.sweep import DEFAULT_LOADS, Measurement, measure_testbed
from mailgate.calibration.uncertainty import (
    add_intervals,
    bootstrap,
    capacity_band,
    solver_capacity,
)
from mailgate.realnet.load.loadgen import flow_shares
from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.records import HopRecord
from mailgate.sim.scenario.topology import MAILBOX

__all__ = ["DEFAULT_LOADS", "Measurement", "Options", "calibrate", "measure_testbed"]


def fit_measurement(m: Measurement) -> Fit:
    """Fit every run's traces of the sweep (+ /proc for untraced CPU): costs over all
    loads and the whole range of sizes they saw."""
    fit, residual = fit_hops(m, m.hops)
    m.untraced_per_hop_s = residual
    return fit


def fit_hops(m: Measurement, hops: list[HopRecord]) -> tuple[Fit, dict[str, float]]:
    """Fit ``hops`` (the sweep's traces, or a resample of them) as the calibration
    does: stage CPU from all of them and waits from the lowest load's (``fit_sweep``),
    POP's login, the untraced CPU from /proc; and that CPU per hop."""
    low = m.lowest_load(hops)
    fit = fit_traces(hops, m.scenario)
    if len(low) < len(hops):  # CPU from every load, waits from the lowest (fit_sweep)
        fit = combine(fit_traces(low, m.scenario), fit)
    add_measured_stage(fit, MAILBOX, "pop_session", m.pop_cpu_s)
    if (MAILBOX, "submission") not in fit.stages:  # older realnet traced it as smtp_receive
        add_measured_stage(fit, MAILBOX, "submission", 0.0)
    residual = attribute_untraced_cpu(
        fit,
        hops,
        m.fit_cpu_s(),
        extra_cpu_s={MAILBOX: m.fit_pop_polls() * m.pop_cpu_s},
    )
    submission_on_top_of_receive(fit)
    return fit, residual


#: Hops fitted over all resamples at most (~0.5 s of fitting per 30,000 hops): a sweep of
#: many messages gets fewer resamples rather than minutes of bootstrap.
BOOT_HOP_BUDGET = 1_500_000
#: ... but never fewer resamples than this (a 95 % interval from its 2.5 % tails).
MIN_BOOT = 50


def resamples_for(n_hops: int, asked: int) -> int:
    """The bootstrap's resamples: ``asked``, fewer when the sweep has many hops."""
    if n_hops <= 0:
        return asked
    return min(asked, max(MIN_BOOT, BOOT_HOP_BUDGET // n_hops))


def fit_uncertainty(m: Measurement, fit: Fit, opts: Options) -> dict[str, Any]:
    """Bootstrap the fit over the sweep's messages: the resampled fits, and the
    capacity each implies by the analytic solver, on the testbed (messages/s) and, when
    the testbed extends a production scenario, there (mailboxes)."""
    n_boot = resamples_for(len(m.hops), opts.bootstrap)
    fits = bootstrap(m.hops, lambda hops: fit_hops(m, hops)[0], n_boot=n_boot, seed=opts.seed)
    worlds: dict[str, tuple[str | Path, bool]] = {"testbed": (opts.scenario, False)}
    parent = production_base(Path(opts.scenario))
    if parent is not None:
        worlds["production"] = (parent, True)
    bands: dict[str, Any] = {"resamples": len(fits)}
    for world, (base, stages_only) in worlds.items():

        def capacity(f: Fit, base: str | Path = base, only: bool = stages_only) -> dict[str, Any]:
            table = overlay_table(f, m.scenario, stages_only=only)
            return solver_capacity(fitted_scenario(base, table))

        point = capacity(fit)
        resampled = [capacity(f) for f in fits]
        bands[world] = {
            "scenario": str(base),
            "hour": point["hour"],
            "bottleneck": point["bottleneck"],
            "bottlenecks": sorted({c["bottleneck"] for c in resampled}),
            **{
                unit: capacity_band(point[unit], [c[unit] for c in resampled])
                for unit in ("msgs_per_s", "mailboxes")
            },
        }
    return {"fits": fits, "capacity": bands}


def write_fitted(fit: Fit, table: dict[str, Any], scenario: Scenario, opts: Options) -> Path:
    """``fitted.toml`` (``table``, the costs the model runs on) and, when the
    testbed extends a production scenario, ``fitted-production.toml``."""
    overlay = write_overlay(table, Path(opts.scenario), opts.out / "fitted.toml")
    parent = production_base(Path(opts.scenario))
    if parent is not None:
        # the planners' question: the same stage costs on the production deployment
        stages = overlay_table(fit, scenario, stages_only=True)
        write_overlay(stages, parent, opts.out / "fitted-production.toml", stages_only=True)
    return overlay


def modelled_saturation(
    m: Measurement, fitted: dict[str, Any], modelled: list[Any], opts: Options, outside_s: float
) -> tuple[Saturation, dict[str, Any]]:
    """The model's saturation by the testbed's ramp and criterion on model runs; beside it
    the old estimates (its busiest resource at 100 %, with the outside CPU by the
    utilisation law). Without the background keys in the model, the ramp's machine
    saturation gets the outside CPU by the utilisation law too (and says so)."""
    shares = flow_shares(m.scenario)
    ramp = model_ramp_saturation(
        opts.scenario,
        shares,
        fitted,
        window_s=opts.model_ramp_step_s or opts.ramp_step_s,
        pop_interval_s=opts.pop_interval_s,
        seed=opts.seed,
    )
    cores = machine_cores(m.scenario)
    # from the highest load the model still carries: a constant load on the machine
    # (background_cores) makes the utilisation law from a low load read it far too early
    carried = [p for p in modelled if (p.extra.get("bottleneck") or {}).get("multiplier", 0) > 1]
    lowest = min(modelled, key=lambda p: p.rate)
    bottleneck = model_saturation(max(carried or [lowest], key=lambda p: p.rate))
    others = {
        "ramp_on_model": {"throughput": ramp.throughput, "first_host": ramp.first_host},
        "busiest_resource": {
            "throughput": bottleneck.throughput,
            "first_host": bottleneck.first_host,
            "method": bottleneck.method,
        },
    }
    law = with_outside_cpu(bottleneck, outside_s, cores)
    others["busiest_resource_with_outside_cpu"] = {
        "throughput": law.throughput,
        "first_host": law.first_host,
    }
    if MODEL_HAS_MACHINE_KEYS:
        return ramp, others
    sat = with_outside_cpu(ramp, outside_s, cores)
    sat.steps = ramp.steps + sat.steps
    return sat, others


def calibrate(opts: Options, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the whole calibration and write its files in ``opts.out``.

    Returns the report (``calibration.json``'s content); its ``failures``
    list the missed targets (empty: ``ok``).
    """
    t_start = time.monotonic()
    shown = log

    def log(text: str) -> None:  # the same log, with the time so far
        shown(f"[{time.monotonic() - t_start:5.0f} s] {text}")

    m = measure_testbed(opts, log)
    log("fitting the costs over the whole sweep …")
    fit = fit_measurement(m)
    measured_bg = background(m.points, m.burner, m.constant_cores())
    fitted = overlay_table(fit, m.scenario)  # the model runs on this table, in memory
    add_machine_keys(fitted, m.scenario, measured_bg, enabled=MODEL_HAS_MACHINE_KEYS)
    overlay = write_fitted(fit, fitted, m.scenario, opts)
    x, who = utilisation_law_saturation(m.low_point, machine_cores(m.scenario))
    law = {"throughput": x, "first_host": who, "at_rate": m.low_point.rate}
    sat = m.saturation
    if sat is None:
        # no ramp: estimate measured saturation from the utilisation law at the lowest load
        sat = Saturation(x, who, "utilisation law at the lowest load")
    sat.steps = [*sat.steps, {"utilisation_law_estimate": law}]
    log("running the model at the same loads …")
    shares = flow_shares(m.scenario)
    horizon = max(opts.model_horizon_s, opts.duration_s)
    modelled = [
        model_point(
            opts.scenario,
            p.rate,
            shares,
            overlay=fitted,
            pop_interval_s=opts.pop_interval_s,
            horizon_s=horizon,
            seed=opts.seed,
        )
        for p in m.points
    ]
    log("finding the model's saturation by the same ramp …")
    sat_model, other_estimates = modelled_saturation(
        m, fitted, modelled, opts, measured_bg["cpu_per_message_s"]
    )
    report, _ = build_report(
        scenario_path=opts.scenario,
        command=opts.command,
        measured=m.points,
        modelled=modelled,
        saturation_measured=sat,
        saturation_modelled=sat_model,
        fit=fit,
        overlay=overlay,
        tolerance=opts.tolerance,
        wall_s=time.monotonic() - t_start,
    )
    report["saturation"]["modelled_other_estimates"] = other_estimates
    report["repeats"] = opts.repeats
    report["background"] = measured_bg
    report["fit"]["untraced_cpu_per_hop_s"] = m.untraced_per_hop_s
    report["fit"]["sizes_kb"] = size_range(m.hops)
    report["fit"]["load_dependence"] = load_dependence(m.runs)
    log("bootstrapping the fit (resampled messages) …")
    unc = fit_uncertainty(m, fit, opts)
    add_intervals(report["fit"], unc["fits"])
    report["capacity_band"] = unc["capacity"]
    report["wall_s"] = time.monotonic() - t_start
    write_outputs(report, m.points, modelled, opts.out)
    return report


def size_range(hops: list[HopRecord]) -> dict[str, Any]:
    """The message sizes the fit saw (per hop): how far its per-KB costs reach."""
    sizes = [h.size_kb for h in hops if h.outcome != "retrieved"]
    if not sizes:
        return {}
    return {
        "hops": len(sizes),
        "min": min(sizes),
        "max": max(sizes),
        "over_200kb": sum(s > 200 for s in sizes),
    }
