"""Property-based tests (hypothesis) of the POP3 dialogue (issue #13): random command
lines, before and after login, against a real maildrop. No line may raise anything but
the session's own end; every answer is one ``+OK``/``-ERR`` line or a multi-line answer
ending in a lone dot; RETR gives back the filed message byte for byte (unstuffed as
RFC 1939 3 says, independently of the server's code); nothing is removed before QUIT.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from mailgate.realnet.services import maildir
from mailgate.realnet.services.pop3_session import Closed, Pop3Session

USER, PASSWORD = "u", "right"
MESSAGES = [
    b"Subject: one\r\n\r\n.starts with a dot\r\n..two dots\r\n.\r\nend\r\n",
    b"Subject: two\r\n\r\nplain\r\n",
    b"Subject: three\r\nX: y\r\n\r\n\r\n.\r\n",
]
MULTI_LINE = {"CAPA", "LIST", "UIDL", "RETR", "TOP"}


class Writer:
    """What the session writes, as a StreamWriter would take it."""

    def __init__(self) -> None:
        self.out = bytearray()

    def write(self, data: bytes) -> None:
        self.out += data

    async def drain(self) -> None:
        return None


class Guard:
    """The login check without scrypt or penalty delays (those have tests of their own)."""

    async def verify(self, ip: str, fn: object, password: str, stored: str | None) -> bool:
        return stored is not None and password == PASSWORD


def unstuff(answer: bytes) -> bytes:
    """A multi-line answer's body: up to the lone dot, one leading dot off each line."""
    lines = answer.split(b"\r\n")[1:]  # the status line first
    end = lines.index(b".")
    return b"".join((x[1:] if x.startswith(b".") else x) + b"\r\n" for x in lines[:end])


keyword = st.sampled_from(
    ["USER", "PASS", "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "RSET", "NOOP", "QUIT",
     "CAPA", "APOP", "AUTH", "STLS", "user", "list", "", "X"]
)  # fmt: skip
argument = st.one_of(
    st.just(""),
    st.integers(-2, 5).map(str),
    st.sampled_from([USER, PASSWORD, "1 0", "2 1", "1 99", "0", "99999999999"]),
    st.text(max_size=30),
    st.binary(max_size=30).map(lambda b: b.decode("utf-8", "surrogateescape")),
)
line = st.builds(lambda k, a: f"{k} {a}" if a else k, keyword, argument).map(
    lambda s: s.replace("\r", "").replace("\n", "")
)


async def dialogue(root: Path, lines: list[str]) -> tuple[list[tuple[str, bytes]], bool]:
    """(each line with the bytes answered to it, whether the session ended)."""
    writer = Writer()
    session = Pop3Session(root, {USER: "stored"}, set(), None, writer)  # type: ignore[arg-type]
    session.guard = Guard()  # type: ignore[assignment]
    answers = []
    try:
        for text in lines:
            before = len(writer.out)
            try:
                await session.handle(text)
            except Closed:
                answers.append((text, bytes(writer.out[before:])))
                return answers, True
            answers.append((text, bytes(writer.out[before:])))
        return answers, False
    finally:
        session.close()


@settings(max_examples=100, deadline=None)
@given(st.booleans(), st.lists(line, max_size=10))
def test_random_pop3_commands(login: bool, commands: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for m in MESSAGES:
            maildir.deliver(root, USER, m)
        lines = ([f"USER {USER}", f"PASS {PASSWORD}"] if login else []) + commands
        answers, ended = asyncio.run(dialogue(root, lines))
        for text, answer in answers:
            assert answer.startswith((b"+OK", b"-ERR")), (text, answer)
            assert answer.endswith(b"\r\n"), (text, answer)
            word = text.partition(" ")[0].upper()
            if (
                answer.startswith(b"+OK")
                and word in MULTI_LINE
                and (word not in ("LIST", "UIDL") or not text.partition(" ")[2].strip())
            ):
                assert answer.endswith(b"\r\n.\r\n"), (text, answer)
                if word == "RETR":
                    n = int(text.split()[1])
                    assert unstuff(answer) == MESSAGES[n - 1], (text, answer)
            else:
                assert answer.count(b"\r\n") == 1, (text, answer)
        if ended:  # only QUIT or a third failed PASS ends a session
            assert answers[-1][0].partition(" ")[0].upper() in ("QUIT", "PASS"), answers[-1]
        words = [t.partition(" ")[0].upper() for t, _ in answers]
        if "QUIT" not in words:  # nothing is removed before QUIT
            assert len(maildir.list_messages(root, USER)) == len(MESSAGES)
