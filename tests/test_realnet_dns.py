"""The realnet DNS server: records built from the scenario, served over UDP and TCP on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import pytest

from mailgate.realnet.addresses import host_name
from mailgate.realnet.services.dnsserver import DnsServer, make_resolver, run_dns_in_thread
from mailgate.realnet.services.keys import DkimKey
from mailgate.realnet.services.zone import Zone, build_zone

pytestmark = pytest.mark.realnet

HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def key(scenario):
    domain = scenario.population.domains[0]
    return DkimKey.generate("ed25519-sha256", scenario.realnet.dkim_selector, domain)


def txt(resolver, name: str) -> list[str]:
    return [b"".join(r.strings).decode() for r in resolver.resolve(name, "TXT")]


def spf_ip4(record: str) -> set[str]:
    return {term.removeprefix("ip4:") for term in record.split() if term.startswith("ip4:")}


def test_mx_of_our_domain_is_every_mx_host_at_equal_preference(scenario, plan, resolver):
    domain = scenario.population.domains[0]
    answer = resolver.resolve(domain, "MX")
    preferences = {r.preference for r in answer}
    assert len(preferences) == 1
    addresses = {a.address for r in answer for a in resolver.resolve(r.exchange.to_text(), "A")}
    assert addresses == set(plan.tier_addresses(scenario.mx))
    # The MX hosts' A records travel in the additional section (no second round trip needed).
    assert {rr.rdtype for rr in answer.response.additional} == {dns.rdatatype.A}


def test_every_host_has_an_a_record_and_a_ptr(scenario, plan, resolver):
    for host_id in scenario.host_ids:
        name = host_name(plan, host_id)
        assert [r.address for r in resolver.resolve(name, "A")] == [plan.host_address(host_id)]
        reverse = resolver.resolve_address(plan.host_address(host_id))
        assert [r.target.to_text() for r in reverse] == [name + "."]


def test_our_spf_names_exactly_the_outbound_gateways(scenario, plan, resolver):
    (record,) = txt(resolver, scenario.population.domains[0])
    assert record.startswith("v=spf1 ") and record.endswith(" -all")
    outbound = {
        a
        for name, tier in scenario.tiers.items()
        if tier.role in ("outbound_sign", "fallback_mx")
        for a in plan.tier_addresses(name)
    }
    assert spf_ip4(record) == outbound
    assert plan.tier_addresses(scenario.mx)[0] not in outbound


def test_dkim_key_is_published_whole(scenario, key, resolver):
    name = f"{scenario.realnet.dkim_selector}._domainkey.{scenario.population.domains[0]}"
    assert txt(resolver, name) == [key.public_txt]


def test_remote_domains_mx_and_spf(scenario, plan, resolver):
    verdicts = {d.name: d.spf for d in scenario.internet.domains}
    assert "fail" in verdicts.values()  # the scenario has a failing domain to check
    for domain in plan.remote_domains:
        (mx,) = resolver.resolve(domain, "MX")
        (a,) = resolver.resolve(mx.exchange.to_text(), "A")
        assert a.address == plan.remote_mx_address(domain)
        (record,) = txt(resolver, domain)
        sender = plan.remote_sender_address(domain)
        if verdicts.get(domain, "pass") == "pass":
            assert spf_ip4(record) == {sender}
        else:
            assert sender not in spf_ip4(record)


def test_rsa_key_is_split_into_strings_and_fits_udp_with_edns(scenario, plan):
    selector = scenario.realnet.dkim_selector
    rsa = DkimKey.generate("rsa-sha256", selector, scenario.population.domains[0])
    zone = build_zone(scenario, plan, rsa.public_txt)
    with run_dns_in_thread(zone, HOST, 0) as srv:
        (rdata,) = make_resolver(HOST, srv.port).resolve(rsa.dns_name, "TXT")
        assert all(len(s) <= 255 for s in rdata.strings)
        assert b"".join(rdata.strings).decode() == rsa.public_txt


def test_negative_answers(scenario, dns_server):
    domain = scenario.population.domains[0]

    def ask(name: str, rdtype: str) -> dns.message.Message:
        return dns.query.udp(
            dns.message.make_query(name, rdtype), HOST, port=dns_server.port, timeout=2
        )

    missing = ask(f"nobody.{domain}", "A")
    assert missing.rcode() == dns.rcode.NXDOMAIN
    assert missing.flags & dns.flags.AA
    assert [rr.rdtype for rr in missing.authority] == [dns.rdatatype.SOA]
    # A name with other records, and an empty non-terminal: NOERROR, no answer, SOA.
    for name, rdtype in [(f"gw0-1.{domain}", "MX"), (f"_domainkey.{domain}", "TXT")]:
        empty = ask(name, rdtype)
        assert empty.rcode() == dns.rcode.NOERROR
        assert not empty.answer
        assert [rr.rdtype for rr in empty.authority] == [dns.rdatatype.SOA]
    # Outside every zone: this server stands for the Internet, where the name does not exist.
    assert ask("www.example.org", "A").rcode() == dns.rcode.NXDOMAIN
    soa = ask(domain, "SOA")
    assert soa.rcode() == dns.rcode.NOERROR and soa.answer[0].rdtype == dns.rdatatype.SOA


def test_tcp_serves_several_queries_on_one_connection(scenario, dns_server):
    import socket

    domain = scenario.population.domains[0]
    with socket.create_connection((HOST, dns_server.port), timeout=2) as sock:
        for rdtype in ("MX", "TXT", "SOA"):
            response = dns.query.tcp(
                dns.message.make_query(domain, rdtype), HOST, sock=sock, timeout=2
            )
            assert response.answer and response.answer[0].rdtype == dns.rdatatype.from_text(rdtype)


def test_udp_truncates_and_resolver_falls_back_to_tcp():
    zone = Zone()
    zone.add_origin("big.example.", HOST)
    for i in range(8):
        zone.add_txt("big.example.", f"{i}" * 250)
    with run_dns_in_thread(zone, HOST, 0) as srv:
        query = dns.message.make_query("big.example", "TXT")
        udp = dns.query.udp(query, HOST, port=srv.port, timeout=2)
        assert udp.flags & dns.flags.TC and not udp.answer
        answer = make_resolver(HOST, srv.port).resolve("big.example", "TXT")
        assert len(answer) == 8


def test_garbage_gets_formerr_and_the_server_keeps_answering(scenario, dns_server):
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(b"\x12\x34" + b"\xff" * 20, (HOST, dns_server.port))
        data, _ = sock.recvfrom(512)
    assert data[:2] == b"\x12\x34"
    assert dns.message.from_wire(data).rcode() == dns.rcode.FORMERR
    make_resolver(HOST, dns_server.port).resolve(scenario.population.domains[0], "MX")


def test_delay_is_added_to_every_answer(scenario, plan, key):
    zone = build_zone(scenario, plan, key.public_txt)
    with run_dns_in_thread(zone, HOST, 0, delay_s=0.15) as srv:
        resolver = make_resolver(HOST, srv.port)
        for tcp in (False, True):
            t0 = time.perf_counter()
            resolver.resolve(scenario.population.domains[0], "MX", tcp=tcp)
            assert time.perf_counter() - t0 >= 0.15
        srv.delay_s = 0.0  # changeable while running (failures.dns_slow)
        t0 = time.perf_counter()
        resolver.resolve(scenario.population.domains[0], "MX")
        assert time.perf_counter() - t0 < 0.15


def test_resolver_uses_only_our_server(dns_server):
    resolver = make_resolver(HOST, dns_server.port)
    assert [(ns.address, ns.port) for ns in resolver.nameservers] == [(HOST, dns_server.port)]
    assert resolver.search == [] and resolver.cache is None
    # No /etc/hosts, no search list: "localhost" is just a name our server does not know.
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver.resolve("localhost", "A")


def test_async_start_stop_on_a_fixed_port(scenario, plan, key):
    zone = build_zone(scenario, plan, key.public_txt)

    async def main() -> int:
        first = DnsServer(zone, HOST, 0)
        await first.start()
        port = first.port
        await first.stop()
        again = DnsServer(zone, HOST, port)  # the port is free again after stop()
        await again.start()
        try:
            response = await dns.asyncquery.udp(
                dns.message.make_query(scenario.population.domains[0], "MX"), HOST, port=port
            )
            return len(response.answer)
        finally:
            await again.stop()

    import dns.asyncquery

    assert asyncio.run(main()) == 1


def test_zone_rejects_records_outside_its_zones():
    zone = Zone()
    zone.add_origin("a.example.", HOST)
    with pytest.raises(ValueError):
        zone.add("www.b.example.", "A", HOST)
    assert ipaddress.ip_address(zone.get("ns.a.example.", "A")[0]).is_loopback


def test_standalone_process_serves_the_scenario(tmp_path, scenario):
    """``python -m realnet.dnsserver`` as the supervisor would run it; stopped by PID."""
    import subprocess
    import sys

    with socket_free_port() as port:
        pass
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mailgate.realnet.services.dnsserver",
            "scenarios/loopback-testbed.toml",
            str(tmp_path / "key"),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert "realnet DNS on" in proc.stdout.readline()
        key = DkimKey.load(tmp_path / "key")
        resolver = make_resolver(scenario.realnet.dns_address, port)
        assert txt(resolver, key.dns_name) == [key.public_txt]
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
        proc.stdout.close()


@contextlib.contextmanager
def socket_free_port():
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        yield s.getsockname()[1]
