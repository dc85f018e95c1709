"""``mailgate check SCENARIO``: validate a scenario and summarise its offered load."""

from __future__ import annotations

import argparse
import json


def check_command(args: argparse.Namespace) -> int:
    """``mailgate check SCENARIO``."""
    from mailgate.sim.analysis.summary import render, summarise
    from mailgate.sim.scenario.loading import load

    summary = summarise(load(args.scenario))
    print(json.dumps(summary, indent=2) if args.json else render(summary))
    return 0
