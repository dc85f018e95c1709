"""Measured and modelled load points, side by side: latency quantiles per
flow and span, saturation, per-host CPU, where the model departs, and the
report (``report.md``, ``calibration.json``, plots).

Pure functions on data (``Point``, ``Saturation``, MessageRecords,
HopRecords): neither realnet nor the model runs here, which is why
``realnet.calibrate`` (which runs both) keeps them apart and the tests
exercise them on synthetic points.
"""

import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mailgate.calibration.fit import Fit, tier_of
from mailgate.realnet.load.loadgen import quantile_row
from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.records import HopRecord, MessageRecord

#: Targets are checked up to this share of saturation (the issue: "up to 70 %").
TARGET_MAX_LOAD = 0.7
#: Saturation throughput tolerance (the issue: "within 10 %").
SATURATION_TOLERANCE = 0.10
#: Fewer samples than this at a flow and load: reported, not judged.
MIN_JUDGED_N = 20
#: The spans compared, as MessageRecord fields (latency = field - sent).
SPANS = ("in_mailbox", "retrieved")
QUANTILES = (0.5, 0.95, 0.99)


# ---------------------------------------------------------------- data


@dataclass
class Point:
    """One load level, measured or modelled."""

    rate: float  # offered, messages/s
    throughput: float  # delivered (in mailbox or remote), messages/s
    latency: dict[str, dict[str, dict[str, float]]]  # span -> flow -> {n, p50, p95, p99}
    utilisation: dict[str, float]  # host -> CPU share of one core
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # span -> flow -> s
    stage_means: dict[str, dict[str, float]] = field(default_factory=dict)  # tier -> stage -> s
    residence: dict[str, dict[str, float]] = field(default_factory=dict)  # tier -> part -> s
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "throughput": self.throughput,
            "latency": self.latency,
            "utilisation": self.utilisation,
            "stage_means": self.stage_means,
            "residence": self.residence,
            **self.extra,
        }


@dataclass
class Saturation:
    """The throughput where the system stops keeping up, and who gives out first."""

    throughput: float  # messages/s
    first_host: str
    method: str
    steps: list[dict[str, Any]] = field(default_factory=list)


# ---------------------------------------------------------------- statistics


def latency_samples(records: Iterable[MessageRecord]) -> dict[str, dict[str, list[float]]]:
    """span -> flow -> latencies (s) from the scheduled send time."""
    out: dict[str, dict[str, list[float]]] = {s: defaultdict(list) for s in SPANS}
    for r in records:
        for span in SPANS:
            end = getattr(r, span)
            if end is not None:
                out[span][r.flow].append(end - r.sent)
    return {s: dict(v) for s, v in out.items()}


def quantiles(samples: Mapping[str, Mapping[str, Sequence[float]]]) -> dict[str, Any]:
    """span -> flow -> {n, p50, p95, p99}."""
    return {
        span: {f: quantile_row(v, QUANTILES) for f, v in sorted(flows.items()) if len(v)}
        for span, flows in samples.items()
    }


#: Stages on the sending side of a hop, after the 250 (as in sim.model).
DELIVERY_STAGES = ("mx_lookup", "deliver")


def stage_profile(
    hops: Iterable[HopRecord],
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Mean elapsed time per tier and stage, and per tier the mean time to the
    250 (``receive``: arrived → accepted) and after it (``handoff``: from this
    hop's 250 to the next hop's, i.e. the wait for a delivery slot, the
    delivery and the next hop's whole receive; at the last hop, to ``left``).

    The hand-off ends at the next hop's 250 rather than at this hop's
    ``left``: realnet stamps ``left`` after removing the spool file, which
    does not delay the message.
    """
    stages: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    parts: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    path: dict[str, list[HopRecord]] = defaultdict(list)
    for hop in hops:
        if hop.outcome == "retrieved":
            continue  # POP retrievals are not a hop of the message's path
        tier = tier_of(hop.host)
        for name, span in hop.stages.items():
            stages[tier][name].append(span.elapsed)
        if hop.accepted is not None:
            receive = hop.accepted - hop.arrived
            parts[tier]["receive"].append(receive)
            # per hop: a tier's hops do not all run the same stages (mailbox: submission
            # or delivery into a Maildir), so this cannot come from the stage means
            staged = sum(sp.elapsed for n, sp in hop.stages.items() if n not in DELIVERY_STAGES)
            parts[tier]["unattributed"].append(receive - staged)
            path[hop.msg_id].append(hop)
    for visits in path.values():
        visits.sort(key=lambda h: h.arrived)
        for a, b in zip(visits, [*visits[1:], None], strict=True):
            assert a.accepted is not None
            if b is not None and b.accepted is not None:
                parts[tier_of(a.host)]["handoff"].append(b.accepted - a.accepted)
            elif b is None and a.left is not None and a.outcome in ("relayed", "remote"):
                parts[tier_of(a.host)]["handoff"].append(a.left - a.accepted)
    means = {t: {s: float(np.mean(v)) for s, v in st.items()} for t, st in stages.items()}
    return means, {t: {k: float(np.mean(v)) for k, v in p.items()} for t, p in parts.items()}


def relative_error(modelled: float, measured: float) -> float:
    """(model − measurement) / measurement; inf when nothing was measured."""
    if measured == 0:
        return 0.0 if modelled == 0 else math.inf
    return (modelled - measured) / measured


def utilisation_law_saturation(
    point: Point, machine_cores: float, per_host_cores: float = 1.0
) -> tuple[float, str]:
    """Saturation throughput from one point's utilisations (U = X·D).

    Each host's demand per message is ``D = U / X``; a host saturates at
    ``per_host_cores / D`` and the machine at ``cores / ΣD``. Returns
    the smaller and who it is (a host id or ``machine``).
    """
    x = point.rate
    demands = {h: u / x for h, u in point.utilisation.items() if u > 0 and x > 0}
    if not demands:
        return math.inf, ""
    host, d = max(demands.items(), key=lambda kv: kv[1])
    host_limit = per_host_cores / d
    machine_limit = machine_cores / sum(demands.values())
    if machine_limit < host_limit:
        return machine_limit, "machine"
    return host_limit, host


def first_host(name: str) -> str:
    """What saturates first, comparable across worlds: a host id or ``machine``."""
    return "machine" if name.startswith("machine") else name


# ---------------------------------------------------------------- comparison


def compare_points(
    measured: Sequence[Point],
    modelled: Sequence[Point],
    saturation: float,
    tolerance: float,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Row per load, span, flow and quantile; and the failures of the targets.

    Targets (the issue): p50 and p95 of send → in mailbox within
    ``tolerance`` at every load up to 70 % of saturation. Other rows, and
    flows with fewer than ``MIN_JUDGED_N`` measured messages at a load, are
    reported, not judged.
    """
    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    for meas, mod in zip(measured, modelled, strict=True):
        load_share = meas.rate / saturation if saturation > 0 else math.nan
        for span in SPANS:
            for flow, mrow in meas.latency.get(span, {}).items():
                model_row = mod.latency.get(span, {}).get(flow)
                for q in ("p50", "p95", "p99"):
                    got = model_row.get(q) if model_row else None
                    err = relative_error(got, mrow[q]) if got is not None else math.inf
                    judged = (
                        span == "in_mailbox"
                        and mrow["n"] >= MIN_JUDGED_N
                        and q in ("p50", "p95")
                        and load_share <= TARGET_MAX_LOAD + 0.01  # 70 % of a rounded rate
                    )
                    ok = abs(err) <= tolerance if judged else None
                    rows.append(
                        {
                            "rate": meas.rate,
                            "load": load_share,
                            "span": span,
                            "flow": flow,
                            "quantile": q,
                            "n": mrow["n"],
                            "measured_s": mrow[q],
                            "modelled_s": got,
                            "relative_error": err if math.isfinite(err) else None,
                            "judged": judged,
                            "ok": ok,
                        }
                    )
                    if ok is False:
                        failures.append(
                            f"{meas.rate:g} msg/s ({load_share:.0%}): {flow} send→{span} {q} "
                            f"measured {mrow[q] * 1e3:.1f} ms, modelled "
                            f"{(got or math.nan) * 1e3:.1f} ms ({_pct(err)})"
                        )
    return rows, failures


def _pct(err: float) -> str:
    return f"{err:+.0%}" if math.isfinite(err) else "no model value"


#: Stages whose realnet span and model span mean different things: realnet's
#: ``deliver`` is the whole transaction with the next hop (the model's is the
#: client's CPU; compared through the hand-off) and its ``submission`` the
#: whole AUTH session (the model's is the AUTH on top of ``smtp_receive``).
NOT_COMPARABLE = ("deliver", "submission")


def departures(meas: Point, mod: Point, top: int = 5) -> list[dict[str, Any]]:
    """Where the model's time goes wrong at one load: the stages whose modelled
    mean time differs most from the measured one, together with each hop's
    unattributed time before its 250 and its hand-off to the next hop.

    ``NOT_COMPARABLE`` stages count only through the hop's totals.
    """
    out = []

    def row(tier: str, stage: str, m: float, d: float) -> None:
        out.append({"tier": tier, "stage": stage, "measured_s": m, "modelled_s": d, "gap_s": d - m})

    for tier, stages in meas.stage_means.items():
        model_stages = mod.stage_means.get(tier, {})
        for stage, m in stages.items():
            if stage not in NOT_COMPARABLE and stage in model_stages:
                row(tier, stage, m, model_stages[stage])
        m_parts, d_parts = meas.residence.get(tier, {}), mod.residence.get(tier, {})
        if "unattributed" in m_parts and "unattributed" in d_parts:
            # before the 250, not inside any stage: dialogue gaps, waiting for a core
            row(tier, "(unattributed before 250)", m_parts["unattributed"], d_parts["unattributed"])
        if "handoff" in m_parts and "handoff" in d_parts:
            row(tier, "(hand-off: queue + deliver)", m_parts["handoff"], d_parts["handoff"])
    out.sort(key=lambda r: abs(r["gap_s"]), reverse=True)
    return out[:top]


def utilisation_rows(measured: Sequence[Point], modelled: Sequence[Point]) -> list[dict[str, Any]]:
    rows = []
    for meas, mod in zip(measured, modelled, strict=True):
        for host in sorted(set(meas.utilisation) | set(mod.utilisation)):
            m, d = meas.utilisation.get(host), mod.utilisation.get(host)
            rows.append(
                {
                    "rate": meas.rate,
                    "host": host,
                    "measured": m,
                    "modelled": d,
                    "relative_error": relative_error(d, m) if m and d is not None else None,
                }
            )
    return rows


# ---------------------------------------------------------------- report


def machine_cores(scenario: Scenario) -> int:
    machines = scenario.deployment.machines
    return machines[0].cores if machines else 1


def build_report(
    *,
    scenario_path: str,
    command: str,
    measured: Sequence[Point],
    modelled: Sequence[Point],
    saturation_measured: Saturation,
    saturation_modelled: Saturation,
    fit: Fit,
    overlay: Path,
    tolerance: float,
    wall_s: float,
) -> tuple[dict[str, Any], list[str]]:
    """``calibration.json``'s content and the list of missed targets."""
    sat = saturation_measured.throughput
    rows, failures = compare_points(measured, modelled, sat, tolerance)
    sat_err = relative_error(saturation_modelled.throughput, sat)
    if abs(sat_err) > max(tolerance, SATURATION_TOLERANCE):
        failures.append(
            f"saturation: measured {sat:.1f} msg/s, modelled "
            f"{saturation_modelled.throughput:.1f} msg/s ({_pct(sat_err)})"
        )
    same_first = first_host(saturation_measured.first_host) == first_host(
        saturation_modelled.first_host
    )
    if not same_first:
        failures.append(
            f"first to saturate: measured {saturation_measured.first_host}, "
            f"modelled {saturation_modelled.first_host}"
        )
    where = {f"{m.rate:g}": departures(m, d) for m, d in zip(measured, modelled, strict=True)}
    failures = [_blame(f, where) for f in failures]
    report = {
        "scenario": scenario_path,
        "command": command,
        "wall_s": wall_s,
        "tolerance": tolerance,
        "targets": {
            "latency": f"p50/p95 send→in mailbox within {tolerance:.0%} up to "
            f"{TARGET_MAX_LOAD:.0%} of saturation",
            "saturation": f"within {max(tolerance, SATURATION_TOLERANCE):.0%}",
            "first_host": "same host saturates first",
        },
        "ok": not failures,
        "failures": failures,
        "saturation": {
            "measured": asdict(saturation_measured),
            "modelled": asdict(saturation_modelled),
            "relative_error": sat_err if math.isfinite(sat_err) else None,
            "same_first_host": same_first,
        },
        "loads": [
            {"measured": m.to_json(), "modelled": d.to_json()}
            for m, d in zip(measured, modelled, strict=True)
        ],
        "latency": rows,
        "utilisation": utilisation_rows(measured, modelled),
        "departures": where,
        "fit": fit.to_json(),
        "overlay": str(overlay),
    }
    return report, failures


def _blame(failure: str, where: Mapping[str, list[dict[str, Any]]]) -> str:
    """Append the stage whose model is most off, in the direction of the error."""
    rate = failure.split(" ", 1)[0]
    sign = re.search(r"\(([+-])\d+%\)$", failure)
    g = most_off(where.get(rate) or [], -1.0 if sign and sign.group(1) == "-" else 1.0)
    if g is None:
        return failure
    return (
        f"{failure} — most off: {g['tier']}/{g['stage']} (measured "
        f"{g['measured_s'] * 1e3:.2f} ms, modelled {g['modelled_s'] * 1e3:.2f} ms)"
    )


def most_off(gaps: Sequence[Mapping[str, Any]], sign: float) -> Mapping[str, Any] | None:
    """The largest gap that errs the same way as the latency (model too low: sign < 0)."""
    same = [g for g in gaps if g["gap_s"] * sign > 0]
    return same[0] if same else (gaps[0] if gaps else None)


def format_report(report: Mapping[str, Any]) -> str:
    """The terminal/Markdown report."""
    lines = [f"# Calibration of {report['scenario']}", "", f"`{report['command']}`", ""]
    sat = report["saturation"]
    lines += [
        "## Saturation",
        "",
        "| | msg/s | first to saturate |",
        "|---|---:|---|",
        f"| measured | {sat['measured']['throughput']:.1f} | {sat['measured']['first_host']} |",
        f"| modelled | {sat['modelled']['throughput']:.1f} | {sat['modelled']['first_host']} |",
        "",
        f"relative error {_fmt_err(sat['relative_error'])}; same first host: "
        f"{'yes' if sat['same_first_host'] else 'NO'}",
        "",
        "## Latency from the scheduled send (ms)",
        "",
        "| msg/s | load | span | flow | n | q | measured | modelled | error | |",
        "|---:|---:|---|---|---:|---|---:|---:|---:|---|",
    ]
    for r in report["latency"]:
        mark = "" if r["ok"] is None else ("ok" if r["ok"] else "**MISS**")
        mod = "—" if r["modelled_s"] is None else f"{r['modelled_s'] * 1e3:.1f}"
        lines.append(
            f"| {r['rate']:g} | {r['load']:.0%} | {r['span']} | {r['flow']} | {r['n']} "
            f"| {r['quantile']} "
            f"| {r['measured_s'] * 1e3:.1f} | {mod} | {_fmt_err(r['relative_error'])} | {mark} |"
        )
    lines += ["", "## CPU utilisation per host (share of one core)", ""]
    lines += ["| msg/s | host | measured | modelled | error |", "|---:|---|---:|---:|---:|"]
    for r in report["utilisation"]:
        lines.append(
            f"| {r['rate']:g} | {r['host']} | {_fmt_share(r['measured'])} | "
            f"{_fmt_share(r['modelled'])} | {_fmt_err(r['relative_error'])} |"
        )
    lines += machine_section(report)
    lines += ["", "## Where the model departs (largest gaps in mean time per hop)", ""]
    for rate, gaps in report["departures"].items():
        text = "; ".join(
            f"{g['tier']}/{g['stage']} measured {g['measured_s'] * 1e3:.2f} ms, modelled "
            f"{g['modelled_s'] * 1e3:.2f} ms"
            for g in gaps
        )
        lines.append(f"- {rate} msg/s: {text or 'no stage data'}")
    lines += ["", "## Fit (lowest load)", ""]
    lines += ["| tier | stage | n | cpu fixed ms | cpu µs/KB | sigma | R² | wait ms | from |"]
    lines += ["|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for s in report["fit"]["stages"]:
        r2 = "—" if s["r2"] is None else f"{s['r2']:.2f}"
        lines.append(
            f"| {s['tier']} | {s['stage']} | {s['n']} | {s['cpu_fixed_s'] * 1e3:.3f} | "
            f"{s['cpu_per_kb_s'] * 1e6:.2f} | {s['cpu_sigma']:.2f} | {r2} | "
            f"{s['wait_mean_s'] * 1e3:.3f} | {s.get('source', '')} |"
        )
    lines += ["", "## Verdict", ""]
    if report["ok"]:
        lines.append("All targets met.")
    else:
        lines += [f"- {f}" for f in report["failures"]]
        lines += ["", "## Why", ""] + [f"- {w}" for w in closing_notes(report)]
    lines.append("")
    return "\n".join(lines)


def closing_notes(report: Mapping[str, Any]) -> list[str]:
    """Why the model departs where a target is missed, from the measurements."""
    notes = []
    fit_load = min(report["loads"], key=lambda level: level["measured"]["rate"])["measured"]
    if (fit_load.get("foreign_busy_cores") or 0.0) > 0.25:
        notes.append(
            f"the fit ({fit_load['rate']:g} msg/s) ran while other processes used "
            f"{fit_load['foreign_busy_cores']:.2f} cores: its CPU and waits include their "
            "interference; calibrate on a machine the testbed has to itself."
        )
    failing = {r["rate"] for r in report["latency"] if r["ok"] is False}
    for level in report["loads"]:
        m = level["measured"]
        if m["rate"] not in failing:
            continue
        errs = [
            r["relative_error"]
            for r in report["latency"]
            if r["rate"] == m["rate"] and r["ok"] is False
        ]
        g = most_off(report["departures"].get(f"{m['rate']:g}") or [], errs[0] if errs else 1.0)
        where = (
            f"{g['tier']}/{g['stage']} (measured {g['measured_s'] * 1e3:.1f} ms, modelled "
            f"{g['modelled_s'] * 1e3:.1f} ms)"
            if g
            else "no stage data"
        )
        foreign = m.get("foreign_busy_cores") or 0.0
        if foreign > 0.25:
            notes.append(
                f"{m['rate']:g} msg/s: other processes used {foreign:.2f} cores of the machine "
                f"the model gives the testbed whole; the waiting for a core shows most in {where}."
            )
        else:
            notes.append(f"{m['rate']:g} msg/s: the model of {where} is off.")
    sat = report["saturation"]
    if sat["relative_error"] is not None and abs(sat["relative_error"]) > SATURATION_TOLERANCE:
        notes.append(
            "saturation: the measured value is where throughput stopped following the offered "
            "load or p95 passed 1 s; the model's is where its busiest resource reaches 100 % "
            "(with the measured CPU of the processes outside the model). Other processes on the "
            "machine (table above) lower the first and not the second."
        )
    if not sat["same_first_host"]:
        notes.append(
            "first to saturate: the model's per-host CPU (table above) ranks the hosts "
            "differently from /proc."
        )
    return notes


#: Hosts of the testbed that are not in the model (they still use the machine's cores).
OUTSIDE_MODEL = ("dns", "remote")


def machine_section(report: Mapping[str, Any]) -> list[str]:
    """Who kept the machine's cores busy at each load: the modelled hosts, the
    DNS server and remote sinks (not modelled), the load generator, others."""
    lines = [
        "",
        "## The machine's cores during each load (cores busy, measured)",
        "",
        "| msg/s | whole machine | modelled hosts (meas.) | modelled hosts (model) "
        "| dns + remote sinks | load generator | other processes |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for level in report["loads"]:
        m, d = level["measured"], level["modelled"]
        hosts = sum(u for h, u in m["utilisation"].items() if h not in OUTSIDE_MODEL)
        outside = sum(u for h, u in m["utilisation"].items() if h in OUTSIDE_MODEL)
        loadgen = m.get("loadgen", {}).get("loadgen_cpu_share", 0.0)
        foreign = m.get("foreign_busy_cores")
        lines.append(
            f"| {m['rate']:g} | {_fmt_cores(m.get('machine_busy_cores'))} | {hosts:.2f} | "
            f"{sum(d['utilisation'].values()):.2f} | {outside:.2f} | {loadgen:.2f} | "
            f"{_fmt_cores(foreign)} |"
        )
        if foreign is not None and foreign > 0.25:
            notes.append(
                f"At {m['rate']:g} msg/s other processes kept {foreign:.2f} cores busy: the "
                "testbed had less than the machine's cores the model gives it."
            )
        if outside + loadgen > 0.1 * max(hosts, 1e-9):
            notes.append(
                f"At {m['rate']:g} msg/s the DNS server, remote sinks and load generator used "
                f"{outside + loadgen:.2f} cores the model does not know about."
            )
    return lines + ([""] + [f"- {n}" for n in notes] if notes else [])


def _fmt_cores(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _fmt_err(err: float | None) -> str:
    return "—" if err is None else f"{err:+.0%}"


def _fmt_share(u: float | None) -> str:
    return "—" if u is None else f"{u:.0%}"


def plot(
    report: Mapping[str, Any], measured: Sequence[Point], modelled: Sequence[Point], out: Path
) -> list[Path]:
    """Latency versus load (measured points, modelled lines) and CDF overlays per load."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    flows = sorted({f for p in measured for f in p.latency.get("in_mailbox", {})})
    fig, axes = plt.subplots(
        1, max(len(flows), 1), figsize=(5 * max(len(flows), 1), 4), squeeze=False
    )
    for ax, flow in zip(axes[0], flows, strict=False):
        for q, colour in (("p50", "tab:blue"), ("p95", "tab:orange"), ("p99", "tab:red")):
            xs = [p.rate for p in measured if flow in p.latency.get("in_mailbox", {})]
            ys = [
                p.latency["in_mailbox"][flow][q] * 1e3
                for p in measured
                if flow in p.latency.get("in_mailbox", {})
            ]
            ax.plot(xs, ys, "o", color=colour, label=f"measured {q}")
            mx = [p.rate for p in modelled if flow in p.latency.get("in_mailbox", {})]
            my = [
                p.latency["in_mailbox"][flow][q] * 1e3
                for p in modelled
                if flow in p.latency.get("in_mailbox", {})
            ]
            ax.plot(mx, my, "-", color=colour, label=f"modelled {q}")
        ax.set_title(f"{flow}: send → in mailbox")
        ax.set_xlabel("offered load, msg/s")
        ax.set_ylabel("latency, ms")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(out / "latency_vs_load.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    n = len(measured)
    fig, axes = plt.subplots(1, max(n, 1), figsize=(4 * max(n, 1), 3.5), squeeze=False)
    for ax, meas, mod in zip(axes[0], measured, modelled, strict=False):
        for flow, colour in zip(flows, ("tab:blue", "tab:green", "tab:purple"), strict=False):
            for point, style, who in ((meas, "-", "measured"), (mod, "--", "modelled")):
                values = np.sort(point.samples.get("in_mailbox", {}).get(flow, []))
                if len(values):
                    ax.plot(
                        values * 1e3,
                        np.arange(1, len(values) + 1) / len(values),
                        style,
                        color=colour,
                        label=f"{flow} {who}",
                    )
        ax.set_xscale("log")
        ax.set_title(f"{meas.rate:g} msg/s")
        ax.set_xlabel("send → in mailbox, ms")
        ax.set_ylabel("CDF")
        ax.legend(fontsize=6)
    fig.tight_layout()
    paths.append(out / "cdf_by_load.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


def write_outputs(
    report: dict[str, Any], measured: Sequence[Point], modelled: Sequence[Point], out: Path
) -> dict[str, Path]:
    """calibration.json, report.md and the plots in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "calibration.json", "report": out / "report.md"}
    report["plots"] = [str(p) for p in plot(report, measured, modelled, out)]
    paths["json"].write_text(json.dumps(_jsonable(report), indent=1) + "\n", encoding="utf-8")
    paths["report"].write_text(format_report(report), encoding="utf-8")
    return paths


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
