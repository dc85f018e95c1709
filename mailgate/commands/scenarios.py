"""``mailgate scenarios``: the scenarios that ship with mailgate, with one line each.
Every command takes one of these names wherever it takes a scenario file."""

from __future__ import annotations

import argparse
import json

from mailgate.commands.arguments import Subparsers


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "scenarios",
        help="list the shipped scenarios (use a name wherever a scenario file is asked for)",
        description="List the scenarios that ship with mailgate: the baseline, the loopback "
        "testbed and the failure scenarios. Give a name to any command instead of a path "
        "(mailgate run drive-network); 'mailgate init DIR' copies some to edit.",
    )
    p.add_argument("--json", action="store_true", help="print name, description and path")
    p.set_defaults(func=scenarios_command)


def scenarios_command(args: argparse.Namespace) -> int:
    """Print the shipped scenarios."""
    from mailgate.sim.scenario.shipped import shipped_scenarios

    found = shipped_scenarios()
    if args.json:
        rows = [{"name": s.name, "description": s.description, "path": str(s.path)} for s in found]
        print(json.dumps(rows, indent=1))
        return 0
    width = max(len(s.name) for s in found)
    for s in found:
        print(f"{s.name:<{width}}  {s.description}")
    print(f"\n{len(found)} scenarios in {found[0].path.parent}")
    return 0
