"""Where a relay's queue manager sends a message: the next tier's twins in the
tier's ``balance`` order, or each recipient domain's MX hosts; and how the host
that took it is named in the trace (as the model names hosts)."""

from __future__ import annotations

import random

from mailgate.realnet.relay.config import RelayConfig
from mailgate.realnet.relay.message import domain_of
from mailgate.realnet.relay.mx import MxResolver
from mailgate.realnet.relay.smtpclient import SmtpError
from mailgate.realnet.relay.spool import SpoolEntry
from mailgate.sim.scenario.records import HopRecord


class Router:
    """The routes of one relay (its round-robin position and MX resolver are state)."""

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self._mx: MxResolver | None = None
        self._rr = 0

    def start(self) -> None:
        """Inside the running loop: the MX resolver."""
        if self.config.dns:
            self._mx = MxResolver(self.config.dns)

    async def routes(
        self, entry: SpoolEntry, rcpts: list[str], record: HopRecord | None
    ) -> tuple[list[tuple[list[str], list[str]]], dict[str, SmtpError]]:
        """Where the recipients go: (hosts to try in order, recipients) groups — the next
        tier's twins, or each recipient domain's MX hosts — and the recipients whose
        domain's lookup failed permanently, with the error.

        A DSN made on this host (``entry.dsn``) goes to the next tier only for our own
        domains (the way mail to them goes from here); to anyone else it goes by the MX
        of the recipient's domain, as Postfix's bounce goes through that host's own smtp
        transport: a tier's next hop (the mailbox server behind Gateway1) would refuse to
        relay it (issue #16)."""
        c = self.config
        groups: list[tuple[list[str], list[str]]] = []
        if c.next_hop:
            if not entry.dsn:
                return [(self.ordered(c.next_hop), rcpts)], {}
            ours = [r for r in rcpts if domain_of(r) in c.local_domains]
            if ours:
                groups.append((self.ordered(c.next_hop), ours))
            rcpts = [r for r in rcpts if r not in ours]
        by_domain: dict[str, list[str]] = {}
        for r in rcpts:
            by_domain.setdefault(domain_of(r), []).append(r)
        failed: dict[str, SmtpError] = {}
        for domain, group in by_domain.items():
            try:
                groups.append((await self._mx_hosts(domain, record), group))
            except SmtpError as e:
                if e.permanent:
                    failed.update(dict.fromkeys(group, e))
                else:
                    groups.append(([], group))  # no hosts: pending, retried
        return groups, failed

    async def _mx_hosts(self, domain: str, record: HopRecord | None) -> list[str]:
        if self._mx is None:
            raise SmtpError(451, "no resolver configured")
        return await self._mx.hosts(domain, record)

    def ordered(self, addresses: tuple[str, ...]) -> list[str]:
        """The twin hosts in the order to try them (balance, then failover)."""
        hosts = list(addresses)
        if self.config.balance == "round_robin":
            self._rr += 1
            k = self._rr % len(hosts)
            return hosts[k:] + hosts[:k]
        random.shuffle(hosts)
        return hosts

    def hop_name(self, address: str) -> str:
        """Our host's id for an address we delivered to; "" for the rest of the Internet."""
        known = self.config.host_ids
        if address in known:
            return known[address]
        if address in self.config.next_hop:  # without an address map: the configured tier
            return self.config.next_hop_name
        return ""  # not one of ours: a remote MX
