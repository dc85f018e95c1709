"""``[failures]``: what goes wrong during a run, and when (hosts or MTAs down, remote
domains unreachable, slow DNS)."""

from __future__ import annotations

from dataclasses import dataclass

from mailgate.sim.scenario.fields import required, spec


@dataclass(frozen=True)
class HostDown:
    """[[failures.host_down]]: a host that dies and (maybe) comes back."""

    host: str = required(doc="host id, tier.index, e.g. gateway1.0")
    start_h: float = required(doc="hours after the run starts", min=0)
    duration_h: float = spec(1e9, doc="hours until it is back", gt=0)
    refuses: bool = spec(
        False,
        doc="the machine is up but its MTA is not: connections are refused at once "
        "(one round trip) instead of timing out after connect_timeout_s (a dead machine)",
    )


@dataclass(frozen=True)
class RemoteOutage:
    """[[failures.remote_outage]]: a remote domain unreachable for a while."""

    domain: str = required(doc="a name from internet.domains")
    start_h: float = required(doc="hours after the run starts", min=0)
    duration_h: float = required(doc="hours", gt=0)


@dataclass(frozen=True)
class DnsSlow:
    """[[failures.dns_slow]]: DNS answers slow for a while."""

    start_h: float = required(doc="hours after the run starts", min=0)
    duration_h: float = required(doc="hours", gt=0)
    extra_s: float = required(doc="added to every lookup, s", min=0)


@dataclass(frozen=True)
class Failures:
    """[failures]: what goes wrong, and when."""

    host_down: tuple[HostDown, ...] = spec(())
    remote_outage: tuple[RemoteOutage, ...] = spec(())
    dns_slow: tuple[DnsSlow, ...] = spec(())
