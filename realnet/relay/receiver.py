"""The receiving side of a relay (Postfix's smtpd and cleanup; aiosmtpd's handler).

``Receiver`` holds the SMTP dialogue of one service: it makes the protocol
object of each connection (``realnet.relay.protocol``: session slots, AUTH,
long lines), decides who may connect (a stranger to a tier that takes mail
from its upstream only: 554 at connect; a client over the per-client
connection limit: 421), checks logins (``AuthGuard``: worker threads, failed
logins throttled per client) and MAIL/RCPT (an authenticated sender only as
themselves, 553 5.7.1; who may relay; the policy's per-recipient refusals).
On DATA it hands the message to ``Intake``, which adds the trace header,
``Received:`` and, on submission, the ``X-Mailgate-Submitted`` mark, enforces
the hop count, runs the policy, and then quarantines, files locally (mailbox
server) or writes the message durably to the spool — written, fsynced,
renamed, directory fsynced — and only then answers 250 and tells the queue
manager (``queued``).

Protocol hygiene: SIZE is advertised and enforced (552); more ``Received:``
headers than ``limits.hopcount_limit`` is a loop (554 5.4.6); recipients are
accepted only for our domains or from clients allowed to relay (550 5.7.1:
never an open relay), and from clients that may not relay never with
sender-specified routing (``user%host@``, ``host!user@``, ``"u@h"@``, source
routes: 550 5.7.1); malformed HELO, MAIL and RCPT arguments (invalid UTF-8,
control characters, no angle brackets) get a permanent 501
(``realnet.relay.syntax``), a NUL in the message 554 5.6.0; bare CR or LF in
DATA is normalised to CRLF (aiosmtpd ≥ 1.4.6 ends DATA only on CRLF.CRLF, so a
bare-LF ``\\n.\\n`` cannot split a message — no SMTP smuggling); only an
internal error of ours answers 451, never 500.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable

from aiosmtpd.smtp import SMTP, Envelope, LoginPassword, Session, TLSSetupException

from mailgate.realnet.relay.authguard import AuthGuard
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
from mailgate.realnet.relay.protocol import SmtpProtocol
from mailgate.realnet.relay.spool import Spool, SpoolEntry
from mailgate.realnet.relay.syntax import ROUTING_REPLY, routing_in
from mailgate.realnet.relay.tls import describe
from mailgate.realnet.relay.tracing import Tracer, record_dict
from mailgate.sim.scenario.records import HopRecord, StageSpan

log = logging.getLogger(__name__)

#: the answer to anything that went wrong on our side: temporary, so the client retries
INTERNAL_ERROR = "451 4.3.0 Internal error, try again later"


class _Hooks:
    """The handler aiosmtpd sees: only the hooks, because aiosmtpd runs
    ``inspect.getmembers`` over its handler on every connection."""

    def __init__(self, receiver: Receiver) -> None:
        self.handle_MAIL = receiver.handle_MAIL
        self.handle_RCPT = receiver.handle_RCPT
        self.handle_DATA = receiver.handle_DATA
        self.handle_exception = receiver.handle_exception


class Receiver:
    """The SMTP dialogue of one service: connections, AUTH, MAIL and RCPT checks."""

    def __init__(self, config: RelayConfig, policy: Policy, intake: Intake) -> None:
        self.config = config
        self.policy = policy
        self.intake = intake
        self._auth_cache: dict[tuple[str, str], bool] = {}
        self._hooks = _Hooks(self)
        #: open connections per client address (the per-client connection limit)
        self._connections: Counter[str] = Counter()
        #: sessions admitted and not yet ended (the host's session limit)
        self._sessions = 0
        #: DATA commands being handled: a graceful stop lets them get their answer
        self._in_data = 0
        #: set by a graceful stop: no new transaction starts
        self.closing = False
        self.guard: AuthGuard | None = None
        if config.authenticate is not None:
            self.guard = config.auth_guard or AuthGuard()

    def protocol(self) -> SMTP:
        """The protocol object of one new connection (the server's factory)."""
        c = self.config
        offers_auth = c.authenticate is not None
        protocol = SmtpProtocol(
            self._hooks,
            hostname=c.hostname,
            ident="mailgate realnet",
            data_size_limit=c.message_size_limit,
            timeout=c.smtpd_timeout_s,
            enable_SMTPUTF8=True,
            auth_required=offers_auth,
            # with TLS, AUTH only after STARTTLS (538 5.7.11 before, and not in EHLO);
            # without (a bare relay in a test), AUTH is listed where it is offered
            auth_require_tls=c.tls_context is not None or not offers_auth,
            tls_context=c.tls_context,
            require_starttls=c.require_tls,
            loop=asyncio.get_running_loop(),
        )
        protocol.admit = self._admit
        protocol.release = self._release
        protocol.check_login = self._check_login if offers_auth else None
        return protocol

    async def drain(self, deadline: float) -> None:
        """Until ``deadline`` (monotonic): wait for the messages being received to get
        their answer, so none is spooled here and then sent again by its client."""
        while self._in_data and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    def close(self) -> None:
        """Stop the login checker's thread if the guard is the service's own."""
        if self.guard is not None and self.config.auth_guard is None:
            self.guard.close()

    # -- connections

    def _admit(self, ip: str) -> str | None:
        """The refusal of a new connection from ``ip``, or None (it is counted)."""
        c = self.config
        if c.allowed_clients and not _in(ip, c.allowed_clients):
            # a tier that takes mail from its upstream only (smtpd_client_restrictions)
            return f"554 5.7.1 {c.hostname} Client host [{ip}] rejected: access denied"
        if c.client_connection_limit and self._connections[ip] >= c.client_connection_limit:
            return f"421 4.7.0 {c.hostname} Error: too many connections from {ip}"
        if c.session_limit and self._sessions >= c.session_limit:
            # every slot taken: say so (RFC 3463 X.3.2), where silence would look like a
            # dead host to the client
            return f"421 4.3.2 {c.hostname} Service not available: too many sessions"
        self._connections[ip] += 1
        self._sessions += 1
        return None

    def _release(self, ip: str) -> None:
        self._sessions -= 1
        self._connections[ip] -= 1
        if self._connections[ip] <= 0:
            del self._connections[ip]

    # -- aiosmtpd hooks

    async def _check_login(
        self, session: Session, mechanism: str, data: LoginPassword
    ) -> bool | None:
        """True/False, or None if the client is throttled (``AuthGuard``)."""
        if self.config.authenticate is None or self.guard is None:
            return False
        login = data.login.decode("utf-8", "replace")
        password = data.password.decode("utf-8", "replace")
        # scrypt costs ~50 ms; like Dovecot's auth cache, remember verified pairs
        key = (login, password)
        if self._auth_cache.get(key):
            return True
        ok = await self.guard.verify(_client_ip(session), self.config.authenticate, login, password)
        if ok:
            if len(self._auth_cache) > 10_000:  # bounded: a flood of logins cannot grow it
                self._auth_cache.clear()
            self._auth_cache[key] = True
        return ok

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.closing:
            # a graceful stop: no new transaction on a connection still open (the client
            # tries a twin or later; Postfix's smtpd answers 421 when it stops)
            return f"421 4.3.2 {self.config.hostname} Service shutting down, try again later"
        ip = _client_ip(session)
        if self.config.allowed_clients and not _in(ip, self.config.allowed_clients):
            return "550 5.7.1 Client host rejected: access denied"
        if session.authenticated and not owns(session.auth_data, address, self.config):
            # Postfix reject_sender_login_mismatch: a user sends as themselves only
            return (
                f"553 5.7.1 <{address}>: Sender address rejected: "
                f"not owned by user {session.auth_data}"
            )
        envelope.mail_from = address  # "<>" for a bounce: aiosmtpd needs it non-empty
        envelope.mail_options.extend(options)
        envelope.mail_at = time.time()  # type: ignore[attr-defined]
        envelope.mail_cpu = time.thread_time()  # type: ignore[attr-defined]
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        c = self.config
        accepted = getattr(envelope, "rcpt_count", 0)
        if c.recipient_limit and accepted >= c.recipient_limit:
            return "452 4.5.3 Error: too many recipients"  # Postfix smtpd_recipient_limit
        if address.lower() == "postmaster" and c.postmaster_address:
            # RFC 5321 4.5.1: mail to "postmaster" without a domain must be accepted; it
            # is our postmaster (Postfix appends $myorigin the same way)
            address = c.postmaster_address
        ip = _client_ip(session)
        local = domain_of(address) in c.local_domains
        may_relay = bool(session.authenticated) or _in(ip, c.relay_clients)
        if not local and not may_relay:
            return "550 5.7.1 Relay access denied"
        if local and not may_relay and routing_in(address):
            # user%host@ours, host!user@ours, "user@host"@ours: a relay through us by
            # another name (Postfix allow_untrusted_routing = no)
            return ROUTING_REPLY.format(what=f"<{address}>")
        try:
            refusal = await self.policy.check_rcpt(incoming(c.host_id, session, envelope), address)
        except Exception:
            log.exception("check_rcpt failed")
            return INTERNAL_ERROR
        if refusal:
            return refusal
        envelope.rcpt_count = accepted + 1  # type: ignore[attr-defined]
        if not _duplicate(envelope, address, c.local_domains):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(options)
        return "250 2.1.5 Ok"

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):  # the client's handshake, not our error
            log.warning("TLS handshake failed: %r", error.__cause__)
            return INTERNAL_ERROR  # not sent: aiosmtpd closes the connection
        log.error("internal error: %r", error)
        return INTERNAL_ERROR

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self._in_data += 1
        try:
            return await self.intake.receive(session, envelope)
        except Exception:
            log.exception("handle_DATA failed")
            return INTERNAL_ERROR
        finally:
            self._in_data -= 1


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
        # RFC 3848: ESMTPS / ESMTPSA over TLS; Postfix's "(using ...)" names protocol and cipher
        with_ = "ESMTP" + ("S" if tls else "") + ("A" if msg.authenticated else "")
        using = f"\t(using {tls})\r\n" if tls else ""
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
        client_ip=_client_ip(session),
        helo=session.host_name or "",
        mail_from=_reverse_path(envelope.mail_from),
        rcpt_tos=list(envelope.rcpt_tos),
        data=b"",
        trace_id="",
        flow="inbound",
        authenticated=session.auth_data if session.authenticated else None,
    )


def owns(login: str, address: str, config: RelayConfig) -> bool:
    """Whether the user ``login`` may use ``address`` as envelope sender: their own
    address in one of our domains (``user`` or ``user@domain``), or the null sender."""
    if _reverse_path(address) == "":
        return True
    local, _, domain = address.rpartition("@")
    user, _, login_domain = login.partition("@")
    if domain.lower() not in config.local_domains:
        return False
    if login_domain and login_domain.lower() != domain.lower():
        return False
    return local.lower() == user.lower()


def _duplicate(envelope: Envelope, address: str, local_domains: frozenset[str]) -> bool:
    """Whether the transaction already has this recipient (then it is delivered once, as
    Postfix's cleanup collapses duplicates). Domains compare in any case, and so do local
    parts of our own domains (our mailboxes are case-blind); other local parts exactly."""
    local, _, domain = address.rpartition("@")
    domain = domain.lower()
    key = f"{local.lower() if domain in local_domains else local}@{domain}"
    seen: set[str] | None = getattr(envelope, "rcpt_keys", None)
    if seen is None:
        seen = envelope.rcpt_keys = set()  # type: ignore[attr-defined]
    if key in seen:
        return True
    seen.add(key)
    return False


def _client_ip(session: Session) -> str:
    return session.peer[0] if session.peer else ""


def _in(ip: str, networks: Iterable[ipaddress.IPv4Network]) -> bool:
    addr = ipaddress.ip_address(ip)
    return any(addr in n for n in networks)


def _reverse_path(address: str | None) -> str:
    """The null reverse-path (``MAIL FROM:<>``) is "" from here on."""
    return "" if not address or address.strip() in ("<>", "") else address
