"""``mailgate selftest SCENARIO``: the source's "mail to yourself" in the model, at idle
and in the peak hour, per hop and stage."""

from __future__ import annotations

import argparse
import json
import sys


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
