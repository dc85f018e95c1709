"""The analytic solver: a scenario's hour as an open network of M/G/c stations, in milliseconds.

Each host is a set of stations: its cores (M/G/c, c = its processes; on a shared
machine also the machine's cores), its disk (M/G/1, one fsync at a time), its session
slots and its delivery slots (M/M/c by their limits, held for the time Little's law
gives them): per destination (the next tier, or each named remote domain; the other
domains have no destination limit), then the host's total over what the destinations
let through, as ``sim.model.slots`` grants them. DNS lookups, remote services, links
and the remote MTA are pure delays.
The traffic of the hour (``sim.analysis.solver_paths``: each class of mail along its
path, with verdicts, fallback and deferral) loads each station; utilisation follows
from the utilisation law (U = λ·S/c) and is exact in the mean; waits come from
Allen–Cunneen (``sim.analysis.queueing.mgc_mean_wait``: Poisson arrivals, the service
time's own variability), and a visit's response time is the sum, stage by stage, as
``sim.model.hosts`` runs it: a stage's wait, then a wait for a core and its CPU (stages
that follow without waiting share the core), then a durable write.

The approximation: every station sees Poisson arrivals and is independent of the rest
(Jackson), which holds for the CPU and disk of hosts fed by the Internet; hosts further
on see smoother streams and the solver's waits there are a little pessimistic; the
CPU blocks of one visit are treated as independent arrivals. The bottleneck is the
host resource with the highest utilisation; the load multiplier at which it
saturates is 1/U (first order for session and delivery slots, whose holding times
grow with load).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from mailgate.sim.analysis.offered import pop_sessions_per_s
from mailgate.sim.analysis.queueing import mgc_mean_wait, ps_mean_response
from mailgate.sim.analysis.solver_paths import Visit, destinations, plans_of, visits
from mailgate.sim.model.hosts import Stage
from mailgate.sim.model.mailboxes import POP_BATCH_S
from mailgate.sim.scenario import MAILBOX, Scenario, StageCost
from mailgate.sim.scenario.distributions import Distribution


@dataclass
class Jobs:
    """Work arriving at one station: Σλ, Σλ·E[S], Σλ·E[S²]."""

    rate: float = 0.0
    work: float = 0.0
    work2: float = 0.0

    def add(self, rate: float, mean: float, m2: float) -> None:
        self.rate += rate
        self.work += rate * mean
        self.work2 += rate * m2

    def wait(self, servers: int) -> float:
        """Allen–Cunneen mean wait for one of ``servers`` (Poisson arrivals)."""
        if self.rate <= 0 or self.work <= 0:
            return 0.0
        mean = self.work / self.rate
        cs2 = max(self.work2 / self.rate / mean**2 - 1, 0.0)
        return mgc_mean_wait(self.rate, mean, servers, cs2)


@dataclass
class HostModel:
    """One host of a tier (all hosts of a tier that are up carry equal shares)."""

    tier: str
    up: int  # hosts of the tier that are up in the hour
    procs: int
    cpu_cap: int  # cores its work can hold at once (utilisation's denominator)
    machine: str | None
    fsync: Distribution
    sessions: int
    delivery: int  # slots in all (delivery_limit)
    per_dest: int  # slots per destination (destination_concurrency)
    cpu: Jobs = field(default_factory=Jobs)
    disk: Jobs = field(default_factory=Jobs)
    session_hold: float = 0.0  # Σλ·hold of session slots
    delivery_hold: float = 0.0
    session_rate: float = 0.0
    delivery_rate: float = 0.0
    #: per destination: [messages/s, Σλ·hold] (the next tier, a remote domain, our MX)
    dests: dict[str, list[float]] = field(default_factory=dict)
    w_dest: dict[str, float] = field(default_factory=dict)
    w_cpu: float = 0.0
    w_disk: float = 0.0
    w_session: float = 0.0
    w_delivery: float = 0.0
    burst: tuple[float, float, float] = (0.0, 0.0, 0.0)  # POP's batched empty polls
    wakeups: float = 0.0  # wake-up latency of a CPU block's visits (deployment.machines)
    stretch: float = 1.0  # a fair machine: wall time per CPU second on it


def _moments(d: Distribution) -> tuple[float, float]:
    return d.mean, d.variance + d.mean**2


def _cpu(cost: StageCost, size: Distribution, rcpts: tuple[float, float], per_rcpt: bool):
    """Mean and second moment of one stage's CPU for a message of ``size``."""
    m1, m2 = _moments(cost.cpu_s)
    k = cost.cpu_per_kb_s
    mean = m1 + k * size.mean
    second = (m2 - m1**2) + k * k * size.variance + mean**2
    if per_rcpt:
        return mean * rcpts[0], second * rcpts[1]
    return mean, second


@dataclass
class Block:
    """Stages that run on one core in one go (``Host._waited``), with what precedes them."""

    stages: tuple[Stage, ...]
    delay: float  # DNS and other waiting before the CPU, s
    cpu: float
    cpu2: float
    fsyncs: float  # durable writes at its end (per recipient for maildir)
    fsyncs2: float


class Solver:
    """Loads, waits and times of one scenario in one clock hour."""

    def __init__(self, s: Scenario, hour: int) -> None:
        self.s = s
        self.hour = hour
        self.t_mid = ((hour - s.scenario.start_hour) % 24 + 0.5) * 3600.0
        self.plans = plans_of(s)
        self.visits, self.firsts = visits(s, hour, self.plans)
        self.rcpts = _moments(s.workload.recipients)
        self.dns = s.network.dns_s.mean + sum(
            d.extra_s
            for d in s.failures.dns_slow
            if d.start_h * 3600 <= self.t_mid < (d.start_h + d.duration_h) * 3600
        )
        self.hosts = self._hosts()
        self.machine_wait: dict[str, float] = {}
        self.machines: dict[str, tuple[int, Jobs]] = {
            m.name: (m.cores, Jobs()) for m in s.deployment.machines
        }
        self._load()

    # ------------------------------------------------------------ structure

    def down(self, hid: str) -> bool:
        return any(
            d.host == hid and d.start_h * 3600 <= self.t_mid < (d.start_h + d.duration_h) * 3600
            for d in self.s.failures.host_down
        )

    def _hosts(self) -> dict[str, HostModel]:
        out = {}
        for name, tier in self.s.tiers.items():
            spec = tier.hosts[0]
            up = sum(not self.down(f"{name}.{i}") for i in range(len(tier.hosts))) or 1
            placed = self.s.deployment.machine_of(f"{name}.0")
            procs = cap = spec.cores
            if placed is not None:
                procs = placed.processes_of(spec.cores)
                cap = min(procs, placed.cores)
            out[name] = HostModel(
                name,
                up,
                procs,
                cap,
                placed.name if placed else None,
                spec.fsync_s,
                spec.session_limit,
                spec.delivery_limit,
                spec.destination_concurrency,
            )
        return out

    def blocks(self, tier: str, plan: tuple[Stage, ...], size: Distribution) -> list[Block]:
        """The plan cut into blocks as ``sim.model.hosts.Host`` runs it."""
        out, i = [], 0
        tier_costs = self.s.tiers[tier]
        while i < len(plan):
            st = plan[i]
            delay = self._delay(tier_costs, st) if st.has_wait else 0.0
            cpu = cpu2 = 0.0
            group = [st]
            while True:
                c1, c2 = _cpu(
                    tier_costs.cost(st.name) or StageCost(), size, self.rcpts, st.per_rcpt
                )
                cpu2 += c2 + 2 * cpu * c1
                cpu += c1
                if st.ends_block or i + 1 >= len(plan) or plan[i + 1].has_wait:
                    break
                i += 1
                st = plan[i]
                group.append(st)
            n1, n2 = (self.rcpts if st.per_rcpt else (1.0, 1.0)) if st.fsync else (0.0, 0.0)
            out.append(Block(tuple(group), delay, cpu, cpu2, n1, n2))
            i += 1
        return out

    def _delay(self, tier: Any, st: Stage) -> float:
        cost = tier.cost(st.name) or StageCost()
        return cost.wait_s.mean + cost.dns_lookups * self.dns

    # ------------------------------------------------------------ loads

    def _visit_blocks(self, v: Visit) -> tuple[list[Block], list[Block]]:
        return self.blocks(v.tier, v.recv, v.size), self.blocks(v.tier, v.deliver, v.size)

    def _load(self) -> None:
        """Put every visit's CPU, disk and housekeeping on its host's stations."""
        for v in self.visits:
            h = self.hosts[v.tier]
            rate = v.rate / h.up
            recv, deliver = self._visit_blocks(v)
            runs = [(b, 1.0) for b in recv] + [(b, 1 + v.retries) for b in deliver]
            for b, times in runs:
                if b.cpu > 0:
                    h.cpu.add(rate * times, b.cpu, b.cpu2)
                if b.fsyncs > 0:
                    f1, f2 = _moments(h.fsync)
                    h.disk.add(rate * times, b.fsyncs * f1, b.fsyncs2 * f2)
            chore = self.s.tiers[v.tier].cost("housekeeping")
            if chore is not None:
                c1, c2 = _cpu(chore, v.size, self.rcpts, False)
                if c1 > 0:
                    h.cpu.add(rate, c1, c2)
        self._load_pop()
        _cpu_waits(self)

    def _load_pop(self) -> None:
        """POP at the mailbox server, as ``sim.model.mailboxes`` runs it: a poll that finds
        mail is one job (its session and a retrieval per copy); the polls that find nothing
        are served as one CPU burst per ``POP_BATCH_S`` (a Poisson number of sessions)."""
        h = self.hosts[MAILBOX]
        tier = self.s.mailbox_server
        session = tier.cost("pop_session") or StageCost()
        retrieve = tier.cost("pop_retrieve") or StageCost()
        s1, s2 = _cpu(session, self.s.workload.size.legit, self.rcpts, False)
        found = 0.0
        for v in self.visits:
            if v.ends == "filed":
                copies = v.rate * self.rcpts[0] * self.s.pop.active_share / h.up
                r1, r2 = _cpu(retrieve, v.size, self.rcpts, False)
                h.cpu.add(copies, s1 + r1, s2 + r2 + 2 * s1 * r1)
                found += copies
        empty = max(pop_sessions_per_s(self.s) / h.up - found, 0.0) * POP_BATCH_S
        if empty > 0 and s1 > 0:
            # a compound Poisson burst: E[S] = n·E[c], E[S²] = n·E[c²] + (n·E[c])²
            h.cpu.add(1 / POP_BATCH_S, empty * s1, empty * s2 + (empty * s1) ** 2)
            h.burst = (1 / POP_BATCH_S, empty * s1, empty * s2 + (empty * s1) ** 2)

    # ------------------------------------------------------------ times

    def block_time(self, h: HostModel, b: Block) -> float:
        t = b.delay
        if b.cpu > 0:
            t += h.w_cpu + b.cpu * h.stretch + h.wakeups
        if b.fsyncs > 0:
            t += h.w_disk + b.fsyncs * h.fsync.mean
        return t

    def link(self, size: Distribution, internet: bool) -> float:
        n = self.s.network
        rtt, mbps = (n.internet_rtt_s, n.internet_mbps) if internet else (n.lan_rtt_s, n.lan_mbps)
        return rtt + size.mean * 8192.0 / (mbps * 1e6)

    def dead_penalty(self, tier: str, from_relay: bool) -> float:
        """Mean time a sender loses on dead hosts of ``tier`` before reaching a live one."""
        hosts = self.s.tiers[tier].hosts
        dead = [i for i in range(len(hosts)) if self.down(f"{tier}.{i}")]
        if not dead:
            return 0.0
        refuses = any(d.refuses for d in self.s.failures.host_down if d.host == f"{tier}.{dead[0]}")
        n = self.s.network
        timeout = (
            (n.lan_rtt_s if from_relay else n.internet_rtt_s)
            if refuses
            else (self.s.tiers[tier].connect_timeout_s)
        )
        return len(dead) / len(hosts) * timeout

    def solve_times(self) -> dict[int, dict[str, float]]:
        """Per visit (by id): session wait, receive time (arrival to 250), delivery-slot
        wait, delivery plan, and the time from arrival to hand-on (the response)."""
        t: dict[int, dict[str, float]] = {}
        for v in self.visits:
            h = self.hosts[v.tier]
            recv, deliver = self._visit_blocks(v)
            t[id(v)] = {
                "recv": sum(self.block_time(h, b) for b in recv),
                "deliver": sum(self.block_time(h, b) for b in deliver),
            }
        # session slots: held from arrival to the 250
        for v in self.visits:
            h = self.hosts[v.tier]
            h.session_rate += v.rate / h.up
            h.session_hold += v.rate / h.up * t[id(v)]["recv"]
        for h in self.hosts.values():
            h.w_session = _slot_wait(h.session_rate, h.session_hold, h.sessions)
        # delivery slots: held from the delivery plan until the next hop's 250 (or the remote MTA)
        for v in self.visits:
            if not v.deliver and not v.remote and v.next is None:
                continue
            h = self.hosts[v.tier]
            hold = (1 + v.retries) * (t[id(v)]["deliver"] + self.after_hand_on(v, t))
            rate = v.rate / h.up * (1 + v.retries)
            h.delivery_rate += rate
            for dest, share in destinations(self.s, v).items():
                d = h.dests.setdefault(dest, [0.0, 0.0])
                d[0] += rate * share
                d[1] += rate * share * hold / (1 + v.retries)
            # what the unlimited destinations hold; the limited ones' is added capped below
            free = 1 - sum(destinations(self.s, v).values())
            h.delivery_hold += v.rate / h.up * hold * free
        for h in self.hosts.values():
            for dest, (rate, hold) in h.dests.items():
                h.w_dest[dest] = _slot_wait(rate, hold, h.per_dest)
                # a destination holds at most its slots (the rest of its mail waits for them)
                h.delivery_hold += min(hold, h.per_dest)
            h.w_delivery = _slot_wait(h.delivery_rate, h.delivery_hold, h.delivery)
        for v in self.visits:
            h, tv = self.hosts[v.tier], t[id(v)]
            tv["w_session"] = h.w_session
            w_dest = sum(share * h.w_dest[d] for d, share in destinations(self.s, v).items())
            tv["w_delivery"] = h.w_delivery + w_dest if not v.ends else 0.0
            tv["response"] = h.w_session + tv["recv"]
            if not v.ends:
                tv["response"] += tv["w_delivery"] + tv["deliver"]
        return t

    def after_hand_on(self, v: Visit, t: dict[int, dict[str, float]]) -> float:
        """From the hand-on to the answer that frees the delivery slot."""
        if v.next is not None:
            nxt = self.hosts[v.next.tier]
            return (
                self.link(v.size, False)
                + self.dead_penalty(v.next.tier, True)
                + nxt.w_session
                + t[id(v.next)]["recv"]
            )
        if not v.remote:
            return 0.0
        inet, mta = self.link(v.size, True), self.s.internet.remote_mta_s.mean
        ok = inet + mta
        if v.p_fail <= 0:
            return ok
        fail = self.s.network.internet_rtt_s + mta
        if v.fallback is not None:
            fb = self.hosts[v.fallback.tier]
            fail += self.link(v.size, False) + fb.w_session + t[id(v.fallback)]["recv"]
        return (1 - v.p_fail) * ok + v.p_fail * fail


def _cpu_waits(sv: Solver) -> None:
    """Each host's wait for CPU: its processes (M/G/c), then a shared machine's cores;
    on a fair machine no wait but a stretch (processor sharing, ``ps_mean_response``)."""
    # A shared machine's wait for a core: every host's jobs but POP's bursts, which
    # take one core for a while once a second; Allen–Cunneen with them in the mix
    # would make every job wait as if its own service varied that much.
    waits: dict[str, Jobs] = {m: Jobs() for m in sv.machines}
    for h in sv.hosts.values():
        if h.machine is not None and h.cpu.rate > 0:
            jobs, wait = sv.machines[h.machine][1], waits[h.machine]
            b_rate, b_mean, b_m2 = h.burst
            jobs.add(h.cpu.rate * h.up, h.cpu.work / h.cpu.rate, h.cpu.work2 / h.cpu.rate)
            wait.rate += (h.cpu.rate - b_rate) * h.up
            wait.work += (h.cpu.work - b_rate * b_mean) * h.up
            wait.work2 += (h.cpu.work2 - b_rate * b_m2) * h.up
    _machine_keys(sv, waits)
    stretch: dict[str, float] = {}
    for spec in sv.s.deployment.machines:
        m = spec.name
        cores, jobs = sv.machines[m]
        if spec.scheduler == "fair":
            # processor sharing: no queue for a core, every job slowed alike
            mean = jobs.work / jobs.rate if jobs.rate > 0 else 0.0
            hogs = spec.background_processes
            stretch[m] = (
                ps_mean_response(jobs.rate, mean, cores, hogs) / mean
                if mean > 0
                else 1 / min(1.0, cores / (1 + hogs))
            )
            sv.machine_wait[m] = 0.0
            continue
        busy = jobs.work - waits[m].work  # cores the bursts hold on average
        sv.machine_wait[m] = (
            waits[m].wait(cores) if busy <= 0 else _scaled_wait(waits[m], cores, busy)
        )
    for h in sv.hosts.values():
        if h.machine in stretch and h.cpu.rate > 0:
            # its blocks share its process (procs threads), itself slowed by the machine
            mean = h.cpu.work / h.cpu.rate * stretch[h.machine]
            h.stretch = ps_mean_response(h.cpu.rate, mean, h.procs) / mean * stretch[h.machine]
            h.w_cpu = 0.0
        else:
            h.w_cpu = h.cpu.wait(h.procs)
        if h.machine is not None:
            h.w_cpu += sv.machine_wait[h.machine]
        h.w_disk = h.disk.wait(1)


def _machine_keys(sv: Solver, waits: dict[str, Jobs]) -> None:
    """What a machine's optional keys add: CPU outside the model (``background_cores``:
    exponential bursts; ``background_cpu_per_message_s``: one burst per message sent) as
    Poisson jobs in the machine's mix, and each host's wake-ups per CPU block
    (``visits_per_block`` × ``wakeup_s``) as a delay (``Solver.block_time``). Per-core
    run queues and the split into visits are not represented."""
    sent = sum(v.rate for v in sv.firsts.values())
    for h in sv.hosts.values():
        placed = sv.s.deployment.machine_of(f"{h.tier}.0")
        h.wakeups = placed.visits_per_block * placed.wakeup_s if placed else 0.0
    for m in sv.s.deployment.machines:
        jobs, wait = sv.machines[m.name][1], waits[m.name]
        burst, per_msg = m.background_burst_s, m.background_cpu_per_message_s
        for rate, mean, m2 in (
            (m.background_cores / burst, burst, 2 * burst * burst),
            (sent, per_msg, per_msg * per_msg),
        ):
            if rate > 0 and mean > 0:
                jobs.add(rate, mean, m2)
                wait.add(rate, mean, m2)


def _scaled_wait(jobs: Jobs, cores: int, busy: float) -> float:
    """Allen–Cunneen wait of ``jobs`` on ``cores`` of which ``busy`` are taken on average
    by other work: the same jobs on fewer, proportionally slower-to-free cores."""
    if jobs.rate <= 0:
        return 0.0
    mean = jobs.work / jobs.rate
    cs2 = max(jobs.work2 / jobs.rate / mean**2 - 1, 0.0)
    free = cores - busy
    if free <= 0:
        return math.inf
    # the offered load on the free capacity, as a utilisation of `cores` servers
    return mgc_mean_wait(jobs.rate, mean * cores / free, cores, cs2)


def _slot_wait(rate: float, hold: float, slots: int) -> float:
    """Wait for one of ``slots`` held ``hold/rate`` s on average (M/M/c)."""
    if rate <= 0 or hold <= 0:
        return 0.0
    return mgc_mean_wait(rate, hold / rate, slots, 1.0)
