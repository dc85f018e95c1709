"""Start, watch and stop a whole realnet testbed (``mailgate realnet up`` runs one).

``Testbed`` (a context manager, used by ``up``, the probe, calibration and
the tests) generates the DKIM key, starts the DNS server, the remote sinks
and one process per host (``python -m mailgate.realnet.testbed.host``), waits
until each one has written its ready file and answers on its port, and stops
every process it started by PID (SIGTERM, then SIGKILL after a grace
period) — also when a start fails half-way. ``kill(host)`` and
``restart(host)`` simulate a host failure (``service_manager`` restarts dead
hosts by itself for ``up``). A file ``realnet.json`` in the
state dir describes the running testbed (pids, addresses) for
``probe --use-running``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mailgate
from mailgate.realnet.addresses import AddressPlan
from mailgate.realnet.relay.config import STOP_GRACE_S
from mailgate.realnet.testbed.host import ready_file
from mailgate.sim.scenario import MAILBOX, Scenario
from mailgate.sim.scenario.loading import load

#: ``up`` records the state dir of a running testbed here, per scenario name.
RUNNING_DIR = Path(tempfile.gettempdir()) / "mailgate-realnet"
# The folder that holds the ``mailgate`` package (a checkout or site-packages): host
# processes import the same code as the supervisor.
PROJECT_ROOT = Path(mailgate.__file__).resolve().parent.parent


class TestbedError(RuntimeError):
    """A host did not come up."""


class Testbed:
    """Every realnet process of one scenario, on loopback."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        scenario_path: str | Path,
        *,
        overrides: Mapping[str, Any] | None = None,
        state_dir: str | Path | None = None,
        hosts: list[str] | None = None,
        start_timeout_s: float = 60.0,
        external_mx: tuple[str, ...] = (),
    ) -> None:
        self.external_mx = external_mx
        self.scenario_path = str(scenario_path)
        self.overrides = dict(overrides or {})
        self.scenario: Scenario = load(self.scenario_path, self.overrides)
        self.plan = AddressPlan(self.scenario)
        self._own_dir = state_dir is None and not self.scenario.realnet.state_dir
        chosen = state_dir or self.scenario.realnet.state_dir or tempfile.mkdtemp(prefix="realnet-")
        self.state_dir = Path(chosen).resolve()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.hosts = hosts if hosts is not None else list(self.scenario.host_ids)
        self.start_timeout_s = start_timeout_s
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    # -- lifecycle

    def __enter__(self) -> Testbed:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def check_free(self) -> None:
        """Every address and port we will bind is free (else another testbed runs)."""
        for name in [*self.hosts, "dns", "remote"]:
            taken = self.taken_endpoint(name)
            if taken is not None:
                host, port, error = taken
                raise TestbedError(
                    f"{name} cannot bind {host}:{port} ({error}); is another realnet "
                    "testbed running on these addresses? (realnet.address_prefix)"
                )

    def endpoints(self, host: str) -> list[tuple[str, int]]:
        """The TCP addresses and ports ``host``'s process listens on."""
        rn = self.scenario.realnet
        if host == "dns":
            return [(self.plan.dns.host, self.plan.dns.port)]
        if host == "remote":
            return [
                (self.plan.remote_mx_address(d), rn.smtp_port)
                for d in self.plan.remote_domains
                if d not in self.external_mx
            ]
        found = [self.smtp_endpoint(host)]
        if host == self.mailbox_host:
            found += [self.submission, self.pop3]
        return found

    def taken_endpoint(self, host: str) -> tuple[str, int, str] | None:
        """The first of ``host``'s endpoints another socket holds: (address, port, why)."""
        return first_taken(self.endpoints(host))

    def start(self) -> None:
        from mailgate.realnet.services.keys import DkimKey

        self.check_free()
        rn = self.scenario.realnet
        DkimKey.load_or_generate(
            self.state_dir / "dkim",
            rn.dkim_algorithm,
            rn.dkim_selector,
            self.scenario.population.domains[0],
        )
        from mailgate.realnet.testbed.tls import make_ca

        # the local CA and every host's key pair, before any host needs them
        make_ca(self.scenario, self.plan, self.state_dir)
        self.spawn("dns")
        self.spawn("remote")
        for host in self.hosts:
            self.spawn(host, wait=False)
        for host in self.hosts:
            self.wait_ready(host)
        self.write_state()

    def spawn(self, host: str, *, wait: bool = True) -> None:
        """Start ``host``'s process.

        The child gets SIGTERM when the *thread* that spawned it ends (Linux's
        parent-death signal follows the forking thread): call ``start``,
        ``spawn`` and ``restart`` from a thread that lives as long as the testbed.
        """
        ready_file(self.state_dir, host).unlink(missing_ok=True)
        logs = self.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = (logs / f"{host}.log").open("ab")
        env = {**os.environ, "PYTHONPATH": _pythonpath(), "MAILGATE_SUPERVISED": "1"}
        cmd = [
            sys.executable,
            "-m",
            "mailgate.realnet.testbed.host",
            "--scenario",
            self.scenario_path,
            "--host",
            host,
            "--state-dir",
            str(self.state_dir),
            "--overrides",
            json.dumps(self.overrides),
            "--external-mx",
            ",".join(self.external_mx),
        ]
        self.procs[host] = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            preexec_fn=_die_with_parent,
        )
        log.close()
        if wait:
            self.wait_ready(host)

    def wait_ready(self, host: str) -> None:
        proc = self.procs[host]
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise TestbedError(f"{host} exited with {proc.returncode}: {self.log_tail(host)}")
            if self.is_ready(host):
                return
            time.sleep(0.02)
        raise TestbedError(
            f"{host} not ready after {self.start_timeout_s} s: {self.log_tail(host)}"
        )

    def is_ready(self, host: str) -> bool:
        """``host``'s current process has written its ready file and answers."""
        try:
            pid = int(ready_file(self.state_dir, host).read_text())
        except (OSError, ValueError):
            return False
        return pid == self.procs[host].pid and self._answers(host)

    def _answers(self, host: str) -> bool:
        if host in ("dns", "remote"):
            return True  # the ready file is written after their sockets are bound
        try:
            with socket.create_connection(self.smtp_endpoint(host), timeout=1.0):
                return True
        except OSError:
            return False

    def log_tail(self, host: str, lines: int = 15) -> str:
        path = self.state_dir / "logs" / f"{host}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self, host: str, sig: int = signal.SIGKILL) -> None:
        """A host failure: signal its process and reap it."""
        proc = self.procs[host]
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        proc.wait(timeout=STOP_GRACE_S + 10)  # SIGTERM: a graceful stop drains first
        ready_file(self.state_dir, host).unlink(missing_ok=True)

    def restart(self, host: str) -> None:
        if self.procs[host].poll() is None:
            self.kill(host, signal.SIGTERM)
        self.spawn(host)
        self.write_state()

    def stop(self) -> None:
        """Stop every process we started, by PID; nothing is left behind."""
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        # a host's graceful stop takes up to STOP_GRACE_S; SIGKILL only after that
        deadline = time.monotonic() + STOP_GRACE_S + 5.0
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.procs.clear()
        (self.state_dir / "realnet.json").unlink(missing_ok=True)
        pointer = _pointer(self.scenario)
        with contextlib.suppress(OSError, ValueError):
            if json.loads(pointer.read_text()).get("state_dir") == str(self.state_dir):
                pointer.unlink()

    def exited(self) -> tuple[str, int] | None:
        """A host process that has ended on its own: (host, exit code), or None."""
        for host, proc in self.procs.items():
            code = proc.poll()
            if code is not None:
                return host, code
        return None

    def cleanup(self) -> None:
        """Remove the state dir if we made it (after stop)."""
        if self._own_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    # -- addresses

    def smtp_endpoint(self, host: str) -> tuple[str, int]:
        return self.plan.host_address(host), self.scenario.realnet.smtp_port

    @property
    def mailbox_host(self) -> str:
        return f"{MAILBOX}.0"

    @property
    def submission(self) -> tuple[str, int]:
        return self.plan.host_address(self.mailbox_host), self.scenario.realnet.submission_port

    @property
    def pop3(self) -> tuple[str, int]:
        return self.plan.host_address(self.mailbox_host), self.scenario.realnet.pop3_port

    def write_state(self) -> None:
        state = {
            "scenario": self.scenario_path,
            "overrides": self.overrides,
            "state_dir": str(self.state_dir),
            "pids": {h: p.pid for h, p in self.procs.items()},
            # a host may be down for a restart: the testbed runs while its supervisor does
            "supervisor_pid": os.getpid(),
        }
        (self.state_dir / "realnet.json").write_text(json.dumps(state, indent=2))
        RUNNING_DIR.mkdir(exist_ok=True)
        _pointer(self.scenario).write_text(json.dumps(state))


def first_taken(endpoints: list[tuple[str, int]]) -> tuple[str, int, str] | None:
    """The first (address, port) another socket holds, with the reason; None if all free."""
    for address, port in endpoints:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((address, port))
            except OSError as e:
                return address, port, e.strerror or str(e)
    return None


def _load_prctl() -> Any:
    """libc's prctl, looked up once in the parent (no dynamic loading after fork)."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM us if the supervisor dies (Linux prctl).

    So a supervisor killed with SIGKILL still leaves no host behind.
    """
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _pythonpath() -> str:
    parts = [str(PROJECT_ROOT)]
    if os.environ.get("PYTHONPATH"):
        parts.append(os.environ["PYTHONPATH"])
    return os.pathsep.join(parts)


def _pointer(scenario: Scenario) -> Path:
    """The file in which ``up`` records the running testbed of ``scenario``."""
    return RUNNING_DIR / f"{scenario.scenario.name}.json"


def running_state_dir(scenario: Scenario) -> Path | None:
    """The state dir of a testbed ``up`` is running for this scenario, if any."""
    pointer = _pointer(scenario)
    try:
        state = json.loads(pointer.read_text())
    except (OSError, ValueError):
        return None
    if "supervisor_pid" in state:
        return Path(state["state_dir"]) if _alive(state["supervisor_pid"]) else None
    if not all(_alive(pid) for pid in state.get("pids", {}).values()):
        return None
    return Path(state["state_dir"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
