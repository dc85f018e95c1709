"""``mailgate selftest SCENARIO``: the source's "mail to yourself" in the model, at idle
and in the peak hour, per hop and stage."""

from __future__ import annotations

import argparse
import json
import sys

from mailgate.commands.arguments import Subparsers, add_scenario, non_negative_int


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "selftest",
        help="the source's 'mail to yourself' in the model, at idle and in the peak hour",
        description="Send one mail to yourself through the model at idle and at the peak hour "
        "and print its time per hop and per stage.",
    )
    add_scenario(p)
    p.add_argument("--seed", type=non_negative_int, help="random seed (default: the scenario's)")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=selftest_command)


def selftest_command(args: argparse.Namespace) -> int:
    """``mailgate selftest SCENARIO``."""
    from mailgate.sim.analysis.selftest import format_report, selftest
    from mailgate.sim.scenario.loading import load

    s = load(args.scenario)
    seed = s.scenario.seed if args.seed is None else args.seed
    r = selftest(s, seed)
    if args.json:
        print(json.dumps(r, indent=1))
    else:
        print(format_report(r))
    sys.stdout.flush()
    return 0
