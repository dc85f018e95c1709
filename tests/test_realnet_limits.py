"""Abuse limits and forged Authentication-Results on the real chain (issue #13, points 3,
5 and 7): every check talks SMTP to real servers on loopback and reads the replies on
the wire or the messages in the mailbox files.

- RFC 8601 section 5: a forged ``Authentication-Results`` claiming our authserv-id, in
  every form (folded, quoted, comments, any case, version, header-only message), is
  gone from the delivered message; a foreign one stays.
- Postfix's limits, from the scenario's ``[limits]``: 452 4.5.3 past
  ``smtpd_recipient_limit``, a duplicate recipient delivered once, 421 4.3.2 when every
  session slot is taken, 421 4.4.2 after ``smtpd_timeout`` of silence.
"""

from __future__ import annotations

import asyncio
import email
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailgate.realnet.addresses import host_name
from mailgate.realnet.relay.authresults import authserv_id, strip_forged_results
from mailgate.realnet.relay.policy import Incoming, Policy
from mailgate.realnet.services import maildir
from mailgate.realnet.testbed.remote import received, send_inbound
from mailgate.realnet.testbed.supervisor import Testbed
from tests.conftest import TESTBED, until
from tests.test_realnet_relay import (
    Collector,
    final_relay,
    forwarding_relay,
    free_port,
    make_relay,
    run,
    running,
    send,
)
from tests.test_realnet_relay import until as rn_until

pytestmark = pytest.mark.realnet

USER = "selftest"  # password: the user name
SENDER = "bigmail.example"
REMOTE = "carrier.example"
#: the testbed's idle timeout: short, so a test can wait it out
IDLE_S = 3.0


@pytest.fixture(scope="module")
def testbed(start_testbed) -> Iterator[Testbed]:
    overrides = {
        "realnet.time_scale": 0.005,
        "internet.remote_mta_s": 0.0,
        "limits.smtpd_timeout_s": IDLE_S,
    }
    with start_testbed(range(241, 250), "limits", overrides) as bed:
        yield bed


def ours(testbed: Testbed) -> str:
    return testbed.scenario.population.domains[0]


def copies(testbed: Testbed, tag: str, user: str = USER) -> list[bytes]:
    """Every message in ``user``'s mailbox that holds ``tag``, as CRLF bytes."""
    root = testbed.state_dir / "maildirs"
    if not (root / user).exists():
        return []
    found = []
    for m in maildir.list_messages(root, user):
        data = maildir.read_message(m.path)
        if tag.encode() in data:
            found.append(maildir.to_crlf(data))
    return found


class Dialogue:
    """A raw SMTP client on a socket from a chosen source address."""

    def __init__(self, host: str, port: int, source: str, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout, source_address=(source, 0))
        self.file = self.sock.makefile("rb")

    def reply(self) -> bytes:
        lines = []
        while True:
            line = self.file.readline()
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                return b"".join(lines)

    def say(self, line: bytes) -> bytes:
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def mx(testbed: Testbed, source: str | None = None) -> Dialogue:
    host, port = testbed.smtp_endpoint("gateway0.0")
    d = Dialogue(host, port, source or testbed.plan.remote_sender_address(SENDER))
    assert d.reply().startswith(b"220")
    return d


# ---------------------------------------------------------------- Authentication-Results


def forged_forms(our_id: str) -> dict[str, bytes]:
    """One forged field per form RFC 8601 2.2 allows the authserv-id in."""
    return {
        "plain": f"Authentication-Results: {our_id}; spf=pass header.d=plain.forged\r\n",
        "folded": (
            f"Authentication-Results:\r\n\t{our_id};\r\n\tdkim=pass header.d=folded.forged\r\n"
        ),
        "quoted": f'Authentication-Results: "{our_id}"; dkim=pass header.d=quoted.forged\r\n',
        "comments": (
            f"Authentication-Results: (trust (me)) {our_id} (really);"
            " dkim=pass header.d=comments.forged\r\n"
        ),
        "case": f"AUTHENTICATION-results: {our_id.upper()}; spf=pass header.d=case.forged\r\n",
        "version": f"Authentication-Results: {our_id} 1; dkim=pass header.d=version.forged\r\n",
        "domain": "Authentication-Results: {domain}; dkim=pass header.d=domain.forged\r\n",
        "blank-name": f"Authentication-Results : {our_id}; spf=pass header.d=blank.forged\r\n",
    }


def test_authserv_id_in_every_form() -> None:
    forms = forged_forms("gw0-1.ours.example")
    for name, field in forms.items():
        if name != "domain":
            assert authserv_id(field.encode()) == "gw0-1.ours.example", name
    assert authserv_id(b'Authentication-Results: "a\\"b"; none\r\n') == 'a"b'
    assert authserv_id(b"Authentication-Results: =?utf-8?q?ours.example?=; none\r\n") == (
        "ours.example"
    )


def test_strip_keeps_foreign_results_and_the_body() -> None:
    data = (
        b"Authentication-Results: gw0-1.ours.example; spf=pass\r\n\tsmtp.mailfrom=x@y\r\n"
        b"Authentication-Results: mx.other.example; spf=fail\r\n"
        b"Subject: s\r\n\r\nAuthentication-Results: ours.example; body is untouched\r\n"
    )
    out = strip_forged_results(data, frozenset({"ours.example"}))
    assert out == (
        b"Authentication-Results: mx.other.example; spf=fail\r\n"
        b"Subject: s\r\n\r\nAuthentication-Results: ours.example; body is untouched\r\n"
    )


def test_forged_results_in_every_form_are_removed_at_the_mx(testbed: Testbed) -> None:
    our_id = host_name(testbed.plan, "gateway0.0")
    rcpt = f"{USER}@{ours(testbed)}"
    foreign = "Authentication-Results: mx.bigmail.example; spf=pass header.d=foreign.kept\r\n"
    tags = {}
    for name, field in forged_forms(our_id).items():
        tag = uuid.uuid4().hex
        tags[name] = tag
        field = field.replace("{domain}", ours(testbed))
        body = f"{field}{foreign}From: <x@{SENDER}>\r\nSubject: {tag}\r\n\r\nbody\r\n"
        send_inbound(testbed.plan, SENDER, [rcpt], body.encode())
    # a message with headers and no body at all
    tags["header-only"] = tag = uuid.uuid4().hex
    only = forged_forms(our_id)["plain"] + f"Subject: {tag}\r\n"
    send_inbound(testbed.plan, SENDER, [rcpt], only.encode())
    for name, tag in tags.items():
        (data,) = until(lambda t=tag: copies(testbed, t), what=f"the {name} message")
        results = email.message_from_bytes(data).get_all("Authentication-Results") or []
        ids = sorted(authserv_id(b"A-R: " + r.encode()) for r in results)
        assert b".forged" not in data, (name, results)  # the forged field, whatever its form
        want = [our_id] if name == "header-only" else sorted(["mx.bigmail.example", our_id])
        assert ids == want, (name, results)


def test_forged_results_are_removed_at_submission(testbed: Testbed) -> None:
    from mailgate.realnet.load.probe import submit

    our_id = host_name(testbed.plan, "gateway0.1")
    tag = uuid.uuid4().hex
    address = f"{USER}@{ours(testbed)}"
    body = forged_forms(our_id)["quoted"] + f"From: <{address}>\r\nSubject: {tag}\r\n\r\nx\r\n"
    submit(testbed.plan, USER, USER, address, [f"friend@{REMOTE}"], body.encode())

    def at_remote() -> bytes | None:
        for row in received(testbed.state_dir, REMOTE):
            data = Path(row["file"]).read_bytes()
            if tag.encode() in data:
                return data
        return None

    data = until(at_remote, what="the submitted message")
    assert b".forged" not in data and b"Authentication-Results" not in data


# ---------------------------------------------------------------- limits on the wire


def test_recipients_past_the_limit_get_452_and_duplicates_are_delivered_once(
    testbed: Testbed,
) -> None:
    limit = testbed.scenario.limits.smtpd_recipient_limit
    assert limit == 1000  # Postfix smtpd_recipient_limit
    tag = uuid.uuid4().hex
    rcpt = f"<{USER}@{ours(testbed)}>".encode()
    d = mx(testbed)
    try:
        assert d.say(b"EHLO mta." + SENDER.encode()).startswith(b"250")
        assert d.say(b"MAIL FROM:<x@" + SENDER.encode() + b">").startswith(b"250")
        # pipelined: the 1,005 commands in one write, then the 1,005 replies
        d.sock.sendall(b"".join(b"RCPT TO:" + rcpt + b"\r\n" for _ in range(limit + 5)))
        replies = [d.reply() for _ in range(limit + 5)]
        assert all(r.startswith(b"250 ") for r in replies[:limit])
        assert all(r.startswith(b"452 4.5.3") for r in replies[limit:]), replies[limit:]
        assert d.say(b"DATA").startswith(b"354")
        d.sock.sendall(f"Subject: {tag}\r\n\r\nonce\r\n.\r\n".encode())
        assert d.reply().startswith(b"250")
        d.say(b"QUIT")
    finally:
        d.close()
    until(lambda: copies(testbed, tag), what="the message")
    time.sleep(0.5)  # a second copy would have been filed with the first
    assert len(copies(testbed, tag)) == 1


def test_the_same_recipient_three_times_gives_one_copy(testbed: Testbed) -> None:
    tag = uuid.uuid4().hex
    address = f"{USER}@{ours(testbed)}"
    same = [address, address, f"{USER.upper()}@{ours(testbed).upper()}"]
    send_inbound(testbed.plan, SENDER, same, f"Subject: {tag}\r\n\r\nx\r\n".encode())
    until(lambda: copies(testbed, tag), what="the message")
    time.sleep(0.5)
    assert len(copies(testbed, tag)) == 1


def test_a_full_host_answers_421_at_connect_instead_of_silence(testbed: Testbed) -> None:
    slots = testbed.scenario.tiers["gateway0"].hosts[0].session_limit
    per_client = testbed.scenario.limits.smtpd_client_connection_count_limit
    prefix = testbed.scenario.realnet.address_prefix
    host, port = testbed.smtp_endpoint("gateway0.0")
    held: list[Dialogue] = []
    try:
        t0 = time.monotonic()
        for i in range(slots):  # from several addresses: each stays under the per-client limit
            d = Dialogue(host, port, f"{prefix}.200.{1 + i // (per_client // 2)}")
            held.append(d)
            assert d.reply().startswith(b"220"), i
        assert time.monotonic() - t0 < IDLE_S - 0.5  # all held within the idle timeout
        for j in range(3):
            late = Dialogue(host, port, f"{prefix}.201.{j + 1}", timeout=2.0)
            reply = late.reply()
            assert reply.startswith(b"421 4.3.2"), reply
            assert late.file.readline() == b""  # and closed
            late.close()
        held.pop().close()
        assert until(lambda: _greets(host, port, f"{prefix}.201.9"), timeout=5)
    finally:
        for d in held:
            d.close()


def _greets(host: str, port: int, source: str) -> bool:
    d = Dialogue(host, port, source, timeout=2.0)
    try:
        return d.reply().startswith(b"220")
    finally:
        d.close()


def test_an_idle_client_gets_421_4_4_2_and_is_disconnected(testbed: Testbed) -> None:
    assert testbed.scenario.limits.smtpd_timeout_s == IDLE_S
    d = mx(testbed)
    try:
        assert d.say(b"EHLO mta." + SENDER.encode()).startswith(b"250")
        d.sock.settimeout(IDLE_S + 5)
        t0 = time.monotonic()
        reply = d.reply()
        waited = time.monotonic() - t0
        assert reply.startswith(b"421 4.4.2") and b"timeout" in reply, reply
        assert IDLE_S - 0.5 < waited < IDLE_S + 2, waited
        assert d.file.readline() == b""
    finally:
        d.close()


def test_paths_without_angle_brackets_get_501_at_the_mx(testbed: Testbed) -> None:
    """RFC 5321 4.1.2: ``Path = "<" … ">"``; the public MX allows no leniency."""
    d = mx(testbed)
    try:
        assert d.say(b"EHLO mta." + SENDER.encode()).startswith(b"250")
        reply = d.say(b"MAIL FROM:x@" + SENDER.encode())
        assert reply.startswith(b"501 5.5.4"), reply
        assert d.say(b"MAIL FROM:<x@" + SENDER.encode() + b">").startswith(b"250")
        reply = d.say(f"RCPT TO:{USER}@{ours(testbed)}".encode())
        assert reply.startswith(b"501 5.5.4"), reply
    finally:
        d.close()


# ---------------------------------------------------------------- the idle timeout, in process


class Slow(Policy):
    """A check that takes longer than the idle timeout: our time, not the client's."""

    async def check(self, msg: Incoming) -> None:
        await asyncio.sleep(1.0)


def test_idle_timeout_counts_the_clients_silence_only(tmp_path: Path) -> None:
    async def main() -> None:
        port = free_port("127.61.0.1")
        sink = Collector()
        relay = make_relay(
            tmp_path, "mx.0", "127.61.0.1", port, Slow(), local_delivery=sink, smtpd_timeout_s=0.4
        )
        async with running(relay):
            r, w = await asyncio.open_connection("127.61.0.1", port)

            async def say(line: bytes) -> bytes:
                w.write(line + b"\r\n")
                return await asyncio.wait_for(r.readline(), 5)

            assert (await r.readline()).startswith(b"220")
            assert (await say(b"HELO c.example")).startswith(b"250")
            assert (await say(b"MAIL FROM:<a@ours.example>")).startswith(b"250")
            assert (await say(b"RCPT TO:<b@ours.example>")).startswith(b"250")
            assert (await say(b"DATA")).startswith(b"354")
            for i in range(6):  # a slow but steady sender: 1.5 s of DATA, never 0.4 s idle
                w.write(b"line %d\r\n" % i)
                await asyncio.sleep(0.25)
            # and a check of 1 s after the final dot
            assert (await say(b".")).startswith(b"250")
            assert len(sink.got) == 1
            t0 = time.monotonic()
            reply = await asyncio.wait_for(r.readline(), 5)  # now silent: 421 and closed
            assert reply.startswith(b"421 4.4.2"), reply
            assert 0.3 < time.monotonic() - t0 < 2
            assert await asyncio.wait_for(r.read(), 2) == b""
            w.close()

    run(main())


def test_a_cached_connection_the_next_hop_timed_out_is_replaced_at_once(tmp_path: Path) -> None:
    """The next hop's 421 4.4.2 on an idle cached connection is no reason to defer."""

    async def main() -> None:
        port = free_port("127.61.0.1")
        sink = Collector()
        final = final_relay(tmp_path, port, sink)
        final.config.smtpd_timeout_s = 0.3
        relay = forwarding_relay(tmp_path, port, minimal_backoff_s=60.0, maximal_backoff_s=60.0)
        async with running(final, relay):
            await send("127.61.0.1", port, ["b@ours.example"])
            await rn_until(lambda: len(sink.got) == 1)
            await asyncio.sleep(0.8)  # the cached connection to final.0 got 421 and closed
            await send("127.61.0.1", port, ["c@ours.example"])
            await rn_until(lambda: len(sink.got) == 2, timeout=5)  # not after the 60 s backoff

    run(main())


def test_the_scenario_limits_reach_every_relay_with_postfix_defaults(plan) -> None:
    from mailgate.realnet.relay import config as cfg
    from mailgate.sim.scenario.loading import load
    from mailgate.sim.scenario.mta import Limits

    # the relay's own defaults are Postfix's, as the scenario's are
    assert (
        (cfg.RECIPIENT_LIMIT, cfg.CLIENT_CONNECTION_LIMIT, cfg.SMTPD_TIMEOUT_S)
        == (
            Limits().smtpd_recipient_limit,
            Limits().smtpd_client_connection_count_limit,
            Limits().smtpd_timeout_s,
        )
        == (1000, 50, 300.0)
    )
    changed = load(
        TESTBED,
        {
            "limits.smtpd_recipient_limit": 7,
            "limits.smtpd_client_connection_count_limit": 3,
            "limits.smtpd_timeout_s": 1.5,
        },
    )
    for host_id in ("gateway0.0", "mailbox.0"):
        c = cfg.RelayConfig.from_scenario(changed, plan, host_id, Path("/nonexistent"))
        assert (c.recipient_limit, c.client_connection_limit, c.smtpd_timeout_s) == (7, 3, 1.5)
        spec = changed.tiers[host_id.split(".")[0]].hosts[0]
        assert c.session_limit == spec.session_limit  # the model's session slots
