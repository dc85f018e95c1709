"""Traffic: the arrival streams of new mail, and what a new message is like.

Non-homogeneous Poisson streams (inbound ham, inbound spam, outbound,
internal) whose rate is piecewise constant: the daily mean times the diurnal
weight of the clock hour times any surge. A gap is drawn from Exp(rate) and
redrawn at each rate change (exact by memorylessness). ``Traffic`` calls
``emit(flow, spam, now)`` at each arrival; ``MessageMaker`` draws a new
message's size, recipients, virus, SPF verdict, unknown recipient and remote
domain.
"""

from __future__ import annotations

from collections.abc import Callable

from mailgate.sim.model.engine import Scheduler
from mailgate.sim.model.hosts import Msg
from mailgate.sim.model.sampling import Streams
from mailgate.sim.model.statistics import Window
from mailgate.sim.scenario import Scenario

#: A new message of ``flow`` (spam or not) is sent at ``now``.
Emit = Callable[[str, bool, float], None]


class Stream:
    """One arrival stream with a piecewise-constant rate."""

    def __init__(
        self,
        name: str,
        flow: str,
        per_day: float,
        weights: tuple[float, ...],
        surges: list[tuple[float, float, float]],
        start_hour: float,
        exp: Callable[[], float],
    ) -> None:
        self.name = name
        self.flow = flow
        self.base = per_day / 86400.0
        self.weights = weights
        self.surges = surges  # (start s, end s, factor)
        self.offset = start_hour * 3600.0
        self.exp = exp
        edges = sorted({e for s, t, _ in surges for e in (s, t)})
        self.edges = edges
        self.spam = False

    def rate(self, t: float) -> float:
        hour = int(((self.offset + t) // 3600.0) % 24)
        r = self.base * self.weights[hour]
        for start, end, factor in self.surges:
            if start <= t < end:
                r *= factor
        return r

    def next_edge(self, t: float) -> float:
        nxt = t + 3600.0 - ((self.offset + t) % 3600.0)
        if nxt <= t:  # rounding at an exact boundary
            nxt = t + 3600.0
        for e in self.edges:
            if t < e < nxt:
                return e
        return nxt


def streams_of(scenario: Scenario, streams: Streams) -> list[Stream]:
    """The scenario's four arrival streams, each with its own named Exp(1) draws."""
    s, w = scenario, scenario.workload
    inbound = s.daily_messages("inbound")
    specs = [
        ("inbound", False, inbound * (1 - w.spam_share), w.diurnal.inbound.weights),
        ("inbound", True, inbound * w.spam_share, w.diurnal.inbound.weights),
        ("outbound", False, s.daily_messages("outbound"), w.diurnal.outbound.weights),
        ("internal", False, s.daily_messages("internal"), w.diurnal.outbound.weights),
    ]
    out = []
    for flow, spam, per_day, weights in specs:
        surges = [
            (g.start_h * 3600.0, (g.start_h + g.duration_h) * 3600.0, g.factor)
            for g in w.surges
            if (g.flow == "all" or g.flow == flow or (g.flow == "outbound" and flow == "internal"))
            and (spam or not g.spam_only)
        ]
        name = f"{flow}{'.spam' if spam else ''}"
        stream = Stream(name, flow, per_day, weights, surges, s.scenario.start_hour,
                        streams.exponentials(f"arrivals.{name}"))  # fmt: skip
        stream.spam = spam
        out.append(stream)
    return out


class Traffic:
    """Arrivals of every stream until the window's end, each one handed to ``emit``."""

    def __init__(self, streams: list[Stream], sched: Scheduler, window: Window, emit: Emit) -> None:
        self.streams = streams
        self.sched = sched
        self.window = window
        self.emit = emit

    def start(self) -> None:
        """Schedule each stream's first arrival."""
        for stream in self.streams:
            self._next_arrival(stream, 0.0)

    def _next_arrival(self, stream: Stream, t: float) -> None:
        """Schedule the stream's next message after time ``t`` (thinning-free)."""
        end = self.window.end
        while t < end:
            r = stream.rate(t)
            edge = stream.next_edge(t)
            if r > 0:
                gap = stream.exp() / r
                if t + gap < edge:
                    if t + gap < end:
                        self.sched.after(t + gap - self.sched.now, self._arrival, stream)
                    return
            t = edge

    def _arrival(self, stream: Stream) -> None:
        now = self.sched.now
        self.emit(stream.flow, stream.spam, now)
        self._next_arrival(stream, now)


class MessageMaker:
    """Draws what a new message is like from the workload (sizes, recipients, verdicts)."""

    def __init__(self, scenario: Scenario, streams: Streams, choices: Callable[[], float]) -> None:
        s = scenario
        self.workload = s.workload
        self.u = choices
        self.size_legit = streams.sampler("size.legit", s.workload.size.legit)
        self.size_spam = streams.sampler("size.spam", s.workload.size.spam)
        self.recipients = streams.sampler("recipients", s.workload.recipients)
        cum, acc = [], 0.0
        for d in s.internet.domains:
            acc += d.share
            cum.append(acc)
        self.domain_cum = cum
        self.next_id = 0

    def make(
        self, flow: str, spam: bool, now: float, *, size: float | None, probe: bool, warm: float
    ) -> Msg:
        """A message sent at ``now``; counted when sent after ``warm`` and not a probe."""
        w, u = self.workload, self.u
        if size is None:
            size = self.size_spam() if spam else self.size_legit()
        m = Msg(self.next_id, flow, size, now)
        self.next_id += 1
        m.spam = spam
        m.rcpts = int(self.recipients())
        m.virus = u() < w.virus_share
        if probe:
            m.rcpts, m.virus = 1, False
        m.counted = now >= warm and not probe
        if spam:
            m.spf_fail = u() < w.spam_spf_fail_share
        if flow == "inbound" and w.unknown_recipient_share > 0 and not probe:
            # drawn only when the share is set: scenarios without it keep their draws
            m.unknown = u() < w.unknown_recipient_share
        if flow == "outbound":
            x, m.domain = u(), -1
            for i, c in enumerate(self.domain_cum):
                if x < c:
                    m.domain = i
                    break
        return m
