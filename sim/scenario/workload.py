"""What the users do: ``[population]`` (mailboxes, domains), ``[workload]`` (messages
per mailbox per day, spam and virus shares, recipients, sizes, hourly shapes, surges)
and ``[pop]`` (how often mail clients poll)."""

from __future__ import annotations

from dataclasses import dataclass

from mailgate.sim.scenario.distributions import (
    Distribution,
    Geometric,
    LognormalPareto,
    Uniform,
)
from mailgate.sim.scenario.diurnal import HourlyProfile
from mailgate.sim.scenario.fields import required, spec


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
    inbound_per_s: float = spec(
        0.0,
        doc="flat inbound rate, messages/s, instead of inbound_per_mailbox_day × mailboxes "
        "when > 0 (the diurnal shape still applies)",
        min=0,
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
    unknown_recipient_share: float = spec(
        0.0,
        doc="share of inbound messages addressed to a user we do not have: refused at the "
        "MX at RCPT (550 5.1.1), before DATA; they cost a session and the SMTP dialogue only",
        min=0,
        max=1,
        quiet=True,
    )
    virus_share: float = spec(
        0.002, doc="share of messages carrying a virus (assumed)", min=0, max=1
    )
    send_path_s: float = spec(
        0.0,
        doc="fixed delay from a message's scheduled send to its arrival at the first hop "
        "(a load generator's lateness, connect, greeting and EHLO), s; it is part of "
        "every latency from the send",
        min=0,
        quiet=True,
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
    # Thunderbird's default check is every 10 minutes (docs/workload.md).
    interval_s: Distribution = spec(
        Uniform(540.0, 660.0), doc="time between polls of one mailbox, s", parse="distribution"
    )
