"""The realnet DNS's records: a ``Zone`` (authoritative data and how it answers a
query) and the zone every realnet scenario implies (:func:`build_zone`):

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

The server that speaks the wire protocol is :mod:`dnsserver`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.reversename
import dns.rrset

from mailgate.realnet.addresses import AddressPlan, host_name, remote_mx_name, remote_sender_name
from mailgate.sim.scenario import Scenario

TTL = 300
#: Last two octets of the address that fail-SPF domains authorise instead of
#: their real senders (nothing in the address plan uses PREFIX.254.x).
NOBODY_SUFFIX = "254.254"
#: Roles whose hosts connect to MXes (remote ones and our own): our SPF lists them.
OUTBOUND_ROLES = ("outbound_sign", "fallback_mx")


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
