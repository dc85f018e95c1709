"""Soak test: a long held load on the real chain with one host of each gateway
killed and restarted along the way; nothing lost or corrupted, memory flat.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/soak.py [--minutes 10]
        [--rate R | --load-share 0.6 (--saturation S | --find-saturation)]
        [--prefix 127.231] [--json]

The rate is ``--rate``, or ``--load-share`` × the saturation: ``--saturation S``
(e.g. measured by ``mailgate calibrate``; docs/calibration.md) or
``--find-saturation`` (the calibration's ramp, 6 s steps, on this testbed
first). It starts a testbed of ``scenarios/loopback-testbed.toml`` on its own
addresses (``--prefix``, an overlay scenario), runs ``mailgate realnet load``
for the whole time with ``gatewayN.x`` SIGKILLed at 15, 30, 45, 60 and 75 % of
it (the service manager restarts each), then ``mailgate realnet audit`` on the
state dir, and prints a verdict: lost (accepted and neither delivered nor in a
spool, or found lost by the audit), corrupted (SHA-256 of a retrieved body
differs), duplicates, and each process's memory growth: the median RSS of its last
minute(s) against that of its first after warm-up (10 % of the duration from its
start or restart; ``realnet.load.memwatch``), so the mail in flight at one instant
does not count as growth. Exit 0 when nothing is lost or corrupted,
every kill happened and no process grew more than 10 %; else 1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "scenarios" / "loopback-testbed.toml"
GATEWAYS = 5
KILL_AT = (0.15, 0.30, 0.45, 0.60, 0.75)  # shares of the duration, one per gateway


def overlay(folder: Path, prefix: str, time_scale: float) -> Path:
    """The testbed scenario on ``prefix`` (so other testbeds do not collide)."""
    path = folder / "soak.toml"
    path.write_text(
        f'extends = "{BASE}"\n'
        f'[scenario]\nname = "soak-{os.getpid()}"\n'
        f'[realnet]\naddress_prefix = "{prefix}"\ndns_address = "{prefix}.255.53"\n'
        f"time_scale = {time_scale:g}\n"
    )
    return path


def kill_plan(duration_s: float) -> list[str]:
    """``HOST@T`` for one host of each gateway (alternating .0/.1), spread out."""
    return [f"gateway{g}.{g % 2}@{duration_s * KILL_AT[g]:g}" for g in range(GATEWAYS)]


def measure_saturation(scenario: Path, step_s: float = 6.0) -> float:
    """The testbed's saturation throughput, by the calibration's ramp (msg/s)."""
    from mailgate.calibration.measure import bench_from_testbed, measure, warm_up
    from mailgate.calibration.saturation import find_saturation
    from mailgate.realnet.load.mailclients import Auth
    from mailgate.realnet.testbed.supervisor import Testbed

    with (
        tempfile.TemporaryDirectory(prefix="mailgate-soak-sat-") as tmp,
        Testbed(str(scenario), state_dir=Path(tmp)) as testbed,
    ):
        bench = bench_from_testbed(testbed, Auth("selftest", "selftest"))
        warm_up(bench)
        steps = iter(range(100))

        def run(rate: float) -> Any:
            print(f"  ramp: {rate:.1f} msg/s for {step_s:g} s …", file=sys.stderr)
            return measure(bench, rate, step_s, f"sat{next(steps)}")[0]

        sat = find_saturation(run, max_steps=8, refine=1)
    print(f"saturation {sat.throughput:.1f} msg/s ({sat.first_host} first)", file=sys.stderr)
    return sat.throughput


def verdict(report: dict[str, Any], audit_ok: bool, kills: list[str]) -> dict[str, Any]:
    """The soak's figures and whether it passed."""
    memory = report["memory"]
    killed = sorted(k["host"] for k in report["kills"])
    out = {
        "offered": report["offered"],
        "accepted": report["accepted"],
        "delivered": report["delivered"],
        "lost": len(report["lost"]) + len(report["queued"]),
        "corrupted": len(report["corrupt"]),
        "duplicates": report["duplicates"],
        "audit_ok": audit_ok,
        "killed": killed,
        "memory_over_limit": sorted(h for h, m in memory.items() if m["flagged"]),
        "memory_unmeasured": sorted(h for h, m in memory.items() if m["growth"] is None),
    }
    out["ok"] = (
        out["lost"] == 0
        and out["corrupted"] == 0
        and audit_ok
        and killed == sorted(k.split("@")[0] for k in kills)
        and not out["memory_over_limit"]
        and not out["memory_unmeasured"]
        and report["accepted"] > 0
    )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, help="messages per second")
    ap.add_argument("--load-share", type=float, default=0.6, help="share of --saturation")
    ap.add_argument("--saturation", type=float, help="measured saturation, messages/s")
    ap.add_argument(
        "--find-saturation", action="store_true", help="ramp the testbed first to measure it"
    )
    ap.add_argument("--drain", type=float, default=120.0, help="seconds for the last mail")
    ap.add_argument("--prefix", default="127.231", help="loopback /16 of the testbed")
    ap.add_argument("--time-scale", type=float, default=0.05, help="retry timers × this")
    ap.add_argument("--state-dir", help="keep the run's state here (default: a temp dir)")
    ap.add_argument("--json", action="store_true", help="print the verdict as JSON")
    args = ap.parse_args(argv)
    if args.rate is None and args.saturation is None and not args.find_saturation:
        print("soak.py: give --rate, --saturation or --find-saturation", file=sys.stderr)
        return 2
    saturation = args.saturation
    if args.rate is None and saturation is None:
        with tempfile.TemporaryDirectory(prefix="mailgate-soak-") as tmp:
            saturation = measure_saturation(overlay(Path(tmp), args.prefix, args.time_scale))
    rate = args.rate if args.rate is not None else args.load_share * saturation
    if not (rate > 0 and 0 < args.minutes <= 60):
        print("soak.py: --rate must be > 0 and --minutes in (0, 60]", file=sys.stderr)
        return 2
    duration = args.minutes * 60.0
    kills = kill_plan(duration)
    with tempfile.TemporaryDirectory(prefix="mailgate-soak-") as tmp:
        state = Path(args.state_dir) if args.state_dir else Path(tmp) / "state"
        cmd = [
            sys.executable, "-m", "mailgate", "realnet", "load",
            str(overlay(Path(tmp), args.prefix, args.time_scale)),
            "--rate", f"{rate:g}", "--duration", f"{duration:g}", "--drain", f"{args.drain:g}",
            "--max-messages", str(int(rate * duration) + 10), "--state-dir", str(state),
            "--json", *(a for k in kills for a in ("--kill", k)),
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        run = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env, check=False)
        if run.returncode not in (0, 1) or not run.stdout.strip():
            print(f"soak.py: realnet load failed (exit {run.returncode})", file=sys.stderr)
            return 1
        report = json.loads(run.stdout)
        audit = subprocess.run(
            [sys.executable, "-m", "mailgate", "realnet", "audit", str(state)],
            capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
    result = verdict(report, audit.returncode == 0, kills)
    result |= {
        "saturation": saturation,
        "rate": rate,
        "minutes": args.minutes,
        "kills": kills,
        "memory": report["memory"],
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(format_verdict(result, audit.stdout))
    return 0 if result["ok"] else 1


def format_verdict(r: dict[str, Any], audit_text: str) -> str:
    """The verdict as printed."""
    lines = [
        f"soak: {r['minutes']:g} min at {r['rate']:g} msg/s"
        + (
            f" ({r['rate'] / r['saturation']:.0%} of {r['saturation']:g})"
            if r["saturation"]
            else ""
        )
        + f", kills {', '.join(r['kills'])}",
        f"  offered {r['offered']}, accepted {r['accepted']}, delivered {r['delivered']}",
        f"  lost {r['lost']}, corrupted {r['corrupted']}, duplicates {r['duplicates']}, "
        f"audit {'ok' if r['audit_ok'] else 'FAILED'}, killed {', '.join(r['killed']) or '-'}",
        "  memory (median RSS, first window after warm-up → last window):",
    ]
    for host, m in r["memory"].items():
        if m["growth"] is None:
            lines.append(f"    {host:<12} no baseline")
        else:
            lines.append(
                f"    {host:<12} {m['base_rss_kb'] / 1024:7.1f} → {m['end_rss_kb'] / 1024:7.1f} MB"
                f"  {m['growth'] * 100:+6.1f} %" + ("  OVER 10 %" if m["flagged"] else "")
            )
    lines.append("  audit: " + (audit_text.strip().splitlines() or ["(no output)"])[0])
    lines.append(f"verdict: {'PASS' if r['ok'] else 'FAIL'}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
