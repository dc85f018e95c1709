"""The ``mailgate`` command: argument parsing and exit codes, nothing else.

Each subcommand lives in the module that does the work and is imported only
when used, so ``mailgate check`` does not pay for asyncio servers. Exit
codes: 0 ok, 2 user error (bad scenario or arguments), 1 internal error,
3 a calibration missed its tolerance.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn

import mailgate
from mailgate.commands.arguments import positive_float, positive_int
from mailgate.sim.scenario.errors import UserError

EXIT_OK, EXIT_INTERNAL, EXIT_USER = 0, 1, 2

# Commands whose module in mailgate/commands/ declares its own arguments: it has
# add_parser(sub), which sets ``func`` (parsed args -> exit code). Command modules import
# the domain code only when they run, so building the parser stays cheap.
COMMAND_MODULES = ["check", "run", "selftest", "capacity"]

# subcommand -> "module:function" for commands whose arguments are still declared here
COMMANDS = {
    "realnet up": "mailgate.realnet.testbed.supervisor:up_command",
    "realnet probe": "mailgate.realnet.load.probe:probe_command",
    "calibrate": "mailgate.calibration.calibrate:calibrate_command",
}


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
        epilog="Exit codes: 0 ok, 1 internal error, 2 user error, 3 calibration out of tolerance.",
    )
    parser.add_argument("--version", action="version", version=f"mailgate {mailgate.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name in COMMAND_MODULES:
        importlib.import_module(f"mailgate.commands.{name}").add_parser(sub)

    realnet = sub.add_parser(
        "realnet",
        help="the real gateway chain on loopback",
        description="Run the scenario's topology as real SMTP, DNS and POP3 servers on "
        "127.0.0.0/8 addresses.",
    )
    rsub = realnet.add_subparsers(dest="realnet_command", required=True, metavar="ACTION")
    p = rsub.add_parser(
        "up",
        help="start every host, print the address map, run until Ctrl-C",
        description="Start the DNS server and one process per host, wait until each is "
        "healthy, print the address map and run until Ctrl-C; then stop everything.",
    )
    p.add_argument("scenario", help="scenario TOML file")
    p.add_argument("--state-dir", help="spools, maildirs and traces (default: a temporary folder)")
    p = rsub.add_parser(
        "probe",
        help="send a mail to yourself through the real chain and time every hop",
        description="Bring the system up (or use a running one), submit the self-test mail "
        "with SMTP AUTH, retrieve it by POP3 and print the send-to-receive time per hop and "
        "stage with the SPF and DKIM verdicts.",
    )
    p.add_argument("scenario", help="scenario TOML file")
    p.add_argument("--count", type=positive_int, default=1, help="probes to send (default 1)")
    p.add_argument("--use-running", action="store_true", help="use a system already up")
    p.add_argument("--state-dir", help="spools, maildirs and traces (default: a temporary folder)")
    p.add_argument("--json", action="store_true", help="print as JSON")

    p = sub.add_parser(
        "calibrate",
        help="measure the real relays under load, fit the model, compare",
        description="Find the testbed's saturation throughput, run realnet at a sweep of "
        "loads, fit stage costs from the lowest load, run the model at the same loads and "
        "report measured against modelled latency.",
    )
    p.add_argument("scenario", help="scenario TOML file (the loopback testbed)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--rates", help="comma-separated loads in messages/s")
    group.add_argument(
        "--auto", action="store_true", help="10/30/50/70/90 %% of measured saturation (default)"
    )
    p.add_argument("--duration", type=positive_float, default=30.0, help="seconds per load")
    p.add_argument("--tolerance", type=positive_float, default=0.15, help="relative error allowed")
    p.add_argument("--out", default=None, help="output folder (default: results/calibration)")
    return parser


def _command_name(args: argparse.Namespace) -> str:
    if args.command == "realnet":
        return f"realnet {args.realnet_command}"
    return args.command


def _legacy_command(args: argparse.Namespace) -> Callable[[argparse.Namespace], int]:
    module_name, function_name = COMMANDS[_command_name(args)].split(":")
    return getattr(importlib.import_module(module_name), function_name)


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
        command = getattr(args, "func", None) or _legacy_command(args)
        return int(command(args) or 0)
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
