"""Trace files: one ``HopRecord`` JSON line per message per host.

``traces/<host>.jsonl`` in the state dir, in ``sim.records`` format (the
same the model emits), line-buffered so a killed host loses at most the line
it was writing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mailgate.sim.scenario.records import HopRecord


class Tracer:
    """Appends HopRecords as JSON lines to ``traces/<host>.jsonl``."""

    def __init__(self, state_dir: Path, host_id: str) -> None:
        (state_dir / "traces").mkdir(parents=True, exist_ok=True)
        # line-buffered: a killed host loses at most a partial line, never earlier ones
        self._out = (state_dir / "traces" / f"{host_id}.jsonl").open("a", buffering=1)

    def write(self, record: HopRecord) -> None:
        self._out.write(json.dumps(record_dict(record), separators=(",", ":")) + "\n")

    def close(self) -> None:
        self._out.close()


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
