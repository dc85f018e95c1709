"""The testbed's local certificate authority and the TLS contexts made from it.

``realnet up`` (``Testbed.start``) calls :func:`ensure_ca` once, before any host
process starts: it writes ``<state>/tls/ca.crt`` and ``ca.key`` and, per host,
``<host>.crt`` and ``<host>.key`` (private keys mode 0600, like Postfix's
``smtpd_tls_key_file``). Each host certificate names the host's DNS name and its
loopback address (subjectAltName), so a client that connects by address can
verify it. Keys are ECDSA P-256: a TLS 1.3 handshake with them costs about a
millisecond of CPU, an RSA-2048 one several times that (benchmarks/bench_tls.py).

The host processes then only read: :func:`server_context` (the host's own key
and certificate; on our inner tiers it also asks for the client's and verifies
it) and :func:`client_context` (verifying against the local CA, or opportunistic
without verification, like Postfix ``smtp_tls_security_level = may``).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

#: the folder under the state dir that holds the CA and every host's key pair
TLS_DIR = "tls"
CA_NAME = "ca"
#: long enough for any testbed run, short enough not to look like a real CA
VALIDITY = datetime.timedelta(days=30)


@dataclass(frozen=True)
class HostIdentity:
    """What one host's certificate names: its id (file name), DNS name and address."""

    host_id: str
    dns_name: str
    address: str


def tls_dir(state_dir: Path) -> Path:
    return Path(state_dir) / TLS_DIR


def ca_file(state_dir: Path) -> Path:
    """The CA certificate a client verifies our hosts against."""
    return tls_dir(state_dir) / f"{CA_NAME}.crt"


def cert_files(state_dir: Path, host_id: str) -> tuple[Path, Path]:
    """(certificate, private key) of ``host_id``."""
    folder = tls_dir(state_dir)
    return folder / f"{host_id}.crt", folder / f"{host_id}.key"


def ensure_ca(state_dir: Path, hosts: list[HostIdentity]) -> Path:
    """Make the CA (if the folder has none) and a key pair for every host that lacks one.

    Returns the folder. A testbed restarted on the same state dir keeps its CA, so
    a client that trusted it still does.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = tls_dir(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_crt, ca_key_path = folder / f"{CA_NAME}.crt", folder / f"{CA_NAME}.key"
    if ca_crt.exists() and ca_key_path.exists():
        ca_key = _load_key(ca_key_path)
        ca_cert = x509.load_pem_x509_certificate(ca_crt.read_bytes())
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailgate realnet local CA")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(ca_key, hashes.SHA256())
        )
        _write_key(ca_key_path, ca_key)
        ca_crt.write_bytes(_pem_cert(ca_cert))
    for host in hosts:
        crt, key_path = cert_files(state_dir, host.host_id)
        if crt.exists() and key_path.exists():
            continue
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host.dns_name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName(host.dns_name),
                        x509.IPAddress(ipaddress.ip_address(host.address)),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [x509.ExtendedKeyUsageOID.SERVER_AUTH, x509.ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        _write_key(key_path, key)
        crt.write_bytes(_pem_cert(cert) + _pem_cert(ca_cert))
    return folder


def server_context(
    state_dir: Path, host_id: str, *, ask_client_cert: bool = False
) -> ssl.SSLContext:
    """A server's context: the host's own certificate chain, TLS 1.2 at least.

    With ``ask_client_cert`` the handshake asks the client for its certificate and
    verifies one it sends against the local CA (Postfix ``smtpd_tls_ask_ccert``).
    ``CERT_OPTIONAL``, not ``CERT_REQUIRED``: a client without one still completes the
    handshake, so it can be told why in SMTP (``realnet.relay.tls.client_refusal``)
    instead of by a TLS alert. A certificate from another CA fails the handshake either
    way (Python's ssl has no verify callback to let it through and refuse it later)."""
    crt, key = cert_files(state_dir, host_id)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(crt, key)
    if ask_client_cert:
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(ca_file(state_dir))
    return ctx


def client_context(state_dir: Path | None, host_id: str | None = None) -> ssl.SSLContext:
    """A client's context. With ``state_dir``: verifies the peer against the local CA
    (and presents ``host_id``'s certificate, if given); without: opportunistic, no
    verification (an MX on the Internet may have any certificate, Postfix ``may``)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if state_dir is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ctx.load_verify_locations(ca_file(state_dir))
    if host_id is not None:
        ctx.load_cert_chain(*cert_files(state_dir, host_id))
    return ctx


def _write_key(path: Path, key: object) -> None:
    from cryptography.hazmat.primitives import serialization

    pem = key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # created 0600 from the start: never readable by others, not even for a moment
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def _load_key(path: Path) -> object:
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def _pem_cert(cert: object) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)  # type: ignore[attr-defined]
