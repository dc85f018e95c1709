"""A POP3 server (RFC 1939, CAPA from RFC 2449) over the mailbox server's Maildirs.

Commands: USER, PASS, STAT, LIST, RETR, DELE, RSET, NOOP, QUIT, TOP, UIDL,
CAPA. Users and password hashes come from ``scenario.realnet.users``
(:mod:`realnet.passwords`; the scrypt check runs in a thread). The session
follows the RFC's states: AUTHORIZATION, TRANSACTION, and UPDATE, which
only QUIT from TRANSACTION enters; messages marked with DELE are removed
then and only then, so a dropped connection deletes nothing. One session
per maildrop at a time: a second login gets ``-ERR [IN-USE]``.

Limits: a command line may be 255 octets (RFC 2449); a longer one gets
``-ERR`` and a line over :data:`MAX_LINE` closes the connection; an idle
session is closed after ``idle_timeout_s`` (RFC 1939's autologout, 10 min).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailgate.realnet.services import maildir
from mailgate.realnet.services.passwords import dummy_verify, verify_password

log = logging.getLogger(__name__)

MAX_COMMAND = 255  # octets including CRLF (RFC 2449 §4)
MAX_LINE = 4096  # beyond this the client is not speaking POP3: hang up
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


class _Closed(Exception):
    """The session is over (QUIT, autologout, hang-up or protocol abuse)."""


@dataclass
class _Session:
    user: str = ""
    drop: str = ""  # the maildrop's directory name
    authenticated: bool = False
    messages: list[maildir.MaildirMessage] = field(default_factory=list)
    deleted: set[int] = field(default_factory=set)
    failures: int = 0


class Pop3Server:
    """POP3 on ``host:port`` for the Maildirs under ``root``.

    ``users`` maps user name → ``scrypt$...`` hash, or is an iterable of
    objects with ``name`` and ``password_hash`` (``scenario.realnet.users``).
    ``port=0`` picks a free port; :attr:`port` holds it after :meth:`start`.
    User ``Name``'s maildrop is ``root/name`` (lower case, as mail is filed).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        users: Mapping[str, str] | Iterable[Any],
        host: str,
        port: int = 0,
        *,
        idle_timeout_s: float = 600.0,
        on_event: EventHook | None = None,
    ) -> None:
        self.root = Path(root)
        if isinstance(users, Mapping):
            self.users = dict(users)
        else:
            self.users = {u.name: u.password_hash for u in users}
        self.host = host
        self.port = port
        self.idle_timeout_s = idle_timeout_s
        self.on_event = on_event
        self._locked: set[str] = set()
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, limit=MAX_LINE, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and end every session (without UPDATE: nothing is deleted)."""
        if self._server is None:
            return
        self._server.close()
        for task in list(self._sessions):
            task.cancel()
        await asyncio.gather(*self._sessions, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    # ------------------------------------------------------------ session

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        session = _Session()
        try:
            await self._send(writer, "+OK mailgate POP3 server ready")
            while True:
                line = await self._read_command(reader, writer)
                if line is None:
                    continue
                await self._dispatch(session, line, writer)
        except (_Closed, asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("POP3 session failed")
            with contextlib.suppress(Exception):
                await self._send(writer, "-ERR internal error")
        finally:
            if session.authenticated:
                self._locked.discard(session.drop)
            self._sessions.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_command(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> str | None:
        """The next command line without its line end; None after answering an over-long one."""
        try:
            raw = await asyncio.wait_for(reader.readuntil(b"\n"), self.idle_timeout_s)
        except TimeoutError:
            with contextlib.suppress(Exception):
                await self._send(writer, "-ERR autologout: idle for too long")
            raise _Closed from None
        except asyncio.LimitOverrunError:
            await self._send(writer, "-ERR line too long")
            raise _Closed from None
        except asyncio.IncompleteReadError:
            raise _Closed from None
        if len(raw) > MAX_COMMAND:
            await self._send(writer, "-ERR line too long")
            return None
        return raw.rstrip(b"\r\n").decode("utf-8", "surrogateescape")

    async def _dispatch(self, s: _Session, line: str, writer: asyncio.StreamWriter) -> None:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        args = rest.split() if keyword != "PASS" else [rest]
        if keyword == "CAPA" and not rest:
            await self._multi(writer, "Capability list follows", [c.encode() for c in CAPABILITIES])
        elif keyword == "QUIT" and not rest:
            await self._quit(s, writer)
        elif keyword == "NOOP" and not rest and s.authenticated:
            await self._send(writer, "+OK")
        elif not s.authenticated:
            await self._authorization(s, keyword, args, writer)
        else:
            await self._transaction(s, keyword, args, writer)

    # ------------------------------------------------------------ AUTHORIZATION

    async def _authorization(
        self, s: _Session, keyword: str, args: list[str], writer: asyncio.StreamWriter
    ) -> None:
        if keyword == "USER":
            if len(args) != 1:
                await self._send(writer, "-ERR usage: USER name")
                return
            # +OK for any name, so that the reply does not reveal which users exist.
            s.user = args[0]
            await self._send(writer, "+OK send PASS")
        elif keyword == "PASS":
            if not s.user:
                await self._send(writer, "-ERR USER first")
                return
            await self._login(s, args[0], writer)
        else:
            await self._send(writer, f"-ERR {_printable(keyword)} not allowed before login")

    async def _login(self, s: _Session, password: str, writer: asyncio.StreamWriter) -> None:
        start = time.time()
        user, s.user = s.user, ""
        stored = self.users.get(user)
        if stored is None:
            await asyncio.to_thread(dummy_verify, password)
            ok = False
        else:
            ok = await asyncio.to_thread(verify_password, password, stored)
        if not ok:
            s.failures += 1
            await self._send(writer, "-ERR [AUTH] invalid user name or password")
            if s.failures >= MAX_AUTH_FAILURES:
                raise _Closed
            return
        # Local parts are filed in lower case (as the mailbox server's SMTP side files them).
        drop = user.lower()
        if drop in self._locked:
            await self._send(writer, "-ERR [IN-USE] maildrop locked by another session")
            return
        self._locked.add(drop)
        s.user, s.drop, s.authenticated = user, drop, True
        try:
            s.messages = await asyncio.to_thread(maildir.list_messages, self.root, drop)
        except Exception:
            self._locked.discard(drop)
            s.authenticated = False
            await self._send(writer, "-ERR [SYS/TEMP] cannot open maildrop")
            return
        octets = sum(m.size for m in s.messages)
        await self._send(writer, f"+OK {user} has {len(s.messages)} messages ({octets} octets)")
        self._event("login", user, None, start)

    # ------------------------------------------------------------ TRANSACTION

    async def _transaction(
        self, s: _Session, keyword: str, args: list[str], writer: asyncio.StreamWriter
    ) -> None:
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
            await self._send(writer, f"-ERR unknown command {_printable(keyword)}")
            return
        await handler(s, args, writer)

    async def _stat(self, s: _Session, args: list[str], writer: asyncio.StreamWriter) -> None:
        if args:
            await self._send(writer, "-ERR STAT takes no argument")
            return
        live = [m for i, m in enumerate(s.messages, 1) if i not in s.deleted]
        await self._send(writer, f"+OK {len(live)} {sum(m.size for m in live)}")

    async def _listing(
        self, s: _Session, args: list[str], writer: asyncio.StreamWriter, what: str
    ) -> None:
        def item(n: int, m: maildir.MaildirMessage) -> str:
            return f"{n} {m.size if what == 'size' else m.uid}"

        if len(args) > 1:
            await self._send(writer, "-ERR too many arguments")
        elif args:
            n = await self._message_number(s, args[0], writer)
            if n is not None:
                await self._send(writer, f"+OK {item(n, s.messages[n - 1])}")
        else:
            lines = [item(n, m).encode() for n, m in enumerate(s.messages, 1) if n not in s.deleted]
            await self._multi(writer, f"{len(lines)} messages", lines)

    async def _list(self, s: _Session, args: list[str], writer: asyncio.StreamWriter) -> None:
        await self._listing(s, args, writer, "size")

    async def _uidl(self, s: _Session, args: list[str], writer: asyncio.StreamWriter) -> None:
        await self._listing(s, args, writer, "uid")

    async def _retr(self, s: _Session, args: list[str], writer: asyncio.StreamWriter) -> None:
        if len(args) != 1:
            await self._send(writer, "-ERR usage: RETR msg")
            return
        n = await self._message_number(s, args[0], writer)
        if n is None:
            return
        start = time.time()
        message = s.messages[n - 1]
        data = await self._read(message, writer)
        if data is None:
            return
        writer.write(f"+OK {message.size} octets\r\n".encode() + dot_stuff(data))
        await writer.drain()
        self._event("retrieve", s.user, message.uid, start)

    async def _top(self, s: _Session, args: list[str], writer: asyncio.StreamWriter) -> None:
        if len(args) != 2 or not args[1].isdigit():
            await self._send(writer, "-ERR usage: TOP msg lines")
            return
        n = await self._message_number(s, args[0], writer)
        if n is None:
            return
        data = await self._read(s.messages[n - 1], writer)
        if data is None:
            return
        data = maildir.to_crlf(data)
        head, sep, body = data.partition(b"\r\n\r\n")
        lines = body.split(b"\r\n")[: int(args[1])] if sep else []
        out = head + b"\r\n\r\n" + b"".join(line + b"\r\n" for line in lines) if sep else data
        writer.write(b"+OK top of message follows\r\n" + dot_stuff(out))
        await writer.drain()

    async def _dele(self, s: _Session, args: list[str], writer: asyncio.StreamWriter) -> None:
        if len(args) != 1:
            await self._send(writer, "-ERR usage: DELE msg")
            return
        n = await self._message_number(s, args[0], writer)
        if n is not None:
            s.deleted.add(n)
            await self._send(writer, f"+OK message {n} deleted")

    async def _rset(self, s: _Session, args: list[str], writer: asyncio.StreamWriter) -> None:
        if args:
            await self._send(writer, "-ERR RSET takes no argument")
            return
        s.deleted.clear()
        octets = sum(m.size for m in s.messages)
        await self._send(writer, f"+OK maildrop has {len(s.messages)} messages ({octets} octets)")

    async def _quit(self, s: _Session, writer: asyncio.StreamWriter) -> None:
        if not s.authenticated or not s.deleted:
            await self._send(writer, "+OK mailgate POP3 server signing off")
            raise _Closed
        # UPDATE state: the only place where messages are removed.
        start = time.time()
        paths = [s.messages[n - 1].path for n in sorted(s.deleted)]
        failed = await asyncio.to_thread(maildir.delete, paths)
        self._event("update", s.user, None, start)
        if failed:
            await self._send(writer, f"-ERR [SYS/TEMP] {len(failed)} messages not removed")
        else:
            await self._send(writer, f"+OK signing off ({len(paths)} messages deleted)")
        raise _Closed

    # ------------------------------------------------------------ helpers

    async def _message_number(
        self, s: _Session, arg: str, writer: asyncio.StreamWriter
    ) -> int | None:
        n = int(arg) if arg.isdigit() and len(arg) < 10 else 0
        if not 1 <= n <= len(s.messages):
            await self._send(writer, "-ERR no such message")
            return None
        if n in s.deleted:
            await self._send(writer, f"-ERR message {n} already deleted")
            return None
        return n

    async def _read(
        self, message: maildir.MaildirMessage, writer: asyncio.StreamWriter
    ) -> bytes | None:
        try:
            return await asyncio.to_thread(maildir.read_message, message.path)
        except OSError:
            await self._send(writer, "-ERR [SYS/TEMP] message cannot be read")
            return None

    async def _send(self, writer: asyncio.StreamWriter, line: str) -> None:
        writer.write(line.encode() + b"\r\n")
        await writer.drain()

    async def _multi(self, writer: asyncio.StreamWriter, status: str, lines: list[bytes]) -> None:
        body = b"".join(line + b"\r\n" for line in lines)
        writer.write(
            f"+OK {status}\r\n".encode() + _DOT_AT_LINE_START.sub(rb"\1..", body) + b".\r\n"
        )
        await writer.drain()

    def _event(self, kind: str, user: str, uid: str | None, start: float) -> None:
        if self.on_event is not None:
            try:
                self.on_event(kind, user, uid, start, time.time())
            except Exception:  # a broken observer must not break the session
                log.exception("POP3 event hook failed")


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)[:20]
