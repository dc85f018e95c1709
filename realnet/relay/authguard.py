"""Password checks that cannot stall a server: off the event loop, throttled per client.

A password check costs ~50 ms of scrypt CPU on purpose. ``AuthGuard`` runs it
in a small thread pool of its own (``AUTH_WORKERS``, like Dovecot's auth
worker processes: hashlib's scrypt releases the GIL, so the event loop keeps
answering), and counts failed logins per client address: each failure is
answered after a delay that doubles with the client's recent failures
(Dovecot's auth penalty), and a client over ``AUTH_FAILURE_LIMIT`` failures a
minute is refused without any check (Postfix anvil's
``smtpd_client_auth_rate_limit``). One guard serves a host's SMTP submission
and POP3 alike, so a guesser cannot switch protocols to get fresh attempts.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mailgate.realnet.relay.config import (
    AUTH_FAILURE_LIMIT,
    AUTH_FAILURE_WINDOW_S,
    AUTH_PENALTY_MAX_S,
    AUTH_PENALTY_S,
    AUTH_WORKERS,
)

#: client addresses remembered at most (a flood of addresses cannot grow the table)
_MAX_CLIENTS = 10_000


class AuthGuard:
    """Runs password checks in worker threads and throttles failing clients."""

    def __init__(
        self,
        *,
        failure_limit: int = AUTH_FAILURE_LIMIT,
        window_s: float = AUTH_FAILURE_WINDOW_S,
        penalty_s: float = AUTH_PENALTY_S,
        penalty_max_s: float = AUTH_PENALTY_MAX_S,
        workers: int = AUTH_WORKERS,
    ) -> None:
        self.failure_limit = failure_limit
        self.window_s = window_s
        self.penalty_s = penalty_s
        self.penalty_max_s = penalty_max_s
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="auth")
        self._failures: dict[str, deque[float]] = {}

    def recent_failures(self, ip: str) -> int:
        """Failed logins of ``ip`` within the window."""
        seen = self._failures.get(ip)
        if seen is None:
            return 0
        horizon = time.monotonic() - self.window_s
        while seen and seen[0] < horizon:
            seen.popleft()
        if not seen:
            del self._failures[ip]
            return 0
        return len(seen)

    def throttled(self, ip: str) -> bool:
        """True if ``ip`` has used up its failed logins for this minute."""
        return bool(self.failure_limit) and self.recent_failures(ip) >= self.failure_limit

    async def verify(self, ip: str, check: Callable[..., bool], *args: Any) -> bool | None:
        """``check(*args)`` in a worker thread: True, False (after the client's penalty
        delay), or None without any check if the client is throttled."""
        if self.throttled(ip):
            return None
        ok = await asyncio.get_running_loop().run_in_executor(self._pool, check, *args)
        if ok:
            return True
        failures = self._failed(ip)
        await asyncio.sleep(min(self.penalty_max_s, self.penalty_s * 2 ** (failures - 1)))
        return False

    def _failed(self, ip: str) -> int:
        if ip not in self._failures and len(self._failures) >= _MAX_CLIENTS:
            self._failures.clear()
        seen = self._failures.setdefault(ip, deque())
        seen.append(time.monotonic())
        return self.recent_failures(ip)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
