"""Keep every process of a running testbed alive, as an operator's service manager does.

``realnet up`` runs a ``ServiceManager`` over its ``Testbed``: a host process
that ends on its own is logged and restarted after a backoff (1 s, doubling up
to 30 s; back to 1 s once a run has lasted 60 s) while every other host — its
twin among them — keeps serving. The restarted host recovers its spool on
start; once it is ready again the hosts upstream of it get SIGUSR1 (a "flush
your queue" request, Postfix's ``postqueue -f``) so that mail held for it need
not wait out a retry backoff (a relay without a flush hook ignores it).

It gives up (``CannotRestart``, which ends ``up`` with exit 1) in two cases
only, like systemd's start limit: a host died ``max_failures`` times in a row,
each run shorter than ``stable_after_s``; or its address and port are held by
another program (its exit code says it could not bind, or the port is taken
when it is due to restart), which no retry can mend.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mailgate.realnet.testbed.host import CANNOT_BIND, ready_file

if TYPE_CHECKING:
    from mailgate.realnet.testbed.supervisor import Testbed


class CannotRestart(RuntimeError):
    """A host that the manager will not (or cannot) restart again."""


@dataclass(frozen=True)
class RestartPolicy:
    """When to restart a dead host, and when to stop trying."""

    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    #: a run at least this long counts as healthy: the failure count starts again
    stable_after_s: float = 60.0
    #: give up after this many deaths in a row, each within ``stable_after_s``
    max_failures: int = 5
    #: a restarted process that is not ready after this long counts as a failure
    start_timeout_s: float = 60.0

    def delay(self, failures: int) -> float:
        """The wait before the restart that follows the ``failures``-th death in a row."""
        return min(self.max_delay_s, self.first_delay_s * 2 ** max(0, failures - 1))

    def failures_after(self, previous: int, ran_s: float) -> int:
        """The count of deaths in a row once a process that ran ``ran_s`` has died."""
        return 1 if ran_s >= self.stable_after_s else previous + 1

    def gives_up(self, failures: int) -> bool:
        return failures >= self.max_failures


@dataclass
class _Watch:
    """What the manager knows about one host."""

    started: float  # monotonic time of the current process's start
    failures: int = 0  # deaths in a row, each one a short run
    starting: bool = False  # restarted, not ready yet
    restart_at: float | None = None  # dead: when to start it again
    down_since: float = 0.0


class ServiceManager:
    """Restart the testbed's dead processes; ``poll()`` does one round, ``run()`` loops."""

    def __init__(
        self,
        testbed: Testbed,
        policy: RestartPolicy | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.testbed = testbed
        self.policy = policy or RestartPolicy()
        self.log = log or _stderr
        now = time.monotonic()
        self.watch = {host: _Watch(started=now) for host in testbed.procs}
        #: (host, seconds from its death to ready again) for every completed restart
        self.restarts: list[tuple[str, float]] = []
        #: host -> monotonic time before which a dead host is not restarted (a replayed
        #: ``failures.host_down`` window: the host stays down as the scenario says)
        self.held: dict[str, float] = {}

    def hold(self, host: str, until: float) -> None:
        """Do not restart ``host`` before ``until`` (``time.monotonic()``)."""
        self.held[host] = until

    def run(self, should_stop: Callable[[], bool], interval_s: float = 0.2) -> None:
        """Poll until ``should_stop()``; raises ``CannotRestart``."""
        while not should_stop():
            self.poll()
            time.sleep(interval_s)

    def poll(self) -> None:
        """Notice deaths, start due restarts, notice restarted hosts that are ready."""
        now = time.monotonic()
        for host, proc in list(self.testbed.procs.items()):
            w = self.watch.setdefault(host, _Watch(started=now))
            if w.restart_at is not None:
                if now >= max(w.restart_at, self.held.get(host, 0.0)):
                    self._restart(host, w)
                continue
            code = proc.poll()
            if code is None:
                if w.starting:
                    self._check_start(host, w, now)
                continue
            self._died(host, w, proc.pid, code, now)

    # -- one host

    def _died(self, host: str, w: _Watch, pid: int, code: int, now: float) -> None:
        ran = now - w.started
        ready_file(self.testbed.state_dir, host).unlink(missing_ok=True)
        if code == CANNOT_BIND:
            raise CannotRestart(
                f"{host} cannot be restarted: it could not bind its address "
                f"({self._endpoints(host)}); {self.testbed.log_tail(host, 3)}"
            )
        w.failures = self.policy.failures_after(w.failures, 0.0 if w.starting else ran)
        what = "died while starting" if w.starting else f"died after {ran:.1f} s"
        if self.policy.gives_up(w.failures):
            raise CannotRestart(
                f"{host} cannot be restarted: it {what} ({_describe(code)}), "
                f"{w.failures} deaths in a row within {self.policy.stable_after_s:g} s of "
                f"a start; last log lines:\n{self.testbed.log_tail(host, 5)}"
            )
        delay = self.policy.delay(w.failures)
        if not w.starting:
            w.down_since = now
        w.starting = False
        w.restart_at = now + delay
        self.log(
            f"{host} (pid {pid}) {what} ({_describe(code)}); restarting in {delay:g} s "
            f"(death {w.failures} in a row; giving up at {self.policy.max_failures})"
        )

    def _restart(self, host: str, w: _Watch) -> None:
        taken = self.testbed.taken_endpoint(host)
        if taken is not None:
            raise CannotRestart(
                f"{host} cannot be restarted: {taken[0]}:{taken[1]} is held by another program"
            )
        self.testbed.spawn(host, wait=False)
        w.started = time.monotonic()
        w.starting = True
        w.restart_at = None

    def _check_start(self, host: str, w: _Watch, now: float) -> None:
        if self.testbed.is_ready(host):
            w.starting = False
            down = now - w.down_since
            self.restarts.append((host, down))
            self.testbed.write_state()
            self.log(
                f"{host} restarted: pid {self.testbed.procs[host].pid}, serving again "
                f"{down:.1f} s after it died"
            )
            self._flush_upstream()
        elif now - w.started > self.policy.start_timeout_s:
            self.log(f"{host} not ready after {self.policy.start_timeout_s:g} s: killing it")
            self.testbed.kill(host)  # the next poll sees the death and counts it

    def _flush_upstream(self) -> None:
        """Ask every serving relay to retry its queue now (SIGUSR1, like ``postqueue -f``)."""
        for host, proc in self.testbed.procs.items():
            w = self.watch.get(host)
            if host in ("dns", "remote") or w is None or w.starting or w.restart_at is not None:
                continue
            if self.testbed.is_ready(host):  # its handler is installed before it is ready
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGUSR1)

    def _endpoints(self, host: str) -> str:
        return ", ".join(f"{a}:{p}" for a, p in self.testbed.endpoints(host))


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _stderr(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)
