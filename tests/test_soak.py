"""Memory growth measured after warm-up (restarts included), and the soak benchmark."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailgate.realnet.load.memwatch import MemoryWatch
from mailgate.realnet.load.procstat import sample_process

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import soak  # noqa: E402

# A child that reports nothing, allocates N MB (touched, so resident) per line it reads.
GROWER = (
    "import sys\nheld = []\nfor line in sys.stdin:\n"
    "    held.append(bytearray(int(line) << 20))\n    print('ok', flush=True)\n"
)


def _grower() -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", GROWER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def _grow(proc: subprocess.Popen[str], mb: int) -> None:
    assert proc.stdin and proc.stdout
    proc.stdin.write(f"{mb}\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "ok"


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.communicate()  # reaps it and closes its pipes


def test_growth_is_counted_from_after_the_warm_up() -> None:
    """Start-up growth (before the warm-up) is not counted; later growth is, as allocated."""
    proc = _grower()
    try:
        watch = MemoryWatch(warmup_s=10.0)
        watch.observe({"h": proc.pid}, 0.0)
        _grow(proc, 40)  # during the warm-up: start-up growth
        watch.observe({"h": proc.pid}, 5.0)
        assert "h" not in watch.base
        watch.observe({"h": proc.pid}, 10.0)
        base = watch.base["h"][0].rss_kb
        _grow(proc, 20)  # after it: counted
        row = watch.growth({"h": sample_process(proc.pid)})["h"]
    finally:
        _stop(proc)
    # independent: 20 MB allocated on top of the baseline (within 2 MB of allocator slack)
    assert row["base_rss_kb"] == base and row["base_at_s"] == 10.0
    assert abs(row["end_rss_kb"] - base - 20 * 1024) < 2048
    assert row["growth"] == pytest.approx(20 * 1024 / base, abs=2048 / base)
    assert row["flagged"] == (row["growth"] > 0.10)


def test_growth_is_between_levels_not_single_samples() -> None:
    """The mail a host holds at one instant (a spike at the last look) is not growth;
    memory that stays is, in the medians of the first and the last window."""
    proc = _grower()
    try:
        _grow(proc, 0)  # the interpreter is up: its RSS is a level from here
        watch = MemoryWatch(warmup_s=10.0, window_s=20.0)
        watch.observe({"h": proc.pid}, 0.0)
        for t in range(10, 101, 5):  # a flat level from the baseline to 100 s
            watch.observe({"h": proc.pid}, float(t))
        flat = watch.base["h"][0].rss_kb
        _grow(proc, 40)  # held only at the end sample: a 10 MB message in flight, say
        both = watch.growth({"h": sample_process(proc.pid), "other": None})
        assert both["other"]["growth"] is None  # a host without a process: unmeasured
        spiked = both["h"]
        for t in range(105, 201, 5):  # the 40 MB stay: a level of its own
            watch.observe({"h": proc.pid}, float(t))
        grown = watch.growth({"h": sample_process(proc.pid)})["h"]
    finally:
        _stop(proc)
    assert spiked["end_sample_rss_kb"] > flat + 30 * 1024  # the single sample saw it
    assert abs(spiked["growth"]) < 0.05 and not spiked["flagged"]
    assert abs(grown["end_rss_kb"] - flat - 40 * 1024) < 2048 and grown["flagged"]
    assert grown["samples"] == 40


def test_a_restarted_process_is_measured_from_its_restart_plus_warm_up() -> None:
    first, second = _grower(), _grower()
    try:
        watch = MemoryWatch(warmup_s=10.0)
        watch.observe({"h": first.pid}, 0.0)
        watch.observe({"h": first.pid}, 10.0)
        _grow(first, 60)
        watch.observe({"h": second.pid}, 30.0)  # restarted: a new pid
        watch.observe({"h": second.pid}, 35.0)
        assert "h" not in watch.base  # still warming up
        watch.observe({"h": second.pid}, 40.0)
        base, at = watch.base["h"]
        row = watch.growth({"h": sample_process(second.pid)})["h"]
        gone = MemoryWatch(warmup_s=10.0)
        gone.observe({"h": first.pid}, 0.0)
        gone.observe({"h": second.pid}, 95.0)  # restarted too late for a baseline
        unmeasured = gone.growth({"h": sample_process(second.pid)})["h"]
    finally:
        _stop(first)
        _stop(second)
    assert base.pid == second.pid and at == 40.0 and row["since_s"] == 30.0
    assert row["pid"] == second.pid and abs(row["growth"]) < 0.05  # the first's 60 MB not seen
    assert unmeasured["growth"] is None and not unmeasured["flagged"]


def test_the_kill_plan_hits_one_host_of_each_gateway_spread_out() -> None:
    kills = soak.kill_plan(600.0)
    hosts = [k.split("@")[0] for k in kills]
    times = [float(k.split("@")[1]) for k in kills]
    assert [h.split(".")[0] for h in hosts] == [f"gateway{g}" for g in range(5)]
    assert times == [90.0, 180.0, 270.0, 360.0, 450.0]
    # each restarted host has a warm-up (10 %) left before the end
    assert max(times) + 60.0 < 600.0


@pytest.mark.realnet
@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("MAILGATE_SLOW"), reason="set MAILGATE_SLOW=1")
def test_one_minute_soak_loses_nothing(tmp_path: Path) -> None:
    """``benchmarks/soak.py --minutes 1``: five kills, nothing lost or corrupted."""
    state = tmp_path / "state"
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--minutes", "1", "--rate", "5",
         "--drain", "60", "--prefix", "127.233", "--state-dir", str(state), "--json"],
        capture_output=True, text=True, timeout=400,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    verdict = json.loads(run.stdout)
    assert verdict["killed"] == sorted(k.split("@")[0] for k in verdict["kills"])
    # independent of the load's tallies: the restarted hosts have new pids
    for host in verdict["killed"]:
        assert verdict["memory"][host]["since_s"] > 0
    assert verdict["lost"] == 0 and verdict["corrupted"] == 0 and verdict["audit_ok"]
    assert verdict["delivered"] == verdict["accepted"] > 100
    # memory is not judged at one minute: a 6 s warm-up does not reach steady state
    assert run.returncode == (0 if verdict["ok"] else 1)


def test_the_verdict_fails_on_a_loss_a_corruption_a_missed_kill_or_growth() -> None:
    kills = soak.kill_plan(60.0)
    mem = {"gateway1.1": {"flagged": False, "growth": 0.02}}
    good = {
        "offered": 10, "accepted": 9, "delivered": 9, "lost": [], "queued": {}, "corrupt": [],
        "duplicates": 1, "memory": mem,
        "kills": [{"host": k.split("@")[0]} for k in kills],
    }  # fmt: skip
    assert soak.verdict(good, True, kills)["ok"]
    bad = [
        {**good, "lost": ["r-1"]},
        {**good, "queued": {"r-2": "gateway1.0"}},
        {**good, "corrupt": ["r-3"]},
        {**good, "kills": good["kills"][1:]},
        {**good, "memory": {"gateway1.1": {"flagged": True, "growth": 0.2}}},
        {**good, "memory": {"gateway1.1": {"flagged": False, "growth": None}}},
    ]
    assert [soak.verdict(r, True, kills)["ok"] for r in bad] == [False] * len(bad)
    assert not soak.verdict(good, False, kills)["ok"]  # the audit found a loss
