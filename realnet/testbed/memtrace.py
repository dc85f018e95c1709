"""A debug hook: ``tracemalloc`` snapshots of a host process, to see what grows.

Set ``MAILGATE_TRACEMALLOC=DIR`` in the environment of ``realnet up`` / ``realnet
load`` (the hosts inherit it): each host then traces Python allocations from the
moment it is ready (its start-up imports are slow to trace) and writes
``DIR/<host>-<pid>-<n>.snap`` (a ``tracemalloc.Snapshot.dump``) every
``MAILGATE_TRACEMALLOC_EVERY`` seconds (default 60), on SIGUSR2 and when it stops;
``MAILGATE_TRACEMALLOC_HOSTS=gateway1.0,mailbox.0`` traces only those hosts.
Compare two snapshots with ``python -m mailgate.realnet.testbed.memtrace A B``.
Tracing costs CPU (roughly 1.5-2x per allocation) and memory, so it is off by
default and only for finding leaks.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tracemalloc
from pathlib import Path

ENV_DIR = "MAILGATE_TRACEMALLOC"
ENV_EVERY = "MAILGATE_TRACEMALLOC_EVERY"
ENV_HOSTS = "MAILGATE_TRACEMALLOC_HOSTS"
#: frames kept per allocation: enough to see the caller of a library allocation
FRAMES = 8


class MemTrace:
    """Snapshots of one host process, numbered in order."""

    def __init__(self, folder: Path, host_id: str) -> None:
        self.folder = folder
        self.host_id = host_id
        self.count = 0

    def dump(self) -> Path:
        """Write the next snapshot and return its path."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{self.host_id}-{os.getpid()}-{self.count:03d}.snap"
        self.count += 1
        tracemalloc.take_snapshot().dump(str(path))
        return path


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
    tracemalloc.start(FRAMES)
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
