"""`mailgate realnet replay`: the scenario's failures applied to the real chain.

The real test holds a load while one remote site is down for a few seconds and
checks it against evidence the replay does not produce itself: the remote
sink's own receipts (nothing for that domain inside the window, the caught mail
after it), the audit of journals, traces and spools (0 lost), and the relays'
retry interval as a bound on the drain time.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mailgate.calibration.replay import replay_overrides, side_by_side
from mailgate.realnet.load.replay import caught_latency
from mailgate.realnet.services.dnscontrol import DelayControl, set_dns_delay
from mailgate.realnet.testbed.faults import FaultWindow, fault_windows
from mailgate.sim.scenario.loading import load
from mailgate.sim.scenario.records import MessageRecord

ROOT = Path(__file__).resolve().parent.parent
TIME_SCALE = 0.005
MIN_BACKOFF_S, MAX_BACKOFF_S = 200.0, 400.0  # × TIME_SCALE: 1 s and 2 s on the testbed
OUTAGE_H = (0.1, 0.2)  # start, duration: 1.8 s to 5.4 s after the load starts


def overlay(tmp_path: Path, *, outage: bool = True, extra: str = "") -> Path:
    """The testbed on its own addresses, fast retries, most outbound mail to bigmail."""
    prefix = f"127.{random.randrange(121, 130)}"
    failure = (
        f'[[failures.remote_outage]]\ndomain = "bigmail.example"\n'
        f"start_h = {OUTAGE_H[0]}\nduration_h = {OUTAGE_H[1]}\n"
    )
    path = tmp_path / "tb.toml"
    path.write_text(
        f'extends = "{ROOT / "scenarios" / "loopback-testbed.toml"}"\n'
        f'[scenario]\nname = "replay-test-{os.getpid()}"\n'
        f'[realnet]\naddress_prefix = "{prefix}"\ndns_address = "{prefix}.255.53"\n'
        f"time_scale = {TIME_SCALE}\n"
        # most mail outbound, most of it to bigmail: a few seconds' outage catches a dozen
        "[workload]\noutbound_per_mailbox_day = 14.0\n"
        f"[retry]\nminimal_backoff_s = {MIN_BACKOFF_S}\nmaximal_backoff_s = {MAX_BACKOFF_S}\n"
        "[internet]\ndomains = [\n"
        '  { name = "bigmail.example", share = 0.9, inbound_share = 0.25 },\n'
        '  { name = "carrier.example", share = 0.05, inbound_share = 0.10 },\n'
        "]\n" + (failure if outage else "") + extra
    )
    return path


def mailgate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailgate", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=150,
    )


def test_windows_are_the_scenarios_hours_times_the_time_scale(tmp_path: Path) -> None:
    s = load(overlay(tmp_path))
    (w,) = fault_windows(s)
    assert (w.kind, w.what) == ("remote_outage", "bigmail.example")
    assert w.start_s == pytest.approx(0.1 * 3600 * TIME_SCALE)  # 1.8 s
    assert w.end_s == pytest.approx(0.3 * 3600 * TIME_SCALE)  # 5.4 s
    o = replay_overrides(s, 5.0, {"inbound": 1.0}, 20.0)
    assert o["failures.remote_outage"][0]["start_h"] * 3600 == pytest.approx(1.8)
    assert o["retry.minimal_backoff_s"] == pytest.approx(1.0)
    assert o["scenario.duration_h"] * 3600 == pytest.approx(20.0)


def test_caught_means_a_life_that_overlaps_a_window_it_can_run_into() -> None:
    w = FaultWindow("remote_outage", "bigmail.example", 10.0, 20.0)
    rec = [
        MessageRecord("a", "outbound", 1, sent=5.0, accepted=5.1, remote=25.0),  # caught
        MessageRecord("b", "outbound", 1, sent=5.0, accepted=5.1, remote=25.0),  # other site
        MessageRecord("c", "outbound", 1, sent=1.0, accepted=1.1, remote=2.0),  # before it
        MessageRecord("d", "inbound", 1, sent=5.0, accepted=5.1),  # not delivered
    ]
    got = caught_latency(rec, [w], 0.0, {"bigmail.example": {"a", "c"}})
    assert got["caught"]["count"] == 1 and got["caught"]["p50"] == pytest.approx(20.0)
    assert got["not_caught"]["count"] == 2 and got["not_caught"]["max"] == pytest.approx(20.0)
    rows = side_by_side({"latency_caught": {"p50": 20.0}}, {"latency_caught": {"p50": 25.0}})
    row = next(r for r in rows if r["figure"].startswith("caught: p50"))
    assert row["relative_error"] == pytest.approx(0.25)


@pytest.fixture(scope="module")
def key(scenario):
    """The DKIM key the ``dns_server`` fixture publishes."""
    from mailgate.realnet.services.keys import DkimKey

    domain = scenario.population.domains[0]
    return DkimKey.generate("ed25519-sha256", scenario.realnet.dkim_selector, domain)


def test_a_slow_dns_window_delays_every_answer(dns_server, resolver, tmp_path: Path) -> None:
    dns_server.control = DelayControl(tmp_path)
    domain = "drive-network.example"

    def timed() -> float:
        t = time.monotonic()
        resolver.resolve(domain, "MX")
        return time.monotonic() - t

    assert timed() < 0.2
    set_dns_delay(tmp_path, 0.4, seconds=30)
    time.sleep(0.1)  # the server looks at the file every 50 ms
    assert timed() >= 0.4  # the reply, timed on the wire
    set_dns_delay(tmp_path, 0.0, seconds=0)
    time.sleep(0.1)
    assert timed() < 0.2


def test_a_scenario_without_failures_is_a_user_error(tmp_path: Path) -> None:
    run = mailgate("realnet", "replay", str(overlay(tmp_path, outage=False)))
    assert run.returncode == 2 and "no [failures] to replay" in run.stderr


@pytest.mark.realnet
def test_remote_outage_replayed_mail_is_caught_then_drains(tmp_path: Path) -> None:
    run = mailgate(
        "realnet", "replay", str(overlay(tmp_path)), "--rate", "8", "--settle", "30",
        "--state-dir", str(tmp_path / "state"), "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    r = json.loads((tmp_path / "out" / "replay.json").read_text())
    m = r["measured"]
    t0 = m["started_wall"]
    start, end = (t0 + OUTAGE_H[0] * 3600 * TIME_SCALE, t0 + sum(OUTAGE_H) * 3600 * TIME_SCALE)
    sink_file = tmp_path / "state" / "remote" / "bigmail.example.jsonl"
    sink = [json.loads(line) for line in sink_file.read_text().splitlines()]
    # the sink's own record: nothing for the domain in the window (a little slack at
    # its edges for a transaction already past RCPT), mail before and after it
    inside = [row["time"] for row in sink if start + 0.3 < row["time"] < end - 0.05]
    assert inside == []
    assert any(row["time"] < start for row in sink)
    after = sorted(row["time"] for row in sink if row["time"] >= end - 0.05)
    assert len(after) >= 5  # the mail caught in the window (~4/s offered to it)
    # caught, then drained: deferred in a spool during the window, back after it
    assert m["queues"]["deferred"]["peak"] >= 3
    drain = m["drain_time_s"]
    assert drain is not None
    # independent bound: a message deferred in the window is retried within the
    # maximal backoff (× time scale) after its last attempt, one queue sample more
    assert drain <= MAX_BACKOFF_S * TIME_SCALE + 2 * m["sample_s"] + 0.5
    assert m["audit"]["lost"] == 0 and m["undelivered"] == [] and m["corrupt"] == []
    assert m["latency_caught"]["count"] >= 5
    assert m["latency_caught"]["p50"] > m["latency_not_caught"]["p95"]
    modelled = r["modelled"]
    assert modelled is not None and modelled["latency_caught"]["count"] > 0
    labels = {row["figure"] for row in r["comparison"]}
    assert "drain time, deferred (s)" in labels


@pytest.mark.realnet
@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("MAILGATE_SLOW") != "1", reason="set MAILGATE_SLOW=1")
def test_a_refusing_host_down_stays_down_for_its_window(tmp_path: Path) -> None:
    down = (
        f'[[failures.host_down]]\nhost = "mailbox.0"\nstart_h = {OUTAGE_H[0]}\n'
        f"duration_h = {OUTAGE_H[1]}\nrefuses = true\n"
    )
    run = mailgate(
        "realnet", "replay", str(overlay(tmp_path, outage=False, extra=down)), "--rate", "8",
        "--settle", "30", "--state-dir", str(tmp_path / "state"), "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    m = json.loads((tmp_path / "out" / "replay.json").read_text())["measured"]
    t0 = m["started_wall"]
    start, end = (t0 + OUTAGE_H[0] * 3600 * TIME_SCALE, t0 + sum(OUTAGE_H) * 3600 * TIME_SCALE)
    # the mailbox server's own trace: nothing accepted while it was down, mail before and after
    trace = (tmp_path / "state" / "traces" / "mailbox.0.jsonl").read_text().splitlines()
    took = [json.loads(line)["accepted"] for line in trace]
    assert [t for t in took if t and start + 0.3 < t < end - 0.05] == []
    assert any(t and t < start for t in took) and any(t and t > end for t in took)
    # the service manager restarted it once, no earlier than the window's end
    line = next(x for x in run.stdout.splitlines() if "mailbox.0 restarted" in x)
    assert (
        float(line.split("serving again ")[1].split(" s")[0])
        >= sum(OUTAGE_H) * 3600 * (TIME_SCALE) - OUTAGE_H[0] * 3600 * TIME_SCALE - 0.1
    )
    assert m["audit"]["lost"] == 0 and m["undelivered"] == []
    assert m["queues"]["deferred"]["peak"] >= 3 and m["drain_time_s"] is not None
