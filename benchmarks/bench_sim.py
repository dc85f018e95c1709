"""Speed and memory of the model, measured side by side in one run.

1. An open tandem network (5 stations in series, 2 servers each, Poisson
   arrivals, exponential service, ρ = 0.7) built three ways: the model's
   machinery (``sim.engine``: callbacks + own FIFO queues), idiomatic SimPy
   (a process per customer, ``Resource`` requests) and Ciw, in customers per
   CPU second of the benchmark process (steadier than wall time on a shared
   machine). Ciw is much
   slower, so it runs fewer customers (``--ciw-customers``) and its rate is
   reported as measured on those.
2. A full simulated day of ``drive-network.toml`` at 30,000 and 100,000
   mailboxes, each in a fresh subprocess: wall time, simulated messages per
   second, SimPy events, peak resident memory (the child's own VmHWM).

Usage (from the repository root)::

    PYTHONPATH=$PWD python benchmarks/bench_sim.py [--repeat 3] [--customers 200000]

Each tandem figure is the median of ``--repeat`` interleaved rounds (every
variant once per round); the full days run once each unless
``--day-repeat`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import simpy

from benchmarks.tandem import jackson_tandem_sojourn, run_tandem

ROOT = Path(__file__).resolve().parents[1]
LAM, MU, SERVERS, STATIONS = 1.4, 1.0, 2, 5  # rho = LAM / (SERVERS * MU) = 0.7


def tandem_machinery(customers: int, seed: int) -> float:
    """Mean sojourn with the model's machinery."""
    return run_tandem(LAM, MU, SERVERS, STATIONS, customers, seed)["sojourn"]


def tandem_idiomatic(customers: int, seed: int) -> float:
    """Mean sojourn written the textbook SimPy way."""
    env = simpy.Environment()
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1 / LAM, customers).tolist()
    services = rng.exponential(1 / MU, customers * STATIONS).tolist()
    stations = [simpy.Resource(env, capacity=SERVERS) for _ in range(STATIONS)]
    total = [0.0]

    def customer(i: int):
        start = env.now
        for k, station in enumerate(stations):
            with station.request() as req:
                yield req
                yield env.timeout(services[i * STATIONS + k])
        total[0] += env.now - start

    def source():
        for i in range(customers):
            yield env.timeout(gaps[i])
            env.process(customer(i))

    env.process(source())
    env.run()
    return total[0] / customers


def tandem_ciw(customers: int, seed: int) -> float:
    """Mean sojourn with Ciw."""
    import ciw

    ciw.seed(seed)
    routing = [[1.0 if j == i + 1 else 0.0 for j in range(STATIONS)] for i in range(STATIONS)]
    network = ciw.create_network(
        arrival_distributions=[ciw.dists.Exponential(LAM)] + [None] * (STATIONS - 1),
        service_distributions=[ciw.dists.Exponential(MU)] * STATIONS,
        number_of_servers=[SERVERS] * STATIONS,
        routing=routing,
    )
    q = ciw.Simulation(network)
    q.simulate_until_max_customers(customers, method="Finish")
    recs = q.get_all_records()
    by_id: dict[int, list[float]] = {}
    for r in recs:
        lo_hi = by_id.setdefault(r.id_number, [r.arrival_date, r.exit_date])
        lo_hi[0] = min(lo_hi[0], r.arrival_date)
        lo_hi[1] = max(lo_hi[1], r.exit_date)
    return statistics.fmean(b - a for a, b in by_id.values())


def timed_rounds(
    variants: list[tuple[str, object, int]], repeat: int
) -> dict[str, tuple[list[float], float]]:
    """Run every variant once per round, ``repeat`` rounds (interleaved, so that
    a noisy neighbour slows all variants alike); customers/s per round and the
    last mean sojourn per variant."""
    out: dict[str, tuple[list[float], float]] = {name: ([], 0.0) for name, _, _ in variants}
    for r in range(repeat):
        for name, fn, customers in variants:
            # CPU time of this process: on a shared, noisy machine it varies far
            # less than wall time (the work is single-threaded).
            t = time.process_time()
            sojourn = fn(customers, 1000 + r)  # type: ignore[operator]
            rate = customers / (time.process_time() - t)
            out[name][0].append(rate)
            out[name] = (out[name][0], sojourn)
    return out


DAY = """
import json, resource, sys, time

def peak_mib():
    # VmHWM is this process's own high-water mark; ru_maxrss would carry the
    # parent's (the tandem runs) across fork + exec on Linux.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

from mailgate.sim.scenario.loading import load
from mailgate.sim.model.simulate import simulate
s = load(sys.argv[1], {"population.mailboxes": int(sys.argv[2])})
t, cpu = time.perf_counter(), time.process_time()
d = simulate(s).to_dict()
wall, cpu = time.perf_counter() - t, time.process_time() - cpu
c = d["counts"]
print(json.dumps({"wall_s": wall, "cpu_s": cpu, "generated": c["generated"], "events": d["events"],
    "simulated_h": d["measured_s"] / 3600 + d["warmup_s"] / 3600,
    "maxrss_mib": peak_mib()}))
"""


def full_day(mailboxes: int, repeat: int) -> dict[str, float]:
    """A full day of drive-network.toml in a fresh interpreter (median wall of ``repeat``)."""
    runs = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", DAY, str(ROOT / "scenarios" / "drive-network.toml"),
             str(mailboxes)],
            capture_output=True, text=True, check=True, cwd=ROOT, timeout=1800,
        )  # fmt: skip
        runs.append(json.loads(out.stdout))
    runs.sort(key=lambda r: r["wall_s"])
    best = runs[len(runs) // 2]
    best["messages_per_s"] = best["generated"] / best["wall_s"]
    best["events_per_s"] = best["events"] / best["wall_s"]
    best["maxrss_mib"] = max(r["maxrss_mib"] for r in runs)
    return best


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--customers", type=int, default=200_000, help="tandem customers")
    p.add_argument("--ciw-customers", type=int, default=20_000, help="tandem customers for Ciw")
    p.add_argument("--repeat", type=int, default=3, help="tandem runs per variant (median)")
    p.add_argument("--day-repeat", type=int, default=1, help="full-day runs per size (median)")
    p.add_argument("--skip-days", action="store_true", help="only the tandem")
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")
    a = p.parse_args()

    theory = jackson_tandem_sojourn(LAM, MU, SERVERS, STATIONS)
    print(
        f"Tandem: {STATIONS} stations × M/M/{SERVERS}, ρ = 0.7, Jackson mean sojourn {theory:.3f}"
    )
    runs = timed_rounds(
        [
            ("machinery", tandem_machinery, a.customers),
            ("idiomatic", tandem_idiomatic, a.customers),
            ("ciw", tandem_ciw, a.ciw_customers),
        ],
        a.repeat,
    )
    fast, idiom, ciw_rate = (
        statistics.median(runs[k][0]) for k in ("machinery", "idiomatic", "ciw")
    )
    ratios = [m / i for m, i in zip(runs["machinery"][0], runs["idiomatic"][0], strict=True)]
    rows = [
        ("mailgate machinery (callbacks + FIFO)", a.customers, fast, runs["machinery"][1]),
        ("idiomatic SimPy (process + Resource)", a.customers, idiom, runs["idiomatic"][1]),
        (f"Ciw (on {a.ciw_customers:,} customers)", a.ciw_customers, ciw_rate, runs["ciw"][1]),
    ]
    for name, n, rate, soj in rows:
        print(f"  {name:42} {n:>8,} customers  {rate:>10,.0f} customers/CPU-s  sojourn {soj:.3f}")
    print(
        f"  ratio machinery / idiomatic SimPy: {statistics.median(ratios):.2f}× median of "
        f"{a.repeat} interleaved rounds (range {min(ratios):.2f}-{max(ratios):.2f}; target ≥ 3×)"
    )
    print(f"  ratio machinery / Ciw:             {fast / ciw_rate:.2f}× (medians)")
    figures: dict[str, object] = {
        "tandem": {"machinery_cps": fast, "idiomatic_cps": idiom, "ciw_cps": ciw_rate,
                   "ratio_idiomatic": statistics.median(ratios), "ratio_ciw": fast / ciw_rate,
                   "customers": a.customers, "ciw_customers": a.ciw_customers},
    }  # fmt: skip
    if not a.skip_days:
        print("Full day of drive-network.toml (1 h warm-up + 24 h), fresh subprocess each:")
        for n, target in ((30_000, "≤ 30 s wall"), (100_000, "< 1024 MiB")):
            r = full_day(n, a.day_repeat)
            figures[f"day_{n}"] = r
            print(
                f"  {n:>7,} mailboxes: {r['wall_s']:6.1f} s wall ({r['cpu_s']:.1f} s CPU), "
                f"{r['generated']:>9,} messages "
                f"({r['messages_per_s']:,.0f} msg/s, {r['events_per_s']:,.0f} events/s), "
                f"peak RSS {r['maxrss_mib']:.0f} MiB  (target {target})"
            )
    if a.json:
        print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
