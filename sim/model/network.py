"""The discrete-event model of a scenario's topology: the parts, wired on one clock.

``Model(scenario, seed)`` builds the parts and connects them; each holds one
policy and can be run alone:

- ``traffic`` (``sim.model.traffic``): arrival streams and new messages;
- ``fleet`` (``sim.model.fleet``, ``sim.model.hosts``): hosts and machines
  running plans of stages (``sim.model.plans``);
- ``visits`` (``sim.model.visits``): sessions, verdicts, the 250;
- ``router`` (``sim.model.routing``): next tier, twin choice and failover;
- ``queues`` (``sim.model.queues``): each host's outgoing queue, host failures;
- ``remote`` (``sim.model.remote``): Internet delivery, deferral, retries, bounces;
- ``mailboxes`` (``sim.model.mailboxes``): POP;
- ``stats`` and ``outcomes`` (``sim.model.statistics``, ``sim.model.outcomes``):
  what is counted.

A message's path: ``Traffic`` -> ``new_message`` -> ``Router.connect`` ->
``Visits.arrive`` -> (250) -> ``Queues.enqueue`` -> ``Router.connect`` (next
tier) or ``RemoteDelivery.attempt``; at the mailbox server ``Mailboxes.file``.
``sim.model.results`` turns the model into a ``Results``.
"""

from __future__ import annotations

import numpy as np
import simpy

from mailgate.sim.model.engine import Scheduler
from mailgate.sim.model.failure_watch import FailureWatch
from mailgate.sim.model.fleet import Fleet
from mailgate.sim.model.hosts import Host, Machine, Msg
from mailgate.sim.model.links import Links
from mailgate.sim.model.mailboxes import Mailboxes
from mailgate.sim.model.outcomes import Outcomes, Trace
from mailgate.sim.model.plans import Plans, cost_sampler
from mailgate.sim.model.queues import Queues
from mailgate.sim.model.remote import RemoteDelivery
from mailgate.sim.model.routing import Router
from mailgate.sim.model.sampling import Streams
from mailgate.sim.model.statistics import Statistics, Window, bucket_seconds
from mailgate.sim.model.stats import Level, LogHistogram
from mailgate.sim.model.traffic import MessageMaker, Traffic, streams_of
from mailgate.sim.model.visits import Visits
from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.topology import MAILBOX


class Model:
    """One replication of a scenario: its parts and their connections."""

    def __init__(
        self,
        scenario: Scenario,
        seed: int | np.random.SeedSequence,
        trace: Trace | None = None,
    ) -> None:
        s = self.s = scenario
        self.env = simpy.Environment()
        self.sched = Scheduler(self.env)
        self.streams = streams = Streams(seed)
        self.trace = trace
        meta = s.scenario
        warm = meta.warmup_h * 3600.0
        self.window = Window(warm, warm + meta.duration_h * 3600.0, bucket_seconds(meta.duration_h))
        choices = streams.uniforms("choices")  # one stream of choices, shared in event order
        self.stats = Statistics(self.window)
        self.outcomes = Outcomes(self.sched, self.stats, trace)
        self.plans = Plans(s, streams)
        self.links = Links(s, self.sched, streams.sampler("network.dns", s.network.dns_s))
        self.visits = Visits(self.sched, self.plans, self.outcomes, self.stats,
                             trace=trace is not None)  # fmt: skip
        self.fleet = Fleet(s, self.sched, streams, self.window, self.plans,
                           dns=self.links.dns_time, after_stage=self.visits.after_stage,
                           trace=trace is not None)  # fmt: skip
        self.background = self.fleet.background  # CPU outside the model, per machine
        self.send_path = s.workload.send_path_s
        self.router = Router(s, self.sched, self.fleet.tiers, self.links, choices)
        self.queues = Queues(self.plans, self.router, self.links, self.fleet.hosts)
        self.remote = RemoteDelivery(
            s, self.sched, self.links, self.router, choices=choices,
            remote_mta=streams.sampler("internet.remote_mta", s.internet.remote_mta_s),
            stats=self.stats, outcomes=self.outcomes,
        )  # fmt: skip
        self.mailboxes = Mailboxes(
            s.pop, s.population.mailboxes, sched=self.sched, streams=streams,
            window=self.window, hosts=self.fleet.tiers[MAILBOX],
            session=cost_sampler(s, streams, MAILBOX, "pop_session"),
            retrieve=cost_sampler(s, streams, MAILBOX, "pop_retrieve"),
            retrieved=lambda flow, waited: self.stats.span(flow, "sent_to_retrieved", waited),
        )  # fmt: skip
        self.maker = MessageMaker(s, streams, choices)
        self.traffic = Traffic(streams_of(s, streams), self.sched, self.window, self.new_message)
        # the connections between the parts
        self.visits.wire(file=self.mailboxes.file, queue=self.queues.enqueue)
        self.router.wire(
            arrive=self.visits.arrive,
            requeue=self.queues.enqueue,
            deferred_total=self.stats.deferred_total,
        )
        self.queues.wire(remote=self.remote.attempt)
        self.remote.wire(requeue=self.queues.enqueue)
        self.watch = FailureWatch(
            s, self.sched, lambda: self.window.end, self.fleet.hosts, self.queues.parked,
            lambda: self.stats.deferred_total.value,
        )  # fmt: skip
        if self.watch.active:
            self.outcomes.on_delivered = self.watch.delivered

    # ------------------------------------------------------------ the run's window

    @property
    def t_warm(self) -> float:
        return self.window.warm

    @property
    def t_end(self) -> float:
        return self.window.end

    @t_end.setter
    def t_end(self, value: float) -> None:
        self.window.end = value  # a probe that must finish: traffic and POP go on until then

    @property
    def bucket_s(self) -> float:
        return self.window.bucket_s

    # ------------------------------------------------------------ views read by results

    @property
    def hosts(self) -> dict[str, Host]:
        return self.fleet.hosts

    @property
    def tiers(self) -> dict[str, list[Host]]:
        return self.fleet.tiers

    @property
    def machines(self) -> dict[str, Machine]:
        return self.fleet.machines

    @property
    def machine_levels(self) -> dict[str, Level]:
        return self.fleet.machine_levels

    @property
    def hists(self) -> dict[str, dict[str, LogHistogram]]:
        return self.stats.hists

    @property
    def counts(self) -> dict[str, int]:
        return self.stats.counts

    @property
    def by_flow(self) -> dict[str, dict[str, int]]:
        return self.stats.by_flow

    @property
    def next_id(self) -> int:
        """Messages created so far (the id the next one gets)."""
        return self.maker.next_id

    # ------------------------------------------------------------ messages

    def new_message(
        self, flow: str, spam: bool, now: float, *, size: float | None = None, probe: bool = False
    ) -> Msg:
        """Create a message sent now and hand it to its first hop.

        A ``probe`` (the self-test mail) has one recipient, no virus and the
        given size; it is not counted in the statistics.
        """
        m = self.maker.make(flow, spam, now, size=size, probe=probe, warm=self.window.warm)
        if m.counted:
            self.stats.generated(m, now)
        first = self.s.mx if flow == "inbound" else MAILBOX
        if self.background:
            for burst in self.background:
                burst.message()
        # send_path is 0.0 unless set (x + 0.0 == x: the default path is unchanged)
        self.router.connect(m, first, self.links.internet(m) + self.send_path)
        return m

    # ------------------------------------------------------------ running

    def start(self) -> None:
        """Schedule arrivals, failures and POP; call once before running."""
        self.traffic.start()
        for background in self.background:
            background.start()
        self.watch.start()
        for down in self.s.failures.host_down:
            host = self.fleet.hosts[down.host]
            self.sched.after(down.start_h * 3600.0, self.queues.host_down, (host, down.refuses))
            if down.duration_h < 1e8:
                self.sched.after((down.start_h + down.duration_h) * 3600.0, self.queues.host_up,
                                 host)  # fmt: skip
        self.mailboxes.start()

    def run(self, until: float | None = None) -> None:
        """Advance the clock to ``until`` (default: the end of the run)."""
        self.sched.run(self.t_end if until is None else until)

    def finish(self) -> None:
        """Close the time-weighted statistics at the end of the run."""
        self.fleet.finish(self.t_end)
        self.stats.deferred_total.finish(self.t_end)

    def in_flight(self, flow: str | None = None) -> int:
        """Counted messages without a terminal outcome yet (of one flow, or all)."""
        return self.stats.in_flight(flow)
