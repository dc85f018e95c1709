"""The whole chain as real processes on loopback (one process per host).

One testbed for the module (starting 14 processes costs seconds); each test
leaves it as it found it. Retry timers are scaled down with
``realnet.time_scale`` so that a retry takes ~1.5 s. Every process is
stopped by PID by the fixture, also when a test fails.
"""

from __future__ import annotations

import random
import re
import shutil
import smtplib
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailgate.realnet.addresses import AddressPlan
from mailgate.realnet.load.probe import probe_once, submit
from mailgate.realnet.services import maildir
from mailgate.realnet.services.tls import client_context
from mailgate.realnet.testbed.remote import received, send_inbound, set_behaviour
from mailgate.realnet.testbed.supervisor import Testbed
from mailgate.sim.scenario.records import read_hops
from tests.conftest import until

pytestmark = pytest.mark.realnet

USER = "selftest"
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


@pytest.fixture(scope="module")
def testbed(start_testbed) -> Iterator[Testbed]:
    overrides = {
        "realnet.time_scale": 0.005,  # minimal backoff 300 s -> 1.5 s
        "internet.remote_mta_s": 0.0,
    }
    with start_testbed(range(27, 50), "realnet", overrides) as bed:
        yield bed


@pytest.fixture
def plan(testbed: Testbed) -> AddressPlan:
    return testbed.plan


def domain(testbed: Testbed) -> str:
    return testbed.scenario.population.domains[0]


def mailbox(testbed: Testbed, user: str = USER) -> list[bytes]:
    root = testbed.state_dir / "maildirs"
    if not (root / user).exists():
        return []
    return [maildir.read_message(m.path) for m in maildir.list_messages(root, user)]


def inbound(testbed: Testbed, tag: str, body: bytes = b"hello\r\n") -> bytes:
    return (
        f"From: <friend@bigmail.example>\r\nTo: <{USER}@{domain(testbed)}>\r\n"
        f"Subject: {tag}\r\nMessage-ID: <{tag}@bigmail.example>\r\n\r\n"
    ).encode() + body


def hops(testbed: Testbed, trace_id: str) -> list:
    out = []
    for path in (testbed.state_dir / "traces").glob("*.jsonl"):
        out += [h for h in read_hops(path) if h.msg_id == trace_id]
    return sorted(out, key=lambda h: h.arrived)


# ---------------------------------------------------------------- the self-test mail


def test_self_test_mail_arrives_signed_and_verified(testbed: Testbed) -> None:
    result = probe_once(testbed.scenario, testbed.state_dir)
    assert result.spf == "pass" and result.dkim == "pass"
    assert result.dkim_signer == domain(testbed)
    signer = [h for h in result.hops if "dkim_sign" in h.stages_ms]
    assert len(signer) == 1 and signer[0].host.startswith("gateway3.")
    path = [h for h in result.hops if h.outcome != "retrieved"]
    tiers = [h.host.rsplit(".", 1)[0] for h in path]
    assert tiers == ["mailbox", "gateway2", "gateway3", "gateway0", "gateway1", "mailbox"]
    # each hop names the host that took the message next (the model's next_hop)
    assert [h.next_hop for h in path[:-1]] == [h.host for h in path[1:]]
    assert path[-1].next_hop == "" and path[-1].outcome == "mailbox"
    assert "submission" in result.hops[0].stages_ms  # the PC's AUTH + dialogue
    pop = [h for h in result.hops if h.outcome == "retrieved"]
    assert len(pop) == 1 and {"pop_session", "pop_retrieve"} <= set(pop[0].stages_ms)
    assert result.send_to_mailbox_s is not None
    assert 0 < result.send_to_mailbox_s <= result.send_to_receive_s
    # every hop handed over after it answered 250, and the next hop began after that
    for h in result.hops:
        accepted = h.accepted_ms if h.outcome != "retrieved" else h.arrived_ms
        assert h.arrived_ms <= (accepted or 0) <= (h.left_ms or 0)


@pytest.mark.skipif(shutil.which("opendkim") is None, reason="Debian opendkim not installed")
def test_opendkim_verifies_gateway3_signature(testbed: Testbed, tmp_path: Path) -> None:
    from mailgate.realnet.services.dnsserver import run_dns_in_thread
    from mailgate.realnet.services.keys import DkimKey
    from mailgate.realnet.services.zone import build_zone

    tag = uuid.uuid4().hex
    address = f"{USER}@{domain(testbed)}"
    data = f"From: <{address}>\r\nTo: <{address}>\r\nSubject: {tag}\r\n\r\nodkim\r\n".encode()
    submit(testbed.plan, USER, USER, address, [address], data)
    raw = until(lambda: next((m for m in mailbox(testbed) if tag.encode() in m), None))
    assert b"DKIM-Signature:" in raw
    key = DkimKey.load(testbed.state_dir / "dkim")
    zone = build_zone(testbed.scenario, testbed.plan, key.public_txt)
    path = tmp_path / "msg.eml"
    path.write_bytes(raw)
    for _ in range(10):
        dns_address = f"127.53.{random.randrange(1, 255)}.{random.randrange(1, 255)}"
        try:
            with run_dns_in_thread(zone, dns_address, 53):
                conf = tmp_path / "opendkim.conf"
                conf.write_text(f"Mode v\nNameservers {dns_address}\nSyslog no\n")
                run = subprocess.run(
                    ["opendkim", "-t", str(path), "-x", str(conf)],
                    capture_output=True,
                    text=True,
                    timeout=30,
                )
            break
        except PermissionError:
            pytest.skip("binding port 53 needs root")
        except OSError:
            continue
    assert run.returncode == 0, run.stderr
    assert re.search(
        r"verification \(s=[^)]*d=" + re.escape(domain(testbed)) + r"[^)]*\) succeeded", run.stdout
    ), run.stdout + run.stderr


# ---------------------------------------------------------------- inbound policy


def test_inbound_spf_pass_is_delivered_and_spf_fail_gets_550(testbed: Testbed) -> None:
    tag = uuid.uuid4().hex
    send_inbound(
        testbed.plan, "bigmail.example", [f"{USER}@{domain(testbed)}"], inbound(testbed, tag)
    )
    raw = until(lambda: next((m for m in mailbox(testbed) if tag.encode() in m), None))
    assert re.search(rb"Authentication-Results: [^\r\n]*spf=pass", raw)
    bad = uuid.uuid4().hex
    with pytest.raises(smtplib.SMTPDataError) as e:
        send_inbound(
            testbed.plan,
            "spamhaus-victim.example",
            [f"{USER}@{domain(testbed)}"],
            inbound(testbed, bad),
        )
    assert e.value.smtp_code == 550
    time.sleep(0.3)
    assert not any(bad.encode() in m for m in mailbox(testbed))


def test_gateway0_is_not_an_open_relay(testbed: Testbed) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
        send_inbound(
            testbed.plan, "bigmail.example", ["someone@carrier.example"], inbound(testbed, "relay")
        )
    code, text = e.value.recipients["someone@carrier.example"]
    assert code == 550 and b"5.7.1" in text


def test_unknown_user_is_550_5_1_1(testbed: Testbed) -> None:
    host, port = testbed.smtp_endpoint(testbed.mailbox_host)
    gateway1 = testbed.plan.host_address("gateway1.0")  # the only tier it takes mail from
    with smtplib.SMTP(host, port, timeout=10, source_address=(gateway1, 0)) as s:
        # required between our tiers, with a certificate of the upstream tier
        s.starttls(context=client_context(testbed.state_dir, "gateway1.0"))
        s.ehlo()
        s.mail("x@bigmail.example")
        code, text = s.rcpt(f"nobody-here@{domain(testbed)}")
    assert code == 550 and b"5.1.1" in text


def test_submission_needs_auth(testbed: Testbed) -> None:
    host, port = testbed.submission
    with smtplib.SMTP(host, port, timeout=10) as s:
        s.ehlo()
        code, _ = s.mail(f"{USER}@{domain(testbed)}")
    assert code == 530


def test_eicar_is_quarantined_at_gateway1_never_in_a_mailbox(testbed: Testbed) -> None:
    tag = uuid.uuid4().hex
    body = b"Content-Type: text/plain\r\n\r\n" + EICAR + b"\r\n"
    send_inbound(
        testbed.plan, "bigmail.example", [f"{USER}@{domain(testbed)}"], inbound(testbed, tag, body)
    )

    def quarantined() -> bool:
        files = (testbed.state_dir / "quarantine").glob("gateway1.*/queue/*.msg")
        return any(tag.encode() in f.read_bytes() for f in files)

    until(quarantined, what="EICAR in Gateway1's quarantine")
    time.sleep(0.3)
    assert not any(tag.encode() in m for m in mailbox(testbed))


# ---------------------------------------------------------------- outbound and failures


def test_temporarily_failing_remote_mx_goes_via_gateway4_and_arrives_after_retry(
    testbed: Testbed,
) -> None:
    set_behaviour(testbed.state_dir, "bigmail.example", "tempfail", seconds=1.0)
    tag = uuid.uuid4().hex
    address = f"{USER}@{domain(testbed)}"
    data = (
        f"From: <{address}>\r\nTo: <friend@bigmail.example>\r\nSubject: {tag}\r\n"
        f"X-Mailgate-Trace: {tag}; flow=outbound\r\n\r\nretry me\r\n"
    ).encode()
    t0 = time.time()
    submit(testbed.plan, USER, USER, address, ["friend@bigmail.example"], data)
    got = until(
        lambda: [r for r in received(testbed.state_dir, "bigmail.example") if r["trace_id"] == tag],
        what="delivery after the retry",
    )
    assert len(got) == 1
    assert got[0]["time"] - t0 >= 1.0  # not before the failure window ended

    # the sink has the message before Gateway4 has its 250 and writes its trace: wait for it
    def with_gateway4() -> list:
        path = list(hops(testbed, tag))
        return path if any(h.host.startswith("gateway4.") for h in path) else []

    path = until(with_gateway4, what="Gateway4's trace record")
    g3 = next(h for h in path if h.host.startswith("gateway3."))
    assert g3.next_hop.startswith("gateway4.")  # the host that took it, as the model names it
    g4 = next(h for h in path if h.host.startswith("gateway4."))
    assert g4.outcome == "remote" and got[0]["client"] in testbed.plan.tier_addresses("gateway4")


def test_relay_restarted_with_a_spool_delivers_it(testbed: Testbed) -> None:
    """Gateway1's hosts both down: Gateway0 keeps the mail; restarted, it delivers."""
    g0 = [h for h in testbed.hosts if h.startswith("gateway0.")]
    tag = uuid.uuid4().hex
    for host in ("gateway1.0", "gateway1.1"):
        testbed.kill(host)
    try:
        send_inbound(
            testbed.plan, "bigmail.example", [f"{USER}@{domain(testbed)}"], inbound(testbed, tag)
        )
        time.sleep(0.3)
        spooled = [p for h in g0 for p in (testbed.state_dir / "spool" / h / "queue").glob("*")]
        assert spooled, "Gateway0 should hold the message in its spool"
        testbed.kill("gateway0.0", 9)
        testbed.kill("gateway0.1", 9)
    finally:
        for host in ("gateway1.0", "gateway1.1", "gateway0.0", "gateway0.1"):
            testbed.restart(host)
    until(lambda: any(tag.encode() in m for m in mailbox(testbed)), what="spooled mail delivered")


def test_gateway1_host_killed_mid_load_loses_nothing(testbed: Testbed) -> None:
    n_threads, per_thread = 3, 20
    accepted: list[str] = []
    errors: list[Exception] = []
    lock = threading.Lock()
    run = uuid.uuid4().hex[:8]

    def sender(k: int) -> None:
        for i in range(per_thread):
            tag = f"load-{run}-{k}-{i}"
            try:
                send_inbound(
                    testbed.plan,
                    "bigmail.example",
                    [f"{USER}@{domain(testbed)}"],
                    inbound(testbed, tag),
                    target=testbed.plan.tier_addresses("gateway0")[i % 2],
                )
                with lock:
                    accepted.append(tag)
            except (smtplib.SMTPException, OSError) as e:  # no 250: not ours to deliver
                with lock:
                    errors.append(e)

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    until(lambda: len(accepted) >= 15, what="load under way")
    testbed.kill("gateway1.0")  # SIGKILL
    for t in threads:
        t.join(timeout=60)
    testbed.restart("gateway1.0")

    def tags() -> list[str]:
        found = []
        for m in mailbox(testbed):
            found += re.findall(rb"Subject: (load-" + run.encode() + rb"-\d+-\d+)", m)
        return [t.decode() for t in found]

    until(lambda: set(accepted) <= set(tags()), timeout=30, what="every 250'd message delivered")
    found = tags()
    duplicates = len(found) - len(set(found))
    print(
        f"accepted {len(accepted)}, delivered {len(set(found))}, duplicates {duplicates}, "
        f"refused {len(errors)}"
    )
    assert set(found) == set(accepted)
    assert len(accepted) >= n_threads * per_thread - len(errors)


def test_gateway4_accepts_from_gateway3_hosts_only(testbed: Testbed) -> None:
    host, port = testbed.smtp_endpoint("gateway4.0")
    # a stranger is refused at connect, before it takes a session slot (issue #16)
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        smtplib.SMTP(host, port, timeout=10, source_address=(testbed.plan.pc_address, 0))
    assert refused.value.smtp_code == 554 and b"5.7.1" in refused.value.smtp_error
    g3 = testbed.plan.host_address("gateway3.0")
    with smtplib.SMTP(host, port, timeout=10, source_address=(g3, 0)) as s:
        s.starttls(context=client_context(testbed.state_dir, "gateway3.0"))
        s.ehlo()
        assert s.mail(f"{USER}@{domain(testbed)}")[0] == 250
        assert s.rcpt("friend@bigmail.example")[0] == 250
        s.rset()


def test_permanent_refusal_bounces_a_dsn_back_to_the_sender(testbed: Testbed) -> None:
    set_behaviour(testbed.state_dir, "carrier.example", "reject", seconds=30.0)
    try:
        tag = uuid.uuid4().hex
        address = f"{USER}@{domain(testbed)}"
        data = (
            f"From: <{address}>\r\nTo: <nobody@carrier.example>\r\nSubject: {tag}\r\n\r\nx\r\n"
        ).encode()
        submit(testbed.plan, USER, USER, address, ["nobody@carrier.example"], data)
        dsn = until(
            lambda: next(
                (m for m in mailbox(testbed) if tag.encode() in m and b"delivery-status" in m),
                None,
            ),
            what="the DSN in the sender's mailbox",
        )
    finally:
        set_behaviour(testbed.state_dir, "carrier.example", "accept", seconds=0.0)
    assert b"Action: failed" in dsn and b"Status: 5.1.1" in dsn
    assert b"Final-Recipient: rfc822; nobody@carrier.example" in dsn
    assert re.search(rb"Authentication-Results: [^\r\n]*spf=pass", dsn)  # HELO check of <>


def test_ed25519_signing_is_selectable(start_testbed) -> None:
    overrides = {"realnet.dkim_algorithm": "ed25519-sha256"}
    hosts = ["mailbox.0", "gateway0.0", "gateway1.0", "gateway2.0", "gateway3.0"]
    with start_testbed(range(100, 120), "ed25519", overrides, hosts=hosts) as bed:
        result = probe_once(bed.scenario, bed.state_dir)
    assert result.dkim == "pass" and "header.a=ed25519-sha256" in result.authentication_results
