"""SPF, DKIM and Authentication-Results: the checks Gateway0 and Gateway3 apply.

Pure, synchronous functions; the relay runs them in a thread pool so that
pyspf's and dkimpy's blocking DNS lookups and dkimpy's pure-Python RSA stay
off the event loop. Every DNS lookup goes through the resolver passed in
(:func:`realnet.services.dnsserver.make_resolver`), never the system one.

pyspf 2.0.14 looks names up through its module-level ``spf.DNSLookup``,
which calls the deprecated ``dns.resolver.query`` on the default resolver.
On import this module replaces ``spf.DNSLookup`` with a dispatcher that
uses the resolver :func:`check_spf` put in a thread-local for the duration
of one check (so concurrent checks in a pool each use their own), and falls
back to pyspf's own function only outside :func:`check_spf`. No warning is
filtered.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dkim
import dns.exception
import dns.rdatatype
import dns.resolver
import spf

from mailgate.realnet.services.keys import DkimKey

#: RFC 7208 suggests at least 20 s in total for an SPF evaluation; loopback needs far less.
SPF_QUERY_TIME_S = 10.0

SPF_RESULTS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror")

# ---------------------------------------------------------------- SPF

_local = threading.local()
_pyspf_lookup = spf.DNSLookup


def _resolver_lookup(
    resolver: dns.resolver.Resolver, name: str, qtype: str, timeout: float
) -> list[tuple[tuple[str, str], Any]]:
    """pyspf's DNSLookup contract: ``[((name, qtype), value), ...]``, TempError on failure."""
    out: list[tuple[tuple[str, str], Any]] = []
    try:
        answer = resolver.resolve(
            name,
            qtype,
            lifetime=min(timeout, resolver.lifetime),
            search=False,
            raise_on_no_answer=False,
        )
    except dns.resolver.NXDOMAIN:
        return out
    except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.LifetimeTimeout) as e:
        raise spf.TempError(f"DNS {e}") from e
    if answer.rrset is None:
        return out
    # Keep CNAMEs as pyspf expects, then the records themselves.
    for rrset in answer.response.answer:
        owner = rrset.name.to_text(omit_final_dot=True)
        for rdata in rrset:
            if rrset.rdtype == dns.rdatatype.CNAME:
                out.append(((owner, "CNAME"), rdata.target.to_text(omit_final_dot=True)))
            elif qtype in ("A", "AAAA") and rrset.rdtype == dns.rdatatype.from_text(qtype):
                out.append(((owner, qtype), rdata.address))
            elif qtype == "MX" and rrset.rdtype == dns.rdatatype.MX:
                out.append(((owner, qtype), (rdata.preference, rdata.exchange)))
            elif qtype == "PTR" and rrset.rdtype == dns.rdatatype.PTR:
                out.append(((owner, qtype), rdata.target.to_text(True)))
            elif qtype in ("TXT", "SPF") and rrset.rdtype == dns.rdatatype.from_text(qtype):
                out.append(((owner, qtype), rdata.strings))
    return out


def _dispatch_lookup(
    name: str, qtype: str, strict: Any = True, timeout: float = 30
) -> list[tuple[tuple[str, str], Any]]:
    resolver = getattr(_local, "resolver", None)
    if resolver is None:
        return _pyspf_lookup(name, qtype, strict, timeout)
    return _resolver_lookup(resolver, name, qtype, timeout)


spf.DNSLookup = _dispatch_lookup


def check_spf(
    resolver: dns.resolver.Resolver, client_ip: str, mail_from: str, helo: str
) -> tuple[str, str]:
    """SPF verdict (RFC 7208) for a client: ``(result, explanation)``.

    ``result`` is one of :data:`SPF_RESULTS`. An empty ``mail_from`` (a
    bounce) is checked as ``postmaster@<helo>``, as the RFC says.
    """
    previous = getattr(_local, "resolver", None)
    _local.resolver = resolver
    try:
        q = spf.query(
            i=client_ip, s=mail_from, h=helo, querytime=SPF_QUERY_TIME_S, timeout=SPF_QUERY_TIME_S
        )
        result, _code, explanation = q.check()
    except Exception as e:  # pyspf on input it did not expect (e.g. a malformed address)
        return "permerror", f"SPF evaluation error: {type(e).__name__}: {e}"
    finally:
        _local.resolver = previous
    return str(result).lower(), str(explanation)


# ---------------------------------------------------------------- DKIM


@dataclass(frozen=True)
class DkimResult:
    """The verdict on one DKIM-Signature (RFC 8601 ``dkim=`` values)."""

    result: str  # pass, fail, neutral, temperror, permerror
    domain: str = ""
    selector: str = ""
    algorithm: str = ""
    reason: str = ""


class _DnsTempError(Exception):
    """Raised out of dkimpy's key lookup so that a DNS failure is not reported as 'fail'."""


def _txt_lookup(resolver: dns.resolver.Resolver) -> Callable[..., bytes | None]:
    """dkimpy's ``dnsfunc``: the TXT record at a name as bytes, None if there is none."""

    def lookup(name: bytes | str, timeout: float = 5) -> bytes | None:
        qname = name.decode() if isinstance(name, bytes) else name
        try:
            answer = resolver.resolve(
                qname,
                "TXT",
                lifetime=min(timeout, resolver.lifetime),
                search=False,
                raise_on_no_answer=False,
            )
        except dns.resolver.NXDOMAIN:
            return None
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as e:
            raise _DnsTempError(str(e)) from e
        if answer.rrset is None:
            return None
        for rdata in answer.rrset:
            return b"".join(rdata.strings)
        return None

    return lookup


def verify_dkim(message: bytes, resolver: dns.resolver.Resolver) -> list[DkimResult]:
    """Verify every DKIM-Signature of ``message``; an empty list if it has none.

    ``temperror`` when the key lookup failed for a DNS reason, ``permerror``
    when the signature or key is malformed or the key is missing, ``fail``
    when the key was found and the signature does not match.
    """
    lookup = _txt_lookup(resolver)
    try:
        d = dkim.DKIM(message)
    except Exception as e:  # not even parsable as RFC 5322
        return [DkimResult("permerror", reason=str(e))]
    count = sum(1 for name, _ in d.headers if name.lower() == b"dkim-signature")
    results = []
    for idx in range(count):
        missing_key = False

        def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
            nonlocal missing_key
            txt = lookup(name, timeout=timeout)
            missing_key = txt is None
            return txt

        d = dkim.DKIM(message)  # a fresh object: dkimpy keeps per-signature state
        try:
            ok = d.verify(idx=idx, dnsfunc=dnsfunc)
        except _DnsTempError as e:
            results.append(_result("temperror", d, f"key lookup: {e}"))
            continue
        except dkim.ValidationError as e:
            # A changed body is a plain failure; other validation errors are malformed signatures.
            verdict = "fail" if "body hash mismatch" in str(e) else "permerror"
            results.append(_result(verdict, d, str(e)))
            continue
        except dkim.DKIMException as e:
            results.append(_result("permerror", d, str(e)))
            continue
        except Exception as e:  # dkimpy on input it did not expect: the signature is unusable
            results.append(_result("permerror", d, f"verifier error: {type(e).__name__}: {e}"))
            continue
        if ok:
            results.append(_result("pass", d))
        elif missing_key:
            results.append(_result("permerror", d, "no key"))
        else:
            results.append(_result("fail", d, "signature did not verify"))
    return results


def _result(verdict: str, d: dkim.DKIM, reason: str = "") -> DkimResult:
    fields = getattr(d, "signature_fields", None) or {}

    def text(key: bytes) -> str:
        value = fields.get(key, b"")
        return value.decode(errors="replace") if isinstance(value, bytes) else str(value)

    return DkimResult(verdict, text(b"d"), text(b"s"), text(b"a"), reason)


#: Header fields we sign when present (From is also over-signed by dkimpy's defaults).
SIGNED_HEADERS = (
    b"from",
    b"sender",
    b"reply-to",
    b"to",
    b"cc",
    b"subject",
    b"date",
    b"message-id",
    b"in-reply-to",
    b"references",
    b"mime-version",
    b"content-type",
    b"content-transfer-encoding",
)


def sign_dkim(message: bytes, key: DkimKey) -> bytes:
    """``message`` with a DKIM-Signature header prepended (relaxed/relaxed canonicalisation).

    The header's line endings follow the message's (CRLF if it has any). A
    message without a From header cannot be signed (RFC 6376 §5.4) and is
    returned unchanged rather than held back.
    """
    linesep = b"\r\n" if b"\r\n" in message else b"\n"
    d = dkim.DKIM(message, signature_algorithm=key.algorithm.encode(), linesep=linesep)
    present = {name.lower() for name, _ in d.headers}
    if b"from" not in present:
        return message
    include = [h for h in SIGNED_HEADERS if h in present]
    if b"from" in present:
        include.append(b"from")  # over-sign: nobody may add a second From later
    header = d.sign(
        key.selector.encode(),
        key.domain.encode(),
        key.private_key,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=include,
    )
    return header + message


# ---------------------------------------------------------------- Authentication-Results


def authentication_results(
    authserv_id: str,
    spf: tuple[str, str] | str | None,
    dkim_results: list[DkimResult],
    *,
    mail_from: str = "",
    helo: str = "",
    client_ip: str = "",
) -> str:
    """The value of an ``Authentication-Results:`` header (RFC 8601).

    e.g. ``mx.example; spf=pass smtp.mailfrom=a@b.example; dkim=pass
    header.d=b.example header.s=sel header.a=rsa-sha256``. ``dkim=none``
    when there was no signature; ``spf`` may be None when not checked.
    """
    parts = [authserv_id]
    if spf is not None:
        verdict = spf[0] if isinstance(spf, tuple) else spf
        if mail_from:
            prop = f"smtp.mailfrom={_value(mail_from)}"
        else:
            prop = f"smtp.helo={_value(helo)}" if helo else ""
        comment = f" ({client_ip})" if client_ip else ""
        parts.append(f"spf={verdict}{comment}" + (f" {prop}" if prop else ""))
    if not dkim_results:
        parts.append("dkim=none")
    for r in dkim_results:
        text = f"dkim={r.result}"
        if r.reason and r.result != "pass":
            text += f" ({_comment(r.reason)})"
        if r.domain:
            text += f" header.d={_value(r.domain)}"
        if r.selector:
            text += f" header.s={_value(r.selector)}"
        if r.algorithm:
            text += f" header.a={_value(r.algorithm)}"
        parts.append(text)
    return ";\r\n\t".join(parts) if len("; ".join(parts)) > 900 else "; ".join(parts)


_TSPECIALS = set('()<>@,;:\\"/[]?= \t')


def _value(text: str) -> str:
    """A property value: as is when it is a token or an address, else a quoted string."""
    if text and not any(c in _TSPECIALS and c != "@" for c in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _comment(text: str) -> str:
    return "".join(c for c in text if c not in "()\\\r\n")[:100]


def lookup_mx(resolver: dns.resolver.Resolver, domain: str) -> list[tuple[int, str, list[str]]]:
    """``[(preference, exchange, [addresses])]`` sorted by preference; [] if none (RFC 5321 §5.1).

    A domain without MX records but with an A record gets its own name as the
    implicit MX. ``dns.resolver.NXDOMAIN`` for a domain that does not exist
    (permanent); other DNS errors raise too (the caller treats them as temporary).
    """
    answer = resolver.resolve(domain, "MX", search=False, raise_on_no_answer=False)
    targets: list[tuple[int, str]] = []
    if answer.rrset is not None:
        targets = sorted((r.preference, r.exchange.to_text(omit_final_dot=True)) for r in answer)
    else:
        targets = [(0, domain)]
    out = []
    for preference, exchange in targets:
        if exchange in ("", "."):  # null MX (RFC 7505): the domain accepts no mail
            continue
        try:
            a = resolver.resolve(exchange, "A", search=False, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            continue
        addresses = [r.address for r in a.rrset] if a.rrset is not None else []
        if addresses:
            out.append((preference, exchange, addresses))
    return out


__all__ = [
    "DkimResult",
    "authentication_results",
    "check_spf",
    "lookup_mx",
    "sign_dkim",
    "verify_dkim",
]
