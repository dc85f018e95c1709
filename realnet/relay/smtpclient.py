"""A small asyncio SMTP client: what a relay needs to hand a message on.

Written here rather than taken from a library because a relay needs exactly
this and nothing more: bind to the host's own loopback address (so the next
hop's SPF check sees it), STARTTLS (``realnet.relay.tls.ClientTls``: required and
verified to our own hosts, opportunistic elsewhere), per-recipient reply codes, dot-stuffing of
already-normalised CRLF data, PIPELINING of MAIL/RCPT when the server offers
it, and errors classified as temporary (retry) or permanent (bounce).
Connections are reused through ``ConnectionPool`` (Postfix's connection cache
does the same), which matters on loopback where a TCP handshake plus
greeting, EHLO and a TLS handshake cost more than a small message: a pooled
connection pays for its TLS handshake once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field

from mailgate.realnet.relay.tls import ClientTls, describe

#: the message goes out in pieces this large (``SmtpConnection._write_data``)
WRITE_CHUNK = 64 * 1024


class SmtpError(Exception):
    """A reply or connection failure; ``code`` ≥ 500 is permanent, else temporary."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text

    @property
    def permanent(self) -> bool:
        return self.code >= 500


class ConnectError(SmtpError):
    """The next hop could not be reached at all (try its twin)."""

    def __init__(self, text: str) -> None:
        super().__init__(421, text)


class TlsError(ConnectError):
    """STARTTLS was not offered, refused, or its handshake (or verification) failed."""


@dataclass
class SendResult:
    """Outcome of one transaction: accepted recipients and refused ones with replies."""

    accepted: list[str] = field(default_factory=list)
    refused: dict[str, SmtpError] = field(default_factory=dict)
    reply: str = ""


def dot_stuff(data: bytes) -> bytes:
    """RFC 5321 4.5.2 transparency; ``data`` must already use CRLF line ends."""
    if data.startswith(b"."):
        data = b"." + data
    data = data.replace(b"\r\n.", b"\r\n..")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


class SmtpConnection:
    """One open SMTP session (after EHLO)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.extensions: set[str] = set()
        self.broken = False
        #: "TLSv1.3 with cipher …" once STARTTLS is done, "" in plaintext
        self.tls = ""

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        helo: str,
        source: str | None = None,
        timeout: float = 30.0,
        tls: ssl.SSLContext | None = None,
        tls_required: bool = False,
    ) -> SmtpConnection:
        """Connect, read the greeting, EHLO; with ``tls``, STARTTLS (when the server
        offers it, or always if ``tls_required``: a server that does not offer it or
        fails the handshake is a ``ConnectError``) and EHLO again."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    host, port, local_addr=(source, 0) if source else None, limit=1 << 20
                ),
                timeout,
            )
        except (TimeoutError, OSError) as e:
            raise ConnectError(f"connect to {host}:{port} failed: {e}") from None
        conn = cls(reader, writer)
        try:
            # a host that will not talk to us (even with 554) is like a host that is down:
            # the message is not refused, the next MX or the twin gets a try (RFC 5321 5.1)
            code, text = await asyncio.wait_for(conn.reply(), timeout)
            if code != 220:
                raise ConnectError(f"{host}:{port} greeted with {code} {text}")
            await asyncio.wait_for(conn._ehlo(host, port, helo), timeout)
            if tls is not None and (tls_required or "STARTTLS" in conn.extensions):
                await asyncio.wait_for(conn._starttls(host, port, tls), timeout)
                await asyncio.wait_for(conn._ehlo(host, port, helo), timeout)
        except ssl.SSLError as e:
            conn.close()
            raise TlsError(f"{host}:{port} TLS handshake failed: {e}") from None
        except (TimeoutError, OSError) as e:
            conn.close()
            raise ConnectError(f"{host}:{port} did not greet: {e!r}") from None
        except BaseException:
            conn.close()
            raise
        return conn

    async def _ehlo(self, host: str, port: int, helo: str) -> None:
        self.writer.write(f"EHLO {helo}\r\n".encode())
        code, text = await self.reply()
        if code != 250:
            raise ConnectError(f"{host}:{port} refused EHLO: {code} {text}")
        self.extensions = {line.split()[0].upper() for line in text.splitlines()[1:] if line}

    async def _starttls(self, host: str, port: int, context: ssl.SSLContext) -> None:
        """RFC 3207: STARTTLS, 220, the handshake (the peer verified against
        ``context``, by its address when it is one), then a fresh EHLO by the caller."""
        if "STARTTLS" not in self.extensions:
            raise TlsError(f"{host}:{port} does not offer STARTTLS, which is required")
        self.writer.write(b"STARTTLS\r\n")
        code, text = await self.reply()
        if code != 220:
            raise TlsError(f"{host}:{port} refused STARTTLS: {code} {text}")
        await self.writer.start_tls(context, server_hostname=host)
        self.tls = describe(self.writer.get_extra_info("ssl_object"))

    async def reply(self) -> tuple[int, str]:
        lines = []
        while True:
            line = await self.reader.readline()
            if not line:
                self.broken = True
                raise ConnectError("connection closed by the server")
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(text[4:])
            if len(text) < 4 or text[3] != "-":
                try:
                    return int(text[:3]), "\n".join(lines)
                except ValueError:
                    self.broken = True
                    raise SmtpError(451, f"bad reply {text!r}") from None

    async def send(self, mail_from: str, rcpt_tos: list[str], data: bytes) -> SendResult:
        """One transaction; raises SmtpError if nothing was accepted."""
        result = SendResult()
        w = self.writer
        try:
            commands = [f"MAIL FROM:<{mail_from}>"] + [f"RCPT TO:<{r}>" for r in rcpt_tos]
            if "PIPELINING" in self.extensions:
                w.write("".join(c + "\r\n" for c in commands).encode())
                replies = [await self.reply() for _ in commands]
            else:
                replies = []
                for c in commands:
                    w.write(c.encode() + b"\r\n")
                    replies.append(await self.reply())
                    if len(replies) == 1 and replies[0][0] != 250:
                        break
            code, text = replies[0]
            if code == 421:
                # the server is closing the channel (RFC 5321 3.8), e.g. a cached
                # connection it timed out while idle: the pool tries a fresh one
                self.broken = True
                raise ConnectError(f"closed by the server: {code} {text}")
            if code != 250:
                if len(replies) > 1:  # pipelined RCPTs after a failed MAIL: clean up
                    await self._rset()
                raise SmtpError(code, text)
            for rcpt, (code, text) in zip(rcpt_tos, replies[1:], strict=True):
                if code in (250, 251):
                    result.accepted.append(rcpt)
                else:
                    result.refused[rcpt] = SmtpError(code, text)
            if not result.accepted:
                await self._rset()
                return result
            w.write(b"DATA\r\n")
            code, text = await self.reply()
            if code != 354:
                raise SmtpError(code, text)
            await self._write_data(dot_stuff(data))
            code, text = await self.reply()
            if code != 250:
                raise SmtpError(code, text)
            result.reply = text
            return result
        except (OSError, asyncio.IncompleteReadError) as e:
            self.broken = True
            raise ConnectError(f"connection lost: {e}") from None

    async def _write_data(self, body: bytes) -> None:
        """The message in ``WRITE_CHUNK`` pieces, each drained before the next. Written
        at once, all of it is encrypted into OpenSSL's outgoing memory buffer, which
        grows to about 1.5x the message and never shrinks: a pooled connection
        that once carried a 10 MB message held 15 MB until it closed."""
        view = memoryview(body)
        for start in range(0, len(body), WRITE_CHUNK):
            self.writer.write(view[start : start + WRITE_CHUNK])
            await self.writer.drain()

    async def _rset(self) -> None:
        self.writer.write(b"RSET\r\n")
        code, _ = await self.reply()
        if code != 250:
            self.broken = True

    async def quit(self) -> None:
        try:
            with contextlib.suppress(Exception):
                self.writer.write(b"QUIT\r\n")
                await asyncio.wait_for(self.reply(), 1.0)
        finally:  # also when cancelled: never leave the socket to the garbage collector
            self.close()

    def close(self) -> None:
        self.broken = True
        with contextlib.suppress(Exception):
            self.writer.close()


class ConnectionPool:
    """Idle connections per (host, port), reused for the next message."""

    def __init__(
        self,
        *,
        helo: str,
        source: str | None,
        timeout: float,
        max_idle: int = 8,
        tls: ClientTls | None = None,
    ):
        self.helo = helo
        #: TLS per next hop: required and verified to our hosts, opportunistic elsewhere
        self.tls = tls
        self.source = source
        self.timeout = timeout
        self.max_idle = max_idle
        self._idle: dict[tuple[str, int], list[SmtpConnection]] = {}

    async def send(
        self, host: str, port: int, mail_from: str, rcpt_tos: list[str], data: bytes
    ) -> SendResult:
        key = (host, port)
        idle = self._idle.setdefault(key, [])
        while idle:
            conn = idle.pop()
            if conn.broken or conn.reader.at_eof():
                conn.close()
                continue
            try:
                return await self._send_on(conn, key, mail_from, rcpt_tos, data)
            except ConnectError:
                continue  # a stale cached connection: open a fresh one
        conn = await self._open(host, port)
        return await self._send_on(conn, key, mail_from, rcpt_tos, data)

    async def _open(self, host: str, port: int) -> SmtpConnection:
        context, required = (None, False) if self.tls is None else self.tls.for_peer(host)
        kw = {"helo": self.helo, "source": self.source, "timeout": self.timeout}
        try:
            return await SmtpConnection.open(host, port, tls=context, tls_required=required, **kw)
        except TlsError:
            if required:
                raise
            # opportunistic TLS that failed: plaintext instead, as Postfix's "may" does
            return await SmtpConnection.open(host, port, **kw)

    async def _send_on(
        self,
        conn: SmtpConnection,
        key: tuple[str, int],
        mail_from: str,
        rcpt_tos: list[str],
        data: bytes,
    ) -> SendResult:
        try:
            result = await asyncio.wait_for(conn.send(mail_from, rcpt_tos, data), self.timeout)
        except TimeoutError:
            conn.close()
            raise SmtpError(451, "timeout talking to the next hop") from None
        except SmtpError:
            if conn.broken:
                conn.close()
            else:
                self._keep(conn, key)
            raise
        except BaseException:
            # cancelled mid-transaction (the relay is stopping): the session is in an
            # unknown state, and a socket left to the garbage collector leaks
            conn.close()
            raise
        self._keep(conn, key)
        return result

    def _keep(self, conn: SmtpConnection, key: tuple[str, int]) -> None:
        idle = self._idle.setdefault(key, [])
        if conn.broken or len(idle) >= self.max_idle:
            asyncio.get_running_loop().create_task(conn.quit())
        else:
            idle.append(conn)

    async def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                await conn.quit()
        self._idle.clear()
