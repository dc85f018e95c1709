"""``mailgate realnet replay``: the scenario's failures applied to the real chain under
a held load, measured against the model.

Its parser is added by ``commands.realnet``. Argument handling, printing, the
exit code and ``replay.json`` are here; the measured side is
``realnet.load.replay``, the model and the comparison ``calibration.replay``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from mailgate.commands.arguments import add_scenario, positive_float
from mailgate.commands.testbed_access import reach_chain
from mailgate.sim.scenario.errors import UserError

MAX_DURATION_S = 3600.0
#: how often the spools are counted (the model's queues are sampled as often)
SAMPLE_S = 0.25


def add_replay_parser(rsub: Any) -> None:
    p = rsub.add_parser(
        "replay",
        help="apply the scenario's failures to the real chain under load; compare with the model",
        description="Hold an open-loop load on the real chain while the scenario's "
        "[failures] happen at their times (hours × realnet.time_scale): a host down "
        "(SIGKILL if it refuses, SIGSTOP if it is silent), a remote site down, a slow DNS. "
        "Report the deferred and queued mail over time, the drain time, the latency of "
        "caught and not-caught mail and the audit (0 lost), and the model's figures for "
        "the same run side by side. Exit 1 if a message was lost or not delivered.",
    )
    add_scenario(p)
    p.add_argument("--rate", type=positive_float, default=5.0, help="messages per second")
    p.add_argument(
        "--duration",
        type=positive_float,
        help="seconds of load (default: until the last failure ends, plus two maximal "
        "backoffs and 5 s)",
    )
    p.add_argument(
        "--settle", type=positive_float, default=60.0, help="seconds to wait for the queues"
    )
    p.add_argument("--out", help="folder for replay.json")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--use-running", action="store_true", help="use a system already up")
    p.add_argument("--state-dir", help="the running testbed's (or the new one's) state dir")
    p.add_argument("--json", action="store_true", help="print replay.json's content")
    p.set_defaults(func=replay_command)


def replay_command(args: argparse.Namespace) -> int:
    """``mailgate realnet replay SCENARIO [--rate R] [--duration S] [--out DIR]``."""
    import asyncio

    from mailgate.calibration.replay import model_replay, side_by_side
    from mailgate.realnet.load.loadgen import LoadSpec
    from mailgate.realnet.load.mailclients import Auth
    from mailgate.realnet.load.replay import run_replay
    from mailgate.realnet.testbed.faults import FOREVER_S, fault_windows
    from mailgate.realnet.testbed.service_manager import CannotRestart
    from mailgate.sim.scenario.loading import load

    scenario = load(args.scenario)
    windows = fault_windows(scenario)
    if not windows:
        raise UserError(f"{args.scenario}: no [failures] to replay")
    if not scenario.realnet.users:
        raise UserError(f"{args.scenario}: no [[realnet.users]] to submit mail and read POP as")
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not out.is_dir():
        raise UserError(f"--out: {out} is not a folder")
    # the last moment something changes: a window's end, or the start of one that never ends
    last = max(w.end_s if w.end_s < FOREVER_S else w.start_s for w in windows)
    backoff = scenario.retry.maximal_backoff_s * scenario.realnet.time_scale
    duration = args.duration or last + 2 * backoff + 5.0
    if duration > MAX_DURATION_S:
        raise UserError(
            f"--duration: at most {MAX_DURATION_S:g} s, got {duration:g} (lower "
            "realnet.time_scale or give --duration)"
        )
    name = scenario.realnet.users[0].name
    spec = LoadSpec(
        rate=args.rate,
        duration_s=duration,
        user=Auth(name, os.environ.get("MAILGATE_PROBE_PASSWORD", name)),
        max_messages=20_000,
        seed=args.seed,
        pop_interval_s=1.0,
        drain_s=args.settle,
    )
    with reach_chain(args, scenario, log=lambda line: print(line, flush=True)) as chain:
        try:
            measured = asyncio.run(
                run_replay(
                    scenario,
                    chain.state,
                    chain.pids,
                    spec,
                    windows,
                    hold=chain.manager.hold if chain.manager else None,
                    tick=chain.manager.poll if chain.manager else None,
                    sample_s=SAMPLE_S,
                    settle_s=args.settle,
                )
            )
        except CannotRestart as e:
            raise UserError(str(e)) from None
    modelled = model_replay(args.scenario, args.rate, duration, sample_s=SAMPLE_S, seed=args.seed)
    rows = side_by_side(measured, modelled)
    notes = []
    if args.use_running and any(w.kind == "host_down" and w.refuses for w in windows):
        notes.append(
            "a refusing host_down on a running testbed: its supervisor restarts the "
            "host about 1 s after the kill, not at the end of the window"
        )
    notes += [
        f"{w.kind} {w.what} starts after the load ends" for w in windows if w.start_s >= duration
    ]
    result = {
        "scenario": str(args.scenario),
        "rate": args.rate,
        "duration_s": duration,
        "time_scale": scenario.realnet.time_scale,
        "measured": measured,
        "modelled": modelled,
        "comparison": rows,
        "notes": notes,
    }
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "replay.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result) if args.json else format_replay(result))
    ok = not measured["audit"]["lost"] and not measured["undelivered"] and not measured["corrupt"]
    return 0 if ok else 1


def format_replay(r: dict[str, Any]) -> str:
    """What ``realnet replay`` prints."""
    from mailgate.calibration.replay import table

    m = r["measured"]
    lines = [
        f"replayed {r['scenario']} at {r['rate']:g}/s for {r['duration_s']:g} s "
        f"(time scale {r['time_scale']:g})"
    ]
    for w in m["windows"]:
        lines.append(f"  {w['kind']} {w['what']}: {w['start_s']:.1f}–{w['end_s']:.1f} s")
    lines.append(
        f"  offered {m['offered']}, accepted {m['accepted']}, delivered {m['delivered']}, "
        f"undelivered {len(m['undelivered'])}, duplicates {m['duplicates']}, "
        f"corrupt {len(m['corrupt'])}"
    )
    a = m["audit"]
    lines.append(
        f"  audit: {a['accepted']} acceptances, {a['in_spool']} in a spool, {a['lost']} lost"
    )
    lines.append(table(r["comparison"]))
    lines += [f"  note: {n}" for n in r["notes"]]
    return "\n".join(lines)
