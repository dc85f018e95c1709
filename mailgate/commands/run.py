"""``mailgate run SCENARIO``: the discrete-event model of a scenario."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


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
    from mailgate.sim.analysis.results_text import clean, summary
    from mailgate.sim.model.simulate import simulate
    from mailgate.sim.scenario.loading import load

    scenario = load(args.scenario, overrides_from(args))
    progress = not args.no_progress and sys.stderr.isatty()
    trace = getattr(args, "trace", None)
    results = simulate(scenario, seed=args.seed, progress=progress, trace=trace)
    d = clean(results.to_dict())
    out = Path(args.out) if args.out else Path("results") / scenario.scenario.name
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    path.write_text(json.dumps(d, indent=1) + "\n", encoding="utf-8")
    text = summary(d)
    files = [path]
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
