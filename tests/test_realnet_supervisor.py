"""`mailgate realnet up` keeps the chain serving when a host dies (issue #13, point 1).

A real ``realnet up`` process on loopback: under a bounded load one Gateway1 host
is SIGKILLed; its twin keeps delivering, the supervisor restarts the dead host
(a new PID and ready file) and every accepted message arrives exactly once or is
counted as a duplicate. A host that cannot be restarted (its port is taken) ends
``up`` with exit 1 and a message saying why.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailgate.realnet.addresses import AddressPlan
from mailgate.realnet.services import maildir
from mailgate.realnet.testbed.host import CANNOT_BIND
from mailgate.realnet.testbed.remote import send_inbound
from mailgate.realnet.testbed.service_manager import CannotRestart, RestartPolicy, ServiceManager
from mailgate.realnet.testbed.supervisor import RUNNING_DIR
from mailgate.sim.scenario.loading import load
from tests.conftest import until

ROOT = Path(__file__).resolve().parent.parent
USER = "selftest"
DOMAIN = "drive-network.example"


# ---------------------------------------------------------------- the restart policy


def test_backoff_doubles_to_the_cap() -> None:
    policy = RestartPolicy(first_delay_s=1.0, max_delay_s=30.0)
    assert [policy.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_a_long_run_resets_the_failure_count_and_short_runs_give_up() -> None:
    policy = RestartPolicy(stable_after_s=60.0, max_failures=3)
    assert policy.failures_after(previous=2, ran_s=61.0) == 1  # it had run a while
    assert policy.failures_after(previous=2, ran_s=5.0) == 3
    assert policy.gives_up(3) and not policy.gives_up(2)


class CrashingBed:
    """Just enough of a Testbed for the ServiceManager: one host whose process exits."""

    def __init__(self, tmp_path: Path, code: int) -> None:
        self.state_dir = tmp_path
        self.code = code
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.spawns = 0
        self.spawn("h")

    def spawn(self, host: str, *, wait: bool = True) -> None:
        self.spawns += 1
        cmd = [sys.executable, "-c", f"import sys; sys.exit({self.code})"]
        self.procs[host] = subprocess.Popen(cmd)

    def is_ready(self, host: str) -> bool:
        return False

    def taken_endpoint(self, host: str) -> None:
        return None

    def endpoints(self, host: str) -> list[tuple[str, int]]:
        return [("127.0.0.1", 1)]

    def log_tail(self, host: str, lines: int = 15) -> str:
        return "(log)"

    def write_state(self) -> None: ...

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.wait(timeout=10)


def poll_until_it_gives_up(manager: ServiceManager, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            manager.poll()
        except CannotRestart as e:
            return str(e)
        time.sleep(0.01)
    raise AssertionError("the manager never gave up")


def test_a_host_that_keeps_dying_is_given_up_after_max_failures(tmp_path: Path) -> None:
    bed = CrashingBed(tmp_path, 3)
    policy = RestartPolicy(first_delay_s=0.01, max_delay_s=0.05, max_failures=4)
    lines: list[str] = []
    try:
        message = poll_until_it_gives_up(ServiceManager(bed, policy, lines.append))  # type: ignore[arg-type]
    finally:
        bed.stop()
    assert bed.spawns == 4  # the first start and three restarts
    assert "h cannot be restarted" in message and "4 deaths in a row" in message
    assert len(lines) == 3 and all("restarting in" in line for line in lines)


def test_a_host_that_cannot_bind_is_not_retried(tmp_path: Path) -> None:
    bed = CrashingBed(tmp_path, CANNOT_BIND)
    try:
        message = poll_until_it_gives_up(ServiceManager(bed, RestartPolicy(), print))  # type: ignore[arg-type]
    finally:
        bed.stop()
    assert bed.spawns == 1 and "could not bind its address (127.0.0.1:1)" in message


@pytest.mark.realnet
def test_a_host_process_whose_address_is_taken_exits_with_cannot_bind(tmp_path: Path) -> None:
    prefix = f"127.{random.randrange(150, 170)}"
    overrides = {"realnet.address_prefix": prefix, "realnet.dns_address": f"{prefix}.255.53"}
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(
            (f"{prefix}.2.1", load(ROOT / "scenarios" / "loopback-testbed.toml").realnet.smtp_port)
        )
        squatter.listen()
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "mailgate.realnet.testbed.host",
                "--host",
                "gateway2.0",
                "--scenario",
                str(ROOT / "scenarios" / "loopback-testbed.toml"),
                "--state-dir",
                str(tmp_path),
                "--overrides",
                json.dumps(overrides),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=60,
        )
    assert run.returncode == CANNOT_BIND, run.stderr
    assert "cannot bind" in run.stderr


# ---------------------------------------------------------------- a real `realnet up`


class Up:
    """A background ``mailgate realnet up`` with its output in a file."""

    def __init__(self, tmp_path: Path, extra: str = "") -> None:
        prefix = f"127.{random.randrange(150, 170)}"
        self.name = f"sup-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.scenario = tmp_path / "tb.toml"
        self.scenario.write_text(
            f'extends = "{ROOT / "scenarios" / "loopback-testbed.toml"}"\n'
            f'[scenario]\nname = "{self.name}"\n'
            f'[realnet]\naddress_prefix = "{prefix}"\ndns_address = "{prefix}.255.53"\n'
            "time_scale = 0.005\n" + extra
        )
        self.state = tmp_path / "state"
        self.out_path = tmp_path / "up.out"
        self.plan = AddressPlan(load(self.scenario))
        state = ["--state-dir", str(self.state)]
        with self.out_path.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mailgate", "realnet", "up", str(self.scenario), *state],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )

    @property
    def output(self) -> str:
        return self.out_path.read_text()

    def wait_running(self, timeout: float = 60.0) -> None:
        until(lambda: "running" in self.output or self.proc.poll() is not None, timeout)
        assert self.proc.poll() is None, "up exited early:\n" + self.output

    def pids(self) -> dict[str, int]:
        """The pids in the state file ({} once ``up`` has stopped and removed it)."""
        try:
            return json.loads((self.state / "realnet.json").read_text())["pids"]
        except (OSError, ValueError):
            return {}

    def ready_pid(self, host: str) -> int | None:
        try:
            return int((self.state / "run" / f"{host}.ready").read_text())
        except (OSError, ValueError):
            return None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        (RUNNING_DIR / f"{self.name}.json").unlink(missing_ok=True)
        return self.proc.returncode


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    running = Up(tmp_path)
    try:
        running.wait_running()
        yield running
    finally:
        running.stop()


def delivered_tags(state: Path, run: str) -> list[str]:
    """Every load tag of ``run`` found in the mailbox (duplicates included)."""
    found: list[str] = []
    for m in maildir.list_messages(state / "maildirs", USER):
        try:
            raw = maildir.read_message(m.path)
        except FileNotFoundError:
            continue
        pattern = rb"Subject: (load-" + run.encode() + rb"-\d+-\d+)"
        found += [t.decode() for t in re.findall(pattern, raw)]
    return found


def message(tag: str) -> bytes:
    return (
        f"From: <friend@bigmail.example>\r\nTo: <{USER}@{DOMAIN}>\r\n"
        f"Subject: {tag}\r\nMessage-ID: <{tag}@bigmail.example>\r\n\r\nhello\r\n"
    ).encode()


@pytest.mark.realnet
def test_killed_gateway1_host_is_restarted_while_its_twin_serves(up: Up) -> None:
    n_threads, per_thread, gap_s, limit_s = 3, 40, 0.1, 30.0
    accepted: list[str] = []
    refused: list[Exception] = []
    lock = threading.Lock()
    run = uuid.uuid4().hex[:8]
    t_end = time.monotonic() + limit_s
    gateway0 = up.plan.tier_addresses("gateway0")

    def sender(k: int) -> None:
        for i in range(per_thread):
            if time.monotonic() > t_end:
                return
            tag = f"load-{run}-{k}-{i}"
            try:
                send_inbound(
                    up.plan,
                    "bigmail.example",
                    [f"{USER}@{DOMAIN}"],
                    message(tag),
                    target=gateway0[i % 2],
                )
                with lock:
                    accepted.append(tag)
            except (smtplib.SMTPException, OSError) as e:  # no 250: not ours to deliver
                with lock:
                    refused.append(e)
            time.sleep(gap_s)

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    try:
        until(lambda: len(accepted) >= 15, what="load under way")
        old_pid = up.pids()["gateway1.0"]
        os.kill(old_pid, signal.SIGKILL)
        t_kill = time.monotonic()
        at_kill = len(set(delivered_tags(up.state, run)))

        # the supervisor notices, waits its first backoff and starts a new process
        def restarted() -> bool:
            new = up.pids().get("gateway1.0", old_pid)
            return new != old_pid and up.ready_pid("gateway1.0") == new

        until(
            lambda: up.proc.poll() is not None or restarted(),
            timeout=30,
            what="gateway1.0 restarted",
        )
        assert up.proc.poll() is None, "up exited after one host died:\n" + up.output
        restart_s = time.monotonic() - t_kill
        at_ready = len(set(delivered_tags(up.state, run)))
        new_pid = up.pids()["gateway1.0"]
        assert new_pid != old_pid and up.ready_pid("gateway1.0") == new_pid
        assert Path(f"/proc/{new_pid}").exists()
    finally:
        for t in threads:
            t.join(timeout=limit_s + 20)
    assert at_ready > at_kill, "no mail reached the mailbox while gateway1.0 was down"
    until(
        lambda: set(accepted) <= set(delivered_tags(up.state, run)),
        timeout=30,
        what="every 250'd message delivered",
    )
    found = delivered_tags(up.state, run)
    duplicates = len(found) - len(set(found))
    print(
        f"restart {restart_s:.2f} s after SIGKILL; delivered during the outage "
        f"{at_ready - at_kill}; accepted {len(accepted)}, delivered {len(set(found))}, "
        f"duplicates {duplicates}, refused {len(refused)}"
    )
    assert set(found) == set(accepted)
    assert "gateway1.0" in up.output and "restart" in up.output
    assert up.proc.poll() is None
    assert up.stop() == 0


@pytest.mark.realnet
def test_a_host_whose_port_is_taken_ends_up_with_exit_1(up: Up) -> None:
    host = "gateway2.0"
    address = up.plan.host_address(host)
    port = load(up.scenario).realnet.smtp_port
    pid = up.pids()[host]
    os.kill(pid, signal.SIGKILL)
    until(lambda: not Path(f"/proc/{pid}/status").exists() or _zombie(pid), what="the kill")
    # another program takes the port before the supervisor restarts the host
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        until(lambda: _try_bind(squatter, address, port), timeout=5, what="binding the port")
        squatter.listen()
        code = up.proc.wait(timeout=30)
    assert code == 1
    assert f"{host} cannot be restarted" in up.output and f"{address}:{port}" in up.output


def _zombie(pid: int) -> bool:
    try:
        return "State:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True


def _try_bind(sock: socket.socket, address: str, port: int) -> bool:
    try:
        sock.bind((address, port))
    except OSError:
        return False
    return True
