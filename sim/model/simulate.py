"""The model's front door: ``simulate(scenario) -> Results``.

Runs ``scenario.scenario.replications`` independent replications (child
seeds of one ``SeedSequence``: same seed, same numbers) and combines them.
"""

from __future__ import annotations

import time
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import numpy as np

from mailgate.sim.model.network import Model
from mailgate.sim.model.outcomes import Trace
from mailgate.sim.model.results import Results, collect
from mailgate.sim.model.statistics import bucket_seconds
from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.records import HopRecord, MessageRecord
from mailgate.sim.scenario.schema import to_table

PACKAGES = ("simpy", "numpy", "matplotlib", "tqdm")


def versions() -> dict[str, str]:
    """Versions of the packages a result depends on."""
    import platform

    import mailgate

    out = {"python": platform.python_version(), "mailgate": mailgate.__version__}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "?"
    return out


def run_replication(
    scenario: Scenario,
    seed: np.random.SeedSequence | int,
    *,
    trace: Trace | None = None,
    progress: Any = None,
    chunks: int = 200,
) -> Model:
    """Build, run and finish one replication; ``progress(fraction_done)`` is called as it goes."""
    model = Model(scenario, seed, trace=trace)
    model.start()
    if progress is None:
        model.run()
    else:
        for i in range(1, chunks + 1):
            model.run(until=model.t_end * i / chunks)
            progress(i / chunks)
    model.finish()
    return model


def replicate(scenario: Scenario, seed: np.random.SeedSequence | int) -> dict[str, Any]:
    """One replication, boiled down to what ``Results.combine`` merges: what a worker
    process (or a Dask worker) runs for ``simulate(..., ex=...)`` and for sweeps."""
    return collect(run_replication(scenario, seed))


def seeds(seed: int, replications: int) -> list[np.random.SeedSequence]:
    """The replications' seeds: children of one ``SeedSequence``, so replication i gets
    the same numbers whatever else runs (common random numbers across sweep points)."""
    return np.random.SeedSequence(seed).spawn(replications)


def simulate(
    scenario: Scenario,
    *,
    seed: int | None = None,
    progress: bool = False,
    trace: Trace | str | Path | None = None,
    ex: Any = None,
) -> Results:
    """Run the model of ``scenario`` and return what it measured.

    ``seed`` overrides ``scenario.scenario.seed``. ``progress`` shows a tqdm
    bar on stderr. ``trace`` is a callable that receives every
    ``HopRecord`` and ``MessageRecord`` (of every replication) as it
    completes, or a path: HopRecords are written there as JSON lines
    (``sim.records.read_hops`` reads them) and MessageRecords next to it
    with the suffix ``.messages.jsonl``. Off by default: tracing costs time.
    ``ex`` (an executor of ``sim.analysis.parallel``: ``submit``/``gather``) runs
    the replications in parallel; the result is the same as without it, since each
    replication depends only on its seed and they are combined in order. A trace
    needs this process, so with ``trace`` the replications run here.
    """
    if isinstance(trace, str | Path):
        with TraceFiles(Path(trace)) as sink:
            return simulate(scenario, seed=seed, progress=progress, trace=sink)
    meta = scenario.scenario
    seed = meta.seed if seed is None else seed
    n = meta.replications
    children = seeds(seed, n)
    start = time.perf_counter()
    # Jobs are submitted before the bar exists (forking worker processes while tqdm's
    # monitor thread runs is unsafe). An executor that runs each call in this process
    # goes one by one instead, which keeps the bar's finer steps.
    parallel = ex is not None and not getattr(ex, "in_process", False) and not trace and n > 1
    futures = [ex.submit(replicate, scenario, child) for child in children] if parallel else []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n * 1000, desc=f"{meta.name}", unit="‰", leave=False,
                   bar_format="{l_bar}{bar}| {elapsed}<{remaining}")  # fmt: skip
    try:
        if parallel:
            reps = _gathered(ex, futures, bar)
        else:
            reps = _one_by_one(scenario, children, trace, bar)
    finally:
        if bar is not None:
            bar.close()
    return combine(scenario, reps, seed=seed, wall_s=time.perf_counter() - start)


def combine(scenario: Scenario, reps: list[dict[str, Any]], *, seed: int, wall_s: float) -> Results:
    """The replications ``reps`` (in seed order) of ``scenario`` as one ``Results``."""
    meta = scenario.scenario
    return Results.combine(
        reps,
        scenario=to_table(scenario),
        name=meta.name,
        seed=seed,
        measured_s=meta.duration_h * 3600.0,
        warmup_s=meta.warmup_h * 3600.0,
        start_hour=meta.start_hour,
        bucket_s=bucket_seconds(meta.duration_h),
        mailboxes=scenario.population.mailboxes,
        wall_s=wall_s,
        versions=versions(),
        objectives=list(scenario.slo.objectives),
        max_error_share=scenario.slo.max_error_share,
    )


def _one_by_one(
    scenario: Scenario, children: list[np.random.SeedSequence], trace: Trace | None, bar: Any
) -> list[dict[str, Any]]:
    reps = []
    for r, child in enumerate(children):
        done = [0]

        def tick(fraction: float, r: int = r, done: list[int] = done) -> None:
            target = int((r + fraction) * 1000)
            bar.update(target - r * 1000 - done[0])
            done[0] = target - r * 1000

        model = run_replication(scenario, child, trace=trace, progress=tick if bar else None)
        reps.append(collect(model))
        del model
    return reps


def _gathered(ex: Any, futures: list[Any], bar: Any) -> list[dict[str, Any]]:
    reps = []
    for future in futures:  # in seed order; the bar moves as each one is in
        (rep,) = ex.gather([future])
        reps.append(rep)
        if bar is not None:
            bar.update(1000)
    return reps


class TraceFiles:
    """A trace callable writing HopRecords and MessageRecords to two JSON-lines files."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages_path = path.with_name(path.stem + ".messages.jsonl")

    def __enter__(self) -> TraceFiles:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._hops: IO[str] = self.path.open("w", encoding="utf-8")
        self._msgs: IO[str] = self.messages_path.open("w", encoding="utf-8")
        return self

    def __exit__(self, *exc: object) -> None:
        self._hops.close()
        self._msgs.close()

    def __call__(self, record: HopRecord | MessageRecord) -> None:
        out = self._hops if isinstance(record, HopRecord) else self._msgs
        out.write(record.to_json())
        out.write("\n")
