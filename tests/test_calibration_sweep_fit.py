"""Costs fitted across the whole sweep, and how they depend on the load: synthetic
traces drawn with numpy from known costs (a CPU per message that falls with the load, a
wait that grows, a cost per KB seen only at the higher loads), and the outside CPU and
send path that go into the model as background."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mailgate.calibration.background import (
    MODEL_HAS_MACHINE_KEYS,
    add_machine_keys,
    background,
    spec_has_machine_keys,
)
from mailgate.calibration.load_dependence import Run, load_dependence, slope
from mailgate.calibration.measure import send_path
from mailgate.calibration.points import Point
from mailgate.calibration.report import format_report
from mailgate.sim.scenario.loading import load
from mailgate.sim.scenario.records import HopRecord, MessageRecord, StageSpan
from tests.conftest import TESTBED

RATES = (10.0, 30.0, 50.0, 70.0)
CPU0, CPU_SLOPE = 0.004, -20e-6  # 4 ms per message at no load, 20 µs less per msg/s
WAIT0, WAIT_SLOPE = 0.001, 50e-6  # 1 ms, 50 µs more per msg/s
PER_KB = 8e-6  # spool CPU per KB


def synthetic_runs(seed: int = 3, n: int = 300) -> list[Run]:
    """Two stages per hop at gateway3.0: ``dkim_sign`` (CPU falls with the load, wait
    grows) and ``spool`` (CPU per KB, flat; sizes over 100 KB only above 10 msg/s)."""
    rng = np.random.default_rng(seed)
    runs = []
    for rate in RATES:
        for k in range(3):  # three repeats of each load
            hops = []
            big = rate > RATES[0]
            sizes = rng.lognormal(np.log(20), 1.2 if big else 0.3, n)
            for i, size in enumerate(sizes):
                cpu = CPU0 + CPU_SLOPE * rate + rng.normal(0, 0.0004)
                wait = WAIT0 + WAIT_SLOPE * rate + rng.exponential(0.0005)
                spool = 0.0002 + PER_KB * size + rng.normal(0, 0.00005)
                h = HopRecord(f"r{rate}-{k}-{i}", "inbound", "gateway3.0", float(size), 0.0)
                h.stages = {
                    "dkim_sign": StageSpan(0.0, cpu + wait, cpu),
                    "spool": StageSpan(0.0, spool + 0.001, spool),
                }
                hops.append(h)
            # /proc: the stages plus 1 ms per hop at 10 msg/s, 0.5 ms at 70 (cheaper per hop)
            extra = 0.001 - (rate - 10) * 0.5e-3 / 60
            cpu_s = sum(s.cpu_s for h in hops for s in h.stages.values()) + extra * n
            runs.append(Run(rate, hops, {"gateway3.0": cpu_s}))
    return runs


def test_slopes_against_the_load_recover_the_known_ones() -> None:
    dep = load_dependence(synthetic_runs())
    rows = {(r["stage"], r["quantity"]): r for r in dep["stages"]}
    cpu, wait = rows[("dkim_sign", "cpu")], rows[("dkim_sign", "wait")]
    assert cpu["slope"] == pytest.approx(CPU_SLOPE, abs=3 * cpu["stderr"])
    assert cpu["significant"] and cpu["relative_change"] < 0  # falls with the load
    assert cpu["at_low"] == pytest.approx(CPU0 + CPU_SLOPE * 10, rel=0.05)
    assert wait["slope"] == pytest.approx(WAIT_SLOPE, abs=3 * wait["stderr"])
    assert wait["significant"] and wait["relative_change"] > 0  # grows
    flat = rows[("spool", "cpu")]  # no load in it (size is a covariate)
    assert not flat["significant"] and abs(flat["slope"]) < 3 * flat["stderr"]
    host = dep["hosts"][0]  # /proc per hop, one point per run
    traced = CPU0 + WAIT0 * 0 + 0.0002  # stages' CPU at no load, roughly
    assert host["significant"] and host["slope"] < 0
    assert host["n"] == len(RATES) * 3 and host["at_low"] > traced


def test_slope_needs_enough_points_and_a_range() -> None:
    assert slope([1, 2, 3], [1, 2, 3]) is None  # too few
    assert slope([5] * 20, list(range(20))) is None  # one rate: no slope
    exact = slope(list(range(20)), [2 + 0.5 * x for x in range(20)])
    assert exact["slope"] == pytest.approx(0.5) and exact["p_value"] < 1e-6


def test_the_fit_uses_every_run_so_the_per_kb_cost_comes_from_the_big_messages() -> None:
    """The lowest load saw no message over ~50 KB and a spool cost that hardly varies:
    fitted from it alone the per-KB cost is poorly known; over the sweep it is the true one."""
    from mailgate.calibration.calibrate import fit_measurement
    from mailgate.calibration.sweep import Measurement

    runs = synthetic_runs()
    s = load(TESTBED)
    hops = [h for r in runs for h in r.hops]
    low = Point(RATES[0], RATES[0], {}, {}, extra={"cpu_s": runs[0].cpu_s})
    m = Measurement(s, None, [low], hops, low, pop_cpu_s=0.0, runs=runs)
    fit = fit_measurement(m)
    spool = fit.stages[("gateway3", "spool")]
    assert spool.cpu_per_kb_s == pytest.approx(PER_KB, rel=0.05)
    assert spool.n == len(hops)
    # CPU over all loads: the mean of 4 ms − 20 µs × rate over the sweep's rates
    sign = fit.stages[("gateway3", "dkim_sign")]
    assert sign.cpu_fixed_s == pytest.approx(CPU0 + CPU_SLOPE * np.mean(RATES), rel=0.03)
    # the wait from the lowest load only (the model queues for the growth itself):
    # 1 ms + 50 µs × 10 msg/s + the median of an exponential of mean 0.5 ms
    assert sign.wait_median_s == pytest.approx(
        WAIT0 + WAIT_SLOPE * RATES[0] + 0.0005 * np.log(2), rel=0.1
    )
    # /proc CPU of all runs went into the untraced part: the mean of 1.0 → 0.5 ms per hop
    assert m.untraced_per_hop_s["gateway3"] == pytest.approx(0.00075, rel=0.02)
    assert fit.proc_scale == {}


def test_traced_cpu_beyond_proc_is_scaled_down_to_it() -> None:
    """Spans that await on the event loop time other messages' coroutines too: when a
    tier's traced CPU exceeds its hosts' /proc CPU, its stage costs shrink to /proc's."""
    from mailgate.calibration.calibrate import fit_measurement
    from mailgate.calibration.sweep import Measurement

    runs = synthetic_runs()
    for run in runs:  # the processes used 60 % of what the spans add up to
        traced = sum(s.cpu_s for h in run.hops for s in h.stages.values())
        run.cpu_s = {"gateway3.0": 0.6 * traced}
    hops = [h for r in runs for h in r.hops]
    low = Point(RATES[0], RATES[0], {}, {})
    m = Measurement(load(TESTBED), None, [low], hops, low, pop_cpu_s=0.0, runs=runs)
    fit = fit_measurement(m)
    assert fit.proc_scale["gateway3"] == pytest.approx(0.6, rel=0.01)
    sign = fit.stages[("gateway3", "dkim_sign")]
    assert sign.cpu_fixed_s == pytest.approx(0.6 * (CPU0 + CPU_SLOPE * np.mean(RATES)), rel=0.03)
    assert m.untraced_per_hop_s["gateway3"] == 0.0


def test_background_and_send_path_from_the_measurements() -> None:
    def pt(rate: float, dns: float, lg_share: float, foreign: float, path: float) -> Point:
        lg = {"loadgen_cpu_share": lg_share, "wall_s": 10.0, "messages": int(rate * 10)}
        extra = {"loadgen": lg, "foreign_busy_cores": foreign,
                 "send_path_s": {"n": int(rate * 10), "mean": path, "p95": 2 * path}}  # fmt: skip
        return Point(rate, rate, {}, {"dns": dns, "gateway0.0": 0.1}, extra=extra)

    points = [pt(10.0, 0.01, 0.04, 0.9, 0.003), pt(30.0, 0.03, 0.15, 1.1, 0.004)]
    burner = {"cores_requested": 1.0, "processes": 1, "pids": [4242], "wall_s": 60.0,
              "cores_measured": 0.97}  # fmt: skip
    bg = background(points, burner=burner)
    # per message: dns 1 ms + load generator share × wall / messages
    per = [0.01 / 10 + 0.04 * 10 / 100, 0.03 / 30 + 0.15 * 10 / 300]
    assert [r["outside_cpu_per_message_s"] for r in bg["per_load"]] == pytest.approx(per)
    # outside cores 0.05 and 0.18 at 10 and 30 msg/s: the line's intercept would be
    # negative, so a line through the origin: Σxy / Σx²
    assert bg["cpu_per_message_s"] == pytest.approx((10 * 0.05 + 30 * 0.18) / (100 + 900))
    # a whole-core burner is one always-runnable process, not "other" cores
    assert bg["processes"] == 1 and bg["other_cores"] == 0.0
    assert bg["cores"] == pytest.approx(0.0)
    assert bg["send_path_s"] == pytest.approx(0.003)  # the lowest load's: not its growth
    table = add_machine_keys({}, load(TESTBED), bg, enabled=True)
    machine = table["deployment"]["machines"][0]
    assert machine["scheduler"] == "fair" and machine["background_processes"] == 1
    assert machine["background_cores"] == pytest.approx(0.0) and machine["cores"] == 2
    assert machine["background_cpu_per_message_s"] == pytest.approx(bg["cpu_per_message_s"])
    assert table["workload"]["send_path_s"] == pytest.approx(bg["send_path_s"])
    assert add_machine_keys({}, load(TESTBED), bg, enabled=False) == {}
    report = {"background": bg} | _minimal()
    text = format_report(report)
    assert "A CPU burner ran" in text and "0.97 cores measured" in text
    assert "1 always-runnable process" in text
    # without the burner, the other processes' median; constant cores from the line
    quiet = background([pt(10.0, 0.01, 0.05, 0.1, 0.003), pt(30.0, 0.03, 0.11, 0.3, 0.003)],
                       host_constant={"gateway0.0": 0.05})  # fmt: skip
    # outside cores 0.06 and 0.14: 4 ms per message and 0.02 cores whatever the rate
    assert quiet["cpu_per_message_s"] == pytest.approx(0.004)
    assert quiet["outside_constant_cores"] == pytest.approx(0.02)
    assert quiet["cores"] == pytest.approx(0.2 + 0.02 + 0.05) and quiet["processes"] == 0


def test_send_path_is_scheduled_send_to_gateway0_arrival() -> None:
    records = [MessageRecord(f"lg-{i}", "inbound", 4.0, sent=float(i)) for i in range(4)]
    records.append(MessageRecord("lg-9", "outbound", 4.0, sent=0.0))
    hops = [HopRecord(f"<lg-{i}@loadgen>", "inbound", "gateway0.1", 4.0, i + 0.002 * (i + 1))
            for i in range(4)]  # fmt: skip
    hops.append(HopRecord("lg-0", "inbound", "gateway1.0", 4.0, 0.5))  # not the first hop
    hops.append(HopRecord("lg-9", "outbound", "mailbox.0", 4.0, 0.9))  # submission: not inbound
    sp = send_path(records, hops)
    assert sp["n"] == 4 and sp["mean"] == pytest.approx(0.005)


@pytest.mark.skipif(not MODEL_HAS_MACHINE_KEYS, reason="the model has no background keys yet")
def test_the_fitted_overlay_loads_with_the_background_keys() -> None:
    from mailgate.calibration.overlay import fitted_scenario

    bg = {"cpu_per_message_s": 0.006, "cores": 1.0, "send_path_s": 0.0035}
    s = fitted_scenario(TESTBED, add_machine_keys({}, load(TESTBED), bg, enabled=True))
    machine = s.deployment.machines[0]
    assert machine.background_cpu_per_message_s == pytest.approx(0.006)
    assert machine.background_cores == pytest.approx(1.0)
    assert s.workload.send_path_s == pytest.approx(0.0035)


def test_the_switch_follows_the_scenario_format() -> None:
    from mailgate.sim.scenario.deployment import Machine

    names = {f.name for f in dataclasses.fields(Machine)}
    assert spec_has_machine_keys() == ("background_cores" in names) == MODEL_HAS_MACHINE_KEYS


def _minimal() -> dict:
    sat = {"throughput": 1.0, "first_host": "machine"}
    return {
        "scenario": "x", "command": "c", "latency": [], "utilisation": [], "loads": [],
        "departures": {}, "ok": True, "failures": [], "fit": {"stages": []},
        "saturation": {"measured": sat, "modelled": sat, "relative_error": 0.0,
                       "same_first_host": True},
    }  # fmt: skip


def test_a_stage_whose_cpu_is_zero_over_the_sweep_gets_no_lognormal() -> None:
    """The spread comes from the lowest load, the CPU from all: a zero CPU with a spread
    would be a lognormal of median 0, which the scenario refuses."""
    from mailgate.calibration.fit import StageFit
    from mailgate.calibration.overlay import stage_cost

    sf = StageFit("gateway2", "tls", 10, 0.0, 0.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, "peer")
    assert stage_cost(sf)["cpu_s"] == 0.0
    sf.cpu_fixed_s = 0.001
    assert stage_cost(sf)["cpu_s"]["dist"] == "lognormal"


def test_a_big_sweep_gets_fewer_bootstrap_resamples() -> None:
    from mailgate.calibration.calibrate import BOOT_HOP_BUDGET, MIN_BOOT, resamples_for

    assert resamples_for(1_000, 200) == 200
    assert resamples_for(BOOT_HOP_BUDGET // 100, 200) == 100
    assert resamples_for(10 * BOOT_HOP_BUDGET, 200) == MIN_BOOT
    assert resamples_for(1_000, 20) == 20  # never more than asked


def test_a_machine_almost_full_of_other_work_still_gives_a_valid_overlay() -> None:
    # measured 1.95 of the testbed's 2 cores busy with other processes: the model must
    # keep background_cores < cores, so the overlay caps it at 90 % of the machine
    from mailgate.calibration.overlay import fitted_scenario

    bg = {"cpu_per_message_s": 0.006, "cores": 1.95, "send_path_s": 0.0035}
    s = fitted_scenario(TESTBED, add_machine_keys({}, load(TESTBED), bg, enabled=True))
    assert s.deployment.machines[0].background_cores == pytest.approx(0.9 * 2)


def test_a_hosts_constant_burn_is_taken_out_of_what_messages_cost() -> None:
    """gateway0.0 burns 0.10 cores whatever the load plus 12 ms per message: the constant
    is the line's intercept, and the CPU the stage costs are fitted to is the per-message
    part only. dns's line has a negative intercept (2 ms per message, 0.01 cores less):
    no constant, all its CPU stays."""
    from mailgate.calibration.sweep import Measurement

    window = 10.0
    runs = [
        Run(
            rate,
            [],
            {"gateway0.0": (0.10 + 0.012 * rate) * window, "dns": (0.002 * rate - 0.01) * window},
        )
        for rate in (10.0, 30.0, 50.0, 10.0, 30.0, 50.0)
    ]
    low = Point(10.0, 10.0, {}, {})
    m = Measurement(load(TESTBED), None, [low], [], low, pop_cpu_s=0.0, runs=runs,
                    window_s=window)  # fmt: skip
    assert m.constant_cores() == pytest.approx({"gateway0.0": 0.10, "dns": 0.0}, abs=1e-9)
    assert m.fit_cpu_s()["gateway0.0"] == pytest.approx(0.012 * 180.0 * window)
    assert m.fit_cpu_s()["dns"] == pytest.approx((0.002 * 180.0 - 0.06) * window)
