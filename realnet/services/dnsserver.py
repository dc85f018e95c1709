"""The realnet DNS server: an authoritative server on loopback for a ``Zone``.

Every resolver in realnet (pyspf, dkimpy's key lookup, the relays' MX
lookup) asks this server and nothing else (:func:`make_resolver`), so SPF,
DKIM and routing see exactly the records the scenario implies (the records
and how a query is answered: :mod:`zone`).

The wire format is dnspython's; the server speaks UDP (truncating with TC
to the client's EDNS payload or 512 bytes) and TCP on the same port, and
can add a per-answer delay (``realnet.dns_delay_s``, or at run time through
:attr:`DnsServer.delay_s` or, across processes, ``dnscontrol.set_dns_delay``) to
imitate a slow resolver.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Iterator

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.nameserver
import dns.rcode
import dns.resolver

from mailgate.realnet.addresses import AddressPlan
from mailgate.realnet.services.dnscontrol import DelayControl
from mailgate.realnet.services.inthread import serve_in_thread
from mailgate.realnet.services.zone import Zone, build_zone
from mailgate.sim.scenario import Scenario

log = logging.getLogger(__name__)


def _wire(zone: Zone, data: bytes, max_size: int | None) -> bytes | None:
    """Answer one query in wire format; None for garbage that does not deserve a reply."""
    try:
        query = dns.message.from_wire(data)
    except dns.message.ShortHeader:
        return None
    except Exception:  # a malformed query: FORMERR with its id, if it has one
        response = dns.message.Message(id=struct.unpack("!H", data[:2])[0])
        response.flags = dns.flags.QR
        response.set_rcode(dns.rcode.FORMERR)
        return response.to_wire()
    response = zone.answer(query)
    if max_size is None:
        # TCP: anything up to 64 KiB (to_wire's default would be the query's EDNS payload).
        return response.to_wire(max_size=65535)
    limit = max(512, query.payload) if query.edns >= 0 else 512
    try:
        return response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        # Too big for UDP: an empty answer with TC tells the client to retry over TCP.
        truncated = dns.message.make_response(query)
        truncated.flags |= dns.flags.TC | dns.flags.AA
        return truncated.to_wire()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.server.queries += 1
        try:
            wire = _wire(self.server.zone, data, max_size=512)
        except Exception:  # never let one query kill the server
            log.exception("DNS query from %s failed", addr)
            return
        if wire is None or self.transport is None:
            return
        delay = self.server.current_delay()
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self._send, wire, addr)
        else:
            self._send(wire, addr)

    def _send(self, wire: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(wire, addr)


class DnsServer:
    """Authoritative DNS for a :class:`Zone` on ``host:port`` over UDP and TCP.

    ``port=0`` picks a free port (the same for UDP and TCP); after
    :meth:`start`, :attr:`port` holds it.
    """

    def __init__(self, zone: Zone, host: str, port: int = 0, delay_s: float = 0.0) -> None:
        self.zone = zone
        self.address = host
        self.port = port
        self.delay_s = delay_s
        #: a run-time delay on top (``dnscontrol``: a replayed ``failures.dns_slow``)
        self.control: DelayControl | None = None
        self.queries = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tcp_tasks: set[asyncio.Task[None]] = set()

    @property
    def host(self) -> str:
        return self.address

    def current_delay(self) -> float:
        """The delay of an answer sent now."""
        return self.delay_s + (self.control.delay_s() if self.control else 0.0)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for _attempt in range(20):
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(self.address, self.port)
            )
            port = transport.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(
                    self._serve_tcp, self.address, port, reuse_address=True
                )
            except OSError:
                transport.close()
                if self.port:  # a fixed port that is taken: nothing to retry
                    raise
                continue
            self._udp, self.port = transport, port  # type: ignore[assignment]
            return
        raise OSError(f"no free port for UDP and TCP together on {self.address}")

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
            await asyncio.sleep(0)  # the socket is closed on the next loop iteration
        if self._tcp is not None:
            self._tcp.close()
            for task in list(self._tcp_tasks):
                task.cancel()
            await asyncio.gather(*self._tcp_tasks, return_exceptions=True)
            await self._tcp.wait_closed()
            self._tcp = None

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tcp_tasks.add(task)
        try:
            while True:  # RFC 7766: several queries may share one connection
                try:
                    (length,) = struct.unpack("!H", await reader.readexactly(2))
                    data = await reader.readexactly(length)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.queries += 1
                wire = _wire(self.zone, data, max_size=None)
                if wire is None:
                    return
                delay = self.current_delay()
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(struct.pack("!H", len(wire)) + wire)
                await writer.drain()
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("DNS over TCP failed")
        finally:
            self._tcp_tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


@contextlib.contextmanager
def run_dns_in_thread(
    zone: Zone, host: str = "127.0.0.1", port: int = 0, delay_s: float = 0.0
) -> Iterator[DnsServer]:
    """Run a :class:`DnsServer` on its own event loop in a thread (for tests and tools)."""
    with serve_in_thread(DnsServer(zone, host, port, delay_s), "realnet-dns") as server:
        yield server


def make_resolver(host: str, port: int, timeout: float = 2.0) -> dns.resolver.Resolver:
    """A resolver that asks only ``host:port``: no resolv.conf, no search list, no cache."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [dns.nameserver.Do53Nameserver(host, port)]
    resolver.search = []
    resolver.use_search_by_default = False
    resolver.domain = dns.name.root
    resolver.cache = None
    resolver.timeout = timeout
    resolver.lifetime = 2 * timeout
    # EDNS with a 1232-byte payload keeps RSA-2048 DKIM keys in one UDP answer.
    resolver.use_edns(0, 0, 1232)
    return resolver


def scenario_server(
    scenario: Scenario, plan: AddressPlan, dkim_public_txt: str, *, port: int | None = None
) -> DnsServer:
    """The realnet DNS for a scenario: at ``plan.dns``, delayed by ``realnet.dns_delay_s``."""
    zone = build_zone(scenario, plan, dkim_public_txt)
    return DnsServer(
        zone, plan.dns.host, plan.dns.port if port is None else port, scenario.realnet.dns_delay_s
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m mailgate.realnet.services.dnsserver SCENARIO KEYDIR``: serve the
    scenario's DNS until SIGTERM.

    KEYDIR holds the DKIM key (:meth:`realnet.services.keys.DkimKey.save`); one is
    generated there if it is missing or does not match the scenario.
    """
    import argparse
    import signal

    from mailgate.realnet.services.keys import DkimKey
    from mailgate.sim.scenario.loading import load

    parser = argparse.ArgumentParser(prog="python -m mailgate.realnet.services.dnsserver")
    parser.add_argument("scenario")
    parser.add_argument("keydir")
    parser.add_argument("--port", type=int, default=None, help="override realnet.dns_port")
    args = parser.parse_args(argv)
    scenario = load(args.scenario)
    plan = AddressPlan(scenario)
    rn = scenario.realnet
    key = DkimKey.load_or_generate(
        args.keydir, rn.dkim_algorithm, rn.dkim_selector, scenario.population.domains[0]
    )
    server = scenario_server(scenario, plan, key.public_txt, port=args.port)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await server.start()
        print(f"realnet DNS on {server.address}:{server.port}", flush=True)
        try:
            await stop.wait()
        finally:
            await server.stop()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
