"""Benchmark: what TLS costs a realnet host, in CPU per connection and per KB.

    PYTHONPATH=. python benchmarks/bench_tls.py [--handshakes 300] [--kb 4096] [--json]

Both ends run in this one process over memory BIOs (no sockets, no event loop),
with the key pairs the testbed makes (``realnet.services.tls``: ECDSA P-256, a
local CA) and the contexts the relays use. Reported:

- ``handshake_server_s`` / ``handshake_client_s``: CPU of one full TLS handshake
  (TLS 1.3, no resumption) on the server side and the client side, each the
  median over ``--handshakes`` handshakes, measured with ``thread_time`` around
  that side's own calls only;
- ``mutual_server_s`` / ``mutual_client_s``: the same for a mutual handshake, as
  between our tiers (the server asks for the client's certificate and verifies it
  against the local CA; the client signs with its host key);
- ``encrypt_per_kb_s`` / ``decrypt_per_kb_s``: CPU per KB of application data
  (16 KB records, the cipher the handshake chose), over ``--kb`` KB.

These are the numbers scenarios/loopback-testbed.toml gives the model's ``tls``
stage (docs/model.md): the handshake where a connection carries one message (the
MX from the Internet, submission), the per-KB part on every hop.
"""

from __future__ import annotations

import argparse
import json
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mailgate.realnet.services.tls import (  # noqa: E402
    HostIdentity,
    client_context,
    ensure_ca,
    server_context,
)


def _pump(src: ssl.MemoryBIO, dst: ssl.MemoryBIO) -> None:
    data = src.read()
    if data:
        dst.write(data)


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> tuple[float, float, tuple]:
    """One full handshake; (server CPU s, client CPU s, the objects for data transfer)."""
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="127.0.0.1")
    cpu = {"server": 0.0, "client": 0.0}
    done = {"server": False, "client": False}
    for _ in range(20):
        for name, obj in (("client", client), ("server", server)):
            if done[name]:
                continue
            t0 = time.thread_time()
            try:
                obj.do_handshake()
                done[name] = True
            except ssl.SSLWantReadError:
                pass
            cpu[name] += time.thread_time() - t0
            _pump(c_out, s_in)
            _pump(s_out, c_in)
        if all(done.values()):
            break
    assert all(done.values()), "handshake did not finish"
    return cpu["server"], cpu["client"], (server, client, s_in, s_out, c_in, c_out)


def transfer(objs: tuple, kb: int) -> tuple[float, float]:
    """(encrypt CPU per KB, decrypt CPU per KB), client → server, 16 KB writes."""
    server, client, s_in, _s_out, _c_in, c_out = objs
    chunk = b"x" * 16384
    enc = dec = 0.0
    for _ in range(max(1, kb // 16)):
        t0 = time.thread_time()
        client.write(chunk)
        enc += time.thread_time() - t0
        _pump(c_out, s_in)
        t0 = time.thread_time()
        got = 0
        while got < len(chunk):
            got += len(server.read(65536))
        dec += time.thread_time() - t0
    n_kb = max(1, kb // 16) * 16
    return enc / n_kb, dec / n_kb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handshakes", type=int, default=300)
    parser.add_argument("--kb", type=int, default=4096)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        ensure_ca(
            state,
            [
                HostIdentity("gw", "gw.example", "127.0.0.1"),
                HostIdentity("up", "up.example", "127.0.0.2"),
            ],
        )
        server_ctx = server_context(state, "gw")
        client_ctx = client_context(state)
        for _ in range(10):  # warm-up: imports, caches
            handshake(server_ctx, client_ctx)
        runs = [handshake(server_ctx, client_ctx) for _ in range(args.handshakes)]
        objs = runs[-1][2]
        mutual_server = server_context(state, "gw", ask_client_cert=True)
        mutual_client = client_context(state, "up")
        handshake(mutual_server, mutual_client)
        mutual = [handshake(mutual_server, mutual_client) for _ in range(args.handshakes)]
        assert mutual[-1][2][0].getpeercert(), "the server did not verify the client"
        enc, dec = transfer(objs, args.kb)
        result = {
            "protocol": objs[1].version(),
            "cipher": objs[1].cipher()[0],
            "handshakes": args.handshakes,
            "handshake_server_s": statistics.median(r[0] for r in runs),
            "handshake_client_s": statistics.median(r[1] for r in runs),
            "mutual_server_s": statistics.median(r[0] for r in mutual),
            "mutual_client_s": statistics.median(r[1] for r in mutual),
            "encrypt_per_kb_s": enc,
            "decrypt_per_kb_s": dec,
        }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['protocol']} {result['cipher']}, ECDSA P-256 keys from the local CA")
        print(
            f"handshake CPU (median of {args.handshakes}): server "
            f"{result['handshake_server_s'] * 1e3:.3f} ms, client "
            f"{result['handshake_client_s'] * 1e3:.3f} ms"
        )
        print(
            f"mutual (client certificate): server {result['mutual_server_s'] * 1e3:.3f} ms, "
            f"client {result['mutual_client_s'] * 1e3:.3f} ms"
        )
        print(f"per KB: encrypt {enc * 1e6:.2f} us, decrypt {dec * 1e6:.2f} us (over {args.kb} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
