"""glibc malloc settings for a long-running host process, so its RSS stays flat.

What Python objects a relay holds does not grow per message (``MAILGATE_TRACEMALLOC``,
``realnet.testbed.memtrace``: 2-5 MB traced on a gateway over a held load); what
grew was memory the allocators kept around them. Every TLS connection allocates a
256 KB read buffer (``asyncio.sslproto``) and a message a few copies of its body;
after the first such block is freed, glibc raises its mmap threshold (up to 32 MB),
so later ones land in the heap, where a few small long-lived objects between them
keep it from shrinking. Hence, at start (``tune``):

- ``M_MMAP_THRESHOLD`` fixed at 128 KB (this also switches off the dynamic
  threshold): every block that large is mapped and given back when freed;
- ``M_ARENA_MAX`` 2: the login checker's and other worker threads do not each get
  an arena of their own that keeps its free memory;

and, every ``TRIM_EVERY_S`` seconds of the host's event loop, ``malloc_trim(0)``:
free pages inside the heap (not only at its top) go back to the kernel; it takes
1-3 ms in a 150 MB process, under 0.1 % of a core. In
``tests/test_realnet_memory.py``, five bursts of 200 × 256 KB blocks end at 23 MB
RSS with these settings and 73 MB without. ``MAILGATE_MALLOC=off`` turns all of
it off (to measure without); on a libc without these calls it does nothing.

``freeze_startup`` is the collector's side of the same, ``tune_tls_buffer`` asyncio's:
see their docstrings.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import os
from typing import Any

#: mallopt parameters (glibc malloc.h)
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD = 128 * 1024
ARENA_MAX = 2
#: seconds between two malloc_trim calls
TRIM_EVERY_S = 5.0
ENV = "MAILGATE_MALLOC"


def _libc() -> Any:
    """glibc, or None (another libc, or switched off)."""
    if os.environ.get(ENV, "").lower() == "off":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 - both exist only in glibc
    except (OSError, AttributeError):
        return None
    return libc


def tune() -> bool:
    """Fix the mmap threshold and the number of arenas; True when applied."""
    libc = _libc()
    if libc is None:
        return False
    libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    libc.mallopt(M_ARENA_MAX, ARENA_MAX)
    return True


#: asyncio's TLS read size per connection: its default, 256 KB, is allocated and
#: zeroed for every connection, idle pooled ones too (a host keeps up to 8 per next
#: hop and per sender), and a TLS record is at most 16 KB anyway
TLS_READ_BUFFER = 64 * 1024


def tune_tls_buffer() -> None:
    """Make asyncio's per-connection TLS read buffer ``TLS_READ_BUFFER`` bytes."""
    from asyncio import sslproto

    sslproto.SSLProtocol.max_size = TLS_READ_BUFFER


def trim() -> bool:
    """Give the free pages of the heap back to the kernel; True when some were."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


def freeze_startup() -> None:
    """Move what start-up made (modules, the scenario, contexts) out of the collector's
    view: a full collection then comes after a quarter of *new* survivors, not of
    every object the process has, so cyclic garbage (a closed connection's protocol
    object, with what it still holds) is freed minutes sooner, and each collection is
    cheaper (CPython's ``gc.freeze``, as Instagram uses it for long-lived servers)."""
    gc.collect()
    gc.freeze()


def schedule_trim(every_s: float = TRIM_EVERY_S) -> asyncio.Task[None] | None:
    """``trim()`` every ``every_s`` seconds in the running loop (None: no glibc)."""
    libc = _libc()
    if libc is None:
        return None

    async def periodic() -> None:
        while True:
            await asyncio.sleep(every_s)
            libc.malloc_trim(0)

    return asyncio.get_running_loop().create_task(periodic())
