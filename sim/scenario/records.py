"""The trace record both worlds emit: one ``HopRecord`` per message per host.

The model and realnet write the same records (JSON lines), so calibration can
fit one cost per stage name and comparisons read one format. Times are
seconds on one clock per run: simulated time in the model, ``time.time()``
in realnet. CPU times are seconds of CPU measured around the stage
(``time.thread_time()`` in realnet; the sampled demand in the model).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(slots=True)
class StageSpan:
    """One stage of one message on one host."""

    start: float
    end: float
    cpu_s: float = 0.0

    @property
    def elapsed(self) -> float:
        return self.end - self.start


@dataclass(slots=True)
class HopRecord:
    """What one host did with one message.

    ``arrived``: the sender's connection was accepted (or the message was
    generated, at the first hop); ``accepted``: the host answered 250 to DATA
    (the message is durable); ``left``: the next hop answered 250, or the
    message was filed in a mailbox, rejected, quarantined or bounced
    (``outcome`` says which).
    """

    msg_id: str
    flow: str  # inbound | outbound | internal
    host: str  # host id, e.g. "gateway0.1"
    size_kb: float
    arrived: float
    accepted: float | None = None
    left: float | None = None
    outcome: str = "relayed"  # relayed|mailbox|remote|rejected|quarantined|deferred|bounced
    next_hop: str = ""
    stages: dict[str, StageSpan] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HopRecord:
        stages = {k: StageSpan(**v) for k, v in d.get("stages", {}).items()}
        return cls(**{**d, "stages": stages})


@dataclass(slots=True)
class MessageRecord:
    """The end-to-end times of one message (what a user sees).

    ``sent``: the scheduled send time (open-loop: not when the sender got
    around to it); ``accepted``: first 250 in our system; ``in_mailbox``:
    filed in the recipient's mailbox; ``retrieved``: fetched by POP;
    ``remote``: accepted by the remote MX.
    """

    msg_id: str
    flow: str
    size_kb: float
    sent: float
    accepted: float | None = None
    in_mailbox: float | None = None
    retrieved: float | None = None
    remote: float | None = None
    outcome: str = "in_flight"

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


def read_hops(path: Path) -> Iterator[HopRecord]:
    """Read HopRecords from a JSON-lines file."""
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield HopRecord.from_dict(json.loads(line))


def read_messages(path: Path) -> Iterator[MessageRecord]:
    """Read MessageRecords from a JSON-lines file."""
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield MessageRecord(**json.loads(line))
