"""Speed and memory of the model, measured side by side in one run.

1. One open tandem network (5 stations in series, 2 servers each, Poisson
   arrivals, exponential service, ρ = 0.7, about 200,000 customers) run five
   ways: (a) as a mailgate scenario (``benchmarks/tandem.toml``, ``kind =
   "stations"``) through the real ``Model`` that ``mailgate run`` uses, with
   everything it does on the way (results included); (b) idiomatic SimPy (a
   process per customer, ``simpy.Resource``); (c) SimPy with callbacks on
   ``Timeout`` events and plain FIFO lists; (d) Ciw, if installed (on fewer
   customers: it is much slower); (e) a plain ``heapq`` event loop. Rates
   are customers per CPU second of this process (``time.process_time``:
   steadier than wall time on a shared machine); the ratios Model/idiomatic
   and Model/heapq are per round (every variant once per round, interleaved),
   then the median.
2. The baseline day (``scenarios/drive-network.toml``, 1 h warm-up + 24 h) in
   a fresh subprocess: events and messages per CPU second, peak RSS; with
   ``--reference-tree PATH`` the same day also from another checkout (e.g. the
   previous release) in the same run, and the speed ratio.
3. The peak hour (``scenarios/peak-hour.toml``) at 100,000 and 1,000,000
   mailboxes, each in a fresh subprocess: peak RSS per case (memory should not
   grow with the number of mailboxes beyond the traffic they make).

Usage (from the repository root)::

    PYTHONPATH=$PWD python benchmarks/bench_sim.py [--quick] [--repeat 3]
        [--reference-tree /tmp/mg-main-ref] [--skip-days] [--json]

Targets (docs/model.md, "Speed"): Model ≥ 3× idiomatic SimPy and ≥ 0.5× the
heapq loop per customer; the baseline day ≥ 2.5× faster than the reference.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np
import simpy

ROOT = Path(__file__).resolve().parents[1]
STATIONS, SERVERS = 5, 2
LAM, S_MEAN = 140.0, 0.01  # per second, seconds: rho = LAM * S_MEAN / SERVERS = 0.7
SCENARIO = ROOT / "benchmarks" / "tandem.toml"


def erlang_c_wait(lam: float, mean: float, c: int) -> float:
    """Mean wait in queue of an M/M/c queue (Erlang C)."""
    a = lam * mean
    rho = a / c
    head = sum(a**k / math.factorial(k) for k in range(c))
    tail = a**c / (math.factorial(c) * (1 - rho))
    return tail / (head + tail) / (c / mean - lam)


#: Jackson: the mean sojourn through the tandem is the sum of the stations' M/M/c responses.
THEORY = STATIONS * (erlang_c_wait(LAM, S_MEAN, SERVERS) + S_MEAN)


def draws(customers: int, seed: int) -> tuple[list[float], list[float]]:
    """Interarrival gaps and service times (customer-major), shared by the hand-written variants."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1 / LAM, customers).tolist()
    return gaps, rng.exponential(S_MEAN, customers * STATIONS).tolist()


def tandem_model(customers: int, seed: int) -> tuple[int, float]:
    """(a) The tandem scenario through mailgate's Model (build, run, results)."""
    from mailgate.sim.model.simulate import simulate
    from mailgate.sim.scenario.loading import load

    hours = customers / LAM / 3600.0
    s = load(SCENARIO, {"scenario.duration_h": hours, "scenario.seed": seed})
    d = simulate(s).to_dict()
    return d["counts"]["generated"], d["latency"]["inbound"]["sent_to_remote"]["mean"]


def tandem_idiomatic(customers: int, seed: int) -> tuple[int, float]:
    """(b) The textbook SimPy way: a process per customer, ``Resource`` requests."""
    env = simpy.Environment()
    gaps, services = draws(customers, seed)
    stations = [simpy.Resource(env, capacity=SERVERS) for _ in range(STATIONS)]
    total = [0.0]

    def customer(i: int):  # type: ignore[no-untyped-def]
        start = env.now
        for k, station in enumerate(stations):
            with station.request() as req:
                yield req
                yield env.timeout(services[i * STATIONS + k])
        total[0] += env.now - start

    def source():  # type: ignore[no-untyped-def]
        for i in range(customers):
            yield env.timeout(gaps[i])
            env.process(customer(i))

    env.process(source())
    env.run()
    return customers, total[0] / customers


def tandem_callbacks(customers: int, seed: int) -> tuple[int, float]:
    """(c) SimPy with callbacks: a ``Timeout`` per service and per arrival, no processes."""
    env = simpy.Environment()
    gaps, services = draws(customers, seed)
    free = [SERVERS] * STATIONS
    waiting: list[deque[list]] = [deque() for _ in range(STATIONS)]
    total = [0.0]

    def start(job: list) -> None:  # job: [customer, station, sent]
        ev = env.timeout(services[job[0] * STATIONS + job[1]], job)
        ev.callbacks.append(done)

    def arrive(job: list) -> None:
        k = job[1]
        if free[k]:
            free[k] -= 1
            start(job)
        else:
            waiting[k].append(job)

    def done(ev: simpy.Event) -> None:
        job = ev.value
        k = job[1]
        if waiting[k]:
            start(waiting[k].popleft())
        else:
            free[k] += 1
        if k + 1 < STATIONS:
            job[1] = k + 1
            arrive(job)
        else:
            total[0] += env.now - job[2]

    def new(ev: simpy.Event) -> None:
        i = ev.value
        arrive([i, 0, env.now])
        if i + 1 < customers:
            env.timeout(gaps[i + 1], i + 1).callbacks.append(new)

    env.timeout(gaps[0], 0).callbacks.append(new)
    env.run()
    return customers, total[0] / customers


def tandem_ciw(customers: int, seed: int) -> tuple[int, float]:
    """(d) Ciw (its own RNG; time to ``customers`` customers through the network)."""
    import ciw

    ciw.seed(seed)
    routing = [[1.0 if j == i + 1 else 0.0 for j in range(STATIONS)] for i in range(STATIONS)]
    network = ciw.create_network(
        arrival_distributions=[ciw.dists.Exponential(LAM)] + [None] * (STATIONS - 1),
        service_distributions=[ciw.dists.Exponential(1 / S_MEAN)] * STATIONS,
        number_of_servers=[SERVERS] * STATIONS,
        routing=routing,
    )
    q = ciw.Simulation(network)
    q.simulate_until_max_customers(customers, method="Finish")
    span: dict[int, list[float]] = {}
    for r in q.get_all_records():
        lo_hi = span.setdefault(r.id_number, [r.arrival_date, r.exit_date])
        lo_hi[0] = min(lo_hi[0], r.arrival_date)
        lo_hi[1] = max(lo_hi[1], r.exit_date)
    return len(span), statistics.fmean(b - a for a, b in span.values())


def tandem_heapq(customers: int, seed: int) -> tuple[int, float]:
    """(e) A plain heapq event loop: (time, seq, kind, job) entries, FIFO deques."""
    gaps, services = draws(customers, seed)
    free = [SERVERS] * STATIONS
    waiting: list[deque[list]] = [deque() for _ in range(STATIONS)]
    heap: list[tuple[float, int, int, list]] = [(gaps[0], 0, -1, [0, 0, 0.0])]
    seq = 1
    total = 0.0
    push, pop = heapq.heappush, heapq.heappop
    while heap:
        now, _, k, job = pop(heap)
        if k < 0:  # an arrival: the next one is scheduled now
            i = job[0]
            job[2] = now
            if i + 1 < customers:
                push(heap, (now + gaps[i + 1], seq, -1, [i + 1, 0, 0.0]))
                seq += 1
            k = 0
        else:  # end of service at station k
            if waiting[k]:
                nxt = waiting[k].popleft()
                push(heap, (now + services[nxt[0] * STATIONS + k], seq, k, nxt))
                seq += 1
            else:
                free[k] += 1
            k += 1
            if k == STATIONS:
                total += now - job[2]
                continue
        job[1] = k
        if free[k]:
            free[k] -= 1
            push(heap, (now + services[job[0] * STATIONS + k], seq, k, job))
            seq += 1
        else:
            waiting[k].append(job)
    return customers, total / customers


Variant = Callable[[int, int], tuple[int, float]]


def timed_rounds(variants: list[tuple[str, Variant, int]], repeat: int) -> dict[str, list]:
    """Every variant once per round, ``repeat`` rounds (interleaved, so that a noisy
    neighbour slows all alike): per variant a list of (customers per CPU-s, mean sojourn)."""
    out: dict[str, list] = {name: [] for name, _, _ in variants}
    for r in range(repeat):
        for name, fn, customers in variants:
            t = time.process_time()
            done, sojourn = fn(customers, 1000 + r)
            out[name].append((done / (time.process_time() - t), sojourn))
    return out


CHILD = """
import json, sys, time
from mailgate.sim.scenario.loading import load
from mailgate.sim.model.simulate import simulate
import mailgate.sim
s = load(sys.argv[1], json.loads(sys.argv[2]))
t, cpu = time.perf_counter(), time.process_time()
d = simulate(s).to_dict()
wall, cpu = time.perf_counter() - t, time.process_time() - cpu
# VmHWM: this process's own high-water mark (ru_maxrss can carry the parent's across exec)
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"wall_s": wall, "cpu_s": cpu, "generated": d["counts"]["generated"],
    "events": d["events"], "maxrss_mib": hwm / 1024, "code": mailgate.sim.__path__[0]}))
"""


def model_run(tree: Path, scenario: str, overrides: dict[str, object]) -> dict[str, float]:
    """One scenario run by the model of checkout ``tree`` in a fresh interpreter."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(tree / "scenarios" / f"{scenario}.toml"),
         json.dumps(overrides)],
        capture_output=True, text=True, check=True, cwd=tree, env=env, timeout=3600,
    )  # fmt: skip
    r = json.loads(out.stdout)
    if Path(r["code"]).resolve() != (tree / "sim").resolve():
        raise SystemExit(f"bench_sim: the child ran {r['code']}, not {tree}/sim")
    r["messages_per_cpu_s"] = r["generated"] / r["cpu_s"]
    r["events_per_cpu_s"] = r["events"] / r["cpu_s"]
    return r


def day_line(label: str, r: dict[str, float]) -> str:
    return (
        f"  {label:24} {r['cpu_s']:6.1f} s CPU ({r['wall_s']:.1f} s wall), "
        f"{r['events']:>10,} events "
        f"({r['events_per_cpu_s']:>9,.0f}/CPU-s), {r['generated']:>9,} messages "
        f"({r['messages_per_cpu_s']:>7,.0f}/CPU-s), peak RSS {r['maxrss_mib']:.0f} MiB"
    )


def tandem(a: argparse.Namespace, figures: dict[str, object]) -> None:
    """Part 1: the tandem five ways."""
    variants: list[tuple[str, Variant, int]] = [
        ("model", tandem_model, a.customers),
        ("idiomatic", tandem_idiomatic, a.customers),
        ("callbacks", tandem_callbacks, a.customers),
        ("heapq", tandem_heapq, a.customers),
    ]
    try:
        import ciw  # noqa: F401

        variants.append(("ciw", tandem_ciw, a.ciw_customers))
    except ImportError:
        print("  (Ciw not installed: `pip install ciw` to include it; skipped)")
    runs = timed_rounds(variants, a.repeat)
    print(
        f"Tandem: {STATIONS} stations × M/M/{SERVERS}, ρ = 0.7, {a.customers:,} customers, "
        f"median of {a.repeat} interleaved rounds; Jackson mean sojourn {THEORY * 1000:.2f} ms"
    )
    labels = {
        "model": "(a) mailgate Model (tandem.toml)",
        "idiomatic": "(b) idiomatic SimPy (process + Resource)",
        "callbacks": "(c) SimPy with callbacks",
        "heapq": "(e) plain heapq loop",
        "ciw": f"(d) Ciw ({a.ciw_customers:,} customers)",
    }
    rate = {k: statistics.median(r for r, _ in v) for k, v in runs.items()}
    for name, v in runs.items():
        print(
            f"  {labels[name]:44} {rate[name]:>10,.0f} customers/CPU-s  "
            f"({1e6 / rate[name]:6.1f} µs each)  mean sojourn {v[-1][1] * 1000:.2f} ms"
        )
    out: dict[str, object] = {f"{k}_cps": v for k, v in rate.items()}
    for other, target in (("idiomatic", 3.0), ("heapq", 0.5), ("callbacks", None)):
        ratios = [m[0] / o[0] for m, o in zip(runs["model"], runs[other], strict=True)]
        med = statistics.median(ratios)
        out[f"model_over_{other}"] = med
        goal = f"; target ≥ {target}×: {'met' if med >= target else 'MISSED'}" if target else ""
        print(
            f"  Model / {other:10} {med:5.2f}× (rounds {min(ratios):.2f}-{max(ratios):.2f}{goal})"
        )
    figures["tandem"] = out


def days(a: argparse.Namespace, figures: dict[str, object]) -> None:
    """Parts 2 and 3: the baseline day (here and in the reference tree) and the peak hours."""
    print("Baseline day (drive-network, 1 h warm-up + 24 h), fresh subprocess each:")
    mine = model_run(ROOT, "drive-network", {})
    figures["day"] = mine
    print(day_line("this tree", mine))
    if a.reference_tree:
        ref = model_run(Path(a.reference_tree).resolve(), "drive-network", {})
        figures["day_reference"] = ref
        print(day_line(f"{a.reference_tree}", ref))
        if ref["events"] != mine["events"] or ref["generated"] != mine["generated"]:
            print("  (the two trees simulate different events: the ratio compares unlike runs)")
        speed = ref["cpu_s"] / mine["cpu_s"]
        figures["day_speedup"] = speed
        verdict = "met" if speed >= 2.5 else "MISSED"
        print(f"  speed-up over the reference: {speed:.2f}× CPU (target ≥ 2.5×: {verdict})")
    print("Peak hour (peak-hour.toml) by mailboxes, fresh subprocess each:")
    for n in (30_000, 100_000) if a.quick else (30_000, 100_000, 1_000_000):
        r = model_run(ROOT, "peak-hour", {"population.mailboxes": n})
        figures[f"peak_{n}"] = r
        print(
            f"  {n:>9,} mailboxes: {r['generated']:>9,} messages, {r['cpu_s']:6.1f} s CPU, "
            f"peak RSS {r['maxrss_mib']:6.0f} MiB ({r['maxrss_mib'] * 1024 / n:.2f} KiB/mailbox, "
            f"{r['maxrss_mib'] * 1024 * 1024 / max(r['generated'], 1):.0f} B/message)"
        )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--customers", type=int, default=200_000, help="tandem customers")
    p.add_argument("--ciw-customers", type=int, default=20_000, help="tandem customers for Ciw")
    p.add_argument("--repeat", type=int, default=3, help="interleaved tandem rounds (median)")
    p.add_argument("--quick", action="store_true",
                   help="20,000 customers, 1 round, no 1,000,000-mailbox hour")  # fmt: skip
    p.add_argument("--reference-tree", metavar="PATH",
                   help="another checkout whose baseline day runs beside this one's")  # fmt: skip
    p.add_argument("--skip-days", action="store_true", help="only the tandem")
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")
    a = p.parse_args()
    if a.quick:
        a.customers, a.ciw_customers, a.repeat = 20_000, 2_000, 1
    if a.reference_tree and not (Path(a.reference_tree) / "sim" / "model").is_dir():
        print(f"bench_sim: --reference-tree {a.reference_tree}: not a mailgate checkout")
        return 2
    figures: dict[str, object] = {}
    tandem(a, figures)
    if not a.skip_days:
        days(a, figures)
    if a.json:
        print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
