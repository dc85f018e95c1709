"""The aggregates of an imported log as text: what was read, what was stitched, and one
block per tier."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def _q(stats: Mapping[str, Any]) -> str:
    """``p50/p95/p99 ms (n)``."""
    if not stats.get("n"):
        return "-"
    return f"{_ms(stats['p50'])}/{_ms(stats['p95'])}/{_ms(stats['p99'])} ms (n={stats['n']})"


def format_aggregates(result: Mapping[str, Any]) -> str:
    """A few lines per tier; ``aggregates.json`` has the rest."""
    lines = result["lines"]
    used = sum(n for k, n in lines.items() if k.startswith("used:"))
    skipped = {k.split(":", 1)[1]: n for k, n in lines.items() if k.startswith("skipped:")}
    st = result["stitching"]
    out = [
        f"Read {lines.get('lines', 0)} lines: {used} used, {lines.get('ignored', 0)} other "
        f"Postfix lines, {result['skipped']} skipped"
        + (f" ({', '.join(f'{k} {n}' for k, n in sorted(skipped.items()))})" if skipped else ""),
        f"Log period {result['period']['seconds']:.0f} s; addresses "
        + ("hashed" if result["hashed"] else "kept (--keep-addresses)"),
        f"Messages started in the log: {st['messages']}; stitched end to end "
        f"{st['end_to_end']}, incomplete {st['incomplete']}, recipients refused "
        f"{st['recipients_refused']}; entries without Message-ID {st['no_message_id']}",
        "",
    ]
    for tier, t in result["tiers"].items():
        size = t["size_kb"]
        rate = t["rate_per_s"]
        out += [
            f"{tier} ({', '.join(t['instances'])}): {t['messages']} messages"
            + (f", {rate:.2f}/s" if rate else ""),
            f"  size KB: median {_num(size['p50'])}, p95 {_num(size['p95'])}, "
            f"mean {_num(size['mean'])}",
            f"  delay p50/p95/p99: total {_q(t['delays_s']['total'])}",
            "    " + ", ".join(f"{p} {_q(t['delays_s'][p])}" for p in "abcd"),
            f"  deferred attempts {_pct(t['deferral_rate'])}, bounced {_pct(t['bounce_rate'])}"
            f", rejected {t['rejected_messages'] + t['noqueue_rejects']}"
            + (f", remote MTA {_q(t['remote_mta_s'])}" if t["remote_mta_s"]["n"] else ""),
        ]
    out.append("")
    out.append("Send -> final (from Postfix's delays), p50/p95/p99:")
    for flow, e in result["end_to_end"].items():
        ind = e.get("if_hops_independent") or {}
        out.append(
            f"  {flow}: {_q(e)}; if the hops were independent: p50 {_ms(ind.get('p50'))}, "
            f"p95 {_ms(ind.get('p95'))} ms"
        )
        for hour, h in e["by_hour"].items():
            out.append(f"    {hour} h: {_q(h)}")
    return "\n".join(out)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
