"""The chain itself: the stage and role vocabulary, the tiers of hosts with their
per-stage costs (``[gateways.*]``, ``[mailbox_server]``), the links between them
(``[network]``) and the remote side (``[internet]``).

Units: times in seconds unless a name ends in ``_h`` (hours); sizes in KB
(1 KB = 1024 bytes) unless a name says ``bytes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mailgate.sim.scenario.distributions import Constant, Distribution, Lognormal
from mailgate.sim.scenario.fields import required, spec

# ---------------------------------------------------------------- vocabulary

#: Stage names shared by the model and realnet (calibration fits one cost per name).
STAGES = (
    # STARTTLS: the handshake of a connection (per message where a connection carries
    # one, ~0 where connections are reused) and the record layer per KB. 0 in the base
    # scenario (its stage costs are Postfix's, measured without TLS)
    "tls",
    "smtp_receive",  # SMTP dialogue up to the end of DATA, per hop
    "submission",  # SMTP AUTH + submission dialogue at the mailbox server
    "spf",
    "dkim_verify",
    "antivirus",
    "route",
    "dkim_sign",
    "mx_lookup",
    "spool",  # writing the message durably (the fsync itself is the host's disk)
    "deliver",  # SMTP client work handing the message to the next hop
    "maildir",  # filing into the user's mailbox
    "pop_session",  # POP3 login + STAT/UIDL, per poll
    "pop_retrieve",  # RETR + DELE, per message
    # CPU a host spends per message *off* the message's path, after it handed the
    # message on (or filed it): spool removal, connection teardown, bookkeeping.
    # It occupies a core (queueing, saturation) but does not delay that message.
    "housekeeping",
    # The whole work of a textbook station (role ``station``): one CPU burst on one core.
    "service",
)

#: What each role does; a stage outside its role's set is a scenario error.
ROLE_STAGES: dict[str, tuple[str, ...]] = {
    "inbound_auth": (
        "tls",
        "smtp_receive",
        "spf",
        "dkim_verify",
        "spool",
        "deliver",
        "housekeeping",
    ),
    "inbound_av": ("tls", "smtp_receive", "antivirus", "route", "spool", "deliver", "housekeeping"),
    "outbound_av": ("tls", "smtp_receive", "antivirus", "spool", "deliver", "housekeeping"),
    "outbound_sign": (
        "tls",
        "smtp_receive",
        "dkim_sign",
        "mx_lookup",
        "spool",
        "deliver",
        "housekeeping",
    ),
    "fallback_mx": ("tls", "smtp_receive", "mx_lookup", "spool", "deliver", "housekeeping"),
    "mailbox": (
        "tls",
        "smtp_receive",
        "submission",
        "spool",
        "deliver",
        "maildir",
        "pop_session",
        "pop_retrieve",
        "housekeeping",
    ),
    # A queueing-theory station (``[scenario] kind = "stations"``): its work is one
    # ``service`` time on one of its cores, nothing else (no checks, no spool, no fsync).
    "station": ("service",),
}
GATEWAY_ROLES = tuple(r for r in ROLE_STAGES if r not in ("mailbox", "station"))

#: The next hop that means "look up the recipient's MX on the Internet".
INTERNET = "internet"
#: The tier name of the mailbox server.
MAILBOX = "mailbox"

FLOWS = ("inbound", "outbound", "internal")


# ---------------------------------------------------------------- sections


@dataclass(frozen=True)
class RemoteDomain:
    """[[internet.domains]]: a named remote site."""

    name: str = required(doc="domain name")
    share: float = required(doc="share of outbound mail addressed here", min=0, max=1)
    inbound_share: float = spec(0.0, doc="share of inbound mail sent from here", min=0, max=1)
    spf: str = spec(
        "pass", doc="SPF verdict for its senders", choices=("pass", "fail", "softfail", "none")
    )


@dataclass(frozen=True)
class Internet:
    """[internet]: the remote side."""

    remote_mta_s: Distribution = spec(
        Lognormal(0.3, 0.6),
        doc="time a remote MTA takes to accept a message, s",
        parse="distribution",
    )
    temp_fail_prob: float = spec(
        0.03, doc="probability a first delivery attempt meets a 4xx (assumed)", min=0, max=1
    )
    retry_success_prob: float = spec(
        0.9, doc="probability a retry succeeds (outages aside)", min=0, max=1
    )
    domains: tuple[RemoteDomain, ...] = spec(
        (
            RemoteDomain("bigmail.example", 0.3, 0.25),
            RemoteDomain("carrier.example", 0.15, 0.1),
            RemoteDomain("spamhaus-victim.example", 0.0, 0.1, "fail"),
        ),
        doc="named remote domains; the rest of the traffic goes to many small ones",
    )


@dataclass(frozen=True)
class Network:
    """[network]: links and DNS."""

    lan_rtt_s: float = spec(0.0003, doc="round trip between our hosts, s", min=0)
    lan_mbps: float = spec(1000.0, doc="bandwidth between our hosts, Mbit/s", gt=0)
    internet_rtt_s: float = spec(0.04, doc="round trip to the Internet, s", min=0)
    internet_mbps: float = spec(100.0, doc="bandwidth to the Internet per transfer, Mbit/s", gt=0)
    dns_s: Distribution = spec(
        Constant(0.001), doc="DNS response time (resolver cache), s", parse="distribution"
    )


@dataclass(frozen=True)
class HostSpec:
    """Resources of one host."""

    cores: int = spec(4, doc="CPU cores", min=1)
    # Postfix default_process_limit for smtpd (docs/workload.md).
    session_limit: int = spec(100, doc="concurrent SMTP sessions accepted", min=1)
    # Postfix default_destination_concurrency_limit: per destination (the next tier is
    # one destination, each remote domain is one), as qmgr schedules deliveries.
    destination_concurrency: int = spec(
        20, doc="concurrent deliveries to one destination (next tier or remote domain)", min=1
    )
    # Postfix default_process_limit for the smtp delivery agents: the host's total.
    delivery_limit: int = spec(100, doc="concurrent outgoing deliveries in all", min=1)
    fsync_s: Distribution = spec(
        Constant(0.002), doc="time of one durable write (fsync), s", parse="distribution"
    )

    #: keys that changed meaning: the schema names the replacement instead of "unknown key"
    RENAMED: ClassVar[dict[str, str]] = {
        "delivery_concurrency": (
            "was one pool per host; Postfix limits deliveries per destination within a "
            "per-host total: set destination_concurrency (per destination, Postfix "
            "default_destination_concurrency_limit, default 20) and/or delivery_limit "
            "(per host, default_process_limit, default 100)"
        )
    }


@dataclass(frozen=True)
class StageCost:
    """What one stage costs per message."""

    cpu_s: Distribution = spec(Constant(0.0), doc="CPU seconds per message", parse="distribution")
    cpu_per_kb_s: float = spec(0.0, doc="extra CPU seconds per KB of message", min=0)
    dns_lookups: int = spec(0, doc="DNS round trips (each costs network.dns_s)", min=0)
    wait_s: Distribution = spec(
        Constant(0.0), doc="other waiting without a core (remote service), s", parse="distribution"
    )

    def mean_cpu(self, size_kb: float) -> float:
        return self.cpu_s.mean + self.cpu_per_kb_s * size_kb


@dataclass(frozen=True)
class Tier:
    """A gateway (two hosts by default) or the mailbox server."""

    role: str = required(doc="what it does", choices=tuple(ROLE_STAGES))
    hosts: tuple[HostSpec, ...] = spec(
        factory=lambda: (HostSpec(), HostSpec()), doc="its hosts", nonempty=True
    )
    balance: str = spec(
        "mx_random",
        doc="how senders pick a host: equal-preference MX (random) or round robin",
        choices=("mx_random", "round_robin"),
    )
    connect_timeout_s: float = spec(
        30.0, doc="time a sender loses on a dead host before trying its twin", min=0
    )
    next_hop: str = spec(INTERNET, doc="tier it relays to, or 'internet'")
    fallback: str = spec("", doc="tier that takes mail it cannot deliver (FallbackMX)")
    stages: dict[str, StageCost] = spec(factory=dict, doc="per-stage costs")

    def cost(self, stage: str) -> StageCost | None:
        return self.stages.get(stage)
