"""``mailgate run`` says what its window measured and whether the system keeps up.

- The root bottleneck of an overloaded run is the resource the utilisation law (stage
  costs × offered load, ``check``'s estimate, no simulation) puts over 100 %, not the
  delivery slots queueing in front of it; the run is flagged unstable.
- ``--window peak`` measures the hour with the most offered messages (the argmax of the
  hourly rates, summed over the flows); a window that misses it, and a failure after the
  end of the run, are warned about; bad values exit 2 with one line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailgate.cli import main
from mailgate.sim.analysis import verdict
from mailgate.sim.analysis.offered import hourly_rate
from mailgate.sim.analysis.results_text import clean
from mailgate.sim.analysis.run_window import warnings, window_overrides
from mailgate.sim.analysis.summary import summarise
from mailgate.sim.analysis.summary import warnings as check_warnings
from mailgate.sim.model.simulate import simulate
from mailgate.sim.scenario.loading import load

SLOW_AV = {  # Gateway1's antivirus ~375x its default cost: its CPU is over 100 % in the peak
    "gateways.gateway1.stages.antivirus": {"cpu_s": 1.5, "cpu_per_kb_s": 0.075},
    "scenario.duration_h": 0.5,
}


def test_overloaded_run_names_the_saturated_cpu_and_is_unstable() -> None:
    s = load("peak-hour", SLOW_AV)
    estimate = {t["tier"]: t["peak_cpu_utilisation"] for t in summarise(s)["tiers"]}
    over = [t for t, u in estimate.items() if u > 1]
    assert over == ["gateway1"]
    d = clean(simulate(s, seed=2).to_dict())
    r = verdict.root(d)
    assert r is not None
    assert (r["host"].split(".")[0], r["resource"]) == ("gateway1", "cpu")
    assert verdict.stability(d)["unstable"]
    text = "\n".join(verdict.lines(d))
    assert "unstable" in text and "queue builds at: gateway0" in text


def test_a_light_run_is_stable() -> None:
    s = load("peak-hour", {"scenario.duration_h": 0.5})
    assert max(t["peak_cpu_utilisation"] for t in summarise(s)["tiers"]) < 0.5
    d = clean(simulate(s, seed=2).to_dict())
    assert not verdict.stability(d)["unstable"]
    assert "unstable" not in "\n".join(verdict.lines(d))


def test_window_peak_measures_the_busiest_hour() -> None:
    base = load("drive-network")
    rates = [hourly_rate(base, f) for f in ("inbound", "outbound", "internal")]
    total = [sum(x) for x in zip(*rates, strict=True)]
    peak = max(range(24), key=total.__getitem__)
    s = load("drive-network", window_overrides("drive-network", {}, window="peak"))
    meta = s.scenario
    assert (meta.start_hour + meta.warmup_h) % 24 == pytest.approx(peak)
    assert meta.duration_h == 1.0
    assert warnings(s) == []
    # the peak-hour scenario measures that same hour
    p = load("peak-hour").scenario
    assert ((p.start_hour + p.warmup_h) % 24, p.duration_h) == (pytest.approx(peak), 1.0)


def test_warnings_for_a_window_off_peak_and_a_failure_after_the_end() -> None:
    s = load("drive-network", {"scenario.duration_h": 1.0})
    assert any("misses the profile's peak" in w for w in warnings(s))
    late = load("gateway1-host-down", {"failures.host_down": [
        {"host": "gateway1.0", "start_h": 5.0, "duration_h": 1.0}]})  # fmt: skip
    assert any("after the run ends" in w for w in warnings(late))
    assert any("after the run ends" in w for w in check_warnings(late, summarise(late)["tiers"]))


@pytest.mark.parametrize(
    "args",
    [["--start-hour", "24"], ["--start-hour", "nan"], ["--window", "noon"],
     ["--start-hour", "3", "--window", "peak"], ["--hours", "inf"], ["--seed", "-1"]],
)  # fmt: skip
def test_bad_values_exit_2_with_one_line(args: list[str], tmp_path: Path, capsys) -> None:
    try:
        code = main(["run", "peak-hour", "--no-plots", "--no-progress", "--out", str(tmp_path),
                     *args])  # fmt: skip
    except SystemExit as e:  # argparse refuses a bad value itself
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]


def test_unwritable_out_exits_2(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["run", "peak-hour", "--no-plots", "--out", str(blocker / "sub")]) == 2
    assert "--out" in capsys.readouterr().err
