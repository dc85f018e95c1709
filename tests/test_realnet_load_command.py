"""`mailgate realnet load` as a user runs it: a bounded load, a host killed along the way."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from mailgate.realnet.load.loadrun import Kill, sample_process, spooled_ids

ROOT = Path(__file__).resolve().parent.parent


def overlay(tmp_path: Path) -> Path:
    """The testbed scenario on addresses no other test uses (retries scaled down)."""
    prefix = f"127.{random.randrange(170, 190)}"
    path = tmp_path / "tb.toml"
    path.write_text(
        f'extends = "{ROOT / "scenarios" / "loopback-testbed.toml"}"\n'
        f'[scenario]\nname = "load-test-{os.getpid()}"\n'
        f'[realnet]\naddress_prefix = "{prefix}"\ndns_address = "{prefix}.255.53"\n'
        "time_scale = 0.005\n"
    )
    return path


def mailgate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailgate", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=180,
    )


def test_kill_argument_and_process_sample() -> None:
    assert Kill.parse("gateway1.0@2.5") == Kill("gateway1.0", 2.5)
    with pytest.raises(ValueError):
        Kill.parse("gateway1.0")
    me = sample_process(os.getpid())
    assert me is not None and me.cpu_s > 0 and me.rss_kb > 0


def test_undelivered_mail_is_found_in_the_spools(tmp_path: Path) -> None:
    queue = tmp_path / "spool" / "gateway1.0" / "queue"
    queue.mkdir(parents=True)
    (queue / "a").write_bytes(b'{"trace_id": "run7-3", "attempts": 1}\nFrom: x\r\n\r\nbody')
    (queue / "b").write_bytes(b'{"trace_id": "other-1"}\n')
    (queue / "c").write_bytes(b"not json")
    assert spooled_ids(tmp_path, "run7-") == {"run7-3": "gateway1.0"}


def test_unknown_kill_host_is_a_user_error(tmp_path: Path) -> None:
    run = mailgate(
        "realnet", "load", str(overlay(tmp_path)), "--rate", "1", "--duration", "1",
        "--kill", "gateway9.0@1",
    )  # fmt: skip
    assert run.returncode == 2 and "unknown host 'gateway9.0'" in run.stderr


@pytest.mark.realnet
def test_load_with_a_killed_gateway1_host_loses_nothing(tmp_path: Path) -> None:
    run = mailgate(
        "realnet", "load", str(overlay(tmp_path)), "--rate", "5", "--duration", "6",
        "--kill", "gateway1.0@2", "--drain", "40", "--json",
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout)
    assert report["accepted"] > 10 and report["corrupt"] == []
    assert report["lost"] == [] and report["queued"] == {}
    assert report["intact"] > 0 and report["delivered"] == report["accepted"]
    assert [k["host"] for k in report["kills"]] == ["gateway1.0"]
    g1 = report["processes"]["gateway1.0"]
    assert g1["restarted"] and g1["end"]["pid"] != g1["start"]["pid"]
    assert report["processes"]["mailbox.0"]["end"]["rss_kb"] > 0
    assert "sent" in run.stderr and "gateway1.0 restarted" in run.stderr  # live line, log
    print(
        f"accepted {report['accepted']}, delivered {report['delivered']}, "
        f"duplicates {report['duplicates']}, intact {report['intact']}"
    )


def test_shares_out_of_range_are_a_user_error(tmp_path: Path) -> None:
    run = mailgate(
        "realnet", "load", str(overlay(tmp_path)), "--rate", "1", "--duration", "1",
        "--unknown-share", "1.5",
    )  # fmt: skip
    assert run.returncode == 2 and "--unknown-share" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.realnet
@pytest.mark.slow
def test_audit_finds_nothing_lost_after_a_load_with_refusals_and_a_kill(tmp_path: Path) -> None:
    """A short version of issue #16's audit demonstration: unknown recipients and
    routing tricks mixed in (refused at RCPT), one host SIGKILLed and restarted; the
    audit then accounts for every message any host accepted."""
    state = tmp_path / "state"
    run = mailgate(
        "realnet", "load", str(overlay(tmp_path)), "--rate", "8", "--duration", "40",
        "--kill", "gateway1.0@15", "--unknown-share", "0.05", "--tricks-share", "0.05",
        "--drain", "40", "--state-dir", str(state), "--json",
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout)
    errors = report["errors"]
    assert errors.get("inbound RCPT 550 (unknown, as expected)", 0) > 0, errors
    assert errors.get("inbound RCPT 550 (routing, as expected)", 0) > 0, errors
    assert not [k for k in errors if "expected a refusal" in k], errors
    assert report["lost"] == [] and report["delivered"] == report["accepted"]
    audit = mailgate("realnet", "audit", str(state))
    print(report["accepted"], errors, audit.stdout.splitlines()[0])
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert audit.stdout.strip().endswith("0 lost")
