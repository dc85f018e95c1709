"""Each host's outgoing queue: waiting for a delivery slot, the delivery plan, the hand-off.

An accepted message waits for a delivery slot (``sim.model.slots``: one of its
destination's within the host's total), runs the delivery plan (``mx_lookup``,
``deliver``) and is handed to
the next tier (``Router.connect``, the slot held until that host's 250) or
to the Internet (``RemoteDelivery.attempt``). A host that is down keeps its
spool: messages queued there are *parked* until it comes back up
(``host_down`` / ``host_up``, scheduled from ``failures.host_down``).
"""

from __future__ import annotations

from collections.abc import Callable

from mailgate.sim.model.hosts import Host, Msg
from mailgate.sim.model.links import Links
from mailgate.sim.model.plans import Plans
from mailgate.sim.model.routing import Router


def _unconnected(*_: object) -> None:
    raise RuntimeError("Queues.wire() was not called")


class Queues:
    """The delivery side of every host, and the mail parked on hosts that are down."""

    def __init__(self, plans: Plans, router: Router, links: Links, hosts: dict[str, Host]) -> None:
        self.plans = plans
        self.router = router
        self.links = links
        #: per host id: messages waiting for the host to come back up
        self.parked: dict[str, list[Msg]] = {h: [] for h in hosts}
        #: a message leaves for the Internet: ``remote(m)`` (its delivery slot is held)
        self.remote: Callable[[Msg], None] = _unconnected
        self._c_deliver = self._deliver
        self._c_delivered_plan = self._delivered_plan

    def wire(self, *, remote: Callable[[Msg], None]) -> None:
        """Wire where mail for the Internet goes."""
        self.remote = remote

    def enqueue(self, m: Msg) -> None:
        """Wait for one of the host's delivery slots."""
        host = m.host
        assert host is not None
        if not host.up:
            m.caught = True
            self.parked[host.id].append(m)
            return
        host.delivery.acquire(self._c_deliver, m)

    def _deliver(self, m: Msg) -> None:
        host = m.host
        assert host is not None
        if not host.up:  # died while we waited: keep the message for its recovery
            host.delivery.release(m)
            m.caught = True
            self.parked[host.id].append(m)
            return
        host.run(m, self.plans.deliver[host.tier], self._c_delivered_plan)

    def _delivered_plan(self, m: Msg) -> None:
        host = m.host
        assert host is not None
        host.handed_on(m)
        nxt = self.router.next_tier(m, host)
        m.sender = host
        if nxt is not None:
            self.router.connect(m, nxt, self.links.lan(m))
        else:
            self.remote(m)

    def host_down(self, arg: tuple[Host, bool]) -> None:
        """The host stops (``refuses``: its machine still answers connections with a RST)."""
        host, host.refuses = arg
        host.up = False

    def host_up(self, host: Host) -> None:
        """The host is back: its parked mail queues again, in the order it was parked."""
        host.up = True
        parked, self.parked[host.id] = self.parked[host.id], []
        for m in parked:
            self.enqueue(m)
