"""The front door a new user meets: --version, a bare ``mailgate``, ``python -m mailgate``,
the shipped scenarios by name, and ``mailgate init``."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from mailgate.cli import main
from mailgate.sim.scenario.loading import load
from tests.conftest import ROOT, SCENARIOS


def _mailgate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailgate", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )


def test_version_comes_from_the_package_metadata(tmp_path: Path) -> None:
    run = _mailgate("--version", cwd=tmp_path)
    assert run.returncode == 0
    assert run.stdout.strip() == f"mailgate {metadata.version('mailgate')}"


def test_bare_mailgate_lists_the_commands_and_where_to_start(tmp_path: Path) -> None:
    run = _mailgate(cwd=tmp_path)
    assert run.returncode == 0
    for command in ("check", "run", "scenarios", "init", "realnet", "calibrate"):
        assert command in run.stdout
    assert "Start here" in run.stdout and "mailgate init" in run.stdout


def test_scenarios_lists_every_shipped_file_with_a_description(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["scenarios", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(r["name"] for r in rows) == sorted(p.stem for p in SCENARIOS)
    assert all(r["description"].strip() for r in rows)


def test_a_command_takes_a_shipped_name_from_any_folder(tmp_path: Path) -> None:
    run = _mailgate("check", "peak-hour", "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["scenario"] == "peak-hour"


def test_an_unknown_name_is_a_one_line_error_with_suggestions(tmp_path: Path) -> None:
    run = _mailgate("check", "peak-hours", cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "peak-hour" in run.stderr


def test_a_file_of_ones_own_extends_a_shipped_name(tmp_path: Path) -> None:
    mine = tmp_path / "mine.toml"
    mine.write_text('extends = "peak-hour"\n[population]\nmailboxes = 1234\n', encoding="utf-8")
    s = load(mine)
    assert s.population.mailboxes == 1234
    assert s.scenario.start_hour == load(ROOT / "scenarios" / "peak-hour.toml").scenario.start_hour


def test_init_copies_the_baseline_and_the_testbed_to_edit(tmp_path: Path) -> None:
    folder = tmp_path / "my-network"
    assert main(["init", str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "drive-network.toml",
        "loopback-testbed.toml",
    ]
    copied, shipped = (
        load(folder / "drive-network.toml"),
        load(ROOT / "scenarios" / "drive-network.toml"),
    )
    assert dataclasses.replace(copied, source="") == dataclasses.replace(shipped, source="")
    # the testbed copy extends the copied baseline: an edit there reaches it
    baseline = folder / "drive-network.toml"
    text = baseline.read_text(encoding="utf-8")
    assert "spam_share = 0.45" in text
    baseline.write_text(text.replace("spam_share = 0.45", "spam_share = 0.25"), encoding="utf-8")
    assert load(folder / "loopback-testbed.toml").workload.spam_share == 0.25


def test_init_overwrites_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "drive-network.toml").write_text("# my own work\n", encoding="utf-8")
    assert main(["init", str(folder)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (folder / "drive-network.toml").read_text(encoding="utf-8") == "# my own work\n"
