"""Plans of stages per tier, with their samplers bound: what a visit costs, from the scenario.

Nothing here runs anything: ``Plans`` turns each tier's ``StageCost`` table
into the tuples of ``Stage`` a host runs (receive, submission, delivery) and
the per-message housekeeping CPU; ``cost_sampler`` gives one stage's CPU by
message size (POP uses it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from mailgate.sim.model.hosts import Stage, with_blocks
from mailgate.sim.model.sampling import Streams
from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.topology import MAILBOX, ROLE_STAGES, StageCost

#: Stages run by the sending side of a hop (after the queue), not before the 250.
DELIVERY_STAGES = ("mx_lookup", "deliver")
#: Stages whose result may end a visit (reject, quarantine): a CPU block stops there.
DECISION_STAGES = ("spf", "antivirus")
#: Stages that end with a durable write.
FSYNC_STAGES = ("spool", "maildir")
#: CPU a host spends after a message's visit ended (handed on, filed, refused):
#: it takes a core but nobody waits for it (``Host.housekeep``).
OFF_PATH_STAGES = ("housekeeping",)


def cost_sampler(
    scenario: Scenario, streams: Streams, tier: str, stage: str
) -> Callable[[float], float]:
    """CPU seconds of ``stage`` at ``tier`` for a message of a given size."""
    cost = scenario.tiers[tier].cost(stage) or StageCost()
    fixed = streams.sampler(f"{tier}.{stage}.cpu", cost.cpu_s)
    per_kb = cost.cpu_per_kb_s
    return lambda size_kb: fixed() + per_kb * size_kb


class Plans:
    """Each tier's receive and delivery plans, the submission plan, housekeeping costs."""

    def __init__(self, scenario: Scenario, streams: Streams) -> None:
        self.s = scenario
        self.streams = streams
        self.recv: dict[str, tuple[Stage, ...]] = {}
        #: per tier: a session refused at RCPT (an unknown recipient): the SMTP dialogue's
        #: fixed CPU, no DATA (no per-KB part) and no later stage
        self.rcpt: dict[str, tuple[Stage, ...]] = {}
        self.submit: tuple[Stage, ...] = ()
        self.deliver: dict[str, tuple[Stage, ...]] = {}
        #: per tier: CPU seconds of one message's housekeeping by size (None: costs nothing)
        self.chore: dict[str, Callable[[float], float] | None] = {}
        for name, tier in scenario.tiers.items():
            role = ROLE_STAGES[tier.role]
            if name == MAILBOX:
                self.submit = self._plan(name, ["tls", "smtp_receive", "submission", "spool"])
                self.recv[name] = self._plan(name, ["tls", "smtp_receive", "maildir"])
            else:
                recv = [st for st in role if st not in DELIVERY_STAGES + OFF_PATH_STAGES]
                self.recv[name] = self._plan(name, recv)
            self.deliver[name] = self._plan(name, [st for st in DELIVERY_STAGES if st in role])
            if scenario.workload.unknown_recipient_share > 0:
                # the receive plan's own dialogue stage (its draws), without the per-KB part
                dialogue = [st for st in self.recv[name] if st.name == "smtp_receive"]
                self.rcpt[name] = with_blocks([replace(st, cpu_per_kb=0.0) for st in dialogue])
            self.chore[name] = self._chore(name)

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
            decides=name in DECISION_STAGES,
        )

    def _plan(self, tier: str, names: list[str]) -> tuple[Stage, ...]:
        stages = (self._stage(tier, n) for n in names)
        return with_blocks([st for st in stages if st is not None])

    def _chore(self, tier: str) -> Callable[[float], float] | None:
        """CPU seconds of a message's ``housekeeping`` at ``tier``; None when it costs nothing
        (then the hot path skips it entirely)."""
        cost = self.s.tiers[tier].cost("housekeeping")
        if cost is None or (cost.cpu_s.mean <= 0 and cost.cpu_per_kb_s <= 0):
            return None
        return cost_sampler(self.s, self.streams, tier, "housekeeping")
