"""The rules of a whole scenario that no single field can state: each tier's role
and stages fit, next hops and fallbacks name real tiers, the inbound and outbound
paths reach the mailbox and the Internet, and failures, remote domains and machines
name things that exist. ``check`` raises ``SchemaError`` naming the key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mailgate.sim.scenario.root import Scenario
from mailgate.sim.scenario.schema import SchemaError, join, suggest
from mailgate.sim.scenario.topology import GATEWAY_ROLES, INTERNET, MAILBOX, ROLE_STAGES, STAGES


def check(s: Scenario) -> None:
    """Cross-field rules the schema cannot express; raises SchemaError."""
    tiers = s.tiers
    stations = s.scenario.kind == "stations"
    for name, tier in tiers.items():
        base = "mailbox_server" if name == MAILBOX else join("gateways", name)
        _check_tier(name, tier, base, tiers, stations)
    if stations:
        _check_stations(s)
    else:
        if not any(t.role == "inbound_auth" for t in s.gateways.values()):
            raise SchemaError("gateways", "no gateway has role inbound_auth: nothing is the MX")
        _check_path(s, s.mx, MAILBOX, "inbound")
        _check_path(s, MAILBOX, INTERNET, "outbound")

    hosts = set(s.host_ids)
    for i, down in enumerate(s.failures.host_down):
        if down.host not in hosts:
            raise SchemaError(
                join(join("failures.host_down", i), "host"),
                f"no host {down.host!r}{suggest(down.host, hosts)}; hosts are "
                f"{', '.join(sorted(hosts))}",
            )
    names = [d.name for d in s.internet.domains]
    for i, outage in enumerate(s.failures.remote_outage):
        if outage.domain not in names:
            raise SchemaError(
                join(join("failures.remote_outage", i), "domain"),
                f"no remote domain {outage.domain!r}{suggest(outage.domain, names)}; "
                f"internet.domains has {', '.join(names) or 'none'}",
            )
    for key in ("share", "inbound_share"):
        total = sum(getattr(d, key) for d in s.internet.domains)
        if total > 1 + 1e-9:
            raise SchemaError(f"internet.domains[*].{key}", f"shares add up to {total:g}, over 1")
    for i, machine in enumerate(s.deployment.machines):
        where = join("deployment.machines", i)
        if not any(s.deployment.machine_of(h) is machine for h in hosts):
            raise SchemaError(
                join(where, "hosts"),
                f"patterns {list(machine.hosts)} place no host here",
            )
        if machine.background_processes and machine.scheduler != "fair":
            raise SchemaError(
                join(where, "background_processes"),
                'needs scheduler = "fair" (a process that always runs gets a fair share)',
            )
        if machine.scheduler == "fair":
            for key, default in (("visits_per_block", 1), ("wakeup_s", 0.0)):
                if getattr(machine, key) != default:
                    raise SchemaError(
                        join(where, key), 'applies to scheduler "fcfs" or "per-core", not "fair"'
                    )
        if machine.background_cores >= machine.cores:
            raise SchemaError(
                join(where, "background_cores"),
                f"{machine.background_cores:g} would take all {machine.cores} cores "
                "(nothing left for the hosts)",
            )


def _check_tier(name: str, tier: Any, base: str, tiers: Mapping[str, Any], stations: bool) -> None:
    if name == MAILBOX and tier.role != MAILBOX:
        raise SchemaError(
            join(base, "role"), f"the mailbox server's role is 'mailbox', not {tier.role!r}"
        )
    roles = ("station",) if stations else GATEWAY_ROLES
    if name != MAILBOX and tier.role not in roles:
        kind = " in a stations scenario" if stations else " (station: only with kind = stations)"
        raise SchemaError(
            join(base, "role"), f"a gateway's role is one of {', '.join(roles)}{kind}"
        )
    allowed = ROLE_STAGES[tier.role]
    for stage in tier.stages:
        if stage not in STAGES:
            raise SchemaError(
                join(join(base, "stages"), stage),
                f"unknown stage{suggest(stage, STAGES)}; stages are {', '.join(STAGES)}",
            )
        if stage not in allowed:
            raise SchemaError(
                join(join(base, "stages"), stage),
                f"role {tier.role} does not run {stage}; it runs {', '.join(allowed)}",
            )
    targets = [*tiers, INTERNET]
    if tier.next_hop not in targets:
        raise SchemaError(
            join(base, "next_hop"),
            f"no tier {tier.next_hop!r}{suggest(tier.next_hop, targets)}; "
            f"expected one of {', '.join(targets)}",
        )
    if tier.fallback and (tier.fallback not in tiers or tier.fallback == name):
        raise SchemaError(
            join(base, "fallback"),
            f"no other tier {tier.fallback!r}{suggest(tier.fallback, tiers)}",
        )


def _check_stations(s: Scenario) -> None:
    """A stations scenario: a chain of stations from the first one to the Internet."""
    if not s.gateways:
        raise SchemaError("gateways", "a stations scenario needs at least one station")
    path = s.path(s.mx)
    if MAILBOX in path or s.tiers[path[-1]].next_hop != INTERNET:
        raise SchemaError(
            "gateways",
            f"the chain {' -> '.join(path)} must end with next_hop = 'internet' "
            "(the mailbox server is not part of a stations scenario)",
        )
    if s.workload.outbound_per_mailbox_day > 0:
        raise SchemaError(
            "workload.outbound_per_mailbox_day", "a stations scenario has inbound only"
        )


def _check_path(s: Scenario, start: str, end: str, flow: str) -> None:
    path = s.path(start)
    last = s.tiers[path[-1]]
    reaches = path[-1] == end if end == MAILBOX else last.next_hop == INTERNET
    if not reaches:
        raise SchemaError(
            "gateways",
            f"the {flow} path {' -> '.join(path)} does not reach {end} (check next_hop)",
        )
