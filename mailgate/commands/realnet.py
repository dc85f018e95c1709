"""``mailgate realnet up`` and ``mailgate realnet probe``: the real chain on loopback
(``realnet load`` is in ``commands.realnet_load``, ``realnet replay`` in
``commands.realnet_replay``).

Argument handling, printing and exit codes; the testbed
(``realnet.testbed.supervisor``) and the probe (``realnet.load.probe``) do the
work and return data.
"""

from __future__ import annotations

import json
import signal
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailgate.commands.arguments import Subparsers, add_scenario, positive_int
from mailgate.commands.realnet_load import add_load_parser
from mailgate.commands.realnet_replay import add_replay_parser
from mailgate.commands.testbed_access import running_state, start_testbed
from mailgate.sim.scenario.errors import UserError

if TYPE_CHECKING:
    from mailgate.realnet.load.probe import ProbeResult


def add_parser(sub: Subparsers) -> None:
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
    add_scenario(p)
    p.add_argument("--state-dir", help="spools, maildirs and traces (default: a temporary folder)")
    p.set_defaults(func=up_command)
    p = rsub.add_parser(
        "probe",
        help="send a mail to yourself through the real chain and time every hop",
        description="Bring the system up (or use a running one), submit the self-test mail "
        "with SMTP AUTH, retrieve it by POP3 and print the send-to-receive time per hop and "
        "stage with the SPF and DKIM verdicts.",
    )
    add_scenario(p)
    p.add_argument("--count", type=positive_int, default=1, help="probes to send (default 1)")
    p.add_argument("--use-running", action="store_true", help="use a system already up")
    p.add_argument("--state-dir", help="spools, maildirs and traces (default: a temporary folder)")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=probe_command)
    p = rsub.add_parser(
        "audit",
        help="account for every message a run's hosts accepted; exit 1 if any is lost",
        description="Reconcile a state dir's journals, traces and spools: every message a "
        "host accepted with 250 ended delivered to a mailbox, handed to a remote MX, "
        "quarantined or bounced, or is still in a spool (listed); anything else is lost.",
    )
    p.add_argument("state_dir", nargs="?", help="the run's state dir (default: the running one)")
    p.add_argument("--scenario", default="loopback-testbed", help="to find the running state dir")
    p.set_defaults(func=audit_command)
    add_load_parser(rsub)
    add_replay_parser(rsub)


def up_command(args: Any) -> int:
    """``mailgate realnet up SCENARIO``: run every host until Ctrl-C or SIGTERM.

    A host that dies is restarted (``realnet.testbed.service_manager``) while the
    others serve; ``up`` exits 1 only when a host cannot be restarted.
    """
    from mailgate.realnet.testbed.service_manager import CannotRestart, ServiceManager
    from mailgate.realnet.testbed.supervisor import Testbed, TestbedError

    testbed = Testbed(args.scenario, state_dir=args.state_dir)
    stop = {"now": False}

    def on_signal(signum: int, frame: Any) -> None:
        stop["now"] = True

    # both signals only set a flag: a Ctrl-C landing anywhere (even mid-start) ends in
    # the same orderly stop, never in a KeyboardInterrupt half-way through it
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with testbed:
            print(f"realnet {testbed.scenario.scenario.name}: state dir {testbed.state_dir}")
            width = max(len(name) for name, _ in testbed.plan.table())
            for name, address in testbed.plan.table():
                print(f"  {name:<{width}}  {address}")
            rn = testbed.scenario.realnet
            print(
                f"SMTP on port {rn.smtp_port} of every host; submission "
                f"{testbed.submission[0]}:{rn.submission_port}; "
                f"POP3 {testbed.pop3[0]}:{rn.pop3_port}"
            )
            print(
                f"STARTTLS on every SMTP service (required between our tiers); "
                f"local CA {testbed.state_dir / 'tls' / 'ca.crt'}"
            )
            print("running (a host that dies is restarted); Ctrl-C to stop", flush=True)
            try:
                ServiceManager(testbed).run(lambda: stop["now"])
            except CannotRestart as e:
                print(f"{e}; stopping every host", file=sys.stderr, flush=True)
                return 1
            print("stopping", flush=True)
    except TestbedError as e:
        raise UserError(str(e)) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        testbed.cleanup()
    return 0


def format_result(r: ProbeResult) -> str:
    """One probe as the lines ``realnet probe`` prints."""
    lines = [
        f"self-test {r.trace_id}: {r.address} -> itself",
        f"  send-to-receive {r.send_to_receive_s * 1000:.1f} ms"
        + (
            f" (in mailbox after {r.send_to_mailbox_s * 1000:.1f} ms)"
            if r.send_to_mailbox_s is not None
            else ""
        )
        + f"; submission took {r.submit_s * 1000:.1f} ms",
        f"  SPF {r.spf}, DKIM {r.dkim}"
        + (f" (signed by d={r.dkim_signer})" if r.dkim_signer else ""),
        f"  Authentication-Results: {r.authentication_results}",
        f"  {'hop':<36}{'arrived':>9}{'250 at':>9}{'left':>9}  {'outcome':<9} "
        f"{'TLS (as received)':<33} stages (ms)",
    ]
    for h in r.hops:
        stages = ", ".join(f"{k} {v:.2f}" for k, v in h.stages_ms.items())

        def f(v: float | None) -> str:
            return "-" if v is None else f"{v:.1f}"

        lines.append(
            f"  {h.host + ' -> ' + (h.next_hop or h.outcome):<36}{f(h.arrived_ms):>9}"
            f"{f(h.accepted_ms):>9}{f(h.left_ms):>9}  {h.outcome:<9} "
            f"{(h.tls or '-'):<33} {stages}"
        )
    lines.append("  (times in ms after the PC started sending)")
    return "\n".join(lines)


def probe_command(args: Any) -> int:
    """``mailgate realnet probe SCENARIO [--count N] [--use-running] [--json]``."""
    from mailgate.realnet.load.probe import all_passed, probe_once, summarise
    from mailgate.sim.scenario.loading import load

    scenario = load(args.scenario)
    testbed = None
    if args.use_running:
        state = running_state(args, scenario)
    else:
        testbed = start_testbed(args)
        state = testbed.state_dir
    try:
        results = []
        for _ in range(args.count):
            results.append(probe_once(scenario, state))
            if not args.json:
                print(format_result(results[-1]), flush=True)
        summary = summarise(scenario, results)
        if args.json:
            print(json.dumps({"summary": summary, "probes": [asdict(r) for r in results]}))
        elif len(results) > 1:
            print(
                f"{len(results)} probes: p50 {summary['p50_s'] * 1000:.1f} ms, "
                f"max {summary['max_s'] * 1000:.1f} ms "
                f"(the source: about {scenario.slo.selftest_max_s:g} s)"
            )
        return 0 if all_passed(results) else 1
    finally:
        if testbed is not None:
            testbed.__exit__(None, None, None)
            testbed.cleanup()


def audit_command(args: Any) -> int:
    """``mailgate realnet audit [STATE_DIR]``: 0 when nothing is lost, 1 otherwise."""
    from mailgate.realnet.testbed.audit import audit
    from mailgate.realnet.testbed.supervisor import running_state_dir
    from mailgate.sim.scenario.loading import load

    state = Path(args.state_dir) if args.state_dir else running_state_dir(load(args.scenario))
    if state is None or not (state / "traces").is_dir():
        raise UserError(f"{state or args.scenario}: no realnet state dir with traces/ here")
    report = audit(state)
    print("\n".join(report.lines()))
    return 0 if report.ok else 1
