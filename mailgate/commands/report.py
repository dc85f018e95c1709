"""``mailgate report DIR…``: one self-contained HTML report on model runs, or on one
calibration (a folder holding ``calibration.json``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mailgate.commands.arguments import Subparsers


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "report",
        help="one self-contained HTML report on model runs, capacity searches or a calibration",
        description="Write one HTML file (figures inline, nothing fetched: it reads offline "
        "and as a mail attachment) on one or more results folders of 'mailgate run': the "
        "SLO verdict, the key assumptions, latency per flow, utilisation per host, queues, "
        "the bottleneck and the headroom; or of 'mailgate capacity': the capacity with its "
        "95 %% band, the binding SLO, every point run and p95 against mailboxes; or of "
        "'mailgate calibrate' (alone): measured and modelled side by side.",
    )
    p.add_argument(
        "runs",
        nargs="+",
        metavar="DIR",
        help="results folder, results.json, capacity.json or calibration folder",
    )
    p.add_argument(
        "--out",
        metavar="FILE.html",
        help="where to write (default: DIR/report.html for one run, report.html for several)",
    )
    p.set_defaults(func=report_command)


def default_out(runs: list[str]) -> Path:
    """Next to the results of a single run; in the current folder for several."""
    if len(runs) == 1:
        p = Path(runs[0])
        return (p if p.is_dir() else p.parent) / "report.html"
    return Path("report.html")


def report_command(args: argparse.Namespace) -> int:
    """``mailgate report``."""
    from mailgate import api

    path = api.report(args.runs, args.out or default_out(args.runs))
    print(f"Wrote {path}")
    return 0
