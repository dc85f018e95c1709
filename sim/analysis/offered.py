"""Offered load, worked out on paper: messages/s each tier receives, hour by hour.

No simulation here: mean rates from the workload, the diurnal shapes, the
surges and the shares that each tier removes (SPF rejects at the MX, viruses
at the antivirus gateways). ``mailgate check`` prints it, and it gives a
first estimate of each host's CPU utilisation from the stage costs, so a
planner sees before any run where the load goes.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailgate.sim.scenario import INTERNET, MAILBOX, Scenario, Tier

SECONDS_PER_DAY = 86_400.0

# stages each kind of work runs at the mailbox server (the rest run every stage)
_MAILBOX_DELIVERY = ("smtp_receive", "maildir", "pop_retrieve", "housekeeping")
_MAILBOX_SUBMISSION = ("submission", "spool", "deliver", "housekeeping")


@dataclass(frozen=True)
class TierLoad:
    """What one tier receives, as 24 hourly rates in messages/s."""

    name: str
    hosts: int
    hourly: tuple[float, ...]
    cpu_s_per_message: float  # mean CPU demand per message received
    extra_cpu_s_per_s: tuple[float, ...]  # CPU not tied to received messages (POP)

    @property
    def mean(self) -> float:
        return sum(self.hourly) / 24

    @property
    def peak(self) -> float:
        return max(self.hourly)

    def peak_disk_utilisation(self, fsync_s: float) -> float:
        """Estimated disk utilisation of one host in the busiest hour: one fsync per message."""
        return self.peak * fsync_s / self.hosts

    def peak_cpu_utilisation(self, cores: int) -> float:
        """Estimated CPU utilisation of one host in the busiest hour (load shared evenly)."""
        busiest = max(
            r * self.cpu_s_per_message + x
            for r, x in zip(self.hourly, self.extra_cpu_s_per_s, strict=True)
        )
        return busiest / (self.hosts * cores)


def hourly_rate(s: Scenario, flow: str) -> list[float]:
    """Messages/s offered for a flow in each clock hour (surges at their clock hours)."""
    profile = s.workload.diurnal.inbound if flow == "inbound" else s.workload.diurnal.outbound
    base = s.daily_messages(flow) / SECONDS_PER_DAY
    rates = [base * profile.factor(h) for h in range(24)]
    run_start = s.scenario.start_hour
    for surge in s.workload.surges:
        if surge.flow not in (flow, "all") and not (
            surge.flow == "outbound" and flow == "internal"
        ):
            continue
        share = s.workload.spam_share if (surge.spam_only and flow == "inbound") else 1.0
        first = int(run_start + surge.start_h)
        for h in range(first, first + max(1, round(surge.duration_h))):
            rates[h % 24] *= 1 + share * (surge.factor - 1)
    return rates


def mean_size_kb(s: Scenario, flow: str) -> float:
    sizes = s.workload.size
    if flow == "inbound":
        spam = s.workload.spam_share
        return spam * sizes.spam.mean + (1 - spam) * sizes.legit.mean
    return sizes.legit.mean


def _cpu(tier: Tier, size_kb: float, stages: tuple[str, ...] | None = None) -> float:
    return sum(
        cost.mean_cpu(size_kb)
        for name, cost in tier.stages.items()
        if stages is None or name in stages
    )


def pop_sessions_per_s(s: Scenario) -> float:
    pollers = s.population.mailboxes * s.pop.active_share
    return pollers / s.pop.interval_s.mean if s.pop.interval_s.mean else 0.0


def tier_loads(s: Scenario) -> dict[str, TierLoad]:
    """Hourly offered load and mean CPU demand for every tier."""
    w = s.workload
    arrivals: dict[str, list[float]] = {name: [0.0] * 24 for name in s.tiers}
    cpu_weighted: dict[str, list[float]] = {name: [0.0] * 24 for name in s.tiers}

    def add(tier: str, rates: list[float], cpu_per_msg: float) -> None:
        for h in range(24):
            arrivals[tier][h] += rates[h]
            cpu_weighted[tier][h] += rates[h] * cpu_per_msg

    def walk(start: str, rates: list[float], flow: str) -> list[float]:
        """Follow next_hop from ``start``; returns the rates leaving the last tier."""
        size = mean_size_kb(s, flow)
        for name in s.path(start):
            tier = s.tiers[name]
            if name == MAILBOX:
                delivery = flow != "outbound" and start != MAILBOX
                stages = _MAILBOX_DELIVERY if delivery else _MAILBOX_SUBMISSION
                add(name, rates, _cpu(tier, size, stages))
                if delivery:
                    return rates
            else:
                add(name, rates, _cpu(tier, size))
            if tier.role == "inbound_auth" and flow == "inbound":
                kept = (1 - w.spam_share * w.spam_spf_fail_share) * (1 - w.unknown_recipient_share)
                rates = [r * kept for r in rates]
            if tier.role in ("inbound_av", "outbound_av"):
                rates = [r * (1 - w.virus_share) for r in rates]
            if tier.next_hop == INTERNET and tier.fallback and flow == "outbound":
                deferred = [r * s.internet.temp_fail_prob for r in rates]
                add(tier.fallback, deferred, _cpu(s.tiers[tier.fallback], size))
        return rates

    walk(s.mx, hourly_rate(s, "inbound"), "inbound")
    walk(MAILBOX, hourly_rate(s, "outbound"), "outbound")
    internal = walk(MAILBOX, hourly_rate(s, "internal"), "internal")
    walk(s.mx, internal, "internal")

    pop_cpu = pop_sessions_per_s(s) * _cpu(s.mailbox_server, 0.0, ("pop_session",))
    loads = {}
    for name, tier in s.tiers.items():
        total = sum(arrivals[name])
        per_msg = sum(cpu_weighted[name]) / total if total else 0.0
        extra = [pop_cpu] * 24 if name == MAILBOX else [0.0] * 24
        loads[name] = TierLoad(name, len(tier.hosts), tuple(arrivals[name]), per_msg, tuple(extra))
    return loads
