"""The POP3 maildrop lock ends with the session, however the client goes (issue #13, point 6).

On the real mailbox server process (``mailbox.0`` of a loopback testbed): a
client logs in (USER/PASS, the maildrop is locked) and then closes its socket
without QUIT, resets it, or is SIGKILLed in the middle of a RETR; the next login
to the same maildrop is never refused as locked a second later (it succeeds at once
on an idle machine: 1-8 ms measured). (A client that keeps its socket
open keeps the lock: that is RFC 1939's exclusive-access lock, not a leak.)
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from mailgate.realnet.services import maildir
from mailgate.realnet.testbed.supervisor import Testbed

pytestmark = pytest.mark.realnet

USER = "selftest"  # password = user name (scenarios/loopback-testbed.toml)


@pytest.fixture(scope="module")
def testbed(start_testbed) -> Iterator[Testbed]:
    with start_testbed(range(190, 200), "pop3lock", hosts=["mailbox.0"]) as bed:
        big = b"Subject: big\r\n\r\n" + b"x" * 76 + b"\r\n"
        maildir.deliver(bed.state_dir / "maildirs", USER, big * 40_000)  # ~3 MB: a long RETR
        yield bed


def command(sock: socket.socket, line: str) -> bytes:
    sock.sendall(line.encode() + b"\r\n")
    return read_line(sock)


def read_line(sock: socket.socket) -> bytes:
    out = b""
    while not out.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        out += chunk
    return out


def logged_in(testbed: Testbed) -> socket.socket:
    """A raw POP3 connection in the TRANSACTION state (the maildrop locked)."""
    sock = socket.create_connection(testbed.pop3, timeout=10)
    try:
        assert read_line(sock).startswith(b"+OK")
        assert command(sock, f"USER {USER}").startswith(b"+OK")
        reply = command(sock, f"PASS {USER}")
        assert reply.startswith(b"+OK"), reply
    except BaseException:
        sock.close()
        raise
    return sock


def seconds_until_login(testbed: Testbed, limit_s: float = 5.0) -> float:
    """How long after now a fresh login to the maildrop succeeds.

    Fails if the maildrop is still locked (``-ERR [IN-USE]``) a second after now: a
    slow answer on a busy machine is not a lock that outlived its session.
    """
    t0 = time.monotonic()
    tries: list[str] = []  # when each PASS was answered and how: for the failure message
    while True:
        with socket.create_connection(testbed.pop3, timeout=10) as sock:
            read_line(sock)
            command(sock, f"USER {USER}")
            reply = command(sock, f"PASS {USER}")
            answered = time.monotonic() - t0
            tries.append(f"{answered:.3f} s {reply[:14]!r}")
            if reply.startswith(b"+OK"):
                command(sock, "QUIT")
                return answered
            assert b"IN-USE" in reply, reply
            assert answered < 1.0, f"the maildrop is still locked after 1 s: {tries}"
        assert time.monotonic() - t0 < limit_s, f"no login within {limit_s} s: {tries}"
        time.sleep(0.02)


def test_a_second_login_is_refused_while_the_session_lives(testbed: Testbed) -> None:
    sock = logged_in(testbed)
    try:
        with socket.create_connection(testbed.pop3, timeout=10) as other:
            read_line(other)
            command(other, f"USER {USER}")
            assert b"IN-USE" in command(other, f"PASS {USER}")
    finally:
        sock.close()
    seconds_until_login(testbed)


@pytest.mark.parametrize("how", ["close", "reset", "close-mid-retr"])
def test_lock_released_when_the_client_hangs_up(testbed: Testbed, how: str) -> None:
    sock = logged_in(testbed)
    if how == "reset":  # RST instead of FIN
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if how == "close-mid-retr":
        sock.sendall(b"RETR 1\r\n")
        sock.recv(4096)  # the transfer has begun
    sock.close()  # no QUIT
    took = seconds_until_login(testbed)
    print(f"{how}: next login after {took * 1000:.0f} ms")


def test_lock_released_when_the_client_is_killed_mid_session(testbed: Testbed) -> None:
    host, port = testbed.pop3
    client = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket, sys, time\n"
            f"s = socket.create_connection(({host!r}, {port}))\n"
            "f = s.makefile('rb')\n"
            "f.readline()\n"
            f"s.sendall(b'USER {USER}\\r\\n'); f.readline()\n"
            f"s.sendall(b'PASS {USER}\\r\\n'); print(f.readline().decode().strip(), flush=True)\n"
            "s.sendall(b'RETR 1\\r\\n'); f.read(1000)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert client.stdout is not None
        assert client.stdout.readline().startswith("+OK")
        time.sleep(0.2)  # in the middle of the RETR, not reading
    finally:
        client.kill()  # SIGKILL: the kernel closes its socket
        client.wait(timeout=10)
        if client.stdout is not None:
            client.stdout.close()
    took = seconds_until_login(testbed)
    print(f"killed client: next login after {took * 1000:.0f} ms")
