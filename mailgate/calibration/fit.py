"""Fit the model's stage costs from HopRecord traces of realnet runs.

For every tier and stage seen in the traces the CPU measured around the
stage is fitted as ``cpu = fixed + per_kb * size_kb`` by least squares
(numpy); the spread of the fixed part becomes a lognormal sigma (or a
constant when the spread is small). What a stage spends without the CPU
(``elapsed - cpu``) is a wait: DNS round trips for the stages that look
names up, the disk for ``spool`` (the host's ``fsync_s``), a remote
service for the rest. The fit quality (R², residual spread) is kept per
stage so the report can say which stage's model is poor.

``attribution`` then places the CPU no stage span shows; ``overlay`` turns
the fit into a scenario overlay that ``extends`` the testbed scenario.

Which traces: calibration fits the CPU from every load of its sweep and the
waits from the lowest (``fit_sweep.combine``). In realnet every host is one
single-threaded asyncio process, so CPU measured around a stage that awaits
includes other coroutines' work interleaved with it; with few messages in
flight that contamination is small, and ``attribution`` caps a tier's traced
CPU at what /proc measured.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.records import HopRecord

#: Stages whose waiting is DNS round trips (``dns_lookups`` in the scenario).
DNS_STAGES = ("spf", "dkim_verify", "mx_lookup")
#: Stages whose waiting is the disk (the host's ``fsync_s``; the model charges
#: one fsync in each, like the model's ``FSYNC_STAGES``).
DISK_STAGES = ("spool", "maildir")
#: Stages whose waiting is another party the model already represents (the
#: sending client, the next hop receiving the message, the POP client): their
#: wait is reported but not written to the overlay, or it would count twice.
PEER_STAGES = ("smtp_receive", "submission", "deliver", "pop_session", "pop_retrieve", "tls")
#: Stages traced once per connection (on its first message), but costed by the model
#: per message: a hop without the span paid none of it (its connection was reused).
PER_CONNECTION_STAGES = ("tls",)


#: Below this coefficient of variation the fixed CPU part is written as a constant.
CV_CONSTANT = 0.1
#: Upper bound for a fitted lognormal sigma (CV ≈ 3): beyond that one outlier decides.
MAX_SIGMA = 1.2


@dataclass
class StageFit:
    """The fitted cost of one stage at one tier, and how good the fit is."""

    tier: str
    stage: str
    n: int
    cpu_fixed_s: float  # mean of the fixed part
    cpu_per_kb_s: float
    cpu_cv: float  # CV of the fixed part (residual std / fixed mean)
    cpu_sigma: float  # lognormal sigma of the fixed part; 0 = constant
    r2: float  # of the linear fit (NaN when sizes do not vary)
    residual_std_s: float
    wait_mean_s: float  # elapsed - cpu
    wait_p95_s: float
    wait_median_s: float
    wait_kind: str  # dns | disk | peer | other
    source: str = "trace"  # trace | utilisation law | measured in-process


@dataclass
class HopOverhead:
    """Time a hop spends that no stage accounts for (SMTP dialogue gaps, queueing)."""

    tier: str
    n: int
    mean_s: float
    p95_s: float


@dataclass
class Fit:
    """Everything fitted from one set of traces."""

    stages: dict[tuple[str, str], StageFit] = field(default_factory=dict)
    fsync_s: dict[str, tuple[float, float]] = field(default_factory=dict)  # tier -> (mean, sigma)
    dns_s: float | None = None
    overhead: dict[str, HopOverhead] = field(default_factory=dict)
    #: tier -> factor its traced stage CPU was scaled by to match /proc (attribution)
    proc_scale: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "proc_scale": dict(self.proc_scale),
            "stages": [_finite(asdict(s)) for s in self.stages.values()],
            "fsync_s": {t: {"mean": m, "sigma": s} for t, (m, s) in self.fsync_s.items()},
            "dns_s": self.dns_s,
            "hop_overhead": [_finite(asdict(o)) for o in self.overhead.values()],
        }


def _finite(d: dict[str, Any]) -> dict[str, Any]:
    """JSON has no NaN: write null."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def tier_of(host_id: str) -> str:
    """``gateway1.0`` → ``gateway1``."""
    return host_id.rsplit(".", 1)[0]


def linear_fit(sizes: np.ndarray, cpu: np.ndarray) -> tuple[float, float, float, np.ndarray]:
    """Least squares ``cpu = a + b * size`` with ``a, b ≥ 0``.

    Returns ``(a, b, r2, residuals)``. When the sizes hardly vary, or the
    slope comes out negative (noise), the fit is a constant (b = 0).
    """
    varies = float(np.std(cpu)) > 1e-9 * max(float(np.abs(cpu).mean()), 1e-12)
    if len(cpu) >= 3 and np.ptp(sizes) > 1e-9 and varies:
        design = np.column_stack([np.ones_like(sizes), sizes])
        (a, b), *_ = np.linalg.lstsq(design, cpu, rcond=None)
        if b >= 0 and a >= 0:
            residuals = cpu - (a + b * sizes)
            return float(a), float(b), _r2(cpu, residuals), residuals
        if a < 0:  # all the cost scales with size: fit through the origin
            b = float(np.dot(sizes, cpu) / np.dot(sizes, sizes))
            residuals = cpu - b * sizes
            return 0.0, b, _r2(cpu, residuals), residuals
    a = float(cpu.mean())
    return a, 0.0, float("nan"), cpu - a


def _r2(cpu: np.ndarray, residuals: np.ndarray) -> float:
    """Coefficient of determination (NaN when ``cpu`` does not vary)."""
    total = float(np.sum((cpu - cpu.mean()) ** 2))
    return 1 - float(np.sum(residuals**2)) / total if total > 0 else float("nan")


def sigma_from_cv(cv: float) -> float:
    """Lognormal sigma with the given coefficient of variation (0 when small)."""
    if not math.isfinite(cv) or cv < CV_CONSTANT:
        return 0.0
    return min(math.sqrt(math.log1p(cv * cv)), MAX_SIGMA)


def _wait_kind(stage: str) -> str:
    if stage in DNS_STAGES:
        return "dns"
    if stage in DISK_STAGES:
        return "disk"
    if stage in PEER_STAGES:
        return "peer"
    return "other"


def fit_stage(tier: str, stage: str, rows: list[tuple[float, float, float]]) -> StageFit:
    """Fit one stage from ``(size_kb, cpu_s, elapsed_s)`` rows."""
    data = np.asarray(rows, dtype=float)
    sizes, cpu, elapsed = data[:, 0], data[:, 1], data[:, 2]
    a, b, r2, residuals = linear_fit(sizes, cpu)
    residual_std = float(residuals.std(ddof=1)) if len(residuals) > 1 else 0.0
    cv = residual_std / a if a > 0 else float("nan")
    waits = np.maximum(elapsed - cpu, 0.0)
    return StageFit(
        tier=tier,
        stage=stage,
        n=len(rows),
        cpu_fixed_s=a,
        cpu_per_kb_s=b,
        cpu_cv=cv,
        cpu_sigma=sigma_from_cv(cv),
        r2=r2,
        residual_std_s=residual_std,
        wait_mean_s=float(waits.mean()),
        wait_p95_s=float(np.quantile(waits, 0.95)),
        wait_median_s=float(np.median(waits)),
        wait_kind=_wait_kind(stage),
    )


def hop_overhead(hop: HopRecord) -> float | None:
    """Time from arrival to the 250 that no stage before the 250 covers."""
    if hop.accepted is None:
        return None
    covered = sum(
        min(s.end, hop.accepted) - max(s.start, hop.arrived)
        for s in hop.stages.values()
        if s.start < hop.accepted and s.end > hop.arrived
    )
    return max(hop.accepted - hop.arrived - covered, 0.0)


def fit_traces(hops: Iterable[HopRecord], scenario: Scenario | None = None) -> Fit:
    """Fit stage costs, fsync, DNS and per-hop overhead from HopRecords.

    ``scenario`` (the one the traces were measured on) supplies each stage's
    ``dns_lookups`` so DNS waits can be turned into a per-lookup time.
    """
    rows: dict[tuple[str, str], list[tuple[float, float, float]]] = defaultdict(list)
    overheads: dict[str, list[float]] = defaultdict(list)
    without: dict[tuple[str, str], list[float]] = defaultdict(list)  # sizes, per-connection
    for hop in hops:
        if hop.outcome == "retrieved":
            continue  # POP retrievals: per poll, not per hop (see add_measured_stage)
        tier = tier_of(hop.host)
        for stage, span in hop.stages.items():
            rows[(tier, stage)].append((hop.size_kb, span.cpu_s, span.elapsed))
        for stage in PER_CONNECTION_STAGES:
            if stage not in hop.stages:
                without[(tier, stage)].append(hop.size_kb)
        extra = hop_overhead(hop)
        if extra is not None:
            overheads[tier].append(extra)

    for key, sizes in without.items():
        if key in rows:  # a reused connection: this message paid no handshake
            rows[key] += [(size, 0.0, 0.0) for size in sizes]
    fit = Fit()
    for (tier, stage), stage_rows in sorted(rows.items()):
        fit.stages[(tier, stage)] = fit_stage(tier, stage, stage_rows)
    for tier, values in sorted(overheads.items()):
        arr = np.asarray(values)
        fit.overhead[tier] = HopOverhead(
            tier, len(arr), float(arr.mean()), float(np.quantile(arr, 0.95))
        )
    disk: dict[str, list[float]] = defaultdict(list)
    for (tier, stage), rows_ in rows.items():
        if stage in DISK_STAGES:
            disk[tier] += [max(e - c, 0.0) for _, c, e in rows_]
    for tier, values in disk.items():
        waits = np.asarray(values)
        mean = float(waits.mean())
        cv = float(waits.std(ddof=1) / mean) if len(waits) > 1 and mean > 0 else 0.0
        fit.fsync_s[tier] = (mean, sigma_from_cv(cv))
    fit.dns_s = _dns_per_lookup(fit, rows, scenario)
    return fit


def _dns_per_lookup(
    fit: Fit, rows: Mapping[tuple[str, str], list[tuple[float, float, float]]], scenario: Any
) -> float | None:
    """Median DNS wait per lookup, pooled over the DNS stages."""
    per_lookup: list[float] = []
    for (tier, stage), stage_rows in rows.items():
        if stage not in DNS_STAGES:
            continue
        lookups = dns_lookups(scenario, tier, stage)
        if lookups:
            per_lookup += [max(e - c, 0.0) / lookups for _, c, e in stage_rows]
    return float(np.median(per_lookup)) if per_lookup else None


def dns_lookups(scenario: Scenario | None, tier: str, stage: str) -> int:
    """DNS lookups the scenario gives a stage (1 without a scenario, 0 for no such stage)."""
    if scenario is None:
        return 1
    t = scenario.tiers.get(tier)
    cost = t.cost(stage) if t else None
    return cost.dns_lookups if cost else 0


def add_measured_stage(fit: Fit, tier: str, stage: str, cpu_s: float, n: int = 1) -> None:
    """A stage the traces do not show, measured another way (e.g. POP login's scrypt)."""
    fit.stages[(tier, stage)] = StageFit(
        tier=tier,
        stage=stage,
        n=n,
        cpu_fixed_s=cpu_s,
        cpu_per_kb_s=0.0,
        cpu_cv=0.0,
        cpu_sigma=0.0,
        r2=float("nan"),
        residual_std_s=0.0,
        wait_mean_s=0.0,
        wait_p95_s=0.0,
        wait_median_s=0.0,
        wait_kind="peer",
        source="measured in-process",
    )
