"""The scenario's ``[failures]`` applied to a running testbed, at their times.

Times are the scenario's hours after the run starts, scaled by
``realnet.time_scale`` (the factor the relays' retry timers get), and counted
from the moment ``run_faults`` starts (the start of a replayed load):

- ``host_down``: ``refuses = true`` (the MTA is down, the machine up: connections
  refused at once) → SIGKILL, and the service manager, when the caller owns one,
  holds the restart until the window ends; ``refuses = false`` (a dead machine:
  nothing answers) → SIGSTOP, SIGCONT at the end. A window past the run leaves it down.
- ``remote_outage``: the domain's sink is ``down`` (``remote.set_behaviour``: a
  connection is closed at once) for the window, ``accept`` outside it. The rule
  replaces the sink's own outage schedule, which counts from the sink's start.
- ``dns_slow``: the DNS server adds ``extra_s`` to every answer for the window
  (``dnscontrol.set_dns_delay``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailgate.realnet.services.dnscontrol import set_dns_delay
from mailgate.realnet.testbed.remote import set_behaviour
from mailgate.sim.scenario import Scenario

#: a window "until the end of the run" (``duration_h`` left at its default)
FOREVER_S = 1e8


@dataclass(frozen=True)
class FaultWindow:
    """One failure: ``kind``, what it hits, and when (s after the start, real time)."""

    kind: str  # host_down, remote_outage, dns_slow
    what: str  # a host id, a domain, or the extra DNS delay
    start_s: float
    end_s: float
    refuses: bool = False
    extra_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "what": self.what, "start_s": self.start_s, "end_s": self.end_s}


def fault_windows(scenario: Scenario) -> list[FaultWindow]:
    """The scenario's failures in real seconds (hours × 3600 × ``realnet.time_scale``)."""
    k = 3600.0 * scenario.realnet.time_scale
    f = scenario.failures
    out = [
        FaultWindow(
            "host_down",
            d.host,
            d.start_h * k,
            min((d.start_h + d.duration_h) * k, FOREVER_S),
            refuses=d.refuses,
        )
        for d in f.host_down
    ]
    out += [
        FaultWindow("remote_outage", o.domain, o.start_h * k, (o.start_h + o.duration_h) * k)
        for o in f.remote_outage
    ]
    out += [
        FaultWindow(
            "dns_slow",
            f"+{n.extra_s:g} s",
            n.start_h * k,
            (n.start_h + n.duration_h) * k,
            extra_s=n.extra_s,
        )
        for n in f.dns_slow
    ]
    return sorted(out, key=lambda w: w.start_s)


class Faults:
    """Begins and ends failures on a testbed whose processes ``pids()`` lists."""

    def __init__(
        self,
        state_dir: Path,
        pids: Callable[[], Mapping[str, int]],
        hold: Callable[[str, float], None] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.pids = pids
        self.hold = hold  # the service manager's: keep a killed host down until then
        self.log: list[dict[str, Any]] = []  # what was done, when (s after the start)
        self.t0 = time.monotonic()

    def _note(self, action: str, w: FaultWindow, **extra: Any) -> None:
        self.log.append(
            {
                "at_s": time.monotonic() - self.t0,
                "action": action,
                "kind": w.kind,
                "what": w.what,
                **extra,
            }
        )

    def prepare(self, windows: list[FaultWindow]) -> None:
        """Before the start: every outage domain's sink accepts (not its own schedule)."""
        for w in windows:
            if w.kind == "remote_outage":
                set_behaviour(self.state_dir, w.what, "accept", FOREVER_S)

    def begin(self, w: FaultWindow) -> None:
        length = w.end_s - w.start_s
        if w.kind == "remote_outage":
            set_behaviour(self.state_dir, w.what, "down", length)
        elif w.kind == "dns_slow":
            set_dns_delay(self.state_dir, w.extra_s, length)
        elif w.kind == "host_down":
            pid = self.pids().get(w.what)
            if pid is None:
                return
            if w.refuses:
                if self.hold is not None:
                    self.hold(w.what, time.monotonic() + length)
                _signal(pid, signal.SIGKILL)
            else:
                _signal(pid, signal.SIGSTOP)
            self._note("begin", w, pid=pid)
            return
        self._note("begin", w)

    def end(self, w: FaultWindow) -> None:
        if w.kind == "remote_outage":
            set_behaviour(self.state_dir, w.what, "accept", FOREVER_S)
        elif w.kind == "dns_slow":
            set_dns_delay(self.state_dir, 0.0, 0.0)
        elif w.kind == "host_down" and not w.refuses:
            pid = self.pids().get(w.what)
            if pid is not None:
                _signal(pid, signal.SIGCONT)
        # a refusing host_down ends when the service manager restarts the host (held so far)
        self._note("end", w)

    def release(self, windows: list[FaultWindow]) -> None:
        """After the run: nothing stays stopped or slowed (a window that outlasted it)."""
        for w in windows:
            if w.kind == "host_down" and not w.refuses:
                pid = self.pids().get(w.what)
                if pid is not None:
                    _signal(pid, signal.SIGCONT)
            elif w.kind == "dns_slow":
                set_dns_delay(self.state_dir, 0.0, 0.0)


async def run_faults(faults: Faults, windows: list[FaultWindow]) -> None:
    """Begin and end every window at its time after now (cancel to stop early)."""
    faults.t0 = time.monotonic()
    events = sorted(
        [(w.start_s, 1, i) for i, w in enumerate(windows)]
        + [(w.end_s, 0, i) for i, w in enumerate(windows) if w.end_s < FOREVER_S]
    )
    for at, begins, i in events:
        delay = faults.t0 + at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        (faults.begin if begins else faults.end)(windows[i])


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
