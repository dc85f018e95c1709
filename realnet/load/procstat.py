"""One process's CPU seconds and resident memory, read from /proc."""

from __future__ import annotations

import os
from dataclasses import dataclass

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessSample:
    """One process's CPU seconds so far and resident memory, from /proc."""

    pid: int
    cpu_s: float
    rss_kb: int


def sample_process(pid: int) -> ProcessSample | None:
    """``pid``'s CPU and RSS now; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            rss = next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
    except (OSError, IndexError, ValueError):
        return None
    # utime and stime: fields 14 and 15 of stat(5), here 12 and 13 after the name
    return ProcessSample(pid, (int(fields[11]) + int(fields[12])) / _TICKS, rss)
