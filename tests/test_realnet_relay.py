"""The relay core on loopback, in one process: spool, policy hook, protocol hygiene.

Real aiosmtpd servers and real sockets; the "next hop" is another Relay with a
local-delivery stand-in that collects messages in a list.
"""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from mailgate.realnet.relay.config import RelayConfig
from mailgate.realnet.relay.message import count_received, normalise_line_ends, parse_trace
from mailgate.realnet.relay.policy import Incoming, Policy, Verdict
from mailgate.realnet.relay.relay import Relay
from mailgate.realnet.relay.spool import Spool, SpoolEntry
from mailgate.sim.scenario.records import read_hops

pytestmark = pytest.mark.realnet

MSG = b"From: <a@ours.example>\r\nTo: <b@ours.example>\r\nSubject: hi\r\n\r\nbody\r\n"


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Collector:
    """A final destination: remembers (user, bytes)."""

    def __init__(self) -> None:
        self.got: list[tuple[str, bytes]] = []

    def __call__(self, user: str, data: bytes) -> None:
        self.got.append((user, data))


def config(tmp: Path, host: str, bind: str, port: int, **kw) -> RelayConfig:
    base = dict(
        host_id=host,
        hostname=f"{host}.ours.example",
        bind=bind,
        port=port,
        state_dir=tmp,
        local_domains=frozenset({"ours.example"}),
        next_hop_port=port,
        minimal_backoff_s=0.2,
        maximal_backoff_s=0.4,
        connect_timeout_s=2.0,
    )
    base.update(kw)
    return RelayConfig(**base)


def make_relay(
    tmp: Path, host: str, bind: str, port: int, policy: Policy | None = None, **kw
) -> Relay:
    """A Relay on ``bind:port`` with the test defaults of ``config`` and ``kw`` on top."""
    return Relay(config(tmp, host, bind, port, **kw), policy)


def final_relay(tmp: Path, port: int, sink: Collector) -> Relay:
    """``final.0`` on 127.61.0.2: the next hop of ``forwarding_relay``; delivers into ``sink``."""
    return make_relay(tmp, "final.0", "127.61.0.2", port, local_delivery=sink)


def forwarding_relay(tmp: Path, port: int, **kw) -> Relay:
    """``relay.0`` on 127.61.0.1, forwarding everything to ``final`` (127.61.0.2)."""
    return make_relay(
        tmp, "relay.0", "127.61.0.1", port, next_hop=("127.61.0.2",), next_hop_name="final", **kw
    )


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 30))


async def send(host: str, port: int, rcpts: list[str], data: bytes = MSG, **kw) -> dict:
    def go() -> dict:
        with smtplib.SMTP(host, port, timeout=5, **kw) as s:
            return s.sendmail("a@ours.example", rcpts, data)

    return await asyncio.to_thread(go)


@contextlib.asynccontextmanager
async def running(*relays: Relay) -> AsyncIterator[None]:
    """Start the relays in order and stop them in reverse, whatever the test does."""
    started: list[Relay] = []
    try:
        for relay in relays:
            await relay.start()
            started.append(relay)
        yield
    finally:
        for relay in reversed(started):
            await relay.stop()


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


# ---------------------------------------------------------------- pure helpers


def test_normalise_line_ends_makes_every_line_end_crlf() -> None:
    assert normalise_line_ends(b"a\nb\rc\r\nd") == b"a\r\nb\r\nc\r\nd"
    assert normalise_line_ends(b"a\r\nb\r\n") == b"a\r\nb\r\n"


def test_count_received_counts_header_lines_only() -> None:
    data = b"Received: a\r\nreceived: b\r\nSubject: x\r\n\r\nReceived: body\r\n"
    assert count_received(data) == 2


def test_parse_trace_reads_id_and_flow() -> None:
    assert parse_trace(b"X-Mailgate-Trace: abc; flow=internal\r\n\r\n") == ("abc", "internal")
    assert parse_trace(b"Subject: x\r\n\r\nX-Mailgate-Trace: no\r\n") is None


# ---------------------------------------------------------------- spool


def test_spool_put_is_durable_and_recovered_by_a_new_spool(tmp_path: Path) -> None:
    async def main() -> None:
        spool = Spool(tmp_path)
        entries = [
            SpoolEntry(SpoolEntry.new_id(), "a@x", [f"u{i}@y"], b"data %d\r\n" % i)
            for i in range(20)
        ]
        # concurrent puts share group commits
        await asyncio.gather(*(spool.put(e) for e in entries))
        assert spool.batches < len(entries)
        await spool.remove(entries[0].id)
        spool.close()
        (tmp_path / "tmp" / "half-written").write_bytes(b"junk")
        back = list(Spool(tmp_path).recover())
        assert [e.id for e in back] == [e.id for e in entries[1:]]
        assert back[3].data == entries[4].data and back[3].rcpt_tos == entries[4].rcpt_tos
        assert not (tmp_path / "tmp" / "half-written").exists()

    run(main())


# ---------------------------------------------------------------- relay


def test_relay_stores_forwards_and_traces(tmp_path: Path) -> None:
    async def main() -> None:
        port = free_port("127.0.0.1")
        sink = Collector()
        final = final_relay(tmp_path, port, sink)
        relay = forwarding_relay(tmp_path, port)
        async with running(final, relay):
            await send("127.61.0.1", port, ["b@ours.example"])
            await until(lambda: len(sink.got) == 1)
            user, data = sink.got[0]
            assert user == "b"
            assert count_received(data) == 2  # one per hop
            trace = parse_trace(data)
            assert trace is not None
            await until(lambda: len(relay.spool) == 0)
        hops = list(read_hops(tmp_path / "traces" / "relay.0.jsonl"))
        assert len(hops) == 1 and hops[0].msg_id == trace[0]
        h = hops[0]
        assert h.arrived <= h.accepted <= h.left and h.next_hop == "final"
        assert {"smtp_receive", "spool", "deliver"} <= set(h.stages)
        final_hop = next(read_hops(tmp_path / "traces" / "final.0.jsonl"))
        assert final_hop.msg_id == trace[0] and final_hop.outcome == "mailbox"

    run(main())


def test_never_an_open_relay(tmp_path: Path) -> None:
    async def main() -> None:
        port = free_port("127.0.0.1")
        relay = make_relay(tmp_path, "mx.0", "127.61.0.1", port, local_delivery=Collector())
        async with running(relay):
            with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
                await send("127.61.0.1", port, ["victim@foreign.example"])
            code, text = e.value.recipients["victim@foreign.example"]
            assert code == 550 and b"5.7.1" in text

    run(main())


def test_relay_clients_may_relay_anywhere(tmp_path: Path) -> None:
    import ipaddress

    async def main() -> None:
        port = free_port("127.0.0.1")
        sink = Collector()
        relay = make_relay(
            tmp_path,
            "gw.0",
            "127.61.0.1",
            port,
            local_delivery=sink,
            relay_clients=(ipaddress.IPv4Network("127.61.9.0/24"),),
        )
        async with running(relay):
            await send("127.61.0.1", port, ["x@foreign.example"], source_address=("127.61.9.9", 0))
            assert len(sink.got) == 1

    run(main())


def test_size_limit_552_by_size_parameter_and_by_data(tmp_path: Path) -> None:
    async def main() -> None:
        port = free_port("127.0.0.1")
        sink = Collector()
        relay = make_relay(
            tmp_path, "mx.0", "127.61.0.1", port, local_delivery=sink, message_size_limit=2000
        )
        async with running(relay):
            big = MSG + (b"x" * 70 + b"\r\n") * 50

            def by_size() -> None:
                with smtplib.SMTP("127.61.0.1", port, timeout=5) as s:
                    s.ehlo()
                    assert s.has_extn("size") and int(s.esmtp_features["size"]) == 2000
                    code, _ = s.mail("a@ours.example", ["SIZE=5000"])
                    assert code == 552

            def by_data() -> int:
                # a client that does not declare SIZE: the limit holds on the data itself
                with smtplib.SMTP("127.61.0.1", port, timeout=5) as s:
                    s.ehlo()
                    assert s.mail("a@ours.example")[0] == 250
                    assert s.rcpt("b@ours.example")[0] == 250
                    return s.data(big)[0]

            await asyncio.to_thread(by_size)
            assert await asyncio.to_thread(by_data) == 552
            assert sink.got == []

    run(main())


def test_hop_count_loop_is_554(tmp_path: Path) -> None:
    async def main() -> None:
        port = free_port("127.0.0.1")
        relay = make_relay(
            tmp_path, "mx.0", "127.61.0.1", port, local_delivery=Collector(), hopcount_limit=5
        )
        async with running(relay):
            looped = b"Received: from x by y\r\n" * 5 + MSG
            with pytest.raises(smtplib.SMTPDataError) as e:
                await send("127.61.0.1", port, ["b@ours.example"], looped)
            assert e.value.smtp_code == 554 and b"5.4.6" in e.value.smtp_error
            await send("127.61.0.1", port, ["b@ours.example"], looped[25:])  # 4 hops: fine

    run(main())


def test_bare_lf_dot_does_not_end_the_message(tmp_path: Path) -> None:
    """SMTP smuggling: `\\n.\\n` inside DATA must not start a second transaction."""

    async def main() -> None:
        port = free_port("127.0.0.1")
        sink = Collector()
        relay = make_relay(tmp_path, "mx.0", "127.61.0.1", port, local_delivery=sink)
        async with running(relay):

            def raw_session() -> list[bytes]:
                with socket.create_connection(("127.61.0.1", port), timeout=5) as s:
                    f = s.makefile("rb")
                    replies = [f.readline()]
                    for line in (
                        b"EHLO t",
                        b"MAIL FROM:<a@ours.example>",
                        b"RCPT TO:<b@ours.example>",
                        b"DATA",
                    ):
                        s.sendall(line + b"\r\n")
                        while True:
                            r = f.readline()
                            if r[3:4] != b"-":
                                break
                        replies.append(r)
                    s.sendall(
                        b"Subject: one\r\n\r\nfirst\n.\nMAIL FROM:<evil@ours.example>\n"
                        b"RCPT TO:<c@ours.example>\nDATA\nSubject: smuggled\n\nx\n.\n"
                        b"tail\r\n.\r\n"
                    )
                    replies.append(f.readline())
                    s.sendall(b"QUIT\r\n")
                    replies.append(f.readline())
                    return replies

            replies = await asyncio.to_thread(raw_session)
            assert replies[-2].startswith(b"250")
            assert len(sink.got) == 1
            user, data = sink.got[0]
            assert user == "b" and b"smuggled" in data and b"tail" in data
            # normalised: no bare LF left
            assert b"\n" not in data.replace(b"\r\n", b"")

    run(main())


class Exploding(Policy):
    async def check(self, msg: Incoming) -> Verdict | None:
        raise RuntimeError("a bug in a check")


class Refusing(Policy):
    async def check(self, msg: Incoming) -> Verdict | None:
        if b"virus" in msg.data:
            return Verdict.quarantine("test virus")
        return Verdict.reject("550 5.7.1 no thanks")


def test_internal_error_is_451_and_policy_can_reject_or_quarantine(tmp_path: Path) -> None:
    async def main() -> None:
        port = free_port("127.0.0.1")
        a = make_relay(tmp_path, "a.0", "127.61.0.1", port, Exploding(), local_delivery=Collector())
        sink = Collector()
        b = make_relay(tmp_path, "b.0", "127.61.0.2", port, Refusing(), local_delivery=sink)
        async with running(b, a):
            with pytest.raises(smtplib.SMTPDataError) as e:
                await send("127.61.0.1", port, ["b@ours.example"])
            assert e.value.smtp_code == 451
            with pytest.raises(smtplib.SMTPDataError) as e:
                await send("127.61.0.2", port, ["b@ours.example"])
            assert e.value.smtp_code == 550
            await send("127.61.0.2", port, ["b@ours.example"], MSG + b"virus\r\n")
            assert sink.got == []
            quarantined = list((tmp_path / "quarantine" / "b.0" / "queue").glob("*.msg"))
            assert len(quarantined) == 1

    run(main())


def test_failover_to_the_twin_when_one_host_is_down(tmp_path: Path) -> None:
    async def main() -> None:
        port = free_port("127.0.0.1")
        sink = Collector()
        twin = make_relay(tmp_path, "next.1", "127.61.0.3", port, local_delivery=sink)
        relay = make_relay(
            tmp_path,
            "relay.0",
            "127.61.0.1",
            port,
            balance="round_robin",
            next_hop=("127.61.0.2", "127.61.0.3"),
            next_hop_name="next",
        )
        async with running(twin, relay):
            for _ in range(4):
                await send("127.61.0.1", port, ["b@ours.example"])
            await until(lambda: len(sink.got) == 4)
            assert relay.spool is not None
            await until(lambda: len(relay.spool) == 0)

    run(main())


def test_restarted_relay_delivers_its_spool(tmp_path: Path) -> None:
    async def main() -> None:
        port = free_port("127.0.0.1")
        relay = forwarding_relay(tmp_path, port)
        async with running(relay):
            for i in range(3):
                await send("127.61.0.1", port, ["b@ours.example"], MSG + b"n%d\r\n" % i)
        # the next hop was down the whole time: all three are spooled
        assert len(Spool(tmp_path / "spool" / "relay.0")) == 3
        sink = Collector()
        final = final_relay(tmp_path, port, sink)
        relay = forwarding_relay(tmp_path, port)
        async with running(final, relay):
            await until(lambda: len(sink.got) == 3)
            await until(lambda: len(relay.spool) == 0)
            assert sorted(d[-4:] for _, d in sink.got) == [b"n0\r\n", b"n1\r\n", b"n2\r\n"]

    run(main())


def test_bounce_after_queue_lifetime_then_postmaster_and_never_dropped(tmp_path: Path) -> None:
    """Issue #16: the original expires and bounces; its DSN (from <>) cannot be delivered
    either and goes to the postmaster; that notice stays spooled until it can be
    delivered — nothing the relay accepted is dropped."""

    async def main() -> None:
        port = free_port("127.0.0.1")
        relay = forwarding_relay(tmp_path, port, max_queue_lifetime_s=0.3)
        sink = Collector()
        async with running(relay):
            await send("127.61.0.1", port, ["b@ours.example"])
            await asyncio.sleep(2.0)  # past every lifetime: only the postmaster notice is left
            assert len(relay.spool) == 1
            [path] = relay.spool.queue_dir.glob("*.msg")
            left = SpoolEntry.from_bytes(path.read_bytes())
            assert left.rcpt_tos == ["postmaster@ours.example"] and left.mail_from == ""
            async with running(final_relay(tmp_path, port, sink)):
                await until(lambda: len(relay.spool) == 0)
        [(user, notice)] = sink.got
        assert user == "postmaster"
        # the whole failed bounce is returned, and it names the original recipient
        assert b"message/rfc822" in notice and b"Final-Recipient: rfc822; b@ours.example" in notice
        hops = list(read_hops(tmp_path / "traces" / "relay.0.jsonl"))
        outcomes = sorted((h.flow, h.outcome) for h in hops)
        # the DSN to a@ours.example and the notice are internal mail; the original inbound
        expected = [("inbound", "bounced"), ("internal", "bounced"), ("internal", "relayed")]
        assert outcomes == expected

    run(main())


def test_forged_authentication_results_from_our_domain_are_removed() -> None:
    from mailgate.realnet.relay.authresults import strip_forged_results

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


def test_fast_path_parser_agrees_with_aiosmtpd() -> None:
    from aiosmtpd.smtp import SMTP

    from mailgate.realnet.relay.protocol import SmtpProtocol as _Protocol

    loop = asyncio.new_event_loop()
    try:
        ours, theirs = _Protocol(object(), loop=loop), SMTP(object(), loop=loop)
        for arg in [
            "<a@b.example>",
            "<a@b.example> SIZE=123 BODY=8BITMIME",
            " <x.y+z@q-r.example>  SIZE=1",
            "<a@b.example>SIZE=1",
            "<>",
            '<"q x"@b.example>',
            "a@b.example",
            "<@route:a@b.example>",
            "<" + "l" * 70 + "@b.example>",
        ]:
            assert ours._getaddr(arg) == theirs._getaddr(arg), arg
    finally:
        loop.close()


def test_session_limit_answers_extra_connections_421_at_once(tmp_path: Path) -> None:
    async def main() -> None:
        port = free_port("127.0.0.1")
        relay = make_relay(
            tmp_path, "mx.0", "127.61.0.1", port, local_delivery=Collector(), session_limit=1
        )
        async with running(relay):
            r1, w1 = await asyncio.open_connection("127.61.0.1", port)
            assert (await r1.readline()).startswith(b"220")
            r2, w2 = await asyncio.open_connection("127.61.0.1", port)
            # no slot: a 421 at once (it used to be silence until a slot came free)
            assert (await asyncio.wait_for(r2.readline(), 2)).startswith(b"421 4.3.2")
            assert await asyncio.wait_for(r2.read(), 2) == b""  # closed
            w2.close()
            w1.write(b"QUIT\r\n")
            assert (await r1.readline()).startswith(b"221")
            w1.close()
            await asyncio.sleep(0.1)
            r3, w3 = await asyncio.open_connection("127.61.0.1", port)
            assert (await asyncio.wait_for(r3.readline(), 5)).startswith(b"220")
            w3.close()

    run(main())


def test_a_host_that_greets_with_554_or_hangs_is_skipped_for_its_twin(tmp_path: Path) -> None:
    async def main() -> None:
        port = free_port("127.0.0.1")

        async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"554 no service here\r\n")
            await writer.drain()
            writer.close()

        hung: list[asyncio.StreamWriter] = []

        async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            hung.append(writer)  # accepts, never greets; closed by the test

        bad = await asyncio.start_server(refuse, "127.61.0.2", port)
        slow = await asyncio.start_server(hang, "127.61.0.4", port)
        sink = Collector()
        twin = make_relay(tmp_path, "next.1", "127.61.0.3", port, local_delivery=sink)
        relay = make_relay(
            tmp_path,
            "relay.0",
            "127.61.0.1",
            port,
            balance="round_robin",
            next_hop=("127.61.0.2", "127.61.0.4", "127.61.0.3"),
            next_hop_name="next",
            connect_timeout_s=0.5,
        )
        async with running(twin, relay):
            for _ in range(3):
                await send("127.61.0.1", port, ["b@ours.example"])
            await until(lambda: len(sink.got) == 3)
            for writer in hung:
                writer.close()
            for server in (bad, slow):
                server.close()
                await server.wait_closed()

    run(main())


def test_dot_stuffing_and_terminator() -> None:
    from mailgate.realnet.relay.smtpclient import dot_stuff

    assert dot_stuff(b".a\r\nb\r\n.\r\n..c\r\n") == b"..a\r\nb\r\n..\r\n...c\r\n.\r\n"
    assert dot_stuff(b"no final newline") == b"no final newline\r\n.\r\n"


def test_spool_acknowledges_only_after_file_rename_and_directory_are_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The order a crash-safe store needs: write, fsync file, rename, fsync directory, 250."""
    import os

    import mailgate.realnet.relay.spool as spool_module

    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        kind = "dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file"
        events.append(f"fsync-{kind}")
        real_fsync(fd)

    def replace(src: str, dst: object) -> None:
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(spool_module.os, "fsync", fsync)
    monkeypatch.setattr(spool_module.os, "replace", replace)

    async def main() -> None:
        spool = Spool(tmp_path)
        await spool.put(SpoolEntry("one", "a@x", ["b@y"], b"x\r\n"))
        events.append("acknowledged")
        await spool.remove("one")
        events.append("removed")
        spool.close()

    run(main())
    assert events == [
        "fsync-file",
        "rename",
        "fsync-dir",
        "acknowledged",
        "fsync-dir",
        "removed",
    ]
