"""Account for every message a run's hosts accepted (issue #16, point 9).

A host *accepted* a message when it answered 250 for it (or made it: a
bounce). The evidence, from a state dir: the host's journal of what it
spooled (``journal/<host>.jsonl``, ``Tracer.queued``), a HopRecord of its
own that ended the message at once (filed in a mailbox, quarantined), and
the upstream host's HopRecord naming it as ``next_hop`` (its 250 ended that
host's attempt). Each acceptance must *end*: a HopRecord of that host with
the message relayed on (the next host is then checked in turn), delivered
to a mailbox, handed to a remote MX, quarantined or bounced — or the message
is still in the host's spool. Anything else is **lost**.

A live testbed moves while it is read, so the evidence is read first, the
spools next and the ends last: a message that left a spool between the two
reads has had its HopRecord written before its spool file went
(``QueueManager``), so it is found either way.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mailgate.realnet.relay.tracing import journal_dir, read_traces
from mailgate.sim.scenario.records import HopRecord

#: HopRecord outcomes that end a message at a host (``relayed``: the next host took it)
ENDS = frozenset({"relayed", "mailbox", "remote", "quarantined", "bounced"})
#: outcomes that accept and end in one step (no journal line: nothing was spooled)
ACCEPTED_AND_ENDED = frozenset({"mailbox", "quarantined"})


@dataclass
class AuditReport:
    """What became of every (message, host) acceptance in a state dir."""

    accepted: int = 0
    #: how the acceptances ended, by outcome ("spooled" = still in a spool)
    ends: Counter[str] = field(default_factory=Counter)
    #: (trace id, host, spool file) of messages still queued
    in_spool: list[tuple[str, str, str]] = field(default_factory=list)
    #: (trace id, host) of messages accepted and then found nowhere
    lost: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.lost

    def lines(self) -> list[str]:
        """The report as text lines, lost messages named one per line."""
        ends = ", ".join(f"{k} {v}" for k, v in sorted(self.ends.items()))
        out = [f"accepted {self.accepted} (message, host) pairs: {ends or 'none'}"]
        out += [f"in spool: {t} at {h} ({f})" for t, h, f in self.in_spool]
        out += [f"LOST: {t} accepted at {h}, not delivered, not spooled" for t, h in self.lost]
        out.append(f"{len(self.lost)} lost")
        return out


def _journal(state_dir: Path) -> set[tuple[str, str]]:
    """(trace id, host) of every message a host journalled as spooled."""
    found: set[tuple[str, str]] = set()
    for path in sorted(journal_dir(state_dir).glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                found.add((json.loads(line)["trace_id"], path.stem))
            except (ValueError, KeyError):
                continue  # a line cut short by a killed host
    return found


def _spools(state_dir: Path) -> dict[tuple[str, str], str]:
    """(trace id, host) -> spool file of every message still queued."""
    found: dict[tuple[str, str], str] = {}
    for path in sorted((state_dir / "spool").glob("*/queue/*.msg")):
        host = path.parent.parent.name.split("-w", 1)[0]  # a worker's spool is its host's
        try:
            with path.open("rb") as f:
                meta = json.loads(f.readline())
        except (OSError, ValueError):
            continue  # removed while we looked, or being written
        found[(meta.get("trace_id", ""), host)] = str(path)
    return found


def _evidence(hops: list[HopRecord], journal: set[tuple[str, str]]) -> set[tuple[str, str]]:
    accepted = set(journal)
    for hop in hops:
        if hop.outcome in ACCEPTED_AND_ENDED:
            accepted.add((hop.msg_id, hop.host))
        if hop.outcome in ENDS and hop.next_hop and hop.host != hop.next_hop:
            accepted.add((hop.msg_id, hop.next_hop))  # the next host's 250
    return accepted


def audit(state_dir: Path | str) -> AuditReport:
    """Reconcile a run's journals, traces and spools: every acceptance ended, or lost."""
    state_dir = Path(state_dir)
    hosts = {p.stem for p in (state_dir / "traces").glob("*.jsonl")}
    hosts |= {p.stem for p in journal_dir(state_dir).glob("*.jsonl")}
    accepted = _evidence(read_traces(state_dir), _journal(state_dir))
    spooled = _spools(state_dir)
    ended: dict[tuple[str, str], str] = {}
    for hop in read_traces(state_dir):
        if hop.outcome in ENDS:
            ended.setdefault((hop.msg_id, hop.host), hop.outcome)
    report = AuditReport()
    for key in sorted(accepted):
        if key[1] not in hosts:
            continue  # a name that is not one of our hosts (a relay without an address map)
        report.accepted += 1
        if key in ended:
            report.ends[ended[key]] += 1
        elif key in spooled:
            report.ends["spooled"] += 1
            report.in_spool.append((*key, spooled[key]))
        else:
            report.lost.append(key)
    return report
