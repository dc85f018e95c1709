"""A host of the topology as a callback-driven station.

A message visiting a host goes through two plans of stages:

- the *receive* plan (``smtp_receive``, checks, ``spool``) while holding one
  of the host's SMTP session slots: milter-style, every check runs before
  the 250, so the sender's delivery slot is held until it ends;
- the *delivery* plan (``mx_lookup``, ``deliver``) after waiting in the
  host's queue for a delivery slot (``sim.model.slots``: per destination,
  within a per-host total); the slot is held until the next hop answers.

Each stage first waits (DNS round trips, remote services: no core held),
then computes (one core, FIFO; stages that follow without waiting keep the
same core, as one process would), then, for ``spool`` and ``maildir``,
writes durably (the host's disk, one fsync at a time). Costs come from the
scenario's ``StageCost``; nothing here knows a number.

After a visit ends, the ``housekeeping`` stage (if it costs anything) is a
CPU burst no message waits for (``Host.housekeep``): it takes a core, so it
delays the next message needing one, but not the message it belongs to.

The topology glue (who talks to whom, outcomes, retries) lives in the other
parts of ``sim.model``; this module only runs plans and keeps per-host
statistics. A host knows its scheduler, its machine, how long DNS lookups take
and one callback, ``after_stage``, that says whether a visit goes on after a
stage (the verdicts live in ``sim.model.visits``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from mailgate.sim.model.engine import Pool, Scheduler
from mailgate.sim.model.slots import DeliverySlots
from mailgate.sim.model.stats import Level, LogHistogram
from mailgate.sim.scenario.records import HopRecord, StageSpan


@dataclass(frozen=True, slots=True)
class Stage:
    """One stage of a plan with its samplers bound."""

    name: str
    cpu: Callable[[], float]  # fixed CPU seconds
    cpu_per_kb: float
    lookups: int
    wait: Callable[[], float]  # other waiting, s
    fsync: bool  # ends with a durable write on the host's disk
    per_rcpt: bool  # repeated per recipient (maildir)
    has_wait: bool  # any waiting at all (skip the sampler calls when not)
    has_cpu: bool
    ends_block: bool  # a CPU block stops here (durable write, or a verdict that may end the visit)
    decides: bool = False  # its result may end the visit (``after_stage`` is asked)
    #: index in its plan of the last stage of the CPU block this stage starts (the stages
    #: after it that do not wait, up to one that ends a block); set by ``with_blocks``
    last: int = -1


def with_blocks(stages: list[Stage]) -> tuple[Stage, ...]:
    """The plan of ``stages`` with each stage's ``last`` set: a process runs its
    CPU-bound section to the end, so a block goes on through the following stages
    that do not wait and stops at one that ends a block (or at the plan's end)."""
    out = []
    for i, st in enumerate(stages):
        j = i
        while not stages[j].ends_block and j + 1 < len(stages) and not stages[j + 1].has_wait:
            j += 1
        out.append(replace(st, last=j))
    return tuple(out)


class Msg:
    """One message (all recipients travel together until the mailbox)."""

    __slots__ = (
        "accepted", "attempts", "backoff", "caught", "cont", "core", "core_t0", "counted", "cpu",
        "deferred", "domain", "entered", "entered_prev", "flow", "hop", "hop_prev", "host", "id",
        "in_mailbox", "last", "outcome", "parts", "pick", "plan", "queued_at", "rcpts",
        "remote", "responded", "sender", "sent", "si", "size", "spam", "spf_fail", "stage_t0",
        "target", "tries", "unknown", "virus", "visits",
    )  # fmt: skip

    def __init__(self, mid: int, flow: str, size: float, sent: float) -> None:
        self.id = mid
        self.flow = flow
        self.size = size
        self.sent = sent
        self.accepted = -1.0
        self.in_mailbox = -1.0
        self.remote = -1.0
        self.spam = False
        self.spf_fail = False
        self.unknown = False  # to a user we do not have: refused at the MX at RCPT
        self.virus = False
        self.rcpts = 1
        self.domain = -1
        self.sender: Host | None = None
        self.host: Host | None = None
        self.plan: tuple[Stage, ...] = ()
        self.si = 0
        self.cont: Callable[[Msg], None] | None = None
        self.cpu = 0.0
        self.entered = 0.0
        self.entered_prev = 0.0
        self.hop: HopRecord | None = None
        self.hop_prev: HopRecord | None = None
        self.outcome = ""
        self.backoff = 0.0
        self.queued_at = 0.0
        self.deferred = False
        self.counted = False
        self.target = ""
        self.tries = 0
        self.attempts = 0  # delivery attempts to the Internet (retry amplification)
        self.caught = False  # hit a failure: a dead host, a parked spool, a site down
        self.pick = 0
        self.stage_t0 = 0.0
        self.core_t0 = 0.0
        self.last = 0
        self.parts: list[float] = []
        self.responded = False  # this visit's response time is recorded (Host.handed_on)


#: After a stage of ``m`` at a host: False if the visit ended there (a verdict).
AfterStage = Callable[["Host", Msg, str], bool]
#: Seconds that ``n`` DNS lookups take now.
DnsTime = Callable[[int], float]


class HostStats:
    """Time-weighted levels and tallies of one host, after the warm-up."""

    __slots__ = ("cpu_busy", "cpu_demand", "deferred", "delivery_busy", "disk_busy", "in_host",
                 "left", "queue", "response", "session_wait", "sessions", "sojourn")  # fmt: skip

    def __init__(self, start: float, end: float, bucket_s: float) -> None:
        def level() -> Level:
            return Level(start, end, bucket_s)

        self.cpu_busy = level()  # cores busy with this host's work
        self.sessions = level()  # SMTP session slots held
        self.session_wait = level()  # connections waiting for a slot
        self.delivery_busy = level()  # delivery slots held
        self.queue = level()  # messages waiting for a delivery slot
        self.disk_busy = level()  # fsyncs in progress (0 or 1)
        self.in_host = level()  # messages from arrival to hand-off (Little's L)
        self.deferred = level()  # messages in the deferred queue (fallback MX)
        self.cpu_demand = 0.0  # CPU seconds started after the warm-up
        self.sojourn = 0.0  # sum of time in host of messages that left after the warm-up
        self.left = 0  # ... and their count
        # response time: arrival at the host until it hands the message on (the end of
        # its delivery plan) or its visit ends here (filed, rejected, quarantined)
        self.response = LogHistogram()

    def levels(self) -> dict[str, Level]:
        return {
            "cpu_busy": self.cpu_busy,
            "sessions": self.sessions,
            "session_wait": self.session_wait,
            "delivery_busy": self.delivery_busy,
            "queue": self.queue,
            "disk_busy": self.disk_busy,
            "in_host": self.in_host,
            "deferred": self.deferred,
        }


class Machine:
    """Cores that one or more hosts share (or one host's own cores)."""

    def __init__(self, sched: Scheduler, name: str, cores: int, busy: Level | None) -> None:
        self.name = name
        self.cores = Pool(sched.env, cores, name, busy=busy)


class Host:
    """One host: session slots, CPU (processes on a machine's cores), disk, delivery slots."""

    def __init__(
        self,
        sched: Scheduler,
        hid: str,
        tier: str,
        index: int,
        *,
        sessions: int,
        processes: int,
        machine: Machine,
        shared: bool,
        delivery: DeliverySlots,
        fsync: Callable[[], float],
        stats: HostStats,
        dns: DnsTime,
        after_stage: AfterStage,
        warm: float,
        trace: bool,
    ) -> None:
        self.sched = sched
        self.env = sched.env
        self.dns = dns
        self.after_stage = after_stage
        self.warm = warm  # CPU started before this time is not counted in cpu_demand
        self.id = hid
        self.tier = tier
        self.index = index
        self.up = True
        self.refuses = False  # while down: refuse connections at once rather than time out
        self.stats = stats
        self.machine = machine
        self.shared = shared
        self.processes = processes
        self.cpu_capacity = processes  # the most cores its work can hold at once
        self.sessions = Pool(
            self.env, sessions, f"{hid}.sessions", busy=stats.sessions, waiting=stats.session_wait
        )
        self.delivery = delivery  # built by the fleet on stats.delivery_busy and stats.queue
        # With a shared machine a host first needs one of its own processes,
        # then a core of the machine; on its own machine processes = cores.
        self.procs = Pool(self.env, processes, f"{hid}.procs") if shared else None
        #: remote domain -> time until which it is throttled (dead site) on this host
        self.dead: dict[int, float] = {}
        self.disk = Pool(self.env, 1, f"{hid}.disk")  # busy time: pulses in _got_disk
        self.fsync = fsync
        self.trace = trace
        #: CPU seconds of one message's housekeeping by size (None: costs nothing)
        self.chore: Callable[[float], float] | None = None
        # bound methods once (the hot path)
        self._c_core = self._got_core
        self._c_proc = self._got_proc
        self._c_cpu_done = self._cpu_done
        self._c_waited = self._waited
        self._c_disk = self._got_disk
        self._c_disk_done = self._disk_done
        # where a CPU block queues first: the host's own process slots, else the cores
        self._cpu_pool, self._cpu_got = (
            (self.procs, self._c_proc) if self.procs is not None else (machine.cores, self._c_core)
        )

    # ------------------------------------------------------------ plans

    def run(self, m: Msg, plan: tuple[Stage, ...], cont: Callable[[Msg], None]) -> None:
        """Run ``plan`` for ``m`` on this host, then call ``cont(m)``."""
        m.plan = plan
        m.si = 0
        m.cont = cont
        if plan:
            self._stage(m)
        else:
            cont(m)  # nothing to run here (a tier without delivery stages)

    def _stage(self, m: Msg) -> None:
        if m.si >= len(m.plan):
            m.cont(m)  # type: ignore[misc]
            return
        st = m.plan[m.si]
        if self.trace:
            m.stage_t0 = self.sched.now
        if st.has_wait:
            w = st.wait()
            if st.lookups:
                w += self.dns(st.lookups)
            if w > 0:
                self.sched.after(w, self._c_waited, m)
                return
        self._waited(m)

    def _waited(self, m: Msg) -> None:
        """After a stage's wait: compute, holding one core across the following
        stages that do not wait (a process runs its CPU-bound section to the
        end). A block ends at a durable write or at a stage whose result may
        end the visit (``spf``, ``antivirus``)."""
        plan, i = m.plan, m.si
        st = plan[i]
        last = st.last
        c = _cpu_of(st, m) if st.has_cpu else 0.0
        if self.trace:
            m.parts = [c]
        while i < last:
            i += 1
            st = plan[i]
            ci = _cpu_of(st, m) if st.has_cpu else 0.0
            c += ci
            if self.trace:
                m.parts.append(ci)
        m.last = i
        m.cpu = c
        if c > 0:
            self._cpu_pool.acquire(self._cpu_got, m)
        else:
            self._block_done(m, self.sched.now)

    def cpu(self, m: Msg) -> None:
        """Hold one core for ``m.cpu`` seconds, then continue the plan."""
        self._cpu_pool.acquire(self._cpu_got, m)

    def _got_proc(self, m: Msg) -> None:
        self.machine.cores.acquire(self._c_core, m)

    def _got_core(self, m: Msg) -> None:
        self._count_cpu(m)
        self.sched.after(m.cpu, self._c_cpu_done, m)

    def _count_cpu(self, m: Msg) -> None:
        """``m``'s CPU block starts now: count it (shared by the fair machine's host)."""
        now = self.sched.now
        self.stats.cpu_busy.pulse(now, m.cpu)
        if now >= self.warm:
            self.stats.cpu_demand += m.cpu
        if self.trace:
            m.core_t0 = now

    def _cpu_done(self, m: Msg) -> None:
        self.machine.cores.release()
        if self.procs is not None:
            self.procs.release()
        self._after_cpu(m)

    def _after_cpu(self, m: Msg) -> None:
        """A CPU block is done and its core free: go on with the plan (shared by the
        per-core scheduler, ``visit_host``)."""
        if m.plan is _POP_PLAN:
            m.cont(m)  # type: ignore[misc]
            return
        if self.trace:
            self._block_done(m, m.core_t0)
            return
        # _block_done and _stage_done without the trace's spans (the hot path, inlined)
        m.si = i = m.last
        st = m.plan[i]
        if st.fsync:
            self.disk.acquire(self._c_disk, m)
            return
        m.si = i + 1
        if not st.decides or self.after_stage(self, m, st.name):
            self._stage(m)

    def _block_done(self, m: Msg, core_t0: float) -> None:
        """The CPU of stages si..last is done; the last one may still fsync."""
        if self.trace and m.last > m.si and m.hop is not None:
            # spans of the merged stages before the last: back to back on the core
            end = core_t0
            for k in range(m.si, m.last):
                start = m.stage_t0 if k == m.si else end
                end = (core_t0 if k == m.si else end) + m.parts[k - m.si]
                m.hop.stages[m.plan[k].name] = StageSpan(start, end, m.parts[k - m.si])
            m.stage_t0 = end
        if self.trace:
            m.cpu = m.parts[-1]
        m.si = m.last
        if m.plan[m.si].fsync:
            self.disk.acquire(self._c_disk, m)
        else:
            self._stage_done(m)

    def _got_disk(self, m: Msg) -> None:
        st = m.plan[m.si]
        d = self.fsync()
        if st.per_rcpt and m.rcpts > 1:
            d += sum(self.fsync() for _ in range(m.rcpts - 1))
        self.stats.disk_busy.pulse(self.sched.now, d)
        self.sched.after(d, self._c_disk_done, m)

    def _disk_done(self, m: Msg) -> None:
        self.disk.release()
        self._stage_done(m)

    def _stage_done(self, m: Msg) -> None:
        st = m.plan[m.si]
        if self.trace and m.hop is not None:
            # m.host is this host in both plans: it moves on only at the next arrival
            m.hop.stages[st.name] = StageSpan(m.stage_t0, self.sched.now, m.cpu)
        m.si += 1
        if not st.decides or self.after_stage(self, m, st.name):
            self._stage(m)

    def handed_on(self, m: Msg) -> None:
        """``m`` leaves this host's hands: it is handed to the next hop (the end of the
        delivery plan), filed, rejected or quarantined. Its response time here, from its
        arrival, is counted once per visit (a retry of a deferred message is not a new
        response) when it ends after the warm-up."""
        if m.responded:
            return
        m.responded = True
        now = self.sched.now
        if now >= self.warm:
            self.stats.response.add(now - m.entered)

    # ------------------------------------------------------------ CPU-only work (POP)

    def burst(self, job: Any, seconds: float, cont: Callable[[Any], None]) -> None:
        """Spend ``seconds`` of CPU on ``job`` (a Msg-like object), then ``cont(job)``."""
        job.plan = _POP_PLAN
        job.cpu = seconds
        job.cont = cont
        self.cpu(job)

    def housekeep(self, size_kb: float) -> None:
        """Spend one message's ``housekeeping`` CPU after its visit here ended."""
        self.background(self.chore(size_kb))  # type: ignore[misc]

    def background(self, seconds: float) -> None:
        """Spend ``seconds`` of CPU nothing waits for (housekeeping, empty POP polls).

        It queues for a core like any work (so it delays whoever needs the
        core next) but nothing waits for it to finish.
        """
        self.burst(_Chore(), seconds, _done)

    def __repr__(self) -> str:
        return f"Host({self.id}{'' if self.up else ', down'})"


def _cpu_of(st: Stage, m: Msg) -> float:
    """CPU seconds of one stage for one message."""
    c = st.cpu() + st.cpu_per_kb * m.size
    return c * m.rcpts if st.per_rcpt else c


class _Chore:
    """A CPU burst no message waits for (``Host.background``)."""

    __slots__ = ("cont", "core", "core_t0", "cpu", "plan", "visits")


def _done(_: Any) -> None:
    """Nobody waits for background work."""


#: Marker plan for CPU bursts that are not stages of a message visit.
_POP_PLAN: tuple[Any, ...] = (None,)
