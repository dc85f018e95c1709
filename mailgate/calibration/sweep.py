"""The realnet side of a calibration: the testbed up (with ``--background-load``'s
burner beside it when asked), the saturation ramp, and the sweep of loads, each
measured ``repeats`` times; one pooled ``Point`` per load, and every run's traces
and CPU for the fit across the sweep.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailgate.calibration.background import line_in_rate
from mailgate.calibration.burner import Burner
from mailgate.calibration.load_dependence import Run
from mailgate.calibration.measure import bench_from_testbed, measure, pop_login_cpu_s, warm_up
from mailgate.calibration.options import Options
from mailgate.calibration.points import Point
from mailgate.calibration.repeats import pool_points
from mailgate.calibration.saturation import Saturation, find_saturation
from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.records import HopRecord

#: Loads of the default sweep, as shares of the measured saturation throughput.
DEFAULT_LOADS = (0.1, 0.3, 0.5, 0.7, 0.9)
#: A bound on one run's drain and set-up (s), for the burner's time limit.
RUN_OVERHEAD_S = 30.0
#: Most ramp steps (``find_saturation``'s ``max_steps + refine``).
RAMP_STEPS = 12


@dataclass
class Measurement:
    """Everything the realnet side of a calibration produced."""

    scenario: Scenario
    saturation: Saturation | None
    points: list[Point]  # one per load, pooled over its repeats
    hops: list[HopRecord]  # the traces the fit uses: every run of the sweep
    low_point: Point
    pop_cpu_s: float  # CPU of one POP login (scrypt), measured in-process
    runs: list[Run] = field(default_factory=list)  # every sweep run, for the load dependence
    repeats: dict[float, list[Point]] = field(default_factory=dict)  # rate -> its repeats
    burner: dict[str, Any] | None = None
    untraced_per_hop_s: dict[str, float] = field(default_factory=dict)  # set by the fit
    window_s: float = 0.0  # the scheduled seconds of each sweep run

    def constant_cores(self) -> dict[str, float]:
        """Per host: the cores it burns whatever the load, beyond its idle burn (timers,
        the POP poller's visits, heap trimming): the intercept of its CPU per second
        against the offered rate over the sweep's runs, at least 0. Its slope is what a
        message costs; dividing the total by the messages would spread this constant
        over them and make a message dearer the lower the load (measured on a quiet run:
        0.12 cores, 18.4 ms per message at 10 % load and 13.9 ms at 90 %)."""
        if len({r.rate for r in self.runs}) < 2 or self.window_s <= 0:
            return {}
        rates = [r.rate for r in self.runs]
        out = {}
        for host in sorted({h for r in self.runs for h in r.cpu_s}):
            cores = [r.cpu_s.get(host, 0.0) / self.window_s for r in self.runs]
            out[host] = line_in_rate(rates, cores)[1]
        return out

    def fit_cpu_s(self) -> dict[str, float]:
        """/proc CPU seconds per host over the runs whose traces are ``hops``, less each
        host's constant burn (``constant_cores``): the CPU the messages cost."""
        if not self.runs:
            return dict(self.low_point.extra.get("cpu_s", {}))
        constant = self.constant_cores()
        total: dict[str, float] = defaultdict(float)
        for run in self.runs:
            for host, cpu in run.cpu_s.items():
                total[host] += max(cpu - constant.get(host, 0.0) * self.window_s, 0.0)
        return dict(total)

    def lowest_load(self, hops: list[HopRecord]) -> list[HopRecord]:
        """Those of ``hops`` (the sweep's, or a resample of them) from the lowest load's
        runs: where the fit takes its waits (``hops`` itself without runs)."""
        if not self.runs:
            return hops
        low = min(r.rate for r in self.runs)
        ids = {h.msg_id for r in self.runs if r.rate == low for h in r.hops}
        return [h for h in hops if h.msg_id in ids]

    def fit_pop_polls(self) -> int:
        """POP polls over the same runs (their logins' CPU is not the hops')."""
        points = [p for reps in self.repeats.values() for p in reps] or [self.low_point]
        return sum(int(p.extra.get("loadgen", {}).get("pop_polls", 0)) for p in points)


def burner_limit_s(opts: Options, n_rates: int) -> float:
    """How long the burner may live: the whole measurement, generously bounded."""
    ramp = RAMP_STEPS * (opts.ramp_step_s + RUN_OVERHEAD_S) if opts.rates is None else 0.0
    sweep = n_rates * opts.repeats * (opts.duration_s + RUN_OVERHEAD_S)
    return 120.0 + ramp + sweep


def measure_testbed(opts: Options, log: Callable[[str], None] = print) -> Measurement:
    """Burner (if asked) and testbed up, ramp to saturation (or not), sweep, stop both."""
    n_rates = len(opts.rates) if opts.rates else len(DEFAULT_LOADS)
    burner = Burner(opts.background_load, max_s=burner_limit_s(opts, n_rates))
    with burner:
        if burner.pids:
            log(f"background load: {opts.background_load:g} cores in PIDs {burner.pids}")
        m = _measure(opts, log)
    if burner.pids:
        m.burner = burner.summary()
        log(f"background load stopped: {m.burner['cores_measured']:.2f} cores measured")
    return m


def _measure(opts: Options, log: Callable[[str], None]) -> Measurement:
    from mailgate.realnet.testbed.supervisor import Testbed  # a sibling's work: import late

    with tempfile.TemporaryDirectory(prefix="mailgate-calibrate-") as tmp:
        state = Path(tmp)
        with Testbed(opts.scenario, overrides=opts.testbed_overrides, state_dir=state) as testbed:
            bench = bench_from_testbed(testbed, opts.user)
            log("warming up the testbed …")
            warm_up(bench)
            counter = iter(range(100_000))

            def run(rate: float, duration: float, seed: int) -> tuple[Point, list[HopRecord]]:
                run_id = f"cal{next(counter)}"
                log(f"  realnet {rate:.2f} msg/s for {duration:g} s (seed {seed}) …")
                point, _, hops = measure(
                    bench, rate, duration, run_id, pop_interval_s=opts.pop_interval_s, seed=seed
                )
                return point, hops  # (the load generator logs its own warnings)

            sat = None
            if opts.rates is None:
                log("finding the saturation throughput (ramp) …")
                sat = find_saturation(lambda r: run(r, opts.ramp_step_s, opts.seed)[0])
                rates = [round(share * sat.throughput, 2) for share in DEFAULT_LOADS]
            else:
                rates = list(opts.rates)
            log(f"sweep at {', '.join(f'{r:g}' for r in rates)} msg/s, {opts.repeats} repeats")
            repeats: dict[float, list[Point]] = {r: [] for r in rates}
            runs: list[Run] = []
            # the whole sweep in turn, each repeat with its own seed: a drift of the
            # machine shows as spread at every load, not as a trend with load
            for k in range(opts.repeats):
                for rate in rates:
                    point, hops = run(rate, opts.duration_s, opts.seed + k)
                    repeats[rate].append(point)
                    runs.append(Run(rate, hops, dict(point.extra.get("cpu_s", {}))))
            points = [pool_points(repeats[r]) for r in rates]
            low = min(points, key=lambda p: p.rate)
            return Measurement(
                scenario=bench.scenario,
                saturation=sat,
                points=points,
                hops=[h for run_ in runs for h in run_.hops],
                low_point=low,
                pop_cpu_s=pop_login_cpu_s(bench.scenario),
                runs=runs,
                repeats=repeats,
                window_s=opts.duration_s,
            )
