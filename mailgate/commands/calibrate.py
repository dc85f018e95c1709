"""``mailgate calibrate SCENARIO``: the arguments, the printed report and the
exit code (3 when a target is missed); ``mailgate.calibration`` does the work
and returns the report as data.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

from mailgate.commands.arguments import (
    Subparsers,
    add_report,
    add_scenario,
    positive_float,
    positive_int,
)
from mailgate.sim.scenario.errors import UserError

EXIT_OK = 0
#: A target missed (a relative error beyond ``--tolerance``): ``mailgate``'s exit code 3.
EXIT_TOLERANCE = 3


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "calibrate",
        help="measure the real relays under load, fit the model, compare",
        description="Find the testbed's saturation throughput, run realnet at a sweep of "
        "loads (each load several times), fit stage costs across the sweep, run the model at "
        "the same loads, find its saturation by the same ramp and report measured against "
        "modelled latency.",
    )
    add_scenario(p)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--rates", help="comma-separated loads in messages/s")
    group.add_argument(
        "--auto", action="store_true", help="10/30/50/70/90 %% of measured saturation (default)"
    )
    p.add_argument(
        "--duration", type=positive_float, default=10.0, help="seconds per load and repeat"
    )
    p.add_argument(
        "--repeats",
        type=positive_int,
        default=3,
        help="measurements of each load (their spread is reported; default 3)",
    )
    p.add_argument(
        "--background-load",
        type=non_negative_float,
        default=0.0,
        metavar="CORES",
        help="run a CPU burner taking CORES cores beside the testbed while it is measured",
    )
    p.add_argument("--tolerance", type=positive_float, default=0.15, help="relative error allowed")
    p.add_argument("--out", default=None, help="output folder (default: results/calibration)")
    add_report(p)
    p.set_defaults(func=calibrate_command)


#: More burner than this is a typo, not a test (the burner is one process per core).
MAX_BACKGROUND_CORES = 64.0


def non_negative_float(text: str) -> float:
    """A finite number ≥ 0 and ≤ ``MAX_BACKGROUND_CORES`` (cores of background load)."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of cores, got {text}") from None
    if not math.isfinite(value) or not 0 <= value <= MAX_BACKGROUND_CORES:
        raise argparse.ArgumentTypeError(
            f"must be a number of cores from 0 to {MAX_BACKGROUND_CORES:g}, got {text}"
        )
    return value


def parse_rates(text: str) -> list[float]:
    """``"5,10.5,20"`` → ``[5.0, 10.5, 20.0]`` (sorted, each > 0)."""
    try:
        rates = sorted(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UserError(f"--rates: expected numbers separated by commas, got {text!r}") from None
    if not rates or any(r <= 0 or not math.isfinite(r) for r in rates):
        raise UserError(f"--rates: every rate must be a number > 0, got {text!r}")
    return rates


def exit_code(report: dict[str, Any]) -> int:
    """0 when every target was met, ``EXIT_TOLERANCE`` when one was missed."""
    return EXIT_TOLERANCE if report["failures"] else EXIT_OK


def calibrate_command(args: Any) -> int:
    """``mailgate calibrate SCENARIO [--rates R,…|--auto] [--duration S] [--repeats N]
    [--background-load CORES] …``.

    The PC user is the scenario's first ``[[realnet.users]]``; its password
    comes from ``MAILGATE_PROBE_PASSWORD`` or is the user name (as for the
    probe; the testbed's self-test user has password "selftest").
    """
    from mailgate.calibration.calibrate import Options, calibrate
    from mailgate.calibration.report import format_report
    from mailgate.realnet.load.mailclients import Auth
    from mailgate.sim.scenario.loading import load

    users = load(args.scenario).realnet.users
    if not users:
        raise UserError(f"{args.scenario}: no [[realnet.users]] to submit mail and read POP as")
    name = users[0].name
    opts = Options(
        scenario=args.scenario,
        user=Auth(name, os.environ.get("MAILGATE_PROBE_PASSWORD", name)),
        rates=parse_rates(args.rates) if args.rates else None,
        duration_s=args.duration,
        repeats=args.repeats,
        background_load=args.background_load,
        tolerance=args.tolerance,
        out=Path(args.out or "results/calibration"),
        command=" ".join(["mailgate", *sys.argv[1:]]),
    )
    report = calibrate(opts, log=lambda s: print(s, file=sys.stderr))
    print(format_report(report))
    print(f"wrote {opts.out / 'calibration.json'} and {opts.out / 'report.md'}")
    if args.report:
        from mailgate.calibration.html_report import write_calibration_report

        print(f"wrote {write_calibration_report(report, opts.out / 'report.html')}")
    return exit_code(report)
