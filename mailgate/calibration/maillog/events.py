"""The queue-ID lifecycle: Postfix lines of one instance grouped into ``QueueEntry``s.

A message's life on one Postfix: ``smtpd`` (or ``pickup``) logs ``client=``, ``cleanup``
logs ``message-id=``, ``qmgr`` logs ``from=, size=, nrcpt=``, each delivery agent
(``smtp``/``lmtp``/``local``/``virtual``/…) logs ``to=, relay=, delay=, delays=a/b/c/d,
dsn=, status=`` per recipient and attempt, ``bounce`` logs the notification it queued, and
``qmgr`` logs ``removed``. Lines of many messages interleave; the queue ID (per instance)
keeps them apart. Anything not understood is counted, never raised.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from mailgate.calibration.maillog.lines import HeaderParser, LineError, LogLine
from mailgate.calibration.maillog.privacy import Hasher

_QUEUE_ID = re.compile(r"([0-9A-Za-z]{5,20}): (.*)")
_KV = re.compile(r"([a-z_-]+)=(<[^>]*>|[^,\s]*)")
_STATUS = re.compile(r"\bstatus=([a-z]+)")
_QUEUED_AS = re.compile(r"queued as ([0-9A-Za-z]{5,20})")
_NOTIFICATION = re.compile(r"(?:sender|postmaster) (?:non-delivery|delivery status|delay) "
                           r"notification: ([0-9A-Za-z]{5,20})")  # fmt: skip
#: Programs whose ``to=`` lines are deliveries into a mailbox (the end of a path).
MAILBOX_AGENTS = frozenset({"local", "virtual", "pipe", "maildrop"})
#: Programs that write the per-message lines this module reads.
POSTFIX_PROGRAMS = frozenset(
    {"smtpd", "pickup", "cleanup", "qmgr", "smtp", "lmtp", "local", "virtual", "pipe",
     "bounce", "error", "retry", "discard", "postsuper", "oqmgr", "nqmgr", "sendmail",
     "postdrop", "master", "postfix-script", "anvil", "scache", "tlsmgr", "postscreen",
     "dnsblog", "verify", "trivial-rewrite", "proxymap", "flush", "showq", "postlogd",
     "tlsproxy", "postqueue", "postmulti", "spawn", "policy-spf", "maildrop"}
)  # fmt: skip


@dataclass(slots=True)
class Delivery:
    """One delivery attempt of one recipient (one ``to=`` line)."""

    time: float
    agent: str  # the program: smtp, lmtp, local, virtual, ...
    recipient: str  # hashed unless hashing is off
    relay: str
    delay: float
    delays: tuple[float, float, float, float]  # a/b/c/d
    dsn: str
    status: str  # sent, deferred, bounced, expired, ...
    queued_as: str = ""  # the next hop's queue ID from its 250 reply

    @property
    def arrival(self) -> float:
        """When the message arrived at this instance, from Postfix's own ``delay``."""
        return self.time - self.delay


@dataclass(slots=True)
class QueueEntry:
    """One message on one Postfix instance (one queue ID's life)."""

    instance: str
    queue_id: str
    first_seen: float
    local: float  # the first line's wall-clock time as written (epoch seconds, read as UTC)
    source: str = ""  # smtpd | pickup | notification ("" if its start was not in the log)
    message_id: str = ""
    sender: str = ""
    size: int | None = None
    nrcpt: int | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    removed: float | None = None
    rejected: bool = False

    @property
    def arrival(self) -> float:
        """Arrival time: Postfix's own (from ``delay``) where a delivery says, else the
        first line's time."""
        return min([self.first_seen, *(d.arrival for d in self.deliveries)])


@dataclass
class Collector:
    """Feeds log lines, keeps the queue entries and the counts of what it used or skipped."""

    hasher: Hasher = field(default_factory=Hasher)
    year: int | None = None
    entries: list[QueueEntry] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)  # lines by what became of them
    rejects: Counter[str] = field(default_factory=Counter)  # instance -> NOQUEUE rejects
    _open: dict[tuple[str, str], QueueEntry] = field(default_factory=dict)
    _header: HeaderParser | None = None

    def new_file(self) -> None:
        """Year-less timestamps restart their year guess with each file."""
        self._header = HeaderParser(self.year)

    def feed(self, raw: str) -> None:
        """One line; never raises for what the line contains."""
        self.counts["lines"] += 1
        if self._header is None:
            self.new_file()
        assert self._header is not None
        if not raw.strip():
            self.counts["skipped:empty"] += 1
            return
        try:
            line = self._header.parse(raw)
            kind = self._dispatch(line)
        except LineError as e:
            kind = f"skipped:{e.reason}"
        except (ValueError, KeyError, IndexError, OverflowError):
            kind = "skipped:malformed"
        self.counts[kind] += 1

    def _dispatch(self, line: LogLine) -> str:
        if line.program not in POSTFIX_PROGRAMS:
            return "skipped:unknown_program"
        if line.text.startswith("NOQUEUE: "):
            if line.text.startswith("NOQUEUE: reject:"):
                self.rejects[line.instance] += 1
                return "used:noqueue_reject"
            return "ignored"
        m = _QUEUE_ID.fullmatch(line.text)
        if m is None:
            return "ignored"  # connect, disconnect, warnings, statistics, daemon messages
        qid, rest = m.groups()
        return self._message_line(line, qid, rest)

    def _entry(self, line: LogLine, qid: str, starts: bool = False) -> QueueEntry:
        key = (line.instance, qid)
        entry = self._open.get(key)
        # a queue ID is reused once its file is gone: a new start after "removed" is new mail
        if entry is None or (starts and entry.removed is not None):
            entry = QueueEntry(line.instance, qid, line.time, line.local)
            self._open[key] = entry
            self.entries.append(entry)
        return entry

    def _message_line(self, line: LogLine, qid: str, rest: str) -> str:
        if rest == "removed":
            self._entry(line, qid).removed = line.time
            return "used:removed"
        if (n := _NOTIFICATION.match(rest)) is not None:
            self._entry(line, qid)
            notice = self._entry(line, n[1], starts=True)
            notice.source = notice.source or "notification"
            return "used:notification"
        if rest.startswith(("reject:", "milter-reject:", "discard:")):
            self._entry(line, qid).rejected = True
            return "used:reject"
        head = rest
        status = _STATUS.search(rest)
        if status is not None:
            head = rest[: status.end()]
        fields = dict(_KV.findall(head))
        if not fields:
            return "ignored"  # "host ... said:", "lost connection with ...", "conversation ..."
        return self._fields(line, qid, rest, fields)

    def _fields(self, line: LogLine, qid: str, rest: str, f: dict[str, str]) -> str:
        first = next(iter(f))
        if first in ("client", "uid"):
            entry = self._entry(line, qid, starts=True)
            entry.source = entry.source or ("smtpd" if first == "client" else "pickup")
            return "used:client"
        entry = self._entry(line, qid)
        if first == "message-id":
            entry.message_id = self.hasher.token(_bare(f["message-id"]))
            return "used:message_id"
        if first == "from" and "size" in f:
            entry.sender = self.hasher.address(_bare(f["from"]))
            entry.size = int(f["size"])
            entry.nrcpt = int(f["nrcpt"]) if f.get("nrcpt", "").isdigit() else entry.nrcpt
            return "used:queued"
        if first == "to" and "status" in f and "delays" in f:
            entry.deliveries.append(self._delivery(line, rest, f))
            return "used:delivery"
        if first == "from" and f.get("status") == "expired":
            return "used:expired"
        return "ignored"

    def _delivery(self, line: LogLine, rest: str, f: dict[str, str]) -> Delivery:
        parts = [float(x) for x in f["delays"].split("/")]
        delay = float(f["delay"])
        if len(parts) != 4 or not all(0 <= x < 1e9 for x in (*parts, delay)):
            raise LineError("bad_delays")
        queued = _QUEUED_AS.search(rest[rest.find("status=") :])
        return Delivery(
            time=line.time,
            agent=line.program,
            recipient=self.hasher.address(_bare(f["to"])),
            relay=f.get("relay", ""),
            delay=delay,
            delays=(parts[0], parts[1], parts[2], parts[3]),
            dsn=f.get("dsn", ""),
            status=f["status"],
            queued_as=queued[1] if queued else "",
        )


def _bare(value: str) -> str:
    """``<x>`` -> ``x``."""
    return value[1:-1] if value.startswith("<") and value.endswith(">") else value
