"""TLS as a relay uses it: which peers must speak it, and how it reads in ``Received:``.

The contexts come from the testbed's local CA (``realnet.services.tls``); the
relay only decides per peer. Between our own tiers STARTTLS is required and the
peer's certificate verified against the local CA (a hop that does not offer
it, or fails verification, is a temporary failure: the twin or a retry, like
Postfix ``smtp_tls_security_level = verify``); to anyone else (a remote MX)
it is used when offered, without verification (``may``).
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass

#: Postfix's reply where TLS is required and the client has not started it
MUST_STARTTLS = "530 5.7.0 Must issue a STARTTLS command first"
#: what aiosmtpd answers in its place (no enhanced status code)
AIOSMTPD_MUST_STARTTLS = "530 Must issue a STARTTLS command first"

#: ``(using TLSv1.3 with cipher NAME (256/256 bits))`` in a Received header
_USING = re.compile(r"\(using (\S+) with cipher (\S+)")


@dataclass(frozen=True)
class ClientTls:
    """How a relay's client speaks TLS to each next hop."""

    #: verifies against the local CA (our own hosts)
    verified: ssl.SSLContext
    #: tries TLS without verification (everyone else); None = plaintext to them
    opportunistic: ssl.SSLContext | None
    #: the addresses of our own hosts: TLS required and verified
    ours: frozenset[str]

    def for_peer(self, address: str) -> tuple[ssl.SSLContext | None, bool]:
        """(context or None, required) for a connection to ``address``."""
        if address in self.ours:
            return self.verified, True
        return self.opportunistic, False


def describe(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str:
    """``TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)``, as Postfix
    writes it in ``Received:``; "" without TLS."""
    if ssl_object is None:
        return ""
    cipher = ssl_object.cipher()
    if cipher is None:
        return ""
    name, version, bits = cipher
    return f"{ssl_object.version() or version} with cipher {name} ({bits}/{bits} bits)"


def tls_of_received(value: str) -> tuple[str, str] | None:
    """(protocol, cipher) from one ``Received:`` header's value, or None (plaintext)."""
    m = _USING.search(" ".join(value.split()))
    return (m.group(1), m.group(2)) if m else None
