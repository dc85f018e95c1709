"""Headers the chain trusts only from itself, and lines too long for the Internet.

``X-Mailgate-Submitted`` says a message entered through authenticated
submission on our mailbox server; Gateway3 DKIM-signs only such mail. The
header is trusted because every border removes it: the submission service
drops any copy a client sent before adding its own, Gateway0 drops it from
mail of the Internet, and Gateway3 drops it before the message leaves us (so
it never shows outside). A client address alone could not tell: Gateway3 only
ever hears from Gateway2, whatever path the message took before.

``wrap_long_lines`` breaks lines longer than the SMTP limit by inserting CRLF
SPACE, as Postfix's ``smtp_line_length_limit`` does (RFC 5322 2.1.1: 998).
"""

from __future__ import annotations

import re
from collections.abc import Callable

SUBMITTED_HEADER = b"X-Mailgate-Submitted"

#: the start of a header field: its name (printable ASCII but ":", RFC 5322 2.2; blanks
#: before the colon are obsolete syntax, RFC 5322 4.5.3) and the colon
_FIELD = re.compile(rb"([!-9;-~]*)[ \t]*:")


def split_header(data: bytes) -> tuple[list[bytes], bytes]:
    """(the header fields, each with its folded lines and line ends; the rest).

    The header section ends at the first empty line or the first line that is neither a
    field nor a continuation (as Postfix's cleanup and Python's email parser read it); a
    message without a body (no empty line) is all header. A continuation line with no
    field above it, and an mbox ``From `` line, count as fields of their own (Python's
    parser reads on past them). The rest is everything after, empty line included:
    ``b"".join(fields) + rest == data``. It errs towards header: what a mail reader could
    take for a header field must be one here, or a forged field could hide from us.
    """
    fields: list[bytes] = []
    pos = 0
    while pos < len(data):
        eol = data.find(b"\r\n", pos)
        end = len(data) if eol < 0 else eol + 2
        line = data[pos:end]
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line  # a folded continuation belongs to the field above
        elif line[:1] in (b" ", b"\t") or line.startswith(b"From ") or _FIELD.match(line):
            fields.append(line)
        else:  # the empty line, or a line that starts the body
            break
        pos = end
    return fields, data[pos:]


def field_name(field: bytes) -> bytes:
    """A header field's name, lower case ("" for a line that has none)."""
    m = _FIELD.match(field)
    return m.group(1).lower() if m else b""


def drop_fields(data: bytes, drop: Callable[[bytes], bool]) -> bytes:
    """``data`` without the header fields for which ``drop(field)`` is true."""
    fields, rest = split_header(data)
    kept = [f for f in fields if not drop(f)]
    return data if len(kept) == len(fields) else b"".join(kept) + rest


def drop_header(data: bytes, name: bytes) -> bytes:
    """``data`` without any ``name:`` header field (folded lines included)."""
    return drop_fields(data, lambda f: field_name(f) == name.lower())


def submitted_header(hostname: str, login: str) -> bytes:
    """The mark of a message our submission service accepted from ``login``."""
    return SUBMITTED_HEADER + f": by {hostname}; user={login}\r\n".encode(errors="replace")


def is_submitted(data: bytes) -> bool:
    """Whether the header block carries the submission mark."""
    end = data.find(b"\r\n\r\n")
    head = b"\r\n" + (data if end < 0 else data[: end + 2]).lower()
    return b"\r\n" + SUBMITTED_HEADER.lower() + b":" in head


def wrap_long_lines(data: bytes, limit: int) -> bytes:
    """Lines over ``limit`` bytes broken by CRLF SPACE (a folded header, or a body line
    continued on the next one); every other byte kept.

    Without a list of the lines: a 10 MB message would be 130,000 small objects at
    once, and the pymalloc arenas they fill stay with the process when a few
    long-lived objects land among them (Gateway3 grew 10 MB after one such message)."""
    if len(data) <= limit or not _has_long_line(data, limit):
        return data
    out = bytearray()
    view, start = memoryview(data), 0
    while True:
        end = data.find(b"\r\n", start)
        stop = len(data) if end < 0 else end
        if stop - start <= limit:
            out += view[start:stop]
        else:
            line = bytes(view[start:stop])
            while len(line) > limit:
                out += line[:limit] + b"\r\n"
                line = b" " + line[limit:]
            out += line
        if end < 0:
            return bytes(out)
        out += b"\r\n"
        start = end + 2


def _has_long_line(data: bytes, limit: int) -> bool:
    """Whether a CRLF-separated line of ``data`` is over ``limit`` bytes, without
    splitting it (exact: a bare CR or LF, rare after the intake, takes the slow path)."""
    if re.search(rb"[^\r\n]{%d}" % (limit + 1), data):
        return True
    if b"\r" not in data.replace(b"\r\n", b"") and b"\n" not in data.replace(b"\r\n", b""):
        return False  # every CR and LF is a line end: no longer line was missed
    return any(len(line) > limit for line in data.split(b"\r\n"))
