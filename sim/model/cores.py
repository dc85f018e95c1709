"""How a shared machine's scheduler hands out its cores, and the CPU of processes
outside the model that competes for them.

A ``[[deployment.machines]]`` entry at its defaults is one first-come-first-served
queue for all its cores (``engine.Pool``), and its hosts are plain ``Host`` objects:
this module is not on that path. Its keys (``sim.scenario.deployment.Machine``) add:

- ``scheduler = "per-core"``: ``PerCore``, a run queue per core, as an operating
  system keeps them. A visit joins the core its host ran on last with probability
  ``core_affinity`` (wake-affine placement, cache-hot tasks), else the shortest run
  queue (waiting plus running; a tie goes to the host's last core, then the lowest
  index). A core never takes work from another core's queue, so one core may wait
  while the other is idle, as the testbed's traces show.
- ``Background``: bursts of CPU that no message waits for: a constant load
  (``background_cores``: exponential bursts of ``background_burst_s`` as a Poisson
  stream) and one burst per message sent into the system
  (``background_cpu_per_message_s``). They queue for a core like host work (on a
  ``scheduler = "fair"`` machine, ``sim.model.fair``, they take their share of it).

Both schedulers are used through one small interface, ``Cores``: ``pick(last)``
chooses a core, ``acquire(core, fn, job)`` calls ``fn(job)`` once ``job`` runs on a
core (``job.core`` says which), ``release(core)`` frees it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from mailgate.sim.model.engine import Pool, Scheduler
from mailgate.sim.model.fair import FairShare
from mailgate.sim.model.sampling import Streams
from mailgate.sim.model.statistics import Window
from mailgate.sim.model.stats import Level
from mailgate.sim.scenario.deployment import Machine as MachineSpec
from mailgate.sim.scenario.distributions import Exponential


class Fcfs:
    """One FIFO queue for all cores (the ``Pool`` the machine always had)."""

    __slots__ = ("pool",)

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    def pick(self, last: int) -> int:
        return 0  # any free core: the pool does not say which

    def acquire(self, core: int, fn: Callable[[Any], None], job: Any) -> None:
        job.core = 0
        self.pool.acquire(fn, job)

    def release(self, core: int) -> None:
        self.pool.release()


class PerCore:
    """A run queue per core; ``capacity`` cores, ``busy`` the level of cores running."""

    __slots__ = ("affinity", "busy", "capacity", "env", "name", "queues", "running", "u")

    def __init__(
        self,
        sched: Scheduler,
        cores: int,
        name: str,
        *,
        affinity: float,
        u: Callable[[], float],
        busy: Level | None,
    ) -> None:
        self.env = sched.env
        self.capacity = cores
        self.name = name
        self.affinity = affinity
        self.u = u  # U(0, 1) draws of the machine's own stream
        self.busy = busy
        self.queues: list[deque[tuple[Callable[[Any], None], Any]]] = [
            deque() for _ in range(cores)
        ]
        self.running = [0] * cores

    def pick(self, last: int) -> int:
        """The core a visit queues on: its host's last core with probability
        ``affinity``, else the shortest run queue."""
        a = self.affinity
        if last >= 0 and a > 0 and (a >= 1 or self.u() < a):
            return last
        best, best_len = 0, -1
        for k, q in enumerate(self.queues):
            n = len(q) + self.running[k]
            if best_len < 0 or n < best_len or (n == best_len and k == last):
                best, best_len = k, n
        return best

    def acquire(self, core: int, fn: Callable[[Any], None], job: Any) -> None:
        job.core = core
        if self.running[core]:
            self.queues[core].append((fn, job))
            return
        self.running[core] = 1
        if self.busy is not None:
            self.busy.add(self.env._now, 1)
        fn(job)

    def release(self, core: int) -> None:
        q = self.queues[core]
        if q:
            fn, job = q.popleft()
            fn(job)
            return
        self.running[core] = 0
        if self.busy is not None:
            self.busy.add(self.env._now, -1)

    def waiters(self) -> list[Any]:
        """The jobs waiting in every run queue (for tests that look for messages)."""
        return [job for q in self.queues for _, job in q]

    def __repr__(self) -> str:
        queued = [len(q) for q in self.queues]
        return f"PerCore({self.name!r}, running {self.running}, queued {queued})"


#: What a host or a background burst sees of a machine's scheduler.
Cores = Fcfs | PerCore | FairShare


def scheduler_of(
    sched: Scheduler, spec: MachineSpec, pool: Pool, streams: Streams, busy: Level
) -> Cores:
    """The scheduler of machine ``spec`` whose FCFS pool (and busy level) is ``pool``."""
    if spec.scheduler == "fair":
        return FairShare(sched, spec.cores, spec.name, hogs=spec.background_processes, busy=busy)
    if spec.scheduler == "per-core":
        u = streams.uniforms(f"machine.{spec.name}.affinity")
        return PerCore(sched, spec.cores, spec.name, affinity=spec.core_affinity, u=u, busy=busy)
    return Fcfs(pool)


class _Burst:
    """One burst of background CPU."""

    __slots__ = ("core", "cpu")

    def __init__(self, cpu: float) -> None:
        self.cpu = cpu
        self.core = 0


class Background:
    """CPU of processes outside the model on one machine: a constant load and a burst
    per message sent. Each burst queues for a core and holds it; nobody waits for it."""

    def __init__(
        self, sched: Scheduler, cores: Cores, spec: MachineSpec, streams: Streams, window: Window
    ) -> None:
        self.sched = sched
        self.cores = cores
        self.window = window  # no constant-load burst starts after the run's end
        self.per_message = spec.background_cpu_per_message_s
        self.rate = spec.background_cores / spec.background_burst_s
        self.gap = streams.exponentials(f"machine.{spec.name}.background.gaps")
        self.length = streams.sampler(
            f"machine.{spec.name}.background.bursts", Exponential(spec.background_burst_s)
        )
        self._c_run = self._run
        self._c_done = self._done
        self._c_arrive = self._arrive
        if isinstance(cores, FairShare):  # a share of the cores: no core to pick and free
            self._burst = self._fair_burst  # type: ignore[method-assign]

    @property
    def active(self) -> bool:
        return self.rate > 0 or self.per_message > 0

    def start(self) -> None:
        """Schedule the constant load's first burst."""
        if self.rate > 0:
            self.sched.after(self.gap() / self.rate, self._c_arrive, None)

    def message(self) -> None:
        """A message was sent into the system: its outside CPU (DNS, sinks, load generator)."""
        if self.per_message > 0:
            self._burst(self.per_message)

    def _arrive(self, _: Any) -> None:
        self._burst(self.length())
        gap = self.gap() / self.rate
        if self.sched.now + gap < self.window.end:
            self.sched.after(gap, self._c_arrive, None)

    def _burst(self, cpu: float) -> None:
        self.cores.acquire(self.cores.pick(-1), self._c_run, _Burst(cpu))  # type: ignore[union-attr]

    def _fair_burst(self, cpu: float) -> None:
        fair: FairShare = self.cores  # type: ignore[assignment]
        fair.run(cpu, _nothing, None, fair.outside)  # nobody waits for it

    def _run(self, b: _Burst) -> None:
        self.sched.after(b.cpu, self._c_done, b)

    def _done(self, b: _Burst) -> None:
        self.cores.release(b.core)


def _nothing(_: Any) -> None:
    """Nobody waits for a background burst."""
