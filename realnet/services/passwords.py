"""Password hashes for realnet users: ``scrypt$n$r$p$salthex$hashhex``.

The scenario stores only these hashes (``[[realnet.users]]``); the POP3
server and the submission server both verify against them with
:func:`verify_password`. scrypt with n=16384 costs tens of milliseconds of
CPU on purpose, so servers call it off the event loop, through
``realnet.relay.authguard.AuthGuard`` (a worker thread, failed logins
throttled per client).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os

#: Parameters of new hashes (the ones the scenario files use).
DEFAULT_N, DEFAULT_R, DEFAULT_P = 16384, 8, 1
_DKLEN = 32


def hash_password(
    password: str, *, n: int = DEFAULT_N, r: int = DEFAULT_R, p: int = DEFAULT_P
) -> str:
    """A new ``scrypt$n$r$p$salthex$hashhex`` string with a random 16-byte salt."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=_DKLEN)
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def parse_hash(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    """``(n, r, p, salt, digest)``; ValueError if the string is not a scrypt hash."""
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError("expected 'scrypt$n$r$p$salthex$hashhex'")
    n, r, p = (int(x) for x in parts[1:4])
    salt, digest = bytes.fromhex(parts[4]), bytes.fromhex(parts[5])
    if n < 2 or n & (n - 1) or r < 1 or p < 1 or not digest:
        raise ValueError("bad scrypt parameters")
    return n, r, p, salt, digest


def verify_password(password: str, encoded: str) -> bool:
    """True if ``password`` matches ``encoded``; a malformed hash never matches.

    Verdicts are cached (like Dovecot's auth cache): a mail client polling POP3
    every few seconds would otherwise pay the deliberately slow scrypt on every
    login. Failures are cached too, so a repeated guess costs the same for known
    and unknown users (``dummy_verify``).
    """
    return _verify_cached(password, encoded)


@functools.lru_cache(maxsize=4096)
def _verify_cached(password: str, encoded: str) -> bool:
    try:
        n, r, p, salt, digest = parse_hash(encoded)
        # maxmem: n=16384, r=8 needs 16 MiB; allow up to 64 MiB for stronger hashes.
        candidate = hashlib.scrypt(
            password.encode(), salt=salt, n=n, r=r, p=p, dklen=len(digest), maxmem=2**26 + 2**20
        )
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(candidate, digest)


def dummy_verify(password: str) -> None:
    """Spend the same time as a real check, so unknown users are not revealed by timing."""
    verify_password(password, _DUMMY)


_DUMMY = "scrypt$16384$8$1$" + "00" * 16 + "$" + "00" * 32
