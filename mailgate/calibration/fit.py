"""Fit the model's stage costs from HopRecord traces of a low-load run.

For every tier and stage seen in the traces the CPU measured around the
stage is fitted as ``cpu = fixed + per_kb * size_kb`` by least squares
(numpy); the spread of the fixed part becomes a lognormal sigma (or a
constant when the spread is small). What a stage spends without the CPU
(``elapsed - cpu``) is a wait: DNS round trips for the stages that look
names up, the disk for ``spool`` (the host's ``fsync_s``), a remote
service for the rest. The fit quality (R², residual spread) is kept per
stage so the report can say which stage's model is poor.

The result is a scenario overlay (TOML) that ``extends`` the testbed
scenario, so ``sim.scenario.load`` reads it like any other scenario.

Why a low load: in realnet every host is one single-threaded asyncio
process, so CPU measured around a stage that awaits includes other
coroutines' work interleaved with it; with few messages in flight that
contamination is small.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mailgate.sim.scenario import MAILBOX, Scenario
from mailgate.sim.scenario.records import HopRecord

#: Stages whose waiting is DNS round trips (``dns_lookups`` in the scenario).
DNS_STAGES = ("spf", "dkim_verify", "mx_lookup")
#: Stages whose waiting is the disk (the host's ``fsync_s``; the model charges
#: one fsync in each, like ``sim.model.FSYNC_STAGES``).
DISK_STAGES = ("spool", "maildir")
#: Stages whose waiting is another party the model already represents (the
#: sending client, the next hop receiving the message, the POP client): their
#: wait is reported but not written to the overlay, or it would count twice.
PEER_STAGES = ("smtp_receive", "submission", "deliver", "pop_session", "pop_retrieve")

#: Below this coefficient of variation the fixed CPU part is written as a constant.
CV_CONSTANT = 0.1
#: Upper bound for a fitted lognormal sigma (CV ≈ 3): beyond that one outlier decides.
MAX_SIGMA = 1.2
#: Waits below this (seconds) are written as 0: timer and scheduling noise.
MIN_WAIT_S = 20e-6


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

    def cpu_table(self) -> dict[str, Any]:
        """The overlay's ``cpu_s`` / ``cpu_per_kb_s`` for this stage."""
        cpu = (
            _lognormal(self.cpu_fixed_s, self.cpu_sigma) if self.cpu_sigma > 0 else self.cpu_fixed_s
        )
        return {"cpu_s": cpu, "cpu_per_kb_s": self.cpu_per_kb_s}


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

    def to_json(self) -> dict[str, Any]:
        return {
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


def _overhead(hop: HopRecord) -> float | None:
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
    for hop in hops:
        if hop.outcome == "retrieved":
            continue  # POP retrievals: per poll, not per hop (see add_measured_stage)
        tier = tier_of(hop.host)
        for stage, span in hop.stages.items():
            rows[(tier, stage)].append((hop.size_kb, span.cpu_s, span.elapsed))
        extra = _overhead(hop)
        if extra is not None:
            overheads[tier].append(extra)

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
        lookups = _lookups(scenario, tier, stage)
        if lookups:
            per_lookup += [max(e - c, 0.0) / lookups for _, c, e in stage_rows]
    return float(np.median(per_lookup)) if per_lookup else None


def _lookups(scenario: Scenario | None, tier: str, stage: str) -> int:
    if scenario is None:
        return 1
    t = scenario.tiers.get(tier)
    cost = t.cost(stage) if t else None
    return cost.dns_lookups if cost else 0


#: Stages that carry the on-path part of a hop's untraced CPU: the dialogue
#: before the 250 that no span covers (parsing commands, headers) is theirs.
OVERHEAD_STAGES = ("smtp_receive", "submission")
#: Where the rest goes: CPU after the hand-off (the model's off-path stage).
HOUSEKEEPING = "housekeeping"


def attribute_untraced_cpu(
    fit: Fit,
    hops: Iterable[HopRecord],
    host_cpu_s: Mapping[str, float],
    *,
    extra_cpu_s: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Give each tier's CPU that no stage span accounts for to the model.

    What a tier's hosts used by /proc, minus what the traced stages account
    for, is the per-hop untraced CPU (the utilisation law, U = X·D, per
    hop): accepting the connection, the dialogue outside spans, spool
    removal, connection teardown, trace writing. Only part of it can delay
    the message: at a low load a host's CPU within one message's visit
    cannot exceed the wall time no span of that visit covers, so the mean
    uncovered time before the 250 (``_overhead``) bounds the on-path part.
    That part goes to ``OVERHEAD_STAGES`` in proportion to the CPU traced in
    each; the rest ran while no span of the message was open, i.e. after
    the hand-off, and becomes the tier's ``housekeeping`` (CPU that
    competes for the cores but delays no message). When realnet traced no
    CPU in the SMTP stages (before it timed its event-loop thread), the
    on-path part goes to the receiving dialogue up to its mean elapsed time
    and the delivery client gets the remainder. ``host_cpu_s`` is each
    host's CPU over the run; ``extra_cpu_s`` per tier is CPU known to belong
    to something else (POP logins at the mailbox server). Returns the
    untraced CPU per hop of each tier (on and off the path).
    """
    extra = dict(extra_cpu_s or {})
    count: dict[str, int] = defaultdict(int)
    traced: dict[str, float] = defaultdict(float)
    uncovered: dict[str, float] = defaultdict(float)
    deliveries: dict[str, int] = defaultdict(int)
    per_stage: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    hosts_of: dict[str, set[str]] = defaultdict(set)
    for hop in hops:
        if hop.outcome == "retrieved":
            continue  # POP: its CPU is in extra_cpu_s or stays in the residual
        tier = tier_of(hop.host)
        count[tier] += 1
        traced[tier] += sum(span.cpu_s for span in hop.stages.values())
        uncovered[tier] += _overhead(hop) or 0.0
        deliveries[tier] += "deliver" in hop.stages
        for stage in OVERHEAD_STAGES:
            if stage in hop.stages:
                per_stage[tier][stage].append(hop.stages[stage].cpu_s)
        hosts_of[tier].add(hop.host)
    residual: dict[str, float] = {}
    for tier, n in count.items():
        used = sum(host_cpu_s.get(h, 0.0) for h in hosts_of[tier]) - extra.get(tier, 0.0)
        total = max(used - traced[tier], 0.0)
        residual[tier] = total / n
        on_path = min(total, uncovered[tier])
        _set_housekeeping(fit, tier, (total - on_path) / n, n)
        stages = {st: v for st, v in per_stage[tier].items() if (tier, st) in fit.stages}
        weight = {st: sum(v) for st, v in stages.items()}
        if sum(weight.values()) > 0:
            for st, w in weight.items():
                sf = fit.stages[(tier, st)]
                share = on_path * w / sum(weight.values()) / len(stages[st])
                _set_cpu(sf, sf.cpu_fixed_s + share)
        else:
            counts = {st: len(v) for st, v in stages.items()}
            _split_untraced(fit, tier, on_path, {**counts, "deliver": deliveries[tier]})
    return residual


def _split_untraced(fit: Fit, tier: str, total: float, n: Mapping[str, int]) -> None:
    """No CPU traced in the SMTP stages: receive up to its elapsed, deliver the rest."""
    receive = fit.stages.get((tier, "smtp_receive"))
    deliver = fit.stages.get((tier, "deliver"))
    if receive is not None and deliver is not None and n.get("deliver"):
        share = min(total / n["smtp_receive"], receive.wait_mean_s)  # its elapsed (cpu 0)
        _set_cpu(receive, share)
        _set_cpu(deliver, (total - share * n["smtp_receive"]) / n["deliver"])
    elif receive is not None and n.get("smtp_receive"):
        _set_cpu(receive, total / n["smtp_receive"])
    elif deliver is not None and n.get("deliver"):
        _set_cpu(deliver, total / n["deliver"])


def _set_housekeeping(fit: Fit, tier: str, cpu_s: float, n: int) -> None:
    """The tier's CPU per hop after the hand-off (no span, no wait: the utilisation law)."""
    add_measured_stage(fit, tier, HOUSEKEEPING, cpu_s, n)
    sf = fit.stages[(tier, HOUSEKEEPING)]
    sf.wait_kind = "none"
    sf.source = "utilisation law, off the path"


def _set_cpu(sf: StageFit, cpu_s: float) -> None:
    """Set the fixed CPU of a stage (its per-KB part stays; its spread is rescaled)."""
    traced = sf.cpu_fixed_s > 0 or sf.cpu_per_kb_s > 0
    cpu_s = max(cpu_s, 0.0)
    sf.wait_mean_s = max(sf.wait_mean_s - (cpu_s - sf.cpu_fixed_s), 0.0)  # elapsed stays
    sf.cpu_fixed_s = cpu_s
    sf.cpu_sigma = sigma_from_cv(sf.residual_std_s / cpu_s) if cpu_s > 0 else 0.0
    sf.source = "trace + utilisation law" if traced else "utilisation law"


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


# ---------------------------------------------------------------- overlay


def overlay_table(
    fit: Fit, scenario: Scenario | None = None, *, stages_only: bool = False
) -> dict[str, Any]:
    """The overlay as a TOML-shaped dict (without ``extends``).

    ``stages_only``: just the stage costs, not this machine's disk and DNS
    times (for an overlay on a production deployment).
    """
    table: dict[str, Any] = {}
    for (tier, stage), sf in fit.stages.items():
        cost = sf.cpu_table()
        lookups = _lookups(scenario, tier, stage)
        if sf.wait_kind == "other":
            # waits inside a host (thread hand-off, the GIL) grow with contention from
            # other processes, which the model queues for explicitly: the median
            # is the uncontended part
            cost["wait_s"] = _wait(sf.wait_median_s)
        elif sf.wait_kind == "dns" and fit.dns_s is not None:
            remote = sf.wait_median_s - lookups * fit.dns_s
            cost["wait_s"] = _wait(remote)
        _tier_table(table, tier).setdefault("stages", {})[stage] = cost
    if stages_only:
        return table
    for tier, (mean, sigma) in fit.fsync_s.items():
        fsync: Any = _wait(mean)
        if sigma > 0 and fsync > 0:
            fsync = _lognormal(mean, sigma)
        _tier_table(table, tier)["host"] = {"fsync_s": fsync}
    if fit.dns_s is not None:
        table["network"] = {"dns_s": fit.dns_s}
    return table


def _lognormal(mean: float, sigma: float) -> dict[str, Any]:
    """The scenario's lognormal table with this mean (it is given by its median)."""
    return {"dist": "lognormal", "median": mean / math.exp(sigma**2 / 2), "sigma": sigma}


def _wait(value: float) -> float:
    return float(value) if value >= MIN_WAIT_S else 0.0


def _tier_table(table: dict[str, Any], tier: str) -> dict[str, Any]:
    if tier == MAILBOX:
        return table.setdefault("mailbox_server", {})
    return table.setdefault("gateways", {}).setdefault(tier, {})


def write_overlay(
    fit: Fit,
    base: Path,
    out: Path,
    scenario: Scenario | None = None,
    *,
    stages_only: bool = False,
) -> Path:
    """Write the overlay TOML at ``out``; it ``extends`` ``base``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    extends = os.path.relpath(base.resolve(), out.parent.resolve())
    if extends.startswith(os.pardir + os.sep + os.pardir):
        extends = str(base.resolve())  # far away: an absolute path survives moving ``out``
    lines = [
        "# Stage costs fitted by `mailgate calibrate` from a low-load realnet run.",
        "# CPU: fixed + per KB by least squares; spread as a lognormal sigma;",
        "# waits = elapsed - cpu (DNS per lookup in network.dns_s, disk in host.fsync_s).",
    ]
    if stages_only:
        lines.append("# Stage costs only: the hosts, disks and network are the base scenario's.")
    lines += [f"extends = {_toml_value(extends)}", ""]
    lines += _toml_tables(overlay_table(fit, scenario, stages_only=stages_only), [])
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(float(value)) if isinstance(value, float) else str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def _toml_tables(table: Mapping[str, Any], path: list[str]) -> list[str]:
    """Leaf tables of scalars and inline tables become ``[a.b.c]`` sections."""
    scalars = {k: v for k, v in table.items() if not _is_section(v)}
    lines: list[str] = []
    if scalars and path:
        lines.append(f"[{'.'.join(path)}]")
    lines += [f"{k} = {_toml_value(v)}" for k, v in scalars.items()]
    if scalars:
        lines.append("")
    for key, value in table.items():
        if _is_section(value):
            lines += _toml_tables(value, [*path, key])
    return lines


def _is_section(value: Any) -> bool:
    """A dict that holds dicts, or a stage/host table: written as a section."""
    return isinstance(value, dict) and "dist" not in value
