"""No accepted message vanishes (issue #16): border recipient checks, bounces that
reach the sender, permanent replies to permanent faults.

The chain tests run on one testbed of real processes for the module; the
protocol tests talk raw bytes to a single in-process relay on loopback.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailgate.realnet.relay.config import RelayConfig
from mailgate.realnet.relay.relay import Relay
from mailgate.realnet.services import maildir
from mailgate.realnet.services.tls import client_context
from mailgate.realnet.testbed.remote import bounces, send_inbound, set_behaviour
from mailgate.realnet.testbed.supervisor import Testbed
from tests.conftest import until

pytestmark = pytest.mark.realnet

USER = "selftest"
SENDER_DOMAIN = "bigmail.example"


@pytest.fixture(scope="module")
def testbed(start_testbed) -> Iterator[Testbed]:
    overrides = {"realnet.time_scale": 0.005, "internet.remote_mta_s": 0.0}
    with start_testbed(range(160, 180), "loss", overrides) as bed:
        yield bed


def ours(testbed: Testbed) -> str:
    return testbed.scenario.population.domains[0]


def mailbox(testbed: Testbed, user: str) -> list[bytes]:
    root = testbed.state_dir / "maildirs"
    if not (root / user).exists():
        return []
    return [maildir.read_message(m.path) for m in maildir.list_messages(root, user)]


def rcpt_reply(testbed: Testbed, rcpt: str) -> tuple[int, bytes]:
    """Gateway0's answer to ``RCPT TO:<rcpt>`` from a remote MTA (raw, no smtplib quoting)."""
    plan = testbed.plan
    host, port = testbed.smtp_endpoint(f"{testbed.scenario.mx}.0")
    source = plan.remote_sender_address(SENDER_DOMAIN)
    with smtplib.SMTP(host, port, timeout=10, source_address=(source, 0)) as s:
        s.ehlo(f"mta.{SENDER_DOMAIN}")
        assert s.mail(f"sender@{SENDER_DOMAIN}")[0] == 250
        s.putcmd("RCPT", f"TO:{rcpt}")
        code, text = s.getreply()
        s.rset()
    return code, text


def looping(testbed: Testbed, tag: str) -> bytes:
    """A message that Gateway0 and Gateway1 accept and the mailbox server refuses as a
    loop: 48 ``Received:`` + one per hop reaches the hop count limit (50) there."""
    limit = testbed.scenario.limits.hopcount_limit
    received = b"Received: from a.example by b.example; Mon, 1 Jan 2026 00:00:00 +0000\r\n"
    return (
        received * (limit - 2)
        + (
            f"From: <sender@{SENDER_DOMAIN}>\r\nTo: <{USER}@{ours(testbed)}>\r\n"
            f"Subject: {tag}\r\nMessage-ID: <{tag}@{SENDER_DOMAIN}>\r\n\r\nloop\r\n"
        ).encode()
    )


def bounce_with(testbed: Testbed, domain: str, tag: str) -> dict | None:
    """The bounce ``domain``'s sink got that names ``tag``, if any."""
    for row in bounces(testbed.state_dir, domain):
        if tag.encode() in Path(row["file"]).read_bytes():
            return row
    return None


# ---------------------------------------------------------------- recipients at the border


def test_gateway0_refuses_unknown_recipients_and_routing_at_rcpt(testbed: Testbed) -> None:
    domain = ours(testbed)
    code, text = rcpt_reply(testbed, f"<nosuchuser@{domain}>")
    assert code == 550 and b"5.1.1" in text, (code, text)
    for trick in (
        f"<user%carrier.example@{domain}>",
        f'<"user@carrier.example"@{domain}>',
        f"<carrier.example!user@{domain}>",
        f"<@{SENDER_DOMAIN},@carrier.example:{USER}@{domain}>",
    ):
        code, text = rcpt_reply(testbed, trick)
        assert code == 550 and b"5.7.1" in text, (trick, code, text)
    assert rcpt_reply(testbed, f"<{USER}@{domain}>")[0] == 250


def test_postmaster_has_a_mailbox(testbed: Testbed) -> None:
    tag = uuid.uuid4().hex
    data = f"From: <sender@{SENDER_DOMAIN}>\r\nSubject: {tag}\r\n\r\nhello\r\n".encode()
    send_inbound(testbed.plan, SENDER_DOMAIN, [f"PostMaster@{ours(testbed)}"], data)
    until(
        lambda: any(tag.encode() in m for m in mailbox(testbed, "postmaster")),
        what="the message in the postmaster mailbox",
    )


def test_postmaster_without_a_domain_is_accepted_and_delivered(testbed: Testbed) -> None:
    """RFC 5321 4.5.1: ``RCPT TO:<Postmaster>`` (no domain, any case) must be accepted."""
    tag = uuid.uuid4().hex
    plan = testbed.plan
    host, port = testbed.smtp_endpoint(f"{testbed.scenario.mx}.0")
    source = plan.remote_sender_address(SENDER_DOMAIN)
    with smtplib.SMTP(host, port, timeout=10, source_address=(source, 0)) as s:
        s.ehlo(f"mta.{SENDER_DOMAIN}")
        assert s.mail(f"sender@{SENDER_DOMAIN}")[0] == 250
        s.putcmd("RCPT", "TO:<Postmaster>")
        code, text = s.getreply()
        assert code == 250, (code, text)
        data = f"From: <sender@{SENDER_DOMAIN}>\r\nSubject: {tag}\r\n\r\nhi\r\n".encode()
        assert s.data(data)[0] == 250
    until(
        lambda: any(tag.encode() in m for m in mailbox(testbed, "postmaster")),
        what="the message in the postmaster mailbox",
    )


# ---------------------------------------------------------------- bounces that arrive


def test_bounce_from_gateway1_reaches_the_remote_sender(testbed: Testbed) -> None:
    tag = uuid.uuid4().hex
    send_inbound(testbed.plan, SENDER_DOMAIN, [f"{USER}@{ours(testbed)}"], looping(testbed, tag))
    row = until(lambda: bounce_with(testbed, SENDER_DOMAIN, tag), what="the bounce at the sink")
    assert row["rcpt_tos"] == [f"sender@{SENDER_DOMAIN}"]
    dsn = Path(row["file"]).read_bytes()
    assert b"Status: 5.4.6" in dsn and b"Reporting-MTA: dns; gw1-" in dsn


def test_undeliverable_bounce_goes_to_the_postmaster(testbed: Testbed) -> None:
    set_behaviour(testbed.state_dir, SENDER_DOMAIN, "reject", seconds=30.0)
    try:
        tag = uuid.uuid4().hex
        send_inbound(
            testbed.plan, SENDER_DOMAIN, [f"{USER}@{ours(testbed)}"], looping(testbed, tag)
        )
        notice = until(
            lambda: next((m for m in mailbox(testbed, "postmaster") if tag.encode() in m), None),
            what="the failed bounce in the postmaster mailbox",
        )
    finally:
        set_behaviour(testbed.state_dir, SENDER_DOMAIN, "accept", seconds=0.0)
    assert b"Final-Recipient: rfc822; sender@bigmail.example" in notice
    assert b"5.1.1" in notice  # what the sender's MX answered to the bounce


def send_as_gateway2(testbed: Testbed, tag: str) -> None:
    """Mail from a remote sender to carrier.example, handed to Gateway3 as Gateway2 would."""
    host, port = testbed.smtp_endpoint("gateway3.0")
    gateway2 = testbed.plan.host_address("gateway2.0")  # Gateway3 takes mail from it
    with smtplib.SMTP(host, port, timeout=10, source_address=(gateway2, 0)) as s:
        # required between our tiers, with a certificate of the upstream tier
        s.starttls(context=client_context(testbed.state_dir, "gateway2.0"))
        s.sendmail(
            f"sender@{SENDER_DOMAIN}",
            ["nobody@carrier.example"],
            f"From: <sender@{SENDER_DOMAIN}>\r\nSubject: {tag}\r\n\r\nx\r\n".encode(),
        )


def test_bounce_from_gateway3_reaches_the_remote_sender(testbed: Testbed) -> None:
    """A remote MX refuses with 5xx: Gateway3's bounce goes to the sender's MX."""
    set_behaviour(testbed.state_dir, "carrier.example", "reject", seconds=30.0)
    try:
        tag = uuid.uuid4().hex
        send_as_gateway2(testbed, tag)
        row = until(lambda: bounce_with(testbed, SENDER_DOMAIN, tag), what="the bounce")
    finally:
        set_behaviour(testbed.state_dir, "carrier.example", "accept", seconds=0.0)
    dsn = Path(row["file"]).read_bytes()
    assert b"Final-Recipient: rfc822; nobody@carrier.example" in dsn
    assert b"Reporting-MTA: dns; gw3-" in dsn


def test_bounce_from_gateway3_the_sender_refuses_reaches_the_postmaster(testbed: Testbed) -> None:
    set_behaviour(testbed.state_dir, "carrier.example", "reject", seconds=30.0)
    set_behaviour(testbed.state_dir, SENDER_DOMAIN, "reject", seconds=30.0)
    try:
        tag = uuid.uuid4().hex
        send_as_gateway2(testbed, tag)
        notice = until(
            lambda: next((m for m in mailbox(testbed, "postmaster") if tag.encode() in m), None),
            what="Gateway3's failed bounce in the postmaster mailbox",
        )
    finally:
        set_behaviour(testbed.state_dir, "carrier.example", "accept", seconds=0.0)
        set_behaviour(testbed.state_dir, SENDER_DOMAIN, "accept", seconds=0.0)
    assert b"Final-Recipient: rfc822; sender@bigmail.example" in notice
    assert b"Reporting-MTA: dns; gw3-" in notice


# ---------------------------------------------------------------- permanent faults


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Dialogue:
    """A raw SMTP client: send exact bytes, read one reply."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=5)
        self.file = self.sock.makefile("rb")
        self.reply()  # greeting

    def reply(self) -> tuple[int, bytes]:
        lines = []
        while True:
            line = self.file.readline()
            lines.append(line)
            if line[3:4] != b"-":
                return int(line[:3]), b"".join(lines)

    def say(self, line: bytes) -> tuple[int, bytes]:
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_malformed_commands_get_permanent_replies(tmp_path: Path) -> None:
    async def main() -> None:
        bind = "127.62.0.1"
        port = _free_port(bind)
        relay = Relay(
            RelayConfig(
                host_id="mx.0",
                hostname="mx.ours.example",
                bind=bind,
                port=port,
                state_dir=tmp_path,
                local_domains=frozenset({"ours.example"}),
                local_delivery=lambda user, data: None,
            )
        )
        await relay.start()
        try:
            await asyncio.to_thread(check, bind, port)
        finally:
            await relay.stop()

    def transaction(d: Dialogue, helo: bytes, mail: bytes, rcpt: bytes, body: bytes) -> list:
        """Every reply up to the first refusal (or the end of the message)."""
        replies = []
        for line in (b"EHLO " + helo, b"MAIL FROM:" + mail, b"RCPT TO:" + rcpt, b"DATA"):
            replies.append(d.say(line))
            if replies[-1][0] >= 400:
                return replies
        d.sock.sendall(body + b"\r\n.\r\n")
        replies.append(d.reply())
        return replies

    def check(host: str, port: int) -> None:
        good = (b"client.example", b"<a@ours.example>", b"<b@ours.example>", b"Subject: x\r\n\r\n")
        cases = [
            ((b"\xff\xfe.example", *good[1:]), 501, b"5.5.2"),
            ((b"client\x00.example", *good[1:]), 501, b"5.5.2"),
            ((b"two words", *good[1:]), 501, b"5.5.2"),
            ((good[0], b"<\xff@ours.example>", *good[2:]), 501, b"5.1.7"),
            ((good[0], b"<a\x00b@ours.example>", *good[2:]), 501, b"5.1.7"),
            ((good[0], b"a@ours.example", *good[2:]), 501, b"5.5.4"),
            ((*good[:2], b"<b\xc3@ours.example>", good[3]), 501, b"5.1.3"),
            ((*good[:3], b"Subject: x\r\n\r\nnul \x00 here"), 554, b"5.6.0"),
        ]
        for args, code, status in cases:
            d = Dialogue(host, port)
            try:
                replies = transaction(d, *args)
            finally:
                d.close()
            assert replies[-1][0] == code and status in replies[-1][1], (args, replies)
        d = Dialogue(host, port)  # and a well-formed transaction still goes through
        try:
            assert transaction(d, *good)[-1][0] == 250
        finally:
            d.close()

    asyncio.run(asyncio.wait_for(main(), 30))


@pytest.fixture(scope="module")
def key(scenario):
    """The DKIM key the ``dns_server`` fixture publishes (unused here)."""
    from mailgate.realnet.services.keys import DkimKey

    domain = scenario.population.domains[0]
    return DkimKey.generate("ed25519-sha256", scenario.realnet.dkim_selector, domain)


def test_a_domain_that_does_not_exist_does_not_drop_the_other_recipients(
    tmp_path: Path, dns_server, scenario
) -> None:
    """One recipient's domain is NXDOMAIN (550 5.1.2, bounced); the other recipient's MX is
    down: that recipient stays queued instead of vanishing with the bounced one."""
    import ipaddress

    from mailgate.realnet.relay.spool import SpoolEntry

    domain = scenario.population.domains[0]  # in the DNS zone: its MX is Gateway0's address

    async def main() -> None:
        bind = "127.62.0.2"
        port = _free_port(bind)
        relay = Relay(
            RelayConfig(
                host_id="out.0",
                hostname="out.ours.example",
                bind=bind,
                port=port,
                state_dir=tmp_path,
                local_domains=frozenset({domain}),
                relay_clients=(ipaddress.IPv4Network("127.0.0.0/8"),),
                next_hop_port=_free_port("127.0.0.1"),  # nothing listens: every MX is down
                dns=("127.0.0.1", dns_server.port),
                connect_timeout_s=1.0,
                minimal_backoff_s=60.0,
            )
        )
        await relay.start()
        try:
            rcpts = [f"b@{SENDER_DOMAIN}", "c@nosuch.invalid"]

            def send() -> None:
                with smtplib.SMTP(bind, port, timeout=5) as client:
                    client.sendmail(f"a@{domain}", rcpts, b"Subject: x\r\n\r\nx\r\n")

            await asyncio.to_thread(send)
            deadline = time.monotonic() + 10
            while True:  # until the first attempt has been written back (attempts = 1)
                entries = [
                    SpoolEntry.from_bytes(p.read_bytes())
                    for p in relay.spool.queue_dir.glob("*.msg")
                ]
                if any(e.attempts for e in entries) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
        finally:
            await relay.stop()
        originals = [e for e in entries if not e.dsn]
        assert [e.rcpt_tos for e in originals] == [[f"b@{SENDER_DOMAIN}"]], entries
        [dsn] = [e for e in entries if e.dsn]
        assert dsn.rcpt_tos == [f"a@{domain}"] and b"5.1.2" in dsn.data

    asyncio.run(asyncio.wait_for(main(), 30))


# ---------------------------------------------------------------- the audit (last: it checks
# everything the tests above sent)


def test_audit_accounts_for_every_message_and_names_one_deleted_from_a_spool(
    testbed: Testbed,
) -> None:
    from mailgate.realnet.load.probe import submit
    from mailgate.realnet.testbed.audit import audit

    set_behaviour(testbed.state_dir, "carrier.example", "tempfail", seconds=60.0)
    try:
        tag = uuid.uuid4().hex
        address = f"{USER}@{ours(testbed)}"
        data = f"From: <{address}>\r\nSubject: {tag}\r\n\r\nx\r\n".encode()
        submit(testbed.plan, USER, USER, address, ["nobody@carrier.example"], data)

        def in_gateway4_spool() -> Path | None:
            # Gateway3 meets the 451 and hands the message to its fallback, Gateway4
            for path in (testbed.state_dir / "spool").glob("gateway4.*/queue/*.msg"):
                if tag.encode() in path.read_bytes():
                    return path
            return None

        path = until(in_gateway4_spool, what="the message in a Gateway4 spool")
        host = path.parent.parent.name
        trace_id = json.loads(path.read_bytes().partition(b"\n")[0])["trace_id"]
        report = audit(testbed.state_dir)
        assert report.lost == [], "\n".join(report.lines())
        assert (trace_id, host) in {(t, h) for t, h, _ in report.in_spool}
        assert report.ends["mailbox"] and report.ends["remote"] and report.ends["bounced"]
        testbed.kill(host)  # so that it cannot write the file again; then lose it by hand
        path.unlink()
        report = audit(testbed.state_dir)
        assert report.lost == [(trace_id, host)], "\n".join(report.lines())
        assert any(trace_id in line and "LOST" in line for line in report.lines())
        # the command says the same, with exit code 1
        run = subprocess.run(
            [sys.executable, "-m", "mailgate", "realnet", "audit", str(testbed.state_dir)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert run.returncode == 1 and trace_id in run.stdout and "LOST" in run.stdout
    finally:
        set_behaviour(testbed.state_dir, "carrier.example", "accept", seconds=0.0)
        for h in ("gateway4.0", "gateway4.1"):
            if testbed.procs[h].poll() is not None:
                testbed.restart(h)
