"""The discrete-event model of a scenario's topology: who sends what to whom.

``Model(scenario, seed)`` builds the hosts (``sim.hosts``) of every tier and
drives them with callbacks on one SimPy clock:

- **Traffic**: non-homogeneous Poisson streams (inbound ham, inbound spam,
  outbound, internal) whose rate is piecewise constant: the daily mean times
  the diurnal weight of the clock hour times any surge. A gap is drawn from
  Exp(rate) and redrawn at each rate change (exact by memorylessness).
- **Paths**: Internet → MX tier → ... → mailbox server; PC → mailbox server
  → ... → a tier whose next hop is the Internet, which delivers to the
  recipient's MX (or, for internal mail, to our own MX). Spam failing SPF is
  rejected after ``spf``; infected mail is quarantined after ``antivirus``.
- **Hosts per tier**: the sender picks one (``balance``); a dead host costs
  the sender ``connect_timeout_s`` before it tries the next; when all are
  dead the sender retries after ``retry.queue_run_delay_s``. A host that dies
  keeps its spool: queued mail waits for its recovery.
- **Failures and retries**: a first Internet delivery meeting a 4xx
  (``internet.temp_fail_prob``) or a remote outage (a connect timeout,
  after which the host throttles that domain for ``minimal_backoff_s`` as
  Postfix's queue manager does) goes to the tier's
  ``fallback``; the fallback tries at once, then on Postfix's schedule
  (backoff from ``minimal_backoff_s`` doubling to ``maximal_backoff_s``,
  attempts at queue runs every ``queue_run_delay_s``, bounce when older than
  ``max_queue_lifetime_s`` at a failed attempt).
- **POP**: see ``Mailboxes``.

Statistics count messages *generated* after the warm-up (``counted``), and
time-weighted levels after the warm-up. ``sim.results`` turns the model
into a ``Results``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import simpy

from mailgate.sim.model.engine import Scheduler
from mailgate.sim.model.hosts import Host, HostStats, Machine, Msg, Stage
from mailgate.sim.model.sampling import Streams
from mailgate.sim.model.stats import Level, LogHistogram
from mailgate.sim.scenario import INTERNET, MAILBOX, Scenario, StageCost
from mailgate.sim.scenario.records import HopRecord, MessageRecord

#: Latency spans recorded per flow (names used by slo.objectives).
SPANS = ("accepted_to_mailbox", "sent_to_retrieved", "sent_to_remote", "sent_to_accepted")
#: Terminal outcomes; with "in_flight" they partition the generated messages.
OUTCOMES = ("delivered", "rejected", "quarantined", "bounced")
#: Stages run by the sending side of a hop (after the queue), not before the 250.
DELIVERY_STAGES = ("mx_lookup", "deliver")
#: Stages whose result may end a visit (reject, quarantine): a CPU block stops there.
DECISION_STAGES = ("spf", "antivirus")
#: Stages that end with a durable write.
FSYNC_STAGES = ("spool", "maildir")
#: CPU a host spends after a message's visit ended (handed on, filed, refused):
#: it takes a core but nobody waits for it (``Host.housekeep``).
OFF_PATH_STAGES = ("housekeeping",)

Trace = Callable[[HopRecord | MessageRecord], None]

#: Width of the batches in which polls of empty mailboxes are served (s).
POP_BATCH_S = 1.0


def bucket_seconds(duration_h: float) -> float:
    """Width of the time series buckets: hours for long runs, 5 min for short ones."""
    return 3600.0 if duration_h >= 6 else 300.0


class Stream:
    """One arrival stream with a piecewise-constant rate."""

    def __init__(
        self,
        name: str,
        flow: str,
        per_day: float,
        weights: tuple[float, ...],
        surges: list[tuple[float, float, float]],
        start_hour: float,
        exp: Callable[[], float],
    ) -> None:
        self.name = name
        self.flow = flow
        self.base = per_day / 86400.0
        self.weights = weights
        self.surges = surges  # (start s, end s, factor)
        self.offset = start_hour * 3600.0
        self.exp = exp
        edges = sorted({e for s, t, _ in surges for e in (s, t)})
        self.edges = edges
        self.spam = False

    def rate(self, t: float) -> float:
        hour = int(((self.offset + t) // 3600.0) % 24)
        r = self.base * self.weights[hour]
        for start, end, factor in self.surges:
            if start <= t < end:
                r *= factor
        return r

    def next_edge(self, t: float) -> float:
        nxt = t + 3600.0 - ((self.offset + t) % 3600.0)
        if nxt <= t:  # rounding at an exact boundary
            nxt = t + 3600.0
        for e in self.edges:
            if t < e < nxt:
                return e
        return nxt


class PopJob:
    """A POP session's CPU work at the mailbox server."""

    __slots__ = ("cont", "copies", "core_t0", "cpu", "plan")

    def __init__(self, copies: list[tuple[float, str, bool, float]]) -> None:
        self.copies = copies
        self.plan: Any = None
        self.cpu = 0.0
        self.cont: Any = None


class Mailboxes:
    """POP retrieval without an event per poll of every mailbox.

    Only mail in an *active* mailbox (one with a polling client; the first
    ``pop.active_share`` of them, recipients being uniform) can be
    retrieved. Each active mailbox has a lazily advanced poll clock: when a
    copy is filed, the clock advances by sampled intervals past now, and if
    the mailbox had nothing pending one poll event is scheduled. That poll
    costs the mailbox server ``pop_session`` + ``pop_retrieve`` per message.
    Polls that find nothing are one aggregated Poisson stream of sessions at
    rate (active mailboxes / mean interval), thinned by the share of active
    mailboxes with mail pending (those polls are the explicit ones), served
    in batches: each ``POP_BATCH_S`` window's polls are one CPU burst.
    """

    def __init__(self, model: Model, n: int) -> None:
        s = model.s
        self.model = model
        self.n = n
        self.active = round(s.pop.active_share * n)
        self.interval = model.streams.sampler("pop.interval", s.pop.interval_s)
        u = model.streams.uniforms("pop.phase")
        self.next_poll = [u() * self.interval() for _ in range(self.active)]
        self.pending: dict[int, list[tuple[float, str, bool, float]]] = {}
        self.pick = model.streams.uniforms("pop.mailbox")
        self.session = model.stage_cost_sampler(MAILBOX, "pop_session")
        self.retrieve = model.stage_cost_sampler(MAILBOX, "pop_retrieve")
        self.hosts = model.tiers[MAILBOX]
        mean = s.pop.interval_s.mean
        self.empty_rate = self.active / mean if mean > 0 and self.active else 0.0

        # Empty polls come in batches: the Poisson number of them in each
        # POP_BATCH_S window is served as one CPU burst (one event instead
        # of one per poll; a poll's session costs about a millisecond).
        self.batch_s = POP_BATCH_S
        self.count = model.streams.poisson("pop.empty", self.empty_rate * self.batch_s)
        self.sessions = 0
        self.retrievals = 0

    def start(self) -> None:
        if self.empty_rate > 0:
            self.model.sched.after(self.batch_s * self.pick(), self._empty_poll, None)

    def file(self, m: Msg, now: float) -> None:
        """Copies of ``m`` land in ``m.rcpts`` random mailboxes."""
        for _ in range(m.rcpts):
            box = int(self.pick() * self.n)
            if box >= self.active:
                continue
            if self.empty_rate > 0:
                t = self.next_poll[box]
                while t <= now:
                    t += self.interval()
            else:
                t = now  # a client that never waits (interval 0) fetches at once
            self.next_poll[box] = t
            copy = (m.sent, m.flow, m.counted, m.size)
            waiting = self.pending.get(box)
            if waiting is None:
                self.pending[box] = [copy]
                self.model.sched.after(t - now, self._poll, box)
            else:
                waiting.append(copy)

    def _host(self) -> Host:
        hosts = self.hosts
        return hosts[0] if len(hosts) == 1 else hosts[int(self.pick() * len(hosts))]

    def _poll(self, box: int) -> None:
        copies = self.pending.pop(box)
        cpu = self.session(0.0)
        for _, _, _, size in copies:
            cpu += self.retrieve(size)
        self.sessions += 1
        job = PopJob(copies)
        self._host().burst(job, cpu, self._retrieved)

    def _retrieved(self, job: PopJob) -> None:
        now = self.model.env._now
        hists = self.model.hists
        for sent, flow, counted, _ in job.copies:
            self.retrievals += 1
            if counted:
                hists[flow]["sent_to_retrieved"].add(now - sent)

    def _empty_poll(self, _: Any) -> None:
        """One batch of polls that find nothing: a session's CPU each, one burst."""
        model = self.model
        now = model.env._now
        if now >= model.t_end:
            return
        model.sched.after(self.batch_s, self._empty_poll, None)
        busy = len(self.pending) / self.active  # these polls are the explicit ones
        cpu = 0.0
        for _ in range(int(self.count())):
            if self.pick() >= busy:
                cpu += self.session(0.0)
                self.sessions += 1
        if cpu > 0:
            self._host().background(cpu)


class Model:
    """One replication of a scenario."""

    def __init__(
        self,
        scenario: Scenario,
        seed: int | np.random.SeedSequence,
        trace: Trace | None = None,
    ) -> None:
        s = self.s = scenario
        self.env = simpy.Environment()
        self.sched = Scheduler(self.env)
        self.streams = Streams(seed)
        self.trace = trace
        self.t_warm = s.scenario.warmup_h * 3600.0
        self.t_end = self.t_warm + s.scenario.duration_h * 3600.0
        self.bucket_s = bucket_seconds(s.scenario.duration_h)
        self.next_id = 0
        self.u = self.streams.uniforms("choices")
        self.dns = self.streams.sampler("network.dns", s.network.dns_s)
        self.remote_mta = self.streams.sampler("internet.remote_mta", s.internet.remote_mta_s)
        self.size_legit = self.streams.sampler("size.legit", s.workload.size.legit)
        self.size_spam = self.streams.sampler("size.spam", s.workload.size.spam)
        self.recipients = self.streams.sampler("recipients", s.workload.recipients)
        self.hists: dict[str, dict[str, LogHistogram]] = {
            f: {span: LogHistogram() for span in SPANS} for f in ("inbound", "outbound", "internal")
        }
        self.counts: dict[str, int] = dict.fromkeys(("generated", *OUTCOMES, "deferred"), 0)
        self.by_flow: dict[str, dict[str, int]] = {
            f: dict.fromkeys(("generated", *OUTCOMES, "deferred"), 0)
            for f in ("inbound", "outbound", "internal")
        }
        self.machines: dict[str, Machine] = {}
        self.machine_levels: dict[str, Level] = {}
        self.tiers: dict[str, list[Host]] = {}
        self.hosts: dict[str, Host] = {}
        self._build_hosts()
        self.recv_plan: dict[str, tuple[Stage, ...]] = {}
        self.submit_plan: tuple[Stage, ...] = ()
        self.deliv_plan: dict[str, tuple[Stage, ...]] = {}
        self._build_plans()
        self.rr: dict[str, int] = dict.fromkeys(self.tiers, 0)
        self.parked: dict[str, list[Msg]] = {h: [] for h in self.hosts}
        self.domain_names = [d.name for d in s.internet.domains]
        cum, acc = [], 0.0
        for d in s.internet.domains:
            acc += d.share
            cum.append(acc)
        self.domain_cum = cum
        self.outages = [
            (
                self.domain_names.index(o.domain),
                o.start_h * 3600.0,
                (o.start_h + o.duration_h) * 3600.0,
            )
            for o in s.failures.remote_outage
        ]
        self.dns_slow = [
            (d.start_h * 3600.0, (d.start_h + d.duration_h) * 3600.0, d.extra_s)
            for d in s.failures.dns_slow
        ]
        self.mailboxes = Mailboxes(self, s.population.mailboxes)
        self.deferred_total = Level(self.t_warm, self.t_end, self.bucket_s)
        #: messages generated per bucket (the offered load over the day)
        self.generated_series = [0] * len(self.deferred_total.bucket_area)
        self._c_session = self._session
        self._c_received = self._received
        self._c_deliver = self._deliver
        self._c_delivered_plan = self._delivered_plan

    # ------------------------------------------------------------ building

    def _build_hosts(self) -> None:
        s = self.s
        for m in s.deployment.machines:
            level = Level(self.t_warm, self.t_end, self.bucket_s)
            self.machine_levels[m.name] = level
            self.machines[m.name] = Machine(self.sched, m.name, m.cores, level)
        for tier_name, tier in s.tiers.items():
            hosts = []
            for i, spec in enumerate(tier.hosts):
                hid = f"{tier_name}.{i}"
                stats = HostStats(self.t_warm, self.t_end, self.bucket_s)
                placed = s.deployment.machine_of(hid)
                if placed is None:
                    machine = Machine(self.sched, hid, spec.cores, None)
                    shared, procs = False, spec.cores
                else:
                    machine = self.machines[placed.name]
                    shared = True
                    procs = min(placed.processes_per_host or spec.cores, placed.cores)
                host = Host(
                    self,
                    hid,
                    tier_name,
                    i,
                    sessions=spec.session_limit,
                    processes=procs,
                    machine=machine,
                    shared=shared,
                    delivery=spec.delivery_concurrency,
                    fsync=self.streams.sampler(f"{hid}.fsync", spec.fsync_s),
                    stats=stats,
                )
                hosts.append(host)
                self.hosts[hid] = host
            self.tiers[tier_name] = hosts

    def stage_cost_sampler(self, tier: str, stage: str) -> Callable[[float], float]:
        """CPU seconds of ``stage`` at ``tier`` for a message of a given size."""
        cost = self.s.tiers[tier].cost(stage) or StageCost()
        fixed = self.streams.sampler(f"{tier}.{stage}.cpu", cost.cpu_s)
        per_kb = cost.cpu_per_kb_s
        return lambda size_kb: fixed() + per_kb * size_kb

    def _stage(self, tier: str, name: str) -> Stage | None:
        cost = self.s.tiers[tier].cost(name) or StageCost()
        fsync = name in FSYNC_STAGES
        has_cpu = cost.cpu_s.mean > 0 or cost.cpu_per_kb_s > 0
        has_wait = cost.dns_lookups > 0 or cost.wait_s.mean > 0
        if not (fsync or has_cpu or has_wait):
            return None
        return Stage(
            name=name,
            cpu=self.streams.sampler(f"{tier}.{name}.cpu", cost.cpu_s),
            cpu_per_kb=cost.cpu_per_kb_s,
            lookups=cost.dns_lookups,
            wait=self.streams.sampler(f"{tier}.{name}.wait", cost.wait_s),
            fsync=fsync,
            per_rcpt=name == "maildir",
            has_wait=has_wait,
            has_cpu=has_cpu,
            ends_block=fsync or name in DECISION_STAGES,
        )

    def _plan(self, tier: str, names: list[str]) -> tuple[Stage, ...]:
        stages = (self._stage(tier, n) for n in names)
        return tuple(st for st in stages if st is not None)

    def _build_plans(self) -> None:
        from mailgate.sim.scenario.topology import ROLE_STAGES

        for name, tier in self.s.tiers.items():
            role = ROLE_STAGES[tier.role]
            if name == MAILBOX:
                self.submit_plan = self._plan(name, ["smtp_receive", "submission", "spool"])
                self.recv_plan[name] = self._plan(name, ["smtp_receive", "maildir"])
            else:
                recv = [st for st in role if st not in DELIVERY_STAGES + OFF_PATH_STAGES]
                self.recv_plan[name] = self._plan(name, recv)
            self.deliv_plan[name] = self._plan(name, [st for st in DELIVERY_STAGES if st in role])
            chore = self._chore(name)
            for host in self.tiers[name]:
                host.chore = chore

    def _chore(self, tier: str) -> Callable[[float], float] | None:
        """CPU seconds of a message's ``housekeeping`` at ``tier``; None when it costs nothing
        (then the hot path skips it entirely)."""
        cost = self.s.tiers[tier].cost("housekeeping")
        if cost is None or (cost.cpu_s.mean <= 0 and cost.cpu_per_kb_s <= 0):
            return None
        return self.stage_cost_sampler(tier, "housekeeping")

    # ------------------------------------------------------------ helpers

    def dns_time(self, lookups: int) -> float:
        t = 0.0
        for _ in range(lookups):
            t += self.dns()
        if self.dns_slow:
            now = self.env._now
            for start, end, extra in self.dns_slow:
                if start <= now < end:
                    t += extra * lookups
        return t

    def lan(self, m: Msg) -> float:
        n = self.s.network
        return n.lan_rtt_s + m.size * 8192.0 / (n.lan_mbps * 1e6)

    def internet(self, m: Msg) -> float:
        n = self.s.network
        return n.internet_rtt_s + m.size * 8192.0 / (n.internet_mbps * 1e6)

    def _outage(self, domain: int, now: float) -> bool:
        return any(d == domain and a <= now < b for d, a, b in self.outages)

    def _emit_hop(self, hop: HopRecord | None, now: float, outcome: str, next_hop: str) -> None:
        if hop is not None and self.trace is not None:
            hop.left = now
            hop.outcome = outcome
            hop.next_hop = next_hop
            self.trace(hop)

    # ------------------------------------------------------------ traffic

    def start(self) -> None:
        """Schedule arrivals, failures and POP; call once before running."""
        s, w = self.s, self.s.workload
        n = s.population.mailboxes
        inbound = w.inbound_per_mailbox_day * n
        streams = [
            ("inbound", False, inbound * (1 - w.spam_share), w.diurnal.inbound.weights),
            ("inbound", True, inbound * w.spam_share, w.diurnal.inbound.weights),
            ("outbound", False, s.daily_messages("outbound"), w.diurnal.outbound.weights),
            ("internal", False, s.daily_messages("internal"), w.diurnal.outbound.weights),
        ]
        for flow, spam, per_day, weights in streams:
            surges = [
                (g.start_h * 3600.0, (g.start_h + g.duration_h) * 3600.0, g.factor)
                for g in w.surges
                if (
                    g.flow == "all"
                    or g.flow == flow
                    or (g.flow == "outbound" and flow == "internal")
                )
                and (spam or not g.spam_only)
            ]
            name = f"{flow}{'.spam' if spam else ''}"
            stream = Stream(name, flow, per_day, weights, surges, s.scenario.start_hour,
                            self.streams.exponentials(f"arrivals.{name}"))  # fmt: skip
            stream.spam = spam
            self._next_arrival(stream, 0.0)
        for down in s.failures.host_down:
            host = self.hosts[down.host]
            self.sched.after(down.start_h * 3600.0, self._host_down, (host, down.refuses))
            if down.duration_h < 1e8:
                self.sched.after((down.start_h + down.duration_h) * 3600.0, self._host_up, host)
        self.mailboxes.start()

    def _next_arrival(self, stream: Stream, t: float) -> None:
        """Schedule the stream's next message after time ``t`` (thinning-free)."""
        end = self.t_end
        while t < end:
            r = stream.rate(t)
            edge = stream.next_edge(t)
            if r > 0:
                gap = stream.exp() / r
                if t + gap < edge:
                    if t + gap < end:
                        self.sched.after(t + gap - self.env._now, self._arrival, stream)
                    return
            t = edge

    def _arrival(self, stream: Stream) -> None:
        now = self.env._now
        self.new_message(stream.flow, stream.spam, now)
        self._next_arrival(stream, now)

    def new_message(
        self, flow: str, spam: bool, now: float, *, size: float | None = None, probe: bool = False
    ) -> Msg:
        """Create a message sent now and hand it to its first hop.

        A ``probe`` (the self-test mail) has one recipient, no virus and the
        given size; it is not counted in the statistics.
        """
        w, u = self.s.workload, self.u
        if size is None:
            size = self.size_spam() if spam else self.size_legit()
        m = Msg(self.next_id, flow, size, now)
        self.next_id += 1
        m.spam = spam
        m.rcpts = int(self.recipients())
        m.virus = u() < w.virus_share
        if probe:
            m.rcpts, m.virus = 1, False
        m.counted = now >= self.t_warm and not probe
        if spam:
            m.spf_fail = u() < w.spam_spf_fail_share
        if flow == "outbound":
            x, m.domain = u(), -1
            for i, c in enumerate(self.domain_cum):
                if x < c:
                    m.domain = i
                    break
        if m.counted:
            self.counts["generated"] += 1
            i = int((now - self.t_warm) / self.bucket_s)
            if i < len(self.generated_series):
                self.generated_series[i] += 1
            self.by_flow[flow]["generated"] += 1
        first = self.s.mx if flow == "inbound" else MAILBOX
        self.connect(m, first, self.internet(m))
        return m

    # ------------------------------------------------------------ connecting

    def connect(self, m: Msg, tier: str, link: float) -> None:
        """The sender (m.sender, or an outside client) opens a session at ``tier``."""
        hosts = self.tiers[tier]
        m.target = tier
        if len(hosts) == 1:
            first = 0
        elif self.s.tiers[tier].balance == "round_robin":
            first = self.rr[tier] % len(hosts)
            self.rr[tier] += 1
        else:
            first = int(self.u() * len(hosts))
        m.tries = 0  # hosts tried so far
        m.pick = first  # the host to try next
        self._try(m, link)

    def _try(self, m: Msg, link: float) -> None:
        hosts = self.tiers[m.target]
        host = hosts[m.pick % len(hosts)]
        if host.up:
            self.sched.after(link, self._arrive_at, (m, host))
            return
        m.tries += 1
        timeout = self._refused_rtt(m) if host.refuses else self.s.tiers[m.target].connect_timeout_s
        if m.tries < len(hosts):
            m.pick += 1
            self.sched.after(timeout, self._retry_twin, (m, link))
        else:
            self.sched.after(timeout, self._unreachable, (m, link))

    def _refused_rtt(self, m: Msg) -> float:
        """A live machine with a dead MTA answers the SYN with a RST: one round trip."""
        net = self.s.network
        return net.lan_rtt_s if m.sender is not None else net.internet_rtt_s

    def _retry_twin(self, arg: tuple[Msg, float]) -> None:
        self._try(*arg)

    def _unreachable(self, arg: tuple[Msg, float]) -> None:
        """Every host of the tier is down: the sender retries after a queue run delay.

        A relay frees its delivery slot and requeues the message (it stays in
        its spool); an outside client (Internet sender, PC) just tries again.
        """
        m, link = arg
        delay = self.s.retry.queue_run_delay_s
        sender = m.sender
        if sender is None:
            self.sched.after(delay, self._reconnect, (m, link))
            return
        m.sender = None
        sender.delivery.release()
        self.sched.after(delay, self.enqueue, m)

    def _reconnect(self, arg: tuple[Msg, float]) -> None:
        m, link = arg
        self.connect(m, m.target, link)

    def _arrive_at(self, arg: tuple[Msg, Host]) -> None:
        m, host = arg
        now = self.env._now
        m.host = host
        m.entered_prev = m.entered
        m.entered = now
        host.stats.in_host.add(now, 1)
        if self.trace is not None:
            m.hop_prev = m.hop
            m.hop = HopRecord(f"m{m.id}", m.flow, host.id, m.size, arrived=now)
        host.sessions.acquire(self._c_session, m)

    # ------------------------------------------------------------ receiving

    def _session(self, m: Msg) -> None:
        host = m.host
        assert host is not None
        if host.tier == MAILBOX and m.sender is None:
            plan = self.submit_plan  # a PC submitting
        else:
            plan = self.recv_plan[host.tier]
        host.run(m, plan, self._c_received)

    def check_stage(self, host: Host, m: Msg, stage: str) -> bool:
        """After a stage: False if the message's visit ended there (rejected)."""
        if stage == "spf" and m.spf_fail:
            self._end_session(host, m)
            self._finish(host, m, "rejected")
            return False
        if stage == "antivirus" and m.virus:
            m.outcome = "quarantined"  # the rest of the receive plan still runs (spool)
        return True

    def _received(self, m: Msg) -> None:
        """The host answers 250: the message is durable here."""
        host = m.host
        assert host is not None
        now = self.env._now
        if m.accepted < 0:
            m.accepted = now
            if m.counted:
                self.hists[m.flow]["sent_to_accepted"].add(now - m.sent)
        if m.hop is not None:
            m.hop.accepted = now
        final = host.tier == MAILBOX and m.sender is not None  # relayed to the mailbox server
        self._end_session(host, m)  # (clears m.sender)
        if m.outcome == "quarantined":
            self._finish(host, m, "quarantined")
        elif final:
            m.in_mailbox = now
            if m.counted:
                self.hists[m.flow]["accepted_to_mailbox"].add(now - m.accepted)
            self.mailboxes.file(m, now)
            self._finish(host, m, "delivered", outcome="mailbox")
        else:
            m.queued_at = now
            m.backoff = 0.0
            self.enqueue(m)

    def _end_session(self, host: Host, m: Msg) -> None:
        """Free the session slot; the sender's delivery ends with our answer."""
        host.sessions.release()
        sender = m.sender
        if sender is not None:
            m.sender = None
            self._left(sender, m, m.entered_prev, m.hop_prev, "relayed", host.id)
            sender.delivery.release()

    def _left(
        self, host: Host, m: Msg, entered: float, hop: HopRecord | None, outcome: str, nxt: str
    ) -> None:
        """``m``'s visit at ``host`` ended: statistics, the hop record, housekeeping."""
        now = self.env._now
        if host.chore is not None:
            host.housekeep(m.size)
        st = host.stats
        st.in_host.add(now, -1)
        if now >= self.t_warm:
            st.sojourn += now - max(entered, self.t_warm)
            st.left += 1
        self._emit_hop(hop, now, outcome, nxt)

    def _finish(self, host: Host | None, m: Msg, result: str, outcome: str = "") -> None:
        """A terminal outcome at ``host`` (None: after leaving every host)."""
        if host is not None:
            self._left(host, m, m.entered, m.hop, outcome or result, "")
        if m.counted:
            self.counts[result] += 1
            self.by_flow[m.flow][result] += 1
        if self.trace is not None:
            self.trace(
                MessageRecord(
                    f"m{m.id}",
                    m.flow,
                    m.size,
                    m.sent,
                    accepted=m.accepted if m.accepted >= 0 else None,
                    in_mailbox=m.in_mailbox if m.in_mailbox >= 0 else None,
                    remote=m.remote if m.remote >= 0 else None,
                    outcome=outcome or result,
                )
            )

    # ------------------------------------------------------------ delivering

    def enqueue(self, m: Msg) -> None:
        """Wait for one of the host's delivery slots."""
        host = m.host
        assert host is not None
        if not host.up:
            self.parked[host.id].append(m)
            return
        host.delivery.acquire(self._c_deliver, m)

    def _deliver(self, m: Msg) -> None:
        host = m.host
        assert host is not None
        if not host.up:  # died while we waited: keep the message for its recovery
            host.delivery.release()
            self.parked[host.id].append(m)
            return
        host.run(m, self.deliv_plan[host.tier], self._c_delivered_plan)

    def _delivered_plan(self, m: Msg) -> None:
        host = m.host
        assert host is not None
        nxt = self.s.tiers[host.tier].next_hop
        m.sender = host
        if nxt != INTERNET:
            self.connect(m, nxt, self.lan(m))
        elif m.flow == "internal":
            self.connect(m, self.s.mx, self.lan(m))
        else:
            self._remote_attempt(m)

    def _remote_attempt(self, m: Msg) -> None:
        host = m.host
        assert host is not None
        now = self.env._now
        tier = self.s.tiers[host.tier]
        if m.domain >= 0 and self.outages:
            if host.dead.get(m.domain, -1.0) > now:
                self._remote_failed(m)  # site throttled: deferred without an attempt
                return
            if self._outage(m.domain, now):
                self.sched.after(tier.connect_timeout_s, self._remote_dead, m)
                return
        fallback_role = tier.role == "fallback_mx"
        inet = self.s.internet
        p_ok = inet.retry_success_prob if fallback_role else 1 - inet.temp_fail_prob
        if self.u() < p_ok:
            self.sched.after(self.internet(m) + self.remote_mta(), self._remote_ok, m)
        else:
            self.sched.after(
                self.s.network.internet_rtt_s + self.remote_mta(), self._remote_failed, m
            )

    def _remote_dead(self, m: Msg) -> None:
        """The connection timed out: like Postfix's queue manager, throttle the site.

        Until ``retry.minimal_backoff_s`` from now, mail for that domain on
        this host fails at once instead of holding a delivery slot through
        another connect timeout (qmgr_queue_throttle / "delivery temporarily
        suspended").
        """
        host = m.host
        assert host is not None
        host.dead[m.domain] = self.env._now + self.s.retry.minimal_backoff_s
        self._remote_failed(m)

    def _remote_ok(self, m: Msg) -> None:
        host = m.host
        assert host is not None
        now = self.env._now
        m.remote = now
        m.sender = None
        if m.counted:
            self.hists[m.flow]["sent_to_remote"].add(now - m.sent)
        host.delivery.release()
        self._finish(host, m, "delivered", outcome="remote")

    def _remote_failed(self, m: Msg) -> None:
        host = m.host
        assert host is not None
        fallback = self.s.tiers[host.tier].fallback
        if not m.deferred:
            m.deferred = True
            if m.counted:
                self.counts["deferred"] += 1
                self.by_flow[m.flow]["deferred"] += 1
        if fallback:
            self.connect(m, fallback, self.lan(m))  # the slot is held until the fallback says 250
            return
        m.sender = None
        host.delivery.release()
        self._defer(host, m)

    def _defer(self, host: Host, m: Msg) -> None:
        """Postfix's deferred queue: backoff doubling, attempts at queue runs, bounce when old."""
        now = self.env._now
        r = self.s.retry
        if now - m.queued_at >= r.max_queue_lifetime_s:
            self._finish(host, m, "bounced")
            return
        m.backoff = (
            r.minimal_backoff_s if m.backoff <= 0 else min(2 * m.backoff, r.maximal_backoff_s)
        )
        run = math.ceil((now + m.backoff) / r.queue_run_delay_s - 1e-9) * r.queue_run_delay_s
        host.stats.deferred.add(now, 1)
        self.deferred_total.add(now, 1)
        self.sched.after(run - now, self._retry, m)

    def _retry(self, m: Msg) -> None:
        host = m.host
        assert host is not None
        now = self.env._now
        host.stats.deferred.add(now, -1)
        self.deferred_total.add(now, -1)
        self.enqueue(m)

    # ------------------------------------------------------------ failures

    def _host_down(self, arg: tuple[Host, bool]) -> None:
        host, host.refuses = arg
        host.up = False

    def _host_up(self, host: Host) -> None:
        host.up = True
        parked, self.parked[host.id] = self.parked[host.id], []
        for m in parked:
            self.enqueue(m)

    # ------------------------------------------------------------ running

    def run(self, until: float | None = None) -> None:
        """Advance the clock to ``until`` (default: the end of the run)."""
        self.env.run(until=self.t_end if until is None else until)

    def finish(self) -> None:
        """Close the time-weighted statistics at the end of the run."""
        for host in self.hosts.values():
            for level in host.stats.levels().values():
                level.finish(self.t_end)
        for level in self.machine_levels.values():
            level.finish(self.t_end)
        self.deferred_total.finish(self.t_end)

    def in_flight(self, flow: str | None = None) -> int:
        """Counted messages without a terminal outcome yet (of one flow, or all)."""
        c = self.counts if flow is None else self.by_flow[flow]
        return c["generated"] - sum(c[o] for o in OUTCOMES)
