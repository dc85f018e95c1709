"""POP: the mailboxes' copies and their retrieval by polling clients.

See ``Mailboxes``. The part knows the mailbox servers' hosts only as places
to spend CPU (``Host.burst`` and ``Host.background``) and reports each
retrieval of a counted copy to ``retrieved(flow, seconds since sent)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mailgate.sim.model.engine import Scheduler
from mailgate.sim.model.hosts import Host, Msg
from mailgate.sim.model.sampling import Streams
from mailgate.sim.model.statistics import Window
from mailgate.sim.scenario.workload import Pop

#: Width of the batches in which polls of empty mailboxes are served (s).
POP_BATCH_S = 1.0

#: One copy in a mailbox: (sent, flow, counted, size KB).
Copy = tuple[float, str, bool, float]


class PopJob:
    """A POP session's CPU work at the mailbox server."""

    __slots__ = ("cont", "copies", "core", "core_t0", "cpu", "plan", "visits")

    def __init__(self, copies: list[Copy]) -> None:
        self.copies = copies
        self.plan: Any = None
        self.cpu = 0.0
        self.cont: Any = None


class Mailboxes:
    """POP retrieval without an event per poll of every mailbox.

    Only mail in an *active* mailbox (one with a polling client; the first
    ``pop.active_share`` of them, recipients being uniform) can be
    retrieved. Each active mailbox has a lazily advanced poll clock: when a
    copy is filed, the clock advances by sampled intervals past now, and if
    the mailbox had nothing pending one poll event is scheduled. That poll
    costs the mailbox server ``pop_session`` + ``pop_retrieve`` per message.
    Polls that find nothing are one aggregated Poisson stream of sessions at
    rate (active mailboxes / mean interval), thinned by the share of active
    mailboxes with mail pending (those polls are the explicit ones), served
    in batches: each ``POP_BATCH_S`` window's polls are one CPU burst.
    """

    def __init__(
        self,
        pop: Pop,
        n: int,
        *,
        sched: Scheduler,
        streams: Streams,
        window: Window,
        hosts: list[Host],
        session: Callable[[float], float],
        retrieve: Callable[[float], float],
        retrieved: Callable[[str, float], None],
    ) -> None:
        self.sched = sched
        self.window = window
        self.n = n
        self.active = round(pop.active_share * n)
        self.interval = streams.sampler("pop.interval", pop.interval_s)
        u = streams.uniforms("pop.phase")
        self.next_poll = [u() * self.interval() for _ in range(self.active)]
        #: active mailbox -> copies waiting for its next poll
        self.pending: dict[int, list[Copy]] = {}
        self.pick = streams.uniforms("pop.mailbox")
        self.session = session
        self.retrieve = retrieve
        self.retrieved = retrieved
        self.hosts = hosts
        mean = pop.interval_s.mean
        self.empty_rate = self.active / mean if mean > 0 and self.active else 0.0

        # Empty polls come in batches: the Poisson number of them in each
        # POP_BATCH_S window is served as one CPU burst (one event instead
        # of one per poll; a poll's session costs about a millisecond).
        self.batch_s = POP_BATCH_S
        self.count = streams.poisson("pop.empty", self.empty_rate * self.batch_s)
        self.sessions = 0
        self.retrievals = 0
        #: copies filed into active mailboxes (retrieved, pending or being retrieved)
        self.filed = 0
        #: called with (mailbox, now) at every poll that finds mail
        self.watchers: list[Callable[[int, float], None]] = []

    def start(self) -> None:
        if self.empty_rate > 0:
            self.sched.after(self.batch_s * self.pick(), self._empty_poll, None)

    def file(self, m: Msg, now: float) -> None:
        """Copies of ``m`` land in ``m.rcpts`` random mailboxes."""
        for _ in range(m.rcpts):
            box = int(self.pick() * self.n)
            if box >= self.active:
                continue
            if self.empty_rate > 0:
                t = self.next_poll[box]
                while t <= now:
                    t += self.interval()
            else:
                t = now  # a client that never waits (interval 0) fetches at once
            self.next_poll[box] = t
            copy = (m.sent, m.flow, m.counted, m.size)
            self.filed += 1
            waiting = self.pending.get(box)
            if waiting is None:
                self.pending[box] = [copy]
                self.sched.after(t - now, self._poll, box)
            else:
                waiting.append(copy)

    def _host(self) -> Host:
        hosts = self.hosts
        return hosts[0] if len(hosts) == 1 else hosts[int(self.pick() * len(hosts))]

    def _poll(self, box: int) -> None:
        for watch in self.watchers:
            watch(box, self.sched.now)
        copies = self.pending.pop(box)
        cpu = self.session(0.0)
        for _, _, _, size in copies:
            cpu += self.retrieve(size)
        self.sessions += 1
        job = PopJob(copies)
        self._host().burst(job, cpu, self._retrieved)

    def _retrieved(self, job: PopJob) -> None:
        now = self.sched.now
        for sent, flow, counted, _ in job.copies:
            self.retrievals += 1
            if counted:
                self.retrieved(flow, now - sent)

    def _empty_poll(self, _: Any) -> None:
        """One batch of polls that find nothing: a session's CPU each, one burst."""
        now = self.sched.now
        if now >= self.window.end:
            return
        self.sched.after(self.batch_s, self._empty_poll, None)
        busy = len(self.pending) / self.active  # these polls are the explicit ones
        cpu = 0.0
        for _ in range(int(self.count())):
            if self.pick() >= busy:
                cpu += self.session(0.0)
                self.sessions += 1
        if cpu > 0:
            self._host().background(cpu)
