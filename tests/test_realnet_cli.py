"""`mailgate realnet up` and `mailgate realnet probe` as a user runs them."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mailgate.realnet.testbed.supervisor import RUNNING_DIR

pytestmark = pytest.mark.realnet

ROOT = Path(__file__).resolve().parent.parent


def overlay(tmp_path: Path) -> Path:
    """The testbed scenario on addresses no other test uses."""
    prefix = f"127.{random.randrange(80, 100)}"
    path = tmp_path / "tb.toml"
    path.write_text(
        f'extends = "{ROOT / "scenarios" / "loopback-testbed.toml"}"\n'
        f'[scenario]\nname = "cli-test-{os.getpid()}"\n'
        f'[realnet]\naddress_prefix = "{prefix}"\ndns_address = "{prefix}.255.53"\n'
    )
    return path


def mailgate(*args: str, **kw) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run(
        [sys.executable, "-m", "mailgate", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
        **kw,
    )


def start_up(scenario: Path, state: Path, **kw) -> subprocess.Popen[str]:  # type: ignore[no-untyped-def]
    """`mailgate realnet up SCENARIO --state-dir STATE` in the background, output on a pipe."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mailgate",
            "realnet",
            "up",
            str(scenario),
            "--state-dir",
            str(state),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        **kw,
    )


def children_of(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def test_up_then_probe_use_running_then_stop_leaves_nothing(tmp_path: Path) -> None:
    scenario = overlay(tmp_path)
    state = tmp_path / "state"
    up = start_up(scenario, state)
    hosts: list[int] = []
    try:
        lines = []
        deadline = time.monotonic() + 60
        assert up.stdout is not None
        while time.monotonic() < deadline:
            line = up.stdout.readline()
            assert line, "up exited early:\n" + "".join(lines)
            lines.append(line)
            if line.startswith("running"):
                break
        text = "".join(lines)
        assert "gateway0.0" in text and "DNS" in text and "mailbox.0" in text
        hosts = children_of(up.pid)
        assert len(hosts) == 13  # 11 hosts + DNS + the remote sinks, nothing else
        run = mailgate("realnet", "probe", str(scenario), "--use-running", "--json")
        assert run.returncode == 0, run.stdout + run.stderr
        report = json.loads(run.stdout)
        probe = report["probes"][0]
        assert probe["spf"] == "pass" and probe["dkim"] == "pass"
        assert report["summary"]["count"] == 1 and report["summary"]["p50_s"] > 0
        assert probe["hops"][0]["host"].startswith("mailbox.")
        # up names the local CA; the probe's hops (all but the POP read) came over TLS
        assert f"local CA {state.resolve() / 'tls' / 'ca.crt'}" in text
        hops = [h for h in probe["hops"] if h["outcome"] != "retrieved"]
        assert hops and all(h["tls"].startswith("TLSv1.") for h in hops), hops
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
        if up.stdout is not None:
            up.stdout.close()
    assert up.returncode == 0
    time.sleep(0.2)
    alive = [pid for pid in hosts if Path(f"/proc/{pid}").exists()]
    assert alive == [], f"left behind: {alive}"


def test_probe_without_running_testbed_is_a_user_error(tmp_path: Path) -> None:
    run = mailgate("realnet", "probe", str(overlay(tmp_path)), "--use-running")
    assert run.returncode == 2 and "no running testbed" in run.stderr


@pytest.mark.parametrize("how", ["ctrl-c", "supervisor-killed"])
def test_up_leaves_nothing_behind(tmp_path: Path, how: str) -> None:
    """Ctrl-C reaches the whole process group; a SIGKILLed supervisor takes its hosts along."""
    # a SIGKILLed supervisor cannot remove its state dir: keep it under tmp_path
    # start_new_session: its own process group, like a terminal's foreground job
    up = start_up(overlay(tmp_path), tmp_path / "state", start_new_session=True)
    try:
        assert up.stdout is not None
        for line in up.stdout:
            if line.startswith("running"):
                break
        hosts = children_of(up.pid)
        assert hosts
        if how == "ctrl-c":
            os.killpg(up.pid, signal.SIGINT)
            assert up.wait(timeout=30) == 0
        else:
            up.kill()
            up.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in hosts):
            time.sleep(0.1)
        assert [p for p in hosts if Path(f"/proc/{p}").exists()] == []
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        if up.stdout is not None:
            up.stdout.close()
        # a killed supervisor leaves its "running testbed" pointer behind
        (RUNNING_DIR / f"cli-test-{os.getpid()}.json").unlink(missing_ok=True)
