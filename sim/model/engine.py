"""The fast machinery under the model: callbacks on a SimPy clock, FIFO pools.

SimPy's idiomatic style (a generator process per customer, ``Resource``
requests) costs several Python frames and events per step. The model instead
schedules plain callbacks on the SimPy event queue and keeps its own FIFO
queues of waiting work: a resource is a counter plus a ``deque``, a delay is
one heap entry. On a 5-station M/M/2 tandem this is several times faster
than the idiomatic version (``benchmarks/bench_sim.py`` measures it).

Public pieces:

- ``Scheduler``: ``after(delay, fn, arg)`` calls ``fn(arg)`` later;
  ``call(delay, cb, arg)`` calls ``cb(ev)`` with ``ev.arg`` (hot paths);
  ``now`` is the clock, ``events_scheduled`` how many events SimPy numbered,
  ``pending()`` the arguments of the calls still to come (for tests that look
  at where the messages are).

This is the only module that touches SimPy's private state (its heap, its
event counter, its clock attribute): the rest of the model asks the
``Scheduler``.
- ``Pool``: ``n`` identical slots with a FIFO of waiters (cores, SMTP
  sessions, delivery slots, a disk), with time-weighted busy and queue levels.
- ``Station``: a FIFO multi-server queue built from a Pool and a Scheduler
  (used by the formula tests and the benchmark).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from heapq import heappush
from typing import Any

import simpy

from mailgate.sim.model.stats import Level

#: SimPy's normal event priority (simpy.events.NORMAL, an int enum).
_NORMAL = simpy.events.NORMAL


class Call:
    """The smallest object SimPy's ``Environment.step`` accepts as an event.

    ``step`` pops it, calls each entry of ``callbacks`` with it and checks
    ``_ok``; we carry the function's argument in ``arg``.
    """

    __slots__ = ("_ok", "arg", "callbacks")

    def __init__(self, fn: Callable[[Any], None], arg: Any) -> None:
        self._ok = True
        self.arg = arg
        self.callbacks = [fn]


class _Trampoline:
    """Adapts ``fn(arg)`` to SimPy's ``callback(event)`` signature."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[Any], None]) -> None:
        self.fn = fn

    def __call__(self, call: Call) -> None:
        self.fn(call.arg)


class Scheduler:
    """Callbacks on a SimPy environment's event queue, without Event objects.

    ``after(delay, fn, arg)`` calls ``fn(arg)``; the hot paths use
    ``call(delay, cb, arg)``, which calls ``cb(ev)`` with ``ev.arg == arg``
    and so saves the adapter's frame. Both push straight onto the
    environment's heap the same tuple ``Environment.schedule`` would push
    (time, priority, event id, event): one Python call less per event.
    """

    __slots__ = ("_cache", "_eid", "_queue", "env")

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        # The same heap and id counter Environment.schedule uses (SimPy 4).
        self._queue = env._queue
        self._eid = env._eid
        self._cache: dict[Callable[[Any], None], _Trampoline] = {}

    @property
    def now(self) -> float:
        """The simulated time (SimPy's clock, without the property's extra frame)."""
        return self.env._now

    @property
    def events_scheduled(self) -> int:
        """Events SimPy has numbered so far (ours and its own), read without taking an id."""
        # itertools.count shows its next value in its repr ("count(123)"); next() would use one up
        return int(repr(self._eid)[6:-1])

    def pending(self) -> Iterator[Any]:
        """The argument of every call still on the heap (SimPy's own events are skipped)."""
        for entry in self._queue:
            event = entry[3]
            if isinstance(event, Call):
                yield event.arg

    def call(self, delay: float, cb: Callable[[Call], None], arg: Any) -> None:
        """At ``now + delay`` call ``cb(ev)``; ``ev.arg`` is ``arg``."""
        heappush(self._queue, (self.env._now + delay, _NORMAL, next(self._eid), Call(cb, arg)))

    def after(self, delay: float, fn: Callable[[Any], None], arg: Any) -> None:
        """At ``now + delay`` call ``fn(arg)``."""
        tramp = self._cache.get(fn)
        if tramp is None:
            tramp = self._cache[fn] = _Trampoline(fn)
        heappush(self._queue, (self.env._now + delay, _NORMAL, next(self._eid), Call(tramp, arg)))


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


class Station:
    """A FIFO queue with ``servers`` servers and a service-time function.

    ``arrive(job)`` enters the queue; after service ``on_done(job)`` is
    called. ``service(job)`` returns the service time. Jobs are any objects;
    the caller keeps its own timestamps.
    """

    __slots__ = ("_done", "_start", "on_done", "pool", "sched", "service")

    def __init__(
        self,
        sched: Scheduler,
        servers: int,
        service: Callable[[Any], float],
        on_done: Callable[[Any], None],
        name: str = "",
    ) -> None:
        self.sched = sched
        self.pool = Pool(sched.env, servers, name)
        self.service = service
        self.on_done = on_done
        self._start = self._start_service
        self._done = self._end_service

    def arrive(self, job: Any) -> None:
        self.pool.acquire(self._start, job)

    def _start_service(self, job: Any) -> None:
        self.sched.call(self.service(job), self._done, job)

    def _end_service(self, ev: Call) -> None:
        self.pool.release()
        self.on_done(ev.arg)
