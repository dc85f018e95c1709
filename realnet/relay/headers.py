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

SUBMITTED_HEADER = b"X-Mailgate-Submitted"


def drop_header(data: bytes, name: bytes) -> bytes:
    """``data`` without any ``name:`` header field (folded lines included)."""
    end = data.find(b"\r\n\r\n")
    head = data if end < 0 else data[: end + 2]
    if name.lower() not in head.lower():
        return data
    kept: list[bytes] = []
    dropping = False
    for line in head.split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t"):  # a folded continuation belongs to the field above
            if not dropping:
                kept.append(line)
            continue
        dropping = line.partition(b":")[0].strip().lower() == name.lower()
        if not dropping:
            kept.append(line)
    rest = b"" if end < 0 else data[end + 2 :]
    return b"".join(k + b"\r\n" for k in kept) + rest


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
    continued on the next one); every other byte kept."""
    if len(data) <= limit:
        return data
    lines = data.split(b"\r\n")
    if all(len(line) <= limit for line in lines):
        return data
    out: list[bytes] = []
    for line in lines:
        while len(line) > limit:
            out.append(line[:limit])
            line = b" " + line[limit:]
        out.append(line)
    return b"\r\n".join(out)
