"""Per-process CPU utilisation from ``/proc/<pid>/stat``.

Calibration compares each host's measured CPU utilisation with the model's.
A host is one OS process, so its utilisation over a window is the CPU time
the kernel charged it (``utime + stime``, in clock ticks) divided by the
wall time of the window. Reading ``/proc`` costs the sampled processes
nothing, unlike asking them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

#: Kernel clock ticks per second (USER_HZ), the unit of utime/stime.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far.

    Raises ``ProcessLookupError`` when the process is gone.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            text = f.read()
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None
    # The command name (field 2) is in parentheses and may contain spaces:
    # split after the last ')' so the field numbers are stable.
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / CLOCK_TICKS


def run_queue_s(pid: int) -> float:
    """Seconds the threads of a process have spent runnable but waiting for a core so
    far: field 2 of ``/proc/PID/task/*/schedstat`` (ns), summed over its threads; 0 once
    it is gone (the kernel keeps it with ``CONFIG_SCHEDSTATS``, as Debian's does)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return 0.0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as f:
                total += int(f.read().split()[1])
        except (FileNotFoundError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return total / 1e9


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores, all processes).

    From the ``cpu`` line of ``/proc/stat``: everything but idle and iowait.
    """
    with open("/proc/stat", encoding="ascii") as f:
        fields = f.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


@dataclass
class CpuSampler:
    """Utilisation of named processes between ``start()`` and ``stop()``.

    ``pids`` maps a name (a host id) to a PID. A process that disappears
    during the window keeps the CPU it had used when last seen.
    """

    pids: Mapping[str, int]
    _t0: float = 0.0
    _cpu0: dict[str, float] = field(default_factory=dict)
    _last: dict[str, float] = field(default_factory=dict)
    _machine0: float = 0.0
    _queue0: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._machine0 = machine_busy_s()
        self._queue0 = {name: run_queue_s(pid) for name, pid in self.pids.items()}
        self._cpu0 = {name: self._read(name, pid) for name, pid in self.pids.items()}
        self._last = dict(self._cpu0)

    def _read(self, name: str, pid: int) -> float:
        try:
            value = process_cpu_s(pid)
        except ProcessLookupError:
            return self._last.get(name, 0.0)
        self._last[name] = value
        return value

    def sample(self) -> dict[str, float]:
        """Utilisation (CPU seconds per wall second) of each process so far."""
        wall = max(time.monotonic() - self._t0, 1e-9)
        return {
            name: (self._read(name, pid) - self._cpu0.get(name, 0.0)) / wall
            for name, pid in self.pids.items()
        }

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds each process used since ``start()``."""
        return {
            name: self._read(name, pid) - self._cpu0.get(name, 0.0)
            for name, pid in self.pids.items()
        }

    def run_queue_seconds(self) -> dict[str, float]:
        """Seconds each process waited for a core since ``start()`` (0 for one that died:
        a restarted process's count would not continue the old one's)."""
        return {
            name: max(run_queue_s(pid) - self._queue0.get(name, 0.0), 0.0)
            for name, pid in self.pids.items()
        }

    def machine_seconds(self) -> float:
        """CPU seconds the whole machine was busy since ``start()`` (anyone's)."""
        return machine_busy_s() - self._machine0

    def wall_seconds(self) -> float:
        return time.monotonic() - self._t0

    def stop(self) -> dict[str, float]:
        """Utilisation over the whole window (same as a last ``sample()``)."""
        return self.sample()
