"""A chain of stock Postfix instances on loopback, loaded at a bounded rate, and its log.

``gateway0`` (the MX) relays ``chain.example`` to ``gateway1``, which relays it to
``mailbox``, which files it into Maildirs with the ``virtual`` agent: the model's inbound
path (Gateway0 -> Gateway1 -> mailbox server) as three Postfix instances on their own
127.x addresses, each with a private config folder and its own ``maillog_file``
(``benchmarks.stockpostfix``). A load generator sends Poisson arrivals at each given rate
for a bounded count and time (lognormal sizes, some mail with two recipients, a small
share to an unknown user that bounces at ``gateway1``); then the chain drains, every
Postfix is stopped, and the three logs are merged by time into one file.

    sudo .venv/bin/python -m benchmarks.postfix_chain --rates 4,16 --count 150 --out DIR

writes ``DIR/chain-4.log`` and ``DIR/chain-16.log`` (a fresh chain per rate).

``--anonymise`` hashes addresses and Message-IDs in the merged log (what
``tests/data/maillog/chain-*.log.gz`` ship). Needs root and Debian's postfix.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import pwd
import random
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from benchmarks.stockpostfix import StockPostfix, available

DOMAIN = "chain.example"
SENDER_DOMAIN = "sender.example"
PORT = 2525
USERS = 50
#: Instance name -> its loopback address (distinct 127.x, none used by other tests).
ADDRESSES = {"gateway0": "127.61.0.1", "gateway1": "127.61.1.1", "mailbox": "127.61.2.1"}


def _relay_to(next_hop: str) -> dict[str, str]:
    return {
        "relay_domains": DOMAIN,
        "transport_maps": f"inline:{{{DOMAIN}=smtp:[{ADDRESSES[next_hop]}]:{PORT}}}",
        # mail for anyone else (bounce notices to the senders) fails at once, no retries
        "default_transport": "error:5.1.2 no route outside the chain",
    }


def chain_instances(root: Path) -> list[StockPostfix]:
    """The three instances, configured but not started (workdirs under ``root``)."""
    postfix = pwd.getpwnam("postfix")
    out = []
    for name, extra in (
        ("gateway0", _relay_to("gateway1")),
        ("gateway1", _relay_to("mailbox")),
        ("mailbox", {}),
    ):
        work = root / name
        work.mkdir(parents=True, exist_ok=True)
        work.chmod(0o755)
        # delays to the millisecond (Postfix's default is 10 ms: most hops here log "0")
        main = {"myhostname": f"{name}.{DOMAIN}", "delay_logging_resolution_limit": "3", **extra}
        if name == "mailbox":
            vmail = work / "vmail"
            vmail.mkdir(exist_ok=True)
            maps = work / "mailboxes.regexp"
            maps.write_text(f"/^user[0-9]+@{DOMAIN}$/ inbox/\n/^postmaster@{DOMAIN}$/ pm/\n")
            main.update(
                {
                    "virtual_mailbox_domains": DOMAIN,
                    "virtual_mailbox_base": str(vmail),
                    "virtual_mailbox_maps": f"regexp:{maps}",
                    "virtual_uid_maps": f"static:{postfix.pw_uid}",
                    "virtual_gid_maps": f"static:{postfix.pw_gid}",
                    "default_transport": "error:5.1.2 no route outside the chain",
                }
            )
            shutil.chown(vmail, "postfix", "postfix")
        main["smtp_bind_address"] = ADDRESSES[name]  # the next hop sees who sent
        out.append(StockPostfix(f"{ADDRESSES[name]}:{PORT}", main, workdir=work))
    return out


@contextlib.contextmanager
def running_chain(root: Path) -> Iterator[list[StockPostfix]]:
    """Start the chain (last hop first); stop every instance on the way out."""
    instances = chain_instances(root)
    started: list[StockPostfix] = []
    try:
        for pf in reversed(instances):
            pf.start()
            started.append(pf)
        yield instances
    finally:
        for pf in started:
            pf.stop()


def message(rng: random.Random, n: int, rcpts: Sequence[str], median_kb: float) -> bytes:
    """A plain message of lognormal size with its own Message-ID."""
    size = max(200, int(rng.lognormvariate(0, 0.9) * median_kb * 1024))
    body = ("x" * 76 + "\r\n") * (size // 78 + 1)
    return (
        f"From: <sender{n % 7}@{SENDER_DOMAIN}>\r\nTo: {', '.join(rcpts)}\r\n"
        f"Subject: chain load {n}\r\nMessage-ID: <chain.{n}.{rng.getrandbits(40):x}@"
        f"{SENDER_DOMAIN}>\r\n\r\n{body}"
    ).encode()


async def load(
    rate: float, count: int, max_s: float, seed: int, first: int = 0, unknown_share: float = 0.02
) -> dict[str, int]:
    """Poisson arrivals at ``rate``/s to gateway0, at most ``count`` or ``max_s`` seconds."""
    from mailgate.realnet.addresses import Endpoint
    from mailgate.realnet.load.mailclients import ProtocolError, smtp_send

    rng = random.Random(seed)
    endpoint = Endpoint(ADDRESSES["gateway0"], PORT)
    sent = refused = 0
    tasks: set[asyncio.Task[None]] = set()

    async def one(n: int) -> None:
        nonlocal sent, refused
        rcpts = [f"user{rng.randrange(USERS)}@{DOMAIN}"]
        if rng.random() < 0.1:
            rcpts.append(f"user{rng.randrange(USERS)}@{DOMAIN}")
        if rng.random() < unknown_share:
            rcpts = [f"nobody{n}@{DOMAIN}"]
        data = message(rng, n, rcpts, median_kb=4.0)
        try:
            await smtp_send(endpoint, f"sender{n % 7}@{SENDER_DOMAIN}", rcpts, data, timeout=30)
            sent += 1
        except (ProtocolError, OSError, TimeoutError):
            refused += 1

    start = time.monotonic()
    due = start
    for i in range(count):
        due += rng.expovariate(rate)
        if due - start > max_s:
            break
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        task = asyncio.create_task(one(first + i))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    return {"sent": sent, "refused": refused}


def drain(instances: Sequence[StockPostfix], timeout_s: float = 60.0) -> bool:
    """Wait until no instance has mail queued."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(pf.queue_size() == 0 for pf in instances):
            return True
        time.sleep(0.5)
    return False


def merge_logs(logs: Sequence[Path]) -> list[str]:
    """The instances' lines in one list, ordered by their timestamp (stable within a file),
    like a central syslog host's file."""
    rows = []
    for k, log in enumerate(logs):
        for i, line in enumerate(log.read_text(errors="replace").splitlines()):
            rows.append((line[:15], k, i, line))  # "Dec 02 10:17:41" sorts within a day
    return [r[3] for r in sorted(rows)]


def run_once(rate: float, count: int, max_s: float, seed: int) -> list[str]:
    """Start a fresh chain, load it at ``rate``, drain, stop; the merged log lines."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mailgate-chain-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        with running_chain(root) as instances:
            r = asyncio.run(load(rate, count, max_s, seed))
            print(f"rate {rate}/s: {r}", file=sys.stderr)
            if not drain(instances):
                print("warning: mail still queued after 60 s", file=sys.stderr)
        return merge_logs([pf.log for pf in instances])


def write_log(path: Path, lines: Sequence[str], gz: bool) -> None:
    """Plain text, or gzip with mtime 0 (the same log gives the same bytes)."""
    text = "".join(line + "\n" for line in lines)
    if gz:
        with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
            f.write(text.encode())
    else:
        path.write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rates", default="4,16", help="messages/s, comma-separated (one load each)")
    p.add_argument("--count", type=int, default=120, help="messages per rate at most")
    p.add_argument("--max-seconds", type=float, default=60.0, help="seconds per rate at most")
    p.add_argument("--seed", type=int, default=14)
    p.add_argument("--out", type=Path, required=True, help="folder for chain.log(.gz)")
    p.add_argument("--anonymise", action="store_true", help="hash addresses and Message-IDs")
    p.add_argument("--gzip", action="store_true", help="write chain.log.gz")
    args = p.parse_args(argv)
    if not available():
        print("needs Debian's postfix and root", file=sys.stderr)
        return 2

    rates = [float(r) for r in args.rates.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    for k, rate in enumerate(rates):
        lines = run_once(rate, args.count, args.max_seconds, args.seed + k)
        if args.anonymise:
            from mailgate.calibration.maillog.privacy import Hasher, anonymise_line

            hasher = Hasher(salt=b"mailgate-sample")
            lines = [anonymise_line(line, hasher) for line in lines]
        name = f"chain-{rate:g}.log" + (".gz" if args.gzip else "")
        write_log(args.out / name, lines, args.gzip)
        print(f"wrote {args.out / name} ({len(lines)} lines)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
