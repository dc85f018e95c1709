"""The mailbox server (収容サーバ): Maildir delivery, submission with AUTH, POP3.

Three services on the host's own loopback address:

- SMTP on ``realnet.smtp_port``: mail from Gateway1 (no one else may connect;
  STARTTLS required, with a Gateway1 host's certificate) for our domains is filed
  into ``<state>/maildirs/<user>/`` (``maildir.deliver``; the file is fsynced
  before the 250, like the spool); an unknown user gets ``550 5.1.1``.
  ``postmaster`` always has a mailbox (RFC 5321 4.5.1): bounces that cannot be
  delivered end there.
- Submission on ``realnet.submission_port``: PCs start TLS (STARTTLS; AUTH
  before it gets ``538 5.7.11``), authenticate with SMTP AUTH PLAIN or LOGIN
  against ``realnet.users`` (scrypt hashes, checked off the
  event loop and throttled per client by an ``AuthGuard`` shared with POP3),
  send only as themselves (553 5.7.1 otherwise), and every message,
  our own domain's included, is relayed through the spool to Gateway2 (the
  source: the mailbox server relays *all* outgoing mail to Gateway2).
- POP3 on ``realnet.pop3_port`` on the same Maildirs. Each RETR leaves a
  ``HopRecord`` (outcome ``retrieved``) with the ``pop_session`` (login) and
  ``pop_retrieve`` spans, joined to the message's trace id.
"""

from __future__ import annotations

import asyncio
import ipaddress
import threading
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Any

from mailgate.realnet.addresses import AddressPlan
from mailgate.realnet.relay.authguard import AuthGuard
from mailgate.realnet.relay.authresults import strip_forged_results
from mailgate.realnet.relay.config import RelayConfig, upstream, upstream_hosts
from mailgate.realnet.relay.message import parse_trace
from mailgate.realnet.relay.policy import Incoming, Policy
from mailgate.realnet.relay.relay import Relay
from mailgate.realnet.relay.tracing import Tracer
from mailgate.sim.scenario import MAILBOX, Scenario
from mailgate.sim.scenario.records import HopRecord, StageSpan

#: Maildir file uids remembered for joining POP retrievals to trace ids: an entry leaves
#: when its message is retrieved, so this bounds only mail filed and never fetched (a
#: 25-minute soak's 56,000 messages kept 14 MB here when entries stayed until 100,000);
#: a uid no longer remembered is read from the message's own header.
UID_MEMORY = 10_000


#: RFC 5321 4.5.1: every SMTP domain receives mail for postmaster; where the chain's
#: undeliverable bounces end (RFC 5321 6.1), so it has a mailbox of its own
POSTMASTER = "postmaster"

#: Postfix smtpd's replies: the mailbox server's own table (local_recipient_maps) and
#: the border MX's copy of it (relay_recipient_maps, unknown_relay_recipient_reject_code)
UNKNOWN_LOCAL = "550 5.1.1 <{address}>: Recipient address rejected: User unknown"
UNKNOWN_RELAY = (
    "550 5.1.1 <{address}>: Recipient address rejected: User unknown in relay recipient table"
)


class KnownUsers(Policy):
    """Refuse recipients of our domains that have no mailbox (550 5.1.1) before DATA."""

    def __init__(
        self, users: set[str], domains: frozenset[str], reply: str = UNKNOWN_LOCAL
    ) -> None:
        self.users = users
        self.domains = domains
        self.reply = reply

    async def check_rcpt(self, msg: Incoming, address: str) -> str | None:
        local, _, domain = address.rpartition("@")
        if domain.lower() in self.domains and local.lower() not in self.users:
            return self.reply.format(address=address)
        return None


class SubmissionBorder(Policy):
    """Submission is a border too (RFC 8601 section 5): a client's own
    ``Authentication-Results`` claiming our authserv-id is removed."""

    def __init__(self, domains: frozenset[str]) -> None:
        self.domains = domains

    async def check(self, msg: Incoming) -> None:
        msg.data = strip_forged_results(msg.data, self.domains)


def mailbox_users(scenario: Scenario) -> set[str]:
    """Local parts with a mailbox: the scenario's users (they may also log in) and
    postmaster. The border MX gets the same list (Postfix ``relay_recipient_maps``)."""
    return {u.name.lower() for u in scenario.realnet.users} | {POSTMASTER}


def make_authenticator(scenario: Scenario) -> Any:
    """``(login, password) -> bool`` against the scenario's scrypt hashes."""
    from mailgate.realnet.services.passwords import dummy_verify, verify_password

    hashes = {u.name: u.password_hash for u in scenario.realnet.users}

    def authenticate(login: str, password: str) -> bool:
        user = login.partition("@")[0]
        if user not in hashes:
            dummy_verify(password)  # same cost: do not reveal which users exist
            return False
        return verify_password(password, hashes[user])

    return authenticate


class MailboxServer:
    """SMTP-in to Maildirs, submission relay to Gateway2, and POP3, as one host."""

    def __init__(
        self, scenario: Scenario, plan: AddressPlan, state_dir: Path, host_id: str = "mailbox.0"
    ) -> None:
        from mailgate.realnet.services import maildir

        self.root = state_dir / "maildirs"
        self.root.mkdir(parents=True, exist_ok=True)
        domains = frozenset(d.lower() for d in scenario.population.domains)
        users = mailbox_users(scenario)
        root = self.root
        # uid -> (trace id, flow): POP events name the Maildir file, traces the message
        self._uids: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._uid_lock = threading.Lock()
        self._logins: dict[str, tuple[float, float]] = {}

        def file_message(user: str, data: bytes) -> None:
            path = maildir.deliver(root, user.lower(), data)
            trace = parse_trace(data)
            if trace is not None:
                with self._uid_lock:  # runs in the relay's thread pool
                    self._uids[path.name.split(":", 1)[0]] = trace
                    while len(self._uids) > UID_MEMORY:
                        self._uids.popitem(last=False)

        from mailgate.realnet.testbed.tls import client_certs, relay_tls

        # STARTTLS offered on both SMTP services; required of Gateway1 (below)
        config = replace(
            RelayConfig.from_scenario(scenario, plan, host_id, state_dir),
            **relay_tls(scenario, plan, host_id, state_dir, required=False),
        )
        # SMTP-in takes mail from Gateway1 only: a stranger is refused at connect, before
        # it can hold a session slot and stall inbound mail
        inbound_from = tuple(
            ipaddress.IPv4Network(f"{a}/32") for a in upstream(scenario, plan, MAILBOX)
        )
        self.smtp = Relay(
            replace(
                config,
                local_delivery=file_message,
                allowed_clients=inbound_from,
                require_tls=True,
                # and a certificate of a Gateway1 host (mutual TLS)
                **client_certs(
                    scenario, plan, host_id, state_dir, upstream_hosts(scenario, MAILBOX)
                ),
            ),
            KnownUsers(users, domains),
        )
        # one login throttle for submission and POP3: a guesser gains nothing by switching
        self.auth_guard = AuthGuard()
        self.submission = Relay(
            replace(
                config,
                port=scenario.realnet.submission_port,
                authenticate=make_authenticator(scenario),
                auth_guard=self.auth_guard,
            ),
            SubmissionBorder(domains),
        )
        self.pop3: Any = None
        self.tracer = Tracer(state_dir, host_id)
        self.scenario = scenario
        self.plan = plan
        self.host_id = host_id

    async def start(self) -> None:
        from mailgate.realnet.services.pop3 import Pop3Server

        await self.smtp.start()
        await self.submission.start()
        self.pop3 = Pop3Server(
            self.root,
            self.scenario.realnet.users,  # Pop3Server maps them to name -> hash itself
            self.plan.host_address(self.host_id),
            self.scenario.realnet.pop3_port,
            on_event=self._pop_event,
            guard=self.auth_guard,
        )
        await self.pop3.start()

    def flush(self) -> None:
        """Retry deferred submissions now (SIGUSR1: a Gateway2 host is back)."""
        self.submission.flush()  # SMTP-in files locally: it has no queue

    async def stop(self) -> None:
        if self.pop3 is not None:
            await self.pop3.stop()
        # both drain at once: the stop stays within one grace period
        await asyncio.gather(self.submission.stop(), self.smtp.stop())
        self.auth_guard.close()
        self.tracer.close()

    def _pop_event(self, kind: str, user: str, uid: str | None, start: float, end: float) -> None:
        """POP3 events become HopRecords: login → pop_session, RETR → pop_retrieve."""
        if kind == "login":
            self._logins[user] = (start, end)
            return
        if kind != "retrieve" or uid is None:
            return
        with self._uid_lock:
            trace = self._uids.pop(uid, None)  # retrieved: a second RETR reads the file
        if trace is None:
            trace = self._trace_from_file(user, uid)
        if trace is None:
            return
        login = self._logins.get(user, (start, start))
        self.tracer.write(
            HopRecord(
                msg_id=trace[0],
                flow=trace[1],
                host=self.host_id,
                size_kb=0.0,
                arrived=login[0],
                left=end,
                outcome="retrieved",
                stages={
                    "pop_session": StageSpan(*login),
                    "pop_retrieve": StageSpan(start, end),
                },
            )
        )

    def _trace_from_file(self, user: str, uid: str) -> tuple[str, str] | None:
        """After a restart the uid map is empty: read the message's own header."""

        for sub in ("cur", "new"):
            for path in (self.root / user / sub).glob(f"{uid}*"):
                with path.open("rb") as f:
                    return parse_trace(f.read(65536))
        return None


def is_mailbox(host_id: str) -> bool:
    return host_id.rsplit(".", 1)[0] == MAILBOX
