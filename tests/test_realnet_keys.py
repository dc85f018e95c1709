"""The shared DKIM key and the scrypt password hashes."""

from __future__ import annotations

import stat

import dkim
import pytest

from mailgate.realnet.services.keys import DkimKey
from mailgate.realnet.services.passwords import hash_password, parse_hash, verify_password

MESSAGE = b"From: a@d.example\r\nTo: b@x.example\r\nSubject: s\r\n\r\nbody\r\n"


@pytest.mark.parametrize("algorithm", ["rsa-sha256", "ed25519-sha256"])
def test_key_round_trips_through_a_directory_and_signs(tmp_path, algorithm):
    key = DkimKey.generate(algorithm, "sel", "d.example")
    assert key.dns_name == "sel._domainkey.d.example"
    assert key.public_txt.startswith("v=DKIM1; k=") and "p=" in key.public_txt
    key.save(tmp_path / "k")
    assert stat.S_IMODE((tmp_path / "k" / "dkim.private").stat().st_mode) == 0o600
    loaded = DkimKey.load(tmp_path / "k")
    assert loaded == key
    signature = dkim.sign(
        MESSAGE, b"sel", b"d.example", loaded.private_key, signature_algorithm=algorithm.encode()
    )
    assert dkim.verify(signature + MESSAGE, dnsfunc=lambda _n, timeout=5: key.public_txt.encode())


def test_load_or_generate_reuses_a_matching_key(tmp_path):
    first = DkimKey.load_or_generate(tmp_path, "ed25519-sha256", "sel", "d.example")
    assert DkimKey.load_or_generate(tmp_path, "ed25519-sha256", "sel", "d.example") == first
    other = DkimKey.load_or_generate(tmp_path, "ed25519-sha256", "new", "d.example")
    assert other != first and DkimKey.load(tmp_path) == other


def test_unknown_algorithm():
    with pytest.raises(ValueError):
        DkimKey.generate("rsa-sha1", "s", "d.example")


def test_password_hash_round_trip():
    encoded = hash_password("secret", n=1024)
    n, r, p, salt, digest = parse_hash(encoded)
    assert (n, r, p, len(salt), len(digest)) == (1024, 8, 1, 16, 32)
    assert verify_password("secret", encoded)
    assert not verify_password("Secret", encoded)
    assert hash_password("secret", n=1024) != encoded  # salted
    for bad in ("", "scrypt$1000$8$1$00$00", "md5$x", "scrypt$16384$8$1$zz$00"):
        assert not verify_password("secret", bad)
