"""One realnet host as one OS process (``python -m mailgate.realnet.testbed.host``).

``ID`` is a scenario host id (``gateway1.0``, ``mailbox.0``), ``dns`` (the
authoritative DNS server) or ``remote`` (every remote MX sink). The process
binds its own loopback address from the ``AddressPlan``, so killing it is a
host failure. When its servers listen it writes ``run/<ID>.ready`` (its pid)
in the state dir; it stops cleanly on SIGTERM (or SIGINT when run by hand;
under the supervisor, which sets ``MAILGATE_SUPERVISED``, Ctrl-C is the
supervisor's to handle). It exits with ``CANNOT_BIND`` when its address is
taken, and asks its service to ``flush()`` its queue on SIGUSR1 (if it can).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import logging
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

from mailgate.realnet.addresses import AddressPlan
from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.loading import load

#: The exit code of a host that could not bind its address (another program holds it):
#: the supervisor does not retry it.
CANNOT_BIND = 98


def ready_file(state_dir: Path, host_id: str) -> Path:
    """Where ``host_id`` announces that it listens (the supervisor waits for it)."""
    return state_dir / "run" / f"{host_id}.ready"


def build_service(
    scenario: Scenario, plan: AddressPlan, host_id: str, state_dir: Path, skip: tuple[str, ...] = ()
) -> Any:
    """The object (with async start/stop) that plays ``host_id``."""
    if host_id == "dns":
        from mailgate.realnet.services.dnscontrol import DelayControl
        from mailgate.realnet.services.dnsserver import scenario_server
        from mailgate.realnet.services.keys import DkimKey

        server = scenario_server(scenario, plan, DkimKey.load(state_dir / "dkim").public_txt)
        server.control = DelayControl(state_dir)  # a replayed dns_slow reaches it here
        return server
    if host_id == "remote":
        from mailgate.realnet.testbed.remote import RemoteSink

        return RemoteSink(scenario, plan, state_dir, skip)
    if host_id not in scenario.host_ids:
        raise SystemExit(f"unknown host {host_id!r}; expected one of {scenario.host_ids}")
    from mailgate.realnet.testbed.mailbox_server import MailboxServer, is_mailbox

    if is_mailbox(host_id):
        return MailboxServer(scenario, plan, state_dir, host_id)
    from mailgate.realnet.testbed.gateways import build_gateway

    return build_gateway(scenario, plan, host_id, state_dir)


async def serve(
    scenario: Scenario, host_id: str, state_dir: Path, skip: tuple[str, ...] = ()
) -> None:
    """Start the host, announce readiness, run until SIGTERM/SIGINT, stop."""
    from mailgate.realnet.testbed import allocator, memtrace

    trace = memtrace.start(host_id)  # MAILGATE_TRACEMALLOC: a debug aid, off by default
    plan = AddressPlan(scenario)
    service = build_service(scenario, plan, host_id, state_dir, skip)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    if os.environ.get("MAILGATE_SUPERVISED"):
        # Ctrl-C in the terminal reaches the whole process group: the supervisor
        # alone decides, and stops us by PID with SIGTERM
        loop.add_signal_handler(signal.SIGINT, lambda: None)
    else:
        loop.add_signal_handler(signal.SIGINT, stop.set)
    # "retry your queue now" (Postfix's postqueue -f), sent by the supervisor when a host
    # this one delivers to is back: a relay with a flush() need not wait out its backoff
    flush = getattr(service, "flush", None)
    loop.add_signal_handler(signal.SIGUSR1, flush if callable(flush) else lambda: None)
    try:
        await service.start()
    except OSError as e:
        if e.errno != errno.EADDRINUSE:
            raise
        logging.getLogger(__name__).error("%s cannot bind: %s", host_id, e)
        raise SystemExit(CANNOT_BIND) from None
    ready = ready_file(state_dir, host_id)
    ready.parent.mkdir(parents=True, exist_ok=True)
    ready.write_text(str(os.getpid()))
    allocator.freeze_startup()
    dumper = memtrace.schedule(trace)
    trimmer = allocator.schedule_trim()  # freed heap back to the kernel: RSS stays flat
    try:
        await stop.wait()
    finally:
        ready.unlink(missing_ok=True)
        await service.stop()
        if trimmer is not None:
            trimmer.cancel()
        if dumper is not None and trace is not None:
            dumper.cancel()
            trace.dump()


def main(argv: list[str] | None = None) -> int:
    from mailgate.realnet.testbed import allocator

    allocator.tune()  # before the threads and the large allocations (see allocator)
    allocator.tune_tls_buffer()
    parser = argparse.ArgumentParser(
        prog="python -m mailgate.realnet.testbed.host", description=__doc__
    )
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--host", required=True, help="host id, 'dns' or 'remote'")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--overrides", default="{}", help="JSON of dotted scenario overrides")
    parser.add_argument(
        "--external-mx",
        default="",
        help="remote: comma-separated domains whose MX is a real MTA run elsewhere (no sink)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {args.host} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # aiosmtpd logs every connection at INFO: far too chatty for a relay under load;
    # AUTH without TLS is deliberate (loopback only), so its warning is noise here
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    scenario = load(args.scenario, json.loads(args.overrides))
    skip = tuple(d for d in args.external_mx.split(",") if d)
    asyncio.run(serve(scenario, args.host, Path(args.state_dir), skip))
    return 0


if __name__ == "__main__":
    sys.exit(main())
