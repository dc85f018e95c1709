"""aiosmtpd's SMTP protocol as our relays speak it, one object per connection.

What it changes from aiosmtpd:

- who may connect is decided at connect, before a session slot is taken: a
  client the service does not accept gets ``554 5.7.1`` as its greeting, one
  over the per-client connection limit ``421 4.7.0``, one that finds every
  session slot taken ``421 4.3.2``, and the connection is closed (Postfix's
  ``smtpd_client_restrictions`` and ``smtpd_client_connection_count_limit``;
  silence would make the MX look dead);
- a client silent for ``smtpd_timeout`` while we wait for it gets ``421
  4.4.2 … Error: timeout exceeded`` and is disconnected, as from Postfix;
  time we spend on its message (checks, the spool) is not its silence;
- AUTH exists only where a service authenticates (submission): elsewhere EHLO
  lists no AUTH and the command gets ``502 5.5.1``; the password check is
  awaited (``Receiver.authenticate``: worker threads, throttled) instead of
  aiosmtpd's synchronous call on the event loop;
- DATA lines up to ``DATA_LINE_LIMIT`` bytes are accepted (aiosmtpd refuses
  over 1,000); longer ones get ``552 5.3.4`` with a text that says why;
- malformed HELO, MAIL and RCPT arguments get a permanent answer
  (``realnet.relay.syntax``), plain ``<local@domain>`` paths a fast parser;
- STARTTLS (``realnet.relay.tls``): where it is required, commands before it get
  ``530 5.7.0``; where the client's certificate is not enough, every command after
  it but QUIT gets ``554 5.7.0``/``554 5.7.1`` (RFC 3207 4.1) with the reason; the
  session's receive time still counts from the TCP connect.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, syntax

from mailgate.realnet.relay.config import DATA_LINE_LIMIT
from mailgate.realnet.relay.smtpmemory import LeanSmtp
from mailgate.realnet.relay.syntax import helo_fault, path_fault
from mailgate.realnet.relay.tls import (
    AIOSMTPD_LACK_OF_SECURITY,
    AIOSMTPD_MUST_STARTTLS,
    MUST_STARTTLS,
)

#: ``<local@domain>`` in its plain form: the common case, parsed without the email package.
#: Both sides are dot-atoms (RFC 5322 3.2.3: no empty part); anything else (``<0@.>``,
#: ``<a..b@c>``) goes to aiosmtpd's own parser, which the fuzz tests hold this one to
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9-]+"
_SIMPLE_PATH = re.compile(rf"<({_ATEXT}(?:\.{_ATEXT})*@{_LABEL}(?:\.{_LABEL})*)>")

#: aiosmtpd's reply to an over-long DATA line, and ours in its place
_AIOSMTPD_TOO_LONG = "500 Line too long"
LINE_TOO_LONG = f"552 5.3.4 Message line too long: a line exceeds {DATA_LINE_LIMIT} bytes"

#: Postfix's answer to AUTH where it is not offered
AUTH_NOT_OFFERED = "502 5.5.1 Error: authentication not enabled"
#: a client over its failed-login limit (Postfix anvil: 421 4.7.0 and disconnect)
AUTH_THROTTLED = "421 4.7.0 Error: too many failed authentication attempts, try again later"


class _Pending:
    """Credentials aiosmtpd collected, waiting for the asynchronous check."""

    def __init__(self, mechanism: str, credentials: LoginPassword) -> None:
        self.mechanism = mechanism
        self.credentials = credentials


class SmtpProtocol(LeanSmtp, SMTP):
    """aiosmtpd's SMTP with connect-time admission, asynchronous AUTH and long lines."""

    # the StreamReader limit: DATA lines (and a command line before its own size check)
    line_length_limit = DATA_LINE_LIMIT + 2

    #: ``admit(ip) -> refusal or None`` at connect; ``release(ip)`` when the connection ends
    admit: Callable[[str], str | None] | None = None
    release: Callable[[str], None] | None = None
    #: ``check(session, mechanism, credentials) -> True/False/None (throttled)``; None = no AUTH
    check_login: Callable[[Any, str, LoginPassword], Awaitable[bool | None]] | None = None
    #: after STARTTLS, why the client's certificate is not enough (``Receiver.handle_STARTTLS``)
    tls_refusal = ""

    # -- connections

    #: handler work in progress (checks, the spool, a password check): not the client's
    #: silence, so the idle timeout waits for it
    _busy = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        before = self.session
        super().connection_made(transport)
        if self.session is None:
            return
        if before is not None and self._original_transport is not None:
            # STARTTLS done: aiosmtpd starts a fresh session (RFC 3207 4.2), but the
            # message's receive time and CPU still count from the TCP connect, so the
            # handshake is part of the receive stage, as it is of the model's
            self.session.connected_at = getattr(before, "connected_at", time.time())  # type: ignore[attr-defined]
            self.session.connected_cpu = getattr(before, "connected_cpu", time.thread_time())  # type: ignore[attr-defined]
            return
        self.session.connected_at = time.time()  # type: ignore[attr-defined]
        self.session.connected_cpu = time.thread_time()  # type: ignore[attr-defined]

    # -- the idle timeout (Postfix smtpd_timeout): time without input while we wait for it

    def data_received(self, data: bytes) -> None:
        self._reset_timeout()  # aiosmtpd resets only per command: a long DATA is not idle
        super().data_received(data)

    def _timeout_cb(self) -> None:
        if self.transport is None:  # the connection ended meanwhile
            return
        if self._busy:
            self._reset_timeout()
            return
        if not self.transport.is_closing():
            # written, not pushed: a callback cannot await; close() flushes it first
            self._writer.write(f"421 4.4.2 {self.hostname} Error: timeout exceeded\r\n".encode())
        super()._timeout_cb()

    def _idle_again(self) -> None:
        """Our work is done: the client's idle time starts now."""
        self._busy -= 1
        if self.transport is not None:
            self._reset_timeout()

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        self._busy += 1
        try:
            return await super()._call_handler_hook(command, *args)
        finally:
            self._idle_again()

    def connection_lost(self, error: Exception | None) -> None:
        if getattr(self, "_admitted", False) and self.release is not None:
            self._admitted = False
            self.release(self._peer_ip())
        super().connection_lost(error)

    def _peer_ip(self) -> str:
        peer = self.session.peer if self.session is not None else None
        return peer[0] if peer else ""

    async def _handle_client(self) -> None:
        # the client is checked before it takes a session slot: a stranger, a client
        # holding too many connections or one that finds every slot taken never takes one
        if self.admit is not None:
            refusal = self.admit(self._peer_ip())
            if refusal is not None:
                await self.push(refusal)
                if self.transport is not None:
                    self.transport.close()
                return
            self._admitted = True
        return await super()._handle_client()

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:
        t0, cpu0 = time.time(), time.thread_time()
        await super().smtp_STARTTLS(arg)
        if self.session is not None and self._tls_protocol is not None:
            # the handshake: the ``tls`` stage of the connection's first message
            self.session.tls_span = (t0, time.time(), time.thread_time() - cpu0)  # type: ignore[attr-defined]

    async def push(self, status: Any) -> None:
        if isinstance(status, str):
            if status.startswith(_AIOSMTPD_TOO_LONG):
                status = LINE_TOO_LONG  # aiosmtpd's text names no limit and no status code
            elif status == AIOSMTPD_LACK_OF_SECURITY and self.tls_refusal:
                status = self.tls_refusal  # why, with the enhanced status code
            elif status == AIOSMTPD_MUST_STARTTLS:
                status = MUST_STARTTLS  # with the enhanced status code, as Postfix says it
            elif status.startswith("250-AUTH") and self.check_login is None:
                return  # after STARTTLS aiosmtpd lists AUTH; where it is not offered, don't
        await super().push(status)

    # -- AUTH: only where offered, checked off the event loop

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: str) -> None:
        if self.check_login is None:
            await self.push(AUTH_NOT_OFFERED)
            return
        await super().smtp_AUTH(arg)

    def _authenticate(self, mechanism: str, auth_data: Any) -> AuthResult:
        # aiosmtpd calls this synchronously; hand the credentials on to ``_checked``
        return AuthResult(success=False, handled=False, auth_data=_Pending(mechanism, auth_data))

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._checked(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._checked(await super().auth_LOGIN(_, args))

    async def _checked(self, result: AuthResult) -> AuthResult:
        pending = result.auth_data
        if not isinstance(pending, _Pending) or self.check_login is None:
            return result
        self._busy += 1
        try:
            ok = await self.check_login(self.session, pending.mechanism, pending.credentials)
        finally:
            self._idle_again()
        if ok is None:
            await self.push(AUTH_THROTTLED)
            if self.transport is not None:
                self.transport.close()
            return AuthResult(success=False, handled=True)
        if not ok:
            return AuthResult(success=False, handled=False)  # aiosmtpd answers 535 5.7.8
        login = pending.credentials.login.decode("utf-8", "replace")
        return AuthResult(success=True, auth_data=login)

    # -- parsing: permanent answers to malformed arguments, a fast path for plain ones

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd parses every MAIL/RCPT path with email._header_value_parser (~10 % of a
        # relay's CPU); plain <local@domain> paths take this fast path, the rest (quoted
        # local parts, source routes, "<>") still go through aiosmtpd's own parser
        m = _SIMPLE_PATH.match(arg.lstrip())
        if m is None:
            return super()._getaddr(arg)
        local = m.group(1).rpartition("@")[0]
        if self.local_part_limit and len(local) > self.local_part_limit:
            return super()._getaddr(arg)
        return m.group(1), arg.lstrip()[m.end() :].lstrip()

    # malformed arguments get a permanent answer before aiosmtpd or our headers see them
    # (``realnet.relay.syntax``); the decorators keep aiosmtpd's HELP texts

    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname: str) -> None:
        fault = helo_fault(hostname)
        await (self.push(fault) if fault else super().smtp_HELO(hostname))

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:
        fault = helo_fault(hostname)
        await (self.push(fault) if fault else super().smtp_EHLO(hostname))

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        fault = path_fault("MAIL", arg)
        await (self.push(fault) if fault else super().smtp_MAIL(arg))

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:
        fault = path_fault("RCPT", arg)
        await (self.push(fault) if fault else super().smtp_RCPT(arg))
