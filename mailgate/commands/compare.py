"""``mailgate compare BASE NEW``: two model runs side by side, with a regression exit code."""

from __future__ import annotations

import argparse

from mailgate.commands.arguments import Subparsers, positive_float


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "compare",
        help="two model runs side by side; exit 4 on a significant regression",
        description="Compare two results folders (or results.json files) of 'mailgate run': "
        "latency p50/p95/p99 per flow and span with 95%% intervals, utilisation per host, "
        "counts, SLO verdicts and the bottleneck, each difference marked within noise or "
        "significant.",
        epilog="Exit codes: 0 no significant regression, 4 a significant regression beyond "
        "the tolerance, 2 bad input.",
    )
    p.add_argument("base", metavar="BASE", help="the reference run (folder or results.json)")
    p.add_argument("new", metavar="NEW", help="the run to judge (folder or results.json)")
    p.add_argument(
        "--tolerance",
        type=positive_float,
        default=0.05,
        help="relative worsening allowed before a significant difference is a regression "
        "(default 0.05 = 5%%)",
    )
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.set_defaults(func=compare_command)


def compare_command(args: argparse.Namespace) -> int:
    """``mailgate compare``."""
    from mailgate import api

    result = api.compare(args.base, args.new, args.tolerance)
    print(result.json if args.json else result.summary)
    return result.exit_code
