"""``--background-load``'s CPU burner: it burns about what it was asked (by /proc), it is
stopped by PID on leaving the block (also on an error), and it ends by itself when its
time is up. Uses at most ~0.5 core for about a second."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mailgate.calibration.burner import Burner
from mailgate.calibration.cpu import process_cpu_s


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (by /proc, not by the burner's own view)."""
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():
        return False
    state = stat.read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


def test_burner_burns_its_share_and_leaves_no_process() -> None:
    with Burner(0.5, max_s=30) as burner:
        assert len(burner.pids) == 1 and all(alive(p) for p in burner.pids)
        time.sleep(0.3)  # the interpreter's start-up
        c0, t0 = process_cpu_s(burner.pids[0]), time.monotonic()
        time.sleep(1.0)
        used = (process_cpu_s(burner.pids[0]) - c0) / (time.monotonic() - t0)
    # half a core asked: never more; on a shared machine maybe well less
    assert 0.1 <= used <= 0.7
    assert not any(alive(p) for p in burner.pids)
    summary = burner.summary()
    assert summary["processes"] == 1 and summary["cores_requested"] == 0.5
    assert 0.05 <= summary["cores_measured"] <= 0.7


def test_burner_is_stopped_when_the_calibration_fails() -> None:
    pids: list[int] = []
    with pytest.raises(RuntimeError), Burner(1.5, max_s=30) as burner:
        pids = list(burner.pids)
        assert len(pids) == 2  # ceil(1.5) processes of 0.75 core each
        raise RuntimeError("the testbed did not come up")
    assert pids and not any(alive(p) for p in pids)


def test_burner_ends_by_itself_when_its_time_is_up() -> None:
    burner = Burner(0.1, max_s=0.3).start()
    try:
        proc = burner._procs[0]
        assert proc.wait(timeout=10) == 0  # exited on its own, before any stop()
    finally:
        burner.stop()
    assert not alive(burner.pids[0])


def test_no_burner_for_zero_cores() -> None:
    with Burner(0.0) as burner:
        assert burner.pids == []
    assert os.getpid() > 0
