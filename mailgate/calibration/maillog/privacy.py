"""Addresses and Message-IDs hashed on import (production logs hold personal data).

A hash keeps what the aggregates need: equal inputs stay equal (Message-IDs still stitch
a path across hosts) and an address keeps its domain (the flow: our mailbox or remote).
The salt is random per import unless given, so hashes from two imports do not link.
"""

from __future__ import annotations

import hashlib
import re
import secrets

_ADDRESS = re.compile(r"(?P<key>\b(?:from|to|orig_to|message-id)=<)(?P<value>[^>]*)>")
_CLIENT = re.compile(r"(?P<key>\b(?:client|relay)=)(?P<name>[^\[\s,]+)\[(?P<ip>[^\]]*)\]")


class Hasher:
    """Salted, truncated SHA-256 of addresses and Message-IDs; ``enabled=False`` passes
    them through (a test lab's own addresses)."""

    def __init__(self, salt: bytes | None = None, enabled: bool = True) -> None:
        self.salt = secrets.token_bytes(16) if salt is None else salt
        self.enabled = enabled

    def token(self, text: str) -> str:
        if not self.enabled:
            return text
        return hashlib.sha256(self.salt + text.encode("utf-8", "replace")).hexdigest()[:16]

    def address(self, address: str) -> str:
        """``local@domain`` -> ``<hash>@domain``; the null sender stays empty."""
        if not self.enabled or not address:
            return address
        local, at, domain = address.rpartition("@")
        if not at:
            return self.token(address)
        return f"{self.token(local)}@{domain.lower()}"


def domain_of(address: str) -> str:
    """The domain of an (optionally hashed) address, lower case; "" for none."""
    return address.rpartition("@")[2].lower() if "@" in address else ""


def anonymise_line(line: str, hasher: Hasher) -> str:
    """A log line with addresses, Message-IDs and client/relay names hashed (for shipping a
    sample log); IP addresses, times and everything else kept."""

    def address(m: re.Match[str]) -> str:
        value = m["value"]
        if m["key"].startswith("message-id"):
            return f"{m['key']}{hasher.token(value)}@anonymised>"
        return f"{m['key']}{hasher.address(value)}>"

    def client(m: re.Match[str]) -> str:
        name = m["name"]
        keep = name in ("unknown", "none", "local") or name.startswith("private/")
        return f"{m['key']}{name if keep else hasher.token(name)[:10]}[{m['ip']}]"

    return _CLIENT.sub(client, _ADDRESS.sub(address, line))
