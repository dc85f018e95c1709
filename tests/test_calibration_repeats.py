"""Repeats of a load point (pooled samples, spread across repeats, "within spread"),
and the out-of-shadow quantiles, on synthetic points and records."""

from __future__ import annotations

import numpy as np
import pytest

from mailgate.calibration.compare import compare_points
from mailgate.calibration.points import Point, quantiles
from mailgate.calibration.repeats import pool_points, within_spread
from mailgate.calibration.report import format_report
from mailgate.calibration.shadow import out_of_shadow, shadows
from mailgate.sim.scenario.records import MessageRecord


def repeat(rate: float, values: list[float], **extra) -> Point:
    """One measured repeat whose inbound send → in mailbox samples are ``values``."""
    samples = {"in_mailbox": {"inbound": list(values)}}
    return Point(rate, rate, quantiles(samples), {"gw": 0.1}, samples=samples, extra=extra)


def three_repeats(rate: float = 10.0) -> list[Point]:
    rng = np.random.default_rng(7)
    # medians near 8, 10 and 14 ms: three seeds of one load that do not agree
    return [
        repeat(rate, list(rng.normal(m, 0.0005, 200)), cpu_s={"gw": 1.0}, seed=k)
        for k, m in enumerate((0.008, 0.010, 0.014))
    ]


def test_pool_points_pools_samples_and_reports_the_spread_of_each_quantile() -> None:
    reps = three_repeats()
    pooled = pool_points(reps)
    everything = np.concatenate([r.samples["in_mailbox"]["inbound"] for r in reps])
    assert pooled.latency["in_mailbox"]["inbound"]["n"] == 600
    assert pooled.latency["in_mailbox"]["inbound"]["p50"] == pytest.approx(
        float(np.quantile(everything, 0.5)), rel=1e-9
    )
    p50s = [float(np.median(r.samples["in_mailbox"]["inbound"])) for r in reps]
    sp = pooled.extra["spread"]["in_mailbox"]["inbound"]["p50"]
    assert (sp["min"], sp["max"]) == (pytest.approx(min(p50s)), pytest.approx(max(p50s)))
    assert sp["mean"] == pytest.approx(np.mean(p50s))
    assert sp["sd"] == pytest.approx(np.std(p50s, ddof=1))
    assert pooled.extra["cpu_s"] == {"gw": pytest.approx(3.0)}  # CPU of all three runs
    assert [r["seed"] for r in pooled.extra["repeats"]] == [0, 1, 2]


def test_a_miss_inside_the_measured_spread_is_reported_as_within_spread() -> None:
    pooled = pool_points(three_repeats())
    p50 = pooled.latency["in_mailbox"]["inbound"]["p50"]  # ~10 ms; repeats ~8–14 ms
    sp = pooled.extra["spread"]["in_mailbox"]["inbound"]["p50"]

    def verdicts(model_p50: float) -> tuple[str, list[str]]:
        model = repeat(10.0, [model_p50] * 200)
        rows, failures = compare_points([pooled], [model], saturation=100.0, tolerance=0.15)
        row = next(r for r in rows if r["span"] == "in_mailbox" and r["quantile"] == "p50")
        return row["verdict"], failures

    inside = (sp["max"] + 1.3 * p50) / 2  # > 15 % off the pooled p50, below the top repeat
    assert inside > 1.15 * p50 and inside < sp["max"]
    verdict, failures = verdicts(inside)
    assert verdict == "within spread"
    assert not [f for f in failures if "p50" in f]
    verdict, failures = verdicts(sp["max"] * 1.05)  # beyond every repeat: a miss
    assert verdict == "miss" and [f for f in failures if "p50" in f]
    assert verdicts(p50 * 1.05)[0] == "ok"
    # one repeat has no spread: a miss stays a miss
    single = pool_points(three_repeats()[:1])
    model = repeat(10.0, [inside] * 200)
    _, failures = compare_points([single], [model], 100.0, 0.15)
    assert any("p50" in f for f in failures)


def test_within_spread_needs_two_repeats() -> None:
    assert within_spread(0.012, {"n": 3, "min": 0.008, "max": 0.014})
    assert not within_spread(0.015, {"n": 3, "min": 0.008, "max": 0.014})
    assert not within_spread(0.010, {"n": 1, "min": 0.010, "max": 0.010})
    assert not within_spread(None, {"n": 3, "min": 0.008, "max": 0.014})


def _msg(i: int, size: float, sent: float, done: float, flow: str = "inbound") -> MessageRecord:
    return MessageRecord(f"m{i}", flow, size, sent, accepted=sent + 0.001, in_mailbox=done)


def test_out_of_shadow_keeps_small_inbound_messages_that_met_no_big_one() -> None:
    records = [
        _msg(0, 2500.0, 1.0, 2.0),  # a big message in the chain from 1.0 to 2.0
        _msg(1, 4.0, 0.5, 0.9),  # before it: kept
        _msg(2, 4.0, 0.9, 1.1),  # overlaps its start
        _msg(3, 4.0, 1.5, 1.6),  # inside
        _msg(4, 4.0, 1.9, 2.3),  # overlaps its end
        _msg(5, 4.0, 2.5, 2.6),  # after: kept
        _msg(6, 300.0, 3.0, 3.1),  # itself big (and casts its own shadow)
        _msg(7, 4.0, 3.05, 3.2),  # in that shadow
        _msg(8, 4.0, 4.0, 4.02, flow="outbound"),  # not inbound
        _msg(9, 150.0, 5.0, 5.3),  # under 200 KB: small, kept
    ]
    assert shadows(records) == [(1.0, 2.0), (3.0, 3.1)]
    assert sorted(out_of_shadow(records)) == pytest.approx([0.1, 0.3, 0.4])


def test_report_shows_the_range_over_repeats_and_within_spread(tmp_path) -> None:
    from tests.test_calibrate import synthetic_report

    report = synthetic_report(tmp_path)[0]
    row = report["latency"][0]
    row.update(verdict="within spread", ok=True,
               spread={"n": 3, "min": 0.008, "max": 0.014, "mean": 0.011, "sd": 0.003})  # fmt: skip
    text = format_report(report)
    assert "| 8.0–14.0 |" in text and "within spread" in text


def test_html_page_shows_spread_within_spread_burner_and_load_dependence(tmp_path) -> None:
    from mailgate.calibration.html_report import render_calibration
    from tests.test_calibrate import synthetic_report

    report = synthetic_report(tmp_path)[0]
    report["latency"][0].update(
        verdict="within spread", ok=True,
        spread={"n": 3, "min": 0.008, "max": 0.014, "mean": 0.011, "sd": 0.003},
    )  # fmt: skip
    report["background"] = {
        "per_load": [{"rate": 10.0, "outside_cpu_per_message_s": 0.006,
                      "foreign_busy_cores": 1.02, "send_path_s": {"n": 9, "mean": 0.0035}}],
        "cpu_per_message_s": 0.006, "cores": 1.02, "send_path_s": 0.0035, "in_model": False,
        "burner": {"cores_requested": 1.0, "processes": 1, "pids": [1], "wall_s": 9.0,
                   "cores_measured": 0.98},
    }  # fmt: skip
    row = {"tier": "gateway3", "stage": "spool", "quantity": "wait", "n": 99, "slope": 5e-4,
           "stderr": 1e-4, "p_value": 1e-6, "significant": True, "at_low": 0.002,
           "at_high": 0.029, "relative_change": 13.5}  # fmt: skip
    report["fit"]["load_dependence"] = {"stages": [row], "hosts": []}
    html = render_calibration(report)
    assert "8.0–14.0" in html and "within spread" in html
    assert "A CPU burner ran" in html and "0.98 cores measured" in html
    assert "gateway3" in html and "+500.00 ± 100.00" in html and "29.000" in html
