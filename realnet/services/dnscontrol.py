"""A slow DNS at run time: an extra delay on every answer for a while.

The DNS server runs in its own process; a replayed ``failures.dns_slow`` window
(``realnet.testbed.faults``) reaches it through ``dns/control.json`` in the state
dir, ``{"delay_s": s, "until": epoch}``, which the server reads when the file
changes (a stat at most every ``CHECK_S``, so a query costs no file read).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

CONTROL_FILE = Path("dns") / "control.json"
#: how often the server looks at the file: the delay starts or ends within this
CHECK_S = 0.05


def set_dns_delay(state_dir: Path, delay_s: float, seconds: float = 1e9) -> None:
    """Make the running DNS server add ``delay_s`` to every answer for ``seconds``."""
    path = Path(state_dir) / CONTROL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"delay_s": delay_s, "until": time.time() + seconds}))
    os.replace(tmp, path)  # atomic: the server never reads half a file


class DelayControl:
    """The extra delay the control file asks for now (0 without one, or once it expired)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / CONTROL_FILE
        self._checked = 0.0
        self._mtime = 0.0
        self._rule: dict[str, float] = {}

    def delay_s(self) -> float:
        now = time.monotonic()
        if now - self._checked >= CHECK_S:
            self._checked = now
            try:
                mtime = self.path.stat().st_mtime
                if mtime != self._mtime:
                    self._mtime, self._rule = mtime, json.loads(self.path.read_text())
            except (OSError, ValueError):
                self._rule = {} if not self.path.exists() else self._rule
        if time.time() >= float(self._rule.get("until", 0.0)):
            return 0.0
        return max(0.0, min(float(self._rule.get("delay_s", 0.0)), 30.0))
