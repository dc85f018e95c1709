"""Memory growth per process over a held load, not fooled by start-up growth.

A process's RSS grows while it starts (imports, caches, first TLS sessions),
so comparing the first sample with the last would call that growth a leak.
``MemoryWatch`` takes each process's baseline after a warm-up: ``warmup_s``
after the load starts, or, for a process that was restarted (a new pid for
the same host), ``warmup_s`` after its restart was first seen. Growth is
then end RSS vs that baseline, per process.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mailgate.realnet.load.procstat import ProcessSample, sample_process

#: The soak test's limit: no process grows more than this share after warm-up.
GROWTH_LIMIT = 0.10


@dataclass
class MemoryWatch:
    """Baselines after warm-up, one per host's current process."""

    warmup_s: float
    #: host -> (pid, seconds since the load started when that pid was first seen)
    seen: dict[str, tuple[int, float]] = field(default_factory=dict)
    #: host -> (baseline sample, when it was taken)
    base: dict[str, tuple[ProcessSample, float]] = field(default_factory=dict)

    def observe(self, pids: Mapping[str, int], now_s: float) -> None:
        """Note new pids (restarts) and take the baselines whose warm-up is over."""
        for host, pid in pids.items():
            known = self.seen.get(host)
            if known is None or known[0] != pid:
                # the first look is at the load's start (0); a restart is seen when polled
                self.seen[host] = (pid, now_s if known else 0.0)
                self.base.pop(host, None)
            if host in self.base or now_s - self.seen[host][1] < self.warmup_s:
                continue
            sample = sample_process(pid)
            if sample is not None:
                self.base[host] = (sample, now_s)

    def growth(self, end: Mapping[str, ProcessSample | None]) -> dict[str, dict[str, Any]]:
        """Per host: baseline → end RSS and the growth (None without a baseline)."""
        out: dict[str, dict[str, Any]] = {}
        for host in sorted(set(self.seen) | set(end)):
            b, last = self.base.get(host), end.get(host)
            row: dict[str, Any] = {
                "pid": last.pid if last else None,
                "since_s": self.seen[host][1] if host in self.seen else None,
                "base_at_s": b[1] if b else None,
                "base_rss_kb": b[0].rss_kb if b else None,
                "end_rss_kb": last.rss_kb if last else None,
                "growth": None,
                "flagged": False,
            }
            if b and last and b[0].pid == last.pid and b[0].rss_kb > 0:
                row["growth"] = (last.rss_kb - b[0].rss_kb) / b[0].rss_kb
                row["flagged"] = row["growth"] > GROWTH_LIMIT
            out[host] = row
        return out
