"""How one SMTP service of one host behaves: ``RelayConfig``, built once from the scenario.

The defaults are declared here and only here (the dataclass fields); the
scenario fills in what it decides (:meth:`RelayConfig.from_scenario`) and a
gateway or the mailbox server changes what its role needs with
``dataclasses.replace`` (who may connect or relay, local delivery, AUTH).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailgate.realnet.addresses import AddressPlan, host_name
from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.topology import INTERNET

# Abuse limits (issues #16, #13). Those a scenario may change come from its ``[limits]``
# (``sim.scenario.mta.Limits``, the same Postfix defaults); the others are constants
# here, each with its source.

#: connections one client address may hold open to one service at a time, beyond which
#: it gets ``421 4.7.0`` at connect (Postfix ``smtpd_client_connection_count_limit``,
#: default 50; scenario ``limits.smtpd_client_connection_count_limit``)
CLIENT_CONNECTION_LIMIT = 50
#: recipients one transaction may have; more get ``452 4.5.3`` (Postfix
#: ``smtpd_recipient_limit``, default 1000; scenario ``limits.smtpd_recipient_limit``)
RECIPIENT_LIMIT = 1000
#: seconds a client may stay silent while we wait for it before ``421 4.4.2`` and close
#: (Postfix ``smtpd_timeout``, default 300 s; scenario ``limits.smtpd_timeout_s``)
SMTPD_TIMEOUT_S = 300.0
#: failed logins (SMTP AUTH, POP3 PASS) one client address may make per minute before
#: it is refused without a password check (Postfix anvil's
#: ``smtpd_client_auth_rate_limit`` counts AUTH per minute, default 0 = off; ours counts
#: failures only, so a mail client that polls POP3 is never throttled)
AUTH_FAILURE_LIMIT = 10
AUTH_FAILURE_WINDOW_S = 60.0
#: a failed login is answered after a delay that doubles with each recent failure of the
#: client, up to a maximum (Dovecot's auth penalty: 2 s doubling to 15 s,
#: ``AUTH_PENALTY_MAX_SECS``; ours starts lower so a user's typo costs little)
AUTH_PENALTY_S = 0.25
AUTH_PENALTY_MAX_S = 15.0
#: password checks (scrypt, ~50 ms of CPU each) run at most this many at a time, in
#: their own threads (Dovecot's auth worker processes): the event loop keeps a core
AUTH_WORKERS = 1
#: longest DATA line accepted (bytes, CRLF excluded). Postfix accepts any length (its
#: ``line_length_limit`` = 2048 only splits long lines into records); we refuse beyond
#: this with ``552 5.3.4`` so one line cannot fill the memory
DATA_LINE_LIMIT = 65_536
#: longest line sent on to the Internet: Gateway3 breaks longer ones by inserting
#: CRLF SPACE before signing (Postfix ``smtp_line_length_limit``, default 998;
#: RFC 5322 2.1.1)
SMTP_LINE_LENGTH_LIMIT = 998
#: a graceful stop (SIGTERM) waits this long at most for messages being received and
#: deliveries in flight before it cancels what is left (``postfix stop`` lets running
#: deliveries finish; issue #16 asks for a bounded wait, e.g. 10 s)
STOP_GRACE_S = 10.0


@dataclass
class RelayConfig:
    """How one SMTP service of one host behaves."""

    host_id: str
    hostname: str
    bind: str
    port: int
    state_dir: Path
    #: domains accepted from any allowed client (our own mail domains)
    local_domains: frozenset[str] = frozenset()
    #: where bounces that cannot be delivered go (RFC 5321 4.5.1, 6.1); "" = postmaster
    #: of the first local domain (``postmaster_address``)
    postmaster: str = ""
    #: clients that may relay to any domain
    relay_clients: tuple[ipaddress.IPv4Network, ...] = ()
    #: clients that may connect at all (empty = anybody)
    allowed_clients: tuple[ipaddress.IPv4Network, ...] = ()
    #: next-hop addresses (twin hosts), or empty for the recipient's MX
    next_hop: tuple[str, ...] = ()
    next_hop_name: str = "internet"
    next_hop_port: int = 25
    balance: str = "mx_random"
    #: host id of every address of ours, so HopRecord.next_hop names the host, as the
    #: model does ("gateway1.0"); an address not listed is the rest of the Internet
    host_ids: dict[str, str] = field(default_factory=dict)
    #: tier offered what an attempt could not deliver (Gateway3 → Gateway4)
    fallback: tuple[str, ...] = ()
    fallback_name: str = ""
    #: deliveries at once to one destination (the next tier, or one recipient domain;
    #: Postfix default_destination_concurrency_limit) and in all (default_process_limit)
    destination_concurrency: int = 20
    delivery_limit: int = 100
    #: concurrent SMTP sessions (0 = no limit); a connection beyond them gets ``421
    #: 4.3.2`` as its greeting (Postfix would leave it waiting in the listen queue at its
    #: ``default_process_limit``, 100; a silent MX looks dead to its clients)
    session_limit: int = 0
    #: recipients per transaction (0 = no limit); duplicates count, and are delivered once
    recipient_limit: int = RECIPIENT_LIMIT
    #: seconds a client may stay silent while we wait for it
    smtpd_timeout_s: float = SMTPD_TIMEOUT_S
    connect_timeout_s: float = 30.0
    minimal_backoff_s: float = 300.0
    maximal_backoff_s: float = 4000.0
    max_queue_lifetime_s: float = 5 * 86400.0
    message_size_limit: int = 10_240_000
    hopcount_limit: int = 50
    dns: tuple[str, int] | None = None
    #: mailbox server: file locally instead of spooling (user, message bytes)
    local_delivery: Callable[[str, bytes], None] | None = None
    #: submission: SMTP AUTH required, authenticated clients may relay anywhere
    authenticate: Callable[[str, str], bool] | None = None
    #: submission: the login throttle (``realnet.relay.authguard.AuthGuard``), shared
    #: with the host's POP3 server; None = a guard of the service's own
    auth_guard: Any = None
    #: connections one client address may hold open (0 = no limit)
    client_connection_limit: int = CLIENT_CONNECTION_LIMIT
    spool_name: str = "spool"
    fsync: bool = True
    #: several worker processes may share the address (SO_REUSEPORT), each its own spool
    reuse_port: bool = False
    worker: int = 0
    #: STARTTLS offered with this ``ssl.SSLContext`` (None: no TLS, a bare relay in a test)
    tls_context: Any = None
    #: every command but EHLO/NOOP/QUIT/STARTTLS refused before STARTTLS with
    #: ``530 5.7.0`` (a tier that takes mail from our own tiers only)
    require_tls: bool = False
    #: DNS names (lower case) of the hosts whose certificate may send here; non-empty:
    #: after STARTTLS a client without a certificate verified by the local CA, or with
    #: one of another host, gets ``554`` to every command but QUIT (our inner tiers:
    #: Postfix ``smtpd_tls_req_ccert`` + ``check_ccert_access``); empty: none asked for
    client_cert_names: frozenset[str] = frozenset()
    #: the delivery side's TLS per next hop (``realnet.relay.tls.ClientTls``); None = none
    tls_client: Any = None

    @classmethod
    def from_scenario(
        cls, scenario: Scenario, plan: AddressPlan, host_id: str, state_dir: Path
    ) -> RelayConfig:
        """The settings every tier's relay takes from the scenario (times scaled by
        ``realnet.time_scale``); role-specific ones keep their defaults."""
        tier_name, index = host_id.rsplit(".", 1)
        tier = scenario.tiers[tier_name]
        host = tier.hosts[int(index)]
        rn, scale = scenario.realnet, scenario.realnet.time_scale
        next_hop = () if tier.next_hop == INTERNET else tuple(plan.tier_addresses(tier.next_hop))
        fallback = tuple(plan.tier_addresses(tier.fallback)) if tier.fallback else ()
        return cls(
            host_id=host_id,
            hostname=host_name(plan, host_id),
            bind=plan.host_address(host_id),
            port=rn.smtp_port,
            state_dir=state_dir,
            local_domains=frozenset(d.lower() for d in scenario.population.domains),
            postmaster=f"postmaster@{scenario.population.domains[0].lower()}",
            next_hop=next_hop,
            next_hop_name=tier.next_hop,
            next_hop_port=rn.smtp_port,
            balance=tier.balance,
            fallback=fallback,
            fallback_name=tier.fallback,
            destination_concurrency=host.destination_concurrency,
            delivery_limit=host.delivery_limit,
            session_limit=host.session_limit,
            # a dead twin refuses at once on loopback; the timeout guards a hung one
            connect_timeout_s=max(1.0, min(tier.connect_timeout_s, 30.0)),
            minimal_backoff_s=scenario.retry.minimal_backoff_s * scale,
            maximal_backoff_s=scenario.retry.maximal_backoff_s * scale,
            max_queue_lifetime_s=scenario.retry.max_queue_lifetime_s * scale,
            message_size_limit=scenario.limits.message_size_limit_bytes,
            hopcount_limit=scenario.limits.hopcount_limit,
            recipient_limit=scenario.limits.smtpd_recipient_limit,
            client_connection_limit=scenario.limits.smtpd_client_connection_count_limit,
            smtpd_timeout_s=scenario.limits.smtpd_timeout_s,
            dns=(plan.dns.host, plan.dns.port),
            host_ids={plan.host_address(h): h for h in scenario.host_ids},
        )

    @property
    def spool_dir(self) -> Path:
        """This service's spool: one per host, or per worker when workers share a port."""
        leaf = self.host_id if not self.worker else f"{self.host_id}-w{self.worker}"
        return self.state_dir / self.spool_name / leaf

    @property
    def postmaster_address(self) -> str:
        """Our postmaster: the configured one, or the first local domain's ("" if none)."""
        if self.postmaster or not self.local_domains:
            return self.postmaster
        return f"postmaster@{min(self.local_domains)}"

    def backoff(self, attempts: int) -> float:
        """Seconds before the next attempt after ``attempts`` failed ones (doubling)."""
        return min(self.maximal_backoff_s, self.minimal_backoff_s * 2 ** max(0, attempts - 1))


def upstream(scenario: Scenario, plan: AddressPlan, tier_name: str) -> list[str]:
    """Addresses of every host whose tier relays (or falls back) to ``tier_name``: the
    only clients a tier that takes mail from its upstream accepts."""
    return [plan.host_address(h) for h in upstream_hosts(scenario, tier_name)]


def upstream_hosts(scenario: Scenario, tier_name: str) -> list[str]:
    """Host ids of every host whose tier relays (or falls back) to ``tier_name``."""
    tiers = {n for n, t in scenario.tiers.items() if tier_name in (t.next_hop, t.fallback)}
    return [h for h in scenario.host_ids if h.rsplit(".", 1)[0] in tiers]
