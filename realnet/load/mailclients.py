"""Minimal asyncio SMTP and POP3 clients for the load generator.

Why not ``smtplib``/``poplib``: they block, and an open-loop load generator
must keep hundreds of sessions in flight on one event loop without a thread
each. These clients speak just what the load generator needs (EHLO, STARTTLS,
AUTH PLAIN, MAIL, RCPT, DATA, QUIT; USER, PASS, LIST, RETR, DELE, QUIT), bind
a chosen source address (so SPF sees the sender's address) and raise
``ProtocolError`` with the server's reply on anything unexpected.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import time
from dataclasses import dataclass

from mailgate.realnet.addresses import Endpoint
from mailgate.realnet.relay import smtpclient
from mailgate.realnet.services.maildir import to_crlf


class ProtocolError(Exception):
    """The server answered something other than what the dialogue needs."""

    def __init__(self, step: str, code: int, text: str) -> None:
        super().__init__(f"{step}: {code} {text}")
        self.step, self.code, self.text = step, code, text


async def _open(
    endpoint: Endpoint, source: str | None, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    local = (source, 0) if source else None
    return await asyncio.wait_for(
        asyncio.open_connection(endpoint.host, endpoint.port, local_addr=local, limit=1 << 20),
        timeout,
    )


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()


async def _smtp_reply(reader: asyncio.StreamReader, step: str) -> tuple[int, str]:
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            raise ProtocolError(step, 0, "connection closed")
        lines.append(line[4:].decode("utf-8", "replace").strip())
        if line[3:4] != b"-":
            return int(line[:3]), " / ".join(lines)


async def _smtp_step(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    command: bytes | None,
    step: str,
    expect: int,
) -> str:
    if command is not None:
        writer.write(command)
    code, text = await _smtp_reply(reader, step)
    if code // 100 != expect // 100:
        raise ProtocolError(step, code, text)
    return text


def _unverified() -> ssl.SSLContext:
    """TLS without checking the server (a client that has not been given the CA)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def dot_stuff(data: bytes) -> bytes:
    """CRLF line ends, leading dots doubled, ending with ``CRLF.CRLF``: the relay's
    ``smtpclient.dot_stuff``, after ``to_crlf`` since a message here may use bare LF."""
    return smtpclient.dot_stuff(to_crlf(data))


@dataclass(frozen=True)
class Auth:
    """SMTP AUTH PLAIN / POP3 USER-PASS credentials."""

    user: str
    password: str


async def smtp_send(
    endpoint: Endpoint,
    mail_from: str,
    rcpt_to: list[str],
    data: bytes,
    *,
    source: str | None = None,
    auth: Auth | None = None,
    helo: str = "loadgen.invalid",
    timeout: float = 60.0,
    tls: ssl.SSLContext | None = None,
) -> float:
    """Deliver one message in its own SMTP session; returns ``time.time()`` of the 250.

    STARTTLS whenever the server offers it and ``tls`` or ``auth`` is given (AUTH is
    offered only after it): with ``tls`` (verifying), or else a context that does not
    verify the server.
    Raises ``ProtocolError`` (with the reply code) when the server refuses.
    """
    reader, writer = await _open(endpoint, source, timeout)
    try:
        async with asyncio.timeout(timeout):
            await _smtp_step(reader, writer, None, "greeting", 220)
            ehlo = await _smtp_step(reader, writer, f"EHLO {helo}\r\n".encode(), "EHLO", 250)
            if (auth is not None or tls is not None) and "STARTTLS" in ehlo.upper():
                await _smtp_step(reader, writer, b"STARTTLS\r\n", "STARTTLS", 220)
                await writer.start_tls(tls or _unverified(), server_hostname=endpoint.host)
                await _smtp_step(reader, writer, f"EHLO {helo}\r\n".encode(), "EHLO", 250)
            if auth is not None:
                token = base64.b64encode(f"\0{auth.user}\0{auth.password}".encode()).decode()
                await _smtp_step(reader, writer, f"AUTH PLAIN {token}\r\n".encode(), "AUTH", 235)
            size = len(data)
            await _smtp_step(
                reader, writer, f"MAIL FROM:<{mail_from}> SIZE={size}\r\n".encode(), "MAIL", 250
            )
            for rcpt in rcpt_to:
                await _smtp_step(reader, writer, f"RCPT TO:<{rcpt}>\r\n".encode(), "RCPT", 250)
            await _smtp_step(reader, writer, b"DATA\r\n", "DATA", 354)
            writer.write(dot_stuff(data))
            await _smtp_step(reader, writer, None, "end of DATA", 250)
            accepted = time.time()
            writer.write(b"QUIT\r\n")
            # the message is accepted; a rude close after QUIT is no failure
            with contextlib.suppress(ProtocolError):
                await _smtp_reply(reader, "QUIT")
            return accepted
    finally:
        await _close(writer)


async def _pop_line(reader: asyncio.StreamReader, step: str) -> str:
    line = await reader.readline()
    if not line:
        raise ProtocolError(step, 0, "connection closed")
    text = line.decode("utf-8", "replace").rstrip("\r\n")
    if not text.startswith("+OK"):
        raise ProtocolError(step, -1, text)
    return text


async def _pop_multiline(reader: asyncio.StreamReader) -> bytes:
    chunks = []
    while True:
        line = await reader.readline()
        if not line:
            raise ProtocolError("multi-line", 0, "connection closed")
        if line in (b".\r\n", b".\n"):
            return b"".join(chunks)
        chunks.append(line[1:] if line.startswith(b"..") else line)


async def pop_fetch_all(
    endpoint: Endpoint,
    auth: Auth,
    *,
    source: str | None = None,
    timeout: float = 60.0,
    limit: int = 1000,
) -> list[tuple[bytes, float]]:
    """One POP3 poll: retrieve and delete up to ``limit`` messages.

    Returns ``(message, time.time() when RETR completed)`` pairs. Deletions
    take effect at QUIT (RFC 1939), which this function always sends.
    """
    reader, writer = await _open(endpoint, source, timeout)
    out: list[tuple[bytes, float]] = []
    try:
        async with asyncio.timeout(timeout):
            await _pop_line(reader, "greeting")
            writer.write(f"USER {auth.user}\r\n".encode())
            await _pop_line(reader, "USER")
            writer.write(f"PASS {auth.password}\r\n".encode())
            await _pop_line(reader, "PASS")
            writer.write(b"LIST\r\n")
            await _pop_line(reader, "LIST")
            numbers = [int(line.split()[0]) for line in (await _pop_multiline(reader)).splitlines()]
            for n in numbers[:limit]:
                writer.write(f"RETR {n}\r\n".encode())
                await _pop_line(reader, "RETR")
                message = await _pop_multiline(reader)
                out.append((message, time.time()))
                writer.write(f"DELE {n}\r\n".encode())
                await _pop_line(reader, "DELE")
            writer.write(b"QUIT\r\n")
            await _pop_line(reader, "QUIT")
    finally:
        await _close(writer)
    return out
