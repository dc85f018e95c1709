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
from collections.abc import Sequence

from mailgate.sim.scenario.errors import UserError

EXIT_OK, EXIT_INTERNAL, EXIT_USER = 0, 1, 2

# subcommand -> "module:function"; the function takes the parsed args, returns an exit code
COMMANDS = {
    "check": "mailgate.sim.analysis.summary:check_command",
    "run": "mailgate.sim.analysis.runner:run_command",
    "selftest": "mailgate.sim.analysis.selftest:selftest_command",
    "realnet up": "mailgate.realnet.testbed.supervisor:up_command",
    "realnet probe": "mailgate.realnet.load.probe:probe_command",
    "calibrate": "mailgate.commands.calibrate:calibrate_command",
}


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailgate",
        description="Simulate and measure ISP mail gateway topologies: a SimPy model "
        "(check, run, selftest), the real relays on loopback (realnet) and the "
        "comparison of the two (calibrate).",
        epilog="Exit codes: 0 ok, 1 internal error, 2 user error, 3 calibration out of tolerance.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "check",
        help="validate a scenario and summarise its offered load",
        description="Validate a scenario file and print hosts per gateway, offered load per "
        "gateway (messages/s at the daily mean and in the peak hour), POP sessions/s and "
        "anything suspicious.",
    )
    p.add_argument("scenario", help="scenario TOML file")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")

    p = sub.add_parser(
        "run",
        help="run the discrete-event model of a scenario",
        description="Simulate the scenario and report latency per flow, host utilisation, "
        "queues, counts, the SLO verdict and the bottleneck; writes results.json and plots.",
    )
    p.add_argument("scenario", help="scenario TOML file")
    p.add_argument("--seed", type=int, help="random seed (default: the scenario's)")
    p.add_argument("--mailboxes", type=_positive_int, help="override population.mailboxes")
    p.add_argument("--hours", type=_positive_float, help="override scenario.duration_h")
    p.add_argument(
        "--replications", type=_positive_int, help="independent runs (default: the scenario's)"
    )
    p.add_argument("--out", default=None, help="output folder (default: results/NAME)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print results.json to stdout too")
    p.add_argument(
        "--trace",
        metavar="FILE",
        help="write every HopRecord to FILE (JSON lines) and MessageRecords to "
        "FILE's stem + .messages.jsonl (slow; for calibration tests)",
    )

    p = sub.add_parser(
        "selftest",
        help="the source's 'mail to yourself' in the model, at idle and in the peak hour",
        description="Send one mail to yourself through the model at idle and at the peak hour "
        "and print its time per hop and per stage.",
    )
    p.add_argument("scenario", help="scenario TOML file")
    p.add_argument("--seed", type=int, help="random seed (default: the scenario's)")
    p.add_argument("--json", action="store_true", help="print as JSON")

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
    p.add_argument("--count", type=_positive_int, default=1, help="probes to send (default 1)")
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
    p.add_argument("--duration", type=_positive_float, default=30.0, help="seconds per load")
    p.add_argument("--tolerance", type=_positive_float, default=0.15, help="relative error allowed")
    p.add_argument("--out", default=None, help="output folder (default: results/calibration)")
    return parser


def _command_name(args: argparse.Namespace) -> str:
    if args.command == "realnet":
        return f"realnet {args.realnet_command}"
    return args.command


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mailgate`` console script."""
    args = build_parser().parse_args(argv)
    module_name, function_name = COMMANDS[_command_name(args)].split(":")
    try:
        command = getattr(importlib.import_module(module_name), function_name)
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
