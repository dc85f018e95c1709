"""``mailgate run SCENARIO``: the discrete-event model of a scenario."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mailgate.commands.arguments import (
    Subparsers,
    add_scenario,
    add_workers,
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
        "--replications", type=positive_int, help="independent runs (default: the scenario's)"
    )
    add_workers(p, "replications")
    p.add_argument("--out", default=None, help="output folder (default: results/NAME)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print results.json to stdout too")
    p.add_argument(
        "--report", action="store_true", help="write report.html (one self-contained page) too"
    )
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
    from mailgate.sim.analysis.parallel import executor
    from mailgate.sim.analysis.results_text import clean, summary
    from mailgate.sim.model.simulate import simulate
    from mailgate.sim.scenario.loading import load

    scenario = load(args.scenario, overrides_from(args))
    progress = not args.no_progress and sys.stderr.isatty()
    trace = getattr(args, "trace", None)
    with executor(args.workers, args.scheduler) as ex:
        results = simulate(scenario, seed=args.seed, progress=progress, trace=trace, ex=ex)
    d = clean(results.to_dict())
    out = Path(args.out) if args.out else Path("results") / scenario.scenario.name
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    path.write_text(json.dumps(d, indent=1) + "\n", encoding="utf-8")
    text = summary(d)
    files = [path]
    if args.report:
        from mailgate.sim.analysis.html_report import write_report

        files.append(write_report(d, out / "report.html"))
    if not args.no_plots:
        from mailgate.sim.analysis.plots import write_plots

        files += write_plots(d, out)
    written = "Wrote " + ", ".join(str(p) for p in files)
    if args.json:
        print(text, file=sys.stderr)
        print(written, file=sys.stderr)
        print(json.dumps(d, indent=1))
    else:
        print(text)
        print(written)
    return 0
