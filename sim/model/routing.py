"""Routing: which tier comes next, which twin of a tier, and what a dead twin costs.

Small decision objects, apart from the hosts they choose among:

- ``TwinChoice`` per tier: the host a sender tries first (``balance``:
  ``round_robin`` keeps one counter per tier, ``mx_random`` draws uniformly;
  a tier of one host draws nothing).
- ``Router.next_tier``: after a host's delivery plan, the next tier on the
  path, ``scenario.mx`` for internal mail leaving for the Internet, or None:
  the Internet (``sim.model.remote``). ``Router.fallback`` is a tier's
  fallback MX.
- ``Router.connect``: the sender opens a session at a tier. A dead host costs
  the sender ``connect_timeout_s`` (or one round trip when its machine
  refuses) before it tries the next; when all are dead a relay frees its
  delivery slot and requeues the message after ``retry.queue_run_delay_s``,
  an outside client reconnects then.
"""

from __future__ import annotations

from collections.abc import Callable

from mailgate.sim.model.engine import Scheduler
from mailgate.sim.model.hosts import Host, Msg
from mailgate.sim.model.links import Links
from mailgate.sim.model.stats import Level
from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.topology import INTERNET


class TwinChoice:
    """The index of the host a sender tries first at one tier."""

    def __init__(self, balance: str, hosts: int, choices: Callable[[], float]) -> None:
        self.balance = balance
        self.hosts = hosts
        self.u = choices
        self.counter = 0  # round robin: connections so far

    def first(self) -> int:
        n = self.hosts
        if n == 1:
            return 0
        if self.balance == "round_robin":
            first = self.counter % n
            self.counter += 1
            return first
        return int(self.u() * n)


def _unconnected(*_: object) -> None:
    raise RuntimeError("Router.wire() was not called")


class Router:
    """Connections between tiers, with twin failover."""

    def __init__(
        self,
        scenario: Scenario,
        sched: Scheduler,
        tiers: dict[str, list[Host]],
        links: Links,
        choices: Callable[[], float],
    ) -> None:
        self.s = scenario
        self.sched = sched
        self.tiers = tiers
        self.links = links
        self.choice = {
            name: TwinChoice(scenario.tiers[name].balance, len(hosts), choices)
            for name, hosts in tiers.items()
        }
        #: the connection reached a live host: ``arrive((m, host))``
        self.arrive: Callable[[tuple[Msg, Host]], None] = _unconnected
        #: every host was dead: the sending relay puts ``m`` back in its queue
        self.requeue: Callable[[Msg], None] = _unconnected
        #: the fleet's deferred queue (a message waiting out an unreachable tier is in it)
        self.deferred_total: Level | None = None

    def wire(
        self,
        *,
        arrive: Callable[[tuple[Msg, Host]], None],
        requeue: Callable[[Msg], None],
        deferred_total: Level | None = None,
    ) -> None:
        """Wire where connections end: at a host, or back in the sender's queue."""
        self.arrive = arrive
        self.requeue = requeue
        self.deferred_total = deferred_total

    def next_tier(self, m: Msg, host: Host) -> str | None:
        """Where ``m`` goes from ``host`` after its delivery plan (None: the Internet)."""
        nxt = self.s.tiers[host.tier].next_hop
        if nxt != INTERNET:
            return nxt
        if m.flow == "internal":
            return self.s.mx
        return None

    def fallback(self, tier: str) -> str:
        """The tier that takes over a failed Internet delivery from ``tier`` ("" if none)."""
        return self.s.tiers[tier].fallback

    def connect(self, m: Msg, tier: str, link: float) -> None:
        """The sender (m.sender, or an outside client) opens a session at ``tier``."""
        m.target = tier
        m.tries = 0  # hosts tried so far
        m.pick = self.choice[tier].first()  # the host to try next
        self._try(m, link)

    def _try(self, m: Msg, link: float) -> None:
        hosts = self.tiers[m.target]
        host = hosts[m.pick % len(hosts)]
        if host.up:
            self.sched.after(link, self.arrive, (m, host))
            return
        m.tries += 1
        m.caught = True
        if host.refuses:
            timeout = self.links.refused(from_relay=m.sender is not None)
        else:
            timeout = self.s.tiers[m.target].connect_timeout_s
        if m.tries < len(hosts):
            m.pick += 1
            self.sched.after(timeout, self._retry_twin, (m, link))
        else:
            self.sched.after(timeout, self._unreachable, (m, link))

    def _retry_twin(self, arg: tuple[Msg, float]) -> None:
        self._try(*arg)

    def _unreachable(self, arg: tuple[Msg, float]) -> None:
        """Every host of the tier is down: the sender retries after a queue run delay.

        A relay frees its delivery slot and requeues the message (it stays in
        its spool); an outside client (Internet sender, PC) just tries again.
        """
        m, link = arg
        delay = self.s.retry.queue_run_delay_s
        sender = m.sender
        if sender is None:
            self.sched.after(delay, self._reconnect, (m, link))
            return
        m.sender = None
        sender.delivery.release(m)
        # Postfix moves it to the deferred queue: count it there until the queue run
        self._deferred(sender, 1)
        self.sched.after(delay, self._requeue_deferred, (m, sender))

    def _requeue_deferred(self, arg: tuple[Msg, Host]) -> None:
        m, sender = arg
        self._deferred(sender, -1)
        self.requeue(m)

    def _deferred(self, host: Host, change: int) -> None:
        now = self.sched.now
        host.stats.deferred.add(now, change)
        if self.deferred_total is not None:
            self.deferred_total.add(now, change)

    def _reconnect(self, arg: tuple[Msg, float]) -> None:
        m, link = arg
        self.connect(m, m.target, link)
