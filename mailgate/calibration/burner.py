"""A bounded CPU burner: ``mailgate calibrate --background-load CORES``.

Calibrating "on a busy machine" needs a known, steady amount of other work on
the cores the testbed shares. ``Burner`` starts ``ceil(cores)`` child
processes running a pure-Python busy loop (pinned nowhere: the OS scheduler
places them as it places any other tenant), each busy for its share of
``cores`` in every 10 ms period. Every child is bounded in time (it exits by
itself after ``max_s``) and exits when its parent is gone, so a crashed
calibration leaves no burner behind; ``stop()`` ends each child by its PID
(terminate, then kill) and is called on leaving the ``with`` block, on errors
and on Ctrl-C alike.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import TracebackType

from mailgate.calibration.cpu import process_cpu_s

#: One burner child: busy ``share`` of every ``period`` seconds, until ``deadline``
#: (monotonic seconds from its start) or until its parent (``ppid``) is gone.
_CHILD = """
import os, sys, time
share, period, limit, ppid = float(sys.argv[1]), 0.01, float(sys.argv[2]), int(sys.argv[3])
end = time.monotonic() + limit
n = 0
while time.monotonic() < end:
    t0 = time.monotonic()
    while time.monotonic() - t0 < share * period:
        n += 1
    rest = period - (time.monotonic() - t0)
    if rest > 0:
        time.sleep(rest)
    if os.getppid() != ppid:
        break
"""

#: A burner never outlives this by default (the longest calibration is well below it).
DEFAULT_MAX_S = 3600.0


@dataclass
class Burner:
    """``cores`` of busy loop in ``ceil(cores)`` processes, for at most ``max_s`` seconds."""

    cores: float
    max_s: float = DEFAULT_MAX_S
    pids: list[int] = field(default_factory=list)
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _t0: float = 0.0
    _cpu0: float = 0.0
    _cpu_used: float = 0.0
    _wall: float = 0.0

    def start(self) -> Burner:
        """Start the children (nothing for ``cores`` ≤ 0)."""
        if self.cores <= 0:
            return self
        n = math.ceil(self.cores)
        share = min(self.cores / n, 1.0)
        self._t0 = time.monotonic()
        for _ in range(n):
            proc = subprocess.Popen(
                [sys.executable, "-c", _CHILD, f"{share}", f"{self.max_s}", f"{os.getpid()}"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self._procs.append(proc)
            self.pids.append(proc.pid)
        return self

    def cpu_seconds(self) -> float:
        """CPU seconds the children have used so far (at ``stop``: in all)."""
        if not self._procs:
            return self._cpu_used
        total = 0.0
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                total += process_cpu_s(pid)
        return total

    def stop(self) -> None:
        """End every child by its PID: SIGTERM, then SIGKILL after 2 s; reap it."""
        if self._procs:
            self._wall = time.monotonic() - self._t0
            self._cpu_used = self.cpu_seconds()
        for proc in self._procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        for proc in self._procs:
            try:
                proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5.0)
        self._procs.clear()

    def summary(self) -> dict[str, float | int | list[int]]:
        """What the report says about it: asked, processes, measured cores (after ``stop``)."""
        return {
            "cores_requested": self.cores,
            "processes": len(self.pids),
            "pids": list(self.pids),
            "wall_s": self._wall,
            "cores_measured": self._cpu_used / self._wall if self._wall > 0 else 0.0,
        }

    def __enter__(self) -> Burner:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
