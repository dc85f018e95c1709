"""The end of a visit and the end of a message: housekeeping, host tallies, records, counts.

``Outcomes.left`` is called when a message's visit at a host ends (handed
on, filed, refused): the host's housekeeping CPU, its Little's-law tallies
and the hop record. ``Outcomes.finish`` gives a message its terminal outcome
(``delivered``, ``rejected``, ``quarantined``, ``bounced``): the counts and
the message record.
"""

from __future__ import annotations

from collections.abc import Callable

from mailgate.sim.model.engine import Scheduler
from mailgate.sim.model.hosts import Host, Msg
from mailgate.sim.model.statistics import Statistics
from mailgate.sim.scenario.records import HopRecord, MessageRecord

Trace = Callable[[HopRecord | MessageRecord], None]


class Outcomes:
    """Where visits and messages end; reports to ``stats`` and to the ``trace``."""

    def __init__(self, sched: Scheduler, stats: Statistics, trace: Trace | None) -> None:
        self.sched = sched
        self.stats = stats
        self.warm = stats.window.warm
        self.trace = trace
        #: told of every counted delivery when the scenario has failures (``FailureWatch``)
        self.on_delivered: Callable[[Msg, float], None] | None = None

    def left(
        self, host: Host, m: Msg, entered: float, hop: HopRecord | None, outcome: str, nxt: str
    ) -> None:
        """``m``'s visit at ``host`` ended: statistics, the hop record, housekeeping."""
        now = self.sched.now
        if host.chore is not None:
            host.housekeep(m.size)
        st = host.stats
        st.in_host.add(now, -1)
        if now >= self.warm:
            st.sojourn += now - max(entered, self.warm)
            st.left += 1
        if hop is not None and self.trace is not None:
            hop.left = now
            hop.outcome = outcome
            hop.next_hop = nxt
            self.trace(hop)

    def finish(self, host: Host | None, m: Msg, result: str, outcome: str = "") -> None:
        """A terminal outcome at ``host`` (None: after leaving every host)."""
        if host is not None:
            self.left(host, m, m.entered, m.hop, outcome or result, "")
        if m.counted:
            self.stats.finished(m, result)
            if result == "delivered" and self.on_delivered is not None:
                self.on_delivered(m, self.sched.now)
        if self.trace is not None:
            self.trace(
                MessageRecord(
                    f"m{m.id}",
                    m.flow,
                    m.size,
                    m.sent,
                    accepted=m.accepted if m.accepted >= 0 else None,
                    in_mailbox=m.in_mailbox if m.in_mailbox >= 0 else None,
                    remote=m.remote if m.remote >= 0 else None,
                    outcome=outcome or result,
                )
            )
