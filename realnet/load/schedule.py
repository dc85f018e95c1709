"""What a realnet load run sends, and when: the open-loop schedule, planned up front.

Messages arrive as a Poisson process at a set rate for a set duration
(``arrival_offsets``); every send is *scheduled* in advance (``plan_messages``),
so a slow system cannot slow the generator down (the runner, ``loadgen``,
counts latency from the scheduled time).

The flows mix like the scenario's (``flow_shares``): inbound from the remote
senders (bound to their addresses so SPF sees them; SPF-failing spam from a
failing domain; on request a share to unknown users and one with routing
tricks, which Gateway0 must refuse), outbound and internal submissions from a PC with SMTP AUTH to
the mailbox server's submission port. Sizes come from the scenario's size
distributions. Each message carries its id (``build_message``,
``message_id_of``) so a POP retrieval and the hops' traces find it again.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mailgate.realnet.addresses import OTHER_DOMAIN, AddressPlan, Endpoint
from mailgate.realnet.load.mailclients import Auth
from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.topology import MAILBOX

#: Headers + the fixed part of a generated message, bytes (sizes are totals).
_HEADER_ROOM = 400


@dataclass(frozen=True)
class Target:
    """Where the load goes and where it comes from."""

    mx: tuple[Endpoint, ...]  # our domain's MX hosts (inbound)
    submission: Endpoint  # the mailbox server's submission port (PCs)
    pop3: Endpoint | None  # the mailbox server's POP3 port (None: no pollers)
    domain: str  # our mail domain
    pc_address: str | None = None
    sender_addresses: Mapping[str, str] = field(default_factory=dict)  # domain -> source
    #: STARTTLS with this context (verifying the testbed's CA) wherever it is offered;
    #: None: only on submission (AUTH needs it), without verification
    tls: Any = None

    @classmethod
    def from_plan(cls, plan: AddressPlan, state_dir: Path | None = None) -> Target:
        """The testbed of ``plan``; with ``state_dir``, TLS verified against its CA."""
        from mailgate.realnet.services.tls import ca_file, client_context

        s = plan.scenario
        tls = None
        if state_dir is not None and ca_file(state_dir).exists():
            tls = client_context(state_dir)
        return cls(
            tls=tls,
            mx=tuple(plan.smtp(h) for h in s.host_ids if h.startswith(f"{s.mx}.")),
            submission=Endpoint(plan.host_address(f"{MAILBOX}.0"), s.realnet.submission_port),
            pop3=Endpoint(plan.host_address(f"{MAILBOX}.0"), s.realnet.pop3_port),
            domain=s.population.domains[0],
            pc_address=plan.pc_address,
            sender_addresses={d: plan.remote_sender_address(d) for d in plan.remote_domains},
        )


@dataclass(frozen=True)
class LoadSpec:
    """How much load, for how long, with what bounds."""

    rate: float  # messages/s offered
    duration_s: float
    user: Auth  # the PC user who submits, and whose mailbox receives
    shares: Mapping[str, float] | None = None  # flow -> share; None: the scenario's mix
    max_messages: int = 50_000
    concurrency: int = 1000  # sessions in flight at most
    seed: int = 1
    pop_interval_s: float = 1.0  # 0: no POP pollers
    drain_s: float = 30.0  # after the last send, wait this long at most for retrieval
    send_timeout_s: float = 60.0
    max_size_kb: float | None = None  # None: just under the scenario's size limit
    late_warn_s: float = 0.01  # warn when p99 lateness exceeds this
    cpu_warn: float = 0.8  # warn when the generator used more than this share of a core
    #: shares of inbound mail sent to a user we do not have, and with sender-specified
    #: routing in the recipient (``ROUTING_TRICKS``): Gateway0 must refuse both at RCPT
    unknown_share: float = 0.0
    tricks_share: float = 0.0


@dataclass(slots=True)
class Planned:
    """One scheduled message."""

    msg_id: str
    offset_s: float  # after the start of the run
    flow: str
    size_kb: float
    mail_from: str
    rcpt: str
    source: str | None
    spf_fail: bool = False
    #: why the MX must refuse the recipient ("unknown", "routing"), or "" (it must not)
    refuse: str = ""


#: recipients of our domain that ask us to relay on (Postfix ``allow_untrusted_routing``)
ROUTING_TRICKS = ("{user}%{other}@{domain}", "{other}!{user}@{domain}", '"{user}@{other}"@{domain}')


def flow_shares(scenario: Scenario) -> dict[str, float]:
    """The scenario's mix of flows (by daily messages offered)."""
    daily = {f: scenario.daily_messages(f) for f in ("inbound", "outbound", "internal")}
    total = sum(daily.values()) or 1.0
    return {f: v / total for f, v in daily.items()}


def arrival_offsets(
    rate: float, duration_s: float, limit: int, rng: np.random.Generator
) -> list[float]:
    """Poisson arrival times in [0, duration), at most ``limit`` of them."""
    out: list[float] = []
    t = 0.0
    while len(out) < limit:
        t += float(rng.exponential(1.0 / rate))
        if t >= duration_s:
            break
        out.append(t)
    return out


def plan_messages(scenario: Scenario, target: Target, spec: LoadSpec, run_id: str) -> list[Planned]:
    """Schedule every message of the run up front (open loop)."""
    rng = np.random.default_rng(spec.seed)
    shares = dict(spec.shares or flow_shares(scenario))
    flows = [f for f, v in shares.items() if v > 0]
    weights = np.array([shares[f] for f in flows], dtype=float)
    weights /= weights.sum()
    w = scenario.workload
    limit_kb = scenario.limits.message_size_limit_bytes / 1024 - 4
    cap_kb = min(spec.max_size_kb or limit_kb, limit_kb)
    domains = scenario.internet.domains
    failing = [d.name for d in domains if d.spf == "fail"]
    passing = [d for d in domains if d.spf != "fail"]
    in_names = [d.name for d in passing] + [OTHER_DOMAIN]
    in_w = np.array([d.inbound_share for d in passing] + [0.0])
    in_w[-1] = max(1.0 - in_w.sum() - sum(d.inbound_share for d in domains if d.spf == "fail"), 0)
    out_names = [d.name for d in domains] + [OTHER_DOMAIN]
    out_w = np.array([d.share for d in domains] + [max(1.0 - sum(d.share for d in domains), 0)])
    user_address = f"{spec.user.user}@{target.domain}"  # local rcpt, submission sender
    planned = []
    offsets = arrival_offsets(spec.rate, spec.duration_s, spec.max_messages, rng)
    for i, offset in enumerate(offsets):
        flow = flows[int(rng.choice(len(flows), p=weights))]
        msg_id = f"{run_id}-{i}"
        spf_fail, refuse = False, ""
        if flow == "inbound":
            spam = rng.random() < w.spam_share
            spf_fail = bool(spam and failing and rng.random() < w.spam_spf_fail_share)
            if spf_fail:
                domain = failing[int(rng.integers(len(failing)))]
            else:
                domain = in_names[int(rng.choice(len(in_names), p=in_w / in_w.sum()))]
            size = (w.size.spam if spam else w.size.legit).sample(rng)
            mail_from, rcpt = f"sender{i}@{domain}", user_address
            source = target.sender_addresses.get(domain)
            if spec.unknown_share or spec.tricks_share:  # drawn only when asked for
                x = rng.random()
                if x < spec.unknown_share:
                    rcpt, refuse = f"nosuchuser{i}@{target.domain}", "unknown"
                elif x < spec.unknown_share + spec.tricks_share:
                    trick = ROUTING_TRICKS[i % len(ROUTING_TRICKS)]
                    rcpt = trick.format(
                        user=spec.user.user, other=OTHER_DOMAIN, domain=target.domain
                    )
                    refuse = "routing"
        else:
            if flow == "outbound":
                domain = out_names[int(rng.choice(len(out_names), p=out_w / out_w.sum()))]
                rcpt = f"user{i}@{domain}"
            else:
                rcpt = user_address
            size = w.size.legit.sample(rng)
            mail_from, source = user_address, target.pc_address
        size_kb = min(max(size, _HEADER_ROOM / 1024), cap_kb)
        planned.append(
            Planned(msg_id, offset, flow, size_kb, mail_from, rcpt, source, spf_fail, refuse)
        )
    return planned


def build_message(p: Planned) -> bytes:
    """A plain-text message of about ``p.size_kb`` KB carrying its id."""
    headers = (
        f"From: <{p.mail_from}>\r\n"
        f"To: <{p.rcpt}>\r\n"
        f"Subject: mailgate load {p.msg_id} ({p.flow})\r\n"
        f"Date: {email.utils.formatdate(localtime=False)}\r\n"
        f"Message-ID: <{p.msg_id}@loadgen.mailgate>\r\n"
        f"X-Mailgate-Id: {p.msg_id}\r\n"
        # realnet's hops carry this trace id into their HopRecords (realnet.relay)
        f"X-Mailgate-Trace: {p.msg_id}; flow={p.flow}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
    ).encode()
    body_len = max(int(p.size_kb * 1024) - len(headers), 2)
    line = b"The quick brown fox jumps over the lazy dog; mailgate load test padding.\r\n"
    body = (line * (body_len // len(line) + 1))[:body_len]
    return headers + body.rstrip(b"\r\n") + b"\r\n"


_ID_RE = re.compile(rb"^X-Mailgate-Id:\s*(\S+)", re.MULTILINE | re.IGNORECASE)


def message_id_of(message: bytes) -> str | None:
    """The load generator's id in a retrieved message."""
    m = _ID_RE.search(message.split(b"\r\n\r\n", 1)[0])
    return m.group(1).decode() if m else None
