"""The fleet: every tier's hosts and the machines they run on, built from the scenario.

A host on no ``[[deployment.machines]]`` entry has its own cores; hosts on a
shared machine take one of their processes, then one of the machine's cores. A
machine whose keys ask for visits (per-core run queues, several visits per block,
a wake-up latency) runs its hosts as ``VisitHost``, a ``scheduler = "fair"`` one as
``FairHost`` (``sim.model.fair``); one with background CPU gets a ``Background``
(``sim.model.cores``).
"""

from __future__ import annotations

from mailgate.sim.model.cores import Background, Cores, scheduler_of
from mailgate.sim.model.engine import Scheduler
from mailgate.sim.model.fair import FairHost
from mailgate.sim.model.hosts import AfterStage, DnsTime, Host, HostStats, Machine
from mailgate.sim.model.plans import Plans
from mailgate.sim.model.sampling import Streams
from mailgate.sim.model.slots import DeliverySlots, destinations
from mailgate.sim.model.statistics import Window
from mailgate.sim.model.stats import Level
from mailgate.sim.model.visit_host import VisitHost
from mailgate.sim.scenario import Scenario


class Fleet:
    """Machines (with their busy levels), hosts by id and by tier."""

    def __init__(
        self,
        scenario: Scenario,
        sched: Scheduler,
        streams: Streams,
        window: Window,
        plans: Plans,
        *,
        dns: DnsTime,
        after_stage: AfterStage,
        trace: bool,
    ) -> None:
        s = scenario
        self.machines: dict[str, Machine] = {}
        self.machine_levels: dict[str, Level] = {}
        self.tiers: dict[str, list[Host]] = {}
        self.hosts: dict[str, Host] = {}
        #: each shared machine's scheduler, and the CPU of processes outside the model
        self.schedulers: dict[str, Cores] = {}
        self.background: list[Background] = []
        placed_on: dict[str, int] = {}  # hosts placed on each machine so far
        for m in s.deployment.machines:
            level = Level(window.warm, window.end, window.bucket_s)
            self.machine_levels[m.name] = level
            machine = self.machines[m.name] = Machine(sched, m.name, m.cores, level)
            cores = self.schedulers[m.name] = scheduler_of(sched, m, machine.cores, streams, level)
            if m.scheduler != "fcfs":
                machine.cores = cores  # type: ignore[assignment]  # capacity, waiters
            background = Background(sched, cores, m, streams, window)
            if background.active:
                self.background.append(background)
            placed_on[m.name] = 0
        for tier_name, tier in s.tiers.items():
            hosts = []
            dest_of, dest_names = destinations(s, tier_name)
            for i, spec in enumerate(tier.hosts):
                hid = f"{tier_name}.{i}"
                stats = HostStats(window.warm, window.end, window.bucket_s)
                delivery = DeliverySlots(
                    sched.env, f"{hid}.delivery",
                    total=spec.delivery_limit, per_destination=spec.destination_concurrency,
                    dest_of=dest_of, names=dest_names,
                    busy=stats.delivery_busy, waiting=stats.queue,
                    level=lambda: Level(window.warm, window.end, window.bucket_s),
                )  # fmt: skip
                placed = s.deployment.machine_of(hid)
                if placed is None:
                    machine = Machine(sched, hid, spec.cores, None)
                    shared, procs = False, spec.cores
                else:
                    machine = self.machines[placed.name]
                    shared = True
                    procs = placed.processes_of(spec.cores)
                extra: dict[str, object] = {}
                make: type[Host] = Host
                if placed is not None and placed.scheduler == "fair":
                    make = FairHost
                    extra = {"fair": self.schedulers[placed.name]}
                elif placed is not None and placed.visits:
                    make = VisitHost
                    extra = {
                        "cores": self.schedulers[placed.name],
                        "visits": placed.visits_per_block,
                        "wakeup": placed.wakeup_s,
                        "first_core": placed_on[placed.name] % placed.cores,
                    }
                if placed is not None:
                    placed_on[placed.name] += 1
                host = make(
                    sched,
                    hid,
                    tier_name,
                    i,
                    sessions=spec.session_limit,
                    processes=procs,
                    machine=machine,
                    shared=shared,
                    delivery=delivery,
                    fsync=streams.sampler(f"{hid}.fsync", spec.fsync_s),
                    stats=stats,
                    dns=dns,
                    after_stage=after_stage,
                    warm=window.warm,
                    trace=trace,
                    **extra,  # type: ignore[arg-type]
                )
                host.chore = plans.chore[tier_name]
                hosts.append(host)
                self.hosts[hid] = host
            self.tiers[tier_name] = hosts

    def finish(self, end: float) -> None:
        """Close every host's and machine's time-weighted levels at ``end``."""
        for host in self.hosts.values():
            for level in host.stats.levels().values():
                level.finish(end)
            host.delivery.finish(end)
        for level in self.machine_levels.values():
            level.finish(end)
