"""Why the model departs where a target is missed: the physical effect it lacks, with the
measurement of this calibration that shows it (the report's "Why" section).

Each miss is put in one of the shapes the testbed shows (docs/calibration.md, "Where
the model still departs"):

- **Waiting for a core.** The model is faster while its hosts' CPU agrees with /proc:
  the demand is right and the waiting is short. The model shares the cores perfectly;
  the testbed's processes wake up many times per message onto per-CPU run queues.
- **Big messages.** A p95 miss while the out-of-shadow p95 (small messages that
  overlapped no message over 200 KB) agrees: the miss is how big messages delay others.
- **Few samples.** A quantile of fewer than ``FEW`` messages, whose repeats disagree
  by more than the tolerance among themselves.
- **Saturation.** Where each ramp fell behind and how many messages each completed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mailgate.calibration.compare import SATURATION_TOLERANCE, most_off
from mailgate.calibration.points import OUTSIDE_MODEL

#: fewer messages than this make a quantile's repeats the first suspect
FEW = 100
#: the hosts' CPU "agrees" within this share (the demand is right)
CPU_AGREES = 0.15


def closing_notes(report: Mapping[str, Any]) -> list[str]:
    """One note per load with a miss, and for the saturation, from the measurements."""
    notes = []
    loads = sorted(report["loads"], key=lambda level: level["measured"]["rate"])
    fit_load = loads[0]["measured"]
    burner = ((report.get("background") or {}).get("burner") or {}).get("cores_measured", 0.0)
    # other processes beyond a burner that was asked for: interference, not the experiment
    if (fit_load.get("foreign_busy_cores") or 0.0) - burner > 0.25:
        notes.append(
            f"the fit ({fit_load['rate']:g} msg/s) ran while other processes used "
            f"{fit_load['foreign_busy_cores']:.2f} cores: its CPU and waits include their "
            "interference; calibrate on a machine the testbed has to itself."
        )
    rows = report["latency"]
    for level in loads:
        rate = level["measured"]["rate"]
        misses = [r for r in rows if r["rate"] == rate and r["ok"] is False]
        for r in misses:
            notes.append(
                f"{rate:g} msg/s, {r['flow']} {r['quantile']}: "
                + _why(r, level, loads, rows, report)
            )
    sat = report["saturation"]
    if sat["relative_error"] is not None and abs(sat["relative_error"]) > SATURATION_TOLERANCE:
        notes.append("saturation: " + _why_saturation(sat))
    if not sat["same_first_host"]:
        notes.append(
            "first to saturate: the model's per-host CPU (table above) ranks the hosts "
            "differently from /proc."
        )
    return notes


def _why(r: Mapping[str, Any], level: Mapping[str, Any], loads: list[Any], rows: list[Any],
         report: Mapping[str, Any]) -> str:  # fmt: skip
    m, d = level["measured"], level["modelled"]
    spread = r.get("spread") or {}
    if r["n"] < FEW and spread.get("min") and spread["max"] / spread["min"] - 1 > 0.15:
        return (
            f"{r['n']} messages only, and its {spread['n']} repeats alone range "
            f"{spread['min'] * 1e3:.1f}–{spread['max'] * 1e3:.1f} ms: too few to tell the "
            "model's error from the sample's."
        )
    shadow = _row(rows, r["rate"], "out_of_shadow", r["flow"], r["quantile"])
    if r["quantile"] == "p95" and shadow and abs(shadow["relative_error"] or 1) <= 0.15:
        return (
            f"small messages that overlapped no message over 200 KB agree (p95 measured "
            f"{shadow['measured_s'] * 1e3:.1f} ms, modelled {shadow['modelled_s'] * 1e3:.1f} ms): "
            "the miss is how big messages delay the others. The model spreads a big "
            "message's CPU over its host's share of the cores; the testbed parses DATA on "
            "the event loop and signs with the GIL held (measured: 56 ms on the loop for a "
            "2.5 MB hop, up to 403 ms of signing for the biggest, docs/calibration.md), and "
            "0–2 such messages in a 10 s window decide a p95."
        )
    hosts_m = sum(u for h, u in m["utilisation"].items() if h not in OUTSIDE_MODEL)
    # the model carries the hosts' constant burn as background load on the machine
    hosts_d = sum(d["utilisation"].values()) + (report.get("background") or {}).get(
        "hosts_constant_cores", 0.0
    )
    agrees = hosts_m > 0 and abs(hosts_d / hosts_m - 1) <= CPU_AGREES
    if (r["relative_error"] or 0) < 0 and agrees:
        low = _row(rows, loads[0]["measured"]["rate"], "in_mailbox", r["flow"], r["quantile"])
        grew = ""
        if low and low is not r:
            was_m, was_d = low["measured_s"], low["modelled_s"]
            grew = (
                f" Measured {r['quantile']} grew {(r['measured_s'] - was_m) * 1e3:.1f} ms since "
                f"the lowest load, the model's {(r['modelled_s'] - was_d) * 1e3:.1f} ms."
            )
        queue = m.get("run_queue_per_message_s")
        queue_low = loads[0]["measured"].get("run_queue_per_message_s")
        if queue is not None and queue_low is not None:
            grew += (
                f" The hosts' processes waited for a core {queue * 1e3:.1f} ms per message "
                f"here against {queue_low * 1e3:.1f} ms at the lowest load (their run-queue "
                "time, /proc/PID/task/*/schedstat)."
            )
        return (
            f"the hosts' CPU agrees (model {hosts_d:.2f}, /proc {hosts_m:.2f} cores), so the "
            f"demand is right and the waiting is short.{grew} The model shares the cores "
            "perfectly (processor sharing); the testbed's processes wake up about 90 times "
            "per message onto per-CPU run queues and wait for a core at each wake-up, the "
            "other CPU often idle meanwhile (measured with schedstat and ftrace: 73–236 µs "
            "per wake-up, the other CPU idle during 37–78 % of that waiting; "
            "docs/calibration.md). Wake-ups and per-core queues are not in the fair model."
        )
    g = most_off(report["departures"].get(f"{r['rate']:g}") or [], r["relative_error"] or 1.0)
    where = (
        f"; the largest gap is {g['tier']}/{g['stage']} (measured {g['measured_s'] * 1e3:.1f} "
        f"ms, modelled {g['modelled_s'] * 1e3:.1f} ms)"
        if g
        else ""
    )
    if not agrees:
        return (
            f"the hosts' CPU does not agree (model {hosts_d:.2f}, /proc {hosts_m:.2f} cores): "
            f"the fitted costs are off at this load{where}."
        )
    return f"the hosts' CPU agrees, the model is slower: its fitted waits are off{where}."


def _why_saturation(sat: Mapping[str, Any]) -> str:
    """Where each ramp fell behind: offered, completed share, p95."""
    sides = []
    for side in ("measured", "modelled"):
        steps = [s for s in sat[side].get("steps", []) if "rate" in s]
        failed = [s for s in steps if s.get("lagging") or s.get("exploded")]
        if not failed:
            if steps:
                top = max(steps, key=lambda s: s["rate"])
                sides.append(
                    f"the {side} ramp kept up with every step, up to {top['rate']:.1f} msg/s"
                )
            continue
        s = min(failed, key=lambda s: s["rate"])
        done = s["throughput"] / s["rate"] if s["rate"] else 0.0
        p95 = s.get("p95_in_mailbox_s")
        sides.append(
            f"the {side} ramp first failed at {s['rate']:.1f} msg/s offered ({done:.0%} "
            f"completed within the step and its grace, p95 "
            f"{'—' if p95 is None else f'{p95:.2f} s'})"
        )
    return (
        "; ".join(sides)
        + ". Both count completions the same way; where the hosts' CPU agrees (table above) "
        "the capacity is the same and the difference is how each falls behind past it: the "
        "model shares the cores among every message in progress, so all slow together and "
        "fewer finish within the step's 1 s grace."
    )


def _row(rows: list[Any], rate: float, span: str, flow: str, q: str) -> Mapping[str, Any] | None:
    for r in rows:
        if r["rate"] == rate and r["span"] == span and r["flow"] == flow and r["quantile"] == q:
            return r
    return None
