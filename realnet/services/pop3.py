"""A POP3 server (RFC 1939, CAPA from RFC 2449) over the mailbox server's Maildirs.

Commands: USER, PASS, STAT, LIST, RETR, DELE, RSET, NOOP, QUIT, TOP, UIDL,
CAPA. Users and password hashes come from ``scenario.realnet.users``
(:mod:`realnet.services.passwords`; the scrypt check runs in the
``AuthGuard``'s worker thread, failed logins are throttled per client address,
and a client may hold ``CLIENT_CONNECTION_LIMIT`` connections). The session
follows the RFC's states: AUTHORIZATION, TRANSACTION, and UPDATE, which
only QUIT from TRANSACTION enters; messages marked with DELE are removed
then and only then, so a dropped connection deletes nothing. One session
per maildrop at a time: a second login gets ``-ERR [IN-USE]``. This module is
the server (listening, the maildrop locks, reading command lines with their
limits); ``pop3_session`` holds one session's states and commands.

Limits: a command line may be 255 octets (RFC 2449); a longer one gets
``-ERR`` and a line over :data:`MAX_LINE` closes the connection; an idle
session is closed after ``idle_timeout_s`` (RFC 1939's autologout, 10 min).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mailgate.realnet.relay.authguard import AuthGuard
from mailgate.realnet.relay.config import CLIENT_CONNECTION_LIMIT
from mailgate.realnet.services.pop3_session import Closed, EventHook, Pop3Session, send

log = logging.getLogger(__name__)

MAX_COMMAND = 255  # octets including CRLF (RFC 2449 §4)
MAX_LINE = 4096  # beyond this the client is not speaking POP3: hang up


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
        guard: AuthGuard | None = None,
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
        #: password checks off the event loop, failed logins throttled per client; the
        #: mailbox server shares its guard with submission
        self.guard = guard or AuthGuard()
        self._own_guard = guard is None
        self._connections: Counter[str] = Counter()

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
        if self._own_guard:
            self.guard.close()

    # ------------------------------------------------------------ connections

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peer = writer.get_extra_info("peername")
        ip = peer[0] if peer else ""
        if self._connections[ip] >= CLIENT_CONNECTION_LIMIT:
            # Postfix smtpd_client_connection_count_limit, for POP3 too
            with contextlib.suppress(Exception):
                await send(writer, f"-ERR [SYS/TEMP] too many connections from {ip}")
            writer.close()
            return
        self._connections[ip] += 1
        self._sessions.add(task)
        session = Pop3Session(self.root, self.users, self._locked, self.on_event, writer)
        session.guard, session.ip = self.guard, ip
        try:
            await send(writer, "+OK mailgate POP3 server ready")
            while True:
                line = await self._read_command(reader, writer)
                if line is None:
                    continue
                await session.handle(line)
        except (Closed, asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("POP3 session failed")
            with contextlib.suppress(Exception):
                await send(writer, "-ERR internal error")
        finally:
            session.close()
            self._sessions.discard(task)
            self._connections[ip] -= 1
            if self._connections[ip] <= 0:
                del self._connections[ip]
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
                await send(writer, "-ERR autologout: idle for too long")
            raise Closed from None
        except asyncio.LimitOverrunError:
            await send(writer, "-ERR line too long")
            raise Closed from None
        except asyncio.IncompleteReadError:
            raise Closed from None
        if len(raw) > MAX_COMMAND:
            await send(writer, "-ERR line too long")
            return None
        return raw.rstrip(b"\r\n").decode("utf-8", "surrogateescape")
