"""Interop with stock software: a Debian Postfix as a remote MX, swaks as a PC.

Postfix runs from a private config directory (``postfix -c DIR``) on the MX
address of one remote domain, in place of that domain's sink; it files what
it receives into a Maildir. Stopped by its master PID after the test.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import stockpostfix
from mailgate.realnet.testbed.remote import received
from mailgate.realnet.testbed.supervisor import Testbed

pytestmark = pytest.mark.realnet

POSTFIX_DOMAIN = "carrier.example"
USER = "selftest"


@pytest.fixture(scope="module")
def testbed(start_testbed) -> Iterator[Testbed]:
    overrides = {"internet.remote_mta_s": 0.0}
    with start_testbed(range(50, 80), "interop", overrides, external_mx=(POSTFIX_DOMAIN,)) as bed:
        yield bed


def wait_for(cond, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    return None


@pytest.mark.skipif(not stockpostfix.available(), reason="needs Debian postfix and root")
def test_stock_postfix_as_remote_mx_receives_our_outbound_mail(
    testbed: Testbed,
) -> None:
    from mailgate.realnet.load.probe import submit

    plan = testbed.plan
    listen = f"{plan.remote_mx_address(POSTFIX_DOMAIN)}:{testbed.scenario.realnet.smtp_port}"
    pf = stockpostfix.StockPostfix(
        listen,
        {
            "myhostname": f"mx.{POSTFIX_DOMAIN}",
            "virtual_mailbox_domains": POSTFIX_DOMAIN,
            "virtual_mailbox_base": "VMAIL",
            "virtual_mailbox_maps": "static:inbox/",
            "virtual_uid_maps": "static:102",
            "virtual_gid_maps": "static:105",
        },
    )
    inbox = pf.dir / "vmail"
    inbox.mkdir()
    shutil.chown(inbox, "postfix", "postfix")
    pf.main["virtual_mailbox_base"] = str(inbox)
    with pf:
        tag = uuid.uuid4().hex
        address = f"{USER}@{testbed.scenario.population.domains[0]}"
        data = (
            f"From: <{address}>\r\nTo: <friend@{POSTFIX_DOMAIN}>\r\nSubject: {tag}\r\n\r\n"
            "to a stock Postfix\r\n"
        ).encode()
        submit(plan, USER, USER, address, [f"friend@{POSTFIX_DOMAIN}"], data)

        def delivered() -> bytes | None:
            for path in (inbox / "inbox" / "new").glob("*"):
                raw = path.read_bytes()
                if tag.encode() in raw:
                    return raw
            return None

        raw = wait_for(delivered)
        assert raw is not None, pf.log_tail(20)
    assert b"DKIM-Signature:" in raw  # signed by Gateway3 on the way out
    assert b"by mx." + POSTFIX_DOMAIN.encode() in raw  # Postfix's own Received: line


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed")
def test_swaks_submits_with_auth(testbed: Testbed) -> None:
    plan = testbed.plan
    host, port = testbed.submission
    tag = uuid.uuid4().hex
    address = f"{USER}@{testbed.scenario.population.domains[0]}"
    base = [
        "swaks",
        "--server",
        host,
        "--port",
        str(port),
        "--local-interface",
        plan.pc_address,
        "--from",
        address,
        "--to",
        "friend@bigmail.example",
        "--header",
        f"Subject: {tag}",
        "--timeout",
        "20",
        "--tls",  # STARTTLS: submission offers AUTH only after it
    ]
    for mech in ("PLAIN", "LOGIN"):
        run = subprocess.run(
            [*base, "--auth", mech, "--auth-user", USER, "--auth-password", USER],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert "235" in run.stdout  # authentication succeeded
    bad = subprocess.run(
        [*base, "--auth", "PLAIN", "--auth-user", USER, "--auth-password", "wrong"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "535" in bad.stdout
    got = wait_for(
        lambda: [
            r
            for r in received(testbed.state_dir, "bigmail.example")
            if tag in Path(r["file"]).read_text(errors="replace")
        ]
    )
    assert got and len(got) == 2
