"""The durable store-and-forward spool of one relay host.

A relay answers 250 to DATA only after the message is on disk for good: the
message file is written to ``tmp/``, fsynced, renamed into ``queue/`` and the
directory is fsynced. Removal after delivery is an unlink plus a directory
fsync. Both are *group committed*: every write or removal requested while the
previous batch was being flushed goes into the next batch, so concurrent SMTP
sessions share one directory fsync (the file fsyncs stay one per message, but
the filesystem journal merges them too). Durability is the same as a
one-at-a-time commit: no caller is told "done" before its batch is durable.

One file per message: a JSON line of metadata (envelope, attempts, next retry,
first-accepted time, trace id, flow) and then the raw message bytes. On restart
``recover()`` reads ``queue/`` back; ``tmp/`` leftovers were never
acknowledged and are deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass(slots=True)
class SpoolEntry:
    """One queued message: its envelope, bytes and delivery state."""

    id: str
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    trace_id: str = ""
    flow: str = "inbound"
    first_accepted: float = field(default_factory=time.time)
    attempts: int = 0
    next_retry: float = 0.0
    #: true once the first attempt has failed and the fallback tier was tried
    fallback_tried: bool = False
    #: a delivery status notification made on this host: routed by the recipient's MX
    #: unless the recipient is ours (``routing.Router.routes``)
    dsn: bool = False
    #: an HopRecord-like dict carried until the message leaves this host
    record: dict[str, Any] | None = None

    @staticmethod
    def new_id() -> str:
        # time-ordered so recovery keeps arrival order
        return f"{time.time_ns():x}-{uuid.uuid4().hex[:8]}"

    def header(self) -> bytes:
        # by hand, not dataclasses.asdict: that deep-copies, and this runs for every message
        meta = {name: getattr(self, name) for name in _META_FIELDS}
        return json.dumps(meta, separators=(",", ":")).encode() + b"\n"

    @classmethod
    def from_bytes(cls, raw: bytes) -> SpoolEntry:
        head, _, data = raw.partition(b"\n")
        meta = json.loads(head)
        return cls(data=data, **meta)


_META_FIELDS = tuple(f.name for f in fields(SpoolEntry) if f.name != "data")


class Spool:
    """A directory of durable message files with group-committed writes."""

    def __init__(self, root: Path | str, *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.queue_dir = self.root / "queue"
        self.tmp_dir = self.root / "tmp"
        self.queue_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        # one flusher thread: batches are strictly ordered, and fsync releases the GIL
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")
        self._fsyncs = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fsync")
        self._pending: list[tuple[str, SpoolEntry | str, asyncio.Future[None]]] = []
        self._flushing = False
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0  # statistics: how many group commits
        self.commits = 0

    # ---------------------------------------------------------------- async API

    async def put(self, entry: SpoolEntry) -> None:
        """Return once ``entry`` is durable (file and directory fsynced)."""
        await self._submit("put", entry)

    async def update(self, entry: SpoolEntry) -> None:
        """Durably replace the stored metadata (attempts, next retry, recipients)."""
        await self._submit("put", entry)

    async def remove(self, entry_id: str) -> None:
        """Return once the message is durably gone from the spool."""
        await self._submit("remove", entry_id)

    async def _submit(self, op: str, item: SpoolEntry | str) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append((op, item, future))
        if not self._flushing:
            self._flushing = True
            self._flusher = loop.create_task(self._flush_loop())
        await future

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await loop.run_in_executor(self._executor, self._commit, batch)
                except Exception as e:
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(e)
                    continue
                for _, _, future in batch:
                    if not future.done():
                        future.set_result(None)
        finally:
            self._flushing = False

    # ---------------------------------------------------------------- disk work (thread)

    def _path(self, entry_id: str) -> Path:
        return self.queue_dir / f"{entry_id}.msg"

    def _commit(self, batch: list[tuple[str, SpoolEntry | str, asyncio.Future[None]]]) -> None:
        renames: list[tuple[str, Path]] = []
        fds: list[int] = []
        removed = False
        try:
            for op, item, _ in batch:
                if op == "put":
                    assert isinstance(item, SpoolEntry)
                    tmp = self.tmp_dir / f"{item.id}.{uuid.uuid4().hex[:6]}"
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    fds.append(fd)
                    renames.append((str(tmp), self._path(item.id)))
                    os.write(fd, item.header())
                    view = memoryview(item.data)
                    while view:
                        view = view[os.write(fd, view) :]
            if self.fsync and fds:
                # the batch's files are synced in parallel: the filesystem journal folds
                # concurrent fsyncs into one commit (about twice the throughput here)
                list(self._fsyncs.map(os.fsync, fds))
        except BaseException:
            for tmp, _ in renames:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            raise
        finally:
            for fd in fds:
                os.close(fd)
        for tmp, final in renames:
            os.replace(tmp, final)
        for op, item, _ in batch:
            if op == "remove":
                assert isinstance(item, str)
                try:
                    self._path(item).unlink()
                    removed = True
                except FileNotFoundError:
                    pass
        if self.fsync and (renames or removed):
            dfd = os.open(self.queue_dir, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        self.batches += 1
        self.commits += len(batch)

    # ---------------------------------------------------------------- recovery

    def recover(self) -> Iterator[SpoolEntry]:
        """Every message still queued (oldest first); drops unacknowledged temp files."""
        for leftover in self.tmp_dir.iterdir():
            leftover.unlink(missing_ok=True)
        for path in sorted(self.queue_dir.glob("*.msg")):
            try:
                yield SpoolEntry.from_bytes(path.read_bytes())
            except (ValueError, TypeError, KeyError):
                # a file we cannot parse is kept aside for a human, not lost
                path.rename(path.with_suffix(".corrupt"))

    def __len__(self) -> int:
        return sum(1 for _ in self.queue_dir.glob("*.msg"))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._fsyncs.shutdown(wait=True)
