"""The receiving side of a relay (Postfix's smtpd and cleanup; aiosmtpd's handler).

``Receiver`` holds the SMTP dialogue of one service: it makes the protocol
object of each connection (``realnet.relay.protocol``: session slots, AUTH,
long lines), decides who may connect (a stranger to a tier that takes mail
from its upstream only: 554 at connect; a client over the per-client
connection limit: 421), checks the client's certificate after STARTTLS where
the service asks for one (``handle_STARTTLS``: 554 to every command but QUIT),
checks logins (``AuthGuard``: worker threads, failed logins throttled per
client) and MAIL/RCPT (an authenticated sender only as themselves, 553 5.7.1;
who may relay; the policy's per-recipient refusals).
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
import ipaddress
import logging
import time
from collections import Counter
from collections.abc import Iterable

from aiosmtpd.smtp import SMTP, Envelope, LoginPassword, Session, TLSSetupException

from mailgate.realnet.relay.authguard import AuthGuard
from mailgate.realnet.relay.config import RelayConfig
from mailgate.realnet.relay.intake import Intake, client_ip, incoming, reverse_path
from mailgate.realnet.relay.message import domain_of
from mailgate.realnet.relay.policy import Policy
from mailgate.realnet.relay.protocol import SmtpProtocol
from mailgate.realnet.relay.syntax import ROUTING_REPLY, routing_in
from mailgate.realnet.relay.tls import client_refusal

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
        self.handle_STARTTLS = receiver.handle_STARTTLS


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
        ok = await self.guard.verify(client_ip(session), self.config.authenticate, login, password)
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
        ip = client_ip(session)
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
        ip = client_ip(session)
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

    def handle_STARTTLS(self, server: SMTP, session: Session, envelope: Envelope) -> bool:
        """After the handshake (aiosmtpd calls this synchronously): whether the client's
        certificate may send here. False makes aiosmtpd answer every command but QUIT
        with 554 (RFC 3207 4.1), in the words ``SmtpProtocol.tls_refusal`` gives it."""
        names = self.config.client_cert_names
        if not names:
            return True
        refusal = client_refusal((session.ssl or {}).get("peercert"), names)
        if refusal is None:
            return True
        log.warning("client [%s] refused after STARTTLS: %s", client_ip(session), refusal)
        server.tls_refusal = refusal  # type: ignore[attr-defined]
        return False

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


def owns(login: str, address: str, config: RelayConfig) -> bool:
    """Whether the user ``login`` may use ``address`` as envelope sender: their own
    address in one of our domains (``user`` or ``user@domain``), or the null sender."""
    if reverse_path(address) == "":
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


def _in(ip: str, networks: Iterable[ipaddress.IPv4Network]) -> bool:
    addr = ipaddress.ip_address(ip)
    return any(addr in n for n in networks)
