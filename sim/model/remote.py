"""Delivery to the Internet: attempts, temporary failures, outages, deferral, retries, bounces.

- An attempt to a domain in ``failures.remote_outage`` fails after the
  tier's connect timeout; then, as Postfix's queue manager does, the host
  throttles that domain for ``minimal_backoff_s`` (its mail fails at once).
- Otherwise an attempt succeeds with ``1 - internet.temp_fail_prob`` (at a
  fallback MX: ``retry_success_prob``) after the Internet link and the remote
  MTA's time; a failure costs one round trip and the remote MTA's time.
- A failed attempt goes to the tier's ``fallback`` (the delivery slot held
  until the fallback's 250); without one the message is *deferred*: it waits
  on Postfix's schedule (``RetrySchedule``) and queues again, or bounces when
  it is older than ``max_queue_lifetime_s`` at a failed attempt.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from mailgate.sim.model.engine import Scheduler
from mailgate.sim.model.hosts import Host, Msg
from mailgate.sim.model.links import Links
from mailgate.sim.model.outcomes import Outcomes
from mailgate.sim.model.routing import Router
from mailgate.sim.model.statistics import Statistics
from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.mta import Retry


class RetrySchedule:
    """Postfix's deferred queue: backoff doubling, attempts at queue runs, bounce when old."""

    def __init__(self, retry: Retry) -> None:
        self.minimal = retry.minimal_backoff_s
        self.maximal = retry.maximal_backoff_s
        self.run_every = retry.queue_run_delay_s
        self.lifetime = retry.max_queue_lifetime_s

    def expired(self, queued_at: float, now: float) -> bool:
        """A message queued at ``queued_at`` that fails at ``now`` bounces."""
        return now - queued_at >= self.lifetime

    def backoff(self, previous: float) -> float:
        """The backoff after a failure (``previous``: the last one, 0 for none yet)."""
        return self.minimal if previous <= 0 else min(2 * previous, self.maximal)

    def next_run(self, now: float, backoff: float) -> float:
        """The first queue run (a multiple of the run delay) at or after ``now + backoff``."""
        return math.ceil((now + backoff) / self.run_every - 1e-9) * self.run_every


def _unconnected(*_: object) -> None:
    raise RuntimeError("RemoteDelivery.wire() was not called")


class RemoteDelivery:
    """Attempts to the recipients' MX hosts on the Internet, and the deferred queues."""

    def __init__(
        self,
        scenario: Scenario,
        sched: Scheduler,
        links: Links,
        router: Router,
        *,
        choices: Callable[[], float],
        remote_mta: Callable[[], float],
        stats: Statistics,
        outcomes: Outcomes,
    ) -> None:
        s = self.s = scenario
        self.sched = sched
        self.links = links
        self.router = router
        self.u = choices
        self.remote_mta = remote_mta
        self.stats = stats
        self.outcomes = outcomes
        self.schedule = RetrySchedule(s.retry)
        names = [d.name for d in s.internet.domains]
        self.outages = [
            (names.index(o.domain), o.start_h * 3600.0, (o.start_h + o.duration_h) * 3600.0)
            for o in s.failures.remote_outage
        ]
        #: messages waiting in a deferred queue for their next attempt, by id
        self.deferred: dict[int, Msg] = {}
        #: called with (m, now) at every attempt (tests and probes watch the schedule)
        self.watchers: list[Callable[[Msg, float], None]] = []
        #: a deferred message's next attempt: back into its host's queue
        self.requeue: Callable[[Msg], None] = _unconnected

    def wire(self, *, requeue: Callable[[Msg], None]) -> None:
        """Wire where a deferred message goes when its retry is due."""
        self.requeue = requeue

    def outage(self, domain: int, now: float) -> bool:
        """Is ``domain`` unreachable at ``now``?"""
        return any(d == domain and a <= now < b for d, a, b in self.outages)

    def attempt(self, m: Msg) -> None:
        """``m``'s host (holding a delivery slot) tries the recipient's MX."""
        host = m.host
        assert host is not None
        now = self.sched.now
        m.attempts += 1
        for watch in self.watchers:
            watch(m, now)
        tier = self.s.tiers[host.tier]
        if m.domain >= 0 and self.outages:
            if host.dead.get(m.domain, -1.0) > now:
                m.caught = True
                self._failed(m)  # site throttled: deferred without an attempt
                return
            if self.outage(m.domain, now):
                m.caught = True
                self.sched.after(tier.connect_timeout_s, self._dead, m)
                return
        fallback_role = tier.role == "fallback_mx"
        inet = self.s.internet
        p_ok = inet.retry_success_prob if fallback_role else 1 - inet.temp_fail_prob
        if self.u() < p_ok:
            self.sched.after(self.links.internet(m) + self.remote_mta(), self._ok, m)
        else:
            self.sched.after(self.s.network.internet_rtt_s + self.remote_mta(), self._failed, m)

    def _dead(self, m: Msg) -> None:
        """The connection timed out: like Postfix's queue manager, throttle the site.

        Until ``retry.minimal_backoff_s`` from now, mail for that domain on
        this host fails at once instead of holding a delivery slot through
        another connect timeout (qmgr_queue_throttle / "delivery temporarily
        suspended").
        """
        host = m.host
        assert host is not None
        host.dead[m.domain] = self.sched.now + self.s.retry.minimal_backoff_s
        self._failed(m)

    def _ok(self, m: Msg) -> None:
        host = m.host
        assert host is not None
        now = self.sched.now
        m.remote = now
        m.sender = None
        if m.counted:
            self.stats.span(m.flow, "sent_to_remote", now - m.sent)
        host.delivery.release(m)
        self.outcomes.finish(host, m, "delivered", outcome="remote")

    def _failed(self, m: Msg) -> None:
        host = m.host
        assert host is not None
        fallback = self.router.fallback(host.tier)
        if not m.deferred:
            m.deferred = True
            if m.counted:
                self.stats.first_deferral(m)
        if fallback:
            # the slot is held until the fallback says 250
            self.router.connect(m, fallback, self.links.lan(m))
            return
        m.sender = None
        host.delivery.release(m)
        self._defer(host, m)

    def _defer(self, host: Host, m: Msg) -> None:
        """Into the deferred queue until the next due queue run, or bounce when too old."""
        now = self.sched.now
        if self.schedule.expired(m.queued_at, now):
            self.outcomes.finish(host, m, "bounced")
            return
        m.backoff = self.schedule.backoff(m.backoff)
        run = self.schedule.next_run(now, m.backoff)
        host.stats.deferred.add(now, 1)
        self.stats.deferred_total.add(now, 1)
        self.deferred[m.id] = m
        self.sched.after(run - now, self._retry, m)

    def _retry(self, m: Msg) -> None:
        host = m.host
        assert host is not None
        now = self.sched.now
        host.stats.deferred.add(now, -1)
        self.stats.deferred_total.add(now, -1)
        del self.deferred[m.id]
        self.requeue(m)
