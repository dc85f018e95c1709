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


def simulate(
    scenario: Scenario,
    *,
    seed: int | None = None,
    progress: bool = False,
    trace: Trace | str | Path | None = None,
) -> Results:
    """Run the model of ``scenario`` and return what it measured.

    ``seed`` overrides ``scenario.scenario.seed``. ``progress`` shows a tqdm
    bar on stderr. ``trace`` is a callable that receives every
    ``HopRecord`` and ``MessageRecord`` (of every replication) as it
    completes, or a path: HopRecords are written there as JSON lines
    (``sim.records.read_hops`` reads them) and MessageRecords next to it
    with the suffix ``.messages.jsonl``. Off by default: tracing costs time.
    """
    if isinstance(trace, str | Path):
        with TraceFiles(Path(trace)) as sink:
            return simulate(scenario, seed=seed, progress=progress, trace=sink)
    meta = scenario.scenario
    seed = meta.seed if seed is None else seed
    n = meta.replications
    children = np.random.SeedSequence(seed).spawn(n)
    start = time.perf_counter()
    reps = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n * 1000, desc=f"{meta.name}", unit="‰", leave=False,
                   bar_format="{l_bar}{bar}| {elapsed}<{remaining}")  # fmt: skip
    try:
        for r, child in enumerate(children):
            done = [0]

            def tick(fraction: float, r: int = r, done: list[int] = done) -> None:
                assert bar is not None
                target = int((r + fraction) * 1000)
                bar.update(target - r * 1000 - done[0])
                done[0] = target - r * 1000

            model = run_replication(scenario, child, trace=trace, progress=tick if bar else None)
            reps.append(collect(model))
            del model
    finally:
        if bar is not None:
            bar.close()
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
        wall_s=time.perf_counter() - start,
        versions=versions(),
        objectives=list(scenario.slo.objectives),
        max_error_share=scenario.slo.max_error_share,
    )


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
