"""A debug hook: ``tracemalloc`` snapshots of a host process, to see what grows.

Set ``MAILGATE_TRACEMALLOC=DIR`` in the environment of ``realnet up`` / ``realnet
load`` (the hosts inherit it): each host then traces Python allocations from the
moment it is ready (its start-up imports are slow to trace) and writes
``DIR/<host>-<pid>-<n>.snap`` (a ``tracemalloc.Snapshot.dump``) every
``MAILGATE_TRACEMALLOC_EVERY`` seconds (default 60), on SIGUSR2 and when it stops;
``MAILGATE_TRACEMALLOC_HOSTS=gateway1.0,mailbox.0`` traces only those hosts. Each
snapshot comes with a ``.txt``: RSS, the traced total, glibc's heap (``mallinfo2``)
and, with ``MAILGATE_TRACEMALLOC_FRAMES=0`` (no tracing, only these summaries, at
almost no cost), pymalloc's arenas.
Compare two snapshots with ``python -m mailgate.realnet.testbed.memtrace A B``.
Tracing costs CPU (roughly 1.5-2x per allocation) and memory, so it is off by
default and only for finding leaks.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
import signal
import sys
import tempfile
import tracemalloc
from pathlib import Path

ENV_DIR = "MAILGATE_TRACEMALLOC"
ENV_EVERY = "MAILGATE_TRACEMALLOC_EVERY"
ENV_HOSTS = "MAILGATE_TRACEMALLOC_HOSTS"
ENV_FRAMES = "MAILGATE_TRACEMALLOC_FRAMES"
#: frames kept per allocation: enough to see the caller of a library allocation
FRAMES = 8


def _frames() -> int:
    return int(os.environ.get(ENV_FRAMES, FRAMES))


class MemTrace:
    """Snapshots of one host process, numbered in order."""

    def __init__(self, folder: Path, host_id: str) -> None:
        self.folder = folder
        self.host_id = host_id
        self.count = 0

    def dump(self) -> Path:
        """Write the next snapshot (``.snap``) and where the memory is (``.txt``)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{self.host_id}-{os.getpid()}-{self.count:03d}.snap"
        self.count += 1
        if tracemalloc.is_tracing():
            tracemalloc.take_snapshot().dump(str(path))
        path.with_suffix(".txt").write_text(memory_summary())
        return path


def memory_summary() -> str:
    """RSS, Python's traced blocks, pymalloc's arenas and glibc's heap, one per line:
    what Python objects hold vs what the allocators keep around them."""
    status = Path("/proc/self/status").read_text() if Path("/proc/self/status").exists() else ""
    rss = next((line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")), "?")
    traced, peak = tracemalloc.get_traced_memory()
    lines = [f"rss_kb {rss}", f"traced_kb {traced // 1024}", f"traced_peak_kb {peak // 1024}"]
    lines += [f"gc_count {gc.get_count()}", f"gc_objects {len(gc.get_objects())}"]
    lines += _pymalloc_arenas() + _glibc_heap()
    return "\n".join(lines) + "\n"


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            *("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks"),
            *("uordblks", "fordblks", "keepcost"),
        )
    ]


def _glibc_heap() -> list[str]:
    """glibc's ``mallinfo2``: heap size (arena), in use, free in it, and mmapped blocks."""
    try:
        fn = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return []
    fn.restype = _Mallinfo2
    m = fn()
    return [
        f"malloc_heap_kb {m.arena // 1024}",
        f"malloc_used_kb {m.uordblks // 1024}",
        f"malloc_free_kb {m.fordblks // 1024}",
        f"malloc_mmapped_kb {m.hblkhd // 1024} in {m.hblks} blocks",
    ]


def _pymalloc_arenas() -> list[str]:
    """pymalloc's arena lines of ``sys._debugmallocstats`` (it writes to C's stderr;
    nothing while tracemalloc traces, so only in a dump without it)."""
    debug = getattr(sys, "_debugmallocstats", None)
    if debug is None:
        return []
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(2)
        try:
            sys.stderr.flush()
            os.dup2(tmp.fileno(), 2)
            debug()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode(errors="replace")
    keep = ("# arenas allocated current", "# arenas highwater", "# bytes in allocated blocks")
    return [" ".join(line.split()) for line in text.splitlines() if line.startswith(keep)]


def start(host_id: str) -> MemTrace | None:
    """A tracer for this process when ``MAILGATE_TRACEMALLOC`` is set; else ``None``."""
    folder = os.environ.get(ENV_DIR)
    hosts = [h for h in os.environ.get(ENV_HOSTS, "").split(",") if h]
    if not folder or (hosts and host_id not in hosts):
        return None
    return MemTrace(Path(folder), host_id)


def schedule(trace: MemTrace | None) -> asyncio.Task[None] | None:
    """Trace from now on (the host is ready: its start-up imports, slow to trace, are
    done), and dump on SIGUSR2 and every ``MAILGATE_TRACEMALLOC_EVERY`` s."""
    if trace is None:
        return None
    if _frames() > 0:
        tracemalloc.start(_frames())
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, trace.dump)
    every = float(os.environ.get(ENV_EVERY, "60"))

    async def periodic() -> None:
        while True:
            await asyncio.sleep(every)
            trace.dump()

    return asyncio.create_task(periodic())


def compare(before: str, after: str, top: int = 25) -> str:
    """The ``top`` allocation sites that grew most from ``before`` to ``after``."""
    a = tracemalloc.Snapshot.load(before)
    b = tracemalloc.Snapshot.load(after)
    skip = [tracemalloc.Filter(False, tracemalloc.__file__)]
    a, b = a.filter_traces(skip), b.filter_traces(skip)
    lines = [
        f"traced: {sum(s.size for s in a.statistics('filename')) / 1e6:.1f} MB"
        f" -> {sum(s.size for s in b.statistics('filename')) / 1e6:.1f} MB"
    ]
    for stat in b.compare_to(a, "traceback")[:top]:
        lines.append(f"{stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks")
        lines.extend(f"      {line}" for line in stat.traceback.format()[-2 * FRAMES :])
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: python -m mailgate.realnet.testbed.memtrace BEFORE.snap AFTER.snap")
        sys.exit(2)
    print(compare(sys.argv[1], sys.argv[2]))
