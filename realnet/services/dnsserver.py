"""The realnet DNS: an authoritative server on loopback whose zones come from the scenario.

Every resolver in realnet (pyspf, dkimpy's key lookup, the relays' MX
lookup) asks this server and nothing else (:func:`make_resolver`), so SPF,
DKIM and routing see exactly the records the scenario implies:

- each of our domains: MX → every host of the MX tier at equal preference
  (``gw0-1.<domain>``, ``gw0-2.<domain>``), an A record for every host,
  ``v=spf1 ip4:<outbound host> ... -all`` naming exactly the hosts whose
  connections reach remote MXes and our own MX (the ``outbound_sign`` and
  ``fallback_mx`` tiers), and the DKIM public key at
  ``<selector>._domainkey.<domain>``;
- each remote domain: MX ``mx.<domain>`` → its sink, ``mta.<domain>`` → its
  sender address, and an SPF record that authorises the sender — or, for
  ``spf = "fail"``/``"softfail"``, some other address (:data:`NOBODY_SUFFIX`)
  so its senders get ``fail``/``softfail``; ``spf = "none"`` publishes none;
- PTR records for every address, SOA and NS at every zone apex.

The wire format is dnspython's; the server speaks UDP (truncating with TC
to the client's EDNS payload or 512 bytes) and TCP on the same port, and
can add a per-answer delay (``realnet.dns_delay_s``, or at run time through
:attr:`DnsServer.delay_s`) to imitate a slow resolver.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.nameserver
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.resolver
import dns.reversename
import dns.rrset

from mailgate.realnet.addresses import AddressPlan
from mailgate.realnet.services.inthread import serve_in_thread
from mailgate.sim.scenario import MAILBOX, Scenario

log = logging.getLogger(__name__)

TTL = 300
#: Last two octets of the address that fail-SPF domains authorise instead of
#: their real senders (nothing in the address plan uses PREFIX.254.x).
NOBODY_SUFFIX = "254.254"
#: Roles whose hosts connect to MXes (remote ones and our own): our SPF lists them.
OUTBOUND_ROLES = ("outbound_sign", "fallback_mx")


# ---------------------------------------------------------------- zone data


@dataclass
class Zone:
    """Records of every zone the server is authoritative for.

    ``records[name][rdtype]`` is an RRset; ``origins`` are the zone apexes
    (a name under no origin gets NXDOMAIN, or REFUSED with
    ``refuse_outside``; one under an origin but without records NXDOMAIN;
    one with records of other types NOERROR and no answer).
    """

    origins: list[dns.name.Name] = field(default_factory=list)
    records: dict[dns.name.Name, dict[int, dns.rrset.RRset]] = field(default_factory=dict)
    ttl: int = TTL
    #: Outside every zone: REFUSED (a strict authoritative server) or NXDOMAIN (realnet's
    #: default: this server stands for the whole Internet's DNS, where such names do not exist).
    refuse_outside: bool = False
    #: every name that exists, including empty non-terminals such as ``_domainkey.<domain>``
    _existing: set[dns.name.Name] = field(default_factory=set)

    def add_origin(self, origin: str, ns_address: str, serial: int = 1) -> dns.name.Name:
        """Declare a zone apex with its SOA and NS (``ns.<origin>`` → ``ns_address``)."""
        apex = dns.name.from_text(origin)
        if apex in self.origins:
            return apex
        self.origins.append(apex)
        # Longest origin first, so a name finds its closest enclosing zone.
        self.origins.sort(key=lambda n: len(n.labels), reverse=True)
        ns = dns.name.from_text("ns", apex)
        self.add(apex, "SOA", f"{ns} hostmaster.{apex} {serial} 3600 600 86400 {self.ttl}")
        self.add(apex, "NS", str(ns))
        if not apex.is_subdomain(dns.name.from_text("in-addr.arpa")):
            self.add(ns, "A", ns_address)
        return apex

    def add(self, name: str | dns.name.Name, rdtype: str, *values: str) -> None:
        """Add records given in zone-file text form (absolute names)."""
        owner = dns.name.from_text(name) if isinstance(name, str) else name
        rtype = dns.rdatatype.from_text(rdtype)
        for value in values:
            rdata = dns.rdata.from_text(dns.rdataclass.IN, rtype, value)
            self._rrset(owner, rtype).add(rdata)

    def add_txt(self, name: str | dns.name.Name, text: str) -> None:
        """Add one TXT record, split into 255-byte character-strings (DKIM keys are longer)."""
        owner = dns.name.from_text(name) if isinstance(name, str) else name
        raw = text.encode()
        chunks = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
        rdata = dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks)
        self._rrset(owner, dns.rdatatype.TXT).add(rdata)

    def _rrset(self, owner: dns.name.Name, rtype: int) -> dns.rrset.RRset:
        if self.origin_of(owner) is None:
            raise ValueError(f"{owner} is in none of the zones {self.origins}")
        by_type = self.records.setdefault(owner, {})
        if rtype not in by_type:
            by_type[rtype] = dns.rrset.RRset(owner, dns.rdataclass.IN, rtype)
            by_type[rtype].update_ttl(self.ttl)
            name = owner
            while name not in self._existing:
                self._existing.add(name)
                if name in self.origins or name == dns.name.root:
                    break
                name = name.parent()
        return by_type[rtype]

    def origin_of(self, name: dns.name.Name) -> dns.name.Name | None:
        return next((o for o in self.origins if name.is_subdomain(o)), None)

    def exists(self, name: dns.name.Name) -> bool:
        return name in self._existing

    def get(self, name: str, rdtype: str) -> list[str]:
        """Record values as text (for tests and the address map)."""
        rrset = self.records.get(dns.name.from_text(name), {}).get(dns.rdatatype.from_text(rdtype))
        return [r.to_text() for r in rrset] if rrset else []

    def answer(self, query: dns.message.Message) -> dns.message.Message:
        """The authoritative response to one query."""
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        response.flags &= ~dns.flags.RA
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        qname, qtype = question.name, question.rdtype
        origin = self.origin_of(qname)
        if origin is None or question.rdclass != dns.rdataclass.IN:
            refuse = self.refuse_outside or question.rdclass != dns.rdataclass.IN
            response.set_rcode(dns.rcode.REFUSED if refuse else dns.rcode.NXDOMAIN)
            if refuse:
                response.flags &= ~dns.flags.AA
            return response
        by_type = self.records.get(qname, {})
        if qtype == dns.rdatatype.ANY:
            answers = list(by_type.values())
        else:
            answers = [by_type[qtype]] if qtype in by_type else []
        if answers:
            response.answer.extend(answers)
            for rrset in answers:
                if rrset.rdtype == dns.rdatatype.MX:
                    for mx in rrset:
                        a = self.records.get(mx.exchange, {}).get(dns.rdatatype.A)
                        if a is not None and a not in response.additional:
                            response.additional.append(a)
            return response
        # Negative answer: the SOA in the authority section lets resolvers cache it (RFC 2308).
        response.authority.append(self.records[origin][dns.rdatatype.SOA])
        if not self.exists(qname):
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response


def host_label(plan: AddressPlan, host_id: str) -> str:
    """``gateway0.1`` → ``gw0-2``; mailbox hosts are ``mbox-1``, ...: the host's DNS label."""
    tier, index = host_id.rsplit(".", 1)
    if tier == MAILBOX:
        return f"mbox-{int(index) + 1}"
    return f"gw{plan.tier_numbers[tier]}-{int(index) + 1}"


def host_name(plan: AddressPlan, host_id: str, domain: str | None = None) -> str:
    """The host's fully qualified name (HELO name) under ``domain`` (default: our first)."""
    domain = domain or plan.scenario.population.domains[0]
    return f"{host_label(plan, host_id)}.{domain}"


def remote_mx_name(domain: str) -> str:
    """The MX host name published for a remote domain."""
    return f"mx.{domain}"


def remote_sender_name(domain: str) -> str:
    """The HELO name of a remote domain's sending MTA."""
    return f"mta.{domain}"


def outbound_addresses(scenario: Scenario, plan: AddressPlan) -> list[str]:
    """Addresses our SPF record authorises: every host of an outbound role."""
    return [
        address
        for name, tier in scenario.tiers.items()
        if tier.role in OUTBOUND_ROLES
        for address in plan.tier_addresses(name)
    ]


def build_zone(scenario: Scenario, plan: AddressPlan, dkim_public_txt: str) -> Zone:
    """Every record realnet needs, from the scenario (see the module docstring)."""
    zone = Zone()
    ns_address = plan.dns.host
    spf_ours = " ".join(f"ip4:{a}" for a in outbound_addresses(scenario, plan))
    mx_hosts = [f"{scenario.mx}.{k}" for k in range(len(scenario.tiers[scenario.mx].hosts))]
    for domain in scenario.population.domains:
        apex = zone.add_origin(f"{domain}.", ns_address)
        for host_id in scenario.host_ids:
            name = f"{host_name(plan, host_id, domain)}."
            zone.add(name, "A", plan.host_address(host_id))
            # A host's own name authorises itself, for HELO checks of bounces (MAIL FROM:<>).
            zone.add_txt(name, "v=spf1 a -all")
        zone.add(apex, "MX", *(f"10 {host_name(plan, h, domain)}." for h in mx_hosts))
        zone.add_txt(apex, f"v=spf1 {spf_ours} -all")
        zone.add_txt(f"{scenario.realnet.dkim_selector}._domainkey.{domain}.", dkim_public_txt)
    nobody = f"{plan.prefix}.{NOBODY_SUFFIX}"
    remote = {d.name: d.spf for d in scenario.internet.domains}
    for domain in plan.remote_domains:
        apex = zone.add_origin(f"{domain}.", ns_address)
        sink, sender = plan.remote_mx_address(domain), plan.remote_sender_address(domain)
        zone.add(f"{remote_mx_name(domain)}.", "A", sink)
        zone.add(f"{remote_sender_name(domain)}.", "A", sender)
        zone.add(apex, "MX", f"10 {remote_mx_name(domain)}.")
        verdict = remote.get(domain, "pass")
        if verdict == "pass":
            zone.add_txt(apex, f"v=spf1 ip4:{sender} -all")
        elif verdict == "fail":
            zone.add_txt(apex, f"v=spf1 ip4:{nobody} -all")
        elif verdict == "softfail":
            zone.add_txt(apex, f"v=spf1 ip4:{nobody} ~all")
        if verdict != "none":
            zone.add_txt(f"{remote_sender_name(domain)}.", "v=spf1 a -all")
    _add_reverse(zone, scenario, plan, ns_address)
    return zone


def _add_reverse(zone: Zone, scenario: Scenario, plan: AddressPlan, ns_address: str) -> None:
    """PTR records for every host, sink and sender (under the prefix's reverse zone)."""
    octets = plan.prefix.split(".")
    zone.add_origin(".".join(reversed(octets)) + ".in-addr.arpa.", ns_address)
    names = [(plan.host_address(h), host_name(plan, h)) for h in scenario.host_ids]
    for domain in plan.remote_domains:
        names.append((plan.remote_mx_address(domain), remote_mx_name(domain)))
        names.append((plan.remote_sender_address(domain), remote_sender_name(domain)))
    for address, name in names:
        if address.startswith(plan.prefix + "."):
            zone.add(dns.reversename.from_address(address), "PTR", f"{name}.")


# ---------------------------------------------------------------- the server


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
        if self.server.delay_s > 0:
            asyncio.get_running_loop().call_later(self.server.delay_s, self._send, wire, addr)
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
        self.queries = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tcp_tasks: set[asyncio.Task[None]] = set()

    @property
    def host(self) -> str:
        return self.address

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
                if self.delay_s > 0:
                    await asyncio.sleep(self.delay_s)
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
    """``python -m realnet.dnsserver SCENARIO KEYDIR``: serve the scenario's DNS until SIGTERM.

    KEYDIR holds the DKIM key (:meth:`realnet.keys.DkimKey.save`); one is
    generated there if it is missing or does not match the scenario.
    """
    import argparse
    import signal

    from mailgate.realnet.services.keys import DkimKey
    from mailgate.sim.scenario.loading import load

    parser = argparse.ArgumentParser(prog="python -m realnet.dnsserver")
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
