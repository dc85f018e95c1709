"""Latency "out of the shadow" of big messages.

A few multi-MB messages (the Pareto tail of the sizes) decide the p95 of a short
window: while one crosses the chain (parsed on the event loop, signed in a thread
holding the GIL) every small message behind it waits. How many of them a 10–30 s
window holds is luck, so the p95 of send → in mailbox moves by a factor of two
between seeds. The small inbound messages whose time in the chain overlapped no
big message's are a steadier sample of what the chain does to ordinary mail; both
sides of the calibration report their quantiles beside the plain ones.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence

from mailgate.sim.scenario.records import MessageRecord

#: A message over this size (KB) casts a shadow.
BIG_KB = 200.0
#: The span name the out-of-shadow samples are reported under (latency = in_mailbox − sent).
SPAN = "out_of_shadow"
#: Only this flow: the path the issue's targets judge first.
FLOW = "inbound"


def _end(r: MessageRecord) -> float:
    """When a message stopped occupying the chain (as far as is known)."""
    for t in (r.in_mailbox, r.remote, r.accepted):
        if t is not None:
            return t
    return r.sent


def shadows(records: Iterable[MessageRecord], big_kb: float = BIG_KB) -> list[tuple[float, float]]:
    """The time intervals during which a big message was in the chain, merged."""
    spans = sorted((r.sent, _end(r)) for r in records if r.size_kb > big_kb)
    merged: list[tuple[float, float]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def overlaps(start: float, end: float, merged: Sequence[tuple[float, float]]) -> bool:
    """Whether [start, end] meets any of the sorted, disjoint ``merged`` intervals."""
    i = bisect.bisect_right([s for s, _ in merged], end)  # intervals starting by ``end``
    return i > 0 and merged[i - 1][1] >= start


def out_of_shadow(
    records: Sequence[MessageRecord], big_kb: float = BIG_KB, flow: str = FLOW
) -> list[float]:
    """send → in mailbox (s) of the small ``flow`` messages that overlapped no big one."""
    merged = shadows(records, big_kb)
    return [
        r.in_mailbox - r.sent
        for r in records
        if r.flow == flow
        and r.size_kb <= big_kb
        and r.in_mailbox is not None
        and not overlaps(r.sent, r.in_mailbox, merged)
    ]


def with_out_of_shadow(
    samples: dict[str, dict[str, list[float]]], records: Sequence[MessageRecord]
) -> dict[str, dict[str, list[float]]]:
    """``samples`` (span → flow → latencies) with the out-of-shadow span added."""
    values = out_of_shadow(records)
    samples[SPAN] = {FLOW: values} if values else {}
    return samples
