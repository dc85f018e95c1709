"""What a gateway's checks see and may decide, milter-style, before the 250.

A ``Policy`` gets an ``Incoming`` message (client address, HELO, envelope,
bytes, trace id) and returns a ``Verdict``: accept (the default), reject with
a reply, or quarantine. Blocking or CPU-heavy checks (pyspf, dkimpy, virus
scanning) run through ``Incoming.stage`` in a thread pool, off the event
loop, and are recorded as a stage of the message's ``HopRecord``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from mailgate.sim.scenario.records import HopRecord, StageSpan

#: CPU-bound and blocking checks (pyspf, dkimpy, scanning, Maildir writes) run here,
#: off the event loop, so one slow check does not stall every other session.
_checks = ThreadPoolExecutor(max_workers=4, thread_name_prefix="checks")


async def in_thread(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """Run ``fn`` in the checks pool; return its result and the CPU time it took."""

    def timed() -> tuple[Any, float]:
        c0 = time.thread_time()
        result = fn(*args)
        return result, time.thread_time() - c0

    return await asyncio.get_running_loop().run_in_executor(_checks, timed)


# ---------------------------------------------------------------- policy interface


@dataclass
class Verdict:
    """What a policy decided: ``accept`` (default), ``reject`` or ``quarantine``."""

    action: str = "accept"
    reply: str = ""
    reason: str = ""

    @classmethod
    def reject(cls, reply: str) -> Verdict:
        return cls("reject", reply)

    @classmethod
    def quarantine(cls, reason: str) -> Verdict:
        return cls("quarantine", reason=reason)


@dataclass
class Incoming:
    """A message being received, as a policy sees it before the 250."""

    host: str
    client_ip: str
    helo: str
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    trace_id: str
    flow: str
    authenticated: str | None = None
    record: HopRecord | None = None
    prepend: list[bytes] = field(default_factory=list)

    async def stage(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking check in the thread pool and record it as stage ``name``."""
        t0 = time.time()
        result, cpu = await in_thread(fn, *args)
        self.add_span(name, t0, time.time(), cpu)
        return result

    def add_span(self, name: str, start: float, end: float, cpu: float = 0.0) -> None:
        if self.record is not None:
            self.record.stages[name] = StageSpan(start, end, cpu)


class Policy:
    """A gateway's checks. The default accepts everything."""

    async def check_rcpt(self, msg: Incoming, address: str) -> str | None:
        """A reply to refuse one recipient (e.g. ``550 5.1.1``), or None."""
        return None

    async def check(self, msg: Incoming) -> Verdict | None:
        """Run before the 250; may set ``msg.data`` and add ``msg.prepend`` headers."""
        return None
