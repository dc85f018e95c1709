"""``mailgate compare``: exit 0 for the same seed and for another seed of the same scenario
(noise), 4 for a run with antivirus 3× slower, 2 for bad input; and the tests under it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mailgate.cli import main
from mailgate.sim.analysis import compare_stats as cs
from mailgate.sim.analysis.histogram import quantile, quantile_interval
from tests.conftest import ROOT

PEAK_HOUR = ROOT / "scenarios" / "peak-hour.toml"
# gateway1's antivirus stage 3× the default topology's cost (4 ms + 0.2 ms per KB)
SLOW_ANTIVIRUS = """\
extends = "{base}"
[scenario]
name = "peak-hour-slow-antivirus"
[gateways.gateway1.stages]
antivirus = {{ cpu_s = 0.012, cpu_per_kb_s = 0.0006 }}
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Half-hour runs of the peak hour, made once for the module."""
    root = tmp_path_factory.mktemp("runs")
    slow = root / "slow-antivirus.toml"
    slow.write_text(SLOW_ANTIVIRUS.format(base=PEAK_HOUR.as_posix()), encoding="utf-8")
    plan = {
        "base": (PEAK_HOUR, 1, 1), "again": (PEAK_HOUR, 1, 1), "seed2": (PEAK_HOUR, 2, 1),
        "slow": (slow, 1, 1), "reps": (PEAK_HOUR, 1, 2), "reps_seed2": (PEAK_HOUR, 2, 2),
    }  # fmt: skip
    out = {}
    for name, (scenario, seed, reps) in plan.items():
        out[name] = root / name
        args = ["run", str(scenario), "--seed", str(seed), "--hours", "0.5", "--replications",
                str(reps), "--no-plots", "--no-progress", "--out", str(out[name])]  # fmt: skip
        assert main(args) == 0
    return out


def _compare(capsys: pytest.CaptureFixture[str], base: Path, new: Path) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["compare", str(base), str(new / "results.json"), "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_same_seed_is_no_regression(runs: dict[str, Path], capsys) -> None:
    code, c = _compare(capsys, runs["base"], runs["again"])
    assert code == 0 and c["regressions"] == []
    assert {r["status"] for r in c["latency"] + c["utilisation"] + c["counts"]} == {"same"}


def test_another_seed_is_noise(runs: dict[str, Path], capsys) -> None:
    code, c = _compare(capsys, runs["base"], runs["seed2"])
    assert code == 0, c["regressions"]
    assert any(r["status"] == "within noise" for r in c["latency"])


def test_replication_sets_of_two_seeds_are_noise(runs: dict[str, Path], capsys) -> None:
    code, c = _compare(capsys, runs["reps"], runs["reps_seed2"])
    assert code == 0, c["regressions"]
    p95 = [r for r in c["latency"] if r["quantile"] == "p95" and r["method"] != "too few samples"]
    assert p95 and all(r["method"] == "replications" for r in p95)


def test_antivirus_three_times_slower_is_a_regression(runs: dict[str, Path], capsys) -> None:
    code, c = _compare(capsys, runs["base"], runs["slow"])
    assert code == 4
    assert "latency inbound accepted_to_mailbox p95" in c["regressions"]
    assert "utilisation gateway1.0 cpu" in c["regressions"]
    # outbound mail does not pass gateway1: same seed, same numbers
    outbound = [r for r in c["latency"] if r["flow"] == "outbound"]
    assert {r["status"] for r in outbound} <= {"same", "within noise"}
    # the reverse direction is an improvement, not a regression
    assert main(["compare", str(runs["slow"]), str(runs["base"])]) == 0


def test_tolerance_lets_a_known_slowdown_pass(runs: dict[str, Path]) -> None:
    assert main(["compare", str(runs["base"]), str(runs["slow"]), "--tolerance", "5"]) == 0


def test_text_form_names_the_verdict(runs: dict[str, Path], capsys) -> None:
    capsys.readouterr()
    assert main(["compare", str(runs["base"]), str(runs["slow"])]) == 4
    text = capsys.readouterr().out
    assert "REGRESSION" in text and "Verdict: " in text and "gateway1.0" in text


def test_bad_input_is_exit_2(runs: dict[str, Path], tmp_path: Path, capsys) -> None:
    assert main(["compare", str(tmp_path / "missing"), str(runs["base"])]) == 2
    (tmp_path / "other.json").write_text("[1, 2]", encoding="utf-8")
    assert main(["compare", str(runs["base"]), str(tmp_path / "other.json")]) == 2
    with pytest.raises(SystemExit) as exit_info:  # argparse refuses it
        main(["compare", str(runs["base"]), str(runs["base"]), "--tolerance", "-1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err


def test_histogram_quantile_is_the_models(runs: dict[str, Path]) -> None:
    d = json.loads((runs["base"] / "results.json").read_text(encoding="utf-8"))
    hist = d["histograms"]["inbound"]["accepted_to_mailbox"]
    for key, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        assert quantile(hist, q) == pytest.approx(hist[key], rel=1e-9)
        lo, hi = quantile_interval(hist, q)
        assert lo <= hist[key] <= hi


def test_statistics() -> None:
    assert cs.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert cs.welch_from_intervals((1.0, 1.0), 3, (1.0, 1.0), 3) == 1.0
    assert cs.welch_from_intervals((9.0, 11.0), 5, (9.5, 11.5), 5) > 0.2
    assert cs.welch_from_intervals((9.0, 11.0), 5, (20.0, 22.0), 5) < 1e-4
    assert cs.counts_test(1000, 1000) == 1.0
    assert cs.counts_test(1000, 1200) < 1e-4
    assert cs.paired_series_test([1, 2, 3], [1, 2, 3]) == 1.0
    assert cs.paired_series_test([1, 2, 3], [2, 3, 4]) == 0.0
    assert cs.paired_series_test([1, 2], [1, 2]) is None
    assert cs.quantile_test(1.0, (0.9, 1.1), 1.0, (0.9, 1.1)) == 1.0
    assert cs.quantile_test(1.0, (0.99, 1.01), 1.5, (1.48, 1.52)) < 1e-6
    assert cs.quantile_test(0.0, (0.0, 0.0), 1.0, (0.9, 1.1)) is None
