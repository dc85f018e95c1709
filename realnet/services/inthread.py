"""Run an asyncio service (``start``/``stop``) on its own event loop in a thread, next
to blocking code: tests, benchmarks and the DNS server's synchronous helpers."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Protocol, TypeVar


class _Service(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


_S = TypeVar("_S", bound=_Service)


@contextlib.contextmanager
def serve_in_thread(service: _S, name: str = "realnet-service") -> Iterator[_S]:
    """Run ``service`` (async ``start``/``stop``) on its own event loop in a thread.

    For tests and tools that need a server next to blocking client code; the
    service is stopped and the loop closed afterwards, also on failure.
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name=name, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(service.start(), loop).result(timeout=10)
        yield service
    finally:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(service.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
