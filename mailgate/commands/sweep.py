"""``mailgate sweep SCENARIO --set KEY=V1,V2,...``: what-if grids, every point run by the
model with the same seeds, in parallel."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mailgate.commands.arguments import (
    Subparsers,
    add_report,
    add_scenario,
    add_workers,
    non_negative_int,
    positive_float,
    positive_int,
)
from mailgate.commands.capacity import window


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a what-if grid over scenario keys and tabulate the metrics per point",
        description="Run the model at every combination of the values given with --set "
        "(a full factorial grid), each point with its replications and the same seeds at "
        "every point; print a table of the chosen metrics, write sweep.json and one plot "
        "per metric (against one key, a line per value of the others).",
        epilog="Example: mailgate sweep peak-hour --set gateways.gateway1.connect_timeout_s="
        "3,10,30 --set 'failures.host_down=[],[{host=\"gateway1.0\",start_h=0.25}]'",
    )
    add_scenario(p)
    p.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="KEY=V1,V2,...",
        help="a dotted scenario key (e.g. gateways.gateway1.stages.antivirus.cpu_s, "
        "population.mailboxes, gateways.gateway3.hosts) and its values: TOML values or bare "
        "words, separated by commas outside brackets; repeat for more keys",
    )  # fmt: skip
    p.add_argument(
        "--metric", dest="metrics", action="append", default=[], metavar="NAME",
        help="what to report per point (repeatable): STAT.FLOW[.SPAN] with STAT mean, p50, "
        "p95, p99 or max; slo; util.busiest; bottleneck; multiplier; util.HOST.RESOURCE; "
        "peak.HOST.RESOURCE; count.NAME (default: each SLO's quantile, slo, util.busiest, "
        "bottleneck)",
    )  # fmt: skip
    p.add_argument("--replications", type=positive_int, help="per point (default: the scenario's)")
    add_workers(p, "points and replications")
    p.add_argument("--hours", type=positive_float, help="override scenario.duration_h")
    p.add_argument(
        "--window", type=window, default=None,
        help="run 15 min of warm-up and one hour from this clock hour, or 'peak' (the "
        "busiest hour of the profile) instead of the scenario's own period",
    )  # fmt: skip
    p.add_argument("--seed", type=non_negative_int, help="random seed (default: the scenario's)")
    p.add_argument("--x", metavar="KEY", help="the swept key on the plots' x axis")
    p.add_argument("--out", help="output folder (default: results/NAME-sweep)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    add_report(p)
    p.add_argument("--json", action="store_true", help="print sweep.json to stdout too")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=sweep_command)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """What every point shares: the window, the hours, the replications."""
    from mailgate.sim.analysis.capacity import window_of
    from mailgate.sim.scenario.loading import load

    out: dict[str, Any] = {}
    if args.window is not None:
        out = window_of(load(args.scenario), args.window).overrides()
        del out["scenario.replications"]
    if args.hours:
        out["scenario.duration_h"] = args.hours
    if args.replications:
        out["scenario.replications"] = args.replications
    return out


def _progress(line: str) -> None:
    print(f"  {line}", file=sys.stderr, flush=True)


def sweep_command(args: argparse.Namespace) -> int:
    """``mailgate sweep``: run the grid, print the table, write sweep.json and plots."""
    from mailgate.sim.analysis.parallel import executor
    from mailgate.sim.analysis.results_text import clean
    from mailgate.sim.analysis.sweep import sweep
    from mailgate.sim.analysis.sweep_grid import parse_axes
    from mailgate.sim.analysis.sweep_text import render
    from mailgate.sim.scenario.errors import UserError
    from mailgate.sim.scenario.loading import load

    # a malformed --set or --x fails before anything is loaded or started
    keys = [a.key for a in parse_axes(args.sets)]
    if args.x and args.x not in keys:
        raise UserError(f"--x {args.x}: not a swept key (one of {', '.join(keys)})")
    name = load(args.scenario).scenario.name
    out = Path(args.out) if args.out else Path("results") / f"{name}-sweep"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {out}: cannot create it: {e.strerror}") from None
    overrides = _overrides(args)
    log = None if args.quiet else _progress
    with executor(args.workers, args.scheduler) as ex:
        d = sweep(args.scenario, args.sets, ex, overrides=overrides, metrics=args.metrics,
                  seed=args.seed, log=log)  # fmt: skip
    d = clean(d)
    path = out / "sweep.json"
    path.write_text(json.dumps(d, indent=1) + "\n", encoding="utf-8")
    files = [path]
    if not args.no_plots:
        from mailgate.sim.analysis.sweep_plot import write_sweep_plots

        files += write_sweep_plots(d, out, args.x)
    if args.report:
        from mailgate.sim.analysis.html_report import write_report

        files.append(write_report(d, out / "report.html"))
    written = "Wrote " + ", ".join(str(f) for f in files)
    if args.json:
        print(written, file=sys.stderr)
        print(json.dumps(d, indent=1))
    else:
        print(render(d))
        print(written)
    return 0
