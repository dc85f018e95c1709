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

A message may be accepted by one host more than once — internal mail passes
the mailbox server twice (submitted, then filed), a retry after a crash
delivers again — so acceptances and ends are *counted* per (message, host),
not merely seen: a host that files mail locally (it wrote a ``mailbox``
record, or is a mailbox server) accepted each upstream delivery on top of
what it spooled itself; any other host spools what its upstream delivers,
so the two kinds of evidence are the same acceptance seen twice.

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


def _journal(state_dir: Path) -> Counter[tuple[str, str]]:
    """(trace id, host) -> how often the host journalled the message as spooled."""
    found: Counter[tuple[str, str]] = Counter()
    for path in sorted(journal_dir(state_dir).glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                found[(json.loads(line)["trace_id"], path.stem)] += 1
            except (ValueError, KeyError):
                continue  # a line cut short by a killed host
    return found


def _spools(state_dir: Path) -> dict[tuple[str, str], list[str]]:
    """(trace id, host) -> spool files of the message still queued there."""
    found: dict[tuple[str, str], list[str]] = {}
    for path in sorted((state_dir / "spool").glob("*/queue/*.msg")):
        host = path.parent.parent.name.split("-w", 1)[0]  # a worker's spool is its host's
        try:
            with path.open("rb") as f:
                meta = json.loads(f.readline())
        except (OSError, ValueError):
            continue  # removed while we looked, or being written
        found.setdefault((meta.get("trace_id", ""), host), []).append(str(path))
    return found


def _acceptances(
    hops: list[HopRecord], journal: Counter[tuple[str, str]]
) -> Counter[tuple[str, str]]:
    """(trace id, host) -> how many times the host accepted the message."""
    upstream: Counter[tuple[str, str]] = Counter()  # 250s our own hosts got from it
    at_once: Counter[tuple[str, str]] = Counter()  # accepted and ended in one step
    filers = {h.host for h in hops if h.outcome == "mailbox"}
    for hop in hops:
        if hop.outcome in ACCEPTED_AND_ENDED:
            at_once[(hop.msg_id, hop.host)] += 1
        if hop.outcome in ENDS and hop.next_hop and hop.host != hop.next_hop:
            upstream[(hop.msg_id, hop.next_hop)] += 1
    accepted: Counter[tuple[str, str]] = Counter()
    for key in set(journal) | set(upstream) | set(at_once):
        host = key[1]
        if host in filers or host.startswith("mailbox."):
            # upstream deliveries are filed (no journal line); the journal holds what
            # the host spooled itself (submissions, bounces it made)
            accepted[key] = journal[key] + max(upstream[key], at_once[key])
        else:
            accepted[key] = max(journal[key], upstream[key], at_once[key])
    return accepted


def audit(state_dir: Path | str) -> AuditReport:
    """Reconcile a run's journals, traces and spools: every acceptance ended, or lost."""
    state_dir = Path(state_dir)
    hosts = {p.stem for p in (state_dir / "traces").glob("*.jsonl")}
    hosts |= {p.stem for p in journal_dir(state_dir).glob("*.jsonl")}
    accepted = _acceptances(read_traces(state_dir), _journal(state_dir))
    spooled = _spools(state_dir)
    ended: dict[tuple[str, str], Counter[str]] = {}
    for hop in read_traces(state_dir):
        if hop.outcome in ENDS:
            ended.setdefault((hop.msg_id, hop.host), Counter())[hop.outcome] += 1
    report = AuditReport()
    for key in sorted(accepted):
        if key[1] not in hosts:
            continue  # a name that is not one of our hosts (a relay without an address map)
        report.accepted += accepted[key]
        ends = ended.get(key, Counter())
        report.ends.update(ends)
        files = spooled.get(key, [])
        report.ends["spooled"] += len(files)
        report.in_spool += [(*key, f) for f in files]
        missing = accepted[key] - ends.total() - len(files)
        report.lost += [key] * max(missing, 0)
    if not report.ends["spooled"]:
        del report.ends["spooled"]
    return report
