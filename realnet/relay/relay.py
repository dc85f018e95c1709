"""The relay core every realnet gateway is built from (aiosmtpd, asyncio).

One ``Relay`` is one SMTP service on one address: it receives a message,
runs its gateway's ``Policy`` before answering (milter-style: the policy may
reject with 550/451, quarantine or add headers), prepends ``Received:``,
writes the message durably to its ``Spool`` and only then answers 250; a
delivery task hands it to the next hop (one of the twin hosts of the next
tier, or the recipient domain's MX) and retries temporary failures with
backoff, offers what an attempt could not deliver to the fallback tier
(Postfix ``smtp_fallback_relay``: the first failed attempt hands it over), and
bounces it to the reverse-path after the queue lifetime.

Protocol hygiene: SIZE is advertised and enforced (552); more ``Received:``
headers than ``limits.hopcount_limit`` is a loop (554 5.4.6); recipients are
accepted only for our domains or from clients allowed to relay (550 5.7.1:
never an open relay); bare CR or LF in DATA is normalised to CRLF (aiosmtpd
≥ 1.4.6 ends DATA only on CRLF.CRLF, so a bare-LF ``\\n.\\n`` cannot split a
message — no SMTP smuggling); an internal error answers 451, never 500.

Every message leaves one ``HopRecord`` JSON line in ``traces/<host>.jsonl``;
the ``X-Mailgate-Trace`` header carries the trace id from hop to hop.

Its parts live next door: ``realnet.policy`` (what checks see and decide),
``realnet.spool`` (durability), ``realnet.smtpclient`` (the next-hop client),
``realnet.message`` (header facts), ``realnet.tracing`` (trace files) and
``realnet.dsn`` (bounces).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import ipaddress
import logging
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from mailgate.realnet.relay.dsn import make_dsn
from mailgate.realnet.relay.message import (
    TRACE_HEADER,
    count_received,
    domain_of,
    header_block,
    normalise_line_ends,
    parse_trace,
    trace_header,
)
from mailgate.realnet.relay.policy import Incoming, Policy, Verdict, in_thread
from mailgate.realnet.relay.smtpclient import ConnectError, ConnectionPool, SmtpError
from mailgate.realnet.relay.spool import Spool, SpoolEntry
from mailgate.realnet.relay.tracing import Tracer, record_dict
from mailgate.sim.scenario.records import HopRecord, StageSpan

log = logging.getLogger(__name__)

# re-exported: gateways, tests and tools import these from the relay
__all__ = [
    "TRACE_HEADER",
    "Incoming",
    "Policy",
    "Relay",
    "RelayConfig",
    "Tracer",
    "Verdict",
    "count_received",
    "domain_of",
    "header_block",
    "normalise_line_ends",
    "parse_trace",
]


@dataclass
class RelayConfig:
    """How one SMTP service of one host behaves."""

    host_id: str
    hostname: str
    bind: str
    port: int
    state_dir: Path
    #: domains accepted from any allowed client (our own mail domains)
    local_domains: frozenset[str] = frozenset()
    #: clients that may relay to any domain
    relay_clients: tuple[ipaddress.IPv4Network, ...] = ()
    #: clients that may connect at all (empty = anybody)
    allowed_clients: tuple[ipaddress.IPv4Network, ...] = ()
    #: next-hop addresses (twin hosts), or empty for the recipient's MX
    next_hop: tuple[str, ...] = ()
    next_hop_name: str = "internet"
    next_hop_port: int = 25
    balance: str = "mx_random"
    #: host id of every address of ours, so HopRecord.next_hop names the host, as the
    #: model does ("gateway1.0"); an address not listed is the rest of the Internet
    host_ids: dict[str, str] = field(default_factory=dict)
    #: tier offered what an attempt could not deliver (Gateway3 → Gateway4)
    fallback: tuple[str, ...] = ()
    fallback_name: str = ""
    delivery_concurrency: int = 20
    #: concurrent SMTP sessions (0 = no limit); more wait for their greeting, as
    #: connections beyond Postfix's process_limit wait in the listen queue
    session_limit: int = 0
    connect_timeout_s: float = 30.0
    minimal_backoff_s: float = 300.0
    maximal_backoff_s: float = 4000.0
    max_queue_lifetime_s: float = 5 * 86400.0
    message_size_limit: int = 10_240_000
    hopcount_limit: int = 50
    dns: tuple[str, int] | None = None
    #: mailbox server: file locally instead of spooling (user, message bytes)
    local_delivery: Callable[[str, bytes], None] | None = None
    #: submission: SMTP AUTH required, authenticated clients may relay anywhere
    authenticate: Callable[[str, str], bool] | None = None
    spool_name: str = "spool"
    fsync: bool = True
    #: several worker processes may share the address (SO_REUSEPORT), each its own spool
    reuse_port: bool = False
    worker: int = 0


# ---------------------------------------------------------------- the relay


#: the answer to anything that went wrong on our side: temporary, so the client retries
INTERNAL_ERROR = "451 4.3.0 Internal error, try again later"

#: ``<local@domain>`` in its plain form: the common case, parsed without the email package
_SIMPLE_PATH = re.compile(r"<([A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+)>")


class _Protocol(SMTP):
    """aiosmtpd's SMTP with the connection time remembered (HopRecord.arrived)."""

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd parses every MAIL/RCPT path with email._header_value_parser (~10 % of a
        # relay's CPU); plain <local@domain> paths take this fast path, the rest (quoted
        # local parts, source routes, "<>") still go through aiosmtpd's own parser
        m = _SIMPLE_PATH.match(arg.lstrip())
        if m is None:
            return super()._getaddr(arg)
        local = m.group(1).rpartition("@")[0]
        if self.local_part_limit and len(local) > self.local_part_limit:
            return super()._getaddr(arg)
        return m.group(1), arg.lstrip()[m.end() :].lstrip()

    #: the relay's session slots (set per connection by ``Relay._make_protocol``)
    session_slots: asyncio.Semaphore | None = None

    async def _handle_client(self) -> None:
        # the whole dialogue, greeting included, runs inside one session slot
        if self.session_slots is None:
            return await super()._handle_client()
        async with self.session_slots:
            return await super()._handle_client()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.session is not None:
            self.session.connected_at = time.time()  # type: ignore[attr-defined]
            self.session.connected_cpu = time.thread_time()  # type: ignore[attr-defined]


class _Hooks:
    """The handler aiosmtpd sees: only the hooks, because aiosmtpd runs
    ``inspect.getmembers`` over its handler on every connection."""

    def __init__(self, relay: Relay) -> None:
        self.handle_MAIL = relay.handle_MAIL
        self.handle_RCPT = relay.handle_RCPT
        self.handle_DATA = relay.handle_DATA
        self.handle_exception = relay.handle_exception


class Relay:
    """One SMTP service: receive, check, spool, deliver."""

    def __init__(self, config: RelayConfig, policy: Policy | None = None) -> None:
        self.config = config
        self.policy = policy or Policy()
        self.tracer = Tracer(config.state_dir, config.host_id)
        self.spool = (
            None
            if config.local_delivery
            else Spool(
                config.state_dir / config.spool_name / _spool_leaf(config), fsync=config.fsync
            )
        )
        # as many idle connections per next hop as deliveries may run at once, so that a
        # burst does not close connections only to open them again
        self.pool = ConnectionPool(
            helo=config.hostname,
            source=config.bind,
            timeout=config.connect_timeout_s,
            max_idle=config.delivery_concurrency,
        )
        self._server: asyncio.AbstractServer | None = None
        self._sem: asyncio.Semaphore | None = None
        self._rr = 0
        self._timers: set[asyncio.TimerHandle] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._resolver: dns.asyncresolver.Resolver | None = None
        self._auth_cache: dict[tuple[str, str], bool] = {}
        self._hooks = _Hooks(self)
        self._quarantine_spool: Spool | None = None
        self._session_slots: asyncio.Semaphore | None = None

    # -- lifecycle

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._sem = asyncio.Semaphore(self.config.delivery_concurrency)
        if self.config.session_limit:
            self._session_slots = asyncio.Semaphore(self.config.session_limit)
        if self.config.dns:
            self._resolver = dns.asyncresolver.Resolver(configure=False)
            self._resolver.nameservers = [self.config.dns[0]]
            self._resolver.port = self.config.dns[1]
            self._resolver.timeout = self._resolver.lifetime = 5.0
        if self.spool is not None:
            for entry in self.spool.recover():
                self._schedule(entry, entry.next_retry)
        self._server = await loop.create_server(
            self._make_protocol,
            self.config.bind,
            self.config.port,
            reuse_address=True,
            reuse_port=self.config.reuse_port or None,
        )

    def _make_protocol(self) -> SMTP:
        c = self.config
        protocol = _Protocol(
            self._hooks,
            hostname=c.hostname,
            ident="mailgate realnet",
            data_size_limit=c.message_size_limit,
            enable_SMTPUTF8=True,
            auth_required=c.authenticate is not None,
            auth_require_tls=False,  # loopback only; PRACTICAL.md
            authenticator=self._authenticator if c.authenticate else None,
            loop=asyncio.get_running_loop(),
        )
        protocol.session_slots = self._session_slots
        return protocol

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
        for timer in self._timers:
            timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await self.pool.close()
        for spool in (self.spool, self._quarantine_spool):
            if spool is not None:
                spool.close()
        self.tracer.close()

    # -- aiosmtpd hooks

    def _authenticator(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword) or self.config.authenticate is None:
            return AuthResult(success=False, handled=False)
        login = data.login.decode("utf-8", "replace")
        password = data.password.decode("utf-8", "replace")
        # scrypt costs ~50 ms; like Dovecot's auth cache, remember verified pairs
        key = (login, password)
        if key not in self._auth_cache:
            if len(self._auth_cache) > 10_000:  # bounded: a password-guessing client cannot grow it
                self._auth_cache.clear()
            self._auth_cache[key] = self.config.authenticate(login, password)
        if not self._auth_cache[key]:
            # handled=False: aiosmtpd answers 535 5.7.8 itself
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=login)

    def _client_ip(self, session: Session) -> str:
        return session.peer[0] if session.peer else ""

    @staticmethod
    def _in(ip: str, networks: Iterable[ipaddress.IPv4Network]) -> bool:
        addr = ipaddress.ip_address(ip)
        return any(addr in n for n in networks)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        ip = self._client_ip(session)
        if self.config.allowed_clients and not self._in(ip, self.config.allowed_clients):
            return "550 5.7.1 Client host rejected: access denied"
        envelope.mail_from = address  # "<>" for a bounce: aiosmtpd needs it non-empty
        envelope.mail_options.extend(options)
        envelope.mail_at = time.time()  # type: ignore[attr-defined]
        envelope.mail_cpu = time.thread_time()  # type: ignore[attr-defined]
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        c = self.config
        ip = self._client_ip(session)
        local = domain_of(address) in c.local_domains
        may_relay = bool(session.authenticated) or self._in(ip, c.relay_clients)
        if not local and not may_relay:
            return "550 5.7.1 Relay access denied"
        try:
            refusal = await self.policy.check_rcpt(self._incoming(session, envelope), address)
        except Exception:
            log.exception("check_rcpt failed")
            return INTERNAL_ERROR
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 Ok"

    async def handle_exception(self, error: Exception) -> str:
        log.error("internal error: %r", error)
        return INTERNAL_ERROR

    def _incoming(self, session: Session, envelope: Envelope) -> Incoming:
        return Incoming(
            host=self.config.host_id,
            client_ip=self._client_ip(session),
            helo=session.host_name or "",
            mail_from=_reverse_path(envelope.mail_from),
            rcpt_tos=list(envelope.rcpt_tos),
            data=b"",
            trace_id="",
            flow="inbound",
            authenticated=session.auth_data if session.authenticated else None,
        )

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        try:
            return await self._receive(session, envelope)
        except Exception:
            log.exception("handle_DATA failed")
            return INTERNAL_ERROR

    # -- receiving

    async def _receive(self, session: Session, envelope: Envelope) -> str:
        c = self.config
        t_data, cpu_data = time.time(), time.thread_time()
        arrived = getattr(session, "connected_at", t_data)
        cpu0 = getattr(session, "connected_cpu", cpu_data)
        if getattr(session, "messages_done", 0):
            # later transactions on a reused connection start at their MAIL
            arrived = getattr(envelope, "mail_at", arrived)
            cpu0 = getattr(envelope, "mail_cpu", cpu0)
        session.messages_done = getattr(session, "messages_done", 0) + 1  # type: ignore[attr-defined]
        raw = envelope.original_content or b""
        data = normalise_line_ends(raw)
        msg = self._incoming(session, envelope)
        trace = parse_trace(data)
        if trace is None:
            flow = self._first_flow(msg)
            trace = (uuid.uuid4().hex[:16], flow)
            data = trace_header(*trace) + data
        msg.trace_id, msg.flow = trace
        record = HopRecord(
            msg_id=msg.trace_id,
            flow=msg.flow,
            host=c.host_id,
            size_kb=len(data) / 1024,
            arrived=arrived,
        )
        # CPU: the event-loop thread's over the span, exact at idle (calibration fits
        # the lowest load) and an over-estimate when sessions interleave
        receive = "submission" if msg.authenticated else "smtp_receive"
        record.stages[receive] = StageSpan(arrived, t_data, cpu_data - cpu0)
        msg.record = record
        if count_received(data) >= c.hopcount_limit:
            return self._reject(record, "554 5.4.6 Too many hops: mail loop detected")
        entry_id = SpoolEntry.new_id()
        data = self._received_header(session, msg, entry_id) + data
        msg.data = data
        verdict = await self.policy.check(msg)
        if verdict is not None and verdict.action == "reject":
            return self._reject(record, verdict.reply)
        data = b"".join(msg.prepend) + msg.data
        if verdict is not None and verdict.action == "quarantine":
            await self._quarantine(entry_id, msg, data, verdict.reason)
            record.accepted = record.left = time.time()
            record.outcome = "quarantined"
            self.tracer.write(record)
            return f"250 2.0.0 Ok: queued as {entry_id}"
        if c.local_delivery is not None:
            return await self._deliver_locally(msg, data, record, entry_id)
        assert self.spool is not None
        entry = SpoolEntry(
            id=entry_id,
            mail_from=msg.mail_from,
            rcpt_tos=list(msg.rcpt_tos),
            data=data,
            trace_id=msg.trace_id,
            flow=msg.flow,
        )
        t0, c0 = time.time(), time.thread_time()
        # the record travels in the spool file, so a recovered message still gets its trace
        entry.record = record_dict(record)
        entry.record["accepted"] = t0
        await self.spool.put(entry)
        record.accepted = time.time()
        record.stages["spool"] = StageSpan(t0, record.accepted, time.thread_time() - c0)
        entry.record = record_dict(record)
        self._schedule(entry, 0.0)
        return f"250 2.0.0 Ok: queued as {entry_id}"

    def _first_flow(self, msg: Incoming) -> str:
        if msg.authenticated is None:
            return "inbound"
        local = all(domain_of(r) in self.config.local_domains for r in msg.rcpt_tos)
        return "internal" if local else "outbound"

    def _reject(self, record: HopRecord, reply: str) -> str:
        record.left = time.time()
        record.outcome = "rejected"
        self.tracer.write(record)
        return reply

    def _received_header(self, session: Session, msg: Incoming, entry_id: str) -> bytes:
        c = self.config
        with_ = "ESMTPA" if msg.authenticated else "ESMTP"
        rcpt = f"\r\n\tfor <{msg.rcpt_tos[0]}>" if len(msg.rcpt_tos) == 1 else ""
        return (
            f"Received: from {msg.helo or 'unknown'} ([{msg.client_ip}])\r\n"
            f"\tby {c.hostname} ({c.host_id}) with {with_} id {entry_id}{rcpt};\r\n"
            f"\t{email.utils.formatdate(localtime=False)}\r\n"
        ).encode()

    async def _quarantine(self, entry_id: str, msg: Incoming, data: bytes, reason: str) -> None:
        if self._quarantine_spool is None:
            folder = self.config.state_dir / "quarantine" / self.config.host_id
            self._quarantine_spool = Spool(folder, fsync=self.config.fsync)
        meta = SpoolEntry(
            id=entry_id,
            mail_from=msg.mail_from,
            rcpt_tos=msg.rcpt_tos,
            data=data,
            trace_id=msg.trace_id,
            flow=msg.flow,
            record={"reason": reason},
        )
        await self._quarantine_spool.put(meta)

    async def _deliver_locally(
        self, msg: Incoming, data: bytes, record: HopRecord, entry_id: str
    ) -> str:
        assert self.config.local_delivery is not None
        t0 = time.time()
        cpu = 0.0
        for rcpt in msg.rcpt_tos:
            user = rcpt.partition("@")[0]
            _, c = await in_thread(self.config.local_delivery, user, data)
            cpu += c
        record.accepted = record.left = time.time()
        record.stages["maildir"] = StageSpan(t0, record.left, cpu)
        record.outcome = "mailbox"
        self.tracer.write(record)
        return f"250 2.0.0 Ok: delivered as {entry_id}"

    # -- delivery

    def _schedule(self, entry: SpoolEntry, at: float) -> None:
        loop = asyncio.get_running_loop()
        delay = max(0.0, at - time.time())

        def fire() -> None:
            self._timers.discard(handle)
            task = loop.create_task(self._deliver(entry))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    def _ordered(self, addresses: tuple[str, ...]) -> list[str]:
        """The twin hosts in the order to try them (balance, then failover)."""
        hosts = list(addresses)
        if self.config.balance == "round_robin":
            self._rr += 1
            k = self._rr % len(hosts)
            return hosts[k:] + hosts[:k]
        random.shuffle(hosts)
        return hosts

    async def _mx_hosts(self, domain: str, record: HopRecord | None) -> list[str]:
        """Addresses of ``domain``'s MX hosts, best preference first (random among equals)."""
        t0 = time.time()
        if self._resolver is None:
            raise SmtpError(451, "no resolver configured")
        try:
            answer = await self._resolver.resolve(domain, "MX")
            mxs = sorted(answer, key=lambda r: (r.preference, random.random()))
            # the server sends the MX hosts' A records along (additional section):
            # use them and ask only for the ones it left out
            glue: dict[dns.name.Name, list[str]] = {}
            for rrset in answer.response.additional:
                if rrset.rdtype == dns.rdatatype.A:
                    glue.setdefault(rrset.name, []).extend(r.address for r in rrset)
            addresses: list[str] = []
            for mx in mxs:
                if mx.exchange in glue:
                    addresses.extend(glue[mx.exchange])
                    continue
                a = await self._resolver.resolve(mx.exchange.to_text(), "A")
                addresses.extend(r.address for r in a)
        except dns.resolver.NXDOMAIN:
            raise SmtpError(550, f"5.1.2 domain {domain} does not exist") from None
        except dns.resolver.NoAnswer:
            # RFC 5321 5.1: no MX means the domain's own A record
            try:
                a = await self._resolver.resolve(domain, "A")
                addresses = [r.address for r in a]
            except dns.exception.DNSException as e:
                raise SmtpError(451, f"4.4.3 no mail host for {domain}: {e}") from None
        except dns.exception.DNSException as e:
            raise SmtpError(451, f"4.4.3 DNS lookup of {domain} failed: {e}") from None
        if record is not None:
            span = record.stages.get("mx_lookup")
            start = span.start if span else t0
            record.stages["mx_lookup"] = StageSpan(start, time.time())
        return addresses

    async def _try_hosts(
        self, hosts: list[str], entry: SpoolEntry, rcpts: list[str]
    ) -> tuple[list[str], dict[str, SmtpError], list[str], str]:
        """Try each host until one takes the message.

        (accepted, permanent refusals, still pending, the host that answered).
        """
        for host in hosts:
            try:
                result = await self.pool.send(
                    host, self.config.next_hop_port, entry.mail_from, rcpts, entry.data
                )
            except SmtpError as e:
                if e.permanent and not isinstance(e, ConnectError):
                    return [], dict.fromkeys(rcpts, e), [], host
                continue  # connect failure or 4xx: try the twin / next MX
            permanent = {r: e for r, e in result.refused.items() if e.permanent}
            pending = [r for r in rcpts if r not in result.accepted and r not in permanent]
            return result.accepted, permanent, pending, host
        return [], {}, list(rcpts), ""

    async def _attempt(
        self, entry: SpoolEntry, rcpts: list[str], record: HopRecord | None
    ) -> tuple[list[str], dict[str, SmtpError], list[str], str]:
        """One delivery attempt: (delivered, permanently failed, still pending, next hop).

        The next hop is named like the model names it: the host id of the host that
        took the message (``gateway1.0``), or "" when it left our system (a remote MX).
        """
        c = self.config
        if c.next_hop:
            groups = [(self._ordered(c.next_hop), rcpts)]
        else:
            by_domain: dict[str, list[str]] = {}
            for r in rcpts:
                by_domain.setdefault(domain_of(r), []).append(r)
            groups = []
            for domain, group in by_domain.items():
                try:
                    groups.append((await self._mx_hosts(domain, record), group))
                except SmtpError as e:
                    groups.append(([], group))
                    if e.permanent:
                        return [], dict.fromkeys(group, e), [], ""
        done: list[str] = []
        failed: dict[str, SmtpError] = {}
        pending: list[str] = []
        hop = ""
        for hosts, group in groups:
            accepted, perm, left, host = await self._try_hosts(hosts, entry, group)
            done += accepted
            failed.update(perm)
            pending += left
            if accepted:
                hop = self._hop_name(host)
        return done, failed, pending, hop

    def _hop_name(self, address: str) -> str:
        """Our host's id for an address we delivered to; "" for the rest of the Internet."""
        known = self.config.host_ids
        if address in known:
            return known[address]
        # not one of ours: a remote MX (or, without an address map, the configured tier)
        return self.config.next_hop_name if self.config.next_hop else ""

    async def _deliver(self, entry: SpoolEntry) -> None:
        assert self._sem is not None and self.spool is not None
        async with self._sem:
            try:
                await self._deliver_once(entry)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery of %s failed", entry.id)
                entry.next_retry = time.time() + self._backoff(entry.attempts + 1)
                self._schedule(entry, entry.next_retry)

    async def _deliver_once(self, entry: SpoolEntry) -> None:
        assert self.spool is not None
        c = self.config
        record = HopRecord.from_dict(entry.record) if entry.record else None
        t0, c0 = time.time(), time.thread_time()
        done, failed, pending, hop = await self._attempt(entry, list(entry.rcpt_tos), record)
        if pending and c.fallback:
            # like Postfix smtp_fallback_relay: every failed attempt is offered to the fallback
            entry.fallback_tried = True
            accepted, perm, pending, host = await self._try_hosts(
                self._ordered(c.fallback), entry, pending
            )
            done += accepted
            failed.update(perm)
            if accepted:
                hop = c.host_ids.get(host, c.fallback_name)
        t1 = time.time()
        if record is not None:
            record.stages["deliver"] = StageSpan(t0, t1, time.thread_time() - c0)
            record.next_hop = hop or record.next_hop
        if failed:
            await self._bounce(entry, failed)
        entry.attempts += 1
        if pending and t1 - entry.first_accepted >= c.max_queue_lifetime_s:
            await self._bounce(
                entry,
                dict.fromkeys(
                    pending,
                    SmtpError(554, "5.4.7 delivery time expired, last error kept in the log"),
                ),
            )
            pending = []
            if record is not None:
                record.outcome = "bounced"
        if pending:
            entry.rcpt_tos = pending
            entry.next_retry = t1 + self._backoff(entry.attempts)
            if record is not None:
                entry.record = record_dict(record)
            await self.spool.update(entry)
            self._schedule(entry, entry.next_retry)
            return
        if record is not None:
            # traced before the spool removal: a stop that cancels the removal must not
            # lose the record of a hand-off that did happen
            record.left = t1  # the next hop's 250 (HopRecord.left), not our removal after it
            if not done:
                record.outcome = "bounced"
            elif not hop:
                record.outcome = "remote"  # handed to a remote domain's MX
            self.tracer.write(record)
        await self.spool.remove(entry.id)

    def _backoff(self, attempts: int) -> float:
        c = self.config
        return min(c.maximal_backoff_s, c.minimal_backoff_s * 2 ** max(0, attempts - 1))

    async def _bounce(self, entry: SpoolEntry, failed: dict[str, SmtpError]) -> None:
        """Queue a DSN (RFC 3464) to the reverse-path; never for the null sender."""
        if not entry.mail_from:
            log.warning("dropping failed bounce %s: %s", entry.id, failed)
            return
        # a bounce is one more message: to our own user it travels like internal mail,
        # to anyone else like outbound; it carries its own trace id
        trace_id = uuid.uuid4().hex[:16]
        local = domain_of(entry.mail_from) in self.config.local_domains
        flow = "internal" if local else "outbound"
        data = trace_header(trace_id, flow) + make_dsn(self.config.hostname, entry, failed)
        dsn = SpoolEntry(
            id=SpoolEntry.new_id(),
            mail_from="",
            rcpt_tos=[entry.mail_from],
            data=data,
            trace_id=trace_id,
            flow=flow,
        )
        now = time.time()
        record = HopRecord(trace_id, flow, self.config.host_id, len(data) / 1024, now, now)
        dsn.record = record_dict(record)
        await self.spool.put(dsn)  # type: ignore[union-attr]
        self._schedule(dsn, 0.0)


def _reverse_path(address: str | None) -> str:
    """The null reverse-path (``MAIL FROM:<>``) is "" from here on."""
    return "" if not address or address.strip() in ("<>", "") else address


def _spool_leaf(config: RelayConfig) -> str:
    return config.host_id if not config.worker else f"{config.host_id}-w{config.worker}"
