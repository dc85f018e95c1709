"""Argument types and arguments shared by several commands: a bad value is a one-line
error naming the flag (argparse prints it and exits 2), never a traceback."""

from __future__ import annotations

import argparse
import math

SCENARIO_HELP = "scenario: a shipped name (see 'mailgate scenarios') or a TOML file"


def positive_int(text: str) -> int:
    """An integer ≥ 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer ≥ 0 (seeds)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (``nan`` and ``inf`` are refused)."""
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def clock_hour(text: str) -> float:
    """A clock hour 0 ≤ H < 24."""
    value = float(text)
    if not math.isfinite(value) or not 0 <= value < 24:
        raise argparse.ArgumentTypeError(f"must be a clock hour 0 ≤ H < 24, got {text}")
    return value


def add_scenario(parser: argparse.ArgumentParser) -> None:
    """The positional scenario argument."""
    parser.add_argument("scenario", help=SCENARIO_HELP)


def add_workers(parser: argparse.ArgumentParser, what: str) -> None:
    """``--workers N`` and ``--scheduler tcp://HOST:PORT``: where the runs go."""
    parser.add_argument(
        "--workers", type=positive_int,
        help=f"local worker processes running the {what} in parallel (default: the cores)",
    )  # fmt: skip
    parser.add_argument(
        "--scheduler", metavar="tcp://HOST:PORT",
        help=f"run the {what} on this Dask cluster instead (same results for the same seeds)",
    )  # fmt: skip


def add_report(parser: argparse.ArgumentParser) -> None:
    """``--report``: write the command's self-contained HTML page next to its results."""
    parser.add_argument(
        "--report", action="store_true", help="also write report.html (see 'mailgate report')"
    )


Subparsers = argparse._SubParsersAction  # argparse's own type for add_subparsers()
