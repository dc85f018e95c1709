"""Figures of several replications as one: shared machines and POP.

Counts (messages generated, delivered, ...) and POP totals (sessions, messages
retrieved) are *summed* over replications, like the outcome counts; levels (a
machine's utilisation, the number of polling mailboxes) are *averaged*, with a
Student-t 95 % interval of the mean across replications when there are several.
"""

from __future__ import annotations

from typing import Any

from mailgate.sim.model.stats import confidence_interval


def machines(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """Per shared machine: cores, mean utilisation (with several replications, its 95 %
    half-width ``mean_ci95``), the series averaged bucket by bucket."""
    out: dict[str, Any] = {}
    for name, m in reps[0]["machines"].items():
        runs = [r["machines"][name] for r in reps]
        mean, half = confidence_interval([x["mean"] for x in runs])
        series = zip(*(x["series"] for x in runs), strict=True)
        out[name] = {"cores": m["cores"], "mean": mean}
        if len(reps) > 1:
            out[name]["mean_ci95"] = half
        out[name]["series"] = [sum(v) / len(v) for v in series]
    return out


def pop(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """POP sessions and retrievals summed over replications; polling mailboxes averaged."""
    return {
        "sessions": sum(r["pop"]["sessions"] for r in reps),
        "retrievals": sum(r["pop"]["retrievals"] for r in reps),
        "active_mailboxes": round(sum(r["pop"]["active_mailboxes"] for r in reps) / len(reps)),
    }
