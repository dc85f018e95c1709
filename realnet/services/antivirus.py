"""Antivirus for Gateway1 and Gateway2: an embedded signature scanner, or clamd.

A :class:`Scanner` takes the raw message and returns the name of the virus
found, or None. :class:`EmbeddedScanner` (the default, ``realnet.antivirus =
"embedded"``) decodes every MIME part (base64, quoted-printable, uuencode,
with the stdlib ``email`` package) and matches MD5 digests of whole parts
and byte patterns; it always knows the EICAR test string. It reads ClamAV's
``.hdb`` format (``MD5:SIZE:Name``) so one signature file can feed both
scanners. :class:`ClamdScanner` (``"clamd"``) hands the raw message to a
running clamd over TCP with the INSTREAM command; clamd decodes MIME itself.

Both are synchronous: the relay calls them from a thread pool. A scanner
that cannot give a verdict raises :class:`ScanError` (the relay answers 451
and the sender retries), never "clean".
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import os
import socket
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from mailgate.sim.scenario import Scenario

#: The EICAR anti-virus test file (68 bytes), harmless by design.
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_NAME = "Eicar-Test-Signature"


class ScanError(Exception):
    """No verdict (scanner down, timeout, protocol error): treat as a temporary failure."""


class Scanner(Protocol):
    """What the relays need from an antivirus."""

    def scan(self, message: bytes) -> str | None:
        """The name of the virus in ``message``, or None if it is clean."""
        ...


@dataclass(frozen=True)
class Signature:
    """A virus signature: the MD5 of a whole decoded part (with its size), or a byte pattern."""

    name: str
    md5: str = ""
    size: int = -1  # -1: any size (for md5 signatures)
    pattern: bytes = b""

    @classmethod
    def parse_hdb(cls, line: str) -> Signature:
        """One line of ClamAV's ``.hdb`` format: ``MD5:SIZE:Name`` (SIZE may be ``*``)."""
        parts = line.strip().split(":")
        if len(parts) < 3 or len(parts[0]) != 32:
            raise ValueError(f"not an .hdb line: {line!r}")
        int(parts[0], 16)  # ValueError if not hex
        size = -1 if parts[1] == "*" else int(parts[1])
        return cls(name=parts[2], md5=parts[0].lower(), size=size)


class EmbeddedScanner:
    """In-process scanner: EICAR plus configurable MD5 and byte-pattern signatures."""

    def __init__(self, signatures: Iterable[Signature] = (), *, eicar: bool = True) -> None:
        sigs = list(signatures)
        if eicar:
            sigs.append(Signature(EICAR_NAME, pattern=EICAR))
        self.by_md5 = {(s.md5, s.size): s.name for s in sigs if s.md5}
        self.md5_any_size = {s.md5: s.name for s in sigs if s.md5 and s.size < 0}
        self.patterns = [(s.pattern, s.name) for s in sigs if s.pattern]

    @classmethod
    def from_hdb(cls, path: str | os.PathLike[str], *, eicar: bool = True) -> EmbeddedScanner:
        """Load MD5 signatures from a ClamAV ``.hdb`` file (blank lines and ``#`` ignored)."""
        with open(path, encoding="utf-8") as f:
            lines = [line for line in f if line.strip() and not line.lstrip().startswith("#")]
        return cls([Signature.parse_hdb(line) for line in lines], eicar=eicar)

    def scan(self, message: bytes) -> str | None:
        for chunk in self._chunks(message):
            digest = hashlib.md5(chunk, usedforsecurity=False).hexdigest()
            name = self.by_md5.get((digest, len(chunk))) or self.md5_any_size.get(digest)
            if name:
                return name
            for pattern, name in self.patterns:
                if pattern in chunk:
                    return name
        return None

    @staticmethod
    def _chunks(message: bytes) -> Iterator[bytes]:
        """The raw message, then every leaf MIME part decoded."""
        yield message
        try:
            parsed = email.message_from_bytes(message, policy=email.policy.compat32)
        except Exception:  # unparsable mail: the raw bytes were scanned above
            return
        for part in parsed.walk():
            if part.is_multipart():
                continue
            try:
                payload = part.get_payload(decode=True)
            except Exception:
                continue
            if isinstance(payload, bytes) and payload:
                yield payload
                # A text part may end with the line break the encoding added.
                stripped = payload.rstrip(b"\r\n")
                if stripped != payload:
                    yield stripped


class ClamdScanner:
    """clamd over TCP: ``zINSTREAM`` with the raw message in length-prefixed chunks."""

    CHUNK = 64 * 1024

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout

    def _command(self, payload: Iterable[bytes]) -> str:
        try:
            with socket.create_connection((self.host, self.port), timeout=self.timeout) as sock:
                for data in payload:
                    sock.sendall(data)
                reply = b""
                while not reply.endswith(b"\0"):
                    data = sock.recv(4096)
                    if not data:
                        break
                    reply += data
        except OSError as e:
            raise ScanError(f"clamd at {self.host}:{self.port}: {e}") from e
        if not reply.endswith(b"\0"):
            raise ScanError(f"clamd closed the connection: {reply!r}")
        return reply[:-1].decode("utf-8", "replace")

    def ping(self) -> bool:
        """True if clamd answers PONG."""
        try:
            return self._command([b"zPING\0"]) == "PONG"
        except ScanError:
            return False

    def scan(self, message: bytes) -> str | None:
        def stream() -> Iterator[bytes]:
            yield b"zINSTREAM\0"
            for i in range(0, len(message), self.CHUNK):
                chunk = message[i : i + self.CHUNK]
                yield struct.pack("!I", len(chunk)) + chunk
            yield struct.pack("!I", 0)

        reply = self._command(stream())
        # "stream: OK", "stream: <name> FOUND", or "... ERROR" (e.g. StreamMaxLength exceeded).
        verdict = reply.removeprefix("stream:").strip()
        if verdict == "OK":
            return None
        if verdict.endswith(" FOUND"):
            return verdict.removesuffix(" FOUND").strip()
        raise ScanError(f"clamd: {reply}")


def make_scanner(scenario: Scenario) -> Scanner:
    """The scanner ``realnet.antivirus`` names: embedded, or clamd at ``realnet.clamd_address``."""
    if scenario.realnet.antivirus == "clamd":
        address = scenario.realnet.clamd_address
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"realnet.clamd_address must be host:port, got {address!r}")
        return ClamdScanner(host, int(port))
    return EmbeddedScanner()
