"""A message's visit at a host, from its connection to the 250 (or its refusal).

The connection waits for a session slot, then the host runs the receive plan
(a PC's submission at the mailbox server, else the tier's receive stages).
After each stage ``after_stage`` gives the verdict: spam failing SPF is
rejected after ``spf``; infected mail is marked for quarantine after
``antivirus`` (the rest of the plan, the spool, still runs). Mail to an unknown
recipient is refused at the MX after the SMTP dialogue alone (``Plans.rcpt``:
no DATA, no later stage). At the 250 the
sender's delivery ends; the message is then quarantined, filed in the
mailboxes (at the mailbox server, relayed) or queued for the next hop.
"""

from __future__ import annotations

from collections.abc import Callable

from mailgate.sim.model.engine import Scheduler
from mailgate.sim.model.hosts import Host, Msg
from mailgate.sim.model.outcomes import Outcomes
from mailgate.sim.model.plans import Plans
from mailgate.sim.model.statistics import Statistics
from mailgate.sim.scenario.records import HopRecord
from mailgate.sim.scenario.topology import MAILBOX


def _unconnected(*_: object) -> None:
    raise RuntimeError("Visits.wire() was not called")


class Visits:
    """Sessions at hosts: the receive plan, the verdicts, the 250 and the hand-off."""

    def __init__(
        self,
        sched: Scheduler,
        plans: Plans,
        outcomes: Outcomes,
        stats: Statistics,
        *,
        trace: bool,
    ) -> None:
        self.sched = sched
        self.plans = plans
        self.outcomes = outcomes
        self.stats = stats
        self.trace = trace
        #: where an accepted message goes: its copies into the mailboxes (at ``now``) ...
        self.file: Callable[[Msg, float], None] = _unconnected
        #: ... or the host's queue for the next hop
        self.queue: Callable[[Msg], None] = _unconnected
        self._c_session = self._session
        self._c_received = self._received
        self._c_refused = self._refused

    def wire(self, *, file: Callable[[Msg, float], None], queue: Callable[[Msg], None]) -> None:
        """Wire the two places an accepted message goes."""
        self.file = file
        self.queue = queue

    def arrive(self, arg: tuple[Msg, Host]) -> None:
        """The connection of ``m`` reached ``host``: it waits for a session slot."""
        m, host = arg
        now = self.sched.now
        m.host = host
        m.entered_prev = m.entered
        m.entered = now
        m.responded = False
        host.stats.in_host.add(now, 1)
        if self.trace:
            m.hop_prev = m.hop
            m.hop = HopRecord(f"m{m.id}", m.flow, host.id, m.size, arrived=now)
        host.sessions.acquire(self._c_session, m)

    def _session(self, m: Msg) -> None:
        host = m.host
        assert host is not None
        if m.unknown and m.sender is None and host.tier != MAILBOX:
            # the MX refuses the recipient at RCPT (550 5.1.1): the dialogue, no DATA
            host.run(m, self.plans.rcpt[host.tier], self._c_refused)
            return
        if host.tier == MAILBOX and m.sender is None:
            plan = self.plans.submit  # a PC submitting
        else:
            plan = self.plans.recv[host.tier]
        host.run(m, plan, self._c_received)

    def after_stage(self, host: Host, m: Msg, stage: str) -> bool:
        """After a stage: False if the message's visit ended there (rejected)."""
        if stage == "spf" and m.spf_fail:
            host.handed_on(m)
            self._end_session(host, m)
            self.outcomes.finish(host, m, "rejected")
            return False
        if stage == "antivirus" and m.virus:
            m.outcome = "quarantined"  # the rest of the receive plan still runs (spool)
        return True

    def _refused(self, m: Msg) -> None:
        """The host refused ``m``'s only recipient: the session ends, nothing is accepted."""
        host = m.host
        assert host is not None
        host.handed_on(m)
        self._end_session(host, m)
        self.outcomes.finish(host, m, "rejected")

    def _received(self, m: Msg) -> None:
        """The host answers 250: the message is durable here."""
        host = m.host
        assert host is not None
        now = self.sched.now
        if m.accepted < 0:
            m.accepted = now
            if m.counted:
                self.stats.span(m.flow, "sent_to_accepted", now - m.sent)
        if m.hop is not None:
            m.hop.accepted = now
        final = host.tier == MAILBOX and m.sender is not None  # relayed to the mailbox server
        self._end_session(host, m)  # (clears m.sender)
        if m.outcome == "quarantined" or final:
            host.handed_on(m)
        if m.outcome == "quarantined":
            self.outcomes.finish(host, m, "quarantined")
        elif final:
            m.in_mailbox = now
            if m.counted:
                self.stats.span(m.flow, "accepted_to_mailbox", now - m.accepted)
            self.file(m, now)
            self.outcomes.finish(host, m, "delivered", outcome="mailbox")
        else:
            m.queued_at = now
            m.backoff = 0.0
            self.queue(m)

    def _end_session(self, host: Host, m: Msg) -> None:
        """Free the session slot; the sender's delivery ends with our answer."""
        host.sessions.release()
        sender = m.sender
        if sender is not None:
            m.sender = None
            self.outcomes.left(sender, m, m.entered_prev, m.hop_prev, "relayed", host.id)
            sender.delivery.release(m)
