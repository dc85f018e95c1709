"""The scenario: one description of a mail system, as frozen data.

Both builders read it: the SimPy model (``sim.model``) and the real relays on
loopback (``realnet``). This module therefore imports neither simpy nor
asyncio. The dataclasses double as the schema of the TOML format: a field's
type says what a key holds, its default is the documented default, and its
``metadata`` carries limits (``min``, ``max``, ``gt``, ``choices``) and a
one-line ``doc``. ``sim.scenario`` turns a TOML file into these objects.

Units: times in seconds unless a name ends in ``_h`` (hours); sizes in KB
(1 KB = 1024 bytes) unless a name says ``bytes``.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from mailgate.sim.scenario.distributions import (
    Constant,
    Distribution,
    Geometric,
    Lognormal,
    LognormalPareto,
    Uniform,
)


def spec(default: Any = None, *, doc: str = "", factory: Any = None, **limits: Any) -> Any:
    """A dataclass field with a documented default and validation limits."""
    meta = {"doc": doc, **limits}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def required(*, doc: str = "", **limits: Any) -> Any:
    """A field the scenario must give."""
    return field(metadata={"doc": doc, **limits})


# ---------------------------------------------------------------- vocabulary

#: Stage names shared by the model and realnet (calibration fits one cost per name).
STAGES = (
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
)

#: What each role does; a stage outside its role's set is a scenario error.
ROLE_STAGES: dict[str, tuple[str, ...]] = {
    "inbound_auth": ("smtp_receive", "spf", "dkim_verify", "spool", "deliver", "housekeeping"),
    "inbound_av": ("smtp_receive", "antivirus", "route", "spool", "deliver", "housekeeping"),
    "outbound_av": ("smtp_receive", "antivirus", "spool", "deliver", "housekeeping"),
    "outbound_sign": ("smtp_receive", "dkim_sign", "mx_lookup", "spool", "deliver", "housekeeping"),
    "fallback_mx": ("smtp_receive", "mx_lookup", "spool", "deliver", "housekeeping"),
    "mailbox": (
        "smtp_receive",
        "submission",
        "spool",
        "deliver",
        "maildir",
        "pop_session",
        "pop_retrieve",
        "housekeeping",
    ),
}
GATEWAY_ROLES = tuple(r for r in ROLE_STAGES if r != "mailbox")

#: The next hop that means "look up the recipient's MX on the Internet".
INTERNET = "internet"
#: The tier name of the mailbox server.
MAILBOX = "mailbox"

FLOWS = ("inbound", "outbound", "internal")

#: Hourly shapes (relative weights, hour 0 = 00:00-01:00). Sources: office
#: mail peaks 08-10 h, private mail 18-21 h, spam and newsletters 00-06 h
#: (WORKLOAD.md, "Diurnal shape"); the exact heights are assumed.
_OFFICE = (1, 1, 1, 1, 1, 2, 4, 8, 14, 14, 12, 10, 8, 10, 10, 9, 8, 6, 4, 3, 2, 2, 1, 1)
_PRIVATE = (3, 2, 1, 1, 1, 1, 2, 3, 4, 4, 4, 5, 6, 5, 5, 5, 6, 8, 10, 12, 12, 10, 7, 5)
_SPAM = (10, 11, 12, 12, 11, 10, 8, 6, 5, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 5, 6, 7, 9)


def _mix(*parts: tuple[float, tuple[int, ...]]) -> tuple[float, ...]:
    out = [0.0] * 24
    for weight, shape in parts:
        total = sum(shape)
        for h in range(24):
            out[h] += weight * shape[h] / total
    return tuple(out)


def _specmail() -> tuple[float, ...]:
    # SPECmail2001: 15 % of the day's activity in the peak hour (11-12 h);
    # the other 85 % spread over the office/private mix.
    base = _mix((0.5, _OFFICE), (0.5, _PRIVATE))
    rest = [b if h != 11 else 0.0 for h, b in enumerate(base)]
    scale = 0.85 / sum(rest)
    return tuple(0.15 if h == 11 else r * scale for h, r in enumerate(rest))


DIURNAL_SHAPES: dict[str, tuple[float, ...]] = {
    "flat": tuple([1.0] * 24),
    "office": _mix((1, _OFFICE)),
    "private": _mix((1, _PRIVATE)),
    "spam": _mix((1, _SPAM)),
    # Inbound: 55 % legitimate (office and private alike), 45 % spam (Kaspersky).
    "isp-inbound": _mix((0.3, _OFFICE), (0.25, _PRIVATE), (0.45, _SPAM)),
    "isp-outbound": _mix((0.5, _OFFICE), (0.5, _PRIVATE)),
    "specmail": _specmail(),
}


@dataclass(frozen=True)
class HourlyProfile:
    """24 relative weights, normalised so that their mean is 1.

    ``factor(hour)`` multiplies the daily-mean rate.
    """

    name: str
    weights: tuple[float, ...]

    @classmethod
    def parse(cls, value: Any) -> HourlyProfile:
        if isinstance(value, str):
            if value not in DIURNAL_SHAPES:
                raise ValueError(
                    f"unknown shape {value!r}; expected one of {', '.join(DIURNAL_SHAPES)}"
                    " or a list of 24 hourly weights"
                )
            raw: Any = DIURNAL_SHAPES[value]
            name = value
        elif isinstance(value, list):
            raw, name = value, "custom"
        else:
            raise ValueError(f"expected a shape name or 24 hourly weights, got {value!r}")
        if len(raw) != 24:
            raise ValueError(f"expected 24 hourly weights, got {len(raw)}")
        if any(isinstance(w, bool) or not isinstance(w, int | float) or w < 0 for w in raw):
            raise ValueError("hourly weights must be numbers ≥ 0")
        total = float(sum(raw))
        if total <= 0:
            raise ValueError("hourly weights must not all be 0")
        return cls(name, tuple(24 * float(w) / total for w in raw))

    def factor(self, hour: float) -> float:
        return self.weights[int(hour) % 24]

    @property
    def peak_factor(self) -> float:
        return max(self.weights)

    def to_table(self) -> str | list[float]:
        return self.name if self.name in DIURNAL_SHAPES else list(self.weights)


# ---------------------------------------------------------------- sections


@dataclass(frozen=True)
class Meta:
    """[scenario]: what this is and how long to run it."""

    name: str = required(doc="short identifier, used in output file names")
    description: str = spec("", doc="one paragraph for humans")
    seed: int = spec(1, doc="random seed; same seed, same numbers", min=0)
    duration_h: float = spec(24.0, doc="simulated time after warm-up, hours", gt=0)
    warmup_h: float = spec(1.0, doc="simulated time cut from statistics, hours", min=0)
    replications: int = spec(1, doc="independent runs for confidence intervals", min=1)
    start_hour: float = spec(
        0.0, doc="clock hour at which the warm-up starts (0 = midnight)", min=0, max=24
    )


@dataclass(frozen=True)
class Population:
    """[population]: who we serve."""

    mailboxes: int = spec(30_000, doc="number of mailboxes (users)", min=1)
    domains: tuple[str, ...] = spec(
        ("drive-network.example",), doc="our mail domains; the first is the primary", nonempty=True
    )


@dataclass(frozen=True)
class Sizes:
    """[workload.size]: message sizes in KB."""

    # A 2002 sample: 49 % < 4 KB, 80 % < 16 KB, 93 % < 128 KB, 98.5 % < 1 MB;
    # legitimate mail averages 6-8x the size of spam (Gomes et al. 2007).
    legit: Distribution = spec(
        LognormalPareto(
            median=6.0, sigma=1.2, tail_share=0.08, tail_alpha=1.1, tail_min=64.0, cap=10_000.0
        ),
        doc="legitimate message size, KB",
        parse="distribution",
    )
    spam: Distribution = spec(
        LognormalPareto(
            median=3.0, sigma=0.7, tail_share=0.01, tail_alpha=1.5, tail_min=32.0, cap=10_000.0
        ),
        doc="spam message size, KB",
        parse="distribution",
    )


@dataclass(frozen=True)
class Diurnal:
    """[workload.diurnal]: hourly shape of each direction."""

    inbound: HourlyProfile = spec(
        HourlyProfile.parse("isp-inbound"), doc="shape name or 24 weights", parse="profile"
    )
    outbound: HourlyProfile = spec(
        HourlyProfile.parse("isp-outbound"), doc="shape name or 24 weights", parse="profile"
    )


@dataclass(frozen=True)
class Surge:
    """[[workload.surges]]: a temporary multiplier on offered load (a spam wave)."""

    flow: str = required(doc="inbound, outbound or all", choices=("inbound", "outbound", "all"))
    start_h: float = required(doc="hours after the run starts", min=0)
    duration_h: float = required(doc="hours", gt=0)
    factor: float = required(doc="rate multiplier", min=0)
    spam_only: bool = spec(False, doc="multiply only the spam part of inbound mail")


@dataclass(frozen=True)
class Workload:
    """[workload]: traffic offered, per mailbox per day."""

    # Assumed: SPECmail2001 has ~2 sent per user per day; received mail is
    # assumed 4 legitimate + spam at 45 % of all mail => ~7.3 inbound/day.
    inbound_per_mailbox_day: float = spec(
        7.3, doc="messages offered from the Internet per mailbox per day", min=0
    )
    outbound_per_mailbox_day: float = spec(
        2.0, doc="messages sent by users per mailbox per day (SPECmail2001)", min=0
    )
    internal_share: float = spec(
        0.1, doc="share of outbound addressed to our own domain", min=0, max=1
    )
    recipients: Distribution = spec(
        Geometric(1.2), doc="recipients per message (whole numbers ≥ 1)", parse="distribution"
    )
    spam_share: float = spec(0.45, doc="share of inbound that is spam (Kaspersky)", min=0, max=1)
    spam_spf_fail_share: float = spec(
        0.3, doc="share of spam that fails SPF and is rejected at the MX (assumed)", min=0, max=1
    )
    virus_share: float = spec(
        0.002, doc="share of messages carrying a virus (assumed)", min=0, max=1
    )
    size: Sizes = spec(factory=Sizes, doc="message sizes")
    diurnal: Diurnal = spec(factory=Diurnal, doc="hourly shapes")
    surges: tuple[Surge, ...] = spec((), doc="temporary load multipliers")


@dataclass(frozen=True)
class Pop:
    """[pop]: how users read mail."""

    active_share: float = spec(
        0.25, doc="share of mailboxes with a client polling (assumed)", min=0, max=1
    )
    # Thunderbird's default check is every 10 minutes (WORKLOAD.md).
    interval_s: Distribution = spec(
        Uniform(540.0, 660.0), doc="time between polls of one mailbox, s", parse="distribution"
    )


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
    # Postfix default_process_limit (WORKLOAD.md).
    session_limit: int = spec(100, doc="concurrent SMTP sessions accepted", min=1)
    # Postfix default_destination_concurrency_limit (WORKLOAD.md).
    delivery_concurrency: int = spec(20, doc="concurrent outgoing deliveries", min=1)
    fsync_s: Distribution = spec(
        Constant(0.002), doc="time of one durable write (fsync), s", parse="distribution"
    )


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


@dataclass(frozen=True)
class Retry:
    """[retry]: the fallback MX's schedule (Postfix defaults)."""

    queue_run_delay_s: float = spec(300.0, doc="queue scan interval", gt=0)
    minimal_backoff_s: float = spec(300.0, doc="first retry after", gt=0)
    maximal_backoff_s: float = spec(4000.0, doc="backoff doubles up to this", gt=0)
    max_queue_lifetime_s: float = spec(5 * 86400.0, doc="bounce after this", gt=0)


@dataclass(frozen=True)
class Limits:
    """[limits]: protocol limits (Postfix defaults)."""

    message_size_limit_bytes: int = spec(10_240_000, doc="larger messages get 552", min=1)
    hopcount_limit: int = spec(50, doc="more Received: headers is a loop", min=1)


@dataclass(frozen=True)
class HostDown:
    """[[failures.host_down]]: a host that dies and (maybe) comes back."""

    host: str = required(doc="host id, tier.index, e.g. gateway1.0")
    start_h: float = required(doc="hours after the run starts", min=0)
    duration_h: float = spec(1e9, doc="hours until it is back", gt=0)
    refuses: bool = spec(
        False,
        doc="the machine is up but its MTA is not: connections are refused at once "
        "(one round trip) instead of timing out after connect_timeout_s (a dead machine)",
    )


@dataclass(frozen=True)
class RemoteOutage:
    """[[failures.remote_outage]]: a remote domain unreachable for a while."""

    domain: str = required(doc="a name from internet.domains")
    start_h: float = required(doc="hours after the run starts", min=0)
    duration_h: float = required(doc="hours", gt=0)


@dataclass(frozen=True)
class DnsSlow:
    """[[failures.dns_slow]]: DNS answers slow for a while."""

    start_h: float = required(doc="hours after the run starts", min=0)
    duration_h: float = required(doc="hours", gt=0)
    extra_s: float = required(doc="added to every lookup, s", min=0)


@dataclass(frozen=True)
class Failures:
    """[failures]: what goes wrong, and when."""

    host_down: tuple[HostDown, ...] = spec(())
    remote_outage: tuple[RemoteOutage, ...] = spec(())
    dns_slow: tuple[DnsSlow, ...] = spec(())


@dataclass(frozen=True)
class Objective:
    """[[slo.objectives]]: a latency quantile that must stay under a bound."""

    name: str = required(doc="label for reports")
    flow: str = required(doc="inbound, outbound or internal", choices=FLOWS)
    span: str = required(
        doc="which latency",
        choices=("accepted_to_mailbox", "sent_to_retrieved", "sent_to_remote"),
    )
    max_s: float = required(doc="bound, s", gt=0)
    quantile: float = spec(0.95, doc="e.g. 0.95", gt=0, max=1)


@dataclass(frozen=True)
class Slo:
    """[slo]: service-level objectives."""

    objectives: tuple[Objective, ...] = spec(
        (
            # SPECmail2001: delivery within 60 s for > 95 % of messages.
            Objective("inbound delivery", "inbound", "accepted_to_mailbox", 60.0),
            Objective("internal delivery", "internal", "accepted_to_mailbox", 60.0),
            Objective("outbound handoff", "outbound", "sent_to_remote", 60.0),
        )
    )
    # The source: a mail to yourself shows up "about 1 second" after sending.
    selftest_max_s: float = spec(1.0, doc="mail-to-yourself bound at idle, s", gt=0)
    max_error_share: float = spec(0.01, doc="SPECmail2001: errors under 1 %", min=0, max=1)


@dataclass(frozen=True)
class Machine:
    """[[deployment.machines]]: a physical machine some hosts share."""

    name: str = required(doc="label")
    cores: int = required(doc="CPU cores of the machine", min=1)
    hosts: tuple[str, ...] = spec(("*",), doc="host ids or glob patterns placed here")
    processes_per_host: int = spec(
        0, doc="worker processes each host runs (0 = as many as its cores)", min=0
    )


@dataclass(frozen=True)
class Deployment:
    """[deployment]: where hosts run. A host on no listed machine has its own."""

    machines: tuple[Machine, ...] = spec(())

    def machine_of(self, host_id: str) -> Machine | None:
        for machine in self.machines:
            if any(fnmatch.fnmatchcase(host_id, pattern) for pattern in machine.hosts):
                return machine
        return None


@dataclass(frozen=True)
class User:
    """[[realnet.users]]: a mailbox user who may authenticate."""

    name: str = required(doc="local part")
    password_hash: str = required(doc="hashlib.scrypt hash, 'scrypt$n$r$p$salt$hex'")


@dataclass(frozen=True)
class Realnet:
    """[realnet]: how the real relays are laid out on loopback."""

    address_prefix: str = spec("127.25", doc="tier N host k binds PREFIX.N.(k+1)")
    smtp_port: int = spec(2525, doc="SMTP port on every host address", min=1, max=65535)
    submission_port: int = spec(2587, doc="submission port on the mailbox server", min=1, max=65535)
    pop3_port: int = spec(2110, doc="POP3 port on the mailbox server", min=1, max=65535)
    dns_address: str = spec("127.25.255.53", doc="address of the realnet DNS server")
    dns_port: int = spec(5353, doc="port of the realnet DNS server", min=1, max=65535)
    dns_delay_s: float = spec(0.0, doc="added to every DNS answer, s", min=0)
    dkim_selector: str = spec("mg2026", doc="DKIM selector")
    dkim_algorithm: str = spec(
        "rsa-sha256", doc="DKIM signing algorithm", choices=("rsa-sha256", "ed25519-sha256")
    )
    antivirus: str = spec(
        "embedded", doc="embedded signature scanner or clamd", choices=("embedded", "clamd")
    )
    clamd_address: str = spec("127.0.0.1:3310", doc="host:port of clamd")
    time_scale: float = spec(1.0, doc="retry timers are multiplied by this (tests: 0.01)", gt=0)
    state_dir: str = spec("", doc="spools and maildirs; empty = a fresh temporary folder")
    users: tuple[User, ...] = spec((), doc="users allowed to submit")


@dataclass(frozen=True)
class Scenario:
    """A whole scenario: everything the model and realnet need."""

    scenario: Meta = required(doc="[scenario]")
    population: Population = spec(factory=Population)
    workload: Workload = spec(factory=Workload)
    pop: Pop = spec(factory=Pop)
    internet: Internet = spec(factory=Internet)
    network: Network = spec(factory=Network)
    gateways: dict[str, Tier] = spec(factory=dict, doc="the gateways, by name")
    mailbox_server: Tier = spec(
        factory=lambda: Tier(role=MAILBOX, hosts=(HostSpec(),), next_hop="gateway2")
    )
    retry: Retry = spec(factory=Retry)
    limits: Limits = spec(factory=Limits)
    failures: Failures = spec(factory=Failures)
    slo: Slo = spec(factory=Slo)
    deployment: Deployment = spec(factory=Deployment)
    realnet: Realnet = spec(factory=Realnet)
    source: str = field(default="", metadata={"internal": True})

    # -- derived views (no state of their own)

    @cached_property
    def tiers(self) -> dict[str, Tier]:
        """Every tier by name: the gateways and ``mailbox`` (built once: the model asks per hop)."""
        return {**self.gateways, MAILBOX: self.mailbox_server}

    @property
    def mx(self) -> str:
        """The tier that is our domain's MX: the first inbound_auth gateway."""
        return next(name for name, t in self.gateways.items() if t.role == "inbound_auth")

    @property
    def host_ids(self) -> list[str]:
        return [f"{name}.{i}" for name, tier in self.tiers.items() for i in range(len(tier.hosts))]

    def path(self, start: str) -> list[str]:
        """Tiers from ``start`` following next_hop until the mailbox or the Internet."""
        out, name = [], start
        while name != INTERNET and name not in out:
            out.append(name)
            if name == MAILBOX and start != MAILBOX:
                break
            name = self.tiers[name].next_hop
        return out

    @property
    def inbound_path(self) -> list[str]:
        return self.path(self.mx)

    @property
    def outbound_path(self) -> list[str]:
        return self.path(MAILBOX)

    def daily_messages(self, flow: str) -> float:
        """Messages per day offered for a flow (before SPF rejection)."""
        w, n = self.workload, self.population.mailboxes
        if flow == "inbound":
            return w.inbound_per_mailbox_day * n
        if flow == "outbound":
            return w.outbound_per_mailbox_day * n * (1 - w.internal_share)
        if flow == "internal":
            return w.outbound_per_mailbox_day * n * w.internal_share
        raise ValueError(flow)
