"""``mailgate check``: the summary a planner reads, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mailgate.cli import main
from mailgate.sim.analysis.offered import SECONDS_PER_DAY, pop_sessions_per_s, tier_loads
from mailgate.sim.scenario.loading import load
from tests.conftest import ROOT

BASELINE = ROOT / "scenarios" / "drive-network.toml"


def test_check_prints_the_summary(capsys) -> None:
    assert main(["check", str(BASELINE)]) == 0
    out = capsys.readouterr().out
    assert "scenario drive-network" in out and "valid" in out
    for tier in ("gateway0", "gateway1", "gateway2", "gateway3", "gateway4", "mailbox"):
        assert f"\n  {tier} " in out
    assert "peak msg/s" in out and "POP sessions/s: 12.50" in out


def test_check_json_has_offered_load_per_tier(capsys) -> None:
    assert main(["check", "--json", str(BASELINE)]) == 0
    summary = json.loads(capsys.readouterr().out)
    tiers = {t["tier"]: t for t in summary["tiers"]}
    assert tiers["gateway0"]["hosts"] == 2
    assert tiers["gateway0"]["peak_msgs_per_s"] > tiers["gateway0"]["mean_msgs_per_s"]


def test_offered_load_follows_the_flows() -> None:
    """Mean rates per tier from the workload by hand: what each tier removes is gone downstream."""
    s = load(BASELINE)
    w, n = s.workload, s.population.mailboxes
    inbound = w.inbound_per_mailbox_day * n / SECONDS_PER_DAY
    sent = w.outbound_per_mailbox_day * n / SECONDS_PER_DAY
    internal = sent * w.internal_share
    loads = tier_loads(s)
    passed_spf = inbound * (1 - w.spam_share * w.spam_spf_fail_share)
    clean = 1 - w.virus_share
    internal_at_mx = internal * clean  # scanned at gateway2 on the way out
    assert loads["gateway0"].mean == pytest.approx(inbound + internal_at_mx)
    assert loads["gateway1"].mean == pytest.approx(passed_spf + internal_at_mx)
    assert loads["gateway2"].mean == pytest.approx(sent)
    assert loads["gateway3"].mean == pytest.approx(sent * clean)
    assert loads["gateway4"].mean == pytest.approx(
        (sent - internal) * clean * s.internet.temp_fail_prob
    )
    assert loads["mailbox"].mean == pytest.approx(sent + (passed_spf + internal_at_mx) * clean)
    assert pop_sessions_per_s(s) == pytest.approx(n * s.pop.active_share / 600)


def test_surge_multiplies_its_hour() -> None:
    base = tier_loads(load(ROOT / "scenarios" / "peak-hour.toml"))["gateway0"]
    wave = tier_loads(load(ROOT / "scenarios" / "spam-wave.toml"))["gateway0"]
    changed = [h for h in range(24) if wave.hourly[h] != pytest.approx(base.hourly[h])]
    assert changed == [8]  # start 07:45 + 0.25 h warm-up: the 08-09 h hour
    assert wave.hourly[8] > 2 * base.hourly[8]


def test_overload_is_flagged(write_scenario, capsys) -> None:
    path = write_scenario(
        f'extends = "{BASELINE.as_posix()}"\n[scenario]\nname = "hot"\n'
        "[population]\nmailboxes = 30000000\n"
    )
    assert main(["check", str(path)]) == 0
    assert "overloaded" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[population]\nmailboxs = 5\n", "population.mailboxs: unknown key (did you mean"),
        ("[workload]\noutbound_per_mailbox_day = -2.0\n", "workload.outbound_per_mailbox_day"),
        ("[workload.diurnal]\noutbound = [" + ", ".join(["1"] * 23) + "]\n", "24 hourly weights"),
    ],
)
def test_bad_scenario_one_line_exit_2(write_scenario, text, words) -> None:
    path = write_scenario('[scenario]\nname = "bad"\n' + text)
    run = subprocess.run(
        [sys.executable, "-m", "mailgate", "check", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert run.returncode == 2
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(f"mailgate: error: {path}: ") and words in lines[0]
    assert "Traceback" not in run.stderr


def test_help_explains_every_subcommand() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "mailgate", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    for command in ("check", "run", "selftest", "realnet", "calibrate"):
        assert command in run.stdout
    run = subprocess.run(
        [sys.executable, "-m", "mailgate", "run", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    for option in ("--seed", "--mailboxes", "--hours", "--out"):
        assert option in run.stdout


@pytest.mark.parametrize(
    ("flag", "value"), [("--hours", "-1"), ("--hours", "nan"), ("--hours", "inf"), ("--seed", "-1")]
)
def test_bad_arguments_exit_2_with_one_line_naming_the_flag(flag: str, value: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "mailgate", "run", "x.toml", flag, value],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and f"argument {flag}: must be" in run.stderr
