"""Trace files: one ``HopRecord`` JSON line per message per host.

``traces/<host>.jsonl`` in the state dir, in ``sim.scenario.records`` format
(the same the model emits), line-buffered so a killed host loses at most the
line it was writing. ``Tracer`` writes them; ``read_traces`` is the one reader
of a state dir's traces (the probe and calibration use it).

A message's HopRecord is written when it leaves a host; that it was taken
into a spool at all (the 250, or a bounce made there) goes the moment it
happens to ``journal/<host>.jsonl`` (``Tracer.queued``, Postfix's "queued as"
log line), so an audit can name a message that vanished from a spool
(``realnet.testbed.audit``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mailgate.sim.scenario.records import HopRecord, read_hops


def trace_dir(state_dir: Path) -> Path:
    """Where the hosts of a state dir write their trace files."""
    return state_dir / "traces"


class Tracer:
    """Appends HopRecords as JSON lines to ``traces/<host>.jsonl``."""

    def __init__(self, state_dir: Path, host_id: str) -> None:
        trace_dir(state_dir).mkdir(parents=True, exist_ok=True)
        # line-buffered: a killed host loses at most a partial line, never earlier ones
        self._out = (trace_dir(state_dir) / f"{host_id}.jsonl").open("a", buffering=1)
        self._journal_path = journal_dir(state_dir) / f"{host_id}.jsonl"
        self._journal: Any = None  # opened on the first spooled message

    def write(self, record: HopRecord) -> None:
        self._out.write(json.dumps(record_dict(record), separators=(",", ":")) + "\n")

    def queued(self, trace_id: str, queue_id: str, flow: str) -> None:
        """Journal a message just spooled here (before its 250 is sent)."""
        if self._journal is None:
            self._journal_path.parent.mkdir(parents=True, exist_ok=True)
            self._journal = self._journal_path.open("a", buffering=1)
        line = {"trace_id": trace_id, "queue_id": queue_id, "flow": flow, "time": time.time()}
        self._journal.write(json.dumps(line, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self._out.close()
        if self._journal is not None:
            self._journal.close()


def journal_dir(state_dir: Path) -> Path:
    """Where the hosts journal what they spooled (``Tracer.queued``)."""
    return state_dir / "journal"


def record_dict(record: HopRecord) -> dict[str, Any]:
    """``asdict(record)`` without its deep copies (a hot path: twice per message)."""
    return {
        "msg_id": record.msg_id,
        "flow": record.flow,
        "host": record.host,
        "size_kb": record.size_kb,
        "arrived": record.arrived,
        "accepted": record.accepted,
        "left": record.left,
        "outcome": record.outcome,
        "next_hop": record.next_hop,
        "stages": {
            k: {"start": v.start, "end": v.end, "cpu_s": v.cpu_s} for k, v in record.stages.items()
        },
    }


def read_traces(state_dir: Path, msg_id_prefix: str = "") -> list[HopRecord]:
    """Every host's HopRecords in ``state_dir``'s traces, in order of arrival.

    Only messages whose id starts with ``msg_id_prefix`` (a Message-ID's ``<``
    ignored): a run's ``"<run id>-"`` selects that run's messages, a whole
    trace id one message (the probe's ids have one length, so no id is
    another's prefix). Empty: every record.
    """
    hops = [
        hop
        for path in sorted(trace_dir(state_dir).glob("*.jsonl"))
        for hop in read_hops(path)
        if hop.msg_id.lstrip("<").startswith(msg_id_prefix)
    ]
    return sorted(hops, key=lambda hop: hop.arrived)
