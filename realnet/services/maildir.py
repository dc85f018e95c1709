"""Durable Maildir delivery and the listing the POP3 server reads.

``root/<user>/{tmp,new,cur}`` as in the Maildir convention: a message is
written under ``tmp/``, fsync'ed, renamed into ``new/`` and the directory
fsync'ed, so a message that :func:`deliver` returned for survives a crash
and a half-written one is never visible. Messages are stored with CRLF line
endings, so a file's size is exactly the octet count POP3 reports (RFC 1939
LIST) and RETR can send the file as is (after dot-stuffing).

The file name (``<sec>.M<usec>P<pid>Q<n>.<host>``) is unique and sorts in
delivery order; its part before any ``:`` info suffix is the message's UID
for POP3 UIDL.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SUBDIRS = ("tmp", "new", "cur")
_counter = itertools.count(1)
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:20] or "localhost"
_SAFE_USER = re.compile(r"^[A-Za-z0-9!#$%&'*+=?^_`{|}~-][A-Za-z0-9.!#$%&'*+=?^_`{|}~-]{0,63}$")
_LINE_END = re.compile(rb"\r?\n")


@dataclass(frozen=True)
class MaildirMessage:
    """One message in a maildrop."""

    path: Path
    uid: str  # unique, stable: the file name before any ':' info suffix
    size: int  # octets, CRLF line endings included


def user_dir(root: str | os.PathLike[str], user: str) -> Path:
    """``root/user``; ValueError for a name that could escape ``root`` or is not a local part."""
    if not _SAFE_USER.match(user) or ".." in user:
        raise ValueError(f"unsafe mailbox name {user!r}")
    return Path(root) / user


def ensure_maildir(root: str | os.PathLike[str], user: str) -> Path:
    """Create ``root/user/{tmp,new,cur}`` if missing (durably) and return ``root/user``."""
    base = user_dir(root, user)
    if all((base / d).is_dir() for d in SUBDIRS):
        return base
    for d in SUBDIRS:
        (base / d).mkdir(parents=True, exist_ok=True)
    _fsync_dir(base)
    _fsync_dir(base.parent)
    return base


def to_crlf(message: bytes) -> bytes:
    """Every line ending as CRLF and a final CRLF (bare CRs are left alone)."""
    data = _LINE_END.sub(b"\r\n", message)
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def unique_name() -> str:
    now = time.time()
    sec, usec = int(now), int((now % 1) * 1_000_000)
    return f"{sec}.M{usec:06d}P{os.getpid()}Q{next(_counter)}.{_HOST}"


def deliver(root: str | os.PathLike[str], user: str, message: bytes) -> Path:
    """File ``message`` into ``user``'s Maildir durably; returns its path in ``new/``."""
    return deliver_many(root, [(user, message)])[0]


def deliver_many(root: str | os.PathLike[str], items: Iterable[tuple[str, bytes]]) -> list[Path]:
    """File several messages at once (group commit); their paths in ``new/``, in order.

    Each file is written and fsync'ed under ``tmp/`` and renamed, then every
    ``new/`` directory touched is fsync'ed once, so a batch costs one
    directory sync per mailbox instead of one per message. Nothing returns
    before everything is durable; on an error, files already renamed stay
    (they are complete) and the error propagates.
    """
    paths: list[Path] = []
    dirs: dict[Path, None] = {}
    try:
        for user, message in items:
            base = ensure_maildir(root, user)
            name = unique_name()
            tmp, new = base / "tmp" / name, base / "new" / name
            _write_synced(tmp, to_crlf(message))
            os.rename(tmp, new)
            paths.append(new)
            dirs[new.parent] = None
    finally:
        for d in dirs:
            _fsync_dir(d)
    return paths


def _write_synced(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def list_messages(root: str | os.PathLike[str], user: str) -> list[MaildirMessage]:
    """The messages in ``new/`` and ``cur/``, oldest first."""
    base = user_dir(root, user)
    found = []
    for sub in ("new", "cur"):
        try:
            entries = list(os.scandir(base / sub))
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                size = entry.stat().st_size
            except FileNotFoundError:  # deleted meanwhile by another reader
                continue
            found.append(MaildirMessage(Path(entry.path), entry.name.split(":", 1)[0], size))
    found.sort(key=lambda m: _order_key(m.uid))
    return found


def _order_key(uid: str) -> tuple[int, str]:
    head = uid.split(".", 1)[0]
    return (int(head) if head.isdigit() else 0, uid)


def read_message(path: str | os.PathLike[str]) -> bytes:
    return Path(path).read_bytes()


def delete(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Remove messages durably (one directory fsync per directory); returns those that failed.

    A message already gone counts as deleted (another client removed it).
    """
    failed: list[Path] = []
    dirs: set[Path] = set()
    for p in map(Path, paths):
        try:
            p.unlink()
        except FileNotFoundError:
            pass
        except OSError:
            failed.append(p)
            continue
        dirs.add(p.parent)
    for d in dirs:
        _fsync_dir(d)
    return failed


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
