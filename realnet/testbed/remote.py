"""The remote Internet on loopback: MX sinks per remote domain and remote senders.

A sink listens on its domain's MX address (``AddressPlan.remote_mx_address``)
and records what it got (``remote/<domain>.jsonl``, where a bounce — null
reverse-path — is marked ``"bounce": true`` (``bounces``), and the message file under
``remote/<domain>/``, plus a ``HopRecord`` in ``traces/remote.jsonl``). How it
behaves comes from the scenario: it answers after ``internet.remote_mta_s``,
temp-fails a first attempt with ``internet.temp_fail_prob``, and is down
during ``failures.remote_outage`` windows (hours after start, scaled by
``realnet.time_scale``). Tests steer a sink at run time through
``remote/control.json`` (``set_behaviour``): ``{"domain": {"mode": "tempfail"
| "reject" | "down" | "accept" | "slow_ack", "until": epoch}}``, read on every
connection (``slow_ack``: the message is kept at once, the 250 comes late).

Each sink offers STARTTLS with a certificate of the local CA (which our relays
do not verify for a remote MX: opportunistic TLS, as on the Internet).

Remote senders send inbound mail from their domain's sender address
(``AddressPlan.remote_sender_address``, the client socket is bound to it), so
Gateway0's SPF check passes or fails exactly as the DNS zone says.
"""

from __future__ import annotations

import asyncio
import json
import os
import smtplib
import ssl
import time
from pathlib import Path
from typing import Any

import numpy as np
from aiosmtpd.smtp import SMTP, Envelope, Session

from mailgate.realnet.addresses import AddressPlan
from mailgate.realnet.relay.message import normalise_line_ends, parse_trace
from mailgate.realnet.relay.smtpmemory import LeanSmtp
from mailgate.realnet.relay.tracing import Tracer
from mailgate.realnet.services.tls import server_context
from mailgate.realnet.testbed.tls import make_ca, remote_id
from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.records import HopRecord, StageSpan

CONTROL_FILE = "control.json"


def set_behaviour(
    state_dir: Path, domain: str, mode: str, seconds: float = 1e9, ack_delay_s: float = 2.0
) -> None:
    """Make ``domain``'s sink ``tempfail``, ``reject``, be ``down`` or ``accept`` a while,
    or ``slow_ack``: keep each message at once and answer 250 ``ack_delay_s`` later."""
    path = Path(state_dir) / "remote" / CONTROL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    control = json.loads(path.read_text()) if path.exists() else {}
    control[domain] = {"mode": mode, "until": time.time() + seconds, "ack_delay_s": ack_delay_s}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(control))
    os.replace(tmp, path)


def received(state_dir: Path, domain: str) -> list[dict[str, Any]]:
    """What ``domain``'s sink has accepted so far."""
    path = Path(state_dir) / "remote" / f"{domain}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def bounces(state_dir: Path, domain: str) -> list[dict[str, Any]]:
    """The bounces (null reverse-path) ``domain``'s sink has accepted so far."""
    return [row for row in received(state_dir, domain) if row.get("bounce")]


class _SinkHandler:
    def __init__(self, sink: RemoteSink, domain: str) -> None:
        self.sink = sink
        self.domain = domain

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        mode = self.sink.mode(self.domain)
        if mode == "down":
            # a site that goes down also drops the connections a sender keeps cached
            # (connection_made refuses only new ones): 421, then the channel closes
            asyncio.get_running_loop().call_soon(server.transport.close)
            return "421 4.3.2 Service not available, closing channel (simulated outage)"
        if mode == "reject":
            return "550 5.1.1 No such user here (simulated remote refusal)"
        if mode == "tempfail" or (
            mode == "accept" and self.sink.rng.random() < self.sink.temp_fail_prob
        ):
            return "451 4.7.1 Try again later (simulated remote failure)"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        t0 = time.time()
        if self.sink.mode(self.domain) == "slow_ack":
            # the message is kept before the answer, as a real MTA commits before its 250:
            # a sender that gives up waiting sends it again and the sink holds two copies
            # (SMTP is at-least-once; tests count the duplicates a stop or crash makes)
            self.sink.record(self.domain, session, envelope, t0)
            await asyncio.sleep(self.sink.ack_delay(self.domain))
            return "250 2.0.0 Ok: accepted by the remote sink"
        delay = float(self.sink.scenario.internet.remote_mta_s.sample(self.sink.rng))
        if delay > 0:
            await asyncio.sleep(min(delay, 30.0))
        self.sink.record(self.domain, session, envelope, t0)
        return "250 2.0.0 Ok: accepted by the remote sink"


class _SinkProtocol(LeanSmtp, SMTP):
    def __init__(self, sink: RemoteSink, domain: str, **kw: Any) -> None:
        super().__init__(_SinkHandler(sink, domain), **kw)
        self.sink = sink
        self.domain = domain

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.sink.mode(self.domain) == "down":
            transport.close()  # like a refused connection: the sender tries elsewhere
            return
        super().connection_made(transport)


class RemoteSink:
    """Every remote domain's MX sink in one process."""

    def __init__(
        self, scenario: Scenario, plan: AddressPlan, state_dir: Path, skip: tuple[str, ...] = ()
    ) -> None:
        self.skip = skip  # domains whose MX is a real MTA (a stock Postfix in a test)
        self.scenario = scenario
        self.plan = plan
        self.state_dir = Path(state_dir)
        self.dir = Path(state_dir) / "remote"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tracer = Tracer(Path(state_dir), "remote")
        self.rng = np.random.default_rng(scenario.scenario.seed)
        self.temp_fail_prob = scenario.internet.temp_fail_prob
        self.started = time.time()
        self._servers: list[asyncio.AbstractServer] = []
        self._control: tuple[float, dict[str, Any]] = (0.0, {})

    def _rule(self, domain: str) -> dict[str, Any] | None:
        """The test's current rule for ``domain`` (``remote/control.json``), if any."""
        path = self.dir / CONTROL_FILE
        try:
            mtime = path.stat().st_mtime
            if mtime != self._control[0]:
                self._control = (mtime, json.loads(path.read_text()))
        except (OSError, ValueError):
            pass
        rule = self._control[1].get(domain)
        return rule if rule and time.time() < rule.get("until", 0) else None

    def ack_delay(self, domain: str) -> float:
        rule = self._rule(domain) or {}
        return min(30.0, float(rule.get("ack_delay_s", 2.0)))

    def mode(self, domain: str) -> str:
        rule = self._rule(domain)
        if rule:
            return str(rule["mode"])
        hours = (time.time() - self.started) / 3600 / self.scenario.realnet.time_scale
        for outage in self.scenario.failures.remote_outage:
            if outage.domain == domain and 0 <= hours - outage.start_h < outage.duration_h:
                return "down"
        return "accept"

    def record(self, domain: str, session: Session, envelope: Envelope, t0: float) -> None:
        data = normalise_line_ends(envelope.original_content or b"")
        trace = parse_trace(data) or ("", "outbound")
        folder = self.dir / domain
        folder.mkdir(exist_ok=True)
        name = f"{time.time_ns()}-{len(data)}.eml"
        (folder / name).write_bytes(data)
        row = {
            "time": time.time(),
            "trace_id": trace[0],
            "mail_from": envelope.mail_from,
            # a DSN (MAIL FROM:<>): tests look for bounces that reached the sender
            "bounce": envelope.mail_from in ("<>", ""),
            "rcpt_tos": envelope.rcpt_tos,
            "client": session.peer[0] if session.peer else "",
            "size": len(data),
            "file": str(folder / name),
        }
        with (self.dir / f"{domain}.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")
        now = time.time()
        hop = HopRecord(
            msg_id=trace[0],
            flow=trace[1],
            host=f"remote:{domain}",
            size_kb=len(data) / 1024,
            arrived=t0,
            accepted=now,
            left=now,
            outcome="remote",
            stages={"deliver": StageSpan(t0, now)},
        )
        self.tracer.write(hop)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        port = self.scenario.realnet.smtp_port
        make_ca(self.scenario, self.plan, self.state_dir)  # kept if the testbed made it
        for domain in self.plan.remote_domains:
            if domain in self.skip:
                continue
            address = self.plan.remote_mx_address(domain)
            # like most MXs on the Internet: STARTTLS offered, with a certificate our
            # relays do not check (opportunistic TLS)
            tls = server_context(self.state_dir, remote_id(domain))

            def factory(domain: str = domain, tls: ssl.SSLContext = tls) -> SMTP:
                return _SinkProtocol(
                    self,
                    domain,
                    hostname=f"mx.{domain}",
                    enable_SMTPUTF8=True,
                    tls_context=tls,
                    loop=asyncio.get_running_loop(),
                )

            self._servers.append(
                await loop.create_server(factory, address, port, reuse_address=True)
            )

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        self.tracer.close()


def send_inbound(
    plan: AddressPlan,
    domain: str,
    rcpt_tos: list[str],
    data: bytes,
    *,
    mail_from: str | None = None,
    target: str | None = None,
    timeout: float = 10.0,
) -> dict[str, tuple[int, bytes]]:
    """Send as ``domain``'s MTA from its own address to our MX (Gateway0 host 0 by default).

    Returns smtplib's refused-recipients dict; raises ``smtplib.SMTPException``
    subclasses for refusals (e.g. ``SMTPDataError`` with code 550 on SPF fail).
    """
    scenario = plan.scenario
    target = target or plan.host_address(f"{scenario.mx}.0")
    source = plan.remote_sender_address(domain)
    with smtplib.SMTP(
        target,
        scenario.realnet.smtp_port,
        local_hostname=f"mta.{domain}",
        source_address=(source, 0),
        timeout=timeout,
    ) as client:
        return client.sendmail(mail_from or f"sender@{domain}", rcpt_tos, data)
