"""``mailgate import-maillog LOG...``: Postfix logs -> per-tier aggregates (and, with a
scenario, a fitted overlay and the model's send → mailbox time against the log's)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mailgate.commands.arguments import SCENARIO_HELP, Subparsers, non_negative_int
from mailgate.sim.scenario.errors import UserError

#: The exit code of a comparison outside its tolerance (as ``mailgate calibrate``'s).
EXIT_OUT_OF_TOLERANCE = 3


def tier_pair(text: str) -> tuple[str, str]:
    """``INSTANCE=TIER``."""
    instance, eq, tier = text.partition("=")
    if not eq or not instance or not tier:
        raise argparse.ArgumentTypeError(f"expected INSTANCE=TIER, got {text!r}")
    return instance, tier


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "import-maillog",
        help="Postfix logs -> per-tier aggregates (and a fitted scenario with --scenario)",
        description="Read Postfix logs (syslog or maillog_file lines, plain or gzip), follow "
        "each message across the logged hosts by Message-ID and report per gateway tier: "
        "arrival rate and diurnal profile, sizes, per-hop delays (a/b/c/d), deferral and "
        "bounce rates, remote MTA time, and send -> mailbox time. Addresses are hashed on "
        "import; only aggregates are written. With --scenario: a fitted overlay and the "
        "model against the log (exit 3 when a p50/p95 is more than 15 % off).",
    )
    p.add_argument("logs", nargs="+", metavar="LOG", help="Postfix log file (plain or .gz)")
    p.add_argument("--scenario", help=SCENARIO_HELP + "; fit it and compare the model")
    p.add_argument("--out", default=None, help="output folder (default: results/maillog)")
    p.add_argument("--json", action="store_true", help="print the aggregates as JSON")
    p.add_argument(
        "--tier",
        action="append",
        type=tier_pair,
        default=[],
        metavar="INSTANCE=TIER",
        help="map a logged host (syslog name) to a scenario tier (repeatable)",
    )
    p.add_argument("--year", type=non_negative_int, help="year of year-less syslog stamps")
    p.add_argument(
        "--keep-addresses", action="store_true", help="do not hash addresses (a lab's own log)"
    )
    p.add_argument(
        "--each-log-a-load",
        action="store_true",
        help="with --scenario: fit one overlay from all logs, compare each log on its own "
        "(logs of one chain taken at different loads)",
    )
    p.add_argument("--seed", type=non_negative_int, default=1, help="model seed (--scenario)")
    p.set_defaults(func=import_maillog_command)


def import_maillog_command(args: argparse.Namespace) -> int:
    """``mailgate import-maillog``."""
    from mailgate.calibration.maillog.aggregate import aggregate, fit_samples, read_logs
    from mailgate.calibration.maillog.privacy import Hasher
    from mailgate.calibration.maillog.report import format_aggregates

    paths = [Path(p) for p in args.logs]
    for path in paths:
        if not path.is_file():
            raise UserError(f"{path}: no such log file")
    collector = read_logs(paths, Hasher(enabled=not args.keep_addresses), args.year)
    result = aggregate(collector, dict(args.tier))
    if not collector.entries:
        raise UserError(f"no Postfix message lines in {', '.join(args.logs)}")
    out = Path(args.out) if args.out else Path("results") / "maillog"
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "aggregates.json"]
    files[0].write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    text = format_aggregates(result)
    if args.scenario:
        from mailgate.calibration.maillog.compare import compare_with_model, format_comparison

        samples = fit_samples(collector, dict(args.tier))
        loads = None
        if args.each_log_a_load:
            loads = {
                path.name: aggregate(read_logs([path], Hasher(), args.year), dict(args.tier))
                for path in paths
            }
        comparison = compare_with_model(
            result, samples, args.scenario, out, seed=args.seed, loads=loads
        )
        result["comparison"] = comparison
        (out / "comparison.json").write_text(json.dumps(comparison, indent=1) + "\n")
        (out / "report.md").write_text(format_comparison(comparison) + "\n")
        files += [Path(f) for f in comparison["files"]] + [
            out / "comparison.json",
            out / "report.md",
        ]
        text += "\n\n" + format_comparison(comparison)
    written = "Wrote " + ", ".join(str(f) for f in files)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(text)
        print(written)
    missed = args.scenario and not result["comparison"]["within_tolerance"]
    return EXIT_OUT_OF_TOLERANCE if missed else 0
