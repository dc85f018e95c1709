"""The five gateways as policies and configurations of the relay core.

- Gateway0 (``inbound_auth``): recipients of our domains checked at RCPT
  against the mailbox server's users (550 5.1.1, like Postfix's
  ``relay_recipient_maps``), SPF on the connecting address (fail → 550,
  temperror → 451), DKIM verification of every signature, an
  ``Authentication-Results:`` header; relays to Gateway1.
- Gateway1 (``inbound_av``): antivirus (infected → quarantine folder, the
  sender sees 250), routing to the mailbox server.
- Gateway2 (``outbound_av``): antivirus on outgoing mail.
- Gateway3 (``outbound_sign``): DKIM signing of mail that came through
  authenticated submission (``realnet.relay.headers``), lines over 998 bytes
  broken before signing, MX lookup, delivery; what it cannot deliver goes to
  its fallback tier (Gateway4).
- Gateway4 (``fallback_mx``): accepts from Gateway3's hosts only, retries on
  the ``[retry]`` schedule.

pyspf and dkimpy are synchronous, so every check runs in the relay's thread
pool (``Incoming.stage``), off the event loop. Which policy a tier gets comes
from its ``role``, so a scenario may rename or add tiers.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from mailgate.realnet.addresses import AddressPlan, host_name
from mailgate.realnet.relay.authresults import strip_forged_results
from mailgate.realnet.relay.config import (
    SMTP_LINE_LENGTH_LIMIT,
    RelayConfig,
    upstream,
    upstream_hosts,
)
from mailgate.realnet.relay.headers import (
    SUBMITTED_HEADER,
    drop_header,
    is_submitted,
    wrap_long_lines,
)
from mailgate.realnet.relay.message import domain_of
from mailgate.realnet.relay.policy import Incoming, Policy, Verdict
from mailgate.realnet.relay.relay import Relay
from mailgate.realnet.testbed.mailbox_server import UNKNOWN_RELAY, KnownUsers, mailbox_users
from mailgate.sim.scenario import Scenario

#: SPF verdicts that refuse the message before the 250 (docs/topology.md: fail → 550).
SPF_REPLIES = {
    "fail": "550 5.7.23 SPF check failed: {explanation}",
    "temperror": "451 4.7.24 SPF temporary error, try again later",
    "permerror": None,  # a broken record is not the sender's fault alone: accept, label it
}


class InboundAuthPolicy(Policy):
    """Gateway0: recipients checked against the mailbox server's users (when given),
    SPF and DKIM verification, then an Authentication-Results header."""

    def __init__(
        self,
        authserv_id: str,
        resolver: Any,
        domains: frozenset[str] = frozenset(),
        recipients: Policy | None = None,
    ):
        self.authserv_id = authserv_id
        self.resolver = resolver
        self.domains = domains
        #: the relay recipient table: refuses unknown users of our domains at RCPT
        self.recipients = recipients

    async def check_rcpt(self, msg: Incoming, address: str) -> str | None:
        if self.recipients is None:
            return None
        return await self.recipients.check_rcpt(msg, address)

    async def check(self, msg: Incoming) -> Verdict | None:
        from mailgate.realnet.services.checks import authentication_results, check_spf, verify_dkim

        spf = await msg.stage(
            "spf", check_spf, self.resolver, msg.client_ip, msg.mail_from, msg.helo
        )
        template = SPF_REPLIES.get(spf[0])
        if template:
            return Verdict.reject(template.format(explanation=spf[1] or spf[0]))
        msg.data = strip_forged_results(msg.data, self.domains)
        # only our submission service may mark mail as submitted (Gateway3 signs by it)
        msg.data = drop_header(msg.data, SUBMITTED_HEADER)
        dkim_results = await msg.stage("dkim_verify", verify_dkim, msg.data, self.resolver)
        value = authentication_results(
            self.authserv_id,
            spf,
            dkim_results,
            mail_from=msg.mail_from,
            helo=msg.helo,
            client_ip=msg.client_ip,
        )
        msg.prepend.append(f"Authentication-Results: {value}\r\n".encode())
        return None


class AntivirusPolicy(Policy):
    """Gateway1 and Gateway2: scan; infected mail goes to the quarantine folder."""

    def __init__(self, scanner: Any, *, routing: bool) -> None:
        self.scanner = scanner
        self.routing = routing

    async def check(self, msg: Incoming) -> Verdict | None:
        virus = await msg.stage("antivirus", self.scanner.scan, msg.data)
        if virus:
            return Verdict.quarantine(f"virus {virus}")
        if self.routing:
            # one mailbox server: routing is a table lookup, recorded for the model's "route"
            t0 = time.time()
            msg.add_span("route", t0, time.time())
        return None


class SignPolicy(Policy):
    """Gateway3: DKIM-sign mail of our domains that came through authenticated
    submission (``X-Mailgate-Submitted``, set by the mailbox server only); lines too
    long for SMTP are broken first, so the signature covers what is sent."""

    def __init__(self, key: Any, domains: frozenset[str]) -> None:
        self.key = key
        self.domains = domains

    async def check(self, msg: Incoming) -> Verdict | None:
        from mailgate.realnet.services.checks import sign_dkim

        submitted = is_submitted(msg.data)
        # the mark is ours: it does not leave the chain
        msg.data = wrap_long_lines(drop_header(msg.data, SUBMITTED_HEADER), SMTP_LINE_LENGTH_LIMIT)
        if submitted and domain_of(msg.mail_from) in self.domains:
            msg.data = await msg.stage("dkim_sign", sign_dkim, msg.data, self.key)
        return None


def _networks(addresses: list[str]) -> tuple[ipaddress.IPv4Network, ...]:
    return tuple(ipaddress.IPv4Network(f"{a}/32") for a in addresses)


def build_gateway(
    scenario: Scenario,
    plan: AddressPlan,
    host_id: str,
    state_dir: Path,
    *,
    resolver: Any = None,
    dkim_key: Any = None,
    scanner: Any = None,
) -> Relay:
    """The relay of one gateway host, with its role's policy."""
    from mailgate.realnet.services.dnsserver import make_resolver

    tier_name = host_id.rsplit(".", 1)[0]
    tier = scenario.tiers[tier_name]
    role = tier.role
    if role in ("inbound_auth", "fallback_mx") and resolver is None:
        resolver = make_resolver(plan.dns.host, plan.dns.port)
    if role in ("inbound_av", "outbound_av") and scanner is None:
        from mailgate.realnet.services.antivirus import make_scanner

        scanner = make_scanner(scenario)
    if role == "outbound_sign" and dkim_key is None:
        from mailgate.realnet.services.keys import DkimKey

        dkim_key = DkimKey.load(state_dir / "dkim")
    ups = upstream(scenario, plan, tier_name)
    # who may connect at all, who may relay to any domain (empty: anybody, nobody)
    allowed: tuple[ipaddress.IPv4Network, ...] = ()
    relaying: tuple[ipaddress.IPv4Network, ...] = ()
    policy: Policy
    if role == "inbound_auth":
        # our MX: anybody may send to our domains, nobody may relay through it; it knows
        # the mailbox server's users, as Postfix's relay_recipient_maps publishes them
        domains = frozenset(d.lower() for d in scenario.population.domains)
        table = KnownUsers(mailbox_users(scenario), domains, UNKNOWN_RELAY)
        policy = InboundAuthPolicy(host_name(plan, host_id), resolver, domains, table)
    elif role == "inbound_av":
        policy = AntivirusPolicy(scanner, routing=True)
        allowed = _networks(ups)
    elif role == "outbound_av":
        policy = AntivirusPolicy(scanner, routing=False)
        allowed = relaying = _networks(ups)
    elif role == "outbound_sign":
        policy = SignPolicy(dkim_key, frozenset(d.lower() for d in scenario.population.domains))
        allowed = relaying = _networks(ups)
    elif role == "fallback_mx":
        policy = Policy()
        allowed = relaying = _networks(ups)
    else:
        raise ValueError(f"{host_id}: role {role!r} is not a gateway")
    from mailgate.realnet.testbed.tls import relay_tls

    config = replace(
        RelayConfig.from_scenario(scenario, plan, host_id, state_dir),
        allowed_clients=allowed,
        relay_clients=relaying,
        # our MX offers STARTTLS; a tier fed by our own tiers only requires it, and a
        # certificate of a host of its upstream (mutual TLS: our hops authenticate each other)
        **relay_tls(
            scenario,
            plan,
            host_id,
            state_dir,
            required=role != "inbound_auth",
            clients=None if role == "inbound_auth" else upstream_hosts(scenario, tier_name),
        ),
    )
    return Relay(config, policy)
