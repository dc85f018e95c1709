"""One point of a capacity search: a number of mailboxes, its replications and the
SLO verdict at 95 % confidence.

``run_window`` is what a worker runs: one replication of a scenario, boiled down
to the figures the search needs (it reads only keys of results.json). ``Point``
combines the replications of one load: for every objective the mean over
replications of the run's quantile (e.g. each run's p95) and its Student-t 95 %
interval. The objective passes at 95 % when the whole interval is under its limit
and fails when the whole interval is over it; otherwise it is undecided and the
search adds replications.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from mailgate.sim.analysis.capacity_stop import run_until_decided, window_arrivals
from mailgate.sim.model.network import Model
from mailgate.sim.model.results import collect
from mailgate.sim.model.simulate import combine, seeds
from mailgate.sim.scenario import Scenario

PASS, FAIL, UNDECIDED = "pass", "fail", "undecided"
RESOURCES = ("cpu", "sessions", "delivery", "destination", "disk")


def run_window(scenario: Scenario, seed: int, stop: bool = True) -> dict[str, Any]:
    """One replication of ``scenario`` with ``seed``: SLO values, offered load, utilisation.

    The same run as ``simulate(scenario, seed=seed)`` with one replication; with ``stop``
    it ends early once an SLO's failure is certain (``capacity_stop``): then ``stopped``
    names that SLO, its value is a lower bound and the other SLOs have none.
    """
    started, cpu0 = time.perf_counter(), time.process_time()
    child = seeds(seed, 1)[0]  # what simulate() gives its one replication
    model = Model(scenario, child)
    model.start()
    decided = run_until_decided(model, child) if stop else None
    if not stop:
        model.run()
        model.finish()
    results = combine(scenario, [collect(model)], seed=seed, wall_s=time.perf_counter() - started)
    d = results.to_dict()
    objectives = []
    for o in d["slo"]:
        value = o.get("value_s", o.get("value"))
        limit = o.get("max_s", o.get("max"))
        if decided is not None:
            value = decided["bound"] if o["name"] == decided["name"] else None
        objectives.append({"name": o["name"], "value": value, "limit": limit, "ok": o["ok"]})
    utilisation = {
        host: {r: dict(mean=h["utilisation"][r]["mean"], peak=h["utilisation"][r]["peak"])
               for r in RESOURCES if r in h["utilisation"]}
        for host, h in d["hosts"].items()
    }  # fmt: skip
    offered = sum(d["offered_per_bucket"])
    if decided is not None:  # the whole window's arrivals, not those up to the stop
        offered = sum(window_arrivals(scenario, child).values())
    return {
        "seed": seed,
        "mailboxes": d["mailboxes"],
        "objectives": objectives,
        "msgs_per_s": offered / d["measured_s"],
        "utilisation": utilisation,
        "in_flight": d["counts"]["in_flight"],
        "stopped": decided["name"] if decided else None,
        "stopped_at_s": model.t_end - model.t_warm if decided else None,
        "events": d["events"],
        "wall_s": time.perf_counter() - started,
        "cpu_s": time.process_time() - cpu0,
    }


def t_quantile(df: int) -> float:
    """The 97.5 % quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.975, df))


@dataclass(frozen=True)
class Objective:
    """One SLO over the replications of a point."""

    name: str
    limit: float
    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def half_width(self) -> float:
        """Half the 95 % confidence interval of the mean (inf with one replication)."""
        n = len(self.values)
        if n < 2:
            return math.inf
        m = self.mean
        sd = math.sqrt(sum((v - m) ** 2 for v in self.values) / (n - 1))
        return t_quantile(n - 1) * sd / math.sqrt(n)

    @property
    def verdict(self) -> str:
        if self.mean + self.half_width <= self.limit:
            return PASS
        if self.mean - self.half_width > self.limit:
            return FAIL
        return UNDECIDED

    @property
    def ratio(self) -> float:
        """Mean value over the limit: > 1 means it fails on average."""
        return self.mean / self.limit if self.limit else math.inf

    def to_dict(self) -> dict[str, Any]:
        hw = self.half_width
        return {
            "name": self.name,
            "mean": self.mean,
            "ci95": [self.mean - hw, self.mean + hw] if math.isfinite(hw) else None,
            "limit": self.limit,
            "verdict": self.verdict,
        }


@dataclass
class Point:
    """The replications run at one number of mailboxes."""

    mailboxes: int
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def objectives(self) -> list[Objective]:
        """Every SLO that had samples in every replication."""
        names = [o["name"] for o in self.runs[0]["objectives"]]
        out = []
        for name in names:
            found = [o for r in self.runs for o in r["objectives"] if o["name"] == name]
            if len(found) == len(self.runs) and all(o["value"] is not None for o in found):
                values = tuple(float(o["value"]) for o in found)
                out.append(Objective(name, float(found[0]["limit"]), values))
        return out

    @property
    def verdict(self) -> str:
        """fail if one SLO fails at 95 %, pass if every SLO passes at 95 %, else undecided."""
        verdicts = [o.verdict for o in self.objectives]
        if FAIL in verdicts:
            return FAIL
        return UNDECIDED if UNDECIDED in verdicts else PASS

    @property
    def ok(self) -> bool:
        """The verdict on the means (what the search uses when 95 % is out of reach)."""
        return all(o.mean <= o.limit for o in self.objectives)

    @property
    def needs_full_runs(self) -> bool:
        """A run stopped early gives a lower bound: enough to say an SLO fails, not that
        every SLO holds. When the bounds say "holds", its stopped runs must be run out."""
        return any(r.get("stopped") for r in self.runs) and self.ok

    @property
    def binding(self) -> Objective | None:
        """The SLO closest to (or furthest over) its limit."""
        return max(self.objectives, key=lambda o: o.ratio, default=None)

    @property
    def msgs_per_s(self) -> float:
        return sum(r["msgs_per_s"] for r in self.runs) / len(self.runs)

    def utilisation(self) -> list[dict[str, Any]]:
        """Every host's resources, busiest first: mean over replications of mean and peak."""
        rows = []
        for host, resources in self.runs[0]["utilisation"].items():
            for res in resources:
                mean = sum(r["utilisation"][host][res]["mean"] for r in self.runs) / len(self.runs)
                peak = sum(r["utilisation"][host][res]["peak"] for r in self.runs) / len(self.runs)
                rows.append({"host": host, "resource": res, "mean": mean, "peak": peak})
        return sorted(rows, key=lambda row: -row["peak"])

    def to_dict(self) -> dict[str, Any]:
        binding = self.binding
        return {
            "mailboxes": self.mailboxes,
            "msgs_per_s": self.msgs_per_s,
            "replications": len(self.runs),
            "verdict": self.verdict,
            "ok": self.ok,
            "stopped_early": sum(bool(r.get("stopped")) for r in self.runs),
            "binding": binding.name if binding else None,
            "objectives": [o.to_dict() for o in self.objectives],
            "busiest": self.utilisation()[:1],
        }
