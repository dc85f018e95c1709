"""realnet's queue manager limits deliveries as the model does: per destination (the
next tier, or a recipient domain) within the host's total.

The delivery itself is replaced by a stand-in that counts the deliveries in progress per
recipient domain and in all, and holds each for a moment: the counts come from the
deliveries that actually ran, not from the semaphores.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from mailgate.realnet.relay.config import RelayConfig
from mailgate.realnet.relay.message import domain_of
from mailgate.realnet.relay.queue_manager import QueueManager
from mailgate.realnet.relay.spool import Spool, SpoolEntry
from mailgate.realnet.relay.tracing import Tracer

pytestmark = pytest.mark.realnet


def peaks(tmp: Path, per_dest: int, total: int, domains: dict[str, int]) -> tuple[dict, int]:
    """Most deliveries seen at once per domain and in all, for ``domains`` → messages."""
    cfg = RelayConfig(host_id="g3.0", hostname="g3.example", bind="127.0.0.1", port=25,
                      state_dir=tmp, destination_concurrency=per_dest,
                      delivery_limit=total)  # fmt: skip
    tracer = Tracer(tmp, "g3.0")
    qm = QueueManager(cfg, Spool(tmp / "spool", fsync=False), tracer)
    now: Counter[str] = Counter()
    most: Counter[str] = Counter()

    async def deliver_once(entry: SpoolEntry) -> None:
        d = domain_of(entry.rcpt_tos[0])
        now[d] += 1
        now["*"] += 1
        most[d] = max(most[d], now[d])
        most["*"] = max(most["*"], now["*"])
        await asyncio.sleep(0.02)
        now[d] -= 1
        now["*"] -= 1

    qm._deliver_once = deliver_once  # type: ignore[method-assign]

    async def main() -> None:
        qm.start()
        entries = [
            SpoolEntry(f"{d}-{i}", "a@ours.example", [f"u{i}@{d}"], b"x")
            for d, n in domains.items()
            for i in range(n)
        ]
        await asyncio.wait_for(asyncio.gather(*(qm._deliver(e) for e in entries)), 30)
        await qm.stop()

    try:
        asyncio.run(main())
    finally:
        tracer.close()
    return {d: most[d] for d in domains}, most["*"]


def test_a_destination_gets_its_limit_and_the_host_its_total(tmp_path: Path) -> None:
    # one busy destination: its own limit binds, not the host's
    per, total = peaks(tmp_path / "a", 3, 10, {"dead.example": 30})
    assert per == {"dead.example": 3} and total == 3
    # many destinations: each under its limit, the host's total binds
    per, total = peaks(tmp_path / "b", 3, 10, {f"d{i}.example": 6 for i in range(8)})
    assert total == 10 and max(per.values()) <= 3
