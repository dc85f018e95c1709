"""Numbers as people read them, shared by the HTML report and the comparison's text:
seconds sized to the value, shares as percentages, clock hours."""

from __future__ import annotations

import math

SPAN_TITLES = {
    "accepted_to_mailbox": "accepted → mailbox",
    "sent_to_retrieved": "sent → retrieved (POP)",
    "sent_to_remote": "sent → remote MX",
    "sent_to_accepted": "sent → accepted (first 250)",
}
RESOURCE_TITLES = {
    "cpu": "CPU", "sessions": "SMTP sessions", "delivery": "delivery slots",
    "destination": "delivery slots of one destination", "disk": "disk",
}  # fmt: skip


def seconds(x: float | None) -> str:
    """Seconds, human-sized: 14.7ms, 2.48s, 9.5min, 1.2h ('-' for none)."""
    if x is None or not math.isfinite(x):
        return "-"
    if x < 1:
        return f"{x * 1000:.1f}ms"
    if x < 120:
        return f"{x:.2f}s"
    if x < 7200:
        return f"{x / 60:.1f}min"
    return f"{x / 3600:.1f}h"


def percent(x: float | None, digits: int = 1) -> str:
    """A share as a percentage ('-' for none)."""
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x * 100:.{digits}f}%"


def clock(hour: float | None) -> str:
    """A clock hour (possibly past 24) as HH:MM."""
    if hour is None:
        return "-"
    h = hour % 24
    return f"{int(h):02d}:{round((h % 1) * 60) % 60:02d}"


def change(base: float | None, new: float | None) -> str:
    """Relative change from base to new: +12.3%, -4.0%, 0 or '-'."""
    if base is None or new is None:
        return "-"
    if base == new:
        return "0"
    if base == 0:
        return "new"
    return f"{(new - base) / abs(base) * 100:+.1f}%"
