"""``mailgate calibrate``'s work: measure the real relays, fit the model, compare.

Steps, each bounded in count and time:

1. bring the loopback testbed up (``realnet.testbed.supervisor.Testbed``);
2. find its saturation throughput by ramping the offered load until the
   delivered throughput stops following it or latency explodes
   (``saturation.find_saturation``);
3. run realnet at 10/30/50/70/90 % of that (or the given rates), recording
   each message's times (``realnet.load.loadgen``), each host's CPU
   (``cpu``) and each hop's stage trace (``measure``);
4. fit the stage costs from the lowest load (``fit``, ``attribution``) into an
   overlay that extends the testbed scenario (its deployment: every host one
   process, all sharing the machine's cores), written once as ``fitted.toml``
   (``overlay``);
5. run the model at the same loads on that overlay, merged in memory
   (``modelled``), and put the two side by side (``compare``): latency
   quantiles per flow, saturation throughput and the first host to saturate,
   per-host CPU; where they depart, the stage whose modelled time departs
   most is named; ``report.md``, ``calibration.json`` and plots (``outputs``);
6. bootstrap the fit over the lowest load's messages (``uncertainty``): a 95 %
   interval for every fitted cost, and the capacity the fit implies (the
   analytic solver on the fitted testbed and production scenarios) as a band.

The realnet side and the model side meet only in data (``points.Point``:
latencies, utilisations, stage means), so the comparison and the report are
tested without either running. The command line (arguments, printing, the
exit code) is ``mailgate.commands.calibrate``.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailgate.calibration.attribution import (
    attribute_untraced_cpu,
    submission_on_top_of_receive,
)
from mailgate.calibration.compare import build_report, machine_cores
from mailgate.calibration.fit import Fit, add_measured_stage, fit_traces
from mailgate.calibration.measure import bench_from_testbed, measure, pop_login_cpu_s, warm_up
from mailgate.calibration.modelled import model_point
from mailgate.calibration.outputs import write_outputs
from mailgate.calibration.overlay import (
    fitted_scenario,
    overlay_table,
    production_base,
    write_overlay,
)
from mailgate.calibration.points import Point
from mailgate.calibration.saturation import (
    Saturation,
    find_saturation,
    model_saturation,
    outside_cpu_per_message,
    utilisation_law_saturation,
    with_outside_cpu,
)
from mailgate.calibration.uncertainty import (
    N_BOOT,
    add_intervals,
    bootstrap,
    capacity_band,
    solver_capacity,
)
from mailgate.realnet.load.loadgen import flow_shares
from mailgate.realnet.load.mailclients import Auth
from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.records import HopRecord
from mailgate.sim.scenario.topology import MAILBOX

#: Loads of the default sweep, as shares of the measured saturation throughput.
DEFAULT_LOADS = (0.1, 0.3, 0.5, 0.7, 0.9)


@dataclass
class Options:
    """The command's settings (from argparse, or a test)."""

    scenario: str
    rates: list[float] | None = None
    duration_s: float = 30.0
    tolerance: float = 0.15
    out: Path = Path("results/calibration")
    user: Auth = field(default_factory=lambda: Auth("selftest", "selftest"))
    pop_interval_s: float = 1.0
    ramp_step_s: float = 8.0
    model_horizon_s: float = 300.0
    seed: int = 1
    #: resamples of the fit's bootstrap (its intervals and the capacity band)
    bootstrap: int = N_BOOT
    command: str = "mailgate calibrate"
    #: dotted overrides for the testbed only (e.g. another address prefix)
    testbed_overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class Measurement:
    """Everything the realnet side of a calibration produced."""

    scenario: Scenario
    saturation: Saturation | None
    points: list[Point]
    low_hops: list[HopRecord]  # traces of the lowest load
    low_point: Point
    pop_cpu_s: float  # CPU of one POP login (scrypt), measured in-process


def measure_testbed(opts: Options, log: Callable[[str], None] = print) -> Measurement:
    """Bring the testbed up, ramp to saturation (or not), sweep the loads, stop it."""
    from mailgate.realnet.testbed.supervisor import Testbed  # a sibling's work: import late

    with tempfile.TemporaryDirectory(prefix="mailgate-calibrate-") as tmp:
        state = Path(tmp)
        with Testbed(opts.scenario, overrides=opts.testbed_overrides, state_dir=state) as testbed:
            bench = bench_from_testbed(testbed, opts.user)
            log("warming up the testbed …")
            warm_up(bench)
            counter = iter(range(10_000))
            hops_by_rate: dict[float, list[HopRecord]] = {}

            def run(rate: float, duration: float) -> Point:
                run_id = f"cal{next(counter)}"
                log(f"  realnet {rate:.2f} msg/s for {duration:g} s …")
                point, _, hops = measure(
                    bench,
                    rate,
                    duration,
                    run_id,
                    pop_interval_s=opts.pop_interval_s,
                    seed=opts.seed,
                )
                hops_by_rate[rate] = hops  # (the load generator logs its own warnings)
                return point

            sat = None
            if opts.rates is None:
                log("finding the saturation throughput (ramp) …")
                sat = find_saturation(lambda r: run(r, opts.ramp_step_s))
                rates = [round(share * sat.throughput, 2) for share in DEFAULT_LOADS]
            else:
                rates = list(opts.rates)
            log(f"sweep at {', '.join(f'{r:g}' for r in rates)} msg/s")
            points = [run(r, opts.duration_s) for r in rates]
            low = min(points, key=lambda p: p.rate)
            return Measurement(
                scenario=bench.scenario,
                saturation=sat,
                points=points,
                low_hops=hops_by_rate[low.rate],
                low_point=low,
                pop_cpu_s=pop_login_cpu_s(bench.scenario),
            )


def fit_measurement(m: Measurement) -> Fit:
    """Fit the lowest load's traces (+ /proc for untraced CPU)."""
    fit, residual = fit_hops(m, m.low_hops)
    m.low_point.extra["untraced_cpu_per_message_s"] = residual
    return fit


def fit_hops(m: Measurement, hops: list[HopRecord]) -> tuple[Fit, dict[str, float]]:
    """Fit ``hops`` (the lowest load's traces, or a resample of them) as the calibration
    does: stage costs, POP's login, the untraced CPU from /proc; and that CPU per hop."""
    fit = fit_traces(hops, m.scenario)
    add_measured_stage(fit, MAILBOX, "pop_session", m.pop_cpu_s)
    if (MAILBOX, "submission") not in fit.stages:  # older realnet traced it as smtp_receive
        add_measured_stage(fit, MAILBOX, "submission", 0.0)
    polls = m.low_point.extra.get("loadgen", {}).get("pop_polls", 0)
    residual = attribute_untraced_cpu(
        fit,
        hops,
        m.low_point.extra.get("cpu_s", {}),
        extra_cpu_s={MAILBOX: polls * m.pop_cpu_s},
    )
    submission_on_top_of_receive(fit)
    return fit, residual


def fit_uncertainty(m: Measurement, fit: Fit, opts: Options) -> dict[str, Any]:
    """Bootstrap the fit over the lowest load's messages: the resampled fits, and the
    capacity each implies by the analytic solver, on the testbed (messages/s) and, when
    the testbed extends a production scenario, there (mailboxes)."""
    fits = bootstrap(
        m.low_hops, lambda hops: fit_hops(m, hops)[0], n_boot=opts.bootstrap, seed=opts.seed
    )
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


def calibrate(opts: Options, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the whole calibration and write its files in ``opts.out``.

    Returns the report (``calibration.json``'s content); its ``failures``
    list the missed targets (empty: ``ok``).
    """
    t_start = time.monotonic()
    m = measure_testbed(opts, log)
    fit = fit_measurement(m)
    fitted = overlay_table(fit, m.scenario)  # the model runs on this table, in memory
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
    sat_model = with_outside_cpu(
        model_saturation(min(modelled, key=lambda p: p.rate)),
        outside_cpu_per_message(m.low_point),
        machine_cores(m.scenario),
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
    log("bootstrapping the fit (resampled messages) …")
    unc = fit_uncertainty(m, fit, opts)
    add_intervals(report["fit"], unc["fits"])
    report["capacity_band"] = unc["capacity"]
    write_outputs(report, m.points, modelled, opts.out)
    return report
