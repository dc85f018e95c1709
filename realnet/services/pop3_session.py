"""One POP3 session's dialogue (RFC 1939, CAPA from RFC 2449): states and commands.

A ``Pop3Session`` answers the command lines of one connection: AUTHORIZATION
(USER, PASS; the scrypt check runs in the server's ``AuthGuard``), TRANSACTION (STAT, LIST,
UIDL, RETR, TOP, DELE, RSET, NOOP) and UPDATE, which only QUIT from
TRANSACTION enters; messages marked with DELE are removed then and only then.
The server (``pop3.Pop3Server``) reads the lines, owns the maildrop locks it
shares with its sessions, and ends the connection when ``Closed`` is raised.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path

from mailgate.realnet.relay.authguard import AuthGuard
from mailgate.realnet.services import maildir
from mailgate.realnet.services.passwords import dummy_verify, verify_password

log = logging.getLogger(__name__)

MAX_AUTH_FAILURES = 3
CAPABILITIES = ("USER", "TOP", "UIDL", "RESP-CODES", "PIPELINING", "IMPLEMENTATION mailgate")

#: ``on_event(kind, user, uid, start, end)``: kind is "login" (PASS to maildrop
#: open), "retrieve" (one RETR) or "update" (the deletions at QUIT); times are
#: ``time.time()`` — the mailbox host turns them into pop_session / pop_retrieve spans.
EventHook = Callable[[str, str, str | None, float, float], None]

_DOT_AT_LINE_START = re.compile(rb"(^|\r\n)\.")


def dot_stuff(data: bytes) -> bytes:
    """Multi-line body as sent: CRLF lines, leading dots doubled, ending with ``.\\r\\n``."""
    data = maildir.to_crlf(data)
    return _DOT_AT_LINE_START.sub(rb"\1..", data) + b".\r\n"


def _check(password: str, stored: str | None) -> bool:
    """The password check (in the guard's worker thread); an unknown user costs the same."""
    if stored is None:
        dummy_verify(password)
        return False
    return verify_password(password, stored)


class Closed(Exception):
    """The session is over (QUIT, autologout, hang-up or protocol abuse)."""


class Pop3Session:
    """The state and command dialogue of one POP3 connection."""

    def __init__(
        self,
        root: Path,
        users: dict[str, str],
        locked: set[str],
        on_event: EventHook | None,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.root = root
        self.users = users
        #: maildrops with a session in TRANSACTION, shared by all sessions of the server
        self.locked = locked
        self.on_event = on_event
        self.writer = writer
        self.user = ""
        self.drop = ""  # the maildrop's directory name
        self.authenticated = False
        self.messages: list[maildir.MaildirMessage] = []
        self.deleted: set[int] = set()
        self.failures = 0
        #: the server's login throttle and the client's address (set by the server)
        self.guard: AuthGuard | None = None
        self.ip = ""

    def close(self) -> None:
        """The connection is gone: release the maildrop (nothing is deleted)."""
        if self.authenticated:
            self.locked.discard(self.drop)

    async def handle(self, line: str) -> None:
        """Answer one command line (raises ``Closed`` when the session is over)."""
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        args = rest.split() if keyword != "PASS" else [rest]
        if keyword == "CAPA" and not rest:
            await _multi(self.writer, "Capability list follows", [c.encode() for c in CAPABILITIES])
        elif keyword == "QUIT" and not rest:
            await self._quit()
        elif keyword == "NOOP" and not rest and self.authenticated:
            await send(self.writer, "+OK")
        elif not self.authenticated:
            await self._authorization(keyword, args)
        else:
            await self._transaction(keyword, args)

    # ------------------------------------------------------------ AUTHORIZATION

    async def _authorization(self, keyword: str, args: list[str]) -> None:
        if keyword == "USER":
            if len(args) != 1:
                await send(self.writer, "-ERR usage: USER name")
                return
            # +OK for any name, so that the reply does not reveal which users exist.
            self.user = args[0]
            await send(self.writer, "+OK send PASS")
        elif keyword == "PASS":
            if not self.user:
                await send(self.writer, "-ERR USER first")
                return
            await self._login(args[0])
        else:
            await send(self.writer, f"-ERR {_printable(keyword)} not allowed before login")

    async def _login(self, password: str) -> None:
        start = time.time()
        user, self.user = self.user, ""
        if self.guard is None:
            self.guard = AuthGuard()
        ok = await self.guard.verify(self.ip, _check, password, self.users.get(user))
        if ok is None:
            await send(self.writer, "-ERR [SYS/TEMP] too many failed logins, try again later")
            raise Closed
        if not ok:
            self.failures += 1
            await send(self.writer, "-ERR [AUTH] invalid user name or password")
            if self.failures >= MAX_AUTH_FAILURES:
                raise Closed
            return
        # Local parts are filed in lower case (as the mailbox server's SMTP side files them).
        drop = user.lower()
        if drop in self.locked:
            await send(self.writer, "-ERR [IN-USE] maildrop locked by another session")
            return
        self.locked.add(drop)
        self.user, self.drop, self.authenticated = user, drop, True
        try:
            self.messages = await asyncio.to_thread(maildir.list_messages, self.root, drop)
        except Exception:
            self.locked.discard(drop)
            self.authenticated = False
            await send(self.writer, "-ERR [SYS/TEMP] cannot open maildrop")
            return
        octets = sum(m.size for m in self.messages)
        await send(self.writer, f"+OK {user} has {len(self.messages)} messages ({octets} octets)")
        self._event("login", user, None, start)

    # ------------------------------------------------------------ TRANSACTION

    async def _transaction(self, keyword: str, args: list[str]) -> None:
        handler = {
            "STAT": self._stat,
            "LIST": self._list,
            "UIDL": self._uidl,
            "RETR": self._retr,
            "TOP": self._top,
            "DELE": self._dele,
            "RSET": self._rset,
        }.get(keyword)
        if handler is None:
            await send(self.writer, f"-ERR unknown command {_printable(keyword)}")
            return
        await handler(args)

    async def _stat(self, args: list[str]) -> None:
        if args:
            await send(self.writer, "-ERR STAT takes no argument")
            return
        live = [m for i, m in enumerate(self.messages, 1) if i not in self.deleted]
        await send(self.writer, f"+OK {len(live)} {sum(m.size for m in live)}")

    async def _listing(self, args: list[str], what: str) -> None:
        def item(n: int, m: maildir.MaildirMessage) -> str:
            return f"{n} {m.size if what == 'size' else m.uid}"

        if len(args) > 1:
            await send(self.writer, "-ERR too many arguments")
        elif args:
            n = await self._message_number(args[0])
            if n is not None:
                await send(self.writer, f"+OK {item(n, self.messages[n - 1])}")
        else:
            lines = [
                item(n, m).encode() for n, m in enumerate(self.messages, 1) if n not in self.deleted
            ]
            await _multi(self.writer, f"{len(lines)} messages", lines)

    async def _list(self, args: list[str]) -> None:
        await self._listing(args, "size")

    async def _uidl(self, args: list[str]) -> None:
        await self._listing(args, "uid")

    async def _retr(self, args: list[str]) -> None:
        if len(args) != 1:
            await send(self.writer, "-ERR usage: RETR msg")
            return
        n = await self._message_number(args[0])
        if n is None:
            return
        start = time.time()
        message = self.messages[n - 1]
        data = await self._read(message)
        if data is None:
            return
        self.writer.write(f"+OK {message.size} octets\r\n".encode() + dot_stuff(data))
        await self.writer.drain()
        self._event("retrieve", self.user, message.uid, start)

    async def _top(self, args: list[str]) -> None:
        if len(args) != 2 or not args[1].isdigit():
            await send(self.writer, "-ERR usage: TOP msg lines")
            return
        n = await self._message_number(args[0])
        if n is None:
            return
        data = await self._read(self.messages[n - 1])
        if data is None:
            return
        data = maildir.to_crlf(data)
        head, sep, body = data.partition(b"\r\n\r\n")
        lines = body.split(b"\r\n")[: int(args[1])] if sep else []
        out = head + b"\r\n\r\n" + b"".join(line + b"\r\n" for line in lines) if sep else data
        self.writer.write(b"+OK top of message follows\r\n" + dot_stuff(out))
        await self.writer.drain()

    async def _dele(self, args: list[str]) -> None:
        if len(args) != 1:
            await send(self.writer, "-ERR usage: DELE msg")
            return
        n = await self._message_number(args[0])
        if n is not None:
            self.deleted.add(n)
            await send(self.writer, f"+OK message {n} deleted")

    async def _rset(self, args: list[str]) -> None:
        if args:
            await send(self.writer, "-ERR RSET takes no argument")
            return
        self.deleted.clear()
        octets = sum(m.size for m in self.messages)
        await send(self.writer, f"+OK maildrop has {len(self.messages)} messages ({octets} octets)")

    async def _quit(self) -> None:
        if not self.authenticated or not self.deleted:
            await send(self.writer, "+OK mailgate POP3 server signing off")
            raise Closed
        # UPDATE state: the only place where messages are removed.
        start = time.time()
        paths = [self.messages[n - 1].path for n in sorted(self.deleted)]
        failed = await asyncio.to_thread(maildir.delete, paths)
        self._event("update", self.user, None, start)
        if failed:
            await send(self.writer, f"-ERR [SYS/TEMP] {len(failed)} messages not removed")
        else:
            await send(self.writer, f"+OK signing off ({len(paths)} messages deleted)")
        raise Closed

    # ------------------------------------------------------------ helpers

    async def _message_number(self, arg: str) -> int | None:
        n = int(arg) if arg.isdigit() and len(arg) < 10 else 0
        if not 1 <= n <= len(self.messages):
            await send(self.writer, "-ERR no such message")
            return None
        if n in self.deleted:
            await send(self.writer, f"-ERR message {n} already deleted")
            return None
        return n

    async def _read(self, message: maildir.MaildirMessage) -> bytes | None:
        try:
            return await asyncio.to_thread(maildir.read_message, message.path)
        except OSError:
            await send(self.writer, "-ERR [SYS/TEMP] message cannot be read")
            return None

    def _event(self, kind: str, user: str, uid: str | None, start: float) -> None:
        if self.on_event is not None:
            try:
                self.on_event(kind, user, uid, start, time.time())
            except Exception:  # a broken observer must not break the session
                log.exception("POP3 event hook failed")


async def send(writer: asyncio.StreamWriter, line: str) -> None:
    """One status line."""
    writer.write(line.encode() + b"\r\n")
    await writer.drain()


async def _multi(writer: asyncio.StreamWriter, status: str, lines: list[bytes]) -> None:
    body = b"".join(line + b"\r\n" for line in lines)
    writer.write(f"+OK {status}\r\n".encode() + _DOT_AT_LINE_START.sub(rb"\1..", body) + b".\r\n")
    await writer.drain()


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)[:20]
