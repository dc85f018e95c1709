"""The cost fitter recovers known costs from synthetic traces.

Traces are generated here from known parameters (CPU = lognormal fixed part
+ per-KB slope, DNS waits, fsync waits), in the same HopRecord format realnet
and the model write. Tolerance: means within 5 %, per-KB slopes within 5 %,
lognormal sigma within 0.05, R² high for size-driven stages.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest

from mailgate.calibration.attribution import attribute_untraced_cpu
from mailgate.calibration.fit import fit_traces, linear_fit, sigma_from_cv
from mailgate.calibration.modelled import model_overrides
from mailgate.calibration.overlay import fitted_scenario, overlay_table, write_overlay
from mailgate.realnet.load.loadgen import flow_shares
from mailgate.sim.scenario.loading import load
from mailgate.sim.scenario.records import HopRecord, StageSpan
from tests.conftest import TESTBED

# tier -> stage -> (fixed mean s, sigma, per KB s, wait s)
TRUTH = {
    "gateway0": {
        "smtp_receive": (0.0012, 0.3, 0.00002, 0.0),
        "spf": (0.0001, 0.0, 0.0, 0.0005),  # one DNS lookup
        "dkim_verify": (0.0006, 0.2, 0.00003, 0.0005),
        "spool": (0.0002, 0.0, 0.0, 0.003),  # fsync
    },
    "gateway3": {
        "dkim_sign": (0.0067, 0.25, 0.00004, 0.0),
        "spool": (0.0002, 0.0, 0.0, 0.003),
    },
    "mailbox": {"maildir": (0.0003, 0.0, 0.00001, 0.0)},
}
N = 2000
DNS_S, FSYNC_S = 0.0005, 0.003


def synthetic_hops(seed: int = 7) -> list[HopRecord]:
    rng = np.random.default_rng(seed)
    hops = []
    for i in range(N):
        size = float(rng.lognormal(math.log(6.0), 1.0))
        for tier, stages in TRUTH.items():
            t = 1000.0 + i
            hop = HopRecord(f"m{i}", "inbound", f"{tier}.{i % 2}", size, arrived=t)
            for stage, (fixed, sigma, per_kb, wait) in stages.items():
                median = fixed / math.exp(sigma**2 / 2)
                base = float(rng.lognormal(math.log(median), sigma)) if sigma else fixed
                cpu = base + per_kb * size
                w = float(rng.exponential(wait)) if wait else 0.0
                hop.stages[stage] = StageSpan(t, t + cpu + w, cpu)
                t += cpu + w
            hop.accepted = t + 0.0001  # 0.1 ms of dialogue no stage covers
            hop.left = hop.accepted + 0.001
            hops.append(hop)
    return hops


@pytest.fixture(scope="module")
def fit():
    return fit_traces(synthetic_hops(), load(TESTBED))


def test_linear_fit_recovers_line_and_falls_back_to_constant() -> None:
    sizes = np.array([1.0, 2.0, 3.0, 4.0])
    a, b, r2, _ = linear_fit(sizes, 0.5 + 0.25 * sizes)
    assert a == pytest.approx(0.5) and b == pytest.approx(0.25) and r2 == pytest.approx(1.0)
    a, b, _, _ = linear_fit(np.array([5.0, 5.0, 5.0]), np.array([1.0, 2.0, 3.0]))
    assert (a, b) == (pytest.approx(2.0), 0.0)


def test_linear_fit_through_the_origin_when_the_intercept_comes_out_negative() -> None:
    sizes = np.array([1.0, 2.0, 3.0, 4.0])
    cpu = 0.3 * sizes - 0.1 + np.array([0.01, -0.01, 0.0, 0.005])
    a, b, r2, residuals = linear_fit(sizes, cpu)
    assert a == 0.0 and b == pytest.approx(np.dot(sizes, cpu) / np.dot(sizes, sizes))
    assert residuals == pytest.approx(cpu - b * sizes)
    assert r2 == pytest.approx(1 - np.sum(residuals**2) / np.sum((cpu - cpu.mean()) ** 2))


def test_sigma_from_cv_is_lognormal_relation() -> None:
    assert sigma_from_cv(0.01) == 0.0
    assert sigma_from_cv(0.5) == pytest.approx(math.sqrt(math.log(1.25)))


def test_recovers_cpu_fixed_per_kb_and_sigma(fit) -> None:
    for tier, stages in TRUTH.items():
        for stage, (fixed, sigma, per_kb, _) in stages.items():
            sf = fit.stages[(tier, stage)]
            assert sf.n == N
            assert sf.cpu_fixed_s == pytest.approx(fixed, rel=0.05), (tier, stage)
            assert sf.cpu_per_kb_s == pytest.approx(per_kb, rel=0.05, abs=2e-7), (tier, stage)
            assert sf.cpu_sigma == pytest.approx(sigma, abs=0.05), (tier, stage)


def test_recovers_waits_dns_fsync_and_overhead(fit) -> None:
    assert fit.dns_s is not None
    # per-lookup DNS time is a median of exponential waits: mean * ln 2
    assert fit.dns_s == pytest.approx(DNS_S * math.log(2), rel=0.1)
    assert fit.fsync_s["gateway0"][0] == pytest.approx(FSYNC_S, rel=0.05)
    assert fit.fsync_s["gateway3"][0] == pytest.approx(FSYNC_S, rel=0.05)
    assert fit.overhead["gateway0"].mean_s == pytest.approx(0.0001, rel=0.05)


def test_r2_reflects_size_dependence(fit) -> None:
    assert fit.stages[("mailbox", "maildir")].r2 > 0.99  # no noise: size explains all
    assert math.isnan(fit.stages[("gateway0", "spool")].r2)  # constant: no slope fitted


def test_overlay_loads_on_testbed_with_fitted_means(fit, tmp_path: Path) -> None:
    path = write_overlay(overlay_table(fit, load(TESTBED)), TESTBED, tmp_path / "fitted.toml")
    assert path.read_text().startswith("#")
    s = load(path)
    assert s.scenario.name == "loopback-testbed"  # extends the testbed
    assert s.deployment.machines[0].cores == 2  # deployment inherited
    for tier, stages in TRUTH.items():
        t = s.tiers[tier]
        for stage, (fixed, _, per_kb, _) in stages.items():
            cost = t.cost(stage)
            assert cost is not None
            assert cost.cpu_s.mean == pytest.approx(fixed, rel=0.05)
            assert cost.cpu_per_kb_s == pytest.approx(per_kb, rel=0.05, abs=2e-7)
    assert s.gateways["gateway0"].hosts[0].fsync_s.mean == pytest.approx(FSYNC_S, rel=0.05)
    assert s.gateways["gateway0"].hosts[0].cores == 1  # the base's host fields survive
    assert s.network.dns_s.mean == pytest.approx(fit.dns_s)
    # DNS stages carry no extra wait beyond their lookups
    assert s.gateways["gateway0"].cost("spf").wait_s.mean < 0.0002


def test_fitted_overlay_round_trips_and_is_the_scenario_the_model_runs_on(
    fit, tmp_path: Path
) -> None:
    """fitted.toml holds exactly the fitted table (tomli-w writes, tomllib reads
    the same values), and loading it gives the scenario calibration builds from
    the table in memory, with and without the model's load overrides."""
    scenario = load(TESTBED)
    table = overlay_table(fit, scenario)
    path = write_overlay(table, TESTBED, tmp_path / "fitted.toml")
    with path.open("rb") as f:
        written = tomllib.load(f)
    assert (path.parent / written.pop("extends")).resolve() == TESTBED.resolve()
    assert written == table
    loaded = load(path)
    for (tier, stage), sf in fit.stages.items():
        cost = loaded.tiers[tier].cost(stage)
        assert cost.cpu_per_kb_s == sf.cpu_per_kb_s, (tier, stage)
        # a lognormal is written by its median: the mean comes back to rounding
        assert cost.cpu_s.mean == pytest.approx(sf.cpu_fixed_s, rel=1e-12, abs=0), (tier, stage)
    assert loaded.network.dns_s.mean == fit.dns_s
    overrides = model_overrides(scenario, 5.0, flow_shares(scenario), 1.0, 60.0)
    for extra in (None, overrides):
        from_file = dataclasses.replace(load(path, extra), source="")
        in_memory = dataclasses.replace(fitted_scenario(TESTBED, table, extra), source="")
        assert from_file == in_memory
    assert table == overlay_table(fit, scenario)  # loading did not write into the table


def test_untraced_cpu_off_the_path_becomes_housekeeping() -> None:
    # realnet traces no CPU for smtp_receive/deliver: 100 hops on two hosts used
    # 0.5 s of CPU by /proc, of which the traced check took 0.1 s; 0.5 ms per hop
    # before the 250 is covered by no span (the only time untraced CPU can delay it)
    hops = []
    for i in range(100):
        hop = HopRecord(f"m{i}", "inbound", f"gateway1.{i % 2}", 4.0, arrived=float(i))
        hop.stages["smtp_receive"] = StageSpan(i, i + 0.001)  # 1 ms elapsed, cpu untraced
        hop.stages["antivirus"] = StageSpan(i + 0.001, i + 0.0025, 0.001)
        hop.stages["deliver"] = StageSpan(i + 0.003, i + 0.01)
        hop.accepted, hop.left = i + 0.003, i + 0.01
        hops.append(hop)
    fit = fit_traces(hops)
    residual = attribute_untraced_cpu(fit, hops, {"gateway1.0": 0.3, "gateway1.1": 0.2})
    assert residual["gateway1"] == pytest.approx((0.5 - 0.1) / 100)
    receive, deliver = fit.stages[("gateway1", "smtp_receive")], fit.stages[("gateway1", "deliver")]
    housekeeping = fit.stages[("gateway1", "housekeeping")]
    assert receive.cpu_fixed_s == pytest.approx(0.0005)  # bounded by the uncovered time
    assert deliver.cpu_fixed_s == 0.0
    assert housekeeping.cpu_fixed_s == pytest.approx(0.004 - 0.0005)  # the rest, per hop
    assert housekeeping.n == 100
    assert receive.source == "utilisation law"


def test_on_path_cpu_is_shared_in_proportion_to_traced_receive_cpu() -> None:
    # receive traced 1 ms, submission 3 ms per hop, 0.2 ms of each hop's dialogue
    # before the 250 untraced; /proc says 2 ms more per hop
    hops = []
    for i in range(50):
        stage = "smtp_receive" if i % 2 else "submission"
        cpu = 0.001 if i % 2 else 0.003
        hop = HopRecord(f"m{i}", "inbound", "mailbox.0", 4.0, arrived=float(i))
        hop.stages[stage] = StageSpan(i, i + 0.004, cpu)
        hop.stages["deliver"] = StageSpan(i + 0.005, i + 0.01, 0.003)
        hop.accepted, hop.left = i + 0.0042, i + 0.01
        hops.append(hop)
    fit = fit_traces(hops)
    traced = 25 * (0.001 + 0.003) + 50 * 0.003
    attribute_untraced_cpu(fit, hops, {"mailbox.0": traced + 50 * 0.002})
    receive = fit.stages[("mailbox", "smtp_receive")]
    submission = fit.stages[("mailbox", "submission")]
    deliver = fit.stages[("mailbox", "deliver")]
    on_path = 50 * 0.0002
    assert receive.cpu_fixed_s == pytest.approx(0.001 + on_path * 1 / 4 / 25)
    assert submission.cpu_fixed_s == pytest.approx(0.003 + on_path * 3 / 4 / 25)
    assert deliver.cpu_fixed_s == pytest.approx(0.003)  # the hand-off: all covered
    assert fit.stages[("mailbox", "housekeeping")].cpu_fixed_s == pytest.approx(0.002 - 0.0002)
    assert receive.source == "trace + utilisation law"


def test_overlay_with_housekeeping_loads_and_the_model_recovers_it(tmp_path: Path) -> None:
    """The model with a known housekeeping cost: its traces show no span for it,
    its hosts' CPU does; the fitter gives the cost back, and off the path."""
    from mailgate.sim.model.network import Model

    base = load(TESTBED)
    overrides = model_overrides(base, 5.0, flow_shares(base), 1.0, 600.0)
    overrides["scenario.warmup_h"] = 0.0  # host CPU and hops over the same interval
    hk = {"gateway0": 0.002, "gateway1": 0.001}
    for tier, cpu in hk.items():
        overrides[f"gateways.{tier}.stages.housekeeping.cpu_s"] = cpu
    scenario = load(TESTBED, overrides)
    hops: list[HopRecord] = []
    model = Model(scenario, 5, trace=lambda r: hops.append(r) if isinstance(r, HopRecord) else None)
    model.start()
    model.run()
    cpu = {hid: h.stats.cpu_demand for hid, h in model.hosts.items()}
    fit = fit_traces(hops, scenario)
    receive = {t: fit.stages[(t, "smtp_receive")].cpu_fixed_s for t in hk}
    attribute_untraced_cpu(fit, hops, cpu)
    for tier, cpu_s in hk.items():
        # hops still in flight at the end ran their stages but not yet their housekeeping
        assert fit.stages[(tier, "housekeeping")].cpu_fixed_s == pytest.approx(cpu_s, rel=0.05)
        assert fit.stages[(tier, "smtp_receive")].cpu_fixed_s == pytest.approx(receive[tier])
    assert fit.stages[("gateway2", "housekeeping")].cpu_fixed_s < 1e-6
    s = load(write_overlay(overlay_table(fit, scenario), TESTBED, tmp_path / "fitted.toml"))
    assert s.tiers["gateway0"].cost("housekeeping").cpu_s.mean == pytest.approx(
        fit.stages[("gateway0", "housekeeping")].cpu_fixed_s
    )


def test_recovers_the_models_own_costs_from_its_trace() -> None:
    """The model (sim.simulate) with known costs writes HopRecords; the fitter
    must give those costs back: means and per-KB slopes within 5 %, the
    lognormal sigma within 0.1, DNS and fsync times within 5 %."""
    from mailgate.sim.model.simulate import simulate

    base = load(TESTBED)
    overrides = model_overrides(base, 5.0, flow_shares(base), 1.0, 600.0)
    overrides["gateways.gateway3.stages.dkim_sign.cpu_s"] = {
        "dist": "lognormal",
        "median": 0.006,
        "sigma": 0.4,
    }
    scenario = load(TESTBED, overrides)
    hops: list[HopRecord] = []
    simulate(scenario, seed=3, trace=lambda r: hops.append(r) if isinstance(r, HopRecord) else None)
    fit = fit_traces(hops, scenario)
    checked = 0
    for (tier, stage), sf in fit.stages.items():
        cost = scenario.tiers[tier].cost(stage)
        if cost is None or sf.n < 100:
            continue
        assert sf.cpu_fixed_s == pytest.approx(cost.cpu_s.mean, rel=0.05, abs=1e-7), (tier, stage)
        assert sf.cpu_per_kb_s == pytest.approx(cost.cpu_per_kb_s, rel=0.05, abs=1e-8)
        checked += 1
    assert checked >= 15
    assert fit.stages[("gateway3", "dkim_sign")].cpu_sigma == pytest.approx(0.4, abs=0.1)
    assert fit.dns_s == pytest.approx(scenario.network.dns_s.mean, rel=0.05)
    assert fit.fsync_s["gateway0"][0] == pytest.approx(
        scenario.gateways["gateway0"].hosts[0].fsync_s.mean, rel=0.05
    )
