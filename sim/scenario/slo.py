"""``[slo]``: the service-level objectives a run is judged by (latency quantiles per
flow, the mail-to-yourself bound, the error share)."""

from __future__ import annotations

from dataclasses import dataclass

from mailgate.sim.scenario.fields import required, spec
from mailgate.sim.scenario.topology import FLOWS


@dataclass(frozen=True)
class Objective:
    """[[slo.objectives]]: a latency quantile that must stay under a bound."""

    name: str = required(doc="label for reports")
    flow: str = required(doc="inbound, outbound or internal", choices=FLOWS)
    span: str = required(
        doc="which latency",
        choices=("accepted_to_mailbox", "sent_to_retrieved", "sent_to_remote"),
    )
    max_s: float = required(doc="bound, s", gt=0)
    quantile: float = spec(0.95, doc="e.g. 0.95", gt=0, max=1)


@dataclass(frozen=True)
class Slo:
    """[slo]: service-level objectives."""

    objectives: tuple[Objective, ...] = spec(
        (
            # SPECmail2001: delivery within 60 s for > 95 % of messages.
            Objective("inbound delivery", "inbound", "accepted_to_mailbox", 60.0),
            Objective("internal delivery", "internal", "accepted_to_mailbox", 60.0),
            Objective("outbound handoff", "outbound", "sent_to_remote", 60.0),
        )
    )
    # The source: a mail to yourself shows up "about 1 second" after sending.
    selftest_max_s: float = spec(1.0, doc="mail-to-yourself bound at idle, s", gt=0)
    max_error_share: float = spec(0.01, doc="SPECmail2001: errors under 1 %", min=0, max=1)
