"""Where a recipient domain's mail goes: its MX hosts' addresses, asked of realnet's DNS.

Best preference first, random among equals (RFC 5321 5.1); the MX hosts' A
records come from the answer's additional section where the server sent them
along; a domain without MX is its own mail host (its A record). A name that
does not exist is a permanent failure (550 5.1.2), any other DNS trouble a
temporary one (451 4.4.3).
"""

from __future__ import annotations

import random
import time

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from mailgate.realnet.relay.smtpclient import SmtpError
from mailgate.sim.scenario.records import HopRecord, StageSpan


class MxResolver:
    """MX lookups through one DNS server (or none: every lookup is a 451)."""

    def __init__(self, dns_server: tuple[str, int] | None) -> None:
        self._resolver: dns.asyncresolver.Resolver | None = None
        if dns_server:
            self._resolver = dns.asyncresolver.Resolver(configure=False)
            self._resolver.nameservers = [dns_server[0]]
            self._resolver.port = dns_server[1]
            self._resolver.timeout = self._resolver.lifetime = 5.0

    async def hosts(self, domain: str, record: HopRecord | None) -> list[str]:
        """Addresses of ``domain``'s MX hosts, best preference first (random among equals).

        The lookup is recorded as the ``mx_lookup`` stage of ``record`` (its first
        start kept over retries)."""
        t0 = time.time()
        if self._resolver is None:
            raise SmtpError(451, "no resolver configured")
        try:
            answer = await self._resolver.resolve(domain, "MX")
            mxs = sorted(answer, key=lambda r: (r.preference, random.random()))
            # the server sends the MX hosts' A records along (additional section):
            # use them and ask only for the ones it left out
            glue: dict[dns.name.Name, list[str]] = {}
            for rrset in answer.response.additional:
                if rrset.rdtype == dns.rdatatype.A:
                    glue.setdefault(rrset.name, []).extend(r.address for r in rrset)
            addresses: list[str] = []
            for mx in mxs:
                if mx.exchange in glue:
                    addresses.extend(glue[mx.exchange])
                    continue
                a = await self._resolver.resolve(mx.exchange.to_text(), "A")
                addresses.extend(r.address for r in a)
        except dns.resolver.NXDOMAIN:
            raise SmtpError(550, f"5.1.2 domain {domain} does not exist") from None
        except dns.resolver.NoAnswer:
            # RFC 5321 5.1: no MX means the domain's own A record
            try:
                a = await self._resolver.resolve(domain, "A")
                addresses = [r.address for r in a]
            except dns.exception.DNSException as e:
                raise SmtpError(451, f"4.4.3 no mail host for {domain}: {e}") from None
        except dns.exception.DNSException as e:
            raise SmtpError(451, f"4.4.3 DNS lookup of {domain} failed: {e}") from None
        if record is not None:
            span = record.stages.get("mx_lookup")
            start = span.start if span else t0
            record.stages["mx_lookup"] = StageSpan(start, time.time())
        return addresses
