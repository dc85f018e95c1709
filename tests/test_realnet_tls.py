"""TLS on every hop (issue #13): the local CA, STARTTLS offered on the MX, required
between our own tiers, AUTH only after it, and TLS in every internal hop's
``Received:``. Checked on the wire (replies, handshakes) and on disk (the
message file in the Maildir, the key files' modes), never through the relays'
own tallies."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import re
import smtplib
import socket
import ssl
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from mailgate.realnet.load.probe import submit
from mailgate.realnet.relay.config import RelayConfig
from mailgate.realnet.relay.relay import Relay
from mailgate.realnet.relay.smtpclient import ConnectionPool, TlsError
from mailgate.realnet.relay.tls import ClientTls, tls_of_received
from mailgate.realnet.services.tls import client_context
from mailgate.realnet.testbed.supervisor import Testbed
from tests.conftest import until

pytestmark = pytest.mark.realnet

USER = "selftest"


@pytest.fixture(scope="module")
def testbed(start_testbed) -> Iterator[Testbed]:
    with start_testbed(range(241, 250), "tls") as bed:
        yield bed


def ours(testbed: Testbed) -> str:
    return testbed.scenario.population.domains[0]


# ---------------------------------------------------------------- the local CA


def test_private_keys_are_0600_and_every_host_has_a_certificate(testbed: Testbed) -> None:
    folder = testbed.state_dir / "tls"
    keys = sorted(folder.glob("*.key"))
    names = {k.stem for k in keys}
    assert {"ca", *testbed.scenario.host_ids} <= names
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
        assert (folder / f"{key.stem}.crt").exists(), key


# ---------------------------------------------------------------- Gateway0: opportunistic


def test_gateway0_offers_starttls_verified_by_the_local_ca_only(testbed: Testbed) -> None:
    plan = testbed.plan
    host, port = testbed.smtp_endpoint("gateway0.0")
    source = plan.remote_sender_address("bigmail.example")
    with smtplib.SMTP(host, port, timeout=10, source_address=(source, 0)) as s:
        s.ehlo("mta.bigmail.example")
        assert s.has_extn("starttls")
        code, _ = s.starttls(context=client_context(testbed.state_dir))
        assert code == 220
        assert s.sock.version() in ("TLSv1.2", "TLSv1.3")
        # the certificate names the host's loopback address (verified by the handshake)
        names = [v for _, v in s.sock.getpeercert()["subjectAltName"]]
        assert host in names
    # a client trusting another CA refuses the handshake: it really is our CA's chain
    other = ssl.create_default_context()
    trustme.CA().configure_trust(other)
    with smtplib.SMTP(host, port, timeout=10, source_address=(source, 0)) as s:
        s.ehlo("mta.bigmail.example")
        with pytest.raises(ssl.SSLCertVerificationError):
            s.starttls(context=other)


def test_gateway0_still_takes_plaintext_mail_like_an_mx(testbed: Testbed) -> None:
    host, port = testbed.smtp_endpoint("gateway0.0")
    source = testbed.plan.remote_sender_address("bigmail.example")
    with smtplib.SMTP(host, port, timeout=10, source_address=(source, 0)) as s:
        s.ehlo("mta.bigmail.example")
        assert s.mail("sender@bigmail.example")[0] == 250


# ---------------------------------------------------------------- our tiers: required


def test_our_tiers_refuse_mail_before_starttls(testbed: Testbed) -> None:
    plan = testbed.plan
    upstream = {
        "gateway1.0": "gateway0.0",
        "gateway2.0": "mailbox.0",
        "gateway3.0": "gateway2.0",
        "gateway4.0": "gateway3.0",
        "mailbox.0": "gateway1.0",
    }
    for host_id, client in upstream.items():
        host, port = testbed.smtp_endpoint(host_id)
        source = plan.host_address(client)
        with smtplib.SMTP(host, port, timeout=10, source_address=(source, 0)) as s:
            s.ehlo(f"{client}.example")
            assert s.has_extn("starttls"), host_id
            code, text = s.mail(f"{USER}@{ours(testbed)}")
            assert (code, text) == (530, b"5.7.0 Must issue a STARTTLS command first"), host_id
            # after STARTTLS (both sides verified against the local CA) it is taken
            s.starttls(context=client_context(testbed.state_dir, client))
            s.ehlo(f"{client}.example")
            assert not s.has_extn("auth"), host_id  # AUTH exists on submission only
            assert s.mail(f"{USER}@{ours(testbed)}")[0] == 250, host_id


# ---------------------------------------------------------------- submission


def test_submission_refuses_auth_before_tls(testbed: Testbed) -> None:
    host, port = testbed.submission
    token = base64.b64encode(f"\0{USER}\0{USER}".encode()).decode()
    with smtplib.SMTP(host, port, timeout=10, source_address=(testbed.plan.pc_address, 0)) as s:
        s.ehlo("pc.example")
        assert not s.has_extn("auth")  # not advertised in clear
        assert s.docmd("AUTH", f"PLAIN {token}") == (
            538,
            b"5.7.11 Encryption required for requested authentication mechanism",
        )
        s.starttls(context=client_context(testbed.state_dir))
        s.ehlo("pc.example")
        assert s.has_extn("auth")
        assert s.docmd("AUTH", f"PLAIN {token}")[0] == 235


# ---------------------------------------------------------------- the whole chain


def test_every_internal_hop_received_the_message_over_tls(testbed: Testbed) -> None:
    tag = uuid.uuid4().hex
    address = f"{USER}@{ours(testbed)}"
    data = f"From: <{address}>\r\nTo: <{address}>\r\nSubject: {tag}\r\n\r\nhello\r\n".encode()
    submit(testbed.plan, USER, USER, address, [address], data, client_context(testbed.state_dir))
    raw = until(lambda: in_maildir(testbed, tag), what="the message in the Maildir")
    assert isinstance(raw, bytes)
    # the headers as any mail reader sees them (the Maildir file has LF line ends)
    received = [
        " ".join(v.split())
        for v in email.message_from_bytes(raw, policy=email.policy.compat32).get_all("Received")
    ]
    hosts = [re.search(r"by \S+ \((\S+)\)", r).group(1) for r in received]  # type: ignore[union-attr]
    # newest first: mailbox ← gateway1 ← gateway0 ← gateway3 ← gateway2 ← submission
    tiers = [h.rsplit(".", 1)[0] for h in hosts]
    assert tiers == ["mailbox", "gateway1", "gateway0", "gateway3", "gateway2", "mailbox"]
    for value, host in zip(received, hosts, strict=True):
        tls = tls_of_received(value)
        assert tls is not None and tls[0] in ("TLSv1.2", "TLSv1.3"), (host, value)
        assert " with ESMTPS" in value or " with ESMTPSA" in value, value


def test_the_load_generator_submits_over_verified_tls(testbed: Testbed) -> None:
    from mailgate.realnet.addresses import Endpoint
    from mailgate.realnet.load.mailclients import Auth, smtp_send
    from mailgate.realnet.load.schedule import Target

    target = Target.from_plan(testbed.plan, testbed.state_dir)
    assert target.tls is not None and target.tls.verify_mode == ssl.CERT_REQUIRED
    tag = uuid.uuid4().hex
    address = f"{USER}@{ours(testbed)}"
    data = f"From: <{address}>\r\nSubject: {tag}\r\n\r\nload\r\n".encode()
    host, port = testbed.submission
    asyncio.run(
        smtp_send(
            Endpoint(host, port),
            address,
            [address],
            data,
            source=testbed.plan.pc_address,
            auth=Auth(USER, USER),
            tls=target.tls,
        )
    )
    raw = until(lambda: in_maildir(testbed, tag), what="the load generator's message")
    assert isinstance(raw, bytes)
    received = email.message_from_bytes(raw, policy=email.policy.compat32).get_all("Received")
    first = " ".join(received[-1].split())  # the submission hop's, the oldest
    assert "with ESMTPSA" in first and tls_of_received(first) is not None, first


def in_maildir(testbed: Testbed, tag: str) -> bytes | None:
    for path in (testbed.state_dir / "maildirs" / USER / "new").glob("*"):
        raw = path.read_bytes()
        if tag.encode() in raw:
            return raw
    return None


# ---------------------------------------------------------------- the relay client


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _pool(ca: trustme.CA, ours: frozenset[str], opportunistic: bool = True) -> ConnectionPool:
    verified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(verified)
    loose = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    loose.check_hostname, loose.verify_mode = False, ssl.CERT_NONE
    tls = ClientTls(verified=verified, opportunistic=loose if opportunistic else None, ours=ours)
    return ConnectionPool(helo="client.example", source=None, timeout=10, tls=tls)


def test_relay_client_verifies_our_hops_and_is_opportunistic_elsewhere(tmp_path: Path) -> None:
    """A server whose certificate comes from a CA (trustme) our client trusts or not."""
    server_ca, other_ca = trustme.CA(), trustme.CA()
    bind = "127.64.0.1"
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ca.issue_cert(bind).configure_cert(server_ctx)
    got: list[bytes] = []

    async def main() -> None:
        config = RelayConfig(
            host_id="mx.0",
            hostname="mx.ours.example",
            bind=bind,
            port=_free_port(bind),
            state_dir=tmp_path,
            local_domains=frozenset({"ours.example"}),
            local_delivery=lambda user, data: got.append(data),
            tls_context=server_ctx,
            require_tls=True,
        )
        relay = Relay(config)
        await relay.start()
        try:
            message = b"Subject: t\r\n\r\nbody\r\n"
            # one of ours, certificate from the CA we trust: delivered over TLS
            pool = _pool(server_ca, frozenset({bind}))
            result = await pool.send(
                bind, config.port, "a@ours.example", ["b@ours.example"], message
            )
            assert result.accepted == ["b@ours.example"]
            await pool.close()
            # one of ours, but its certificate is from another CA: refused, not delivered
            pool = _pool(other_ca, frozenset({bind}))
            with pytest.raises(TlsError):
                await pool.send(bind, config.port, "a@ours.example", ["b@ours.example"], message)
            await pool.close()
            # a remote MX (not ours) with that same certificate: TLS without verification
            pool = _pool(other_ca, frozenset())
            result = await pool.send(
                bind, config.port, "a@ours.example", ["b@ours.example"], message
            )
            assert result.accepted == ["b@ours.example"]
            await pool.close()
            # a remote MX and no opportunistic TLS: plaintext, which this server refuses
            pool = _pool(other_ca, frozenset(), opportunistic=False)
            with pytest.raises(Exception, match="530"):
                await pool.send(bind, config.port, "a@ours.example", ["b@ours.example"], message)
            await pool.close()
        finally:
            await relay.stop()

    asyncio.run(asyncio.wait_for(main(), 60))
    assert len(got) == 2
    for data in got:
        tls = tls_of_received(data.split(b"\r\n\r\n")[0].decode())
        assert tls is not None and tls[0].startswith("TLSv1.")


def test_relay_client_will_not_send_in_clear_to_our_hop_without_starttls(
    tmp_path: Path,
) -> None:
    bind = "127.64.0.2"
    got: list[bytes] = []

    async def main() -> None:
        config = RelayConfig(
            host_id="mx.0",
            hostname="mx.ours.example",
            bind=bind,
            port=_free_port(bind),
            state_dir=tmp_path,
            local_domains=frozenset({"ours.example"}),
            local_delivery=lambda user, data: got.append(data),
        )
        relay = Relay(config)  # no TLS offered at all
        await relay.start()
        try:
            pool = _pool(trustme.CA(), frozenset({bind}))
            with pytest.raises(TlsError, match="does not offer STARTTLS"):
                await pool.send(bind, config.port, "a@ours.example", ["b@ours.example"], b"x\r\n")
            await pool.close()
        finally:
            await relay.stop()

    asyncio.run(asyncio.wait_for(main(), 60))
    assert got == []
