"""The analytic solver's traffic: which visits each tier receives in one clock hour.

Mail enters as five classes (inbound ham, inbound spam that passes SPF, inbound spam
that fails it, outbound, internal; a sixth, inbound to unknown recipients refused at
RCPT, when the scenario has a share of them), each a Poisson stream at the hour's rate
(``sim.analysis.offered.hourly_rate``: the diurnal shape and surges). ``visits`` follows
each class along its path, as the model routes it, and says at every tier which stages
the visit runs: the receive plan up to a verdict (SPF rejects spam that fails it; the
first antivirus stage quarantines viruses), the delivery plan, the hand-on to the next
tier or the Internet (with the fallback MX or deferral when an attempt fails). The stage
tuples come from the model's own ``Plans``, so a stage that costs nothing is absent here
as it is there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from mailgate.sim.analysis.offered import hourly_rate
from mailgate.sim.model.hosts import Stage
from mailgate.sim.model.plans import Plans
from mailgate.sim.model.sampling import Streams
from mailgate.sim.scenario import INTERNET, MAILBOX, Scenario
from mailgate.sim.scenario.distributions import Constant, Distribution

#: the class of inbound mail to users we do not have (``workload.unknown_recipient_share``)
UNKNOWN = "inbound to unknown recipients"


@dataclass(eq=False)
class Visit:
    """One kind of visit at a tier: its rate (messages/s to the whole tier) and stages."""

    tier: str
    flow: str
    rate: float
    size: Distribution
    recv: tuple[Stage, ...]  # the receive stages it runs (to its verdict)
    deliver: tuple[Stage, ...] = ()  # the delivery plan, when it is handed on
    ends: str = ""  # "rejected", "quarantined", "filed": its visit ends at the 250 / verdict
    remote: bool = False  # handed to the Internet
    p_fail: float = 0.0  # an Internet attempt fails (then the fallback, or deferral)
    retries: float = 0.0  # expected deferred re-attempts (the delivery plan again)
    next: Visit | None = None  # the visit it is handed on to
    fallback: Visit | None = None  # the fallback MX visit after a failed attempt
    first: bool = False  # the class's first hop (sent_to_accepted ends at its 250)
    classes: list[str] = field(default_factory=list)


def plans_of(s: Scenario) -> Plans:
    """The model's plans of stages (samplers bound to a throw-away seed; only the stage
    structure and costs are read)."""
    return Plans(s, Streams(0))


def classes(s: Scenario, hour: int) -> list[tuple[str, str, float, Distribution, bool]]:
    """(name, flow, messages/s, size, fails SPF) of each class of new mail in ``hour``."""
    w = s.workload
    inbound = hourly_rate(s, "inbound")[hour]
    # offered.hourly_rate scales all inbound mail by a spam-only surge's average effect;
    # the classes need the spam part alone: the surge multiplies spam, not ham
    spam_factor = math.prod(
        g.factor for g in w.surges if g.flow in ("inbound", "all") and _covers(s, g, hour)
    )
    ham_factor = math.prod(
        g.factor
        for g in w.surges
        if g.flow in ("inbound", "all") and not g.spam_only and _covers(s, g, hour)
    )
    base = s.daily_messages("inbound") / 86_400.0 * w.diurnal.inbound.factor(hour)
    spam = base * w.spam_share * spam_factor
    inbound = base * (1 - w.spam_share) * ham_factor + spam
    known = 1 - w.unknown_recipient_share  # the rest is refused at the MX at RCPT
    rows = [
        ("inbound ham", "inbound", (inbound - spam) * known, w.size.legit, False),
        ("inbound spam", "inbound", spam * (1 - w.spam_spf_fail_share) * known, w.size.spam, False),
        (
            "inbound spam failing SPF",
            "inbound",
            spam * w.spam_spf_fail_share * known,
            w.size.spam,
            True,
        ),
        ("outbound", "outbound", hourly_rate(s, "outbound")[hour], w.size.legit, False),
        ("internal", "internal", hourly_rate(s, "internal")[hour], w.size.legit, False),
    ]
    if w.unknown_recipient_share > 0:
        rate = inbound * w.unknown_recipient_share
        rows.append((UNKNOWN, "inbound", rate, Constant(0.0), False))  # no DATA: no bytes
    return rows


def _covers(s: Scenario, surge: Any, hour: int) -> bool:
    """Whether a surge is on in clock ``hour`` (the clock hours offered.hourly_rate uses)."""
    first = int(s.scenario.start_hour + surge.start_h)
    return any(h % 24 == hour for h in range(first, first + max(1, round(surge.duration_h))))


def visits(s: Scenario, hour: int, plans: Plans) -> tuple[list[Visit], dict[str, Visit]]:
    """Every visit of the hour, and each class's first visit (its chain follows ``next``)."""
    out: list[Visit] = []
    firsts: dict[str, Visit] = {}
    for name, flow, rate, size, spf_fail in classes(s, hour):
        if rate <= 0:
            continue
        first = _chain(s, plans, name, flow, rate, size, spf_fail, out)
        if first is not None:
            firsts[name] = first
    return out, firsts


def _chain(
    s: Scenario,
    plans: Plans,
    name: str,
    flow: str,
    rate: float,
    size: Distribution,
    spf_fail: bool,
    out: list[Visit],
) -> Visit | None:
    """Follow one class from its first tier; returns its first visit."""
    w = s.workload
    tier = s.mx if flow == "inbound" else MAILBOX
    virus = w.virus_share
    first: Visit | None = None
    prev: Visit | None = None
    for hop in range(2 * len(s.tiers) + 2):
        submitted = tier == MAILBOX and hop == 0 and flow != "inbound"
        recv = plans.submit if submitted else plans.recv[tier]
        names = [st.name for st in recv]
        v = Visit(tier, flow, rate, size, recv, first=hop == 0, classes=[name])
        if name == UNKNOWN:  # refused at RCPT: the dialogue (no per-KB part), nothing after
            v.recv, v.ends = plans.rcpt[tier], "rejected"
            _link(out, prev, v)
            return v
        if spf_fail and "spf" in names:
            v.recv, v.ends = recv[: names.index("spf") + 1], "rejected"
            _link(out, prev, v)
            return first or v
        if "antivirus" in names and virus > 0:
            out.append(
                Visit(
                    tier,
                    flow,
                    rate * virus,
                    size,
                    recv,
                    ends="quarantined",
                    first=hop == 0,
                    classes=[name],
                )
            )
            v.rate = rate = rate * (1 - virus)
            virus = 0.0  # the first antivirus stage took them all
        first = first or v
        if tier == MAILBOX and not submitted:
            v.ends = "filed"
            _link(out, prev, v)
            return first
        v.deliver = plans.deliver[tier]
        _link(out, prev, v)
        nxt = s.tiers[tier].next_hop
        if nxt == INTERNET and flow == "internal":
            nxt = s.mx
        if nxt == INTERNET:
            _remote(s, plans, v, out)
            return first
        prev, tier = v, nxt
    return first


def _link(out: list[Visit], prev: Visit | None, v: Visit) -> None:
    out.append(v)
    if prev is not None:
        prev.next = v


def _remote(s: Scenario, plans: Plans, v: Visit, out: list[Visit]) -> None:
    """The Internet attempt of ``v``: a failure goes to the fallback MX or is deferred."""
    inet = s.internet
    tier = s.tiers[v.tier]
    v.remote = True
    v.p_fail = 1 - inet.retry_success_prob if tier.role == "fallback_mx" else inet.temp_fail_prob
    if v.p_fail <= 0:
        return
    if tier.fallback:
        fb = Visit(
            tier.fallback,
            v.flow,
            v.rate * v.p_fail,
            v.size,
            plans.recv[tier.fallback],
            plans.deliver[tier.fallback],
            classes=list(v.classes),
        )
        out.append(fb)
        v.fallback = fb
        _remote(s, plans, fb, out)
    elif v.p_fail < 1:
        v.retries = v.p_fail / (1 - v.p_fail)  # geometric number of re-attempts


def destinations(s: Scenario, v: Visit) -> dict[str, float]:
    """The limited destinations of a visit's deliveries, with the share of each (as
    ``sim.model.slots.destinations``): the next tier, or the named remote domains (the
    other domains have no destination limit)."""
    if v.ends:
        return {}
    if v.next is not None:
        return {v.next.tier: 1.0}
    if v.remote and v.flow == "outbound":
        return {d.name: d.share for d in s.internet.domains if d.share > 0}
    return {}
