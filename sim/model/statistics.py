"""What the model counts per flow: messages by outcome, latency histograms, the deferred level.

``Statistics`` is the tally the parts report to (a message was generated,
finished, deferred for the first time; a latency span ended; the deferred
queue grew or shrank). It counts messages *generated* after the warm-up
(``Msg.counted``) and time-weighted levels after the warm-up; per-host levels
live on each host (``HostStats``). ``sim.model.results`` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailgate.sim.model.hosts import Msg
from mailgate.sim.model.stats import Level, LogHistogram

#: Latency spans recorded per flow (names used by slo.objectives).
SPANS = ("accepted_to_mailbox", "sent_to_retrieved", "sent_to_remote", "sent_to_accepted")
#: Terminal outcomes; with "in_flight" they partition the generated messages.
OUTCOMES = ("delivered", "rejected", "quarantined", "bounced")
FLOWS = ("inbound", "outbound", "internal")


def bucket_seconds(duration_h: float) -> float:
    """Width of the time series buckets: hours for long runs, 5 min for short ones."""
    return 3600.0 if duration_h >= 6 else 300.0


@dataclass
class Window:
    """The measured interval: statistics from ``warm`` to ``end`` (s), in buckets.

    ``end`` may be moved after building (a probe that must finish); the
    traffic and POP parts read it as they go.
    """

    warm: float
    end: float
    bucket_s: float


class Statistics:
    """Counts per outcome and flow, latency histograms, the fleet's deferred level."""

    def __init__(self, window: Window) -> None:
        self.window = window
        self.hists: dict[str, dict[str, LogHistogram]] = {
            f: {span: LogHistogram() for span in SPANS} for f in FLOWS
        }
        self.counts: dict[str, int] = dict.fromkeys(("generated", *OUTCOMES, "deferred"), 0)
        self.by_flow: dict[str, dict[str, int]] = {
            f: dict.fromkeys(("generated", *OUTCOMES, "deferred"), 0) for f in FLOWS
        }
        self.deferred_total = Level(window.warm, window.end, window.bucket_s)
        #: messages generated per bucket (the offered load over the day)
        self.generated_series = [0] * len(self.deferred_total.bucket_area)

    def generated(self, m: Msg, now: float) -> None:
        """A counted message was created now."""
        self.counts["generated"] += 1
        i = int((now - self.window.warm) / self.window.bucket_s)
        if i < len(self.generated_series):
            self.generated_series[i] += 1
        self.by_flow[m.flow]["generated"] += 1

    def finished(self, m: Msg, result: str) -> None:
        """A counted message reached a terminal outcome (one of ``OUTCOMES``)."""
        self.counts[result] += 1
        self.by_flow[m.flow][result] += 1

    def first_deferral(self, m: Msg) -> None:
        """A counted message failed its first delivery attempt."""
        self.counts["deferred"] += 1
        self.by_flow[m.flow]["deferred"] += 1

    def span(self, flow: str, name: str, seconds: float) -> None:
        """One latency span of a counted message of ``flow``."""
        self.hists[flow][name].add(seconds)

    def in_flight(self, flow: str | None = None) -> int:
        """Counted messages without a terminal outcome yet (of one flow, or all).

        The remainder of the tallies; tests count the messages themselves instead.
        """
        c = self.counts if flow is None else self.by_flow[flow]
        return c["generated"] - sum(c[o] for o in OUTCOMES)
