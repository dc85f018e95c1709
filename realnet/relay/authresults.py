"""Forged ``Authentication-Results`` removed at the border (RFC 8601 section 5).

A border MTA must delete every ``Authentication-Results`` field that claims
its own authserv-id, or a sender could hand the mail reader ``spf=pass;
dkim=pass`` of its own making. Our hosts' authserv-ids are their host names
under our mail domains, so a field whose authserv-id is one of our domains or
a name under one is ours to remove, in every form RFC 8601 2.2 allows the
id: a token or a quoted string, after comments and folding whitespace, in
any case, in a folded field, in a message that has no body. A field whose
authserv-id cannot be read at all is removed too: a lenient reader might
find one where we find none.

Gateway0 (our MX) and the mailbox server's submission service are the
borders; every hop behind them hears only from our own hosts.
"""

from __future__ import annotations

import email.header
import re

from mailgate.realnet.relay.headers import drop_fields, field_name

HEADER = b"authentication-results"

#: an RFC 2047 encoded word (not allowed here, but a lenient reader might decode one)
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")

#: RFC 2045 tspecials and blanks: where a token ends
_TOKEN_END = frozenset('()<>@,;:\\"/[]?= \t')


def _skip_cfws(text: str, i: int) -> int:
    """The index after blanks and (nested, escaped) comments from ``i`` (RFC 5322 3.2.2)."""
    depth = 0
    while i < len(text):
        ch = text[i]
        if depth and ch == "\\":
            i += 2
            continue
        if ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif not depth and not ch.isspace():
            return i
        i += 1
    return i


def _quoted(text: str, i: int) -> str:
    """The content of the quoted string that starts at ``text[i]`` (a '"')."""
    out: list[str] = []
    i += 1
    while i < len(text) and text[i] != '"':
        if text[i] == "\\" and i + 1 < len(text):
            i += 1
        out.append(text[i])
        i += 1
    return "".join(out)


def authserv_id(field: bytes) -> str:
    """The authserv-id of one ``Authentication-Results`` field, lower case, without a
    trailing dot ("" when there is none to read)."""
    text = field.partition(b":")[2].decode("utf-8", "replace")
    text = text.replace("\r", "").replace("\n", "")
    i = _skip_cfws(text, 0)
    encoded = _ENCODED_WORD.match(text, i)
    if i < len(text) and text[i] == '"':
        value = _quoted(text, i)
    elif encoded is not None:
        value = _decoded(encoded.group())
    else:
        j = i
        while j < len(text) and text[j] not in _TOKEN_END and text[j].isprintable():
            j += 1
        value = text[i:j]
    return value.strip().lower().rstrip(".")


def _decoded(word: str) -> str:
    try:
        return "".join(
            p.decode(c or "ascii", "replace") if isinstance(p, bytes) else p
            for p, c in email.header.decode_header(word)
        )
    except (ValueError, LookupError):
        return word


def claims_ours(authserv: str, domains: frozenset[str]) -> bool:
    """Whether an authserv-id is one of ours: a domain of ours or a name under one
    (or unreadable, "")."""
    return not authserv or any(authserv == d or authserv.endswith("." + d) for d in domains)


def strip_forged_results(data: bytes, domains: frozenset[str]) -> bytes:
    """``data`` without the ``Authentication-Results`` fields that claim our authserv-id."""
    return drop_fields(
        data, lambda f: field_name(f) == HEADER and claims_ours(authserv_id(f), domains)
    )
