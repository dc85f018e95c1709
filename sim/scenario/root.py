"""The scenario: one description of a mail system, as frozen data.

Both builders read it: the SimPy model (``sim.model``) and the real relays on
loopback (``realnet``). The package therefore imports neither simpy nor
asyncio. The dataclasses double as the schema of the TOML format: a field's
type says what a key holds, its default is the documented default, and its
``metadata`` carries limits (``min``, ``max``, ``gt``, ``choices``) and a
one-line ``doc`` (``fields``). ``loading`` turns a TOML file into these objects.

``Scenario`` is the root: ``[scenario]`` (``Meta``) and one field per section, each
defined in the module of its idea (``workload``, ``topology``, ``mta``, ``failures``,
``slo``, ``deployment``).

Units: times in seconds unless a name ends in ``_h`` (hours); sizes in KB
(1 KB = 1024 bytes) unless a name says ``bytes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from mailgate.sim.scenario.deployment import Deployment, Realnet
from mailgate.sim.scenario.failures import Failures
from mailgate.sim.scenario.fields import required, spec
from mailgate.sim.scenario.mta import Limits, Retry
from mailgate.sim.scenario.slo import Slo
from mailgate.sim.scenario.topology import INTERNET, MAILBOX, HostSpec, Internet, Network, Tier
from mailgate.sim.scenario.workload import Pop, Population, Workload


@dataclass(frozen=True)
class Meta:
    """[scenario]: what this is and how long to run it."""

    name: str = required(doc="short identifier, used in output file names")
    description: str = spec("", doc="one paragraph for humans")
    seed: int = spec(1, doc="random seed; same seed, same numbers", min=0)
    duration_h: float = spec(24.0, doc="simulated time after warm-up, hours", gt=0)
    warmup_h: float = spec(1.0, doc="simulated time cut from statistics, hours", min=0)
    replications: int = spec(1, doc="independent runs for confidence intervals", min=1)
    start_hour: float = spec(
        0.0, doc="clock hour at which the warm-up starts (0 = midnight)", min=0, max=24
    )
    kind: str = spec(
        "mail",
        doc="mail: the ISP chain over the default topology; stations: a chain of "
        "queueing stations (role station) only, for textbook validation",
        choices=("mail", "stations"),
    )


@dataclass(frozen=True)
class Scenario:
    """A whole scenario: everything the model and realnet need."""

    scenario: Meta = required(doc="[scenario]")
    population: Population = spec(factory=Population)
    workload: Workload = spec(factory=Workload)
    pop: Pop = spec(factory=Pop)
    internet: Internet = spec(factory=Internet)
    network: Network = spec(factory=Network)
    gateways: dict[str, Tier] = spec(factory=dict, doc="the gateways, by name")
    mailbox_server: Tier = spec(
        factory=lambda: Tier(role=MAILBOX, hosts=(HostSpec(),), next_hop="gateway2")
    )
    retry: Retry = spec(factory=Retry)
    limits: Limits = spec(factory=Limits)
    failures: Failures = spec(factory=Failures)
    slo: Slo = spec(factory=Slo)
    deployment: Deployment = spec(factory=Deployment)
    realnet: Realnet = spec(factory=Realnet)
    source: str = field(default="", metadata={"internal": True})

    # -- derived views (no state of their own)

    @cached_property
    def tiers(self) -> dict[str, Tier]:
        """Every tier by name: the gateways and ``mailbox`` (built once: the model asks per hop)."""
        return {**self.gateways, MAILBOX: self.mailbox_server}

    @property
    def mx(self) -> str:
        """The tier where inbound mail arrives: the first inbound_auth gateway (our domain's
        MX), or in a ``stations`` scenario the first station."""
        entry = "station" if self.scenario.kind == "stations" else "inbound_auth"
        return next(name for name, t in self.gateways.items() if t.role == entry)

    @property
    def host_ids(self) -> list[str]:
        return [f"{name}.{i}" for name, tier in self.tiers.items() for i in range(len(tier.hosts))]

    def path(self, start: str) -> list[str]:
        """Tiers from ``start`` following next_hop until the mailbox or the Internet."""
        out, name = [], start
        while name != INTERNET and name not in out:
            out.append(name)
            if name == MAILBOX and start != MAILBOX:
                break
            name = self.tiers[name].next_hop
        return out

    @property
    def inbound_path(self) -> list[str]:
        return self.path(self.mx)

    @property
    def outbound_path(self) -> list[str]:
        return self.path(MAILBOX)

    def daily_messages(self, flow: str) -> float:
        """Messages per day offered for a flow (before SPF rejection)."""
        w, n = self.workload, self.population.mailboxes
        if flow == "inbound":
            if w.inbound_per_s > 0:
                return w.inbound_per_s * 86_400.0
            return w.inbound_per_mailbox_day * n
        if flow == "outbound":
            return w.outbound_per_mailbox_day * n * (1 - w.internal_share)
        if flow == "internal":
            return w.outbound_per_mailbox_day * n * w.internal_share
        raise ValueError(flow)
