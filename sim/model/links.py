"""The network between hosts: link delays and DNS lookup times.

A link costs its round trip plus the message's size over its bandwidth; a
DNS lookup costs a draw of ``network.dns_s``, plus any ``failures.dns_slow``
extra while one is on.
"""

from __future__ import annotations

from collections.abc import Callable

from mailgate.sim.model.engine import Scheduler
from mailgate.sim.model.hosts import Msg
from mailgate.sim.scenario import Scenario


class Links:
    """Delays of the LAN, the Internet and DNS for one scenario."""

    def __init__(self, scenario: Scenario, sched: Scheduler, dns: Callable[[], float]) -> None:
        self.net = scenario.network
        self.sched = sched
        self.dns = dns
        self.dns_slow = [
            (d.start_h * 3600.0, (d.start_h + d.duration_h) * 3600.0, d.extra_s)
            for d in scenario.failures.dns_slow
        ]

    def dns_time(self, lookups: int) -> float:
        """Seconds that ``lookups`` DNS lookups take now."""
        t = 0.0
        for _ in range(lookups):
            t += self.dns()
        if self.dns_slow:
            now = self.sched.now
            for start, end, extra in self.dns_slow:
                if start <= now < end:
                    t += extra * lookups
        return t

    def lan(self, m: Msg) -> float:
        """Sending ``m`` to the next host in the data centre."""
        n = self.net
        return n.lan_rtt_s + m.size * 8192.0 / (n.lan_mbps * 1e6)

    def internet(self, m: Msg) -> float:
        """Sending ``m`` over the Internet (from a client, or to a remote MTA)."""
        n = self.net
        return n.internet_rtt_s + m.size * 8192.0 / (n.internet_mbps * 1e6)

    def refused(self, from_relay: bool) -> float:
        """A live machine with a dead MTA answers the SYN with a RST: one round trip."""
        return self.net.lan_rtt_s if from_relay else self.net.internet_rtt_s
