"""A restart loses no time and an orderly stop makes no duplicates (issues #13, #16).

- After a host comes back, the service manager's SIGUSR1 makes the relays upstream
  retry their deferred mail at once (``QueueManager.flush``, Postfix's
  ``postqueue -f``) instead of after the 300 s retry backoff.
- SIGTERM is a graceful stop: the host stops listening, lets deliveries in flight
  finish and exits; a message the next hop already took is not sent again.

Both count messages on disk (Maildir files, the remote sink's files), never the
relays' own tallies. One testbed at the scenario's own time scale (backoff 300 s).
"""

from __future__ import annotations

import os
import re
import signal
import smtplib
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mailgate.realnet.load.probe import submit
from mailgate.realnet.services import maildir
from mailgate.realnet.testbed.remote import received, send_inbound, set_behaviour
from mailgate.realnet.testbed.service_manager import RestartPolicy, ServiceManager
from mailgate.realnet.testbed.supervisor import Testbed
from tests.conftest import until

pytestmark = [pytest.mark.realnet, pytest.mark.slow]

USER = "selftest"
SENDER = "bigmail.example"
REMOTE = "carrier.example"


@pytest.fixture(scope="module")
def testbed(start_testbed) -> Iterator[Testbed]:
    # time_scale 1: a deferred message waits the real minimal backoff, 300 s
    overrides = {"realnet.time_scale": 1.0, "internet.remote_mta_s": 0.0}
    with start_testbed(range(200, 215), "restart", overrides) as bed:
        yield bed


def tags_in(texts: list[bytes], run: str) -> list[str]:
    """Every ``Subject: <run>-N`` tag in ``texts`` (duplicates kept)."""
    pattern = rb"Subject: (" + run.encode() + rb"-\d+)"
    return [t.decode() for text in texts for t in re.findall(pattern, text)]


def mailbox_tags(testbed: Testbed, run: str) -> list[str]:
    texts = []
    for m in maildir.list_messages(testbed.state_dir / "maildirs", USER):
        try:
            texts.append(maildir.read_message(m.path))
        except FileNotFoundError:
            continue
    return tags_in(texts, run)


def sink_tags(testbed: Testbed, run: str) -> list[str]:
    return tags_in(
        [Path(row["file"]).read_bytes() for row in received(testbed.state_dir, REMOTE)], run
    )


def spooled(testbed: Testbed, run: str) -> int:
    """Messages of ``run`` in any gateway spool now."""
    n = 0
    for path in (testbed.state_dir / "spool").glob("*/queue/*"):
        try:
            n += run.encode() in path.read_bytes()
        except FileNotFoundError:
            continue
    return n


def load(count: int, gap_s: float, send: Callable[[int], None]) -> tuple[threading.Thread, list]:
    """Send ``count`` messages ``gap_s`` apart in a thread; the list collects the 250'd."""
    accepted: list[int] = []

    def run() -> None:
        for i in range(count):
            try:
                send(i)
                accepted.append(i)
            except (smtplib.SMTPException, OSError):
                pass  # no 250: not ours to deliver
            time.sleep(gap_s)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, accepted


def test_a_restarted_host_gets_its_queued_mail_at_once(testbed: Testbed) -> None:
    """Kill the mailbox server under load; what Gateway1 deferred meanwhile arrives
    within seconds of the restart (the flush), not after the 300 s backoff."""
    run = f"flush-{uuid.uuid4().hex[:8]}"
    domain = testbed.scenario.population.domains[0]
    gateway0 = testbed.plan.tier_addresses("gateway0")
    log: list[str] = []
    # 3 s down: a few dozen messages meet a dead mailbox server and are deferred
    manager = ServiceManager(testbed, RestartPolicy(first_delay_s=3.0), log=log.append)

    def send(i: int) -> None:
        data = f"From: <a@{SENDER}>\r\nSubject: {run}-{i}\r\n\r\nhello\r\n".encode()
        send_inbound(testbed.plan, SENDER, [f"{USER}@{domain}"], data, target=gateway0[i % 2])

    thread, accepted = load(60, 0.1, send)
    until(lambda: len(accepted) >= 10, what="load under way")
    os.kill(testbed.procs["mailbox.0"].pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    queued_at_restart = 0  # the most messages held in a spool while the host was down
    while not manager.restarts:
        assert time.monotonic() < deadline, "mailbox.0 not restarted:\n" + "\n".join(log)
        queued_at_restart = max(queued_at_restart, spooled(testbed, run))
        manager.poll()
        time.sleep(0.05)
    t_ready = time.monotonic()
    thread.join(timeout=60)
    names = {f"{run}-{i}" for i in accepted}
    until(
        lambda: names <= set(mailbox_tags(testbed, run)),
        timeout=15,
        what=f"every accepted message in the mailbox ({queued_at_restart} queued at restart)",
    )
    print(
        f"accepted {len(names)}, queued at restart {queued_at_restart}, all in the mailbox "
        f"{time.monotonic() - t_ready:.1f} s after the restart"
    )
    assert queued_at_restart > 0  # else the test proved nothing
    found = mailbox_tags(testbed, run)
    assert len(found) == len(set(found)) == len(names)


def test_sigterm_under_load_lets_deliveries_finish_without_duplicates(testbed: Testbed) -> None:
    """The remote MX keeps every message at once and answers 2 s later, so SIGTERM to a
    Gateway3 host always finds deliveries in flight; after its restart each message is
    at the sink once."""
    host = "gateway3.0"
    run = f"term-{uuid.uuid4().hex[:8]}"
    address = f"{USER}@{testbed.scenario.population.domains[0]}"
    set_behaviour(testbed.state_dir, REMOTE, "slow_ack", seconds=300, ack_delay_s=2.0)

    def send(i: int) -> None:
        data = f"From: <{address}>\r\nSubject: {run}-{i}\r\n\r\nhello\r\n".encode()
        submit(testbed.plan, USER, USER, address, [f"nobody@{REMOTE}"], data)

    try:
        thread, accepted = load(40, 0.1, send)
        until(lambda: len(sink_tags(testbed, run)) >= 8, what="deliveries under way")
        proc = testbed.procs[host]
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        stop_s = time.monotonic() - t0
        testbed.restart(host)
        thread.join(timeout=60)
        names = {f"{run}-{i}" for i in accepted}
        until(
            lambda: names <= set(sink_tags(testbed, run)) and spooled(testbed, run) == 0,
            timeout=30,
            what="every accepted message at the remote sink, no spool holding one",
        )
        time.sleep(2.5)  # a resend in flight would show up within one ack delay
        found = Counter(sink_tags(testbed, run))
    finally:
        set_behaviour(testbed.state_dir, REMOTE, "accept", seconds=0.0)
    duplicates = sum(n - 1 for n in found.values())
    print(
        f"{host}: SIGTERM -> exit {code} after {stop_s:.1f} s; accepted {len(names)}, "
        f"at the sink {len(found)}, duplicates {duplicates}"
    )
    assert code == 0
    assert set(found) == names
    assert duplicates == 0, {t: n for t, n in found.items() if n > 1}
