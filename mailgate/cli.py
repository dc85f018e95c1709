"""The ``mailgate`` command: the parser assembled from ``mailgate/commands/``, and the
exit codes.

Each command module declares its own arguments and imports the code that does the work
only when it runs, so ``mailgate check`` does not pay for asyncio servers. Exit codes:
0 ok, 2 user error (bad scenario or arguments: one line), 1 internal error, 3 a
calibration missed its tolerance, 4 ``compare`` found a significant regression.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

import mailgate
from mailgate.sim.scenario.errors import UserError

EXIT_OK, EXIT_INTERNAL, EXIT_USER = 0, 1, 2

# Commands whose module in mailgate/commands/ declares its own arguments: it has
# add_parser(sub), which sets ``func`` (parsed args -> exit code). Command modules import
# the domain code only when they run, so building the parser stays cheap.
COMMAND_MODULES = [
    "scenarios", "init", "check", "solve", "run", "selftest", "capacity", "sweep", "report",
    "compare", "realnet", "calibrate", "maillog",
]  # fmt: skip

START_HERE = """
Start here:
  mailgate scenarios                  the shipped scenarios (use a name or a path)
  mailgate init my-network            copy the baseline and the testbed to edit
  mailgate run drive-network          simulate the baseline: a day of 30,000 mailboxes"""


class _Parser(argparse.ArgumentParser):
    """An argument error is one line naming the flag (and exit 2), not the usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mailgate",
        description="Simulate and measure ISP mail gateway topologies: a SimPy model "
        "(check, run, selftest), the real relays on loopback (realnet) and the "
        "comparison of the two (calibrate).",
        epilog="Exit codes: 0 ok, 1 internal error, 2 user error, 3 calibration out of "
        "tolerance, 4 compare found a significant regression.",
    )
    parser.add_argument("--version", action="version", version=f"mailgate {mailgate.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name in COMMAND_MODULES:
        importlib.import_module(f"mailgate.commands.{name}").add_parser(sub)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mailgate`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if not argv:
        parser.print_help()
        print(START_HERE)
        return EXIT_OK
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"mailgate: error: {e}", file=sys.stderr)
        return EXIT_USER
    except BrokenPipeError:
        # the reader (e.g. `| head`) went away: not an error of ours
        sys.stdout = None  # type: ignore[assignment]  # keep interpreter shutdown quiet
        return EXIT_OK
    except KeyboardInterrupt:
        print("mailgate: interrupted", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        print("mailgate: internal error (a bug in mailgate; please report it)", file=sys.stderr)
        return EXIT_INTERNAL
