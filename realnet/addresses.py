"""Where everything lives on loopback: one address (and DNS name) per host, all in
127.0.0.0/8.

Tier number N is the tier's position in ``scenario.tiers`` (gateway0..4, then
the mailbox server); host k of tier N binds ``PREFIX.N.(k+1)``. The remote
Internet gets its own addresses so SPF sees real client addresses:
remote domain i's MX sink is ``PREFIX.(100+i).1`` and its senders connect
from ``PREFIX.(200+i).1``; every other remote domain shares
``OTHER_DOMAIN``'s sink and sender. PCs (the load generator, the probe)
connect from ``PREFIX.250.1``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.topology import MAILBOX

#: The remote domain standing for "the rest of the Internet".
OTHER_DOMAIN = "elsewhere.example"


@dataclass(frozen=True)
class Endpoint:
    """An address and port on loopback."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class AddressPlan:
    """The loopback address of every host, sink and sender in a scenario."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.prefix = scenario.realnet.address_prefix
        self.tier_numbers = {name: n for n, name in enumerate(scenario.tiers)}
        for address in (self.host_address(scenario.host_ids[-1]), self.pc_address):
            if not ipaddress.ip_address(address).is_loopback:
                raise ValueError(f"realnet.address_prefix {self.prefix!r} is not in 127.0.0.0/8")

    def host_address(self, host_id: str) -> str:
        """``gateway1.0`` → ``127.25.1.1``."""
        tier, index = host_id.rsplit(".", 1)
        return f"{self.prefix}.{self.tier_numbers[tier]}.{int(index) + 1}"

    def tier_addresses(self, tier: str) -> list[str]:
        hosts = self.scenario.tiers[tier].hosts
        return [self.host_address(f"{tier}.{k}") for k in range(len(hosts))]

    def smtp(self, host_id: str) -> Endpoint:
        return Endpoint(self.host_address(host_id), self.scenario.realnet.smtp_port)

    @property
    def remote_domains(self) -> list[str]:
        return [d.name for d in self.scenario.internet.domains] + [OTHER_DOMAIN]

    def remote_mx_address(self, domain: str) -> str:
        return f"{self.prefix}.{100 + self.remote_domains.index(domain)}.1"

    def remote_sender_address(self, domain: str) -> str:
        return f"{self.prefix}.{200 + self.remote_domains.index(domain)}.1"

    @property
    def pc_address(self) -> str:
        return f"{self.prefix}.250.1"

    @property
    def dns(self) -> Endpoint:
        return Endpoint(self.scenario.realnet.dns_address, self.scenario.realnet.dns_port)

    def table(self) -> list[tuple[str, str]]:
        """(name, address) rows for the address map ``realnet up`` prints."""
        rows = [(h, self.host_address(h)) for h in self.scenario.host_ids]
        rows += [(f"mx of {d}", self.remote_mx_address(d)) for d in self.remote_domains]
        rows += [(f"senders of {d}", self.remote_sender_address(d)) for d in self.remote_domains]
        rows += [("PCs", self.pc_address), ("DNS", str(self.dns))]
        return rows


def host_label(plan: AddressPlan, host_id: str) -> str:
    """``gateway0.1`` → ``gw0-2``; mailbox hosts are ``mbox-1``, ...: the host's DNS label."""
    tier, index = host_id.rsplit(".", 1)
    if tier == MAILBOX:
        return f"mbox-{int(index) + 1}"
    return f"gw{plan.tier_numbers[tier]}-{int(index) + 1}"


def host_name(plan: AddressPlan, host_id: str, domain: str | None = None) -> str:
    """The host's fully qualified name (HELO name) under ``domain`` (default: our first)."""
    domain = domain or plan.scenario.population.domains[0]
    return f"{host_label(plan, host_id)}.{domain}"


def remote_mx_name(domain: str) -> str:
    """The MX host name published for a remote domain."""
    return f"mx.{domain}"


def remote_sender_name(domain: str) -> str:
    """The HELO name of a remote domain's sending MTA."""
    return f"mta.{domain}"
