"""The DKIM signing key Gateway3 uses, generated once and shared by every host process.

RSA keys are made by the ``openssl`` command (as dkimpy's own ``dknewkey``
does; dkimpy has no key generator of its own and the project does not
depend on ``cryptography``); ed25519 keys by PyNaCl. ``private_key`` is in
the form ``dkim.DKIM.sign`` takes: PEM for RSA, the base64 seed for ed25519.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

ALGORITHMS = ("rsa-sha256", "ed25519-sha256")
RSA_BITS = 2048
_PRIVATE_FILE = "dkim.private"
_META_FILE = "dkim.json"


@dataclass(frozen=True)
class DkimKey:
    """A DKIM key pair and where its public half is published."""

    algorithm: str  # "rsa-sha256" or "ed25519-sha256"
    selector: str
    domain: str
    private_key: bytes
    public_txt: str  # the TXT value at <selector>._domainkey.<domain>

    @property
    def dns_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    @classmethod
    def generate(cls, algorithm: str, selector: str, domain: str) -> DkimKey:
        """A fresh key (RSA-2048 takes ~0.1-1 s, ed25519 is instant)."""
        if algorithm == "rsa-sha256":
            private, public_b64 = _generate_rsa()
            txt = f"v=DKIM1; k=rsa; h=sha256; p={public_b64}"
        elif algorithm == "ed25519-sha256":
            import nacl.signing

            signing = nacl.signing.SigningKey.generate()
            private = base64.b64encode(bytes(signing))
            txt = f"v=DKIM1; k=ed25519; p={base64.b64encode(bytes(signing.verify_key)).decode()}"
        else:
            raise ValueError(f"unknown DKIM algorithm {algorithm!r}; expected {ALGORITHMS}")
        return cls(algorithm, selector, domain, private, txt)

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the key into ``directory`` (private file mode 0600); returns the directory."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        private = path / _PRIVATE_FILE
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(self.private_key)
        meta = {
            "algorithm": self.algorithm,
            "selector": self.selector,
            "domain": self.domain,
            "public_txt": self.public_txt,
        }
        (path / _META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> DkimKey:
        """The key :meth:`save` wrote into ``directory``."""
        path = Path(directory)
        meta = json.loads((path / _META_FILE).read_text())
        return cls(
            meta["algorithm"],
            meta["selector"],
            meta["domain"],
            (path / _PRIVATE_FILE).read_bytes(),
            meta["public_txt"],
        )

    @classmethod
    def load_or_generate(
        cls, directory: str | os.PathLike[str], algorithm: str, selector: str, domain: str
    ) -> DkimKey:
        """The saved key if it matches, else a new one saved there (what the supervisor wants)."""
        try:
            key = cls.load(directory)
        except (OSError, ValueError, KeyError):
            key = None
        if key is None or (key.algorithm, key.selector, key.domain) != (
            algorithm,
            selector,
            domain,
        ):
            key = cls.generate(algorithm, selector, domain)
            key.save(directory)
        return key


def _generate_rsa() -> tuple[bytes, str]:
    """(PEM private key, base64 DER SubjectPublicKeyInfo) from ``openssl``."""
    private = subprocess.run(
        ["openssl", "genrsa", str(RSA_BITS)], check=True, capture_output=True
    ).stdout
    public_der = subprocess.run(
        ["openssl", "rsa", "-pubout", "-outform", "DER"],
        input=private,
        check=True,
        capture_output=True,
    ).stdout
    return private, base64.b64encode(public_der).decode()
