"""``mailgate check SCENARIO``: validate a scenario and summarise its offered load."""

from __future__ import annotations

import argparse
import json

from mailgate.commands.arguments import Subparsers, add_scenario


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "check",
        help="validate a scenario and summarise its offered load",
        description="Validate a scenario and print hosts per gateway, offered load per "
        "gateway (messages/s at the daily mean and in the peak hour), POP sessions/s and "
        "anything suspicious.",
    )
    add_scenario(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=check_command)


def check_command(args: argparse.Namespace) -> int:
    """``mailgate check SCENARIO``."""
    from mailgate.sim.analysis.summary import render, summarise
    from mailgate.sim.scenario.loading import load

    summary = summarise(load(args.scenario))
    print(json.dumps(summary, indent=2) if args.json else render(summary))
    return 0
