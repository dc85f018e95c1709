"""What a run with failures records for the recovery figures (``sim.analysis.recovery``).

Only a scenario with failures (``failures.host_down``, ``remote_outage``,
``dns_slow``, or ``workload.surges``) gets a watch; other runs record nothing
extra, so their numbers and ``results.json`` do not change.

- Every ``SAMPLE_S`` seconds of simulated time (the warm-up included, so the
  level before a failure is known) the watch samples the fleet's deferred
  queue, the messages waiting for a delivery slot on every host, and the mail
  parked on hosts that are down; and each host's own queue and deferred queue,
  keeping only its peak and when it happened.
- Each counted message that is delivered is *caught* when the failure hit it (it
  tried a dead host, was parked on one, or tried a remote site that was down or
  throttled), or, for load and DNS failures (``surges``, ``dns_slow``) that hit
  everyone, when its life (sent until delivered) overlaps the window; else *not
  caught*. Its latency goes to
  that group's histogram, its delivery attempts to the Internet (every attempt,
  a throttled one too: Postfix logs each as a deferral) to that group's tally.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mailgate.sim.model.engine import Scheduler
from mailgate.sim.model.hosts import Host, Msg
from mailgate.sim.model.stats import LogHistogram
from mailgate.sim.scenario import Scenario

#: seconds between queue samples: finer than Postfix's 300 s queue run, so a drain
#: time is resolved within a queue run
SAMPLE_S = 60.0
GROUPS = ("caught", "not_caught")


def failure_windows(s: Scenario) -> list[dict[str, Any]]:
    """Every failure and surge: ``{kind, what, start_s, end_s}`` (s after the run starts)."""
    out: list[tuple[str, str, float, float]] = []
    f = s.failures
    for d in f.host_down:
        out.append(("host_down", d.host, d.start_h, d.duration_h))
    for o in f.remote_outage:
        out.append(("remote_outage", o.domain, o.start_h, o.duration_h))
    for n in f.dns_slow:
        out.append(("dns_slow", f"+{n.extra_s:g} s", n.start_h, n.duration_h))
    for u in s.workload.surges:
        out.append(("surge", f"{u.flow} x{u.factor:g}", u.start_h, u.duration_h))
    return [
        {"kind": k, "what": w, "start_s": a * 3600.0, "end_s": (a + d) * 3600.0}
        for k, w, a, d in out
    ]


class FailureWatch:
    """Queue samples, per-host queue peaks, and latency and attempts of caught vs other mail."""

    def __init__(
        self,
        scenario: Scenario,
        sched: Scheduler,
        end: Callable[[], float],
        hosts: dict[str, Host],
        parked: dict[str, list[Msg]],
        deferred_level: Callable[[], float],
    ) -> None:
        self.sched = sched
        self.end = end
        self.hosts = hosts
        self.parked = parked
        self.deferred_level = deferred_level
        self.windows = failure_windows(scenario)
        #: windows that slow every message in them (not a failure a message runs into)
        self.spans = [
            (w["start_s"], w["end_s"]) for w in self.windows if w["kind"] in ("surge", "dns_slow")
        ]
        self.series: dict[str, list[float]] = {"deferred": [], "waiting": [], "parked": []}
        #: per host and queue ("queue", "deferred"): [peak, time of the peak]
        self.peaks: dict[str, dict[str, list[float]]] = {
            h: {"queue": [0.0, 0.0], "deferred": [0.0, 0.0]} for h in hosts
        }
        self.latency = {g: LogHistogram() for g in GROUPS}
        #: per group: delivered messages that made at least one Internet attempt, and attempts
        self.remote = {g: {"delivered": 0, "attempts": 0} for g in GROUPS}

    @property
    def active(self) -> bool:
        return bool(self.windows)

    def start(self) -> None:
        """Take the first sample now (t = 0) and every ``SAMPLE_S`` after it."""
        if self.active:
            self.sched.after(0.0, self._sample, None)

    def _sample(self, _: object) -> None:
        now = self.sched.now
        waiting = 0.0
        for hid, host in self.hosts.items():
            p = self.peaks[hid]
            for key, level in (("queue", host.stats.queue), ("deferred", host.stats.deferred)):
                v = level.value
                if key == "queue":
                    waiting += v
                if v > p[key][0]:
                    p[key] = [v, now]
        self.series["deferred"].append(self.deferred_level())
        self.series["waiting"].append(waiting)
        self.series["parked"].append(float(sum(len(v) for v in self.parked.values())))
        if now + SAMPLE_S <= self.end() + 1e-9:
            self.sched.after(SAMPLE_S, self._sample, None)

    def delivered(self, m: Msg, now: float) -> None:
        """A counted message reached its mailbox or the remote MX at ``now``."""
        caught = m.caught or any(m.sent < b and now > a for a, b in self.spans)
        g = GROUPS[0] if caught else GROUPS[1]
        self.latency[g].add(now - m.sent)
        if m.attempts:
            self.remote[g]["delivered"] += 1
            self.remote[g]["attempts"] += m.attempts

    def to_dict(self) -> dict[str, Any]:
        """One replication's record (histograms kept as objects for merging)."""
        return {
            "windows": self.windows,
            "sample_s": SAMPLE_S,
            "series": self.series,
            "peaks": self.peaks,
            "latency": self.latency,
            "remote": self.remote,
        }


def combine(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """Replications merged: series averaged, peaks the worst, latency merged, tallies summed."""
    first = reps[0]
    series = {
        k: [sum(v) / len(v) for v in zip(*(r["series"][k] for r in reps), strict=False)]
        for k in first["series"]
    }
    peaks: dict[str, dict[str, list[float]]] = {}
    for hid in first["peaks"]:
        peaks[hid] = {
            q: max((r["peaks"][hid][q] for r in reps), key=lambda p: p[0])
            for q in first["peaks"][hid]
        }
    latency = {}
    for g in GROUPS:
        h = LogHistogram()
        for r in reps:
            h.merge(r["latency"][g])
        latency[g] = h.summary()
    remote = {
        g: {k: sum(r["remote"][g][k] for r in reps) for k in ("delivered", "attempts")}
        for g in GROUPS
    }
    return {
        "windows": first["windows"],
        "sample_s": first["sample_s"],
        "series": series,
        "host_peaks": peaks,
        "latency": latency,
        "remote_attempts": remote,
    }
