"""Per-operation costs of the realnet services on this machine (a quick, bounded benchmark).

``python -m realnet.bench_services [--n N]`` prints the median wall time of
each operation the relays and the mailbox server call: a DNS lookup through
the realnet server, an SPF check, DKIM signing and verification (RSA-2048 and
ed25519), a durable Maildir delivery, an embedded antivirus scan, and a POP3
session (login with the scenario's scrypt cost, STAT, RETR, DELE, QUIT).
These are first guesses for the scenario's stage costs; ``mailgate
calibrate`` fits the real ones.
"""

from __future__ import annotations

import argparse
import poplib
import statistics
import tempfile
import time
from collections.abc import Callable

from mailgate.realnet.addresses import AddressPlan
from mailgate.realnet.services import maildir
from mailgate.realnet.services.antivirus import EmbeddedScanner
from mailgate.realnet.services.checks import check_spf, sign_dkim, verify_dkim
from mailgate.realnet.services.dnsserver import make_resolver, run_dns_in_thread
from mailgate.realnet.services.inthread import serve_in_thread
from mailgate.realnet.services.keys import DkimKey
from mailgate.realnet.services.passwords import hash_password
from mailgate.realnet.services.pop3 import Pop3Server
from mailgate.realnet.services.zone import build_zone
from mailgate.sim.scenario.loading import load

HOST = "127.0.0.1"


def median_ms(fn: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def sample_message(domain: str, kb: int = 8) -> bytes:
    body = b"".join(
        b"%06d lorem ipsum dolor sit amet consectetur adipiscing\r\n" % i for i in range(16 * kb)
    )
    return (
        f"From: selftest@{domain}\r\nTo: someone@bigmail.example\r\nSubject: bench\r\n"
        f"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <bench@{domain}>\r\n\r\n"
    ).encode() + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m realnet.bench_services")
    parser.add_argument("--scenario", default="scenarios/loopback-testbed.toml")
    parser.add_argument("--n", type=int, default=50, help="repetitions per operation (≤ 1000)")
    args = parser.parse_args(argv)
    n = max(1, min(args.n, 1000))
    scenario = load(args.scenario)
    plan = AddressPlan(scenario)
    domain = scenario.population.domains[0]
    selector = scenario.realnet.dkim_selector
    keys = {a: DkimKey.generate(a, selector, domain) for a in ("rsa-sha256", "ed25519-sha256")}
    message = sample_message(domain)
    rows: list[tuple[str, float]] = []
    for algorithm, key in keys.items():
        with run_dns_in_thread(build_zone(scenario, plan, key.public_txt), HOST, 0) as dns:
            resolver = make_resolver(HOST, dns.port)
            if algorithm == "rsa-sha256":
                rows.append(
                    ("DNS TXT lookup", median_ms(lambda r=resolver: r.resolve(domain, "TXT"), n))
                )
                sender = plan.remote_sender_address("bigmail.example")
                rows.append(
                    (
                        "SPF check (pass)",
                        median_ms(
                            lambda r=resolver, ip=sender: check_spf(
                                r, ip, "a@bigmail.example", "mta"
                            ),
                            n,
                        ),
                    )
                )
            signed = sign_dkim(message, key)
            rows.append(
                (f"DKIM sign {algorithm} (8 KB)", median_ms(lambda k=key: sign_dkim(message, k), n))
            )
            rows.append(
                (
                    f"DKIM verify {algorithm} (8 KB)",
                    median_ms(lambda m=signed, r=resolver: verify_dkim(m, r), n),
                )
            )
    scanner = EmbeddedScanner()
    rows.append(("embedded antivirus scan (8 KB)", median_ms(lambda: scanner.scan(message), n)))
    with tempfile.TemporaryDirectory() as root:
        rows.append(
            ("Maildir delivery (fsync)", median_ms(lambda: maildir.deliver(root, "u", message), n))
        )
        rows.append(("POP3 session (scrypt n=16384)", _pop_session_ms(root, min(n, 20))))
    width = max(len(name) for name, _ in rows)
    for name, ms in rows:
        print(f"{name:<{width}}  {ms:8.3f} ms")
    return 0


def _pop_session_ms(root: str, n: int) -> float:
    for _ in range(n):
        maildir.deliver(root, "bench", sample_message("drive-network.example"))
    with serve_in_thread(Pop3Server(root, {"bench": hash_password("pw")}, HOST, 0)) as server:

        def session() -> None:
            client = poplib.POP3(HOST, server.port, timeout=10)
            try:
                client.user("bench")
                client.pass_("pw")
                client.stat()
                client.retr(1)
                client.dele(1)
            finally:
                client.quit()

        return median_ms(session, n)


if __name__ == "__main__":
    raise SystemExit(main())
