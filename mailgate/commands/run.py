"""``mailgate run SCENARIO``: the discrete-event model of a scenario."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mailgate.commands.arguments import (
    Subparsers,
    add_report,
    add_scenario,
    add_workers,
    clock_hour,
    non_negative_int,
    positive_float,
    positive_int,
)


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "run",
        help="run the discrete-event model of a scenario",
        description="Simulate the scenario and report latency per flow, host utilisation, "
        "queues, counts, the SLO verdict and the bottleneck; writes results.json and plots.",
    )
    add_scenario(p)
    p.add_argument("--seed", type=non_negative_int, help="random seed (default: the scenario's)")
    p.add_argument("--mailboxes", type=positive_int, help="override population.mailboxes")
    p.add_argument("--hours", type=positive_float, help="override scenario.duration_h")
    p.add_argument(
        "--start-hour", type=clock_hour, metavar="H",
        help="clock hour the measured window starts (the warm-up runs before it)",
    )  # fmt: skip
    p.add_argument(
        "--window", choices=("peak",),
        help="peak: measure the diurnal profile's busiest hour (one hour unless --hours)",
    )  # fmt: skip
    p.add_argument(
        "--replications", type=positive_int, help="independent runs (default: the scenario's)"
    )
    add_workers(p, "replications")
    p.add_argument("--out", default=None, help="output folder (default: results/NAME)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print results.json to stdout too")
    add_report(p)
    p.add_argument(
        "--trace",
        metavar="FILE",
        help="write every HopRecord to FILE (JSON lines) and MessageRecords to "
        "FILE's stem + .messages.jsonl (slow; for calibration tests)",
    )
    p.set_defaults(func=run_command)


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """Dotted scenario overrides from the command line."""
    out: dict[str, Any] = {}
    if getattr(args, "mailboxes", None):
        out["population.mailboxes"] = args.mailboxes
    if getattr(args, "hours", None):
        out["scenario.duration_h"] = args.hours
    if getattr(args, "replications", None):
        out["scenario.replications"] = args.replications
    return out


def run_command(args: argparse.Namespace) -> int:
    """``mailgate run``: simulate, print the summary, write results.json and plots."""
    from mailgate import api
    from mailgate.sim.analysis.run_window import warnings, window_overrides

    start, window = getattr(args, "start_hour", None), getattr(args, "window", None)
    overrides = window_overrides(args.scenario, overrides_from(args), start_hour=start,
                                 window=window)  # fmt: skip
    scenario = api.load(args.scenario, **overrides)
    for line in warnings(scenario):
        print(f"warning: {line}", file=sys.stderr)
    result = api.run(
        scenario,
        seed=args.seed,
        out=args.out or Path("results") / scenario.scenario.name,
        plots=not args.no_plots,
        report=args.report,
        progress=not args.no_progress and sys.stderr.isatty(),
        trace=getattr(args, "trace", None),
        workers=args.workers,
        scheduler=args.scheduler,
    )
    written = "Wrote " + ", ".join(str(p) for p in result.files)
    if args.json:
        print(result.summary, file=sys.stderr)
        print(written, file=sys.stderr)
        print(result.json)
    else:
        print(result.summary)
        print(written)
    return 0
