"""A host's delivery slots as Postfix's queue manager grants them: per destination,
within a per-host total.

Postfix runs at most ``default_destination_concurrency_limit`` (20) deliveries to one
destination at once, and at most ``default_process_limit`` (100) delivery agents in
all. A destination is where a delivery connects: our next tier is one destination,
each remote domain is one. So a dead remote site, its deliveries stuck in connect
timeouts, holds only its own 20 slots and mail for every other destination flows.

A message first waits (FIFO) for a slot of its destination, then (FIFO across
destinations) for one of the host's slots; both are held until the delivery ends.
Mail for the Internet's "many small domains" (``Msg.domain == -1``) has no
destination limit: each of those domains rarely sees two deliveries at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import simpy

from mailgate.sim.model.engine import Pool
from mailgate.sim.model.stats import Level
from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.topology import INTERNET

#: The destination of a message at one host: a key, or None (no destination limit).
DestinationOf = Callable[[Any], "int | None"]


def destinations(s: Scenario, tier: str) -> tuple[DestinationOf, dict[int, str]]:
    """How a host of ``tier`` names its messages' destinations, and the names.

    As ``Router.next_tier`` routes: a tier with a next tier has one destination; a tier
    delivering to the Internet has one per named remote domain (``Msg.domain``), plus
    ``scenario.mx`` for internal mail; the other domains are not limited.
    """
    nxt = s.tiers[tier].next_hop
    if nxt != INTERNET:
        return _single, {0: nxt}
    domains = s.internet.domains
    mx = len(domains)
    names = {i: d.name for i, d in enumerate(domains)}
    names[mx] = s.mx

    def remote(m: Any) -> int | None:
        if m.flow == "internal":
            return mx
        return m.domain if m.domain >= 0 else None

    return remote, names


def _single(_: Any) -> int:
    return 0


class DeliverySlots:
    """Delivery slots per destination (``per_destination`` each) within ``total``.

    ``acquire(fn, m)`` calls ``fn(m)`` once ``m`` holds a slot of its destination and
    one of the host's; ``release(m)`` gives both back. ``busy``/``waiting`` are the
    host's levels (all slots held; messages waiting for either); ``level()`` makes
    each destination's own busy level (``occupancy``: name -> Level).
    """

    __slots__ = ("_c_got", "dest_of", "env", "level", "names", "occupancy", "per_destination",
                 "pools", "total", "waiting")  # fmt: skip

    def __init__(
        self,
        env: simpy.Environment,
        name: str,
        *,
        total: int,
        per_destination: int,
        dest_of: DestinationOf,
        names: dict[int, str],
        busy: Level | None = None,
        waiting: Level | None = None,
        level: Callable[[], Level] | None = None,
    ) -> None:
        self.env = env
        self.total = Pool(env, total, name, busy=busy, waiting=waiting)
        self.per_destination = per_destination
        self.dest_of = dest_of
        self.names = names
        self.waiting = waiting
        self.level = level
        self.pools: dict[int, Pool] = {}
        self.occupancy: dict[str, Level] = {}
        self._c_got = self._got_destination

    @property
    def in_use(self) -> int:
        """Slots held on the host (all destinations)."""
        return self.total.in_use

    @property
    def capacity(self) -> int:
        return self.total.capacity

    def acquire(self, fn: Callable[[Any], None], m: Any) -> None:
        """Run ``fn(m)`` once ``m`` holds a slot of its destination and one of the host's."""
        d = self.dest_of(m)
        if d is None:
            self.total.acquire(fn, m)
            return
        pool = self.pools.get(d)
        if pool is None:
            pool = self._pool(d)
        pool.acquire(self._c_got, (fn, m))

    def _got_destination(self, arg: tuple[Callable[[Any], None], Any]) -> None:
        self.total.acquire(*arg)

    def release(self, m: Any) -> None:
        """``m``'s delivery ended: the host's slot first (to a message already holding its
        destination's), then the destination's (its next message then queues for the host)."""
        self.total.release()
        d = self.dest_of(m)
        if d is not None:
            self.pools[d].release()

    def _pool(self, d: int) -> Pool:
        name = self.names.get(d, str(d))
        busy = None
        if self.level is not None:
            busy = self.occupancy[name] = self.level()
        pool = self.pools[d] = Pool(
            self.env, self.per_destination, f"{self.total.name}[{name}]",
            busy=busy, waiting=self.waiting,
        )  # fmt: skip
        return pool

    def waiters(self) -> Iterator[Any]:
        """The messages waiting for a slot (of their destination, or of the host)."""
        for pool in self.pools.values():
            for _, m in pool.waiters():
                yield m
        yield from self.total.waiters()

    def finish(self, end: float) -> None:
        """Close the destinations' levels at ``end``."""
        for level in self.occupancy.values():
            level.finish(end)

    def __repr__(self) -> str:
        return f"DeliverySlots({self.total!r}, {len(self.pools)} destinations)"
