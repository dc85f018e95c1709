"""Capacity against the SLO: the largest number of mailboxes for which every SLO
holds in the peak hour, found by running the model.

1. Today's load (and 80 % and 120 % of it, SPECmail's load points) is run first;
   the utilisation law (the busiest resource's utilisation grows in proportion
   to the mailboxes) turns the busiest resource at today's load into a first
   guess of where it saturates.
2. A failing point is found at or above that guess, a passing one below it,
   and the interval between them is bisected until it is narrower than
   ``tolerance`` of the capacity.
3. Every point uses the same seeds (common random numbers: replication i runs
   with seed + i at every point), and at every point replications are added two
   at a time until the SLO verdict is decided at 95 % or ``max_replications``
   is reached. Replications and the points of a step run in parallel.

The window is a warm-up followed by one measured hour (the peak hour of the
scenario's diurnal profile unless given). Returns plain data; the command prints.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mailgate.sim.analysis.capacity_guess import solver_knee
from mailgate.sim.analysis.capacity_points import FAIL, PASS, Point, run_window
from mailgate.sim.analysis.parallel import Executor
from mailgate.sim.analysis.selftest import busiest_hour
from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.errors import UserError
from mailgate.sim.scenario.loading import load

#: warm-up before the measured hour: queues fill from empty (as in peak-hour.toml)
WARMUP_H = 0.25
#: replications per batch: the first batch gives a confidence interval, later ones narrow it.
#: Fixed (not the worker count) so that the answer does not depend on where it ran.
BATCH = 2
LOAD_POINTS = (0.8, 1.0, 1.2)


@dataclasses.dataclass(frozen=True)
class Window:
    """What each run simulates: ``warmup_h`` then ``duration_h`` from clock hour ``start_h``."""

    start_h: float
    warmup_h: float = WARMUP_H
    duration_h: float = 1.0
    peak: bool = False

    def overrides(self) -> dict[str, Any]:
        return {
            "scenario.start_hour": (self.start_h - self.warmup_h) % 24,
            "scenario.warmup_h": self.warmup_h,
            "scenario.duration_h": self.duration_h,
            "scenario.replications": 1,
        }

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def window_of(scenario: Scenario, start: str | float = "peak") -> Window:
    """``peak`` (the busiest hour of the diurnal profile) or a clock hour 0-24."""
    if start == "peak":
        return Window(float(busiest_hour(scenario)), peak=True)
    hour = float(start)
    if not 0 <= hour < 24:
        raise UserError(f"--window: a clock hour 0-24 or 'peak', got {start}")
    return Window(hour)


class Search:
    """Evaluates points (cached by mailboxes) of one scenario in one window."""

    def __init__(
        self,
        path: str | Path,
        overrides: Mapping[str, Any],
        ex: Executor,
        seed: int,
        max_replications: int,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.path, self.overrides, self.ex = path, dict(overrides), ex
        self.seed, self.max_replications = seed, max_replications
        self.log = log or (lambda line: None)
        self.points: dict[int, Point] = {}

    def scenario(self, mailboxes: int) -> Scenario:
        return load(self.path, {**self.overrides, "population.mailboxes": mailboxes})

    def evaluate(self, wanted: list[int]) -> list[Point]:
        """Run every point in ``wanted`` until each is decided or capped (points in parallel)."""
        wanted = [max(1, int(n)) for n in wanted]
        for n in wanted:
            self.points.setdefault(n, Point(n))
        while True:
            todo = [self.points[n] for n in dict.fromkeys(wanted) if self._needs_more(n)]
            if not todo:
                return [self.points[n] for n in wanted]
            calls = []  # (point, index of the run it replaces or None, scenario, seed, stop)
            for p in todo:
                scenario = self.scenario(p.mailboxes)
                if p.needs_full_runs:  # bounds from stopped runs said "holds": run them out
                    calls += [(p, i, scenario, r["seed"], False)
                              for i, r in enumerate(p.runs) if r.get("stopped")]  # fmt: skip
                    continue
                first = len(p.runs)
                extra = min(BATCH, self.max_replications - first)
                calls += [(p, None, scenario, self.seed + i, True)
                          for i in range(first, first + extra)]  # fmt: skip
            futures = [self.ex.submit(run_window, s, seed, stop) for _, _, s, seed, stop in calls]
            for (p, i, _, _, _), run in zip(calls, self.ex.gather(futures), strict=True):
                if i is None:
                    p.runs.append(run)
                else:
                    p.runs[i] = run
            for p in todo:
                self.log(_progress(p))

    def _needs_more(self, n: int) -> bool:
        p = self.points[n]
        if not p.runs or p.needs_full_runs:
            return True
        return p.verdict not in (PASS, FAIL) and len(p.runs) < self.max_replications

    # ------------------------------------------------------------ the bracket

    def lowest_failing(self) -> Point | None:
        failing = [p for p in self.points.values() if p.runs and not p.ok]
        return min(failing, key=lambda p: p.mailboxes, default=None)

    def highest_passing(self) -> Point | None:
        hi = self.lowest_failing()
        passing = [
            p
            for p in self.points.values()
            if p.runs and p.ok and (hi is None or p.mailboxes < hi.mailboxes)
        ]
        return max(passing, key=lambda p: p.mailboxes, default=None)

    def knee(self, hour: int, today: int) -> int | None:
        """The analytic solver's estimate of the SLO knee (``capacity_guess``)."""
        return solver_knee(self.scenario, hour, today)

    def search(
        self, start: int, tolerance: float, ceiling: int, knee: int | None = None
    ) -> dict[str, Any]:
        """Bracket from ``start`` (a point already run) and bisect; returns the answer.
        With ``knee`` (the solver's estimate) the knee and ``tolerance`` above it run
        first, together: when the estimate is good, they are the whole bracket."""
        guess = saturation_guess(self.points[start])
        lo, hi = self.highest_passing(), self.lowest_failing()
        if knee is not None:
            pair = [knee, int(knee * (1 + tolerance))]
            self.evaluate([n for n in pair if (lo is None or n > lo.mailboxes)
                           and (hi is None or n < hi.mailboxes) and n <= ceiling])  # fmt: skip
            lo, hi = self.highest_passing(), self.lowest_failing()
        if hi is None:  # find a failing point: the utilisation law's guess, then beyond
            n = max(int(guess * 1.05), int((lo.mailboxes if lo else start) * 1.5))
            if knee is not None and lo is not None:  # just past the solver's pair
                n = int(lo.mailboxes * 1.1)
            step = 0.1  # past saturation the knee is near: small steps first, then larger
            while (hi := self.lowest_failing()) is None and n <= ceiling:
                self.evaluate([n])
                n, step = int(n * (1 + step)), step * 2
        while (lo := self.highest_passing()) is None and hi is not None and hi.mailboxes > 1:
            self.evaluate([hi.mailboxes // 2])  # even the lowest load fails: halve
            hi = self.lowest_failing()
        if lo is not None and hi is not None and lo.mailboxes < 0.8 * hi.mailboxes:
            # just under the failing point first: the SLO knee is close to saturation
            near = int(0.85 * min(hi.mailboxes, guess * 1.05))
            if near > lo.mailboxes:
                self.evaluate([near])
        while True:
            lo, hi = self.highest_passing(), self.lowest_failing()
            if lo is None or hi is None:
                break
            if hi.mailboxes - lo.mailboxes <= max(1, tolerance * hi.mailboxes):
                break
            self.evaluate([(lo.mailboxes + hi.mailboxes) // 2])
        out = self.answer(guess)
        out["solver_knee_mailboxes"] = knee
        return out

    def answer(self, guess: float) -> dict[str, Any]:
        lo, hi = self.highest_passing(), self.lowest_failing()
        points = sorted((p for p in self.points.values() if p.runs), key=lambda p: p.mailboxes)
        mailboxes = lo.mailboxes if lo else 0
        # the 95 % band: from the highest load that passes at 95 % to the lowest that fails
        passed = [p.mailboxes for p in points if p.verdict == PASS and p.mailboxes <= mailboxes]
        failed = [p.mailboxes for p in points if p.verdict == FAIL and p.mailboxes > mailboxes]
        band = [max(passed, default=0), min(failed, default=hi.mailboxes if hi else None)]
        binding = (hi or lo).binding if (hi or lo) else None
        at = lo or points[0]
        busiest = at.utilisation()
        return {
            "capacity": {
                "mailboxes": mailboxes,
                "msgs_per_s": lo.msgs_per_s if lo else 0.0,
                "band95": band,
                "found": lo is not None and hi is not None,
            },
            "binding_slo": (
                {
                    **binding.to_dict(),
                    "at_mailboxes": (hi or lo).mailboxes,
                    "lower_bound": any(r.get("stopped") for r in (hi or lo).runs),
                }
                if binding
                else None
            ),
            "bottleneck": busiest[0] if busiest else None,
            "busiest": busiest[:6],
            "utilisation_law_mailboxes": guess,
            "points": [p.to_dict() for p in points],
        }


def _progress(p: Point) -> str:
    """A progress line: the point's verdict and what its runs cost."""
    stopped = [r["stopped_at_s"] / 60 for r in p.runs if r.get("stopped")]
    early = f", {len(stopped)} stopped early (at {', '.join(f'{m:.0f}' for m in stopped)} min)"
    return (
        f"{p.mailboxes:,} mailboxes: {len(p.runs)} replications, {p.verdict}"
        f"{early if stopped else ''}; {sum(r.get('cpu_s', 0) for r in p.runs):.0f} CPU-s, "
        f"{sum(r.get('events', 0) for r in p.runs) / 1e6:.1f} M events"
    )


def saturation_guess(p: Point) -> float:
    """Mailboxes at which the busiest resource of ``p`` would reach 100 % (utilisation law)."""
    busiest = p.utilisation()
    peak = busiest[0]["peak"] if busiest else 0.0
    return p.mailboxes / peak if peak > 0 else p.mailboxes * 100.0


def capacity(
    path: str | Path,
    ex: Executor,
    *,
    window: str | float = "peak",
    seed: int | None = None,
    max_replications: int = 6,
    tolerance: float = 0.05,
    n_minus_1: bool | list[str] = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The capacity search on ``path`` with runs on ``ex``; see the module docstring.
    ``n_minus_1``: True for every gateway, or a list of gateway names. ``log``
    receives a line after each batch of replications (progress)."""
    started = time.perf_counter()
    base = load(path)
    win = window_of(base, window)
    gateways = n_minus_1_gateways(base, n_minus_1)
    seed = base.scenario.seed if seed is None else seed
    today = base.population.mailboxes
    ceiling = today * 1000
    search = Search(path, win.overrides(), ex, seed, max_replications, log)
    loads = [round(today * f) for f in LOAD_POINTS]
    search.evaluate(loads)
    out = search.search(today, tolerance, ceiling, search.knee(int(win.start_h), today))
    out["load_points"] = {
        f"{round(f * 100)}%": _load_point(search.points[n])
        for f, n in zip(LOAD_POINTS, loads, strict=True)
    }
    out["today"] = {"mailboxes": today, "msgs_per_s": search.points[today].msgs_per_s}
    out["capacity"]["headroom"] = out["capacity"]["mailboxes"] / today
    if gateways:
        out["n_1"] = [
            _n_minus_1(path, base, win, ex, seed, max_replications, tolerance, gateway, out, log)
            for gateway in gateways
        ]
    out.update(
        scenario=base.scenario.name,
        window=win.to_dict(),
        seed=seed,
        max_replications=max_replications,
        tolerance=tolerance,
        workers=ex.workers,
        wall_s=time.perf_counter() - started,
    )
    return out


def n_minus_1_gateways(base: Scenario, wanted: bool | list[str]) -> list[str]:
    """The gateways an N-1 search takes a host of: all, or the ones named (checked)."""
    if wanted is True:
        return list(base.gateways)
    for name in wanted or []:
        if name not in base.gateways:
            raise UserError(f"--n-1: no gateway {name!r}; gateways are {', '.join(base.gateways)}")
    return list(wanted or [])


def _load_point(p: Point) -> dict[str, Any]:
    return {"mailboxes": p.mailboxes, "verdict": p.verdict, "ok": p.ok, "replications": len(p.runs)}


def host_down_overrides(base: Scenario, host: str) -> dict[str, Any]:
    """``failures.host_down``: the scenario's own failures plus ``host`` down for the whole run."""
    existing = [dataclasses.asdict(d) for d in base.failures.host_down]
    return {"failures.host_down": [*existing, {"host": host, "start_h": 0.0}]}


def _n_minus_1(
    path: str | Path,
    base: Scenario,
    win: Window,
    ex: Executor,
    seed: int,
    max_replications: int,
    tolerance: float,
    gateway: str,
    full: dict[str, Any],
    log: Callable[[str], None] | None,
) -> dict[str, Any]:
    """The search with host 0 of ``gateway`` down for the whole window."""
    today = base.population.mailboxes
    host = f"{gateway}.0"
    if len(base.gateways[gateway].hosts) < 2:
        note = "one host: no twin takes over"
        return {"gateway": gateway, "host": host, "mailboxes": 0, "ratio": 0.0,
                "survives": False, "headroom": 0.0, "note": note}  # fmt: skip
    overrides = {**win.overrides(), **host_down_overrides(base, host)}
    search = Search(
        path, overrides, ex, seed, max_replications,
        lambda line: log(f"N-1 {host} down: {line}") if log else None,
    )  # fmt: skip
    search.evaluate([today])
    knee = search.knee(int(win.start_h), today)
    answer = search.search(today, tolerance, today * 1000, knee)
    mailboxes = answer["capacity"]["mailboxes"]
    return {
        "gateway": gateway,
        "host": host,
        "mailboxes": mailboxes,
        "band95": answer["capacity"]["band95"],
        "ratio": mailboxes / full["capacity"]["mailboxes"] if full["capacity"]["mailboxes"] else 0,
        "survives": search.points[today].ok,
        "today_verdict": search.points[today].verdict,
        "headroom": mailboxes / today,
        "binding_slo": answer["binding_slo"]["name"] if answer["binding_slo"] else None,
        "bottleneck": answer["bottleneck"],
        "points": answer["points"],
    }
