"""What a relay does with a message after DATA, up to the durable 250 (Postfix's
cleanup): ``Intake`` adds the trace header, ``Received:`` and, on submission, the
``X-Mailgate-Submitted`` mark, enforces the hop count, runs the policy, and then
quarantines, files locally (mailbox server) or writes the message durably to the
spool — written, fsynced, renamed, directory fsynced — and only then answers 250 and
tells the queue manager. ``incoming`` is the message as a policy sees it.
"""

from __future__ import annotations

import email.utils
import logging
import time
import uuid
from collections.abc import Callable

from aiosmtpd.smtp import Envelope, Session

from mailgate.realnet.relay.config import RelayConfig
from mailgate.realnet.relay.headers import SUBMITTED_HEADER, drop_header, submitted_header
from mailgate.realnet.relay.message import (
    count_received,
    domain_of,
    normalise_line_ends,
    parse_trace,
    trace_header,
)
from mailgate.realnet.relay.policy import Incoming, Policy, in_thread
from mailgate.realnet.relay.spool import Spool, SpoolEntry
from mailgate.realnet.relay.tls import client_note, describe
from mailgate.realnet.relay.tracing import Tracer, record_dict
from mailgate.sim.scenario.records import HopRecord, StageSpan

log = logging.getLogger(__name__)


class Intake:
    """What happens to a message after DATA, up to the durable 250 (Postfix's cleanup)."""

    def __init__(
        self,
        config: RelayConfig,
        policy: Policy,
        tracer: Tracer,
        spool: Spool | None,
        queued: Callable[[SpoolEntry], None],
    ) -> None:
        self.config = config
        self.policy = policy
        self.tracer = tracer
        #: None on the mailbox server, which files locally instead
        self.spool = spool
        #: told of every message durably spooled (the queue manager delivers it)
        self.queued = queued
        self._quarantine_spool: Spool | None = None

    def close(self) -> None:
        if self._quarantine_spool is not None:
            self._quarantine_spool.close()

    async def receive(self, session: Session, envelope: Envelope) -> str:
        """Trace, check and store the message of one DATA; the reply to send."""
        c = self.config
        t_data, cpu_data = time.time(), time.thread_time()
        arrived = getattr(session, "connected_at", t_data)
        cpu0 = getattr(session, "connected_cpu", cpu_data)
        # the connection's TLS handshake belongs to its first message only
        tls_span = (
            None if getattr(session, "messages_done", 0) else getattr(session, "tls_span", None)
        )
        if getattr(session, "messages_done", 0):
            # later transactions on a reused connection start at their MAIL
            arrived = getattr(envelope, "mail_at", arrived)
            cpu0 = getattr(envelope, "mail_cpu", cpu0)
        session.messages_done = getattr(session, "messages_done", 0) + 1  # type: ignore[attr-defined]
        raw = envelope.original_content or b""
        data = normalise_line_ends(raw)
        msg = incoming(c.host_id, session, envelope)
        if b"\x00" in data:
            # RFC 5322 2.2/3.5 and RFC 6152 allow no NUL in a message, 8BITMIME or not
            return self._reject(
                HopRecord(uuid.uuid4().hex[:16], msg.flow, c.host_id, len(data) / 1024, arrived),
                "554 5.6.0 Message content rejected: NUL character in the message",
            )
        trace = parse_trace(data)
        if trace is None:
            flow = self._first_flow(msg)
            trace = (uuid.uuid4().hex[:16], flow)
            data = trace_header(*trace) + data
        msg.trace_id, msg.flow = trace
        record = HopRecord(
            msg_id=msg.trace_id,
            flow=msg.flow,
            host=c.host_id,
            size_kb=len(data) / 1024,
            arrived=arrived,
        )
        # CPU: the event-loop thread's over the span, exact at idle (calibration fits
        # the lowest load) and an over-estimate when sessions interleave
        receive = "submission" if msg.authenticated else "smtp_receive"
        if tls_span is not None:
            # STARTTLS → end of handshake is ``tls``; the dialogue after it (and the CPU
            # of the greeting and first EHLO before it) stays the receive stage
            t_tls, t_done, cpu_tls = tls_span
            record.stages["tls"] = StageSpan(t_tls, t_done, cpu_tls)
            record.stages[receive] = StageSpan(t_done, t_data, max(cpu_data - cpu0 - cpu_tls, 0.0))
        else:
            record.stages[receive] = StageSpan(arrived, t_data, cpu_data - cpu0)
        msg.record = record
        if count_received(data) >= c.hopcount_limit:
            return self._reject(record, "554 5.4.6 Too many hops: mail loop detected")
        entry_id = SpoolEntry.new_id()
        if msg.authenticated:
            # the mark Gateway3 signs by: ours only (a client's copy is dropped first)
            data = submitted_header(c.hostname, msg.authenticated) + drop_header(
                data, SUBMITTED_HEADER
            )
        data = self._received_header(session, msg, entry_id) + data
        msg.data = data
        verdict = await self.policy.check(msg)
        if verdict is not None and verdict.action == "reject":
            return self._reject(record, verdict.reply)
        data = b"".join(msg.prepend) + msg.data
        if verdict is not None and verdict.action == "quarantine":
            await self._quarantine(entry_id, msg, data, verdict.reason)
            record.accepted = record.left = time.time()
            record.outcome = "quarantined"
            self.tracer.write(record)
            return f"250 2.0.0 Ok: queued as {entry_id}"
        if c.local_delivery is not None:
            return await self._deliver_locally(msg, data, record, entry_id)
        assert self.spool is not None
        entry = SpoolEntry(
            id=entry_id,
            mail_from=msg.mail_from,
            rcpt_tos=list(msg.rcpt_tos),
            data=data,
            trace_id=msg.trace_id,
            flow=msg.flow,
        )
        t0, c0 = time.time(), time.thread_time()
        # the record travels in the spool file, so a recovered message still gets its trace
        entry.record = record_dict(record)
        entry.record["accepted"] = t0
        await self.spool.put(entry)
        record.accepted = time.time()
        record.stages["spool"] = StageSpan(t0, record.accepted, time.thread_time() - c0)
        entry.record = record_dict(record)
        self.queued(entry)
        return f"250 2.0.0 Ok: queued as {entry_id}"

    def _first_flow(self, msg: Incoming) -> str:
        if msg.authenticated is None:
            return "inbound"
        local = all(domain_of(r) in self.config.local_domains for r in msg.rcpt_tos)
        return "internal" if local else "outbound"

    def _reject(self, record: HopRecord, reply: str) -> str:
        record.left = time.time()
        record.outcome = "rejected"
        self.tracer.write(record)
        return reply

    def _received_header(self, session: Session, msg: Incoming, entry_id: str) -> bytes:
        c = self.config
        tls = describe((session.ssl or {}).get("ssl_object") if session.ssl else None)
        # RFC 3848: ESMTPS / ESMTPSA over TLS; Postfix's "(using ...)" names protocol and
        # cipher, and the next line the client's verified certificate, if it sent one
        with_ = "ESMTP" + ("S" if tls else "") + ("A" if msg.authenticated else "")
        using = f"\t(using {tls})\r\n" if tls else ""
        note = client_note((session.ssl or {}).get("peercert")) if tls else ""
        using += f"\t{note}\r\n" if note else ""
        rcpt = f"\r\n\tfor <{msg.rcpt_tos[0]}>" if len(msg.rcpt_tos) == 1 else ""
        return (
            f"Received: from {msg.helo or 'unknown'} ([{msg.client_ip}])\r\n{using}"
            f"\tby {c.hostname} ({c.host_id}) with {with_} id {entry_id}{rcpt};\r\n"
            f"\t{email.utils.formatdate(localtime=False)}\r\n"
        ).encode()

    async def _quarantine(self, entry_id: str, msg: Incoming, data: bytes, reason: str) -> None:
        if self._quarantine_spool is None:
            folder = self.config.state_dir / "quarantine" / self.config.host_id
            self._quarantine_spool = Spool(folder, fsync=self.config.fsync)
        meta = SpoolEntry(
            id=entry_id,
            mail_from=msg.mail_from,
            rcpt_tos=msg.rcpt_tos,
            data=data,
            trace_id=msg.trace_id,
            flow=msg.flow,
            record={"reason": reason},
        )
        await self._quarantine_spool.put(meta)

    async def _deliver_locally(
        self, msg: Incoming, data: bytes, record: HopRecord, entry_id: str
    ) -> str:
        assert self.config.local_delivery is not None
        t0 = time.time()
        cpu = 0.0
        for rcpt in msg.rcpt_tos:
            user = rcpt.partition("@")[0]
            _, used = await in_thread(self.config.local_delivery, user, data)
            cpu += used
        record.accepted = record.left = time.time()
        record.stages["maildir"] = StageSpan(t0, record.left, cpu)
        record.outcome = "mailbox"
        self.tracer.write(record)
        return f"250 2.0.0 Ok: delivered as {entry_id}"


def incoming(host_id: str, session: Session, envelope: Envelope) -> Incoming:
    """The message being received as a policy sees it (no bytes yet before DATA)."""
    return Incoming(
        host=host_id,
        client_ip=client_ip(session),
        helo=session.host_name or "",
        mail_from=reverse_path(envelope.mail_from),
        rcpt_tos=list(envelope.rcpt_tos),
        data=b"",
        trace_id="",
        flow="inbound",
        authenticated=session.auth_data if session.authenticated else None,
    )


def client_ip(session: Session) -> str:
    return session.peer[0] if session.peer else ""


def reverse_path(address: str | None) -> str:
    """The null reverse-path (``MAIL FROM:<>``) is "" from here on."""
    return "" if not address or address.strip() in ("<>", "") else address
