"""Memory growth per process over a held load, not fooled by start-up growth or by
the mail in flight at one instant.

A process's RSS grows while it starts (imports, caches, first TLS sessions),
so comparing the first sample with the last would call that growth a leak.
``MemoryWatch`` takes each process's baseline after a warm-up: ``warmup_s``
after the load starts, or, for a process that was restarted (a new pid for
the same host), ``warmup_s`` after its restart was first seen. From then on it
keeps the process's RSS at every look (once a second in ``realnet load``).

Growth is the median RSS of the last ``window_s`` against the median of the first
``window_s`` after the baseline, per process. One sample at either end would
measure the messages a host holds at that moment: at the end of a 25-minute soak
five hosts held 11-14 MB of mmapped buffers (multi-MB mail in flight) and stood
10-25 % above their level of the minute before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from statistics import median
from typing import Any

from mailgate.realnet.load.procstat import ProcessSample, sample_process

#: The soak test's limit: no process grows more than this share after warm-up.
GROWTH_LIMIT = 0.10


@dataclass
class MemoryWatch:
    """Baselines after warm-up, one per host's current process."""

    warmup_s: float
    #: the span of samples whose median is a level (default: ``warmup_s``)
    window_s: float | None = None
    #: host -> (pid, seconds since the load started when that pid was first seen)
    seen: dict[str, tuple[int, float]] = field(default_factory=dict)
    #: host -> (baseline sample, when it was taken)
    base: dict[str, tuple[ProcessSample, float]] = field(default_factory=dict)
    #: host -> (seconds, RSS kB) of its current process from its baseline on
    series: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    last_s: float = 0.0

    def observe(self, pids: Mapping[str, int], now_s: float) -> None:
        """Note new pids (restarts) and take the baselines whose warm-up is over."""
        for host, pid in pids.items():
            known = self.seen.get(host)
            if known is None or known[0] != pid:
                # the first look is at the load's start (0); a restart is seen when polled
                self.seen[host] = (pid, now_s if known else 0.0)
                self.base.pop(host, None)
            if host not in self.base and now_s - self.seen[host][1] < self.warmup_s:
                continue
            sample = sample_process(pid)
            if sample is None:
                continue
            if host not in self.base:
                self.base[host] = (sample, now_s)
                self.series[host] = []
            self.series[host].append((now_s, sample.rss_kb))
        self.last_s = max(self.last_s, now_s)

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
                "end_sample_rss_kb": last.rss_kb if last else None,
                "samples": 0,
                "growth": None,
                "flagged": False,
            }
            if b and last and b[0].pid == last.pid and b[0].rss_kb > 0:
                series = self.series.get(host, [])
                first, final = self._levels(series, last.rss_kb, b[1])
                row |= {"base_rss_kb": first, "end_rss_kb": final, "samples": len(series) + 1}
                row["growth"] = (final - first) / first
                row["flagged"] = row["growth"] > GROWTH_LIMIT
            out[host] = row
        return out

    def _levels(
        self, series: list[tuple[float, int]], end_rss: int, base_at: float
    ) -> tuple[int, int]:
        """Median RSS of the first window of ``series`` (from the baseline on) and of the
        last one (with ``end_rss``, the sample at the end); a window never reaches past
        the series' middle, so a short run compares its two halves."""
        window = self.window_s if self.window_s is not None else self.warmup_s
        end_at = self.last_s  # the latest look: no sample is later
        half = (base_at + end_at) / 2
        first = [r for t, r in series if t <= min(base_at + window, half)]
        last = [r for t, r in series if t > max(end_at - window, half)] + [end_rss]
        return int(median(first or [end_rss])), int(median(last))
