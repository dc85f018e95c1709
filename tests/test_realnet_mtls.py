"""Mutual TLS between our tiers (issue #13: "our hops authenticate each other").

Gateway1–4 and the mailbox server's SMTP-in ask for the client's certificate on
STARTTLS and take mail only from a client whose certificate the local CA signed
and names a host of the tier's upstream. Each is spoken to from its upstream's
own address (so the address check passes and only the certificate decides):
without a certificate, with one from another CA (trustme), with a valid one of
a host that is not upstream, and with the upstream host's own. Checked on the
wire (replies, the handshake) and on disk (nothing refused is anywhere in the
state dir; the delivered message's ``Received:`` headers name each client's
verified certificate), never through the relays' own tallies.
"""

from __future__ import annotations

import email
import email.policy
import re
import smtplib
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from mailgate.realnet.addresses import host_name
from mailgate.realnet.load.probe import submit
from mailgate.realnet.services.tls import ca_file, client_context
from mailgate.realnet.testbed.supervisor import Testbed
from tests.conftest import until

pytestmark = pytest.mark.realnet

USER = "selftest"

#: each host that asks for a certificate, and a host of its upstream tier
UPSTREAM = {
    "gateway1.0": "gateway0.0",
    "gateway2.0": "mailbox.0",
    "gateway3.0": "gateway2.0",
    "gateway4.0": "gateway3.0",
    "mailbox.0": "gateway1.0",
}
#: a host of ours that is not upstream of it (its certificate is valid, but not here)
NOT_UPSTREAM = {
    "gateway1.0": "gateway2.0",
    "gateway2.0": "gateway1.0",
    "gateway3.0": "gateway0.0",
    "gateway4.0": "gateway2.0",
    "mailbox.0": "gateway0.0",
}


@pytest.fixture(scope="module")
def testbed(start_testbed) -> Iterator[Testbed]:
    with start_testbed(range(130, 140), "mtls") as bed:
        yield bed


def ours(testbed: Testbed) -> str:
    return testbed.scenario.population.domains[0]


def recipient(testbed: Testbed, host_id: str) -> str:
    """One the host would take: ours inbound, a remote one on the outgoing tiers."""
    inbound = host_id.startswith(("gateway1", "mailbox"))
    return f"{USER}@{ours(testbed)}" if inbound else "friend@bigmail.example"


def dialogue(testbed: Testbed, host_id: str, context: ssl.SSLContext, tag: str) -> list[str]:
    """A whole transaction after STARTTLS from the upstream's address; every reply."""
    host, port = testbed.smtp_endpoint(host_id)
    source = testbed.plan.host_address(UPSTREAM[host_id])
    replies: list[str] = []
    with smtplib.SMTP(host, port, timeout=10, source_address=(source, 0)) as s:
        s.ehlo("client.example")
        assert s.starttls(context=context)[0] == 220
        steps = [
            ("EHLO", "client.example"),
            ("MAIL", f"FROM:<{USER}@{ours(testbed)}>"),
            ("RCPT", f"TO:<{recipient(testbed, host_id)}>"),
            ("DATA", ""),
        ]
        for verb, arg in steps:
            code, text = s.docmd(verb, arg)
            replies.append(f"{code} {text.decode()}")
        if replies[-1].startswith("354"):  # only if the check let it through
            s.send(f"Subject: {tag}\r\n\r\n{tag}\r\n.\r\n".encode())
            code, text = s.getreply()
            replies.append(f"{code} {text.decode()}")
    return replies


def tier_names(testbed: Testbed, tier: str) -> set[str]:
    """The DNS names of every host of ``tier`` (what their certificates name)."""
    hosts = [h for h in testbed.scenario.host_ids if h.rsplit(".", 1)[0] == tier]
    return {host_name(testbed.plan, h) for h in hosts}


def verify_failures(testbed: Testbed, host_id: str) -> int:
    """Handshakes the host logged as failed for the client's certificate."""
    log = testbed.state_dir / "logs" / f"{host_id}.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    return sum(
        "TLS handshake failed" in x and "certificate verify failed" in x for x in text.splitlines()
    )


def anywhere(state_dir: Path, tag: str) -> list[Path]:
    """Every file under the state dir that holds ``tag`` (spools, Maildirs, sinks)."""
    return [p for p in state_dir.rglob("*") if p.is_file() and tag.encode() in p.read_bytes()]


def test_no_client_certificate_is_refused_554_5_7_0(testbed: Testbed) -> None:
    tags = {h: uuid.uuid4().hex for h in UPSTREAM}
    for host_id, tag in tags.items():
        replies = dialogue(testbed, host_id, client_context(testbed.state_dir), tag)
        # RFC 3207 4.1: every command after the handshake but QUIT
        assert all(r.startswith("554 5.7.0 ") for r in replies), (host_id, replies)
        assert "client certificate required" in replies[1], replies
    for tag in tags.values():
        assert anywhere(testbed.state_dir, tag) == []


def test_certificate_of_a_host_not_upstream_is_refused_554_5_7_1(testbed: Testbed) -> None:
    tags = {h: uuid.uuid4().hex for h in UPSTREAM}
    for host_id, tag in tags.items():
        other = NOT_UPSTREAM[host_id]
        context = client_context(testbed.state_dir, other)  # signed by the local CA
        replies = dialogue(testbed, host_id, context, tag)
        assert all(r.startswith("554 5.7.1 ") for r in replies), (host_id, replies)
        assert host_name(testbed.plan, other).lower() in replies[1], replies
    for tag in tags.values():
        assert anywhere(testbed.state_dir, tag) == []


def test_certificate_from_another_ca_fails_the_handshake(testbed: Testbed) -> None:
    """The same names and address as the upstream host's, signed by a stranger's CA."""
    foreign = trustme.CA()
    tags = {h: uuid.uuid4().hex for h in UPSTREAM}
    for host_id, tag in tags.items():
        client = UPSTREAM[host_id]
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(ca_file(testbed.state_dir))  # the server is ours
        address = testbed.plan.host_address(client)
        foreign.issue_cert(host_name(testbed.plan, client), address).configure_cert(context)
        failed = verify_failures(testbed, host_id)
        # TLS 1.3: the client's side of the handshake ends first; the server's alert
        # (unknown CA) ends the connection before any reply. Never an SMTP reply
        with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected)):
            dialogue(testbed, host_id, context, tag)
        # and it was the certificate: the server says so in its log
        logged = lambda h=host_id, n=failed: verify_failures(testbed, h) > n  # noqa: E731
        until(logged, 5.0, f"the failed handshake in {host_id}'s log")
    for tag in tags.values():
        assert anywhere(testbed.state_dir, tag) == []


def test_the_upstream_hosts_certificate_is_taken(testbed: Testbed) -> None:
    """The positive control of the three above: same dialogue, the right certificate."""
    host_ids = list(UPSTREAM)
    for host_id in host_ids:
        host, port = testbed.smtp_endpoint(host_id)
        client = UPSTREAM[host_id]
        source = testbed.plan.host_address(client)
        with smtplib.SMTP(host, port, timeout=10, source_address=(source, 0)) as s:
            s.starttls(context=client_context(testbed.state_dir, client))
            assert s.ehlo("client.example")[0] == 250, host_id
            assert s.mail(f"{USER}@{ours(testbed)}")[0] == 250, host_id
            assert s.rcpt(recipient(testbed, host_id))[0] == 250, host_id
            s.rset()


def test_our_relays_authenticate_each_other_on_every_inner_hop(testbed: Testbed) -> None:
    """Submission → Gateway2 → Gateway3 → Gateway0 → Gateway1 → the mailbox server: the
    message arrives, and each inner hop's ``Received:`` names the client's verified
    certificate, a host of its upstream (Gateway0, our MX, asks for none)."""
    tag = uuid.uuid4().hex
    address = f"{USER}@{ours(testbed)}"
    data = f"From: <{address}>\r\nTo: <{address}>\r\nSubject: {tag}\r\n\r\nhi\r\n".encode()
    submit(testbed.plan, USER, USER, address, [address], data, client_context(testbed.state_dir))
    folder = testbed.state_dir / "maildirs" / USER / "new"
    found = until(
        lambda: [p for p in folder.glob("*") if tag.encode() in p.read_bytes()],
        what="the message in the Maildir",
    )
    raw = found[0].read_bytes()  # type: ignore[index]
    received = [
        " ".join(v.split())
        for v in email.message_from_bytes(raw, policy=email.policy.compat32).get_all("Received")
    ]
    clients = {}
    for value in received:
        by = re.search(r"by \S+ \((\S+)\)", value).group(1).rsplit(".", 1)[0]  # type: ignore[union-attr]
        cn = re.search(r'\(Client CN "([^"]+)", Issuer "([^"]+)" \(verified OK\)\)', value)
        clients.setdefault(by, []).append(cn.groups() if cn else None)
    upstream_of = {"gateway2": "mailbox", "gateway3": "gateway2", "gateway1": "gateway0"}
    for tier, up in upstream_of.items():
        (got,) = clients[tier]
        assert got is not None, (tier, received)
        assert got[0] in tier_names(testbed, up) and got[1] == "mailgate realnet local CA", (
            tier,
            got,
        )
    # the mailbox server twice: SMTP-in (from Gateway1, certificate) and submission (none)
    smtp_in, submission = clients["mailbox"]
    assert smtp_in is not None and smtp_in[0] in tier_names(testbed, "gateway1"), received
    assert submission is None and clients["gateway0"] == [None], received


def test_client_refusal_reads_names_as_ssl_reports_them() -> None:
    """``getpeercert()``'s shape, written by hand: subjectAltName DNS names in any case,
    the CN only when there is no DNS name (RFC 6125 6.4.4), addresses never."""
    from mailgate.realnet.relay.tls import client_refusal

    allowed = frozenset({"gw0-1.ours.example"})
    cn = ((("commonName", "gw0-1.ours.example"),),)
    assert client_refusal({"subjectAltName": (("DNS", "GW0-1.ours.example"),)}, allowed) is None
    assert client_refusal({"subject": cn}, allowed) is None
    other = {"subject": cn, "subjectAltName": (("DNS", "gw2-1.ours.example"),)}
    assert client_refusal(other, allowed).startswith("554 5.7.1 ")  # type: ignore[union-attr]
    address_only = {"subjectAltName": (("IP Address", "127.0.0.1"),)}
    assert client_refusal(address_only, allowed).startswith("554 5.7.1 ")  # type: ignore[union-attr]
    assert client_refusal(None, allowed).startswith("554 5.7.0 ")  # type: ignore[union-attr]
    assert client_refusal({}, allowed).startswith("554 5.7.0 ")  # type: ignore[union-attr]
