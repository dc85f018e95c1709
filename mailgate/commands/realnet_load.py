"""``mailgate realnet load``: hold an open-loop load on the real chain and report.

Its parser is added by ``commands.realnet`` (an action of ``realnet``). Argument
handling, the live progress line, printing and the exit code are here; the load
runner (``realnet.load.loadrun``) does the work.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any

from mailgate.commands.arguments import add_scenario, positive_float, positive_int
from mailgate.commands.testbed_access import reach_chain
from mailgate.sim.scenario.errors import UserError

if TYPE_CHECKING:
    from mailgate.realnet.load.loadrun import LoadReport

#: Bounds: a load command must end (the soak test of #13 is 10 minutes).
MAX_DURATION_S = 3600.0
MAX_MESSAGES = 200_000


def add_load_parser(rsub: Any) -> None:
    p = rsub.add_parser(
        "load",
        help="hold an open-loop load on the real chain (optionally killing hosts) and report",
        description="Offer mail at a fixed rate for a set time to a running testbed (or one "
        "started for the run), optionally SIGKILL hosts along the way, and report offered vs "
        "completed throughput, send → mailbox percentiles, SMTP errors by code, body "
        "integrity, duplicates, undelivered messages and each process's CPU and memory. Exit "
        "1 if an accepted message was not delivered by the end of the drain or was corrupted.",
    )
    add_scenario(p)
    p.add_argument("--rate", type=positive_float, required=True, help="messages per second")
    p.add_argument(
        "--duration", type=positive_float, required=True, help=f"seconds (≤ {MAX_DURATION_S:g})"
    )
    p.add_argument(
        "--kill",
        action="append",
        default=[],
        metavar="HOST@T",
        help="SIGKILL HOST T seconds into the load (repeatable); the supervisor restarts it",
    )
    p.add_argument(
        "--drain", type=positive_float, default=60.0, help="seconds to wait for the last mail"
    )
    p.add_argument(
        "--max-messages", type=positive_int, default=20_000, help="bound on messages sent"
    )
    p.add_argument(
        "--unknown-share",
        type=float,
        default=0.0,
        help="share of inbound mail sent to users we do not have (Gateway0 must refuse: 550)",
    )
    p.add_argument(
        "--tricks-share",
        type=float,
        default=0.0,
        help="share of inbound mail with sender-specified routing (user%%host@ours, …): 550",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--use-running", action="store_true", help="use a system already up")
    p.add_argument("--state-dir", help="the running testbed's (or the new one's) state dir")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=load_command)


def load_command(args: argparse.Namespace) -> int:
    """``mailgate realnet load SCENARIO --rate R --duration S [--kill HOST@T] …``."""
    import asyncio

    from mailgate.realnet.load.loadgen import LoadSpec
    from mailgate.realnet.load.loadrun import Kill, run_held_load
    from mailgate.realnet.load.mailclients import Auth
    from mailgate.realnet.testbed.service_manager import CannotRestart
    from mailgate.sim.scenario.loading import load

    if args.duration > MAX_DURATION_S:
        raise UserError(f"--duration: at most {MAX_DURATION_S:g} s, got {args.duration:g}")
    for flag, share in (
        ("--unknown-share", args.unknown_share),
        ("--tricks-share", args.tricks_share),
    ):
        if not 0.0 <= share <= 1.0:
            raise UserError(f"{flag}: a share between 0 and 1, got {share:g}")
    if args.unknown_share + args.tricks_share > 1.0:
        raise UserError("--unknown-share + --tricks-share: at most 1 together")
    scenario = load(args.scenario)
    kills = []
    for text in args.kill:
        try:
            kill = Kill.parse(text)
        except ValueError as e:
            raise UserError(f"--kill: {e}") from None
        if kill.host not in scenario.host_ids:
            raise UserError(f"--kill: unknown host {kill.host!r}; one of {scenario.host_ids}")
        kills.append(kill)
    users = scenario.realnet.users
    if not users:
        raise UserError(f"{args.scenario}: no [[realnet.users]] to submit mail and read POP as")
    name = users[0].name
    spec = LoadSpec(
        rate=args.rate,
        duration_s=args.duration,
        user=Auth(name, os.environ.get("MAILGATE_PROBE_PASSWORD", name)),
        max_messages=min(args.max_messages, MAX_MESSAGES),
        seed=args.seed,
        pop_interval_s=1.0,
        drain_s=args.drain,
        unknown_share=args.unknown_share,
        tricks_share=args.tricks_share,
    )
    with reach_chain(args, scenario, log=lambda line: _progress_end() or _err(line)) as chain:
        try:
            report = asyncio.run(
                run_held_load(
                    scenario,
                    chain.state,
                    chain.pids,
                    spec,
                    kills=tuple(kills),
                    observe=_progress,
                    tick=chain.manager.poll if chain.manager else None,
                )
            )
        except CannotRestart as e:
            _progress_end()
            raise UserError(str(e)) from None
    _progress_end()
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        print(format_load_report(report))
    return 0 if report.ok else 1


_LIVE = {"on": False}


def _progress(s: dict[str, float]) -> None:
    """The live line on stderr (rewritten in place on a terminal)."""
    line = (
        f"{s['elapsed_s']:6.1f} s  sent {int(s['started'])}/{int(s['planned'])}  "
        f"accepted {int(s['accepted'])}  errors {int(s['errors'])}  "
        f"retrieved {int(s['retrieved'])}  duplicates {int(s['duplicates'])}  "
        f"corrupt {int(s['corrupt'])}"
    )
    if sys.stderr.isatty():
        print(f"\r{line}\x1b[K", end="", file=sys.stderr, flush=True)
        _LIVE["on"] = True
    else:
        print(line, file=sys.stderr, flush=True)


def _progress_end() -> None:
    if _LIVE["on"]:
        print(file=sys.stderr)
        _LIVE["on"] = False


def _err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def format_load_report(r: LoadReport) -> str:
    """The report as ``realnet load`` prints it."""
    lines = [
        f"offered {r.offered} messages at {r.rate:g}/s for {r.duration_s:g} s "
        f"(wall {r.wall_s:.1f} s with the drain)",
        f"  accepted {r.accepted} ({r.accepted_rate:.2f}/s), delivered {r.delivered} "
        f"(completed {r.completed_rate:.2f}/s), still queued {len(r.queued)}, lost {len(r.lost)}, "
        f"duplicates {r.duplicates}",
        f"  body integrity (SHA-256 of each POP-retrieved body; the remote sinks keep no "
        f"bodies): {r.intact} intact, {len(r.corrupt)} corrupt"
        + (f" ({', '.join(r.corrupt[:5])})" if r.corrupt else ""),
    ]
    if r.queued:
        where = Counter(r.queued.values())
        lines.append(
            "  still queued after the drain: "
            + ", ".join(f"{n} in {host}'s spool" for host, n in sorted(where.items()))
        )
    if r.lost:
        lines.append(f"  lost: {', '.join(r.lost[:10])}" + (" …" if len(r.lost) > 10 else ""))
    for span, rows in r.latency.items():
        for flow, q in rows.items():
            lines.append(
                f"  {span.replace('_', ' ')} ({flow}, n={q['n']}): p50 {q['p50'] * 1e3:.0f} ms, "
                f"p95 {q['p95'] * 1e3:.0f} ms, p99 {q['p99'] * 1e3:.0f} ms"
            )
    lines.append(
        "  errors: " + (", ".join(f"{k} ×{n}" for k, n in r.errors.items()) if r.errors else "none")
    )
    for k in r.kills:
        lines.append(f"  killed {k['host']} (pid {k['pid']}) at {k['at_s']:g} s")
    lines.append(f"  {'process':<12}{'pid':>8}{'cpu s':>9}{'rss MB':>9}   at end")
    for host, p in r.processes.items():
        a, b = p["start"], p["end"]
        start = f"{a['pid']:>8}{a['cpu_s']:>9.2f}{a['rss_kb'] / 1024:>9.1f}" if a else " " * 26
        end = f"pid {b['pid']} cpu {b['cpu_s']:.2f} s rss {b['rss_kb'] / 1024:.1f} MB" if b else "-"
        lines.append(f"  {host:<12}{start}   {end}" + ("  (restarted)" if p["restarted"] else ""))
    lines += format_memory(r.memory)
    lines += [f"  warning: {w}" for w in r.warnings]
    return "\n".join(lines)


def format_memory(memory: dict[str, dict[str, Any]]) -> list[str]:
    """RSS after warm-up → end per process, growth, and the ones over the limit."""
    lines = ["  memory (RSS after warm-up from each process's start or restart → end):"]
    for host, m in memory.items():
        if m["growth"] is None:
            lines.append(f"    {host:<12} no baseline (restarted too late or gone)")
            continue
        lines.append(
            f"    {host:<12} {m['base_rss_kb'] / 1024:7.1f} MB (at {m['base_at_s']:.0f} s) → "
            f"{m['end_rss_kb'] / 1024:7.1f} MB  {m['growth'] * 100:+6.1f} %"
            + ("  OVER 10 %" if m["flagged"] else "")
        )
    return lines
