"""Calibration: the comparison logic on synthetic points, the model side on the
testbed scenario, and a short end-to-end calibration on the real testbed.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from mailgate.calibration.calibrate import Options, calibrate
from mailgate.calibration.compare import (
    MIN_JUDGED_N,
    build_report,
    compare_points,
    departures,
    most_off,
    relative_error,
)
from mailgate.calibration.fit import Fit
from mailgate.calibration.measure import latency_growth
from mailgate.calibration.modelled import model_overrides, model_point
from mailgate.calibration.outputs import write_outputs
from mailgate.calibration.points import Point, stage_profile
from mailgate.calibration.saturation import (
    Saturation,
    find_saturation,
    model_saturation,
    outside_cpu_per_message,
    utilisation_law_saturation,
    with_outside_cpu,
)
from mailgate.commands.calibrate import parse_rates
from mailgate.realnet.load.loadgen import flow_shares
from mailgate.sim.scenario.loading import load
from mailgate.sim.scenario.records import HopRecord, MessageRecord, StageSpan
from tests.conftest import ROOT, TESTBED


def point(rate: float, p50: float, p95: float, n: int = 100, **kw) -> Point:
    rng = np.random.default_rng(int(rate * 10))
    samples = {"in_mailbox": {"inbound": list(rng.exponential(p50, n))}, "retrieved": {}}
    latency = {
        "in_mailbox": {"inbound": {"n": n, "p50": p50, "p95": p95, "p99": 2 * p95}},
        "retrieved": {"inbound": {"n": n, "p50": 10 * p50, "p95": 10 * p95, "p99": 20 * p95}},
    }
    kw.setdefault("utilisation", {"gateway0.0": 0.01 * rate, "mailbox.0": 0.02 * rate})
    return Point(rate, rate, latency, samples=samples, **kw)


def test_relative_error() -> None:
    assert relative_error(1.1, 1.0) == pytest.approx(0.1)
    assert relative_error(0.0, 0.0) == 0.0
    assert relative_error(1.0, 0.0) == math.inf


def test_read_traces_selects_one_run_from_every_hosts_file_in_order_of_arrival(
    tmp_path: Path,
) -> None:
    from mailgate.realnet.relay.tracing import Tracer, read_traces

    gateway, mailbox = Tracer(tmp_path, "gateway0.0"), Tracer(tmp_path, "mailbox.0")
    mailbox.write(HopRecord("<cal1-0@loadgen>", "inbound", "mailbox.0", 4.0, arrived=2.0))
    gateway.write(HopRecord("<cal1-0@loadgen>", "inbound", "gateway0.0", 4.0, arrived=1.0))
    gateway.write(HopRecord("cal10-0", "inbound", "gateway0.0", 4.0, arrived=0.5))  # another run
    gateway.write(HopRecord("cal0-3", "inbound", "gateway0.0", 4.0, arrived=0.1))
    gateway.close()
    mailbox.close()
    run = read_traces(tmp_path, "cal1-")
    assert [(h.host, h.arrived) for h in run] == [("gateway0.0", 1.0), ("mailbox.0", 2.0)]
    everything = [h.msg_id for h in read_traces(tmp_path)]
    assert everything == ["cal0-3", "cal10-0", "<cal1-0@loadgen>", "<cal1-0@loadgen>"]
    assert read_traces(tmp_path / "nothing here") == []


def test_parse_rates_sorts_and_refuses_nonsense() -> None:
    from mailgate.sim.scenario.errors import UserError

    assert parse_rates("10, 2.5,5") == [2.5, 5.0, 10.0]
    for bad in ("", "a,b", "0,3", "-1"):
        with pytest.raises(UserError):
            parse_rates(bad)


def test_compare_judges_p50_p95_up_to_70_percent_only() -> None:
    measured = [point(10, 0.010, 0.020), point(80, 0.010, 0.020)]
    modelled = [point(10, 0.012, 0.021), point(80, 0.030, 0.060)]  # 80/100: not judged
    rows, failures = compare_points(measured, modelled, saturation=100.0, tolerance=0.15)
    judged = [r for r in rows if r["judged"]]
    assert {(r["rate"], r["quantile"]) for r in judged} == {(10, "p50"), (10, "p95")}
    p50 = next(r for r in judged if r["quantile"] == "p50")
    assert p50["relative_error"] == pytest.approx(0.2) and p50["ok"] is False
    assert len(failures) == 1 and "p50" in failures[0]
    assert all(r["ok"] is None for r in rows if r["rate"] == 80)


def test_compare_does_not_judge_a_handful_of_samples() -> None:
    few = MIN_JUDGED_N - 1
    rows, failures = compare_points(
        [point(10, 0.01, 0.02, n=few)], [point(10, 0.05, 0.09)], 100.0, 0.15
    )
    assert not failures and not any(r["judged"] for r in rows)


def test_departures_name_the_stage_that_is_off() -> None:
    stage_m = {"gateway3": {"smtp_receive": 0.002, "dkim_sign": 0.007, "spool": 0.003}}
    stage_d = {"gateway3": {"smtp_receive": 0.002, "dkim_sign": 0.020, "spool": 0.003}}
    parts_m = {"gateway3": {"receive": 0.013, "unattributed": 0.001, "handoff": 0.010}}
    parts_d = {"gateway3": {"receive": 0.026, "unattributed": 0.001, "handoff": 0.010}}
    m = point(10, 0.01, 0.02, stage_means=stage_m, residence=parts_m)
    d = point(10, 0.01, 0.02, stage_means=stage_d, residence=parts_d)
    top = departures(m, d, top=10)
    assert (top[0]["tier"], top[0]["stage"]) == ("gateway3", "dkim_sign")
    assert top[0]["gap_s"] == pytest.approx(0.013)
    # the stages explain the whole receive time: nothing unattributed differs
    rest = next(r for r in top if r["stage"].startswith("(unattributed"))
    assert rest["gap_s"] == pytest.approx(0.0, abs=1e-12)


def test_blame_follows_the_direction_of_the_error() -> None:
    def gap(tier: str, stage: str, measured: float, modelled: float) -> dict:
        return {"tier": tier, "stage": stage, "measured_s": measured, "modelled_s": modelled,
                "gap_s": modelled - measured}  # fmt: skip

    gaps = [gap("mailbox", "maildir", 0.003, 0.009), gap("gateway3", "dkim_sign", 0.012, 0.008)]
    assert most_off(gaps, -0.3)["stage"] == "dkim_sign"  # model too fast: a stage it underrates
    assert most_off(gaps, +0.3)["stage"] == "maildir"
    assert most_off([], 1.0) is None


def test_stage_profile_per_hop_unattributed_and_hand_off_to_next_250() -> None:
    g0 = HopRecord("m1", "inbound", "gateway0.0", 4.0, 0.0, accepted=0.010, left=0.025)
    g0.stages = {"smtp_receive": StageSpan(0.0, 0.003), "spf": StageSpan(0.004, 0.006)}
    g0.stages["deliver"] = StageSpan(0.011, 0.021)  # after the 250: not in unattributed
    g1 = HopRecord("m1", "inbound", "gateway1.1", 4.0, 0.012, accepted=0.020, left=0.030)
    g1.stages = {"smtp_receive": StageSpan(0.012, 0.020)}
    pop = HopRecord("m1", "inbound", "mailbox.0", 0.0, 0.5, left=0.6, outcome="retrieved")
    pop.stages = {"pop_retrieve": StageSpan(0.55, 0.6)}
    means, parts = stage_profile([g1, pop, g0])
    assert parts["gateway0"]["unattributed"] == pytest.approx(0.010 - 0.005)
    assert parts["gateway0"]["handoff"] == pytest.approx(0.020 - 0.010)  # to the next 250
    assert parts["gateway1"]["handoff"] == pytest.approx(0.030 - 0.020)  # last hop: to left
    assert "mailbox" not in means  # POP retrievals are not a hop of the path


def test_utilisation_law_saturation_host_or_machine() -> None:
    # D(mailbox) = 0.2/10 = 20 ms: alone it saturates at 50 msg/s; the sum of
    # demands 0.0210 s over 2 cores limits at 95 msg/s: the host comes first
    p = point(10, 0.01, 0.02, utilisation={"gateway0.0": 0.01, "mailbox.0": 0.2})
    x, who = utilisation_law_saturation(p, machine_cores=2)
    assert (x, who) == (pytest.approx(50.0), "mailbox.0")
    even = {f"h{i}": 0.1 for i in range(8)}  # 8 equal hosts, 2 cores: the machine
    x, who = utilisation_law_saturation(point(10, 0.01, 0.02, utilisation=even), 2)
    assert (x, who) == (pytest.approx(2 / (8 * 0.01)), "machine")


def test_latency_growth_shows_a_growing_backlog() -> None:
    # past capacity, the n-th message waits longer than the one before it
    growing = [MessageRecord(f"m{i}", "inbound", 4.0, sent=i / 10) for i in range(90)]
    for i, r in enumerate(growing):
        r.in_mailbox = r.sent + 0.02 + 0.01 * i
    early, growth = latency_growth(growing, 0.0, 9.0)
    assert early == pytest.approx(0.02 + 0.01 * 14.5, abs=0.01)
    assert growth == pytest.approx(0.01 * 60, abs=0.02)
    steady = [MessageRecord(f"m{i}", "inbound", 4.0, sent=i / 10) for i in range(90)]
    for r in steady:
        r.in_mailbox = r.sent + 0.02
    assert latency_growth(steady, 0.0, 9.0) == (pytest.approx(0.02), pytest.approx(0.0))


def test_machine_saturation_with_the_testbeds_processes_outside_the_model() -> None:
    machine = Saturation(100.0, "machine", "model")
    # 2 cores / 100 msg/s = 20 ms per message; 5 ms more outside: 2 / 0.025
    assert with_outside_cpu(machine, 0.005, 2).throughput == pytest.approx(80.0)
    host = Saturation(100.0, "mailbox.0", "model")
    assert with_outside_cpu(host, 0.005, 2) is host  # its own process limits it
    p = point(10, 0.01, 0.02, utilisation={"gateway0.0": 0.1, "dns": 0.01, "remote": 0.01})
    p.extra["loadgen"] = {"loadgen_cpu_share": 0.05, "wall_s": 12.0, "messages": 100}
    assert outside_cpu_per_message(p) == pytest.approx(0.02 / 10 + 0.05 * 12 / 100)


def test_find_saturation_ramps_until_throughput_stops_following() -> None:
    capacity, calls = 37.0, []

    def fake(rate: float) -> Point:
        calls.append(rate)
        rho = min(rate / capacity, 0.999)
        util = {"mailbox.0": rho, "gateway0.0": rho / 3}
        p = point(rate, 0.01 / (1 - rho), 0.03 / (1 - rho), utilisation=util)
        p.throughput = min(rate, capacity)
        return p

    sat = find_saturation(fake, start_rate=4, factor=1.5, max_steps=10)
    assert sat.throughput == pytest.approx(capacity)
    assert sat.first_host == "mailbox.0"
    assert max(calls) * 0.85 > capacity and len(calls) <= 10 + 2  # ramp + bisection
    assert len(calls) == len(sat.steps)
    assert any(abs(r - capacity) / capacity < 0.1 for r in calls)  # bisection got close
    few = find_saturation(fake, start_rate=1, factor=1.01, max_steps=3)
    assert len(few.steps) == 3  # bounded
    assert few.first_host == "machine"  # no host near a full core: the machine ran out


def test_model_overrides_offer_the_rate_and_mix() -> None:
    base = load(TESTBED)
    shares = flow_shares(base)
    s = load(TESTBED, model_overrides(base, 12.0, shares, 1.0, 60.0))
    total = sum(s.daily_messages(f) for f in ("inbound", "outbound", "internal"))
    assert total / 86400 == pytest.approx(12.0)
    assert s.daily_messages("internal") / total == pytest.approx(shares["internal"])
    assert s.pop.active_share == 1.0 and s.pop.interval_s.mean == 1.0
    assert s.scenario.duration_h * 3600 == pytest.approx(60.0)


def test_model_point_on_the_testbed_scenario() -> None:
    shares = flow_shares(load(TESTBED))
    p = model_point(TESTBED, 5.0, shares, pop_interval_s=1.0, horizon_s=60.0)
    assert p.latency["in_mailbox"]["inbound"]["n"] > 100
    assert p.latency["retrieved"]["inbound"]["p50"] > p.latency["in_mailbox"]["inbound"]["p50"]
    assert set(p.utilisation) == set(load(TESTBED).host_ids)
    assert p.throughput == pytest.approx(5.0, rel=0.2)
    sat = model_saturation(p)
    # the model's own bottleneck: its load multiplier times the offered rate
    assert sat.throughput == pytest.approx(5.0 * p.extra["bottleneck"]["multiplier"])


def _check_report_files(out: Path) -> dict:
    data = json.loads((out / "calibration.json").read_text())
    for key in (
        "scenario", "command", "wall_s", "tolerance", "targets", "ok", "failures",
        "saturation", "loads", "latency", "utilisation", "departures", "fit", "overlay", "plots",
    ):  # fmt: skip
        assert key in data, key
    for side in ("measured", "modelled"):
        assert {"throughput", "first_host", "method"} <= set(data["saturation"][side])
    assert "relative_error" in data["saturation"] and "same_first_host" in data["saturation"]
    for row in data["latency"]:
        assert {"rate", "load", "span", "flow", "quantile", "measured_s", "modelled_s",
                "relative_error", "judged", "ok"} <= set(row)  # fmt: skip
    for plot in data["plots"]:
        assert Path(plot).stat().st_size > 1000
    assert (out / "report.md").read_text().startswith("# Calibration")
    return data


def synthetic_report(out: Path) -> tuple[dict, list[str], list[Point], list[Point]]:
    """A report on two made-up loads whose saturation misses its targets."""
    measured = [point(10, 0.010, 0.020), point(30, 0.012, 0.030)]
    modelled = [point(10, 0.011, 0.021), point(30, 0.020, 0.040)]
    report, failures = build_report(
        scenario_path=str(TESTBED),
        command="mailgate calibrate x",
        measured=measured,
        modelled=modelled,
        saturation_measured=Saturation(50.0, "mailbox.0", "ramp"),
        saturation_modelled=Saturation(60.0, "gateway3.0", "model"),
        fit=Fit(),
        overlay=out / "fitted.toml",
        tolerance=0.15,
        wall_s=1.0,
    )
    return report, failures, measured, modelled


def test_report_and_json_from_synthetic_points(tmp_path: Path) -> None:
    report, failures, measured, modelled = synthetic_report(tmp_path)
    assert any(f.startswith("saturation") for f in failures)  # +20 % > 10 %
    assert any(f.startswith("first to saturate") for f in failures)
    write_outputs(report, measured, modelled, tmp_path)
    data = _check_report_files(tmp_path)
    assert data["ok"] is False and data["saturation"]["same_first_host"] is False


@pytest.mark.realnet
@pytest.mark.slow
def test_short_end_to_end_calibration(tmp_path: Path) -> None:
    """Two loads, a few seconds each, on the real loopback testbed, then the model."""
    prefix = f"127.{random.randrange(130, 150)}"
    dns = f"{prefix}.255.53"
    opts = Options(
        scenario=str(TESTBED),
        rates=[3.0, 8.0],
        duration_s=4.0,
        out=tmp_path / "cal",
        model_horizon_s=60.0,
        repeats=3,
        background_load=0.3,  # the burner through the real pipeline (a little CPU)
        # addresses no other test picks from (a running `realnet up` keeps 127.25)
        testbed_overrides={"realnet.address_prefix": prefix, "realnet.dns_address": dns},
    )
    report = calibrate(opts, log=lambda s: None)
    assert report["ok"] == (not report["failures"])
    data = _check_report_files(tmp_path / "cal")
    assert [load["measured"]["rate"] for load in data["loads"]] == [3.0, 8.0]
    measured = data["loads"][0]["measured"]
    assert measured["latency"]["in_mailbox"]["inbound"]["n"] > 5
    assert measured["utilisation"]["mailbox.0"] > 0
    assert data["fit"]["stages"], "fitted from the lowest load's traces"
    fitted = load(tmp_path / "cal" / "fitted.toml")  # the overlay loads on the testbed
    assert fitted.deployment.machines[0].cores == 2
    assert data["departures"]["3"], "names where the model departs"
    # repeats: three seeds per load, their spread on the judged rows
    assert data["repeats"] == 3
    assert [r["seed"] for r in measured["repeats"]] == [1, 2, 3]
    assert all(r["spread"]["n"] == 3 for r in data["latency"] if r["judged"])
    assert "out_of_shadow" in measured["latency"]
    # the model's saturation by the same ramp; the fit over every run; the background
    assert "ramp on the model" in data["saturation"]["modelled"]["method"]
    assert data["fit"]["load_dependence"]["runs"] == 6
    assert data["fit"]["sizes_kb"]["hops"] > measured["latency"]["in_mailbox"]["inbound"]["n"]
    bg = data["background"]
    assert bg["cpu_per_message_s"] > 0 and 0 < bg["send_path_s"] < 1.0
    burner = bg["burner"]
    assert burner["processes"] == 1 and burner["cores_measured"] > 0.05
    assert not any(Path(f"/proc/{pid}").exists() for pid in burner["pids"]), "burner stopped"
    assert "A CPU burner ran" in (tmp_path / "cal" / "report.md").read_text()
    # the same stage costs on the production deployment (the planners' question)
    production = load(tmp_path / "cal" / "fitted-production.toml")
    assert production.scenario.name == load(ROOT / "scenarios" / "drive-network.toml").scenario.name
    assert not production.deployment.machines
    stage = ("gateway0", "spf")
    assert production.gateways[stage[0]].cost(stage[1]).cpu_s.mean == pytest.approx(
        fitted.gateways[stage[0]].cost(stage[1]).cpu_s.mean
    )


def test_cli_user_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mailgate.cli import main

    assert main(["calibrate", str(TESTBED), "--rates", "0,5"]) == 2
    assert "--rates" in capsys.readouterr().err
    no_users = tmp_path / "no-users.toml"
    no_users.write_text(f'extends = "{TESTBED}"\n[realnet]\nusers = []\n')
    assert main(["calibrate", str(no_users), "--rates", "5"]) == 2
    assert "realnet.users" in capsys.readouterr().err


def test_command_prints_the_report_and_exits_3_when_a_target_is_missed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import mailgate.commands.calibrate as command
    from mailgate.cli import main

    report = synthetic_report(tmp_path)[0]
    given: list[Options] = []

    def fake_calibrate(opts: Options, log: object) -> dict:
        given.append(opts)
        return report

    # the command imports the calibration when it runs: replace it where it lives
    monkeypatch.setattr("mailgate.calibration.calibrate.calibrate", fake_calibrate)
    args = ["calibrate", str(TESTBED), "--rates", "30,10", "--out", str(tmp_path)]
    assert main(args) == command.EXIT_TOLERANCE == 3
    out = capsys.readouterr().out
    assert out.startswith("# Calibration") and "## Verdict" in out and "saturation" in out
    assert given[0].rates == [10.0, 30.0] and given[0].out == tmp_path
    assert given[0].user.user == "selftest"  # the testbed's first realnet user
    report.update(ok=True, failures=[])
    assert main(args) == 0
    assert "All targets met." in capsys.readouterr().out
