"""Small facts about a message's bytes that every realnet hop needs.

Line ends (bare CR/LF normalised to CRLF), the header block, ``Received:``
counting for loop detection, and the ``X-Mailgate-Trace`` header that
carries a message's trace id and flow from hop to hop.
"""

from __future__ import annotations

import re

from mailgate.realnet.relay.headers import split_header

TRACE_HEADER = "X-Mailgate-Trace"
_LINE_END = re.compile(rb"\r\n|\r|\n")
_TRACE_RE = re.compile(rb"^X-Mailgate-Trace:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)


def normalise_line_ends(data: bytes) -> bytes:
    """Every bare CR, bare LF or CRLF becomes CRLF."""
    bare = data.replace(b"\r\n", b"")  # once: a copy of the whole message, on every hop
    if b"\r" not in bare and b"\n" not in bare:
        return data
    return _LINE_END.sub(b"\r\n", data)


def header_block(data: bytes) -> bytes:
    """The header section of a CRLF message (without the blank line), read as
    ``headers.split_header`` reads it: a message that starts with its blank line has
    none, one without a body is all header."""
    return b"".join(split_header(data)[0])


def count_received(data: bytes) -> int:
    head = header_block(data)
    return sum(1 for line in head.split(b"\r\n") if line[:9].lower() == b"received:")


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(">")


def parse_trace(data: bytes) -> tuple[str, str] | None:
    """(trace id, flow) from the X-Mailgate-Trace header, if there is one."""
    m = _TRACE_RE.search(header_block(data))
    if not m:
        return None
    parts = m.group(1).decode("ascii", "replace").split(";")
    flow = "inbound"
    for part in parts[1:]:
        key, _, value = part.strip().partition("=")
        if key == "flow" and value:
            flow = value
    return parts[0].strip(), flow


def trace_header(trace_id: str, flow: str) -> bytes:
    return f"{TRACE_HEADER}: {trace_id}; flow={flow}\r\n".encode()
