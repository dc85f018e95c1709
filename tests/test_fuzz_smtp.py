"""Property-based tests (hypothesis) of what a hostile SMTP client controls (issue #13):
command arguments, header sections, dot-stuffing, long lines. No input may raise; every
refusal is a well-formed reply of the right class; what we transform round-trips.

The pure functions are checked against independent oracles (a message built with known
forged fields, Python's email parser, a dot-unstuffer written from RFC 5321 4.5.2); one
test feeds random command lines to a real relay on a socket and then sends it a normal
message, which must still arrive.
"""

from __future__ import annotations

import email
import re
import smtplib
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailgate.realnet.relay.authresults import authserv_id, strip_forged_results
from mailgate.realnet.relay.headers import split_header, wrap_long_lines
from mailgate.realnet.relay.message import count_received
from mailgate.realnet.relay.smtpclient import dot_stuff
from mailgate.realnet.relay.syntax import helo_fault, path_fault

#: a reply line: a code of a valid class (RFC 5321 4.2), then SP or "-"
REPLY = re.compile(rb"^([2-5])[0-5][0-9]([ -]|$)")
#: an enhanced status code after the reply code must be of the same class (RFC 3463)
ENHANCED = re.compile(r"^([2-5])\d\d ([245])\.\d{1,3}\.\d{1,3} ")

OURS = frozenset({"ours.example"})


def assert_refusal(reply: str | None) -> None:
    if reply is None:
        return
    m = ENHANCED.match(reply)
    assert m is not None and m.group(1) == m.group(2) == "5", reply


# ---------------------------------------------------------------- command arguments

# text as aiosmtpd hands it over: UTF-8 decoded with surrogateescape (lone surrogates)
argument = st.one_of(
    st.text(max_size=80),
    st.binary(max_size=80).map(lambda b: b.decode("utf-8", "surrogateescape")),
    st.builds(
        lambda k, a: k + a,
        st.sampled_from(["FROM:", "TO:", "from:", "To:", "FROM: ", "TO:<", "FROM:<>"]),
        st.text(max_size=60),
    ),
)


@given(argument)
def test_helo_fault_never_raises_and_refuses_with_a_5xx(arg: str) -> None:
    assert_refusal(helo_fault(arg))


@given(st.sampled_from(["MAIL", "RCPT"]), st.one_of(st.none(), argument))
def test_path_fault_never_raises_and_refuses_with_a_5xx(command: str, arg: str | None) -> None:
    assert_refusal(path_fault(command, arg))


@given(st.text(alphabet="abc@<>.", max_size=12))
def test_a_path_without_angle_brackets_is_refused(path: str) -> None:
    reply = path_fault("MAIL", "FROM:" + path)
    if path.strip() and not path.strip().startswith("<"):
        assert reply is not None and reply.startswith("501 5.5.4")


local_part = st.text(alphabet="abcXYZ019.!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=70)
domain = st.text(alphabet="abz09.-", min_size=1, max_size=30)


@given(local_part, domain, st.sampled_from(["", " SIZE=10", "SIZE=1", "  BODY=8BITMIME"]))
def test_fast_path_parser_agrees_with_aiosmtpd(local: str, dom: str, params: str) -> None:
    import asyncio

    from aiosmtpd.smtp import SMTP

    from mailgate.realnet.relay.protocol import SmtpProtocol

    arg = f"<{local}@{dom}>{params}"
    loop = asyncio.new_event_loop()
    try:
        ours, theirs = SmtpProtocol(object(), loop=loop), SMTP(object(), loop=loop)
        assert ours._getaddr(arg) == theirs._getaddr(arg)
    finally:
        loop.close()


# ---------------------------------------------------------------- header sections

line_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(
    str.encode
)
any_bytes = st.binary(max_size=300)


@given(any_bytes)
def test_split_header_keeps_every_byte(data: bytes) -> None:
    fields, rest = split_header(data)
    assert b"".join(fields) + rest == data


@given(any_bytes)
def test_strip_never_raises_and_is_idempotent(data: bytes) -> None:
    once = strip_forged_results(data, OURS)
    assert strip_forged_results(once, OURS) == once
    assert once == data or len(once) < len(data)


def forged_field(form: int, our_id: str, n: int) -> bytes:
    """A field claiming ``our_id`` in one of RFC 8601's forms, marked ``forged<n>``."""
    res = f"spf=pass header.d=forged{n}.example"
    return [
        f"Authentication-Results: {our_id}; {res}\r\n",
        f"Authentication-Results:\r\n\t{our_id};\r\n {res}\r\n",
        f'Authentication-Results: "{our_id}"; {res}\r\n',
        f"Authentication-Results: (x (y)) {our_id} (z); {res}\r\n",
        f"authentication-RESULTS: {our_id.upper()} 1; {res}\r\n",
    ][form].encode()


header = st.one_of(
    st.tuples(st.just("plain"), st.sampled_from([b"Subject", b"From", b"X-A", b"Received"]),
              line_text),
    st.tuples(st.just("forged"), st.integers(0, 4),
              st.sampled_from(["ours.example", "gw0-1.ours.example", "a.b.ours.example"])),
    st.tuples(st.just("foreign"), st.integers(0, 4),
              st.sampled_from(["mx.other.example", "ours.example.evil", "notours.example"])),
)  # fmt: skip


@given(st.lists(header, max_size=8), st.one_of(st.none(), st.lists(line_text, max_size=5)))
def test_strip_removes_exactly_the_forged_fields(headers: list, body: list | None) -> None:
    kept, all_fields = [], []
    for n, (kind, a, b) in enumerate(headers):
        if kind == "plain":
            field = a + b": " + b + b"\r\n"
        else:
            field = forged_field(a, b, n)
            if kind == "foreign":
                field = field.replace(b"forged", b"kept")
        all_fields.append(field)
        if kind != "forged":
            kept.append(field)
    # a message with a body, or with headers only (no empty line)
    tail = b"" if body is None else b"\r\n" + b"".join(line + b"\r\n" for line in body)
    data = b"".join(all_fields) + tail
    assert strip_forged_results(data, OURS) == b"".join(kept) + tail


@given(st.lists(st.tuples(st.booleans(), line_text), max_size=8), st.lists(line_text, max_size=4))
def test_received_counting_agrees_with_the_email_parser(
    fields: list[tuple[bool, bytes]], body: list[bytes]
) -> None:
    head = b"".join(
        (b"Received: from a\r\n\tby b" + t if rcvd else b"X-Other: " + t) + b"\r\n"
        for rcvd, t in fields
    )
    data = head + b"\r\nReceived: in the body\r\n" + b"".join(x + b"\r\n" for x in body)
    parsed = email.message_from_bytes(data)
    assert count_received(data) == len(parsed.get_all("Received") or [])


@given(st.binary(max_size=200))
def test_authserv_id_never_raises(value: bytes) -> None:
    assert isinstance(authserv_id(b"Authentication-Results:" + value), str)


# ---------------------------------------------------------------- dot-stuffing, long lines

crlf_message = st.lists(
    st.one_of(line_text, st.sampled_from([b".", b"..", b". x", b".\t", b""])), max_size=12
).map(lambda lines: b"\r\n".join(lines))


def unstuff(wire: bytes) -> bytes:
    """RFC 5321 4.5.2 from the receiver's side: up to the lone ".", one leading dot off."""
    lines = wire.split(b"\r\n")
    end = lines.index(b".")
    assert lines[end + 1 :] == [b""], "data after the terminator"
    return b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n" for line in lines[:end])


@given(crlf_message)
def test_dot_stuffing_round_trips(data: bytes) -> None:
    wire = dot_stuff(data)
    assert unstuff(wire) == (data if data.endswith(b"\r\n") else data + b"\r\n")


@given(crlf_message)
def test_pop3_dot_stuffing_round_trips(data: bytes) -> None:
    from mailgate.realnet.services.pop3_session import dot_stuff as pop3_stuff

    data += b"\r\n"
    assert unstuff(pop3_stuff(data)) == data


@given(st.lists(st.binary(max_size=300).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
                max_size=6), st.integers(2, 120))  # fmt: skip
def test_long_lines_are_wrapped_without_losing_a_byte(lines: list[bytes], limit: int) -> None:
    data = b"\r\n".join(lines)
    out = wrap_long_lines(data, limit)
    assert all(len(line) <= limit for line in out.split(b"\r\n"))
    # every break is an inserted CRLF SPACE: taking them all out gives the input back
    assert out.replace(b"\r\n ", b"\r\n") == data.replace(b"\r\n ", b"\r\n") or (
        out.replace(b"\r\n ", b"") == data.replace(b"\r\n ", b"")
    )


# ---------------------------------------------------------------- a real relay on a socket

verb = st.sampled_from(
    ["HELO", "EHLO", "MAIL FROM:", "RCPT TO:", "DATA", "RSET", "NOOP", "VRFY", "EXPN", "HELP",
     "AUTH", "STARTTLS", "BDAT", "mail from:", "rcpt to:", "XCLIENT", ""]
)  # fmt: skip
random_text = st.binary(max_size=120).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
command = st.one_of(
    st.builds(lambda v, a: v.encode() + a, verb, random_text),
    st.builds(lambda v, a: v.encode() + b"<" + a + b"@ours.example>", verb, random_text),
    st.sampled_from([b"MAIL FROM:<a@ours.example>", b"RCPT TO:<b@ours.example>", b"DATA"]),
    st.binary(min_size=500, max_size=1500).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
)


class Client:
    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.file = self.sock.makefile("rb")

    def reply(self) -> list[bytes]:
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                return lines  # closed
            assert REPLY.match(line), line
            lines.append(line)
            if line[3:4] != b"-":
                return lines

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture(scope="module")
def relay_server(tmp_path_factory):
    from mailgate.realnet.relay.config import RelayConfig
    from mailgate.realnet.relay.relay import Relay
    from mailgate.realnet.services.inthread import serve_in_thread

    got: list[tuple[str, bytes]] = []
    with socket.socket() as s:
        s.bind(("127.62.0.1", 0))
        port = s.getsockname()[1]
    config = RelayConfig(
        host_id="fuzz.0",
        hostname="fuzz.ours.example",
        bind="127.62.0.1",
        port=port,
        state_dir=tmp_path_factory.mktemp("fuzz"),
        local_domains=OURS,
        local_delivery=lambda user, data: got.append((user, data)),
    )
    with serve_in_thread(Relay(config)):
        yield "127.62.0.1", port, got


@pytest.mark.realnet
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.booleans(), st.lists(command, min_size=1, max_size=4))
def test_random_commands_get_valid_replies_from_a_real_relay(
    relay_server, ehlo: bool, commands: list[bytes]
) -> None:
    host, port, got = relay_server
    before = len(got)
    accepted = 0  # recipients of the open transaction
    delivered = 0
    c = Client(host, port)
    try:
        assert c.reply()[-1].startswith(b"220")
        for line in ([b"EHLO fuzz.example"] if ehlo else []) + commands:
            c.sock.sendall(line + b"\r\n")
            reply = c.reply()
            assert reply, f"closed without a reply to {line!r}"
            code = reply[-1][:3]
            if line.upper().startswith(b"MAIL") and code == b"250":
                accepted = 0
            if line.upper().startswith(b"RCPT") and code == b"250":
                accepted += 1
            if code == b"354":
                c.sock.sendall(b"Subject: fuzz\r\n\r\n.x\r\n.\r\n")
                reply = c.reply()
                assert reply and reply[-1][:1] in (b"2", b"4", b"5"), reply
                if reply[-1].startswith(b"250"):
                    delivered += accepted
                accepted = 0
            if code in (b"221", b"421") or reply[-1].startswith(b"502 5.5.1 Too many"):
                break  # the server said goodbye
    finally:
        c.close()
    # an accepted message is filed, once per recipient
    assert len(got) - before == delivered


@pytest.mark.realnet
def test_after_the_fuzzing_a_normal_message_still_arrives(relay_server) -> None:
    host, port, got = relay_server
    before = len(got)
    with smtplib.SMTP(host, port, timeout=10) as s:
        s.sendmail("a@ours.example", ["b@ours.example"], b"Subject: normal\r\n\r\n.dot\r\n")
    assert len(got) == before + 1
    assert got[-1][1].endswith(b"\r\n.dot\r\n")  # unstuffed by the real server
