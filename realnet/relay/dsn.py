"""Delivery status notifications (RFC 3464) for mail a relay gives up on."""

from __future__ import annotations

import email.utils
import re
import uuid

from mailgate.realnet.relay.message import header_block
from mailgate.realnet.relay.smtpclient import SmtpError
from mailgate.realnet.relay.spool import SpoolEntry


def make_dsn(hostname: str, entry: SpoolEntry, failed: dict[str, SmtpError]) -> bytes:
    """A delivery status notification: human text, per-recipient status, original headers."""
    boundary = uuid.uuid4().hex
    per_rcpt = "".join(
        f"Final-Recipient: rfc822; {r}\r\nAction: failed\r\n"
        f"Status: {_status(e)}\r\nDiagnostic-Code: smtp; {e.code} {e.text}\r\n\r\n"
        for r, e in failed.items()
    )
    text = "".join(f"<{r}>: {e.code} {e.text}\r\n" for r, e in failed.items())
    head = header_block(entry.data)
    out = (
        f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n"
        f"To: <{entry.mail_from}>\r\n"
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
        f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    ).encode()
    return out + head + f"\r\n--{boundary}--\r\n".encode()


def _status(e: SmtpError) -> str:
    m = re.match(r"([245]\.\d{1,3}\.\d{1,3})", e.text)
    if m:
        return m.group(1)
    return "5.0.0" if e.permanent else "4.0.0"
