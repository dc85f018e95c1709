"""``mailgate capacity SCENARIO``: the largest number of mailboxes for which every SLO
holds in the peak hour, searched with the model (and, with --n-1, with one host of each
gateway down)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mailgate.commands.arguments import (
    Subparsers,
    add_report,
    add_scenario,
    add_workers,
    non_negative_int,
    positive_int,
)


def window(text: str) -> str | float:
    """``peak`` or a clock hour 0-24 (where the measured hour starts)."""
    if text == "peak":
        return text
    try:
        hour = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'peak' or a clock hour 0-24, got {text}") from None
    if not 0 <= hour < 24:
        raise argparse.ArgumentTypeError(f"'peak' or a clock hour 0-24, got {text}")
    return hour


def tolerance(text: str) -> float:
    """A share between 0 and 1 (exclusive)."""
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "capacity",
        help="search the most mailboxes for which every SLO holds in the peak hour",
        description="Run the model at today's load and at 80 % and 120 % of it, guess "
        "saturation from the busiest resource, then bisect on mailboxes with runs of the "
        "peak hour (same seeds at every point) until the capacity is known within "
        "--tolerance. At each point replications are added until the SLO verdict is decided "
        "at 95 % or --max-replications is reached. Writes capacity.json and capacity.png.",
    )
    add_scenario(p)
    p.add_argument(
        "--window", type=window, default="peak",
        help="the measured hour: 'peak' (busiest hour of the profile, default) or its "
        "start as a clock hour; 15 min of warm-up run before it",
    )  # fmt: skip
    add_workers(p, "runs")
    p.add_argument(
        "--n-1", dest="n_minus_1", nargs="?", const="", default=None, metavar="GATEWAY,...",
        help="also search with host 0 of each gateway (or of the gateways named) down for "
        "the whole window",
    )  # fmt: skip
    p.add_argument(
        "--max-replications", type=positive_int, default=6,
        help="replications per point at most (default 6)",
    )  # fmt: skip
    p.add_argument(
        "--tolerance", type=tolerance, default=0.05,
        help="stop bisecting when the interval is narrower than this share (default 0.05)",
    )  # fmt: skip
    p.add_argument("--seed", type=non_negative_int, help="first seed (default: the scenario's)")
    p.add_argument("--out", help="output folder (default: results/NAME-capacity)")
    p.add_argument("--no-plots", action="store_true", help="skip capacity.png")
    add_report(p)
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=capacity_command)


def _gateways(text: str | None) -> bool | list[str]:
    """``--n-1`` alone: every gateway; ``--n-1 gateway1,gateway3``: those."""
    if text is None:
        return False
    names = [name.strip() for name in text.split(",") if name.strip()]
    return names or True


def _progress(line: str) -> None:
    print(f"  {line}", file=sys.stderr, flush=True)


def capacity_command(args: argparse.Namespace) -> int:
    """``mailgate capacity``: search, print, write capacity.json (and capacity.png)."""
    from mailgate import api

    name = api.load(args.scenario).scenario.name
    result = api.capacity(
        args.scenario,
        window=args.window,
        seed=args.seed,
        max_replications=args.max_replications,
        tolerance=args.tolerance,
        n_minus_1=_gateways(args.n_minus_1),
        workers=args.workers,
        scheduler=args.scheduler,
        out=args.out or Path("results") / f"{name}-capacity",
        plots=not args.no_plots,
        report=args.report,
        log=None if args.quiet else _progress,
    )
    written = "Wrote " + ", ".join(str(f) for f in result.files)
    if args.json:
        print(written, file=sys.stderr)
        print(result.json)
    else:
        print(result.summary)
        print(written)
    return 0
