"""``mailgate report DIR…``: one self-contained HTML report on model runs, or on one
calibration (a folder holding ``calibration.json``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mailgate.commands.arguments import Subparsers


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "report",
        help="one self-contained HTML report on model runs or a calibration",
        description="Write one HTML file (figures inline, nothing fetched: it reads offline "
        "and as a mail attachment) on one or more results folders of 'mailgate run': the "
        "SLO verdict, the key assumptions, latency per flow, utilisation per host, queues, "
        "the bottleneck and the headroom. On a folder of 'mailgate calibrate' (calibration.json): "
        "measured and modelled side by side.",
    )
    p.add_argument(
        "runs", nargs="+", metavar="DIR", help="results folder, results.json or calibration folder"
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


def calibration_file(path: str) -> Path | None:
    """``calibration.json`` of a calibration folder (or the file itself), else None."""
    p = Path(path)
    if p.is_dir() and (p / "calibration.json").is_file():
        return p / "calibration.json"
    return p if p.is_file() and p.name == "calibration.json" else None


def report_command(args: argparse.Namespace) -> int:
    """``mailgate report``."""
    from mailgate.sim.scenario.errors import UserError

    calibrations = [c for c in map(calibration_file, args.runs) if c is not None]
    if calibrations:
        if len(args.runs) > 1:
            raise UserError("report: a calibration folder is reported on its own: give one DIR")
        return _calibration_report(calibrations[0], args.out)
    from mailgate.sim.analysis.html_report import write_report
    from mailgate.sim.analysis.results_file import load_results

    results = [load_results(p) for p in args.runs]
    path = write_report(results, args.out or default_out(args.runs))
    print(f"Wrote {path}")
    return 0


def _calibration_report(source: Path, out: str | None) -> int:
    import json

    from mailgate.calibration.html_report import write_calibration_report
    from mailgate.sim.scenario.errors import UserError

    try:
        report = json.loads(source.read_text(encoding="utf-8"))
        path = write_calibration_report(report, out or source.parent / "report.html")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{source}: not a calibration.json of 'mailgate calibrate' ({e})") from None
    print(f"Wrote {path}")
    return 0
