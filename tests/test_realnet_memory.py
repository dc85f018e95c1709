"""A host's memory stays flat under a held load (issue #13, the soak's "memory flat").

Counted from outside the relay's own tallies: live objects in the garbage
collector's view, ``tracemalloc`` snapshots, and the kernel's RSS of a process.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
from asyncio import sslproto
from pathlib import Path

import pytest
import trustme
from hypothesis import given
from hypothesis import strategies as st

from mailgate.realnet.relay.config import RelayConfig
from mailgate.realnet.relay.relay import Relay
from mailgate.realnet.relay.smtpclient import ConnectionPool
from mailgate.realnet.relay.tls import ClientTls
from mailgate.realnet.testbed import allocator, memtrace

ROOT = Path(__file__).resolve().parent.parent


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _live(cls: type) -> int:
    return sum(1 for o in gc.get_objects() if isinstance(o, cls))


def test_a_finished_tls_connection_frees_its_tls_layer_without_the_collector(
    tmp_path: Path,
) -> None:
    """aiosmtpd's protocol object is cyclic garbage once its connection ends; it must
    not keep the TLS layer (256 KB buffer + OpenSSL state) until a full collection."""
    ca = trustme.CA()
    bind = "127.64.7.1"
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(bind).configure_cert(server_ctx)
    verified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(verified)
    tls = ClientTls(verified=verified, opportunistic=None, ours=frozenset({bind}))
    got: list[bytes] = []
    n = 30

    async def main() -> int:
        config = RelayConfig(
            host_id="mx.0",
            hostname="mx.ours.example",
            bind=bind,
            port=_free_port(bind),
            state_dir=tmp_path,
            local_domains=frozenset({"ours.example"}),
            local_delivery=lambda user, data: got.append(data),
            tls_context=server_ctx,
            require_tls=True,
        )
        relay = Relay(config)
        await relay.start()
        try:
            message = b"Subject: t\r\n\r\n" + b"x" * 10_000 + b"\r\n"
            for _ in range(n):  # each message on a connection of its own, then closed
                pool = ConnectionPool(helo="c.example", source=None, timeout=10, tls=tls)
                await pool.send(bind, config.port, "a@ours.example", ["b@ours.example"], message)
                await pool.close()
            await asyncio.sleep(0.3)  # the server sees each close
            return _live(sslproto.SSLProtocol)
        finally:
            await relay.stop()

    gc.collect()
    gc.disable()  # what a busy host looks like between two full collections
    try:
        alive = asyncio.run(asyncio.wait_for(main(), 60))
    finally:
        gc.enable()
        gc.collect()
    assert len(got) == n
    assert alive == 0


FRAGMENT = textwrap.dedent(
    """
    import sys
    from mailgate.realnet.testbed import allocator
    tuned = allocator.tune()
    first = bytearray(256 * 1024); del first  # glibc's dynamic mmap threshold goes up
    kept = []
    # bursts like those of TLS connections, each with a 256 KB buffer
    for burst in range(int(sys.argv[1])):
        bufs = []
        for i in range(200):
            b = bytearray(256 * 1024)
            b[::4096] = bytes(len(b[::4096]))
            bufs.append(b)
            kept.append(bytearray(600))  # long-lived, in glibc's heap (over 512 bytes)
        del bufs
        allocator.trim()
    rss = [l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1]
    print(int(rss) // 1024)
    """
)


def _rss_after_bursts(setting: str, bursts: int = 5) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT), allocator.ENV: setting}
    out = subprocess.run(
        [sys.executable, "-c", FRAGMENT, str(bursts)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or allocator._libc() is None, reason="glibc only"
)
def test_the_host_allocator_settings_give_freed_heap_back() -> None:
    """250 MB of 256 KB blocks in five bursts, freed each time: with the host's
    settings RSS ends within 10 MB of a process that made no burst. glibc's defaults
    usually keep a burst's worth (73 against 23 MB on the development machine), but
    not always (one CI run gave 23 for both), so only the settings' claim is asserted."""
    idle, tuned = _rss_after_bursts("", bursts=0), _rss_after_bursts("")
    default = _rss_after_bursts("off")
    assert tuned - idle <= 10, (idle, tuned, default)
    assert default >= tuned - 2, (idle, tuned, default)


def test_memtrace_snapshots_on_sigusr2_show_what_grew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(memtrace.ENV_DIR, str(tmp_path))
    monkeypatch.setenv(memtrace.ENV_HOSTS, "gateway1.0")
    assert memtrace.start("gateway2.0") is None  # not one of the hosts asked for
    trace = memtrace.start("gateway1.0")
    assert trace is not None
    grown: list[bytes] = []

    async def main() -> None:
        task = memtrace.schedule(trace)
        try:
            os.kill(os.getpid(), signal.SIGUSR2)
            await asyncio.sleep(0.2)
            grown.extend(bytes(1000) + str(i).encode() for i in range(2000))  # ~2 MB kept
            os.kill(os.getpid(), signal.SIGUSR2)
            await asyncio.sleep(0.2)
        finally:
            assert task is not None
            task.cancel()
            asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR2)

    try:
        asyncio.run(main())
    finally:
        import tracemalloc

        tracemalloc.stop()
    snaps = sorted(tmp_path.glob("gateway1.0-*.snap"))
    assert len(snaps) == 2
    report = memtrace.compare(str(snaps[0]), str(snaps[1]), top=3)
    first = report.splitlines()[1]
    assert float(first.split()[0]) > 1500  # KiB, the top growth
    assert "test_realnet_memory.py" in report


BIG_MESSAGES = textwrap.dedent(
    """
    import asyncio, socket, ssl, sys, tempfile
    from pathlib import Path
    import trustme
    from mailgate.realnet.relay.config import RelayConfig
    from mailgate.realnet.relay.relay import Relay
    from mailgate.realnet.relay.smtpclient import ConnectionPool
    from mailgate.realnet.relay.tls import ClientTls
    from mailgate.realnet.testbed import allocator

    allocator.tune()  # as a host does

    def rss_mb():
        status = open("/proc/self/status").read().split("VmRSS:")[1]
        return int(status.split()[0]) / 1024

    async def main():
        ca, bind = trustme.CA(), sys.argv[1]
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert(bind).configure_cert(server_ctx)
        with socket.socket() as s:
            s.bind((bind, 0))
            port = s.getsockname()[1]
        got = []
        relay = Relay(RelayConfig(
            host_id="mx.0", hostname="mx.ours.example", bind=bind, port=port,
            state_dir=Path(tempfile.mkdtemp()), local_domains=frozenset({"ours.example"}),
            local_delivery=lambda user, data: got.append(len(data)),
            tls_context=server_ctx, require_tls=True,
        ))
        await relay.start()
        verified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ca.configure_trust(verified)
        tls = ClientTls(verified=verified, opportunistic=None, ours=frozenset({bind}))
        pool = ConnectionPool(helo="c.example", source=None, timeout=120, tls=tls)
        line = b"Zm9vYmFyYmF6cXV4IGJhc2U2NCBsaW5lIG9mIGFuIGF0dGFjaG1lbnQgZm9vYmFyYmF6cXV4\\r\\n"
        small = b"Subject: s\\r\\n\\r\\n" + b"hello\\r\\n" * 300
        big = b"Subject: b\\r\\n\\r\\n" + line * (9_500_000 // len(line))

        async def round_of(message):
            sends = (pool.send(bind, port, "a@ours.example", ["b@ours.example"], message)
                     for _ in range(4))  # four connections at once, all kept in the pool
            await asyncio.gather(*sends)
            allocator.trim()

        await round_of(small)
        before = rss_mb()
        await round_of(big)
        await round_of(small)
        after = rss_mb()
        await pool.close()
        await relay.stop()
        print(len(got), before, after)

    asyncio.run(main())
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_pooled_tls_connections_do_not_keep_what_a_10_mb_message_needed() -> None:
    """Four 10 MB messages at once over TLS connections that stay in the pool: after
    them the process is back within 8 MB of its size before (it was +50 MB with
    aiosmtpd's line-per-object DATA and the message written to TLS in one piece,
    which OpenSSL's outgoing buffer kept for the connection's life)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", BIG_MESSAGES, "127.64.7.2"],
        env=env, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    delivered, before, after = out.stdout.split()
    assert int(delivered) == 12  # checked by the receiving side, not the pool
    assert float(after) - float(before) < 8, (before, after)


def _wrap_by_split(data: bytes, limit: int) -> bytes:
    """The former ``wrap_long_lines`` (a list of every line): the reference."""
    if len(data) <= limit:
        return data
    lines = data.split(b"\r\n")
    if all(len(line) <= limit for line in lines):
        return data
    out: list[bytes] = []
    for line in lines:
        while len(line) > limit:
            out.append(line[:limit])
            line = b" " + line[limit:]
        out.append(line)
    return b"\r\n".join(out)


@given(
    st.lists(st.binary(max_size=300), max_size=8).map(b"\r\n".join),
    st.integers(2, 120),
)
def test_wrap_long_lines_gives_what_the_line_list_gave(data: bytes, limit: int) -> None:
    from mailgate.realnet.relay.headers import wrap_long_lines

    assert wrap_long_lines(data, limit) == _wrap_by_split(data, limit)


ARENAS = textwrap.dedent(
    """
    import contextlib, io, os, re, sys, tempfile
    from mailgate.realnet.relay.headers import wrap_long_lines

    def highwater():
        with tempfile.TemporaryFile() as tmp:
            saved = os.dup(2)
            os.dup2(tmp.fileno(), 2)
            sys._debugmallocstats()
            os.dup2(saved, 2)
            tmp.seek(0)
            text = tmp.read().decode()
        return int(re.search(r"arenas highwater mark\\s*=\\s*([\\d,]+)", text)[1].replace(",", ""))

    line = b"a base64 line of an attachment, 76 bytes or so\\r\\n"
    body = b"x" * 2000 + b"\\r\\n" + line * 220_000
    before = highwater()
    out = wrap_long_lines(b"Subject: big\\r\\n\\r\\n" + body, 998)
    print(highwater() - before, len(out))
    """
)


@pytest.mark.skipif(not hasattr(sys, "_debugmallocstats"), reason="CPython's pymalloc")
def test_wrapping_a_10_mb_message_takes_no_pymalloc_arenas() -> None:
    """pymalloc's arena high-water mark (CPython's own count, 1 MB arenas) while a
    10 MB message with one long line is wrapped: a list of its 220,000 lines took
    17 more; one buffer takes none."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONMALLOC": "pymalloc"}
    out = subprocess.run(
        [sys.executable, "-c", ARENAS], env=env, capture_output=True, text=True, check=True
    )
    grown, size = out.stdout.split()
    assert int(size) > 10_000_000
    assert int(grown) <= 2, grown


def test_a_host_reads_tls_in_64_kb_not_256_kb(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every TLS connection (idle pooled ones too) allocates and zeroes asyncio's read
    buffer; a host makes it 64 KB (a TLS record is at most 16 KB)."""
    monkeypatch.setattr(sslproto.SSLProtocol, "max_size", sslproto.SSLProtocol.max_size)
    allocator.tune_tls_buffer()

    async def buffer_size() -> int:
        loop = asyncio.get_running_loop()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        proto = sslproto.SSLProtocol(loop, asyncio.Protocol(), context, None)
        proto._app_transport._closed = True  # never connected: nothing to close
        return len(proto._ssl_buffer)

    assert asyncio.run(buffer_size()) == 64 * 1024


def test_the_mailbox_forgets_a_message_once_it_is_retrieved(tmp_path: Path) -> None:
    """The mailbox server maps each filed Maildir file to its trace id for the POP trace.
    A 25-minute soak found it keeping every entry (14 MB for 56,000 messages): an entry
    now leaves when its message is retrieved, the trace still names the message, and a
    second RETR reads the message's own header."""
    from mailgate.realnet.addresses import AddressPlan
    from mailgate.realnet.relay.tracing import read_traces
    from mailgate.realnet.testbed.mailbox_server import UID_MEMORY, MailboxServer
    from mailgate.sim.scenario import load

    scenario = load(ROOT / "scenarios" / "loopback-testbed.toml")
    server = MailboxServer(scenario, AddressPlan(scenario), tmp_path)
    file_message = server.smtp.config.local_delivery
    assert file_message is not None
    user = sorted(u.name for u in scenario.realnet.users)[0]
    for i in range(50):
        body = f"X-Mailgate-Trace: mem-{i}; flow=inbound\r\nSubject: {i}\r\n\r\nhi\r\n"
        file_message(user, body.encode())
    files = sorted((tmp_path / "maildirs" / user / "new").iterdir())
    uids = [f.name.split(":", 1)[0] for f in files]
    assert len(uids) == 50 and len(server._uids) == 50  # the files on disk, the map
    for uid in uids:
        server._pop_event("retrieve", user, uid, 1.0, 2.0)
    server._pop_event("retrieve", user, uids[0], 3.0, 4.0)  # again: from the file
    asyncio.run(server.stop())  # never started: closes its tracers and guard
    assert len(server._uids) == 0
    traced = [h.msg_id for h in read_traces(tmp_path, "mem-") if h.outcome == "retrieved"]
    assert sorted(traced) == sorted([f"mem-{i}" for i in range(50)] + [traced_first(files)])
    assert UID_MEMORY <= 10_000  # mail never fetched is bounded too


def traced_first(files: list[Path]) -> str:
    """The trace id in the first file's header (the one retrieved twice)."""
    head = files[0].read_bytes().split(b"\r\n", 1)[0].decode()
    return head.split(":", 1)[1].split(";")[0].strip()
