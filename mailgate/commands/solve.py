"""``mailgate solve SCENARIO``: the analytic solver's answer for one hour, in milliseconds."""

from __future__ import annotations

import argparse

from mailgate.commands.arguments import Subparsers, add_scenario, non_negative_int


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "solve",
        help="utilisation, response times and bottleneck of one hour, without simulating",
        description="Solve the scenario as an open network of M/G/c stations (Allen-Cunneen; "
        "DNS, links and remote MTAs as delays) for one clock hour of its profile: each host's "
        "utilisation per resource and mean response time, the mean time of each stage, the "
        "mean latency of each flow, the bottleneck and the load multiplier at which it "
        "saturates. Milliseconds instead of a simulation; an approximation above about 70 %% "
        "utilisation (docs/model.md).",
    )
    add_scenario(p)
    p.add_argument(
        "--hour",
        type=non_negative_int,
        default=None,
        help="clock hour 0-23 (default: the first hour after the scenario's warm-up)",
    )
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    p.set_defaults(func=solve_command)


def solve_command(args: argparse.Namespace) -> int:
    """``mailgate solve SCENARIO``."""
    from mailgate import api

    result = api.solve(args.scenario, args.hour)
    print(result.json if args.json else result.summary)
    return 0
