"""Delivery status notifications (RFC 3464) for mail a relay gives up on.

``make_dsn`` writes the report; ``Bouncer`` queues it on the relay's own spool
as one more message from the null sender to the failed message's
reverse-path, which the queue manager then delivers like outgoing mail (by the
recipient's MX, or the way our own domain's mail goes: ``SpoolEntry.dsn``).

No accepted message is dropped (issue #16). A notification that itself cannot
be delivered (null sender) goes to our postmaster (RFC 5321 6.1: "the
postmaster ... should be notified"; 4.5.5: never a bounce to the null
sender); if the notice to the postmaster fails too, ``bounce`` hands its
recipients back and the message stays in the spool to be retried (Postfix
would discard a failed double bounce; we keep it, as the issue asks).
"""

from __future__ import annotations

import email.utils
import logging
import re
import time
import uuid
from collections.abc import Callable

from mailgate.realnet.relay.config import RelayConfig
from mailgate.realnet.relay.message import domain_of, header_block, trace_header
from mailgate.realnet.relay.smtpclient import SmtpError
from mailgate.realnet.relay.spool import Spool, SpoolEntry
from mailgate.realnet.relay.tracing import record_dict
from mailgate.sim.scenario.records import HopRecord

log = logging.getLogger(__name__)


def make_dsn(hostname: str, entry: SpoolEntry, failed: dict[str, SmtpError], to: str = "") -> bytes:
    """A delivery status notification to ``to`` (default: the reverse-path): human text,
    per-recipient status, the original's headers — or, when the original is itself a
    bounce (null sender), the whole of it (RFC 6522 allows ``message/rfc822``), so the
    postmaster sees what the lost bounce said."""
    boundary = uuid.uuid4().hex
    per_rcpt = "".join(
        f"Final-Recipient: rfc822; {r}\r\nAction: failed\r\n"
        f"Status: {_status(e)}\r\nDiagnostic-Code: smtp; {e.code} {e.text}\r\n\r\n"
        for r, e in failed.items()
    )
    text = "".join(f"<{r}>: {e.code} {e.text}\r\n" for r, e in failed.items())
    whole = not entry.mail_from
    returned = entry.data if whole else header_block(entry.data)
    part = "message/rfc822" if whole else "text/rfc822-headers"
    out = (
        f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n"
        f"To: <{to or entry.mail_from}>\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\n"
        f"Date: {email.utils.formatdate()}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@{hostname}>\r\n"
        f"Auto-Submitted: auto-replied\r\n"
        f"MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
        f"\r\n--{boundary}\r\nContent-Type: text/plain\r\n\r\n"
        f"Your message could not be delivered to these recipients:\r\n\r\n{text}"
        f"\r\n--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; {hostname}\r\n\r\n{per_rcpt}"
        f"--{boundary}\r\nContent-Type: {part}\r\n\r\n"
    ).encode()
    return out + returned + f"\r\n--{boundary}--\r\n".encode()


def _status(e: SmtpError) -> str:
    m = re.match(r"([245]\.\d{1,3}\.\d{1,3})", e.text)
    if m:
        return m.group(1)
    return "5.0.0" if e.permanent else "4.0.0"


class Bouncer:
    """Queues a DSN for the recipients a relay gave up on (Postfix's bounce daemon)."""

    def __init__(
        self, config: RelayConfig, spool: Spool, queued: Callable[[SpoolEntry], None]
    ) -> None:
        self.config = config
        self.spool = spool
        #: told of every DSN spooled (the queue manager delivers it)
        self.queued = queued

    async def bounce(self, entry: SpoolEntry, failed: dict[str, SmtpError]) -> list[str]:
        """Queue a DSN (RFC 3464) for ``failed``; the recipients it could not bounce.

        The DSN goes to the reverse-path; a failed DSN's to our postmaster. The
        postmaster's own notice is never bounced: its failed recipients come back,
        for the caller to keep in the spool and retry.
        """
        to = entry.mail_from
        if not to:  # the failed message is itself a bounce
            postmaster = self.config.postmaster_address
            to_postmaster = {r for r in failed if r.lower() == postmaster.lower()}
            kept = [r for r in failed if r in to_postmaster or not postmaster]
            failed = {r: e for r, e in failed.items() if r not in kept}
            if kept:
                log.error("notice to the postmaster %s undeliverable, kept: %s", entry.id, kept)
            if not failed:
                return kept
            log.warning("bounce %s undeliverable, told the postmaster: %s", entry.id, failed)
            to = postmaster
        else:
            kept = []
        # a bounce is one more message: to our own user it travels like internal mail,
        # to anyone else like outbound; it carries its own trace id
        trace_id = uuid.uuid4().hex[:16]
        local = domain_of(to) in self.config.local_domains
        flow = "internal" if local else "outbound"
        data = trace_header(trace_id, flow) + make_dsn(self.config.hostname, entry, failed, to)
        dsn = SpoolEntry(
            id=SpoolEntry.new_id(),
            mail_from="",
            rcpt_tos=[to],
            data=data,
            trace_id=trace_id,
            flow=flow,
            dsn=True,
        )
        now = time.time()
        record = HopRecord(trace_id, flow, self.config.host_id, len(data) / 1024, now, now)
        dsn.record = record_dict(record)
        await self.spool.put(dsn)
        self.queued(dsn)
        return kept
