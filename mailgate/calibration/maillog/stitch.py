"""A message's path across Postfix instances, stitched by Message-ID.

Every instance's ``cleanup`` logs the same Message-ID, so entries sharing one are the same
message on different hosts. Within such a group a forwarding delivery links to the next
hop's entry by the queue ID in the next hop's ``250 … queued as ID`` reply (or, when the
reply does not say, to the one entry of another instance that arrived while the delivery
was under way). A sent delivery with no next hop in the log ends a path: in a mailbox
(``local``, ``virtual``, ``lmtp``, …) or at a remote MTA (``smtp``).

Send → final time per recipient comes from Postfix's own delays, not from the log's
clock (``maillog_file`` stamps whole seconds): each forwarding hop adds ``a+b+c`` (its
transmission ``d`` overlaps the next hop's receiving) and the last hop adds its whole ``a+b+c+d``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from mailgate.calibration.maillog.events import MAILBOX_AGENTS, Delivery, QueueEntry

#: lmtp ends a path too: it hands the message to the mailbox store.
FINAL_AGENTS = MAILBOX_AGENTS | {"lmtp"}
#: Slack for the log clock's whole seconds when linking without a queue ID.
CLOCK_SLACK_S = 1.0


@dataclass(slots=True)
class Path:
    """One recipient's way from the first logged hop to its end."""

    hops: list[QueueEntry]  # first ... last
    final: Delivery
    flow: str  # inbound (ended in a mailbox) | outbound (ended at a remote MTA)
    seconds: float  # send -> final, from Postfix's delays
    clock_seconds: float  # the same from the log's timestamps (coarse)
    parts: tuple[float, ...] = ()  # what each hop adds to ``seconds``, first hop first

    @property
    def start_local(self) -> float:
        """The first hop's arrival on its own wall clock."""
        first = self.hops[0]
        return first.local - (first.first_seen - first.arrival)


@dataclass
class Stitched:
    """The paths and what could not be stitched."""

    paths: list[Path] = field(default_factory=list)
    messages: int = 0  # Message-IDs whose first hop's start is in the log
    end_to_end: int = 0  # of those, with every recipient's path at an end
    incomplete: int = 0  # started, but some recipient's path has no end in the log
    refused: int = 0  # recipients bounced or expired on the way (their paths end there)
    no_message_id: int = 0  # entries without a Message-ID line (start outside the log)
    links_by_queue_id: int = 0
    links_by_time: int = 0
    hops: dict[int, int] = field(default_factory=dict)  # hops on a path -> paths

    def summary(self) -> dict[str, object]:
        return {
            "messages": self.messages,
            "end_to_end": self.end_to_end,
            "incomplete": self.incomplete,
            "recipients_refused": self.refused,
            "no_message_id": self.no_message_id,
            "links_by_queue_id": self.links_by_queue_id,
            "links_by_time": self.links_by_time,
            "paths": len(self.paths),
            "hops_per_path": {str(k): v for k, v in sorted(self.hops.items())},
        }


def stitch(entries: Iterable[QueueEntry]) -> Stitched:
    """Group entries by Message-ID and follow each recipient to its end."""
    out = Stitched()
    groups: dict[str, list[QueueEntry]] = defaultdict(list)
    for e in entries:
        if e.source == "notification":
            continue  # a bounce is new mail of ours, not a hop of the original
        if e.message_id:
            groups[e.message_id].append(e)
        else:
            out.no_message_id += 1
    for group in groups.values():
        _stitch_group(sorted(group, key=lambda e: e.arrival), out)
    return out


def _stitch_group(group: list[QueueEntry], out: Stitched) -> None:
    parent: dict[int, tuple[QueueEntry, Delivery]] = {}
    ends: list[tuple[QueueEntry, Delivery]] = []
    refused = 0  # recipients whose path ended in a bounce or expiry
    for entry in group:
        for d in entry.deliveries:
            if d.status in ("bounced", "expired"):
                refused += 1
            if d.status != "sent":
                continue
            child = _next_hop(entry, d, group, parent, out)
            if child is None:
                ends.append((entry, d))
            else:
                parent.setdefault(id(child), (entry, d))
    roots = [e for e in group if id(e) not in parent and e.source in ("smtpd", "pickup")]
    if not roots:
        return
    out.messages += len(roots)  # one Message-ID sent twice is two messages
    complete = True
    for entry, final in ends:
        hops, parts = [entry], [sum(final.delays)]  # finer than delay= (2 digits)
        while id(hops[0]) in parent:
            up, via = parent[id(hops[0])]
            hops.insert(0, up)
            parts.insert(0, via.delays[0] + via.delays[1] + via.delays[2])
        seconds = sum(parts)
        if hops[0] not in roots:
            complete = False
            continue
        flow = "inbound" if final.agent in FINAL_AGENTS else "outbound"
        clock = final.time - hops[0].arrival
        out.paths.append(Path(hops, final, flow, seconds, clock, tuple(parts)))
        out.hops[len(hops)] = out.hops.get(len(hops), 0) + 1
    wanted = sum(max(e.nrcpt or 0, 1) for e in roots)
    out.refused += refused
    complete = complete and len(ends) + refused >= wanted
    out.end_to_end += len(roots) if complete else 0
    out.incomplete += 0 if complete else len(roots)


def _next_hop(
    entry: QueueEntry,
    d: Delivery,
    group: list[QueueEntry],
    parent: dict[int, tuple[QueueEntry, Delivery]],
    out: Stitched,
) -> QueueEntry | None:
    if d.agent in FINAL_AGENTS:
        return None
    others = [e for e in group if e.instance != entry.instance]
    if d.queued_as:
        for e in others:
            # several recipients in one transaction name the same next-hop queue ID
            if e.queue_id == d.queued_as and parent.get(id(e), (entry,))[0] is entry:
                out.links_by_queue_id += id(e) not in parent
                return e
        return None  # the next hop named itself and is not in the log: a remote MTA
    others = [e for e in others if id(e) not in parent]
    low, high = d.arrival - CLOCK_SLACK_S, d.time + CLOCK_SLACK_S
    near = [e for e in others if low <= e.first_seen <= high]
    if len(near) == 1:
        out.links_by_time += 1
        return near[0]
    return None
