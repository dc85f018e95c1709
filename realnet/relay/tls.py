"""TLS as a relay uses it: which peers must speak it, and how it reads in ``Received:``.

The contexts come from the testbed's local CA (``realnet.services.tls``); the
relay only decides per peer. Between our own tiers STARTTLS is required and the
peer's certificate verified against the local CA (a hop that does not offer
it, or fails verification, is a temporary failure: the twin or a retry, like
Postfix ``smtp_tls_security_level = verify``); to anyone else (a remote MX)
it is used when offered, without verification (``may``).

On the server side a tier fed by our own tiers only also asks for the client's
certificate (``client_refusal``): after STARTTLS, a client with none, or with
a certificate of the local CA that names no host of the tier's upstream, gets
``554`` to every command but QUIT (RFC 3207 4.1, aiosmtpd's ``handle_STARTTLS``
hook); a certificate from another CA fails the handshake itself.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from typing import Any

#: Postfix's reply where TLS is required and the client has not started it
MUST_STARTTLS = "530 5.7.0 Must issue a STARTTLS command first"
#: what aiosmtpd answers in its place (no enhanced status code)
AIOSMTPD_MUST_STARTTLS = "530 Must issue a STARTTLS command first"

#: RFC 3207 4.1: the server finds the TLS session's authentication not enough, and
#: answers every command but QUIT with 554 ("Command refused due to lack of security");
#: what aiosmtpd says, and ours with the enhanced status code and the reason
#: (RFC 3463: X.7.0 "other security status" for no certificate at all, X.7.1
#: "delivery not authorized" for a certificate of a host that may not send here)
AIOSMTPD_LACK_OF_SECURITY = "554 Command refused due to lack of security"
NO_CLIENT_CERT = "554 5.7.0 Command refused due to lack of security: client certificate required"
CLIENT_NOT_ALLOWED = "554 5.7.1 Command refused: client certificate of {name} not authorized here"

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


def peer_names(peercert: dict[str, Any]) -> list[str]:
    """The DNS names a verified certificate is for: its subjectAltName DNS entries, or
    its CN when it has none (RFC 6125 6.4.4), lower case."""
    names = [v.lower() for k, v in peercert.get("subjectAltName", ()) if k == "DNS"]
    if names:
        return names
    return [v.lower() for rdn in peercert.get("subject", ()) for k, v in rdn if k == "commonName"]


def client_refusal(peercert: dict[str, Any] | None, allowed: frozenset[str]) -> str | None:
    """The reply to every command after STARTTLS when the client's certificate is not
    enough, or None. ``peercert`` is ``SSLObject.getpeercert()`` of a server that asks
    with ``CERT_OPTIONAL``: None (no certificate), or the certificate, already verified
    against the local CA by the handshake (a certificate from another CA fails it).
    ``allowed``: the DNS names of the hosts that may send here (lower case)."""
    if not peercert:
        return NO_CLIENT_CERT
    names = peer_names(peercert)
    if any(n in allowed for n in names):
        return None
    return CLIENT_NOT_ALLOWED.format(name=", ".join(names) or "no name")


def client_note(peercert: dict[str, Any] | None) -> str:
    """``(Client CN "gw0-1.example", Issuer "CA" (verified OK))`` for ``Received:``, as
    Postfix writes it (``smtpd_tls_received_header``); "" without a client certificate."""
    if not peercert:
        return ""

    def cn(field: str) -> str:
        return next((v for rdn in peercert.get(field, ()) for k, v in rdn if k == "commonName"), "")

    return f'(Client CN "{cn("subject")}", Issuer "{cn("issuer")}" (verified OK))'


def tls_of_received(value: str) -> tuple[str, str] | None:
    """(protocol, cipher) from one ``Received:`` header's value, or None (plaintext)."""
    m = _USING.search(" ".join(value.split()))
    return (m.group(1), m.group(2)) if m else None
