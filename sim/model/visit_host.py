"""A host whose CPU runs in short visits, as a process on an operating system does.

``Host`` computes a CPU block (consecutive stages that do not wait) in one go on one
core. A real single-process host wakes up many times per stage (an SMTP round trip,
a thread hand-off), each time queueing for the CPU again. ``VisitHost`` splits every
CPU block into ``visits_per_block`` equal visits; each visit first waits
``wakeup_s`` (the wake-up latency, no core held), then takes one of the host's
processes and a core of the machine (``sim.model.cores``: FCFS or per-core run
queues, remembering the core it ran on last), runs, and gives both back, so other
messages of the host and other hosts' work can run between two visits of a message.

Only hosts on a machine whose keys ask for it are ``VisitHost``: at the defaults the
fleet builds plain ``Host`` objects and this module is not on the path.
"""

from __future__ import annotations

from typing import Any

from mailgate.sim.model.cores import Cores
from mailgate.sim.model.hosts import Host, Msg


class _Blocks:
    """Where ``Host`` queues a CPU block: here it starts the block's first visit."""

    __slots__ = ("host",)

    def __init__(self, host: VisitHost) -> None:
        self.host = host

    def acquire(self, _: Any, m: Msg) -> None:
        m.visits = self.host.visits
        m.core_t0 = -1.0
        self.host.visit(m)


class VisitHost(Host):
    """A ``Host`` whose CPU blocks run as ``visits`` visits on the machine's ``cores``."""

    def __init__(
        self, *args: Any, cores: Cores, visits: int, wakeup: float, first_core: int, **kw: Any
    ) -> None:
        super().__init__(*args, **kw)
        self.cores = cores
        self.visits = visits
        self.wakeup = wakeup
        self.last_core = first_core  # where the OS placed the (one) process at its start
        self._cpu_pool = _Blocks(self)  # type: ignore[assignment]
        self._c_woken = self._woken
        self._c_v_proc = self._v_proc
        self._c_v_core = self._v_core
        self._c_v_done = self._v_done

    def visit(self, m: Msg) -> None:
        """One visit of ``m``'s block: wake up, then queue for a process and a core."""
        if self.wakeup > 0:
            self.sched.after(self.wakeup, self._c_woken, m)
        else:
            self._woken(m)

    def _woken(self, m: Msg) -> None:
        if self.procs is not None:
            self.procs.acquire(self._c_v_proc, m)
        else:
            self._v_proc(m)

    def _v_proc(self, m: Msg) -> None:
        # one process: where it ran last; several: the one serving m ran it last on
        # m's previous core (a new block has none: it goes to the shortest run queue)
        last = self.last_core
        if self.processes > 1:
            last = m.core if m.visits < self.visits else -1
        self.cores.acquire(self.cores.pick(last), self._c_v_core, m)

    def _v_core(self, m: Msg) -> None:
        now = self.sched.now
        self.last_core = m.core
        d = m.cpu / self.visits
        self.stats.cpu_busy.pulse(now, d)
        if now >= self.warm:
            self.stats.cpu_demand += d
        if m.core_t0 < 0:
            m.core_t0 = now  # the block's spans start at its first visit
        self.sched.after(d, self._c_v_done, m)

    def _v_done(self, m: Msg) -> None:
        self.cores.release(m.core)
        if self.procs is not None:
            self.procs.release()
        m.visits -= 1
        if m.visits > 0:
            self.visit(m)
            return
        self._after_cpu(m)  # the block is done
