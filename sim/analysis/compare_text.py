"""The terminal text of a comparison (run_compare.compare): latency, utilisation,
counts, SLO verdicts, the bottleneck and the verdict line."""

from __future__ import annotations

from typing import Any

from mailgate.sim.analysis.formatting import percent, seconds

SPAN_NAMES = {
    "accepted_to_mailbox": "accepted→mailbox",
    "sent_to_retrieved": "sent→retrieved",
    "sent_to_remote": "sent→remote MX",
    "sent_to_accepted": "sent→accepted",
}

# Utilisation rows where both runs used less than this are left out of the text (all rows
# are in --json): a host idle in both runs says nothing.
SHOWN_UTILISATION = 0.001


def _change(x: float | None) -> str:
    return "-" if x is None else ("0" if x == 0 else f"{x * 100:+.1f}%")


def _mark(row: dict[str, Any]) -> str:
    return row["status"] + (" — REGRESSION" if row["regression"] else "")


def _interval(ci: Any) -> str:
    return f"[{seconds(ci[0])}, {seconds(ci[1])}]" if ci else ""


def _run(side: dict[str, Any]) -> str:
    reps = side["replications"]
    return (
        f"{side['label']} ({side['name']}, seed {side['seed']}, {side['mailboxes']:,} mailboxes, "
        f"{side['hours']:g} h, {reps} replication{'s' if reps > 1 else ''})"
    )


def render(c: dict[str, Any]) -> str:
    """The comparison as text."""
    lines: list[str] = []
    add = lines.append
    add(
        f"mailgate compare, tolerance {c['tolerance'] * 100:g} %, Holm-corrected tests at "
        f"{c['alpha'] * 100:g} %"
    )
    add(f"  base: {_run(c['base'])}")
    add(f"  new:  {_run(c['new'])}")
    for note in c["notes"]:
        add(f"  note: {note}")
    add("")
    add("Latency (95% interval: of the replications' p95 when both runs have replications,")
    add("otherwise the binomial interval of the quantile from the histogram)")
    add(f"  {'flow':9} {'span':16} {'q':3} {'base':>9} {'interval':22} {'new':>9} "
        f"{'interval':22} {'change':>8}  verdict")  # fmt: skip
    for r in c["latency"]:
        add(
            f"  {r['flow']:9} {SPAN_NAMES.get(r['span'], r['span']):16} {r['quantile']:3} "
            f"{seconds(r['base']):>9} {_interval(r['base_ci']):22} {seconds(r['new']):>9} "
            f"{_interval(r['new_ci']):22} {_change(r['change']):>8}  {_mark(r)}"
        )
    add("")
    add("Utilisation, mean over the run (paired t-test on the buckets of the day, or Welch's")
    add("t-test on the replications when both runs have them; hosts idle in both left out)")
    add(f"  {'host':12} {'resource':9} {'base':>8} {'new':>8} {'change':>8}  verdict")
    hidden = 0
    for r in c["utilisation"]:
        if max(r["base"] or 0, r["new"] or 0) < SHOWN_UTILISATION and not r["regression"]:
            hidden += 1
            continue
        add(
            f"  {r['host']:12} {r['resource']:9} {percent(r['base'], 2):>8} "
            f"{percent(r['new'], 2):>8} {_change(r['change']):>8}  {_mark(r)}"
        )
    if hidden:
        add(f"  ({hidden} host resources below {percent(SHOWN_UTILISATION)} in both runs)")
    add("")
    add("Counts (exact binomial test on the two runs' counts; change per mailbox-hour)")
    add(f"  {'count':12} {'base':>10} {'new':>10} {'change':>8}  verdict")
    for r in c["counts"]:
        base = "-" if r["base"] is None else f"{r['base']:,}"
        new = "-" if r["new"] is None else f"{r['new']:,}"
        add(f"  {r['count']:12} {base:>10} {new:>10} {_change(r['change']):>8}  {_mark(r)}")
    add("")
    add("SLO")
    for r in c["slo"]:
        fmt = seconds if r["seconds"] else (lambda x: percent(x, 3))
        verdict = {True: "PASS", False: "FAIL", None: "-"}
        add(
            f"  {r['name']:24} base {verdict[r['base_ok']]} {fmt(r['base']):>9}   "
            f"new {verdict[r['new_ok']]} {fmt(r['new']):>9}"
            + ("   — REGRESSION" if r["regression"] else "")
        )
    b = c["bottleneck"]
    add("")
    if b["base"] or b["new"]:

        def where(x: dict[str, Any] | None) -> str:
            if not x:
                return "-"
            return f"{x['host']} {x['resource']} ({x['multiplier']:.1f}× headroom)"

        moved = "; it moved" if b["moved"] else ""
        headroom = b["headroom_change"]
        change = f"; headroom {_change(headroom)}" if headroom else ""
        add(f"Bottleneck: base {where(b['base'])}; new {where(b['new'])}{moved}{change}")
        add("")
    if c["regressions"]:
        add(f"Verdict: {len(c['regressions'])} significant regression(s) beyond the tolerance:")
        for what in c["regressions"]:
            add(f"  {what}")
    else:
        add("Verdict: no significant regression")
    return "\n".join(lines)
