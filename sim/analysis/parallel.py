"""Independent model runs in parallel: local worker processes or a Dask cluster.

Both executors offer the same two calls, ``submit(fn, *args)`` and
``gather(futures)``, so the code that plans runs (the capacity search) has one
path whatever runs them. A run's result depends only on its arguments (the
scenario and the seed), never on which worker ran it or in what order, so a
local run and a cluster run with the same seeds give identical results.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any, Protocol

from mailgate.sim.scenario.errors import UserError


class Executor(Protocol):
    """Where runs go: ``submit`` returns a handle, ``gather`` waits for results in order."""

    workers: int

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any: ...

    def gather(self, futures: list[Any]) -> list[Any]: ...


class InlineExecutor:
    """Runs each call at once in this process (one worker: no processes to start)."""

    workers = 1
    in_process = True  # simulate() runs replications itself then, with its progress bar

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    def gather(self, futures: list[Any]) -> list[Any]:
        return list(futures)


class LocalExecutor:
    """``concurrent.futures.ProcessPoolExecutor`` with ``workers`` processes."""

    def __init__(self, pool: ProcessPoolExecutor, workers: int) -> None:
        self.pool, self.workers = pool, workers

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return self.pool.submit(fn, *args)

    def gather(self, futures: list[Future[Any]]) -> list[Any]:
        return [f.result() for f in futures]


class DaskExecutor:
    """A ``distributed.Client``: the same submit/gather, on a cluster's workers."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.workers = max(1, len(client.scheduler_info().get("workers", {})))

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        # pure=False: two runs with equal arguments are still two runs (dask would merge them)
        return self.client.submit(fn, *args, pure=False)

    def gather(self, futures: list[Any]) -> list[Any]:
        return list(self.client.gather(futures))


def default_workers() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextmanager
def executor(
    workers: int | None = None, scheduler: str | None = None, connect_timeout_s: float = 10.0
) -> Iterator[Executor]:
    """Local processes (``workers``, default every core) or, with ``scheduler``
    (``tcp://HOST:PORT``), the Dask cluster behind it. Closes what it opened."""
    if scheduler:
        try:
            from distributed import Client
        except ImportError:
            raise UserError("--scheduler needs Dask: pip install 'mailgate[cluster]'") from None
        try:
            client = Client(scheduler, timeout=f"{connect_timeout_s}s")
        except OSError as e:
            raise UserError(f"cannot reach the Dask scheduler {scheduler}: {e}") from None
        try:
            yield DaskExecutor(client)
        finally:
            client.close()
        return
    workers = workers or default_workers()
    if workers == 1:
        yield InlineExecutor()
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield LocalExecutor(pool, workers)


def run_all(ex: Executor, fn: Callable[..., Any], calls: list[tuple[Any, ...]]) -> list[Any]:
    """``[fn(*args) for args in calls]``, run on ``ex``; results in the order of ``calls``."""
    return ex.gather([ex.submit(fn, *args) for args in calls])
