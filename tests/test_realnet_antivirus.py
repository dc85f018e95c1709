"""Antivirus: the embedded scanner, and clamd (Debian clamav-daemon) with a local EICAR database."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import socket
import subprocess
import time
from email.message import EmailMessage

import pytest

from mailgate.realnet.services.antivirus import (
    EICAR,
    EICAR_NAME,
    ClamdScanner,
    EmbeddedScanner,
    ScanError,
    Signature,
    make_scanner,
)
from mailgate.sim.scenario.loading import load
from tests.conftest import TESTBED

HOST = "127.0.0.1"


def mail(attachment: bytes | None = None, cte: str = "base64", text: str = "Hello.") -> bytes:
    msg = EmailMessage()
    msg["From"] = "a@bigmail.example"
    msg["To"] = "b@drive-network.example"
    msg["Subject"] = "attachment"
    msg.set_content(text)
    if attachment is not None:
        msg.add_attachment(
            attachment,
            maintype="application",
            subtype="octet-stream",
            filename="file.bin",
            cte=cte,
        )
    return msg.as_bytes()


# ---------------------------------------------------------------- embedded


@pytest.mark.parametrize("cte", ["base64", "quoted-printable"])
def test_embedded_finds_eicar_in_encoded_attachments(cte):
    assert EmbeddedScanner().scan(mail(EICAR, cte)) == EICAR_NAME


def test_embedded_finds_eicar_in_a_plain_body_and_passes_clean_mail():
    scanner = EmbeddedScanner()
    raw = b"Subject: test\r\n\r\n" + EICAR + b"\r\n"
    assert scanner.scan(raw) == EICAR_NAME
    assert scanner.scan(mail()) is None
    assert scanner.scan(mail(b"harmless bytes \x00\x01")) is None
    assert scanner.scan(b"") is None
    assert scanner.scan(b"\xff\xfe not a mail at all") is None


def test_embedded_md5_signature_matches_the_decoded_part_not_the_base64():
    payload = b"pretend this is malware" * 50
    sig = Signature("Test.Local.Md5", md5=hashlib.md5(payload).hexdigest(), size=len(payload))
    scanner = EmbeddedScanner([sig])
    assert scanner.scan(mail(payload)) == "Test.Local.Md5"
    assert scanner.scan(mail(payload + b"!")) is None
    wrong_size = dataclasses.replace(sig, size=len(payload) + 1)
    assert EmbeddedScanner([wrong_size]).scan(mail(payload)) is None


def test_embedded_byte_pattern_and_eicar_can_be_turned_off():
    scanner = EmbeddedScanner([Signature("Test.Pattern", pattern=b"\xde\xad\xbe\xef")], eicar=False)
    assert scanner.scan(mail(b"xx\xde\xad\xbe\xefyy")) == "Test.Pattern"
    assert scanner.scan(mail(EICAR)) is None


def test_hdb_file_feeds_the_embedded_scanner(tmp_path):
    hdb = tmp_path / "local.hdb"
    hdb.write_text(f"# comment\n\n{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:Local.Eicar\n")
    assert EmbeddedScanner.from_hdb(hdb, eicar=False).scan(mail(EICAR)) == "Local.Eicar"
    with pytest.raises(ValueError):
        Signature.parse_hdb("nonsense")


def test_make_scanner_follows_the_scenario():
    embedded = load(TESTBED)
    assert isinstance(make_scanner(embedded), EmbeddedScanner)
    clamd = load(
        "scenarios/loopback-testbed.toml",
        overrides={"realnet.antivirus": "clamd", "realnet.clamd_address": "127.0.0.1:3399"},
    )
    scanner = make_scanner(clamd)
    assert isinstance(scanner, ClamdScanner) and (scanner.host, scanner.port) == (HOST, 3399)


# ---------------------------------------------------------------- clamd


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def clamd(tmp_path_factory):
    """Debian's clamd on a free port with a database holding only an EICAR signature."""
    binary = shutil.which("clamd") or shutil.which("clamd", path="/usr/sbin")
    if binary is None:
        pytest.skip("Debian clamav-daemon not installed")
    base = tmp_path_factory.mktemp("clamd")
    (base / "db").mkdir()
    (base / "db" / "local.hdb").write_text(
        f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:Test.EICAR.Local\n"
    )
    port = free_port()
    conf = base / "clamd.conf"
    conf.write_text(
        f"DatabaseDirectory {base / 'db'}\nTCPSocket {port}\nTCPAddr {HOST}\n"
        f"Foreground yes\nLogFile {base / 'clamd.log'}\nStreamMaxLength 1M\n"
    )
    log = open(base / "stdout.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        scanner = ClamdScanner(HOST, port, timeout=10)
        deadline = time.monotonic() + 60
        while not scanner.ping():
            if proc.poll() is not None:
                pytest.fail(f"clamd exited: {(base / 'stdout.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("clamd did not answer PING within 60 s")
            time.sleep(0.1)
        yield scanner
    finally:
        proc.terminate()  # by PID, never by name
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


@pytest.mark.realnet
def test_clamd_finds_eicar_and_passes_clean_mail(clamd):
    assert clamd.scan(EICAR) == "Test.EICAR.Local.UNOFFICIAL"
    assert clamd.scan(mail(EICAR)) == "Test.EICAR.Local.UNOFFICIAL"  # clamd decodes MIME
    assert clamd.scan(mail()) is None
    big = mail(b"x" * 200_000)  # several INSTREAM chunks
    assert clamd.scan(big) is None


@pytest.mark.realnet
def test_clamd_errors_are_not_clean(clamd):
    with pytest.raises(ScanError):
        clamd.scan(b"y" * 2_000_000)  # over StreamMaxLength
    with pytest.raises(ScanError):
        ClamdScanner(HOST, free_port(), timeout=1).scan(b"x")
