"""A load level as both worlds report it (``Point``), and the statistics that
make one from records: latency samples and quantiles per span and flow, the
mean time per stage and per part of a hop.

Pure functions on MessageRecords and HopRecords: the realnet side
(``measure``) and the model side (``modelled``) build their points with them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mailgate.calibration.fit import tier_of
from mailgate.realnet.load.loadgen import quantile_row
from mailgate.sim.scenario.records import HopRecord, MessageRecord

#: The spans compared, as MessageRecord fields (latency = field - sent).
SPANS = ("in_mailbox", "retrieved")
QUANTILES = (0.5, 0.95, 0.99)


#: Hosts of the testbed that are not in the model (they still use the machine's cores).
OUTSIDE_MODEL = ("dns", "remote")


@dataclass
class Point:
    """One load level, measured or modelled."""

    rate: float  # offered, messages/s
    throughput: float  # delivered (in mailbox or remote), messages/s
    latency: dict[str, dict[str, dict[str, float]]]  # span -> flow -> {n, p50, p95, p99}
    utilisation: dict[str, float]  # host -> CPU share of one core
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # span -> flow -> s
    stage_means: dict[str, dict[str, float]] = field(default_factory=dict)  # tier -> stage -> s
    residence: dict[str, dict[str, float]] = field(default_factory=dict)  # tier -> part -> s
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "throughput": self.throughput,
            "latency": self.latency,
            "utilisation": self.utilisation,
            "stage_means": self.stage_means,
            "residence": self.residence,
            **self.extra,
        }


def latency_samples(records: Iterable[MessageRecord]) -> dict[str, dict[str, list[float]]]:
    """span -> flow -> latencies (s) from the scheduled send time."""
    out: dict[str, dict[str, list[float]]] = {s: defaultdict(list) for s in SPANS}
    for r in records:
        for span in SPANS:
            end = getattr(r, span)
            if end is not None:
                out[span][r.flow].append(end - r.sent)
    return {s: dict(v) for s, v in out.items()}


def quantiles(samples: Mapping[str, Mapping[str, Sequence[float]]]) -> dict[str, Any]:
    """span -> flow -> {n, p50, p95, p99}."""
    return {
        span: {f: quantile_row(v, QUANTILES) for f, v in sorted(flows.items()) if len(v)}
        for span, flows in samples.items()
    }


#: Stages on the sending side of a hop, after the 250 (as in sim.model).
DELIVERY_STAGES = ("mx_lookup", "deliver")


def stage_profile(
    hops: Iterable[HopRecord],
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Mean elapsed time per tier and stage, and per tier the mean time to the
    250 (``receive``: arrived → accepted) and after it (``handoff``: from this
    hop's 250 to the next hop's, i.e. the wait for a delivery slot, the
    delivery and the next hop's whole receive; at the last hop, to ``left``).

    The hand-off ends at the next hop's 250 rather than at this hop's
    ``left``: realnet stamps ``left`` after removing the spool file, which
    does not delay the message.
    """
    stages: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    parts: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    path: dict[str, list[HopRecord]] = defaultdict(list)
    for hop in hops:
        if hop.outcome == "retrieved":
            continue  # POP retrievals are not a hop of the message's path
        tier = tier_of(hop.host)
        for name, span in hop.stages.items():
            stages[tier][name].append(span.elapsed)
        if hop.accepted is not None:
            receive = hop.accepted - hop.arrived
            parts[tier]["receive"].append(receive)
            # per hop: a tier's hops do not all run the same stages (mailbox: submission
            # or delivery into a Maildir), so this cannot come from the stage means
            staged = sum(sp.elapsed for n, sp in hop.stages.items() if n not in DELIVERY_STAGES)
            parts[tier]["unattributed"].append(receive - staged)
            path[hop.msg_id].append(hop)
    for visits in path.values():
        visits.sort(key=lambda h: h.arrived)
        for a, b in zip(visits, [*visits[1:], None], strict=True):
            assert a.accepted is not None
            if b is not None and b.accepted is not None:
                parts[tier_of(a.host)]["handoff"].append(b.accepted - a.accepted)
            elif b is None and a.left is not None and a.outcome in ("relayed", "remote"):
                parts[tier_of(a.host)]["handoff"].append(a.left - a.accepted)
    means = {t: {s: float(np.mean(v)) for s, v in st.items()} for t, st in stages.items()}
    return means, {t: {k: float(np.mean(v)) for k, v in p.items()} for t, p in parts.items()}
