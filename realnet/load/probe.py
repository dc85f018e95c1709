"""The source's "mail to yourself", on the real chain (``mailgate realnet probe``).

A PC (bound to ``AddressPlan.pc_address``) submits a mail to its own address
with SMTP AUTH as the scenario's first user, then polls POP3 until it is
there. The mail travels PC → mailbox server → Gateway2 → Gateway3 (DKIM sign,
MX lookup of our own domain) → Gateway0 (SPF, DKIM verify) → Gateway1 →
mailbox server → PC, over STARTTLS on every hop (the probe's own submission
verifies the server against the testbed's CA; each hop's protocol and cipher
are read from the Received header that host wrote, ``Hop.tls``). The probe
measures the send-to-receive time, each hop's share and stages (from the
hosts' trace files, joined on the ``X-Mailgate-Trace`` id) and the SPF/DKIM verdicts from the
``Authentication-Results`` header (``ProbeResult``; the command,
``mailgate.commands.realnet``, prints them).

The password: ``MAILGATE_PROBE_PASSWORD`` or, by default, the user name (the
testbed scenario's self-test user has password "selftest").
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import email.utils
import os
import poplib
import re
import smtplib
import ssl
import statistics
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailgate.realnet.addresses import AddressPlan
from mailgate.realnet.relay.message import trace_header
from mailgate.realnet.relay.tls import tls_of_received
from mailgate.realnet.relay.tracing import read_traces
from mailgate.realnet.services.tls import ca_file, client_context
from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.records import HopRecord
from mailgate.sim.scenario.topology import MAILBOX

POLL_INTERVAL_S = 0.005


@dataclass
class Hop:
    host: str
    arrived_ms: float
    accepted_ms: float | None
    left_ms: float | None
    outcome: str
    next_hop: str
    stages_ms: dict[str, float] = field(default_factory=dict)
    #: the TLS this host received the message with ("TLSv1.3 TLS_AES_256_GCM_SHA384"),
    #: from its Received header; "" in plaintext
    tls: str = ""


@dataclass
class ProbeResult:
    trace_id: str
    address: str
    send_to_receive_s: float
    send_to_mailbox_s: float | None
    submit_s: float
    spf: str
    dkim: str
    dkim_signer: str
    authentication_results: str
    hops: list[Hop]


def _user(scenario: Scenario) -> tuple[str, str, str]:
    if not scenario.realnet.users:
        from mailgate.sim.scenario.errors import UserError

        raise UserError("the scenario has no [[realnet.users]] to send the self-test as")
    name = scenario.realnet.users[0].name
    password = os.environ.get("MAILGATE_PROBE_PASSWORD", name)
    return name, password, f"{name}@{scenario.population.domains[0]}"


def self_test_message(address: str, trace_id: str) -> bytes:
    head = (
        f"From: <{address}>\r\nTo: <{address}>\r\n"
        f"Subject: mailgate self-test {trace_id}\r\n"
        f"Date: {email.utils.formatdate()}\r\n"
        f"Message-ID: <{trace_id}@probe.mailgate>\r\n"
    ).encode()
    return (
        head
        + trace_header(trace_id, "internal")
        + b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        + b"Everyone has sent a test mail to themselves.\r\n"
    )


def submit(
    plan: AddressPlan,
    user: str,
    password: str,
    mail_from: str,
    rcpts: list[str],
    data: bytes,
    tls: ssl.SSLContext | None = None,
) -> None:
    """Send as a PC: submission port, STARTTLS, AUTH, from the PC address.

    ``tls`` verifies the server (the testbed's CA); None: TLS without verification.
    """
    rn = plan.scenario.realnet
    host = plan.host_address(f"{MAILBOX}.0")
    with smtplib.SMTP(
        host, rn.submission_port, local_hostname="pc.probe", source_address=(plan.pc_address, 0)
    ) as smtp:
        smtp.starttls(context=tls or _unverified())
        smtp.login(user, password)
        smtp.sendmail(mail_from, rcpts, data)


def _unverified() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def received_tls(raw: bytes) -> list[tuple[str, str]]:
    """(host id, "TLSv1.3 TLS_AES_…" or "") per ``Received:`` header we wrote, oldest
    first: the TLS of each hop, as the receiving host recorded it."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    hops = []
    for value in reversed(msg.get_all("Received") or []):
        by = re.search(r"\bby \S+ \(([^)\s]+)\)", " ".join(value.split()))
        if by is None:
            continue
        tls = tls_of_received(value)
        hops.append((by.group(1), " ".join(tls) if tls else ""))
    return hops


def fetch(
    plan: AddressPlan, user: str, password: str, marker: bytes, timeout_s: float
) -> bytes | None:
    """Poll POP3 until a message whose headers contain ``marker`` is there; RETR + DELE it.

    Messages seen in an earlier poll are skipped by UIDL, new ones are looked at
    with ``TOP n 0`` (headers only), so a full maildrop does not slow the probe.
    """
    rn = plan.scenario.realnet
    host = plan.host_address(f"{MAILBOX}.0")
    deadline = time.monotonic() + timeout_s
    seen: set[bytes] = set()
    while time.monotonic() < deadline:
        pop = poplib.POP3(host, rn.pop3_port, timeout=10)
        try:
            pop.user(user)
            pop.pass_(password)
            _, listing, _ = pop.uidl()
            for line in reversed(listing):  # newest last in the listing
                number, uid = line.split(maxsplit=1)
                if uid in seen:
                    continue
                seen.add(uid)
                _, head, _ = pop.top(int(number), 0)
                if marker in b"\r\n".join(head):
                    _, lines, _ = pop.retr(int(number))
                    pop.dele(int(number))
                    pop.quit()
                    return b"\r\n".join(lines)
            pop.quit()
        finally:
            with contextlib.suppress(Exception):
                pop.close()
        time.sleep(POLL_INTERVAL_S)
    return None


def verdicts(raw: bytes) -> tuple[str, str, str, str]:
    """(spf, dkim, DKIM signer domain, Authentication-Results) from the message."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    ar = " ".join((msg.get("Authentication-Results") or "").split())
    spf = re.search(r"\bspf=(\w+)", ar)
    dkim = re.search(r"\bdkim=(\w+)", ar)
    sig = " ".join((msg.get("DKIM-Signature") or "").split())
    signer = re.search(r"\bd=([^;\s]+)", sig)
    return (
        spf.group(1) if spf else "none",
        dkim.group(1) if dkim else "none",
        signer.group(1) if signer else "",
        ar,
    )


def probe_once(scenario: Scenario, state_dir: Path, timeout_s: float = 30.0) -> ProbeResult:
    """Send one self-test mail and take it apart."""
    plan = AddressPlan(scenario)
    user, password, address = _user(scenario)
    trace_id = uuid.uuid4().hex[:16]
    data = self_test_message(address, trace_id)
    t0 = time.time()
    tls = client_context(state_dir) if ca_file(state_dir).exists() else None
    submit(plan, user, password, address, [address], data, tls)
    t_submitted = time.time()
    raw = fetch(plan, user, password, trace_id.encode(), timeout_s)
    t_received = time.time()
    if raw is None:
        raise TimeoutError(f"self-test mail {trace_id} did not arrive within {timeout_s} s")
    hops = _wait_for_traces(state_dir, trace_id)
    in_mailbox = [h.left for h in hops if h.outcome == "mailbox" and h.left]
    spf, dkim, signer, ar = verdicts(raw)
    # each receiving hop's TLS, matched to the trace records in arrival order
    tls_by_host: dict[str, list[str]] = {}
    for host, tls_used in received_tls(raw):
        tls_by_host.setdefault(host, []).append(tls_used)

    def hop_tls(host: str) -> str:
        seen = tls_by_host.get(host)
        return seen.pop(0) if seen else ""

    def ms(t: float | None) -> float | None:
        return None if t is None else round((t - t0) * 1000, 2)

    return ProbeResult(
        trace_id=trace_id,
        address=address,
        send_to_receive_s=t_received - t0,
        send_to_mailbox_s=(in_mailbox[0] - t0) if in_mailbox else None,
        submit_s=t_submitted - t0,
        spf=spf,
        dkim=dkim,
        dkim_signer=signer,
        authentication_results=ar,
        hops=[
            Hop(
                host=h.host,
                arrived_ms=ms(h.arrived) or 0.0,
                accepted_ms=ms(h.accepted),
                left_ms=ms(h.left),
                outcome=h.outcome,
                next_hop=h.next_hop,
                stages_ms={k: round(s.elapsed * 1000, 3) for k, s in h.stages.items()},
                tls=hop_tls(h.host) if h.outcome != "retrieved" else "",
            )
            for h in sorted(hops, key=lambda h: h.arrived)
        ],
    )


def _wait_for_traces(state_dir: Path, trace_id: str, timeout_s: float = 2.0) -> list[HopRecord]:
    """The hops' records; the last relay writes its line just after the next hop's 250."""
    deadline = time.monotonic() + timeout_s
    while True:
        hops = read_traces(state_dir, trace_id)
        # the hop before the mailbox logs after the mailbox's 250: wait for its line too
        complete = (
            all(h.left is not None for h in hops)
            and any(h.outcome == "mailbox" for h in hops)
            and any(h.next_hop.startswith(f"{MAILBOX}.") for h in hops)
        )
        if complete or time.monotonic() > deadline:
            return hops
        time.sleep(0.005)


def summarise(scenario: Scenario, results: list[ProbeResult]) -> dict[str, Any]:
    """Median and worst send-to-receive time of several probes, and the source's target."""
    times = [r.send_to_receive_s for r in results]
    return {
        "count": len(times),
        "p50_s": statistics.median(times),
        "max_s": max(times),
        "selftest_max_s": scenario.slo.selftest_max_s,
    }


def all_passed(results: list[ProbeResult]) -> bool:
    """Whether every probe's mail passed both SPF and DKIM."""
    return all(r.spf == "pass" and r.dkim == "pass" for r in results)
