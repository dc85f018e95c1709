"""The fast machinery under the model: callbacks on a SimPy clock, FIFO pools.

SimPy's idiomatic style (a generator process per customer, ``Resource``
requests) costs several Python frames and events per step. The model instead
schedules plain callbacks on the SimPy event queue and keeps its own FIFO
queues of waiting work: a resource is a counter plus a ``deque``, a delay is
one heap entry. ``benchmarks/bench_sim.py`` measures the Model on a 5-station
M/M/2 tandem beside idiomatic SimPy, Ciw and a plain heapq loop.

Public pieces:

- ``Scheduler``: ``after(delay, fn, arg)`` calls ``fn(arg)`` later, ``run(until)``
  runs the calls in SimPy's order with a loop of its own; ``now`` is the clock,
  ``events_scheduled`` how many events were numbered, ``pending()`` the
  arguments of the calls still to come (for tests that look at where the
  messages are). The only code that touches SimPy's private state.
- ``Pool``: ``n`` identical slots with a FIFO of waiters (cores, SMTP
  sessions, delivery slots, a disk), with time-weighted busy and queue levels.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from heapq import heappop, heappush
from typing import Any

import simpy

from mailgate.sim.model.stats import Level

#: SimPy's event priorities (simpy.events.NORMAL / URGENT, int enums): the same heap
#: order as SimPy's own ``Environment.schedule`` (an ``until`` runs before other events
#: at its time).
_NORMAL = simpy.events.NORMAL
_URGENT = simpy.events.URGENT


class _StopRun(Exception):
    """Raised by the marker ``Scheduler.run`` puts at its ``until`` time."""


def _stop(_: Any) -> None:
    raise _StopRun


class Scheduler:
    """Callbacks on a SimPy environment's clock and event heap, run by our own loop.

    ``after(delay, fn, arg)`` calls ``fn(arg)`` at ``now + delay``. A heap entry is
    ``(time, priority, event id, fn, arg)``: SimPy's own ``(time, priority, id,
    event)`` order with the same id counter, but no ``Event`` object per call and
    no ``Environment.step`` around each one (an object and two frames less per
    event). ``run(until)`` pops and calls entries exactly in the order SimPy's
    ``Environment.run`` would; the environment's ``run`` and ``step`` are pointed
    at it, so code (tests) that runs ``env.run()`` gets the same loop. ``now`` is
    the clock, ``events_scheduled`` how many events were numbered, ``pending()``
    the arguments of the calls still to come.

    This is the only module that touches SimPy's private state (its heap, its
    event counter, its clock attribute): the rest of the model asks the
    ``Scheduler``.
    """

    __slots__ = ("_eid", "_queue", "env", "now")

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        # The same heap and id counter Environment.schedule uses (SimPy 4).
        self._queue: list[tuple[Any, ...]] = env._queue
        self._eid = env._eid
        # our heap entries are not SimPy events: SimPy's own loop must not pop them
        env.run = self.run  # type: ignore[method-assign]
        env.step = self.step  # type: ignore[method-assign]
        #: the simulated time: a plain attribute the loop sets with SimPy's clock (the hot
        #: paths read it often; a property would cost a frame each time)
        self.now: float = env._now

    @property
    def events_scheduled(self) -> int:
        """Events numbered so far (calls and ``until`` markers), read without taking an id."""
        # itertools.count shows its next value in its repr ("count(123)"); next() would use one up
        return int(repr(self._eid)[6:-1])

    def pending(self) -> Iterator[Any]:
        """The argument of every call still on the heap (``until`` markers are skipped)."""
        for entry in self._queue:
            if entry[3] is not _stop:
                yield entry[4]

    def after(self, delay: float, fn: Callable[[Any], None], arg: Any) -> None:
        """At ``now + delay`` call ``fn(arg)``."""
        heappush(self._queue, (self.now + delay, _NORMAL, next(self._eid), fn, arg))

    def run(self, until: float | None = None) -> None:
        """Call the scheduled functions in time order until ``until`` (or until none is left).

        As ``simpy.Environment.run``: ``until`` must lie ahead; it takes one event id
        and runs before the calls scheduled at the same time; the clock stops at it.
        """
        env = self.env
        queue = self._queue
        if until is not None:
            at = float(until)
            now = self.now
            if at <= now:
                raise ValueError(f"until ({at}) must be greater than the current simulation time")
            heappush(queue, (now + (at - now), _URGENT, next(self._eid), _stop, None))
        pop = heappop
        try:
            while queue:
                t, _, _, fn, arg = pop(queue)
                self.now = env._now = t
                fn(arg)
        except _StopRun:
            # SimPy's step reschedules the stopping event (for callbacks still to run):
            # one more id, so that event counts stay those of SimPy's own loop
            next(self._eid)

    def step(self) -> None:
        """Process the next call (``simpy.Environment.step``'s contract)."""
        if not self._queue:
            raise simpy.core.EmptySchedule
        t, _, _, fn, arg = heappop(self._queue)
        self.now = self.env._now = t
        fn(arg)


class Pool:
    """``capacity`` identical slots, granted first come first served.

    ``acquire(fn, arg)`` calls ``fn(arg)`` at once if a slot is free, else
    when one is released; ``release()`` hands the slot to the next waiter
    (synchronously, at the same simulated time). ``busy`` and ``waiting``
    are time-weighted levels when ``track`` is true.
    """

    __slots__ = ("busy", "capacity", "env", "in_use", "name", "queue", "waiting")

    def __init__(
        self,
        env: simpy.Environment,
        capacity: int,
        name: str = "",
        *,
        busy: Level | None = None,
        waiting: Level | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be ≥ 1, got {capacity}")
        self.env = env
        self.capacity = capacity
        self.name = name
        self.in_use = 0
        self.queue: deque[tuple[Callable[[Any], None], Any]] = deque()
        self.busy = busy
        self.waiting = waiting

    def acquire(self, fn: Callable[[Any], None], arg: Any) -> None:
        """Run ``fn(arg)`` once a slot is ours."""
        if self.in_use < self.capacity:
            self.in_use += 1
            if self.busy is not None:
                self.busy.add(self.env._now, 1)
            fn(arg)
        else:
            self.queue.append((fn, arg))
            if self.waiting is not None:
                self.waiting.add(self.env._now, 1)

    def release(self) -> None:
        """Give our slot back; the longest waiter gets it now."""
        if self.queue:
            fn, arg = self.queue.popleft()
            if self.waiting is not None:
                self.waiting.add(self.env._now, -1)
            fn(arg)
        else:
            self.in_use -= 1
            if self.busy is not None:
                self.busy.add(self.env._now, -1)

    def waiters(self) -> Iterator[Any]:
        """The arguments of the calls waiting for a slot, longest waiter first."""
        for _, arg in self.queue:
            yield arg

    def __repr__(self) -> str:
        return f"Pool({self.name!r}, {self.in_use}/{self.capacity}, {len(self.queue)} waiting)"
