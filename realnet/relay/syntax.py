"""Permanent answers to malformed or untrusted SMTP command arguments (issue #16).

A fault in what the client sent is the client's, and permanent: it gets a
5xx that says what is wrong, before aiosmtpd parses the argument or our
``Received:`` and ``Authentication-Results:`` headers are built from it (an
undecodable HELO there was an exception, and a 451 that made senders retry
for days). aiosmtpd decodes arguments as UTF-8 with ``surrogateescape``, so
invalid UTF-8 shows up here as lone surrogates.

Codes (RFC 5321 4.2.2 for the first digit triple, RFC 3463 for the enhanced
code, Postfix ``smtpd`` for the wording):

- ``501 5.5.2`` — HELO/EHLO argument not valid UTF-8, holding a control
  character or more than one word (RFC 5321 4.1.1.1: ``Domain /
  address-literal``; Postfix ``reject_invalid_helo_hostname`` answers 501).
- ``501 5.1.7`` / ``501 5.1.3`` — bad sender / recipient address syntax:
  invalid UTF-8, a control character (NUL included) in the path (Postfix
  ``smtpd``: "501 5.1.7 Bad sender address syntax").
- ``501 5.5.4`` — a path without angle brackets: RFC 5321 4.1.2
  (``Reverse-path = Path / "<>"``, ``Path = "<" [ A-d-l ":" ] Mailbox ">"``).
- ``550 5.7.1`` — sender-specified routing in a recipient: a source route
  (``<@a,@b:user@d>``; RFC 5321 4.1.1.3 and Appendix C let a server decline
  it) or, for clients that may not relay, ``%``, ``!`` or a quoted ``@`` in
  the local part of one of our addresses (Postfix ``allow_untrusted_routing
  = no``, which answers with the relay-denied reply).
"""

from __future__ import annotations

import re

#: C0 controls and DEL: never part of a domain or a mailbox (RFC 5321 4.1.2)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

#: characters in a local part that ask a relay to route on (user%host, host!user, "u@h")
ROUTING_CHARACTERS = frozenset("%!@")

ROUTING_REPLY = "550 5.7.1 Sender-specified routing is not accepted: {what}"


def _not_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: the client's bytes were not UTF-8
        return True
    return False


def helo_fault(hostname: str | None) -> str | None:
    """The 5xx for a malformed HELO/EHLO argument, or None (aiosmtpd handles a missing one)."""
    if not hostname:
        return None
    if _not_utf8(hostname):
        return "501 5.5.2 HELO/EHLO argument is not valid UTF-8"
    if _CONTROL.search(hostname):
        return "501 5.5.2 HELO/EHLO argument contains a control character"
    if any(ch.isspace() for ch in hostname):
        return "501 5.5.2 HELO/EHLO argument must be one domain name or address literal"
    return None


def path_fault(command: str, arg: str | None) -> str | None:
    """The 5xx for a malformed ``MAIL FROM:``/``RCPT TO:`` argument, or None.

    ``command`` is ``MAIL`` or ``RCPT``. A missing keyword or argument is left to
    aiosmtpd, which answers its own 501.
    """
    keyword = "FROM:" if command == "MAIL" else "TO:"
    if arg is None or arg[: len(keyword)].upper() != keyword:
        return None
    path = arg[len(keyword) :].strip()
    if not path:
        return None
    what = "sender" if command == "MAIL" else "recipient"
    code = "5.1.7" if command == "MAIL" else "5.1.3"
    if _not_utf8(path):
        return f"501 {code} Bad {what} address syntax: not valid UTF-8"
    if _CONTROL.search(path):
        return f"501 {code} Bad {what} address syntax: control character in the address"
    if not path.startswith("<"):
        return f"501 5.5.4 Syntax: {command} {keyword}<address> (RFC 5321 4.1.2: angle brackets)"
    if command == "RCPT" and path.startswith("<@"):
        return ROUTING_REPLY.format(what="source route")
    return None


def routing_in(address: str) -> bool:
    """Does ``address``'s local part ask for routing (``user%host``, ``host!user``, ``"u@h"``)?"""
    local = address.rpartition("@")[0]
    return any(ch in ROUTING_CHARACTERS for ch in local)
