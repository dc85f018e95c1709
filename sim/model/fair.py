"""A machine whose cores the operating system shares fairly among the runnable
processes (``scheduler = "fair"``): processor sharing, as Linux's CFS/EEVDF does
over any span longer than its few-millisecond slices.

Each host is a process (a ``Group``) that runs at most ``processes_per_host`` threads
on cores at once (1: an event loop and its GIL-holding threads), and its messages'
CPU blocks share whatever the process gets, as an event loop interleaves its
connections' callbacks. The machine shares its ``cores`` equally among the runnable
threads: ``min(n_g, cap_g)`` for each host with ``n_g`` blocks in progress, and one
for each of ``hogs`` always-runnable processes outside the model
(``background_processes``: a CPU burner, another tenant's batch job); none runs on two
cores at once. So nobody waits behind another's long job as in a first-come-first-
served queue: a 2.5 MB message's 56 ms of parsing on gateway0 slows the host's other
messages by a share instead of blocking them, and a burner takes a full core when the
machine is quiet but only its share under load (measured: 1.0 core at 10 % load,
0.6 at 90 %). Short bursts outside the model (DNS, remote sinks, the load
generator) are threads of one process without a cap.

The textbook checks (``tests/test_model_fair_share.py``): M/G/1-PS has the mean
response E[S]/(1 - rho) whatever the service distribution, and one permanent hog on
one core doubles an M/M/1-PS's mean response to 2 E[S]/(1 - rho).
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import heappop, heappush
from itertools import count
from typing import Any

from mailgate.sim.model.engine import Scheduler
from mailgate.sim.model.hosts import Host, Msg
from mailgate.sim.model.stats import Level

#: finishing tags within this share of the service so far are done (rounding)
_EPS = 1e-12


class Group:
    """One process on a fair machine: its blocks in progress and how many may run."""

    __slots__ = ("cap", "jobs", "v")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.jobs: list[tuple[float, int, Callable[[Any], None], Any]] = []
        self.v = 0.0  # service each of its blocks in progress has had so far

    def threads(self) -> int:
        """Threads of this process that want a core now."""
        n = len(self.jobs)
        return n if n < self.cap else self.cap


class FairShare:
    """``cores`` shared equally by the runnable threads of its processes and ``hogs``.

    ``run(work, fn, job, group)`` calls ``fn(job)`` once ``job`` has had ``work``
    seconds of CPU within ``group``. Each group keeps the classic virtual time of
    processor sharing (``Group.v``: the service each of its blocks has had; a block
    ends when ``v`` reaches its tag ``v_at_start + work``); only the earliest end on
    the machine has an event, made stale (``token``) by any change. ``threads`` and
    ``due`` (the group whose block ends first) hold from one change to the next."""

    __slots__ = ("_c_fire", "active", "busy", "capacity", "due", "hogs", "level", "name",
                 "outside", "sched", "seq", "t", "threads", "token")  # fmt: skip

    def __init__(
        self, sched: Scheduler, cores: int, name: str, *, hogs: int = 0, busy: Level | None = None
    ) -> None:
        self.sched = sched
        self.capacity = cores
        self.name = name
        self.hogs = hogs
        self.active: list[Group] = []  # groups with blocks in progress
        self.outside = Group(1 << 30)  # background bursts: separate processes, no cap
        self.t = 0.0  # when the groups' v were last brought up to date
        self.threads = 0  # runnable threads of the active groups
        self.due: Group | None = None  # the group whose block ends first
        self.token = 0  # the id of the one completion event that is not stale
        self.seq = count()
        self.level = busy
        self.busy = 0  # cores busy now (threads and hogs)
        self._c_fire = self._fire
        self._set_busy(self.hogs)

    def per_thread(self, threads: int) -> float:
        """Cores each of ``threads`` runnable threads (and each hog) gets."""
        total = threads + self.hogs
        return min(1.0, self.capacity / total) if total else 0.0

    def run(self, work: float, fn: Callable[[Any], None], job: Any, group: Group) -> None:
        """Give ``job`` ``work`` seconds of CPU in ``group``, then call ``fn(job)``."""
        self._advance()
        if not group.jobs:
            self.active.append(group)
        heappush(group.jobs, (group.v + work, next(self.seq), fn, job))
        self._changed()

    def _advance(self) -> None:
        now = self.sched.now
        dt = now - self.t
        self.t = now
        if dt <= 0 or not self.active:
            return
        share = self.per_thread(self.threads) * dt
        for g in self.active:
            g.v += share * g.threads() / len(g.jobs)

    def _changed(self) -> None:
        """The runnable set changed: the next completion moves."""
        self.token += 1
        self.threads = threads = sum(g.threads() for g in self.active)
        self._set_busy(min(threads + self.hogs, self.capacity))
        if not self.active:
            return
        share = self.per_thread(threads)

        def left(g: Group) -> float:  # time until g's first block ends at today's shares
            return (g.jobs[0][0] - g.v) * len(g.jobs) / (share * g.threads())

        self.due = due = min(self.active, key=left)
        self.sched.after(max(left(due), 0.0), self._c_fire, self.token)

    def _fire(self, token: int) -> None:
        if token != self.token:
            return  # stale: the runnable set changed since this was scheduled
        self._advance()
        done = []
        for g in self.active:
            while g.jobs and g.jobs[0][0] <= g.v + _EPS * (1.0 + g.v):
                done.append(heappop(g.jobs))
        if not done and self.due is not None:
            # rounding left the due block a hair short: it is due now all the same
            done.append(heappop(self.due.jobs))
        for g in self.active:
            if not g.jobs:
                g.v = 0.0  # idle: start its tags afresh (small numbers, small rounding)
        self.active = [g for g in self.active if g.jobs]
        self._changed()
        for _, _, fn, job in done:
            fn(job)  # may start new work here: run() re-enters, which is fine

    def _set_busy(self, busy: int) -> None:
        if self.level is not None and busy != self.busy:
            self.level.add(self.sched.now, busy - self.busy)
        self.busy = busy

    def waiters(self) -> list[Any]:
        """The jobs on the machine now (for tests that look for messages)."""
        return [job for g in self.active for _, _, _, job in g.jobs]

    def __repr__(self) -> str:
        return f"FairShare({self.name!r}, {len(self.active)} processes running, {self.hogs} hogs)"


class _Blocks:
    """Where a ``FairHost`` queues a CPU block: straight into its process's share."""

    __slots__ = ("host",)

    def __init__(self, host: FairHost) -> None:
        self.host = host

    def acquire(self, _: Any, m: Msg) -> None:
        h = self.host
        h._count_cpu(m)
        h.fair.run(m.cpu, h._c_fair_done, m, h.group)


class FairHost(Host):
    """A ``Host`` on a fair machine: its CPU blocks run in its process's ``Group``
    (``processes`` threads at most on cores), sharing what the machine gives it."""

    def __init__(self, *args: Any, fair: FairShare, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.fair = fair
        self.group = Group(self.processes)
        self.cpu_capacity = min(self.processes, fair.capacity)  # a thread is on one core
        self._cpu_pool = _Blocks(self)  # type: ignore[assignment]
        self._c_fair_done = self._after_cpu
